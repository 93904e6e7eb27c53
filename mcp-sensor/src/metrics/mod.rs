//! The daemon's live numbers: Prometheus metrics (`/metrics`, `/healthz`:
//! http.rs) and the board `mcp-sensor status` reads (status.rs).
//!
//! Owns the metric families and what feeds them. Three taps, each one
//! call, no-ops until the daemon installs the [`Tap`] ([`install`]; `exec`
//! never does): every line the output is handed ([`observe`], from
//! output.rs: events by kind, alerts by rule and action, kills and denies
//! by mechanism, servers, sessions, tool calls), the agent's once-a-second
//! loss totals ([`on_tick`], from the pipeline's drop report: drops by
//! stage and kind, records read, the pipeline's heartbeat for `/healthz`)
//! and the queue's fill ([`on_queue`], from agent.rs). The OTLP exporter
//! reports its queue and failures through [`export`].
//!
//! Names follow Prometheus conventions: `mcp_sensor_*`, counters end in
//! `_total` (the encoder appends it), sizes in bytes. Served as OpenMetrics
//! text, which Prometheus scrapes.

pub mod http;

use crate::drops::Totals;
use crate::event::{Body, Direction, Event};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Distinct (server, tool) label sets kept at most; later ones are
/// counted under `(other)` and the overflow is a drop
/// (`stage="metrics"`, `kind="tool_call_series_over_limit"`): a server
/// inventing tool names cannot grow the exposition without bound.
pub const MAX_TOOL_SERIES: usize = 2000;
/// `/healthz` fails when the pipeline's once-a-second tick is older than this.
pub const STALE_AFTER_SECS: u64 = 10;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    /// A `'static` name: counting an event allocates nothing.
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    rule: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnforceLabels {
    /// `killed` or `denied`.
    action: String,
    /// `kernel` or `agent`: who stopped it.
    mechanism: String,
    /// The alert's `decided_by`, verbatim (`kernel_lsm`, ...).
    decided_by: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    stage: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    server: String,
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    /// `full` or `compat` (features.rs).
    object: String,
    kernel: String,
    /// `enforce` or `alert-only`.
    mode: String,
}

/// The export queue's numbers, fed by the OTLP exporter (export/); zero
/// until it runs. Each handle is a cheap atomic: call from any thread.
#[derive(Default)]
pub struct ExportMetrics {
    /// `mcp_sensor_export_queue_spans`: spans waiting to be sent, now.
    pub queue_spans: Gauge,
    /// `mcp_sensor_export_failures_total`: export batches that failed
    /// after the exporter's retries (`export::Stats::failed_batches`).
    pub failures: Counter,
    /// `mcp_sensor_export_dropped_total`: spans given up on (queue full,
    /// retries exhausted).
    pub dropped: Counter,
}

/// The export metrics, for the exporter to feed: `metrics::export().failures.inc()`.
pub fn export() -> &'static ExportMetrics {
    static EXPORT: OnceLock<ExportMetrics> = OnceLock::new();
    EXPORT.get_or_init(ExportMetrics::default)
}

/// Every metric the daemon exposes, and their registry.
pub struct Metrics {
    registry: Registry,
    events: Family<KindLabel, Counter>,
    alerts: Family<AlertLabels, Counter>,
    enforcements: Family<EnforceLabels, Counter>,
    drops: Family<DropLabels, Counter>,
    /// Last totals seen per drop label set: the counters move by deltas.
    drops_seen: Mutex<HashMap<(String, String), u64>>,
    servers: Gauge,
    sessions: Counter,
    tool_calls: Family<ToolLabels, Counter>,
    tool_overflow: Counter,
    /// Distinct (server, tool) label sets so far.
    tool_series: std::sync::atomic::AtomicUsize,
    records: Counter,
    records_seen: AtomicU64,
    queue_bytes: Gauge,
}

