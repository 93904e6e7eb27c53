//! xtask: the project's own commands. `cargo xtask test` runs every test
//! (unit tests without root, then the privileged end-to-end tests with real
//! BPF and real MCP software) and ends with one combined line,
//! `tests: N passed, M failed` (suites.rs); `cargo xtask bench` measures
//! overhead with and without the sensor in one run and prints the ratios
//! (`--macro`: real workloads with the host-wide daemon off and on,
//! bench_macro.rs; `--macro-memory`: the daemon's memory with 10,000
//! processes and 100 servers, bench_memory.rs);
//! `cargo xtask vmtest` runs a command on each pinned Debian kernel under
//! qemu.

mod bench;
mod bench_blocks;
mod bench_export;
mod bench_hooks;
mod bench_kill;
mod bench_macro;
mod bench_mcp;
mod bench_memory;
mod proc_usage;
mod suites;
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
        /// Only the tests whose name contains this (the VM matrix is then not run).
        filter: Option<String>,
        /// Leave out the VM kernel matrix (`cargo xtask vmtest`: 6 VMs, two at a time, ~45 min).
        #[arg(long)]
        no_vm: bool,
    },
    /// Overhead benchmarks; prints a Markdown table for BENCHMARKS.md.
    ///
    /// `--macro`: real workloads (file sweep, Rust build, git, Python and
    /// Node start-ups, tar, a test suite) with the host-wide daemon off and
    /// on; `--macro-memory`: the daemon's RSS with many processes and servers.
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

/// The cargo that runs xtask, or the one on PATH.
pub fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

pub fn cargo(args: &[&str]) -> Result<()> {
    let status = Command::new(cargo_bin())
        .args(args)
        .current_dir(root())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn test(filter: Option<String>, no_vm: bool) -> Result<()> {
    let mut suites = vec![suites::cargo_suite("unit", &["test", "--workspace"])?];
    suites.extend(e2e(filter.as_deref())?);
    if filter.is_none() && !no_vm {
        // the kernel matrix: the e2e kernel_ tests on each pinned kernel
        let c = vm::run(vm::VmArgs::matrix())?;
        suites.push(suites::Suite::new("vmtest", c.passed, c.failed));
    } else {
        eprintln!("xtask: the VM kernel matrix was not run ({})", if no_vm { "--no-vm" } else { "a filter was given" });
    }
    suites::report(&suites)
}

/// The root end-to-end tests, after installing the MCP test software.
fn e2e(filter: Option<&str>) -> Result<Vec<suites::Suite>> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("xtask: the end-to-end tests load BPF programs: run `cargo xtask test` as root (not run: one failure)");
        return Ok(vec![suites::Suite::new("e2e", 0, 1)]);
    }
    let setup = root().join("tests/mcp/setup.sh");
    let st = Command::new("bash").arg(&setup).status().context("tests/mcp/setup.sh")?;
    if !st.success() {
        bail!("installing the MCP test software failed (tests/mcp/setup.sh)");
    }
    // release: the VM matrix runs the same build
    let mut args = vec!["test", "--release", "-p", "mcp-sensor", "--test", "e2e", "--"];
    args.extend(filter);
    if filter.is_none() {
        args.extend(["--skip", "alone_"]);
    }
    let mut out = vec![suites::cargo_suite("e2e", &args)?];
    if filter.is_none() {
        // tests that load the whole host (thousands of processes, a flood)
        // or judge what a host-wide daemon logs: one at a time, after the rest
        out.push(suites::cargo_suite(
            "e2e-alone",
            &["test", "--release", "-p", "mcp-sensor", "--test", "e2e", "--", "alone_", "--test-threads=1"],
        )?);
    }
    if filter.is_none_or(|f| "kernel_".contains(f) || f.starts_with("kernel")) {
        // the compat object (5.10-5.16) on this kernel too, on every run
        out.push(suites::cargo_suite_env(
            "e2e-compat",
            &["test", "--release", "-p", "mcp-sensor", "--test", "e2e", "--", "kernel_"],
            &[("MCP_SENSOR_BPF_OBJECT", "compat")],
        )?);
    }
    Ok(out)
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Test { filter, no_vm } => test(filter, no_vm),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Vmtest(a) => {
            let c = vm::run(a)?;
            if c.failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Worker { what, iters } => bench::worker(&what, iters),
    }
}
