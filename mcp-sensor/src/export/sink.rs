//! Spans -> the OTLP receiver: the OpenTelemetry SDK's tracer provider with
//! its batch span processor (its own thread, a bounded queue, batches of up
//! to 512 spans every 5 s or sooner when full; `OTEL_BSP_*` tune it) and
//! `opentelemetry-otlp`'s OTLP/HTTP protobuf or OTLP/gRPC exporter, whose
//! retries with exponential backoff (3 retries, 100 ms doubling to 1.6 s,
//! jitter; HTTP 429/502/503/504, gRPC UNAVAILABLE and the like, connection
//! errors; the export timeout bounds them all) are the crate's own. TLS:
//! rustls with the system's roots, plus the settings' CA and client
//! certificate ([`tls_material`]).
//!
//! Never blocks the pipeline: [`Sink::send`] hands a finished span to the
//! processor's queue or, when that queue is full, drops it and counts it.
//! The export thread's blocking HTTP calls never run on the agent's tasks.
//! Every span is accounted for ([`Counts`]): exported, failed (the
//! receiver refused it or could not be reached after the retries), or
//! dropped at the queue; at stop, what is still unexported is lost.

use super::spans::SpanRecord;
use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Span counts since start; read by drops and metrics (never reset).
#[derive(Debug, Default)]
pub struct Counts {
    /// Spans handed to the processor.
    pub submitted: AtomicU64,
    /// Spans the receiver accepted.
    pub exported: AtomicU64,
    /// Spans in batches that failed after the retries.
    pub failed: AtomicU64,
    /// Export calls (batches) that failed after the retries.
    pub failed_batches: AtomicU64,
    /// Spans not queued: the queue was full.
    pub queue_full: AtomicU64,
}

impl Counts {
    /// Spans queued or being exported now.
    pub fn queued(&self) -> u64 {
        self.submitted.load(Relaxed).saturating_sub(self.exported.load(Relaxed) + self.failed.load(Relaxed))
    }
}

/// The OTLP exporter, counting what each batch came to. The first failure
/// is said on stderr, with what to check.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    counts: Arc<Counts>,
    url: String,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let r = self.inner.export(batch).await;
        match &r {
            Ok(()) => {
                self.counts.exported.fetch_add(n, Relaxed);
            }
            Err(e) => {
                if self.counts.failed_batches.fetch_add(1, Relaxed) == 0 {
                    crate::say!(
                        "mcp-sensor: OTLP export to {} failed after retries: {e} ({n} spans lost; further failures are counted \
                         as `export_failed` drops): is the collector running and listening there?{}",
                        self.url,
                        if self.url.starts_with("https://") {
                            " Over https, also: does its certificate chain to the system's roots or to the CA \
                             OTEL_EXPORTER_OTLP_CERTIFICATE (export.otlp.certificate) names, for the host name in the URL?"
                        } else {
                            ""
                        }
                    );
                }
                self.counts.failed.fetch_add(n, Relaxed);
            }
        }
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The SDK side: provider, tracer, counts.
pub struct Sink {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    counts: Arc<Counts>,
    max_queue: u64,
}