impl Metrics {
    /// The families, registered; `ring_bytes`: the kernel ring's size.
    pub fn new(plan: &crate::features::Plan, enforce: bool, ring_bytes: u64) -> Metrics {
        let mut r = Registry::with_prefix("mcp_sensor");
        let m = Metrics {
            registry: Registry::default(),
            events: Family::default(),
            alerts: Family::default(),
            enforcements: Family::default(),
            drops: Family::default(),
            drops_seen: Mutex::new(HashMap::new()),
            servers: Gauge::default(),
            sessions: Counter::default(),
            tool_calls: Family::default(),
            tool_overflow: Counter::default(),
            tool_series: Default::default(),
            records: Counter::default(),
            records_seen: AtomicU64::new(0),
            queue_bytes: Gauge::default(),
        };
        r.register("events", "Event lines produced, by kind (those the per-server budget held back included)", m.events.clone());
        r.register("alerts", "Rule matches, by rule and action (alert, would_kill, killed, denied, would_deny); repeats an alert_summary counts included", m.alerts.clone());
        r.register("enforcements", "Kills and refusals, by action and mechanism (kernel: at the syscall; agent: by pidfd after the event)", m.enforcements.clone());
        r.register("drops", "Losses by stage (ring_buffer: kernel reserve failures by event kind; kernel; queue; agent; output; export; metrics) and kind", m.drops.clone());
        r.register("watched_servers", "MCP servers being watched now (found, not yet exited)", m.servers.clone());
        r.register("sessions", "MCP servers found since start (server_found lines)", m.sessions.clone());
        r.register("tool_calls", "tools/call requests, by server and tool", m.tool_calls.clone());
        r.register("ring_buffer_records", "Records read from the kernel ring buffer", m.records.clone());
        let ring = Gauge::<i64>::default();
        ring.set(ring_bytes.min(i64::MAX as u64) as i64);
        r.register("ring_buffer_size_bytes", "Size of the kernel ring buffer", ring);
        r.register("queue_bytes", "Bytes of records waiting in the agent's queue between the ring drain and the pipeline", m.queue_bytes.clone());
        let e = export();
        r.register("export_queue_spans", "Spans waiting in the OTLP export queue", e.queue_spans.clone());
        r.register("export_failures", "OTLP export requests that failed", e.failures.clone());
        r.register("export_dropped", "Spans the OTLP exporter gave up on (queue full, retries exhausted)", e.dropped.clone());
        let object = serde_json::to_value(plan.object).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let build = BuildLabels {
            version: env!("CARGO_PKG_VERSION").into(),
            object,
            kernel: plan.kernel.clone(),
            mode: if enforce { "enforce" } else { "alert-only" }.into(),
        };
        r.register("build", "The running sensor: version, BPF object, kernel, mode", Info::new(build));
        Metrics { registry: r, ..m }
    }

    /// The exposition: OpenMetrics text, ending with `# EOF`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        // writing to a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    fn observe(&self, ev: &Event) {
        self.events.get_or_create(&KindLabel { kind: kind(&ev.body) }).inc();
        match &ev.body {
            Body::Alert(a) => {
                self.alerts.get_or_create(&AlertLabels { rule: a.rule.clone(), action: a.action.into() }).inc();
                if let ("killed" | "denied", Some(by)) = (a.action, a.decided_by) {
                    let mechanism = if by.starts_with("kernel") && !by.ends_with("agent") { "kernel" } else { "agent" };
                    let l = EnforceLabels { action: a.action.into(), mechanism: mechanism.into(), decided_by: by.into() };
                    self.enforcements.get_or_create(&l).inc();
                }
            }
            // the repeats of an alert: its own line was counted once
            Body::AlertSummary(s) if s.count > 1 => {
                self.alerts.get_or_create(&AlertLabels { rule: s.rule.clone(), action: s.action.into() }).inc_by(s.count - 1);
            }
            Body::ServerFound { .. } => {
                self.sessions.inc();
            }
            Body::Rpc(r) if r.direction == Direction::ClientToServer && r.message == "request" && r.method.as_deref() == Some("tools/call") => {
                let server = ev.server.as_ref().map_or("", |s| s.name.as_str());
                let mut l = ToolLabels { server: server.into(), tool: r.tool.clone().unwrap_or_default() };
                if self.tool_calls.get(&l).is_none() {
                    if self.tool_series.load(Ordering::Relaxed) >= MAX_TOOL_SERIES {
                        self.tool_overflow.inc();
                        l = ToolLabels { server: "(other)".into(), tool: "(other)".into() };
                    } else {
                        self.tool_series.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.tool_calls.get_or_create(&l).inc();
            }
            _ => {}
        }
    }

    /// Moves the drop counters to `totals` (the run's totals so far).
    fn on_totals(&self, t: &Totals, budget_events: u64, records: u64) {
        let prev = self.records_seen.swap(records, Ordering::Relaxed);
        self.records.inc_by(records.saturating_sub(prev));
        let mut seen = self.drops_seen.lock().unwrap_or_else(|p| p.into_inner());
        for (stage, kind, n) in drop_rows(t, budget_events, self.tool_overflow.get()) {
            let was = seen.entry((stage.to_string(), kind.clone())).or_insert(0);
            if n > *was {
                self.drops.get_or_create(&DropLabels { stage: stage.into(), kind }).inc_by(n - *was);
                *was = n;
            }
        }
        drop(seen);
        // the OTLP export's own numbers (export/), zero while it is off
        let e = export();
        e.queue_spans.set(i64::try_from(t.export.queued).unwrap_or(i64::MAX));
        e.failures.inc_by(t.export.failed_batches.saturating_sub(e.failures.get()));
        e.dropped.inc_by(t.export.dropped().saturating_sub(e.dropped.get()));
    }
}

/// The run's losses as (stage, kind, total) rows.
fn drop_rows(t: &Totals, budget_events: u64, tool_overflow: u64) -> Vec<(&'static str, String, u64)> {
    let d = crate::drops::DropTracker::default().total(t);
    let kernel_counters: Vec<&str> = (0..crate::abi::CNT_MAX).filter_map(crate::abi::counter_name).collect();
    let mut rows: Vec<(&'static str, String, u64)> = d.kernel.into_iter().map(|(k, n)| ("ring_buffer", k, n)).collect();
    if d.queue > 0 {
        rows.push(("queue", "record".into(), d.queue));
    }
    for (k, n) in d.other {
        let stage = if kernel_counters.contains(&k.as_str()) {
            "kernel"
        } else if k == crate::drops::LOG_WRITE_FAILED || k == crate::drops::STDOUT_WRITE_FAILED {
            "output"
        } else if k.starts_with("export_") {
            "export"
        } else {
            "agent"
        };
        rows.push((stage, k, n));
    }
    for (stage, kind, n) in [("agent", "server_budget_events", budget_events), ("metrics", "tool_call_series_over_limit", tool_overflow)] {
        if n > 0 {
            rows.push((stage, kind.into(), n));
        }
    }
    rows
}

/// The event kind as its line's `kind` field says it.
pub fn kind(b: &Body) -> &'static str {
    match b {
        Body::Fork { .. } => "fork",
        Body::Exec { .. } => "exec",
        Body::Open { .. } => "open",
        Body::Rename(_) => "rename",
        Body::Link(_) => "link",
        Body::Symlink(_) => "symlink",
        Body::Truncate(_) => "truncate",
        Body::Connect { .. } => "connect",
        Body::IoUringSetup { .. } => "io_uring_setup",
        Body::Ptrace { .. } => "ptrace",
        Body::Exit { .. } => "exit",
        Body::SensorStart { .. } => "sensor_start",
        Body::WatchEnd { .. } => "watch_end",
        Body::Drops(_) => "drops",
        Body::Gap { .. } => "gap",
        Body::Rpc(_) => "rpc",
        Body::ServerFound { .. } => "server_found",
        Body::Malformed { .. } => "malformed",
        Body::Alert(_) => "alert",
        Body::AlertSummary(_) => "alert_summary",
        Body::Throttle(_) => "throttle",
    }
}

/// What the taps feed: the metrics, the status board, the health state.
pub struct Tap {
    pub metrics: Metrics,
    pub board: Mutex<crate::status::Board>,
    started: Instant,
    /// ms since `started` of the pipeline's last tick; 0: none yet.
    last_tick_ms: AtomicU64,
    loaded: AtomicBool,
}

impl Tap {
    pub fn new(plan: &crate::features::Plan, enforce: bool, ring_bytes: u64) -> Tap {
        Tap {
            metrics: Metrics::new(plan, enforce, ring_bytes),
            board: Mutex::new(crate::status::Board::new(plan, enforce)),
            started: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            loaded: AtomicBool::new(false),
        }
    }

