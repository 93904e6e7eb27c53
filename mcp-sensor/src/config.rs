//! The daemon's configuration file (TOML): its schema, its defaults, and
//! validation.
//!
//! Owns what `mcp-sensor run` can be told by file. The defaults are the
//! documented file `dist/mcp-sensor.toml`, embedded: with no `--config`
//! that file is what runs, and a test checks it parses to
//! [`Config::default`]'s values. Unknown keys are errors with file, line
//! and column; so are sizes that do not parse and values out of range.

use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};

/// The documented defaults, embedded.
pub const DEFAULT_TOML: &str = include_str!("../../dist/mcp-sensor.toml");

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub log: LogConfig,
    pub discovery: DiscoveryConfig,
    pub sensor: SensorConfig,
    pub metrics: MetricsConfig,
    /// `[export.otlp]`: OTLP trace export (export/).
    pub export: ExportConfig,
}

/// `[metrics]`: the Prometheus endpoint (metrics/http.rs); off by default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `IP:PORT` or `:PORT` to serve `/metrics` and `/healthz` on.
    pub address: Option<String>,
}

/// `[export]`: where events go besides the log.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    pub otlp: crate::export::OtlpConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub dir: PathBuf,
    #[serde(deserialize_with = "size")]
    pub max_file_size: u64,
    pub max_files: u32,
    /// `alerts.jsonl`: every alert line again, rotated apart (logfile.rs).
    #[serde(deserialize_with = "size")]
    pub alerts_max_file_size: u64,
    pub alerts_max_files: u32,
    /// Per-server budget on bulk event lines (budget.rs); 0: no limit.
    pub server_events_per_sec: u64,
    #[serde(deserialize_with = "size")]
    pub server_bytes_per_sec: u64,
    /// Also write the event lines to stdout (stdout_log.rs).
    pub stdout: bool,
}

impl LogConfig {
    /// The per-server budget.
    pub fn budget(&self) -> crate::budget::Limits {
        crate::budget::Limits { events_per_sec: self.server_events_per_sec, bytes_per_sec: self.server_bytes_per_sec }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    pub clients: Vec<String>,
    pub extra_clients: Vec<String>,
    pub stdio_pipes: bool,
    pub max_held_events: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    #[serde(deserialize_with = "size")]
    pub ring_buffer_size: u64,
    pub queue_size: usize,
    #[serde(deserialize_with = "size")]
    pub queue_bytes: u64,
    #[serde(deserialize_with = "size")]
    pub stdio_cap: u64,
    #[serde(deserialize_with = "size")]
    pub max_message: u64,
    /// Kernel WATCHED table entries (loader::Tables).
    pub max_watched: u64,
    /// Kernel CHANNELS table entries (loader::Tables).
    pub max_channels: u64,
}

/// A size: an integer of bytes or a string such as "64MiB".
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => crate::cli::parse_size(&s).map_err(serde::de::Error::custom),
    }
}

/// The built-in client list: the `clients` of the embedded file.
fn builtin_clients() -> Vec<String> {
    [
        "claude", "claude-desktop", "Claude", "cursor", "Cursor", "code", "code-insiders", "codium",
        "code-oss", "Code Helper", "windsurf", "Windsurf", "zed", "zed-editor", "zeditor", "goose",
        "goosed", "codex", "gemini", "qwen", "opencode", "crush", "amp", "cline", "copilot", "kiro",
        "trae", "lm-studio", "LM Studio",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            dir: PathBuf::from("/var/log/mcp-sensor"),
            max_file_size: 64 << 20,
            max_files: 8,
            alerts_max_file_size: 16 << 20,
            alerts_max_files: 4,
            server_events_per_sec: 10_000,
            server_bytes_per_sec: 4 << 20,
            stdout: false,
        }
    }
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            clients: builtin_clients(),
            extra_clients: Vec::new(),
            stdio_pipes: true,
            max_held_events: 16384,
        }
    }
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig {
            ring_buffer_size: 32 << 20,
            queue_size: 65536,
            queue_bytes: 64 << 20,
            stdio_cap: 16 << 20,
            max_message: 8 << 20,
            max_watched: u64::from(crate::loader::Tables::default().watched),
            max_channels: u64::from(crate::loader::Tables::default().channels),
        }
    }
}


