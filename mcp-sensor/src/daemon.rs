//! `mcp-sensor run`: the host-wide daemon.
//!
//! Owns the daemon's life: configuration (loaded, and reloaded on SIGHUP,
//! keeping the running one when the new one is invalid), the durable log
//! (logfile.rs), loading the sensor with discovery on, the startup scan of
//! servers already running (discover::scan), and a clean stop on SIGTERM
//! or SIGINT (final drain, totals, log synced, exit 0).
//!
//! Enforcement (`--enforce`) is switched on when the sensor is loaded; it
//! applies to confirmed servers, never to candidates still being
//! classified (the kernel checks the watch entry's candidate flags).

use crate::cli::RunArgs;
use crate::config::Config;
use crate::detect::Detector;
use crate::correlate::Sessions;
use crate::discover::{scan, Gate, How};
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

/// The log shared between the output (which writes it) and reloads (which
/// change its limits).
#[derive(Clone)]
struct SharedLog(Arc<Mutex<RotatingLog>>);

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
    }
}

fn load_sensor(cfg: &Config, enforce: bool) -> Result<Sensor> {
    let mut sensor = loader::load(&load_options(cfg, enforce))?;
    sensor.set_client_comms(&cfg.client_names()).context("registering the known clients")?;
    Ok(sensor)
}

fn how_flag(how: How) -> u32 {
    match how {
        How::ClientChild => crate::abi::F_CAND_CLIENT,
        How::StdioPipes => crate::abi::F_CAND_PIPES,
    }
}

/// Servers already running: watches the candidates the scan finds and
/// registers the running clients. Returns (clients, candidates).
fn adopt_running(cfg: &Config, sensor: &mut Sensor, pipeline: &mut Pipeline) -> Result<(usize, usize)> {
    let infos = scan::read_proc().context("reading /proc for servers already running")?;
    let names: HashSet<String> = cfg.client_names().into_iter().collect();
    let plan = scan::plan(&infos, &names, cfg.discovery.stdio_pipes, std::process::id());
    for &pid in &plan.clients {
        sensor.add_client(pid)?;
    }
    let gate = pipeline.gate.as_mut().expect("the daemon's pipeline has a gate");
    for c in &plan.candidates {
        gate.add(c.root, c.how);
        for &pid in &c.members {
            sensor.watch_candidate(pid, c.root, how_flag(c.how))?;
            gate.member(c.root, pid);
        }
        for &(dev, ino) in &c.channels {
            sensor.add_candidate_channel(dev, ino, c.root)?;
        }
        pipeline.sessions.ensure(c.root, &pipeline.procs);
    }
    Ok((plan.clients.len(), plan.candidates.len()))
}

/// Applies a reloaded configuration: what can change while running does,
/// what needs a restart is named.
fn apply(old: &Config, new: &Config, log: &SharedLog, sensor: &mut Sensor, pipeline: &mut Pipeline) {
    if let Err(e) = sensor.set_client_comms(&new.client_names()) {
        eprintln!("mcp-sensor: reload: updating the known clients failed, keeping the old ones: {e}");
    }
    if let Some(g) = pipeline.gate.as_mut() {
        g.set_max_held(new.discovery.max_held_events);
    }
    log.0.lock().unwrap_or_else(|p| p.into_inner()).set_limits(new.log.max_file_size, new.log.max_files);
    let restart = old.needs_restart(new);
    if !restart.is_empty() {
        eprintln!("mcp-sensor: reload: {} take effect at the next restart", restart.join(", "));
    }
    eprintln!("mcp-sensor: configuration reloaded");
}

/// Runs the daemon until SIGTERM/SIGINT; returns the exit status.
pub fn run(args: RunArgs) -> Result<i32> {
    let cfg = Config::load(args.config.as_deref())?;
    if args.check_config {
        eprintln!("mcp-sensor: configuration is valid");
        return Ok(0);
    }
    let log = RotatingLog::open(&cfg.log.dir, cfg.log.max_file_size, cfg.log.max_files).with_context(|| {
        format!("opening the event log in {} (set log.dir in the configuration)", cfg.log.dir.display())
    })?;
    let log_path = log.path();
    let log = SharedLog(Arc::new(Mutex::new(log)));
    let out = Output::with_sink(log_path.clone(), Box::new(log.clone()));
    let mut sensor = load_sensor(&cfg, args.enforce)?;
    let mut procs = ProcTable::new();
    procs.seed_from_proc().context("reading /proc to seed the process table")?;
    let sessions = Sessions::new(cfg.sensor.max_message.min(usize::MAX as u64) as usize);
    let (mut detector, rule_files) = Detector::from_args(&args.rules)?;
    if args.enforce {
        detector.enable_enforcement(&mut sensor)?;
    }
    let mut pipeline = Pipeline::new(out, procs, sessions, detector);
    pipeline.emit_start(&sensor.plan, "run");
    pipeline.gate = Some(Gate::new(cfg.discovery.max_held_events));
    let (clients, running) = adopt_running(&cfg, &mut sensor, &mut pipeline)?;

    // SCHED_BATCH: the agent's wakeups must not preempt what it watches
    let rt = crate::agent::runtime()?;
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
    eprintln!(
        "mcp-sensor: watching the host; {clients} known clients and {running} candidate servers already running; \
         events to {}",
        log_path.display()
    );

    let (rules_tx, rules_rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = crate::agent::Options {
        queue_size: cfg.sensor.queue_size,
        queue_bytes: cfg.sensor.queue_bytes,
        rule_files: Some(rule_files),
        // SIGHUP reloads the rules too (agent::reload_rules, as in exec)
        reload: Some(rules_rx),
    };
    rt.block_on(async move {
        let (ctl_tx, ctl_rx) = tokio::sync::mpsc::channel::<crate::agent::Control>(4);
        let reloader = tokio::spawn(reload_on_hup(args.config.clone(), cfg, log.clone(), ctl_tx, rules_tx, hup));
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        let result = crate::agent::run_with_control(sensor, pipeline, opts, stop, ctl_rx).await;
        reloader.abort();
        let pipeline = result?;
        if let Some(g) = &pipeline.gate {
            let s = &g.stats;
            eprintln!(
                "mcp-sensor: discovery: {} candidates, {} MCP servers, {} not MCP ({} of their events discarded)",
                s.candidates, s.confirmed, s.rejected, s.discarded
            );
        }
        drop(pipeline);
        log.0.lock().unwrap_or_else(|p| p.into_inner()).sync().context("syncing the event log")?;
        eprintln!("mcp-sensor: stopped");
        Ok(0)
    })
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
                eprintln!("mcp-sensor: reload failed, keeping the running configuration: {e}");
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
