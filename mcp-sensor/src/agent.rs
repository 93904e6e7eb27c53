//! Agent: the running sensor. Owns the tasks between the kernel and the
//! output: the ring drain, the pipeline, the periodic drop report and
//! rules upkeep (reload when rule files change or on request, re-stat the
//! files rules name), until the caller's stop future resolves; then a
//! final drain and totals.
//! Between records it applies what the pipeline asks of the kernel maps
//! (discovery's verdicts) and the caller's control messages (the
//! daemon's config reload), so only this task ever touches the sensor.

use crate::drops::Totals;
use crate::loader::{LoadError, Sensor};
use crate::pipeline::Pipeline;
use crate::reader::{Drain, QueueBudget};
use crate::rulefiles::RuleFiles;
use bytes::Bytes;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Makes the calling thread, and the threads it creates from now on,
/// `SCHED_BATCH`: same CPU share as before, but its wakeups never preempt
/// a running task. The agent's work is asynchronous to the processes it
/// watches (capture happens in the kernel; the agent only reads the ring),
/// so it should not cut into a client/server round trip when it wakes to
/// drain. It keeps its full share, so a flood is drained as fast as before:
/// the ring and the queue absorb the extra wakeup latency (a scheduler
/// slice, a few ms), and whatever they cannot absorb is counted as before.
/// Call it after forking anything that must keep normal scheduling.
pub fn batch_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread with a valid param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        // not fatal: the agent runs as before
        crate::say!("mcp-sensor: SCHED_BATCH not set: {}", std::io::Error::last_os_error());
    }
}

/// The agent's async runtime: two workers, under [`batch_scheduling`]
/// (which the worker threads inherit). Call it after forking anything
/// that must keep normal scheduling.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    batch_scheduling();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// How often losses are checked and reported, and the output flushed.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);
/// How often (in drop-report ticks) rule files are checked for changes and
/// the files rules name are stat'ed again.
const RULES_EVERY_TICKS: u64 = 2;
/// How often (in drop-report ticks) the process table forgets exited
/// processes and freed memory goes back to the kernel.
const HOUSEKEEPING_EVERY_TICKS: u64 = 10;

/// Forgets exited processes (procs.rs) and returns the allocator's free
/// pages to the kernel. After a storm (thousands of piped candidates,
/// their held events freed when they are decided or exit), glibc kept the
/// freed heap resident: 40 MB of it, given back by one `malloc_trim`
/// (BENCHMARKS.md, issue 17). It walks the free lists: 0.07 to 6.6 ms
/// measured (the most right after a storm), every 10 s.
fn housekeeping(pipeline: &mut Pipeline) {
    pipeline.procs.forget_exited();
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory; it takes the
    // allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How the agent runs, besides the sensor and the pipeline.
pub struct Options {
    /// Records queued between the ring drain and processing, at most.
    pub queue_size: usize,
    /// Bytes of records queued, at most.
    pub queue_bytes: u64,
    /// The user's rule files: reloaded when they change.
    pub rule_files: Option<RuleFiles>,
    /// Each message asks for a rules reload now (SIGHUP in the daemon).
    pub reload: Option<mpsc::UnboundedReceiver<()>>,
}

/// Loads the rule files again; a failure keeps the rules running and says why.
pub fn reload_rules(pipeline: &mut Pipeline, files: &mut RuleFiles, why: &str) -> bool {
    match files.load() {
        Ok(set) => {
            let on = set.rules().filter(|r| r.enabled).count();
            pipeline.detect.replace_rules(set);
            crate::say!("mcp-sensor: rules reloaded ({why}): {on} enabled");
            true
        }
        Err(e) => {
            crate::say!("mcp-sensor: rules reload ({why}) failed; the previous rules keep running:\n{e}");
            false
        }
    }
}

/// A change the caller wants made with the sensor and pipeline in hand
/// (e.g. a reloaded configuration), run between two records.
pub type Control = Box<dyn FnOnce(&mut Sensor, &mut Pipeline) + Send>;

fn apply_kernel_actions(sensor: &mut Sensor, pipeline: &mut Pipeline) {
    use crate::discover::KernelAction;
    for a in pipeline.take_kernel_actions() {
        let r = match a {
            KernelAction::Unwatch { session, mut pids, complete } => {
                // the kernel's exit program unwatched the exited ones
                pids.retain(|&p| !pipeline.procs.get(p).is_some_and(|x| x.exited));
                sensor.unwatch_session(session, &pids, complete)
            }
            KernelAction::Confirm { session, pids, complete } => sensor.confirm_session(session, &pids, complete),
            KernelAction::Fold { from, into, pids, complete, candidate } => {
                sensor.fold_session(from, into, &pids, complete, candidate)
            }
        };
        if let Err(e) = r {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| crate::say!("mcp-sensor: updating the watched set after a discovery verdict failed: {e}"));
        }
    }
}

/// Restores the live sessions' first-request stamps the kernel's LRU
/// FIRST_REQ evicted (a flood of sessions), counted: until restored, the
/// kernel's after-the-first-request kills were off for that server and
/// the agent's late kill stood in.
fn restore_first_requests(sensor: &mut Sensor, pipeline: &mut Pipeline) {
    let want: Vec<(u32, u64, u64)> = pipeline
        .sessions
        .first_requests()
        .map(|(s, t)| (s, t, pipeline.procs.get(s).map_or(0, |p| p.start_ns)))
        .collect();
    match sensor.restore_first_requests(&want) {
        Ok(n) => pipeline.first_request_evicted += n,
        Err(e) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| crate::say!("mcp-sensor: checking the kernel's first-request stamps failed: {e}"));
        }
    }
}