    pub fn observe(&self, ev: &Event) {
        self.metrics.observe(ev);
        if crate::status::Board::concerns(ev) {
            let mut b = self.board.lock().unwrap_or_else(|p| p.into_inner());
            b.observe(ev);
            self.metrics.servers.set(b.servers.len() as i64);
        }
    }

    pub fn on_tick(&self, t: &Totals, budget_events: u64, records: u64) {
        self.metrics.on_totals(t, budget_events, records);
        self.board.lock().unwrap_or_else(|p| p.into_inner()).drops = crate::drops::DropTracker::default().total(t);
        self.last_tick_ms.store(self.started.elapsed().as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// The sensor is loaded and its pipeline runs (true), or stops (false).
    pub fn set_running(&self, on: bool) {
        self.loaded.store(on, Ordering::Relaxed);
    }

    /// `Ok` when the sensor is loaded and the pipeline ticked within
    /// [`STALE_AFTER_SECS`]; else why not.
    pub fn health(&self) -> Result<String, String> {
        if !self.loaded.load(Ordering::Relaxed) {
            return Err("the sensor is not running (starting or stopping)".into());
        }
        let now = self.started.elapsed().as_millis() as u64;
        match self.last_tick_ms.load(Ordering::Relaxed) {
            0 if now > STALE_AFTER_SECS * 1000 => Err("the pipeline has not reported since start".into()),
            0 => Ok("ok: starting".into()),
            t if now.saturating_sub(t) > STALE_AFTER_SECS * 1000 => Err(format!(
                "the pipeline has not reported for {} s (stuck, or busy with a flood: see mcp_sensor_drops_total)",
                (now - t) / 1000
            )),
            _ => Ok("ok".into()),
        }
    }
}

static TAP: OnceLock<Arc<Tap>> = OnceLock::new();

/// Makes `tap` the one the taps feed (the daemon, once).
pub fn install(tap: Arc<Tap>) {
    let _ = TAP.set(tap);
}

/// Tap: a line handed to the output.
#[inline]
pub fn observe(ev: &Event) {
    if let Some(t) = TAP.get() {
        t.observe(ev);
    }
}

/// Tap: the run's loss totals, server-budget holds and records read, once a second.
pub fn on_tick(t: &Totals, budget_events: u64, records: u64) {
    if let Some(tap) = TAP.get() {
        tap.on_tick(t, budget_events, records);
    }
}

/// Tap: bytes waiting in the agent's queue.
pub fn on_queue(bytes: u64) {
    if let Some(t) = TAP.get() {
        t.metrics.queue_bytes.set(bytes.min(i64::MAX as u64) as i64);
    }
}

#[cfg(test)]
mod tests;
