//! `mcp-sensor run`: the host-wide daemon.
//!
//! Owns the daemon's life: configuration and rules (loaded first, so
//! `--check-config` fails exactly when `run` would; reloaded on SIGHUP,
//! keeping the running ones when the new ones are invalid), root and the
//! hold on its directories (service.rs), the durable logs (logfile.rs:
//! events, and alerts apart) with the per-server budget (budget.rs),
//! loading the sensor with discovery on, the startup scan of servers
//! already running (discover::scan), and a clean stop on SIGTERM or SIGINT
//! (final drain, totals, log synced, exit 0; exit 1 when the final lines
//! could not be written, which the next start reports).
//!
//! Enforcement (`--enforce`) is switched on when the sensor is loaded; it
//! applies to confirmed servers, never to candidates still being
//! classified (the kernel checks the watch entry's candidate flags).

use crate::cli::RunArgs;
use crate::config::Config;
use crate::detect::Detector;
use crate::correlate::Sessions;
use crate::discover::{adopt, late, scan, Gate};
use crate::loader::{self, LoadOptions, Sensor};
use crate::logfile::RotatingLog;
use crate::output::Output;
use crate::pipeline::Pipeline;
use crate::procs::ProcTable;
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The logs (events, alerts) shared between the output (which writes
/// them) and reloads (which change their limits).
#[derive(Clone)]
struct SharedLog(Arc<Mutex<RotatingLog>>, Arc<Mutex<RotatingLog>>);

/// The alerts log, as the output's second sink.
struct AlertsLog(Arc<Mutex<RotatingLog>>);

impl Write for AlertsLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

impl Write for SharedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

fn load_options(cfg: &Config, enforce: bool) -> LoadOptions {
    let mut discover = crate::abi::DISC_CLIENTS;
    if cfg.discovery.stdio_pipes {
        discover |= crate::abi::DISC_PIPES;
    }
    LoadOptions {
        ring_bytes: cfg.sensor.ring_buffer_size as u32, // validated: <= 1 GiB
        stdio_cap: cfg.sensor.stdio_cap,
        capture_stdio: true,
        discover,
        enforce,
        // validated: within loader::Tables::MIN..=MAX
        tables: loader::Tables { watched: cfg.sensor.max_watched as u32, channels: cfg.sensor.max_channels as u32 },
    }
}

fn load_sensor(cfg: &Config, enforce: bool) -> Result<Sensor> {
    let mut sensor = loader::load(&load_options(cfg, enforce))?;
    sensor.set_client_comms(&cfg.client_names()).context("registering the known clients")?;
    Ok(sensor)
}

/// Servers already running: watches the candidates the scan finds and
/// registers the running clients. Returns (clients, candidates, the pids
/// left untracked). A candidate the kernel tables have no room for (its
/// channels or its processes) is left unwatched and counted in
/// `pipeline.startup_untracked` (a `drops` reason naming the setting to
/// raise), and adopted once room frees (discover/late.rs): the daemon
/// starts with what fits rather than not at all.
fn adopt_running(cfg: &Config, sensor: &mut Sensor, pipeline: &mut Pipeline) -> Result<(usize, usize, Vec<u32>)> {
    let infos = scan::read_proc().context("reading /proc for servers already running")?;
    let names: HashSet<String> = cfg.client_names().into_iter().collect();
    let plan = scan::plan(&infos, &names, cfg.discovery.stdio_pipes, std::process::id());
    for &pid in &plan.clients {
        if let Err(e) = sensor.add_client(pid) {
            // more clients running than the table holds: their servers
            // are found by their stdio pipes alone (counted)
            if !e.is_table_full() {
                return Err(e.into());
            }
            pipeline.startup_untracked += 1;
        }
    }
    let (mut adopted, mut untracked, mut missed) = (0, 0u64, Vec::new());
    for c in &plan.candidates {
        if !adopt::adopt(sensor, pipeline, c)? {
            untracked += c.members.len() as u64;
            missed.extend(c.members.iter().copied());
            continue;
        }
        adopted += 1;
    }
    if untracked > 0 {
        crate::say!(
            "mcp-sensor: could not track {untracked} of the processes already running with pipes on stdin and stdout \
             (possible MCP servers): the kernel tables are full (sensor.max_channels = {}, sensor.max_watched = {}); \
             raise --max-channels and --max-watched",
            cfg.sensor.max_channels,
            cfg.sensor.max_watched
        );
        pipeline.startup_untracked = untracked;
    }
    Ok((plan.clients.len(), adopted, missed))
}

/// Applies a reloaded configuration: what can change while running does,
/// what needs a restart is named.
fn apply(old: &Config, new: &Config, log: &SharedLog, sensor: &mut Sensor, pipeline: &mut Pipeline) {
    if let Err(e) = sensor.set_client_comms(&new.client_names()) {
        crate::say!("mcp-sensor: reload: updating the known clients failed, keeping the old ones: {e}");
    }
    if let Some(g) = pipeline.gate.as_mut() {
        g.set_max_held(new.discovery.max_held_events);
    }
    log.0.lock().unwrap_or_else(|p| p.into_inner()).set_limits(new.log.max_file_size, new.log.max_files);
    log.1.lock().unwrap_or_else(|p| p.into_inner()).set_limits(new.log.alerts_max_file_size, new.log.alerts_max_files);
    if let Some(b) = pipeline.out.budget.as_mut() {
        b.set_limits(new.log.budget());
    }
    let restart = old.needs_restart(new);
    if !restart.is_empty() {
        crate::say!("mcp-sensor: reload: {} take effect at the next restart", restart.join(", "));
    }
    crate::say!("mcp-sensor: configuration reloaded");
}

/// What to do about a log directory that cannot be written, by cause.
fn log_dir_hint(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::StorageFull | K::QuotaExceeded => "its filesystem is full: free space there, then start again",
        K::ReadOnlyFilesystem => "its filesystem is read-only: set log.dir in the configuration to a writable directory",
        K::PermissionDenied => "permission denied: set log.dir in the configuration to a directory root can write",
        _ if e.raw_os_error() == Some(libc::EIO) => "the disk reported an I/O error: check the disk (dmesg)",
        _ => "set log.dir in the configuration to a writable directory",
    }
}