/// Removes the channels of the sessions the verdicts since the last tick
/// unwatched or folded (one walk of CHANNELS for all of them).
fn sweep_channels(sensor: &mut Sensor) {
    if let Err(e) = sensor.sweep_channels() {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| crate::say!("mcp-sensor: removing ended candidates' channels failed: {e}"));
    }
}

fn totals(sensor: &mut Sensor, queue: u64, pipeline: &Pipeline) -> Totals {
    let (kernel, other) = sensor.counters().unwrap_or_else(|e| {
        // kernel losses would go unreported: say so rather than show zeros
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| crate::say!("mcp-sensor: reading the kernel loss counters failed: {e}"));
        Default::default()
    });
    Totals {
        kernel,
        other,
        queue,
        undecodable: pipeline.undecodable,
        log_write_failed: pipeline.out.lost,
        discovery_held_overflow: pipeline.gate.as_ref().map_or(0, |g| g.stats.held_overflow),
        discovery_discarded: pipeline.gate.as_ref().map_or(0, |g| g.stats.discarded),
        discovery_candidates_evicted: pipeline.gate.as_ref().map_or(0, |g| g.stats.evicted),
        discovery_decisions_forgotten: pipeline.held_decisions_forgotten,
        stdio: pipeline.sessions.stdio_loss,
        known_files_full: pipeline.detect.known_refused(),
        startup_untracked: pipeline.startup_untracked,
        first_request_evicted: pipeline.first_request_evicted,
        stdout_write_failed: crate::stdout_log::lost_lines(),
        export: pipeline.export.as_ref().map(|x| x.stats()).unwrap_or_default(),
    }
}

/// Runs until `stop` resolves, then drains what the kernel already wrote,
/// reports the final drop totals and flushes. Returns the pipeline.
pub async fn run<F: Future<Output = ()>>(
    sensor: Sensor,
    pipeline: Pipeline,
    opts: Options,
    stop: F,
) -> Result<Pipeline, LoadError> {
    let (_keep, control) = mpsc::channel(1);
    run_with_control(sensor, pipeline, opts, stop, control).await
}

/// [`run`], also applying each [`Control`] received on `control`.
pub async fn run_with_control<F: Future<Output = ()>>(
    mut sensor: Sensor,
    mut pipeline: Pipeline,
    opts: Options,
    stop: F,
    mut control: mpsc::Receiver<Control>,
) -> Result<Pipeline, LoadError> {
    let Options { queue_size, queue_bytes, mut rule_files, reload } = opts;
    let ring = sensor.take_ring()?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(queue_size.max(1));
    let budget = QueueBudget::new(queue_bytes);
    let mut reload = reload;
    let mut ticks = 0u64;
    let (stop_tx, stop_rx) = watch::channel(false);
    let drain = Drain::new(ring, tx, budget.clone()).map_err(LoadError::Poll)?;
    let drain_task = tokio::spawn(drain.run(stop_rx));

    let mut tick = tokio::time::interval(DROP_REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(stop);
    let mut stopping = false;
    loop {
        tokio::select! {
            biased;
            rec = rx.recv() => match rec {
                Some(raw) => {
                    pipeline.on_raw(&raw);
                    budget.release(raw.len());
                    apply_kernel_actions(&mut sensor, &mut pipeline);
                    if rx.is_empty() {
                        pipeline.out.flush();
                    }
                }
                // the drain ended: after stop, or because polling failed
                None => break,
            },
            _ = &mut stop, if !stopping => {
                stopping = true;
                let _ = stop_tx.send(true);
            }
            Some(c) = control.recv() => {
                c(&mut sensor, &mut pipeline);
                apply_kernel_actions(&mut sensor, &mut pipeline);
            }
            Some(()) = async { reload.as_mut()?.recv().await }, if reload.is_some() => {
                if let Some(files) = rule_files.as_mut() {
                    reload_rules(&mut pipeline, files, "requested");
                }
            }
            _ = tick.tick() => {
                restore_first_requests(&mut sensor, &mut pipeline);
                sweep_channels(&mut sensor);
                let t = totals(&mut sensor, budget.overflow.load(Ordering::Relaxed), &pipeline);
                crate::metrics::on_queue(budget.used.load(Ordering::Relaxed));
                pipeline.report_drops(t);
                pipeline.tick();
                pipeline.out.flush();
                ticks += 1;
                if ticks % RULES_EVERY_TICKS == 0 {
                    if let Some(files) = rule_files.as_mut() {
                        if files.changed() {
                            reload_rules(&mut pipeline, files, "rule files changed");
                        }
                    }
                    pipeline.detect.refresh_identities();
                }
                if ticks % HOUSEKEEPING_EVERY_TICKS == 0 {
                    housekeeping(&mut pipeline);
                }
            }
        }
    }
    let _ = drain_task.await;
    let t = totals(&mut sensor, budget.overflow.load(Ordering::Relaxed), &pipeline);
    pipeline.report_drops(t.clone());
    pipeline.report_final_drops(&t);
    pipeline.out.flush();
    Ok(pipeline)
}