/// The parent of a span whose request carried `traceparent` (and maybe
/// `tracestate`): `None` when it is absent or not a valid W3C
/// traceparent (wrong version, length, non-hex, all-zero ids), parsed by
/// the SDK's W3C propagator.
pub fn parent_context(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<SpanContext> {
    use opentelemetry::propagation::TextMapPropagator;
    let traceparent = traceparent?;
    if !w3c_shape(traceparent) {
        return None;
    }
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_string(), traceparent.to_string());
    if let Some(s) = tracestate {
        carrier.insert("tracestate".to_string(), s.to_string());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// The field widths W3C Trace Context requires: `vv-<32>-<16>-ff`, lowercase
/// hex, nothing after the flags for version 00 (later versions may append
/// `-...`; version ff is invalid). The SDK's propagator (0.33) reads ids with fewer digits too
/// (`TraceId::from_hex` of 31 digits), which would join a wrong trace.
fn w3c_shape(tp: &str) -> bool {
    let parts: Vec<&str> = tp.splitn(5, '-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if parts.len() < 4 || !hex(parts[0], 2) || !hex(parts[1], 32) || !hex(parts[2], 16) || !hex(parts[3], 2) {
        return false;
    }
    match parts[0] {
        "00" => parts.len() == 4,
        "ff" => false,
        _ => true,
    }
}

fn system_time(unix_ns: i128) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(unix_ns.clamp(0, u64::MAX as i128) as u64)
}

/// The TLS files of the settings, read once and checked.
#[derive(Debug)]
pub struct TlsMaterial {
    /// The CA certificates' PEM (OTLP/gRPC) and parsed (OTLP/HTTP).
    pub ca_pem: Option<Vec<u8>>,
    pub certs: Vec<reqwest::Certificate>,
    /// The client certificate's and key's PEM, and the two parsed.
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
    pub identity: Option<reqwest::Identity>,
}

/// The CA certificates and client identity `tls` names, read and parsed.
/// Errors name the setting, the file and what is wrong with it.
pub fn tls_material(tls: &super::settings::Tls) -> Result<TlsMaterial, String> {
    let read = |(path, named): &(std::path::PathBuf, &str)| {
        std::fs::read(path).map_err(|e| format!("{named} = {}: cannot read it: {e}", path.display()))
    };
    let ca_pem = tls.certificate.as_ref().map(read).transpose()?;
    let certs = match (&tls.certificate, &ca_pem) {
        (Some(c), Some(pem)) => {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("{} = {}: not PEM certificates: {e}", c.1, c.0.display()))?;
            if certs.is_empty() {
                return Err(format!("{} = {}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)", c.1, c.0.display()));
            }
            certs
        }
        _ => Vec::new(),
    };
    let (client_pem, identity) = match &tls.client {
        Some((cert, key)) => {
            let (c, k) = (read(cert)?, read(key)?);
            let pem = [&c[..], b"\n", &k[..]].concat();
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!("{} = {} with {} = {}: not a PEM certificate and private key: {e}", cert.1, cert.0.display(), key.1, key.0.display())
            })?;
            (Some((c, k)), Some(identity))
        }
        None => (None, None),
    };
    Ok(TlsMaterial { ca_pem, certs, client_pem, identity })
}