fn open_log(cfg: &Config, name: &'static str, max_size: u64, max_files: u32) -> Result<RotatingLog> {
    RotatingLog::open_named(&cfg.log.dir, name, max_size, max_files).map_err(|e| {
        let hint = log_dir_hint(&e);
        anyhow::Error::new(e).context(format!("opening the event log in {}: {hint}", cfg.log.dir.display()))
    })
}

/// Reports what earlier runs could not write to this log (their markers).
fn report_unwritten_before(dir: &std::path::Path, pipeline: &mut Pipeline) {
    for (secs, lines) in crate::logfile::take_unwritten(dir) {
        let when = crate::timefmt::rfc3339(i128::from(secs) * 1_000_000_000);
        crate::say!(
            "mcp-sensor: the run stopped at {when} could not write {lines} event lines to {}, its final totals among them",
            dir.display()
        );
        pipeline.report_unwritten_before(lines);
    }
}

/// At exit: when the final lines did not reach the log, leaves a marker
/// for the next start and fails.
fn check_final_lines(dir: &std::path::Path, out: &crate::output::Output) -> Result<()> {
    let pending = out.pending_lines();
    if out.last_ok && pending == 0 {
        return Ok(());
    }
    let lines = out.lost + pending;
    let noted = match crate::logfile::record_unwritten(dir, lines) {
        Ok(_) => "recorded for the next start to report".to_string(),
        Err(e) => format!("and recording that failed too: {e}"),
    };
    anyhow::bail!(
        "{lines} event lines, the final totals among them, could not be written to {} ({noted}): \
         free space on its filesystem",
        dir.display()
    )
}

