//! Command line: the raw arguments as the user typed them (clap). Turning
//! them into a validated configuration is each command's first step.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "mcp-sensor", version, about = "eBPF sensor for MCP servers: what each tool call executed, opened and connected to")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run CMD (an MCP server) under watch: stdio untouched, exit status passed through.
    Exec(ExecArgs),
    /// Watch the whole host: find MCP servers nobody wrapped, log to a durable rotating log.
    Run(RunArgs),
    /// Check which kernel features the sensor needs are present, and which
    /// hooks and enforcement it uses on this kernel.
    Doctor(DoctorArgs),
    /// Validate or list rules: the embedded defaults plus the files given.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// What did a tool call do? Timelines of sessions, calls and their host activity from event logs.
    Investigate(InvestigateArgs),
    /// What the running daemon watches: its servers, mode, hooks and drops (root).
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The running daemon's state directory (its `--state-dir`): the
    /// status socket is DIR/status.sock.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/mcp-sensor")]
    pub state_dir: PathBuf,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// One JSON object on stdout (the checks, the probed features, the plan,
    /// and the load result with the verifier's log): what to attach to a
    /// bug report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate rule files (over the embedded defaults): every problem as
    /// file:line:column; exit status 1 when any.
    Check {
        /// Rule files or directories of *.yaml, in load order.
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// List the active rules: id, severity, action, kinds, enabled.
    List {
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// One JSON object per rule instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Where rules come from and what they remember.
#[derive(Debug, Clone, Args)]
pub struct RulesArgs {
    /// A rule file or a directory of *.yaml, loaded after the embedded
    /// defaults, in order (repeatable). Default: /etc/mcp-sensor/rules.d
    /// when it exists. Changed files are reloaded while running; a change
    /// that fails validation keeps the previous rules.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Where state kept between runs goes (tool definitions, for the
    /// tool-description-changed rule).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/mcp-sensor")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML, see docs/config.md). Default: the built-in
    /// defaults (dist/mcp-sensor.toml). SIGHUP reloads it.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub rules: RulesArgs,
    /// Check the configuration and exit (0: valid) without loading the sensor.
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub sizes: RunSizes,
    /// Enforce rules with `action: kill` on the servers found (not on
    /// candidates still being classified): kill (or, for connects, refuse)
    /// in the kernel where the rule allows, else from the agent. Without
    /// it, kill rules only alert (`would_kill`).
    #[arg(long)]
    pub enforce: bool,
    /// Serve Prometheus metrics (`/metrics`) and a health check
    /// (`/healthz`) on ADDR, over metrics.address: IP:PORT
    /// (127.0.0.1:9464) or :PORT (every IPv4 address).
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics::http::parse_addr)]
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Also write the event lines to stdout (as log.stdout = true), for
    /// collectors that read a container's output.
    #[arg(long)]
    pub log_stdout: bool,
}

/// `run`'s flags over the configuration file's `[sensor]` sizes (checked
/// as the file's are, by `--check-config` too).
#[derive(Debug, Clone, Default, Args)]
pub struct RunSizes {
    /// Kernel ring-buffer size, over sensor.ring_buffer_size (a power of
    /// two of 32KiB to 1GiB: smaller cannot hold one exec or stdio record).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub ring_buffer_size: Option<u64>,
    /// Kernel table of watched processes, in entries, over sensor.max_watched.
    #[arg(long, value_name = "N")]
    pub max_watched: Option<u64>,
    /// Kernel table of stdio channels, in entries (two per idle process with
    /// pipes on stdin and stdout), over sensor.max_channels.
    #[arg(long, value_name = "N")]
    pub max_channels: Option<u64>,
}