#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The io error is in the message, not a `source`: a chain printed
    /// with `{:#}` would say it twice.
    #[error("reading {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    /// toml's message carries the line, column and the offending text.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Parses and validates `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string().trim_end().to_string() })?;
        cfg.validate().map_err(|message| ConfigError::Invalid { path: path.to_path_buf(), message })?;
        Ok(cfg)
    }

    /// The file at `path`, or the embedded defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Config::parse(DEFAULT_TOML, Path::new("<built-in defaults>")),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|error| ConfigError::Read { path: p.to_path_buf(), error })?;
                Config::parse(&text, p)
            }
        }
    }

    /// `run`'s flags over the file's sizes, validated as the file is.
    pub fn with_flags(mut self, f: &crate::cli::RunSizes) -> Result<Config, ConfigError> {
        let s = &mut self.sensor;
        s.ring_buffer_size = f.ring_buffer_size.unwrap_or(s.ring_buffer_size);
        s.max_watched = f.max_watched.unwrap_or(s.max_watched);
        s.max_channels = f.max_channels.unwrap_or(s.max_channels);
        let flags = |m: String| m.replace("sensor.", "--").replace('_', "-");
        self.validate().map_err(|m| ConfigError::Invalid { path: "command line".into(), message: flags(m) })?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.sensor;
        crate::limits::check_ring("sensor.ring_buffer_size", s.ring_buffer_size)?;
        crate::limits::check_queue_bytes("sensor.queue_bytes", s.queue_bytes)?;
        crate::limits::check_table("sensor.max_watched", s.max_watched)?;
        crate::limits::check_table("sensor.max_channels", s.max_channels)?;
        if s.queue_size == 0 {
            return Err("sensor.queue_size must be at least 1".into());
        }
        if self.log.max_files == 0 {
            return Err("log.max_files must be at least 1 (the live file)".into());
        }
        if self.log.max_file_size < 4096 {
            return Err(format!("log.max_file_size = {} is below the 4KiB minimum", self.log.max_file_size));
        }
        if self.log.alerts_max_files == 0 {
            return Err("log.alerts_max_files must be at least 1 (the live file)".into());
        }
        if self.log.alerts_max_file_size < 4096 {
            return Err(format!("log.alerts_max_file_size = {} is below the 4KiB minimum", self.log.alerts_max_file_size));
        }
        if !self.log.dir.is_absolute() {
            return Err(format!("log.dir = {:?} must be an absolute path", self.log.dir));
        }
        for c in self.client_names() {
            if c.is_empty() || c.len() > 15 {
                return Err(format!(
                    "discovery client {c:?}: a process name is 1 to 15 bytes (the kernel's comm); \
                     use the first 15 characters"
                ));
            }
        }
        if let Some(a) = &self.metrics.address {
            crate::metrics::http::parse_addr(a).map_err(|e| format!("metrics.address: {e}"))?;
        }
        if self.discovery.max_held_events == 0 {
            return Err("discovery.max_held_events must be at least 1".into());
        }
        Ok(())
    }

    /// The client process names in effect: `clients` plus `extra_clients`.
    pub fn client_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.discovery.clients.iter().chain(&self.discovery.extra_clients).cloned().collect();
        v.sort();
        v.dedup();
        v
    }

    /// What of `new` cannot take effect without a restart (kernel-side
    /// sizes and switches fixed at load), by key name.
    pub fn needs_restart(&self, new: &Config) -> Vec<&'static str> {
        let mut v = Vec::new();
        let (a, b) = (&self.sensor, &new.sensor);
        if a.ring_buffer_size != b.ring_buffer_size {
            v.push("sensor.ring_buffer_size");
        }
        if a.queue_size != b.queue_size {
            v.push("sensor.queue_size");
        }
        if a.queue_bytes != b.queue_bytes {
            v.push("sensor.queue_bytes");
        }
        if a.stdio_cap != b.stdio_cap {
            v.push("sensor.stdio_cap");
        }
        if a.max_message != b.max_message {
            v.push("sensor.max_message");
        }
        if a.max_watched != b.max_watched {
            v.push("sensor.max_watched");
        }
        if a.max_channels != b.max_channels {
            v.push("sensor.max_channels");
        }
        if self.discovery.stdio_pipes != new.discovery.stdio_pipes {
            v.push("discovery.stdio_pipes");
        }
        if self.log.dir != new.log.dir {
            v.push("log.dir");
        }
        if self.log.stdout != new.log.stdout {
            v.push("log.stdout");
        }
        if self.metrics != new.metrics {
            v.push("metrics.address");
        }
        if self.export != new.export {
            v.push("export.otlp");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("/etc/mcp-sensor.toml"))
    }

    #[test]
    fn embedded_file_is_the_defaults() {
        assert_eq!(Config::load(None).unwrap(), Config::default());
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn keys_override_and_sizes_parse() {
        let c = parse("[log]\nmax_file_size = \"1MiB\"\nmax_files = 3\n[discovery]\nextra_clients = [\"my-agent\"]\n[sensor]\nqueue_bytes = 65536\n").unwrap();
        assert_eq!(c.log.max_file_size, 1 << 20);
        assert_eq!(c.log.max_files, 3);
        assert_eq!(c.sensor.queue_bytes, 65536);
        assert!(c.client_names().contains(&"my-agent".to_string()));
        assert!(c.client_names().contains(&"claude".to_string()));
        let only = parse("[discovery]\nclients = [\"a\"]\n").unwrap();
        assert_eq!(only.client_names(), vec!["a"]);
    }

    #[test]
    fn unknown_keys_are_errors_with_file_and_line() {
        let e = parse("[log]\nmax_files = 2\n\n[discovery]\nstdio_pipe = false\n").unwrap_err().to_string();
        assert!(e.starts_with("/etc/mcp-sensor.toml: "), "{e}");
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("stdio_pipe"), "{e}");
        let e = parse("[logs]\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("logs"), "{e}");
    }

    #[test]
    fn bad_values_say_what_to_write() {
        let e = parse("[sensor]\nring_buffer_size = \"3MiB\"\n").unwrap_err().to_string();
        assert!(e.contains("power of two"), "{e}");
        let e = parse("[log]\nmax_file_size = \"lots\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("not a size"), "{e}");
        let e = parse("[log]\ndir = \"relative/dir\"\n").unwrap_err().to_string();
        assert!(e.contains("absolute"), "{e}");
        let e = parse("[discovery]\nextra_clients = [\"a-very-long-process-name\"]\n").unwrap_err().to_string();
        assert!(e.contains("15"), "{e}");
        let e = parse("[log]\nmax_files = \"two\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("[metrics]\naddress = \"localhost\"\n").unwrap_err().to_string();
        assert!(e.contains("metrics.address") && e.contains("127.0.0.1:9464"), "{e}");
        let c = parse("[metrics]\naddress = \":9464\"\n[log]\nstdout = true\n").unwrap();
        assert_eq!((c.metrics.address.as_deref(), c.log.stdout), (Some(":9464"), true));
    }

    #[test]
    fn sizes_that_cannot_hold_one_record_are_refused_naming_the_minimum() {
        let e = parse("[sensor]\nring_buffer_size = \"4K\"\n").unwrap_err().to_string();
        assert!(e.contains("sensor.ring_buffer_size") && e.contains("smaller than one kernel record"), "{e}");
        assert!(e.contains(&crate::limits::human(crate::limits::RING_MIN)), "{e}");
        let e = parse("[sensor]\nqueue_bytes = 0\n").unwrap_err().to_string();
        assert!(e.contains("sensor.queue_bytes") && e.contains("minimum"), "{e}");
        let e = parse("[sensor]\nring_buffer_size = \"2GiB\"\n").unwrap_err().to_string();
        assert!(e.contains("1GiB"), "{e}");
        let c = parse("[sensor]\nmax_channels = 200000\nmax_watched = 100000\n").unwrap();
        assert_eq!((c.sensor.max_channels, c.sensor.max_watched), (200000, 100000));
        assert!(parse("[sensor]\nmax_channels = 10\n").unwrap_err().to_string().contains("max_channels"));
    }

    #[test]
    fn restart_only_keys_are_named() {
        let a = Config::default();
        let mut b = a.clone();
        b.sensor.ring_buffer_size = 64 << 20;
        b.discovery.extra_clients.push("x".into());
        assert_eq!(a.needs_restart(&b), vec!["sensor.ring_buffer_size"]);
    }
}