/// Runs the daemon until SIGTERM/SIGINT; returns the exit status.
pub fn run(args: RunArgs) -> Result<i32> {
    // before any file is read: a user without root hears that first
    if !args.check_config {
        crate::service::require_root("run")?;
    }
    let cfg = Config::load(args.config.as_deref())?.with_flags(&args.sizes)?;
    let (mut detector, rule_files) = Detector::from_args(&args.rules)?;
    // the export's settings (file and OTEL_* variables) and TLS files fail
    // here as at start
    if let Some(s) = crate::export::Settings::resolve(&cfg.export.otlp, |k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("OTLP export: {e}"))?
    {
        crate::export::tls_material(&s.tls).map_err(|e| anyhow::anyhow!("OTLP export: {e}"))?;
    }
    if args.check_config {
        let files = rule_files.files().unwrap_or_default();
        crate::say!(
            "mcp-sensor: configuration ({}) and rules (the embedded defaults{}) are valid",
            args.config.as_deref().map_or("built-in defaults".into(), |p| p.display().to_string()),
            files.iter().map(|f| format!(", {}", f.display())).collect::<String>()
        );
        return Ok(0);
    }
    let _locks = crate::service::lock_dirs(&[(&cfg.log.dir, "log"), (&args.rules.state_dir, "state")])?;
    // bound before the sensor loads: a bad address or a port in use stops `run` here
    let metrics_addr = match args.metrics_address {
        Some(a) => Some(a),
        None => cfg.metrics.address.as_deref().map(crate::metrics::http::parse_addr).transpose().map_err(anyhow::Error::msg)?,
    };
    let metrics_listener = metrics_addr.map(crate::metrics::http::bind).transpose()?;
    let status_listener = crate::status::bind(&args.rules.state_dir)?;
    // how the previous run on this log ended: before this run writes to it
    let previous = crate::gap::previous_run(&cfg.log.dir);
    let log = open_log(&cfg, crate::logfile::LIVE_NAME, cfg.log.max_file_size, cfg.log.max_files)?;
    let alerts = open_log(&cfg, crate::logfile::ALERTS_NAME, cfg.log.alerts_max_file_size, cfg.log.alerts_max_files)?;
    let log_path = log.path();
    let log = SharedLog(Arc::new(Mutex::new(log)), Arc::new(Mutex::new(alerts)));
    let sink: Box<dyn Write + Send> = if args.log_stdout || cfg.log.stdout {
        Box::new(crate::stdout_log::Tee::stdout(log.clone()))
    } else {
        Box::new(log.clone())
    };
    let mut out = Output::with_sink(log_path.clone(), sink).with_host(&crate::identity::Host::read());
    out.alerts_to(Box::new(AlertsLog(log.1.clone())));
    out.budget = Some(crate::budget::Budget::new(cfg.log.budget()));
    let mut sensor = load_sensor(&cfg, args.enforce)?;
    // metrics and the status board, fed from here on (metrics/mod.rs)
    let tap = Arc::new(crate::metrics::Tap::new(&sensor.plan, args.enforce, cfg.sensor.ring_buffer_size));
    crate::metrics::install(tap.clone());
    let mut procs = ProcTable::new();
    procs.seed_from_proc().context("reading /proc to seed the process table")?;
    let sessions = Sessions::new(cfg.sensor.max_message.min(usize::MAX as u64) as usize);
    if args.enforce {
        detector.enable_enforcement(&mut sensor)?;
    }
    let mut pipeline = Pipeline::new(out, procs, sessions, detector);
    pipeline.emit_start(&sensor.plan, "run");
    if let Some(prev) = &previous {
        pipeline.emit_gap(prev);
    }
    report_unwritten_before(&cfg.log.dir, &mut pipeline);
    pipeline.gate = Some(Gate::new(cfg.discovery.max_held_events));
    let (clients, running, missed) = adopt_running(&cfg, &mut sensor, &mut pipeline)?;

    // SCHED_BATCH: the agent's wakeups must not preempt what it watches
    let rt = crate::agent::runtime()?;
    // after runtime(): the export's threads are SCHED_BATCH too; in it: a
    // gRPC exporter's channel runs its connection on the runtime
    pipeline.export = {
        let _in_rt = rt.enter();
        crate::export::Export::from_config(&cfg.export.otlp, &crate::identity::Host::read())
            .map_err(|e| anyhow::anyhow!("OTLP export: {e}"))?
    };
    if let Some(x) = &pipeline.export {
        let proto = match x.settings.protocol {
            crate::export::Protocol::Grpc => "OTLP/gRPC",
            crate::export::Protocol::HttpProtobuf => "OTLP/HTTP",
        };
        crate::say!("mcp-sensor: exporting a span per MCP request to {} ({proto}, from {})", x.settings.traces_url, x.settings.source);
    }
    // the handlers are in place before the line that says the daemon runs:
    // a SIGTERM sent on seeing it must stop the daemon cleanly, not kill it
    let (mut term, mut int, hup) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _in_rt = rt.enter();
        (
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        )
    };
    crate::say!(
        "mcp-sensor: watching the host; {clients} known clients and {running} candidate servers already running; \
         events to {}{}",
        log_path.display(),
        metrics_addr.map_or(String::new(), |a| format!("; metrics on http://{a}/metrics"))
    );

    let (rules_tx, rules_rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = crate::agent::Options {
        queue_size: cfg.sensor.queue_size,
        queue_bytes: cfg.sensor.queue_bytes,
        rule_files: Some(rule_files),
        // SIGHUP reloads the rules too (agent::reload_rules, as in exec)
        reload: Some(rules_rx),
    };
    let log_dir = cfg.log.dir.clone();
    let status_path = crate::status::socket_path(&args.rules.state_dir);
    rt.block_on(async move {
        let metrics_task = metrics_listener.map(|l| tokio::spawn(crate::metrics::http::serve(l, tap.clone())));
        let status_task = tokio::spawn(crate::status::serve(status_listener, tap.clone()));
        tap.set_running(true);
        let (ctl_tx, ctl_rx) = tokio::sync::mpsc::channel::<crate::agent::Control>(4);
        let late_task =
            tokio::spawn(adopt_late(ctl_tx.clone(), missed, cfg.client_names().into_iter().collect(), cfg.discovery.stdio_pipes));
        let reloader = tokio::spawn(reload_on_hup(args.config.clone(), cfg, log.clone(), ctl_tx, rules_tx, hup));
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        let result = crate::agent::run_with_control(sensor, pipeline, opts, stop, ctl_rx).await;
        reloader.abort();
        late_task.abort();
        tap.set_running(false);
        status_task.abort();
        let _ = std::fs::remove_file(&status_path);
        if let Some(t) = metrics_task {
            t.abort();
        }
        let pipeline = result?;
        if let Some(g) = &pipeline.gate {
            let s = &g.stats;
            crate::say!(
                "mcp-sensor: discovery: {} candidates, {} MCP servers, {} not MCP ({} of their events discarded), \
                 {} part of another's tree, {} events past the hold bound; {} events came while all candidates held \
                 their bound, {} held events given up by the quietest for them; {} idle candidates unwatched to make room \
                 in the full kernel tables",
                s.candidates, s.confirmed, s.rejected, s.discarded, s.folded, s.held_overflow, s.at_bound, s.given_up, s.evicted
            );
        }
        let final_lines = check_final_lines(&log_dir, &pipeline.out);
        drop(pipeline);
        log.0.lock().unwrap_or_else(|p| p.into_inner()).sync().context("syncing the event log")?;
        log.1.lock().unwrap_or_else(|p| p.into_inner()).sync().context("syncing the alerts log")?;
        final_lines?;
        crate::say!("mcp-sensor: stopped");
        Ok(0)
    })
}

