//! mcp-sensor's entry point: parses the command line and turns every error
//! into an exit status in exactly one place, printed with its full chain.
//! `exec` never writes to stdout: there it is the MCP channel.

use clap::Parser;
use mcp_sensor::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Exec(args) => mcp_sensor::exec_cmd::run(args),
        Command::Run(args) => mcp_sensor::daemon::run(args),
        Command::Doctor(args) => Ok(mcp_sensor::doctor::run(&args)),
        Command::Investigate(args) => mcp_sensor::investigate::run(args),
        Command::Rules(cmd) => Ok(mcp_sensor::rules_cmd::run(cmd)),
    };
    match result {
        Ok(status) => std::process::exit(status),
        Err(e) => {
            eprintln!("mcp-sensor: error: {e:#}");
            std::process::exit(1);
        }
    }
}
