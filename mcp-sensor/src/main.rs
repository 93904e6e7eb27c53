//! mcp-sensor's entry point: parses the command line and turns every error
//! into an exit status in exactly one place, printed with its full chain.
//! Never writes to stdout (in `exec` mode stdout is an MCP channel).

use clap::Parser;
use mcp_sensor::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Exec(args) => mcp_sensor::exec_cmd::run(args),
        Command::Run(args) => mcp_sensor::daemon::run(args),
        Command::Doctor => Ok(mcp_sensor::doctor::run()),
    };
    match result {
        Ok(status) => std::process::exit(status),
        Err(e) => {
            eprintln!("mcp-sensor: error: {e:#}");
            std::process::exit(1);
        }
    }
}