/// Every second, between records: candidates the kernel tables had no room
/// for at exec, and `missed` at start, are adopted from /proc once room
/// frees (discover/late.rs). `clients`: the client names at start (a
/// reload's new names apply to the kernel at once, and here at the next
/// restart).
async fn adopt_late(
    tx: tokio::sync::mpsc::Sender<crate::agent::Control>,
    missed: Vec<u32>,
    clients: HashSet<String>,
    stdio_pipes: bool,
) {
    let mut first = late::Late::default();
    first.note(missed, std::time::Instant::now());
    let late = Arc::new(Mutex::new(first));
    let clients = Arc::new(clients);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let (late, clients) = (late.clone(), clients.clone());
        let step: crate::agent::Control = Box::new(move |sensor, pipeline| {
            let mut l = late.lock().unwrap_or_else(|p| p.into_inner());
            match late::retry(&mut l, sensor, pipeline, &clients, stdio_pipes, std::time::Instant::now()) {
                Ok(p) => {
                    // one pass may do both: adopt into a slot freed meanwhile,
                    // and make room for the rest
                    if p.evicted > 0 || p.kept > 0 {
                        crate::say!(
                            "mcp-sensor: unwatched {} candidate servers idle for {} s or more to make room in the full kernel tables for {} processes they had missed{}",
                            p.evicted,
                            late::IDLE_EVICT.as_secs(),
                            p.waiting,
                            if p.kept > 0 { format!("; kept {} found in /proc that wait on their stdin (maybe servers waiting on their user)", p.kept) } else { String::new() }
                        );
                    }
                    if p.adopted > 0 {
                        crate::say!(
                            "mcp-sensor: now tracking {} candidate servers the kernel tables had no room for at their exec, \
                             found in /proc once room freed (what they did before now was not seen){}",
                            p.adopted,
                            if p.waiting > 0 { format!("; {} processes still wait for room", p.waiting) } else { String::new() }
                        );
                    }
                }
                Err(e) => {
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| crate::say!("mcp-sensor: adopting candidates the kernel tables had no room for failed: {e}"));
                }
            }
        });
        if tx.send(step).await.is_err() {
            return;
        }
    }
}

