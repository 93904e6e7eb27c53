//! xtask: the project's own commands. `cargo xtask test` runs every test
//! (unit tests without root, then the privileged end-to-end tests with real
//! BPF and real MCP software); `cargo xtask bench` measures overhead with
//! and without the sensor in one run and prints the ratios; `cargo xtask
//! vmtest` runs a command on each pinned Debian kernel under qemu.

mod bench;
mod bench_blocks;
mod bench_hooks;
mod bench_kill;
mod bench_mcp;
mod vm;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Unit tests, then the root end-to-end tests (needs root and BPF).
    Test {
        /// Only the tests whose name contains this.
        filter: Option<String>,
    },
    /// Overhead benchmarks; prints a Markdown table for BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Boots each pinned kernel (tests/vm/kernels.txt) under qemu, with and
    /// without BPF LSM, and runs a command inside with the host's root visible.
    Vmtest(vm::VmArgs),
    /// Internal: the measured loops, run as a separate process.
    #[command(hide = true)]
    Worker { what: String, iters: u64 },
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn cargo(args: &[&str]) -> Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(root())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn test(filter: Option<String>) -> Result<()> {
    cargo(&["test", "--workspace"])?;
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the end-to-end tests load BPF programs: run `cargo xtask test` as root");
    }
    let setup = root().join("tests/mcp/setup.sh");
    if setup.exists() {
        let st = Command::new("bash").arg(&setup).status().context("tests/mcp/setup.sh")?;
        if !st.success() {
            bail!("installing the MCP test software failed (tests/mcp/setup.sh)");
        }
    }
    let mut args = vec!["test", "-p", "mcp-sensor", "--test", "e2e", "--"];
    if let Some(f) = filter.as_deref() {
        args.push(f);
    }
    cargo(&args)
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Test { filter } => test(filter),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Vmtest(a) => vm::run(a),
        Cmd::Worker { what, iters } => bench::worker(&what, iters),
    }
}