/// The exporter's timeout as the exporter crate reads it (ms; 10 s).
fn export_timeout() -> Duration {
    ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// An HTTP client trusting `tls`'s CA besides the system's roots and
/// presenting its client certificate; `None` when `tls` names neither (the
/// exporter's own client then, with the system's roots). Built on a thread
/// of its own, as the exporter crate builds its own: a blocking client
/// must not be built on the agent's async runtime.
fn tls_client(tls: &super::settings::Tls) -> Result<Option<reqwest::blocking::Client>, String> {
    if tls.certificate.is_none() && tls.client.is_none() {
        return Ok(None);
    }
    let TlsMaterial { certs, identity, .. } = tls_material(tls)?;
    let timeout = export_timeout();
    let built = std::thread::spawn(move || {
        let mut b = reqwest::blocking::Client::builder().timeout(timeout).tls_certs_merge(certs);
        if let Some(id) = identity {
            b = b.identity(id);
        }
        b.build()
    })
    .join()
    .map_err(|_| "building the OTLP HTTP client panicked".to_string())?;
    built.map(Some).map_err(|e| format!("building the OTLP HTTP client with the TLS settings: {e}"))
}

/// OTLP/HTTP with protobuf bodies, over the exporter's own client or one
/// with the TLS settings.
fn http_exporter(settings: &super::Settings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(settings.traces_url.clone())
        .with_headers(settings.headers.clone().into_iter().collect());
    match tls_client(&settings.tls)? {
        Some(client) => exporter.with_http_client(client),
        None => exporter,
    }
    .build()
    .map_err(|e| format!("building the OTLP exporter for {}: {e}", settings.traces_url))
}

/// OTLP/gRPC (tonic): the file's headers as metadata (the exporter adds
/// `OTEL_EXPORTER_OTLP_HEADERS` itself); for https, the system's roots,
/// the named CA and the client certificate.
fn grpc_exporter(settings: &super::Settings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
    let mut headers = http::HeaderMap::new();
    for (k, v) in &settings.headers {
        let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("export.otlp.headers: {k:?}: {e}"))?;
        let value = http::HeaderValue::from_str(v).map_err(|e| format!("export.otlp.headers.{k}: {e}"))?;
        headers.insert(name, value);
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.traces_url.clone())
        .with_metadata(MetadataMap::from_headers(headers));
    if settings.traces_url.starts_with("https://") {
        // checked as for OTLP/HTTP: errors name the setting and file
        let m = tls_material(&settings.tls)?;
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = m.ca_pem {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = m.client_pem {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        builder = builder.with_tls_config(tls);
    }
    builder.build().map_err(|e| format!("building the OTLP/gRPC exporter for {}: {e}", settings.traces_url))
}

impl Sink {
    /// The provider exporting to `settings.traces_url` with `resource`.
    /// Errors: the exporter could not be built (a malformed URL).
    /// A gRPC exporter must be built inside the agent's tokio runtime (its
    /// channel's connection runs there; the batch thread only waits on it).
    pub fn new(settings: &super::Settings, resource: opentelemetry_sdk::Resource) -> Result<Sink, String> {
        let exporter = match settings.protocol {
            super::settings::Protocol::HttpProtobuf => http_exporter(settings)?,
            super::settings::Protocol::Grpc => grpc_exporter(settings)?,
        };
        let counts = Arc::new(Counts::default());
        let counting = Counting { inner: exporter, counts: counts.clone(), url: settings.traces_url.clone() };
        let batch = BatchConfigBuilder::default().with_max_queue_size(settings.max_queue_size).build();
        let processor = BatchSpanProcessor::builder(counting).with_batch_config(batch).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            // a client's unsampled traceparent must not hide a finding
            .with_sampler(Sampler::AlwaysOn)
            .with_max_events_per_span(super::spans::MAX_EVENTS as u32)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("mcp-sensor");
        Ok(Sink { provider, tracer, counts, max_queue: settings.max_queue_size as u64 })
    }

    pub fn counts(&self) -> &Arc<Counts> {
        &self.counts
    }

    /// Hands `rec` to the processor, or counts it dropped when the queue
    /// is full (checked here, so the processor itself never drops).
    pub fn send(&self, rec: SpanRecord) {
        if self.counts.queued() >= self.max_queue {
            self.counts.queue_full.fetch_add(1, Relaxed);
            return;
        }
        self.counts.submitted.fetch_add(1, Relaxed);
        let parent = match parent_context(rec.traceparent.as_deref(), rec.tracestate.as_deref()) {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => Context::new(),
        };
        let events = rec
            .events
            .into_iter()
            .map(|e| opentelemetry::trace::Event::new(e.name, system_time(e.ts_ns), e.attributes, 0))
            .collect();
        let mut attributes: Vec<KeyValue> = rec.attributes;
        if rec.traceparent.is_some() && !parent.has_active_span() {
            // the client sent one we could not read: the span starts a trace
            attributes.push(KeyValue::new("mcp_sensor.traceparent_invalid", true));
        }
        let mut span = self
            .tracer
            .span_builder(rec.name)
            .with_kind(SpanKind::Server)
            .with_start_time(system_time(rec.start_ns))
            .with_attributes(attributes)
            .with_events(events)
            .start_with_context(&self.tracer, &parent);
        if let Some(msg) = rec.error {
            opentelemetry::trace::Span::set_status(&mut span, Status::error(msg));
        }
        opentelemetry::trace::Span::end_with_timestamp(&mut span, system_time(rec.end_ns));
    }

    /// Exports what is queued and stops the export thread, waiting at most
    /// `timeout`. Returns the spans that were never exported, in all.
    pub fn shutdown(&self, timeout: Duration) -> u64 {
        if let Err(e) = self.provider.shutdown_with_timeout(timeout) {
            crate::say!("mcp-sensor: stopping the OTLP export: {e}");
        }
        self.counts.submitted.load(Relaxed).saturating_sub(self.counts.exported.load(Relaxed))
    }
}
