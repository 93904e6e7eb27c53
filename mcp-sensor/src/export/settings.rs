//! Where and how spans are exported: the `[export.otlp]` table of the
//! daemon's configuration and the standard OpenTelemetry environment
//! variables, resolved into one [`Settings`].
//!
//! Precedence: **the environment overrides the configuration file**, key
//! by key (a DaemonSet's `env:` or a systemd drop-in changes one setting
//! without editing the file). For the endpoint the signal-specific
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) comes before
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (a base: `/v1/traces` is appended), then
//! `endpoint` from the file (a base, like the variable). Export is off
//! unless one of them names an endpoint, or when `OTEL_SDK_DISABLED=true`.
//! Headers: the file's `headers`, then `OTEL_EXPORTER_OTLP_HEADERS` /
//! `OTEL_EXPORTER_OTLP_TRACES_HEADERS` over them (the exporter crate reads
//! these two itself and adds them last). TLS (an `https://` endpoint): the
//! system's roots, plus the CA of `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`
//! or `OTEL_EXPORTER_OTLP_CERTIFICATE` or `certificate`, and a client
//! certificate and key for mutual TLS (`..._CLIENT_CERTIFICATE`,
//! `..._CLIENT_KEY`, `client_certificate`, `client_key`), as the OTLP
//! exporter specification names them. `OTEL_EXPORTER_OTLP_TIMEOUT` and
//! `OTEL_BSP_*` are read by the crates themselves.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[export.otlp]` of the configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Base URL of the OTLP/HTTP receiver (`http://collector:4318`, or
    /// `https://`); spans go to `<endpoint>/v1/traces`. Empty: off (unless
    /// the environment names one).
    pub endpoint: String,
    /// PEM file of CA certificates trusted for an `https://` endpoint,
    /// besides the system's. Empty: the system's only.
    pub certificate: String,
    /// PEM files of a client certificate and its private key (mutual
    /// TLS): both or neither.
    pub client_certificate: String,
    pub client_key: String,
    /// `http/protobuf` (OTLP/HTTP, port 4318) or `grpc` (OTLP/gRPC, 4317).
    pub protocol: String,
    /// Extra request headers (`authorization = "Bearer ..."`).
    pub headers: BTreeMap<String, String>,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Export tool-call arguments and results (`gen_ai.tool.call.arguments`,
    /// `gen_ai.tool.call.result`, each cut at [`CONTENT_MAX`] bytes). Off by
    /// default: they may carry secrets.
    pub capture_content: bool,
    /// Spans waiting for export at most; past it new spans are dropped
    /// and counted (`export_queue_full`).
    pub max_queue_size: usize,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: String::new(),
            certificate: String::new(),
            client_certificate: String::new(),
            client_key: String::new(),
            protocol: PROTOCOL.into(),
            headers: BTreeMap::new(),
            service_name: SERVICE_NAME.into(),
            capture_content: false,
            max_queue_size: 2048,
        }
    }
}

/// OTLP/HTTP with protobuf bodies, the default protocol.
pub const PROTOCOL: &str = "http/protobuf";
/// OTLP/gRPC.
pub const GRPC: &str = "grpc";

/// How spans travel (the specification's `OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`: POST `<endpoint>/v1/traces`.
    HttpProtobuf,
    /// `grpc`: the TraceService at the endpoint, used as is.
    Grpc,
}
/// The default `service.name`.
pub const SERVICE_NAME: &str = "mcp-sensor";
/// Bytes of arguments or result kept per span when `capture_content` is on.
pub const CONTENT_MAX: usize = 4096;

/// What the exporter is built from: the file's table with the
/// environment over it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The full URL spans are posted to (`.../v1/traces`), or the gRPC
    /// server's URL.
    pub traces_url: String,
    pub protocol: Protocol,
    /// Where the URL came from: a variable's name or `export.otlp.endpoint`.
    pub source: &'static str,
    /// Headers from the file (the environment's are added by the exporter).
    pub headers: BTreeMap<String, String>,
    pub service_name: String,
    pub capture_content: bool,
    pub max_queue_size: usize,
    pub tls: Tls,
}

