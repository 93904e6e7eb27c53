//! mcp-sensor's entry point: parses the command line and turns every error
//! into an exit status in exactly one place, printed with its full chain.
//! `exec` never writes to stdout: there it is the MCP channel.

use clap::Parser;
use mcp_sensor::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Doctor(_) | Command::Investigate(_) | Command::Rules(_) | Command::Status(_)) {
        // a report piped into `head` ends quietly when the pipe closes, as
        // other Unix tools do; `run` and `exec` keep ignoring SIGPIPE (their
        // output is counted when it is lost, never a reason to stop watching)
        // SAFETY: restoring a signal's default disposition at start, before
        // any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Exec(args) => mcp_sensor::exec_cmd::run(args),
        Command::Run(args) => mcp_sensor::daemon::run(args),
        Command::Doctor(args) => Ok(mcp_sensor::doctor::run(&args)),
        Command::Investigate(args) => mcp_sensor::investigate::run(args),
        Command::Rules(cmd) => Ok(mcp_sensor::rules_cmd::run(cmd)),
        Command::Status(args) => mcp_sensor::status::run(&args),
    };
    match result {
        Ok(status) => std::process::exit(status),
        Err(e) => {
            mcp_sensor::say!("mcp-sensor: error: {e:#}");
            std::process::exit(1);
        }
    }
}