/// Each SIGHUP: re-reads the configuration; a valid one is sent to the
/// agent to apply, an invalid one is reported and the running one kept.
async fn reload_on_hup(
    path: Option<PathBuf>,
    mut current: Config,
    log: SharedLog,
    tx: tokio::sync::mpsc::Sender<crate::agent::Control>,
    rules: tokio::sync::mpsc::UnboundedSender<()>,
    mut hup: tokio::signal::unix::Signal,
) {
    while hup.recv().await.is_some() {
        // rules: their own reload, which keeps the running rules on error
        let _ = rules.send(());
        let new = match Config::load(path.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                crate::say!("mcp-sensor: reload failed, keeping the running configuration: {e}");
                continue;
            }
        };
        let (old, log) = (current.clone(), log.clone());
        current = new.clone();
        let apply_it: crate::agent::Control = Box::new(move |sensor, pipeline| apply(&old, &new, &log, sensor, pipeline));
        if tx.send(apply_it).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_dir_hint;
    use std::io::Error;

    #[test]
    fn a_log_directory_that_cannot_be_written_is_explained_by_its_cause() {
        let full = log_dir_hint(&Error::from_raw_os_error(libc::ENOSPC));
        assert!(full.contains("full") && full.contains("free space") && !full.contains("log.dir"), "{full}");
        assert!(!log_dir_hint(&Error::from_raw_os_error(libc::EDQUOT)).contains("log.dir"));
        assert!(log_dir_hint(&Error::from_raw_os_error(libc::EROFS)).contains("read-only"));
        assert!(log_dir_hint(&Error::from_raw_os_error(libc::EACCES)).contains("permission denied"));
        assert!(log_dir_hint(&Error::from_raw_os_error(libc::EIO)).contains("I/O error"));
    }
}