/// TLS files for an `https://` endpoint (PEM), each with where it was named.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tls {
    /// CA certificates to trust besides the system's roots.
    pub certificate: Option<(PathBuf, &'static str)>,
    /// A client certificate and its key (mutual TLS).
    pub client: Option<((PathBuf, &'static str), (PathBuf, &'static str))>,
}

/// A file setting: the traces variable, the general one, then the file's key.
fn file_setting(
    env: &impl Fn(&str) -> Option<String>,
    vars: [&'static str; 2],
    key: &'static str,
    file: &str,
) -> Option<(PathBuf, &'static str)> {
    vars.iter()
        .find_map(|v| env(v).map(|p| (PathBuf::from(p.trim()), *v)))
        .or_else(|| (!file.trim().is_empty()).then(|| (PathBuf::from(file.trim()), key)))
}

fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

impl Settings {
    /// `None`: export is off. Errors name the setting and what to write.
    /// `env` reads a variable (`std::env::var` in the daemon; a map in tests).
    pub fn resolve(cfg: &OtlpConfig, env: impl Fn(&str) -> Option<String>) -> Result<Option<Settings>, String> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let (protocol, psource) = match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL")) {
            Some(p) => (p, "OTEL_EXPORTER_OTLP_PROTOCOL"),
            None => (cfg.protocol.clone(), "export.otlp.protocol"),
        };
        let protocol = match protocol.trim() {
            PROTOCOL => Protocol::HttpProtobuf,
            GRPC => Protocol::Grpc,
            other => {
                return Err(format!(
                    "{psource} = {other:?}: write {PROTOCOL:?} (OTLP/HTTP, port 4318) or {GRPC:?} (OTLP/gRPC, port 4317); \
                     http/json is not built in"
                ))
            }
        };
        // OTLP/HTTP posts to <base>/v1/traces; gRPC takes the endpoint as is
        let traces_url = |base: &str| match protocol {
            Protocol::HttpProtobuf => traces_url(base),
            Protocol::Grpc => base.to_string(),
        };
        let (traces_url, source) = if let Some(u) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            (u, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        } else if let Some(u) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            (traces_url(&u), "OTEL_EXPORTER_OTLP_ENDPOINT")
        } else if !cfg.endpoint.trim().is_empty() {
            (traces_url(cfg.endpoint.trim()), "export.otlp.endpoint")
        } else {
            return Ok(None);
        };
        let traces_url = traces_url.trim().to_string();
        let scheme = ["http://", "https://"].into_iter().find(|s| traces_url.starts_with(s));
        if scheme.is_none_or(|s| traces_url.len() <= s.len()) || traces_url.contains(char::is_whitespace) {
            return Err(format!("{source} = {traces_url:?} is not an http:// or https:// URL (write e.g. http://127.0.0.1:4318)"));
        }
        let certificate = file_setting(
            &env,
            ["OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"],
            "export.otlp.certificate",
            &cfg.certificate,
        );
        let client_cert = file_setting(
            &env,
            ["OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"],
            "export.otlp.client_certificate",
            &cfg.client_certificate,
        );
        let client_key = file_setting(
            &env,
            ["OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"],
            "export.otlp.client_key",
            &cfg.client_key,
        );
        let client = match (client_cert, client_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some((_, named)), None) | (None, Some((_, named))) => {
                return Err(format!(
                    "{named} is set without its pair: mutual TLS needs both the client certificate \
                     (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE) and its key (OTEL_EXPORTER_OTLP_CLIENT_KEY)"
                ))
            }
        };
        if cfg.max_queue_size == 0 {
            return Err("export.otlp.max_queue_size must be at least 1".into());
        }
        let service_name = env("OTEL_SERVICE_NAME").unwrap_or_else(|| cfg.service_name.clone());
        Ok(Some(Settings {
            traces_url,
            protocol,
            source,
            headers: cfg.headers.clone(),
            service_name,
            capture_content: cfg.capture_content,
            max_queue_size: cfg.max_queue_size,
            tls: Tls { certificate, client },
        }))
    }
}

