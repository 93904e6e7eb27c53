//! OTLP trace export (`mcp-sensor run`, `[export.otlp]`): each MCP request
//! a watched server reads becomes one span, with the execs, opens and
//! connects attributed to it and the alerts they raised as span events,
//! joined to the client's trace when the request carried a W3C
//! `traceparent` in `params._meta`.
//!
//! Owns: which settings apply (`settings.rs`: the config table with the
//! standard `OTEL_*` variables over it), events -> spans (`spans.rs`,
//! pure), spans -> the receiver (`sink.rs`: the OpenTelemetry SDK's batch
//! processor and `opentelemetry-otlp`'s OTLP/HTTP exporter), the resource
//! (who is exporting: host, service, the daemon's own container), and the
//! counts of what was exported, failed or dropped ([`Stats`]), which the
//! drop accounting (`drops` lines) reports and metrics can read.
//!
//! The pipeline calls [`Export::observe`] for each event it publishes and
//! each alert line it writes; nothing here blocks it (sink.rs).
//! Per-process identity (`host.*`, `service.*`, the daemon's `container.id`)
//! is the resource's; a server's container (`container.id`,
//! `container.runtime`, `k8s.pod.uid`) is on its spans, since one daemon
//! exports for servers in many containers.

mod settings;
mod sink;
mod spans;
#[cfg(test)]
mod tests;

pub use settings::{OtlpConfig, Protocol, Settings};
pub use sink::{parent_context, tls_material};
pub use spans::{decision, RequestFacts, SpanEvent, SpanRecord, Tracker};

use crate::event::Event;
use opentelemetry::KeyValue;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// How long the daemon waits at stop for the last spans to be exported.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The export's counts since start (spans unless named otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Spans waiting in the queue or being sent now.
    pub queued: u64,
    pub exported: u64,
    /// Spans the receiver refused or could not be reached for, after the
    /// retries (at stop: also those not sent within [`STOP_TIMEOUT`]).
    pub failed: u64,
    /// Export calls (batches) that failed after the retries.
    pub failed_batches: u64,
    /// Spans dropped because the queue (`max_queue_size`) was full.
    pub queue_full: u64,
    /// Span events (host actions, findings) past a span's 128.
    pub events_over_limit: u64,
}

impl Stats {
    /// Spans lost in all (failed + dropped at the queue).
    pub fn dropped(&self) -> u64 {
        self.failed + self.queue_full
    }
}

/// The running export: the open requests and the SDK sink.
pub struct Export {
    tracker: Tracker,
    sink: sink::Sink,
    finished: Vec<SpanRecord>,
    /// Set at stop: spans never exported, in all.
    lost_at_stop: Option<u64>,
    pub settings: Settings,
}

/// `host.name`, `host.id`, `service.name`, `service.version`, and the
/// daemon's own `container.id` / `container.runtime` / `k8s.pod.uid` when it
/// runs in a container (its `/proc/self/cgroup`); `OTEL_RESOURCE_ATTRIBUTES`
/// adds to them (ours win on the same key).
fn resource(settings: &Settings, host: &crate::identity::Host) -> opentelemetry_sdk::Resource {
    let mut kvs = vec![
        KeyValue::new("service.name", settings.service_name.clone()),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("host.name", host.name.clone()),
    ];
    if let Some(id) = &host.id {
        kvs.push(KeyValue::new("host.id", id.clone()));
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|t| {
        t.lines().find_map(|l| l.strip_prefix("0::")).and_then(crate::identity::parse_cgroup_path)
    });
    if let Some(c) = own {
        kvs.push(KeyValue::new("container.id", c.id));
        kvs.push(KeyValue::new("container.runtime", c.runtime));
        if let Some(p) = c.pod_uid {
            kvs.push(KeyValue::new("k8s.pod.uid", p));
        }
    }
    opentelemetry_sdk::Resource::builder_empty()
        .with_detectors(&[Box::new(opentelemetry_sdk::resource::EnvResourceDetector::new())])
        .with_attributes(kvs)
        .build()
}

impl Export {
    /// The export `cfg` and the environment ask for; `None`: off. Errors
    /// name the setting and what to write instead.
    pub fn from_config(cfg: &OtlpConfig, host: &crate::identity::Host) -> Result<Option<Export>, String> {
        let Some(settings) = Settings::resolve(cfg, |k| std::env::var(k).ok())? else { return Ok(None) };
        let sink = sink::Sink::new(&settings, resource(&settings, host))?;
        Ok(Some(Export { tracker: Tracker::new(settings.capture_content), sink, finished: Vec::new(), lost_at_stop: None, settings }))
    }

    /// A published event or alert line; `ts_ns` its time (Unix ns).
    pub fn observe(&mut self, ev: &Event, ts_ns: i128, facts: &RequestFacts) {
        self.tracker.observe(ev, ts_ns, facts, &mut self.finished);
        for rec in self.finished.drain(..) {
            self.sink.send(rec);
        }
    }

    /// At stop: ends the open spans (`sensor_stop`), exports what is
    /// queued (waiting at most [`STOP_TIMEOUT`]) and stops the export.
    pub fn finish(&mut self, ts_ns: i128) {
        if self.lost_at_stop.is_some() {
            return;
        }
        self.tracker.end_all(ts_ns, &mut self.finished);
        for rec in self.finished.drain(..) {
            self.sink.send(rec);
        }
        self.lost_at_stop = Some(self.sink.shutdown(STOP_TIMEOUT));
    }

    /// The counts so far (metrics: `mcp_sensor_export_queue_spans` is
    /// `queued`, `..._failures_total` `failed_batches`, `..._dropped_total`
    /// [`Stats::dropped`]).
    pub fn stats(&self) -> Stats {
        let c = self.sink.counts();
        let failed = c.failed.load(Relaxed);
        Stats {
            queued: if self.lost_at_stop.is_some() { 0 } else { c.queued() },
            exported: c.exported.load(Relaxed),
            failed: self.lost_at_stop.map_or(failed, |lost| lost.max(failed)),
            failed_batches: c.failed_batches.load(Relaxed),
            queue_full: c.queue_full.load(Relaxed),
            events_over_limit: self.tracker.events_over_limit,
        }
    }
}