/// Settings of the kernel side and the queue, shared by every command that
/// loads the sensor.
#[derive(Debug, Clone, Args)]
pub struct SensorArgs {
    /// Kernel ring-buffer size: a power of two of 32KiB to 1GiB (smaller
    /// cannot hold one exec or stdio record); K, M, G suffixes, or KiB/MiB/GiB.
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = parse_size)]
    pub ring_buffer_size: u64,
    /// Records the agent queues between the ring drain and processing.
    #[arg(long, value_name = "N", default_value_t = 65536)]
    pub queue_size: usize,
    /// Bytes of records the agent queues at most (at least one record: 32KiB).
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub queue_bytes: u64,
    /// Kernel table of watched processes, in entries (1024 to 4194304;
    /// ~90 bytes of kernel memory each, allocated at start).
    #[arg(long, value_name = "N", default_value_t = 16384)]
    pub max_watched: u64,
    /// Kernel table of stdio channels, in entries (1024 to 4194304; ~100
    /// bytes each). One server's tree needs few; `run` defaults to 65536.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_channels: u64,
    /// Stdio bytes captured from one read or write at most.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub stdio_cap: u64,
    /// JSON-RPC messages longer than this keep a prefix (id and method are
    /// still recovered) and report their true length.
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = parse_size)]
    pub max_message: u64,
    /// Do not capture the JSON-RPC channel (exec/open/connect only).
    #[arg(long)]
    pub no_stdio_capture: bool,
    /// Enforce rules with `action: kill`: kill (or, for connects, refuse)
    /// in the kernel where the rule allows, else from the agent. Without
    /// it, kill rules only alert (`would_kill`).
    #[arg(long)]
    pub enforce: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Write events as JSON lines to PATH (created 0600, appended). Default: stderr.
    /// Never stdout: that is the MCP channel.
    #[arg(long, value_name = "PATH")]
    pub events: Option<PathBuf>,
    #[command(flatten)]
    pub sensor: SensorArgs,
    #[command(flatten)]
    pub rules: RulesArgs,
    /// After CMD exits, keep watching (and, with --enforce, enforcing on) the
    /// processes it left behind for at most SECS seconds, in a detached
    /// continuation; exec itself exits with CMD's status at once. 0: stop
    /// when CMD exits. A `watch_end` event marks the end (docs/events.md).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub watch_after_exit: u64,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub cmd: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InvestigateFormat {
    /// Readable text (the default on a terminal).
    Table,
    /// sessions -> calls -> activity, documented in docs/investigate.md (the default otherwise).
    Json,
}

#[derive(Debug, Args)]
pub struct InvestigateArgs {
    /// Event logs: files, or directories (their events.jsonl* files, rotated ones oldest first).
    /// Default: /var/log/mcp-sensor.
    #[arg(value_name = "LOG")]
    pub logs: Vec<PathBuf>,
    /// Sessions of the server whose name contains TEXT (any case), or whose pid is TEXT.
    #[arg(long, value_name = "TEXT")]
    pub server: Option<String>,
    /// Calls of this tool (or method, for requests other than tools/call); globs like `read_*`.
    #[arg(long, value_name = "NAME")]
    pub tool: Option<String>,
    /// The call with this request id (`3` matches 3 and "3").
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Calls in which this pid acted (and its activity outside calls).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Calls with an alert of this rule (globs like `ssh-*`).
    #[arg(long, value_name = "RULE")]
    pub rule: Option<String>,
    /// From this time: RFC 3339 (`2026-11-21T12:00:00Z`, `...+02:00`, `2026-11-21`) or ago (`10m`, `2h`, `1d`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Until this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Output on stdout. Default: table on a terminal, else json; none with --html alone.
    #[arg(long, value_enum)]
    pub format: Option<InvestigateFormat>,
    /// Also write a self-contained HTML page with a visual timeline to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Table: list every event (by default long groups show their first events and a count).
    #[arg(long)]
    pub all: bool,
}

/// Parses `4096`, `64K`, `32MiB`, `1G` (binary units either way).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size (try 4096, 64K, 32MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        u => return Err(format!("unknown size unit `{u}` in `{s}` (use K, M or G)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("3 parsecs").unwrap_err().contains("unit"));
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn exec_takes_everything_after_cmd_verbatim() {
        let cli = Cli::try_parse_from(["mcp-sensor", "exec", "--events", "/tmp/e", "--", "node", "--flag", "-x"]).unwrap();
        let Command::Exec(a) = cli.command else { panic!() };
        assert_eq!(a.cmd, vec!["node", "--flag", "-x"]);
        assert_eq!(a.events.as_deref(), Some(std::path::Path::new("/tmp/e")));
        assert_eq!(a.sensor.ring_buffer_size, 32 << 20);
    }

    #[test]
    fn run_takes_a_config_path() {
        let cli = Cli::try_parse_from(["mcp-sensor", "run", "--config", "/etc/mcp-sensor.toml"]).unwrap();
        let Command::Run(a) = cli.command else { panic!() };
        assert_eq!(a.config.as_deref(), Some(std::path::Path::new("/etc/mcp-sensor.toml")));
        assert!(!a.check_config);
    }

    #[test]
    fn rules_are_repeatable_and_rules_check_takes_paths() {
        let cli = Cli::try_parse_from(["mcp-sensor", "exec", "--rules", "a.yaml", "--rules", "d", "--", "srv"]).unwrap();
        let Command::Exec(a) = cli.command else { panic!() };
        assert_eq!(a.rules.rules, vec![PathBuf::from("a.yaml"), PathBuf::from("d")]);
        let cli = Cli::try_parse_from(["mcp-sensor", "rules", "check", "x.yaml", "y.yaml"]).unwrap();
        let Command::Rules(RulesCommand::Check { paths }) = cli.command else { panic!() };
        assert_eq!(paths.len(), 2);
    }

    #[test]
    fn exec_needs_a_command() {
        assert!(Cli::try_parse_from(["mcp-sensor", "exec"]).is_err());
    }
}
