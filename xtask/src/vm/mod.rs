//! `cargo xtask vmtest`: the kernel matrix. Boots each pinned Debian kernel
//! (tests/vm/kernels.txt) under qemu (TCG: no KVM on our machines), with and
//! without BPF LSM, with the host's root filesystem visible read-only inside,
//! runs one command there and reports per (kernel, lsm).
//!
//! Why a runner of our own (qemu + a busybox initramfs, as aya's integration
//! tests do) and not a ready one:
//! - the `vmtest` crate shares the host's root over 9p and its README asks for
//!   `CONFIG_9P_FS=y`, `CONFIG_VIRTIO_CONSOLE=y`: Debian's cloud kernels have
//!   no 9p, and 5.10/6.1 build virtio as modules;
//! - virtme-ng 1.42 (PyPI), tried on these kernels under TCG: it only drives
//!   the Rust virtiofsd, so with Debian 12's qemu (the C virtiofsd in
//!   qemu-system-common) it fell back to 9p and the guest found no root; its
//!   initramfs could not load 6.12's xz-compressed modules ("Invalid ELF
//!   header magic"); it also needs kmod's depmod on the host.
//!
//! The pieces: `kernels` (pins, apt-get download into a cache of our own,
//! unpacking), `initramfs` (busybox, the modules virtiofs needs, `init.sh`),
//! `qemu` (read-only virtiofsd, qemu, console markers, timeout), `suite`
//! (tests/vm/suite.txt: which test runs on which boot).
//!
//! VMs boot `--jobs` at a time (2 by default): each has one vCPU, so two
//! use the machine's two cores. The e2e tests' time in a TCG guest is
//! mostly the MCP SDK client's Python start (~20 s of `import mcp` per
//! session, 1 s natively), which no guest setting shortened.

mod initramfs;
mod kernels;
mod qemu;
mod suite;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args)]
pub struct VmArgs {
    /// Only this kernel (a NAME from tests/vm/kernels.txt; repeatable).
    #[arg(long = "kernel", value_name = "NAME")]
    kernels: Vec<String>,
    /// Boot with BPF LSM enabled (`on`), without (`off`), or each way.
    #[arg(long, value_enum, default_value = "both")]
    lsm: LsmSel,
    /// Seconds one VM may take, boot included, before qemu is killed.
    #[arg(long, default_value_t = 1500)]
    timeout: u64,
    /// VMs booted at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
    jobs: u32,
    /// Virtual CPUs. 1 by default: on a 2-core host, busy with other builds,
    /// 2 vCPUs made a 6.12 VM ~40% slower (boot, execs, node, python) and a
    /// 6.1 VM no faster.
    #[arg(long, default_value_t = 1)]
    smp: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    /// A host directory the command may write to (an overlay: the host's
    /// files stay visible, writes stay in the VM); repeatable. /tmp, /run,
    /// /var/tmp (empty), /var and HOME are always writable.
    #[arg(long, value_name = "DIR")]
    writable: Vec<PathBuf>,
    /// An environment variable for the command (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Print the command's output for every VM, not only failed ones.
    #[arg(short, long)]
    verbose: bool,
    /// The command to run in each VM (default: the e2e tests of
    /// tests/vm/suite.txt for that boot, built first).
    #[arg(last = true, value_name = "CMD")]
    cmd: Vec<String>,
}

impl VmArgs {
    /// The whole matrix with the default suite, as `cargo xtask test` runs it.
    pub fn matrix() -> VmArgs {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            a: VmArgs,
        }
        <Defaults as clap::Parser>::parse_from(["vmtest"]).a
    }
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum LsmSel {
    On,
    Off,
    Both,
}

/// Empty tmpfs in the VM.
const TMPFS: &[&str] = &["/tmp", "/run", "/var/tmp"];
/// Overlays in the VM (the host's content visible, writable in memory):
/// /var for /var/log, /var/lib/mcp-sensor, /var/cache; /root for HOME and the
/// caches of npm, pip and pyenv under it.
const OVERLAY: &[&str] = &["/var", "/root"];

pub fn run(a: VmArgs) -> Result<Counts> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("vmtest needs root: virtiofsd shares / from a mount namespace of its own");
    }
    for tool in ["qemu-system-x86_64", "dpkg-deb", "apt-get"] {
        if which(tool).is_none() {
            bail!("{tool} not found: run scripts/install-deps.sh");
        }
    }
    let root = crate::root();
    let pins = kernels::read_pins(&root.join("tests/vm/kernels.txt"))?;
    let wanted: Vec<kernels::Pin> = if a.kernels.is_empty() {
        pins.clone()
    } else {
        a.kernels
            .iter()
            .map(|n| {
                pins.iter().find(|p| &p.name == n).cloned().with_context(|| {
                    let names: Vec<&str> = pins.iter().map(|p| p.name.as_str()).collect();
                    format!("no kernel {n:?} in tests/vm/kernels.txt (pinned: {})", names.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };
    let cmd = if a.cmd.is_empty() { kernel_suite()? } else { VmCommand::Given(a.cmd.clone()) };
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let mut env = vec![
        ("PATH".to_string(), std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())),
        ("HOME".into(), home.clone()),
        ("USER".into(), "root".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("VMTEST".into(), "1".into()),
    ];
    for v in ["RUST_LOG", "RUST_BACKTRACE", "CI", "NO_COLOR"] {
        if let Ok(x) = std::env::var(v) {
            env.push((v.into(), x));
        }
    }
    for kv in &a.env {
        match kv.split_once('=') {
            Some((n, v)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                env.push((n.into(), v.into()))
            }
            _ => bail!("--env {kv:?}: NAME=VALUE, NAME of letters, digits and _"),
        }
    }
    let Writable { tmpfs, overlay, kept } = writable(&home, &a.writable)?;

    let cache = kernels::cache_dir();
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let _lock = one_run_at_a_time(&cache)?;
    let kernels = kernels::fetch(&cache, &pins, &wanted)?;
    let logs = root.join("target/vmtest");
    std::fs::create_dir_all(&logs)?;
    let rundir = RunDir(std::env::temp_dir().join(format!("mcp-sensor-vmtest-{}", std::process::id())));
    std::fs::create_dir_all(&rundir.0)?;
    let plan = Plan { cmd, env, cwd: std::env::current_dir()?, tmpfs, overlay, kept, logs, rundir, args: &a };
    let variants: &[bool] = match a.lsm {
        LsmSel::On => &[true],
        LsmSel::Off => &[false],
        LsmSel::Both => &[true, false],
    };
    let boots: Vec<(&kernels::Kernel, bool)> = kernels.iter().flat_map(|k| variants.iter().map(move |&b| (k, b))).collect();
    let results = plan.boot_all(&boots)?;
    drop(plan);

    let vms_passed = results.iter().filter(|r| r.pass).count();
    println!();
    for r in &results {
        println!("{}", r.line);
    }
    let counts = Counts {
        passed: results.iter().map(|r| r.tests.0).sum(),
        failed: results.iter().map(|r| r.tests.1).sum(),
    };
    println!("vmtest: {vms_passed} of {} VMs passed", results.len());
    println!("vmtest: {} passed, {} failed", counts.passed, counts.failed);
    Ok(counts)
}

/// Tests across the VMs of a run: a VM whose command printed cargo test
/// result lines counts those; one that printed none counts as one test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
}

/// One VM's result.
struct VmResult {
    pass: bool,
    /// (passed, failed) tests.
    tests: (u64, u64),
    line: String,
}

/// What each VM runs.
enum VmCommand {
    /// The command line given after `--`, in every VM.
    Given(Vec<String>),
    /// The e2e binary with the tests of tests/vm/suite.txt for the boot.
    Suite { exe: String, entries: Vec<suite::Entry> },
}

impl VmCommand {
    fn argv(&self, bpf: bool) -> Vec<String> {
        match self {
            VmCommand::Given(c) => c.clone(),
            VmCommand::Suite { exe, entries } => {
                let mut v = vec![exe.clone(), "--exact".into()];
                v.extend(suite::for_boot(entries, bpf));
                v.push("--test-threads=1".into());
                v
            }
        }
    }
}

/// The in-VM suite run when no command is given: the e2e tests that
/// tests/vm/suite.txt lists (checked against the binary's `--list`), with
/// the release sensor; both built here first.
fn kernel_suite() -> Result<VmCommand> {
    crate::cargo(&["build", "--release", "-p", "mcp-sensor"])?;
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--release", "-p", "mcp-sensor", "--test", "e2e", "--no-run", "--message-format=json"])
        .current_dir(crate::root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("building the e2e tests")?;
    if !out.status.success() {
        bail!("building the e2e tests failed");
    }
    let exe = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "e2e")
        .find_map(|m| m["executable"].as_str().map(str::to_string))
        .context("no e2e test executable in cargo's output")?;
    let list = std::process::Command::new(&exe).args(["--list", "--format=terse"]).output().context("listing the e2e tests")?;
    if !list.status.success() {
        bail!("{exe} --list failed ({})", list.status);
    }
    let file = crate::root().join("tests/vm/suite.txt");
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let entries = suite::parse(&text)?;
    suite::check(&entries, &suite::listed(&String::from_utf8_lossy(&list.stdout)))?;
    Ok(VmCommand::Suite { exe, entries })
}

/// (passed, failed) from cargo test's `test result:` lines in `output`
/// (console lines carry a time prefix).
fn test_counts(output: &[String]) -> Option<(u64, u64)> {
    output
        .iter()
        .filter_map(|l| l.find("test result: ").and_then(|at| crate::suites::parse_cargo_result(&l[at..])))
        .reduce(|a, b| (a.0 + b.0, a.1 + b.1))
}

/// What every VM of a run shares.
struct Plan<'a> {
    cmd: VmCommand,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    tmpfs: Vec<String>,
    overlay: Vec<String>,
    kept: Vec<String>,
    logs: PathBuf,
    rundir: RunDir,
    args: &'a VmArgs,
}

impl Plan<'_> {
    /// Every VM, `--jobs` at a time; results in `boots` order.
    fn boot_all(&self, boots: &[(&kernels::Kernel, bool)]) -> Result<Vec<VmResult>> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Mutex;
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<VmResult>>>> = Mutex::new((0..boots.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..(self.args.jobs as usize).min(boots.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(k, bpf)) = boots.get(i) else { return };
                    let r = self.boot(k, bpf);
                    results.lock().unwrap()[i] = Some(r);
                });
            }
        });
        results.into_inner().unwrap().into_iter().map(|r| r.expect("every boot ran")).collect()
    }

    /// One VM.
    fn boot(&self, k: &kernels::Kernel, bpf: bool) -> Result<VmResult> {
        let onoff = if bpf { "on" } else { "off" };
        let label = format!("{}-lsm-{onoff}", k.pin.name);
        let lsm = k.lsm_arg(bpf)?;
        let mut env = self.env.clone();
        env.push(("VMTEST_KERNEL".into(), k.pin.name.clone()));
        env.push(("VMTEST_RELEASE".into(), k.release.clone()));
        env.push(("VMTEST_LSM".into(), onoff.into()));
        // what the in-VM tests must see, from the pin and the boot line
        // (tests/e2e/kernel.rs), not from the sensor
        env.push(("MCP_SENSOR_EXPECT_OBJECT".into(), k.pin.object.clone()));
        let enforcement = if bpf { "lsm_deny" } else { "sigkill_at_syscall" };
        env.push(("MCP_SENSOR_EXPECT_ENFORCEMENT".into(), enforcement.into()));
        let guest = initramfs::Guest {
            hostname: format!("vmtest-{}", k.pin.name.replace('.', "-")),
            tmpfs: &self.tmpfs,
            overlay: &self.overlay,
            kept: &self.kept,
            script: script(&env, &self.cwd, &self.cmd.argv(bpf)),
        };
        // a directory per VM: its initramfs, virtiofsd's socket and root
        let rundir = self.rundir.0.join(&label);
        std::fs::create_dir_all(&rundir)?;
        let cpio = rundir.join(format!("{label}.cpio"));
        initramfs::build(k, &guest, &cpio)?;
        let log = self.logs.join(format!("{label}.log"));
        eprintln!("vmtest: {label}: booting {} (lsm={lsm}), console in {}", k.release, log.display());
        let o = qemu::run(&qemu::Spec {
            vmlinuz: &k.vmlinuz,
            initramfs: &cpio,
            append: format!("console=ttyS0 panic=-1 lsm={lsm}"),
            memory_mib: self.args.memory,
            smp: self.args.smp,
            timeout: Duration::from_secs(self.args.timeout),
            log: &log,
            rundir: &rundir,
        });
        let _ = std::fs::remove_file(&cpio);
        let o = o?;
        let pass = o.exit == Some(0) && o.problem.is_none();
        // one block per VM, whole, however the VMs interleave
        let mut block = String::new();
        if self.args.verbose || !pass {
            let skip = if self.args.verbose { 0 } else { o.output.len().saturating_sub(40) };
            for l in &o.output[skip..] {
                block += &format!("    | {l}\n");
            }
        }
        let secs = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()));
        let what = match (&o.problem, o.exit) {
            (Some(p), _) => p.clone(),
            (None, Some(c)) => format!("exit {c}"),
            (None, None) => "no exit status".into(),
        };
        let line = format!(
            "{label:<14} {}  {:>6} total, {:>6} to init, {:>6} to command  {what}  log: {}",
            if pass { "PASS" } else { "FAIL" },
            secs(Some(o.total)),
            secs(o.init_at),
            secs(o.run_at),
            log.display()
        );
        print!("{block}{line}\n");
        let tests = match test_counts(&o.output) {
            // a VM that failed with every test passing still failed
            Some((p, f)) => (p, if pass { f } else { f.max(1) }),
            None => (u64::from(pass), u64::from(!pass)),
        };
        Ok(VmResult { pass, tests, line })
    }
}

/// The VM's writable places.
struct Writable {
    /// Empty tmpfs mounts.
    tmpfs: Vec<String>,
    /// Overlays: the host's directory visible, writes in memory.
    overlay: Vec<String>,
    /// Overlays inside an empty tmpfs: the checkout the command runs from,
    /// when it lies in one of those places (CI clones into a folder of its
    /// own, which may be under /tmp). The place stays an empty tmpfs, as
    /// the tests expect of /tmp (their scratch files on tmpfs, not on an
    /// overlay of the host's /tmp: on an overlay whose lower is virtiofs,
    /// the alias tests' hard links were not stopped, 3 Dec 2026).
    kept: Vec<String>,
}

/// `s` is one of `l` or inside one.
fn covered(s: &str, l: &[String]) -> bool {
    l.iter().any(|o| s == o || s.starts_with(&format!("{o}/")))
}

/// Of the directories `here`, those inside an empty tmpfs place, outermost
/// only (`Writable::kept`).
fn kept(here: &[String], tmpfs: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for h in here {
        if covered(h, tmpfs) && !covered(h, &kept) {
            kept.retain(|k| !covered(k, std::slice::from_ref(h)));
            kept.push(h.clone());
        }
    }
    kept
}

/// The VM's writable places, with HOME, the tests' tests/.deps and the
/// `--writable` directories added as overlays unless already covered.
fn writable(home: &str, extra: &[PathBuf]) -> Result<Writable> {
    let tmpfs: Vec<String> = TMPFS.iter().map(|s| s.to_string()).collect();
    let mut overlay: Vec<String> = OVERLAY.iter().map(|s| s.to_string()).collect();
    let here = [crate::root(), std::env::current_dir()?].map(|h| h.display().to_string());
    let kept = kept(&here, &tmpfs);
    // the tests' installed software (tests/mcp/setup.sh): npm and uv write
    // to their caches there even offline (a tool call's `npm install
    // --offline`, tests/e2e/benign.rs)
    let deps = std::fs::canonicalize(crate::root().join("tests/.deps")).ok().filter(|d| d.is_dir());
    for d in std::iter::once(Path::new(home)).chain(deps.as_deref()).chain(extra.iter().map(PathBuf::as_path)) {
        let d = std::path::absolute(d)?;
        if !d.is_dir() {
            bail!("writable directory {} does not exist on the host", d.display());
        }
        let s = d.display().to_string();
        if !covered(&s, &overlay) && !covered(&s, &tmpfs) && !covered(&s, &kept) {
            overlay.push(s);
        }
    }
    Ok(Writable { tmpfs, overlay, kept })
}

/// Runs take turns (per cache, so across work trees): a run already boots
/// `--jobs` VMs at once, one per core; a second run would only slow it down,
/// and two runs in one tree would write the same log files. The lock goes
/// with the process.
fn one_run_at_a_time(cache: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::create(cache.join(".lock"))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("vmtest: another `cargo xtask vmtest` is running: waiting for it to finish");
        // SAFETY: as above.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("locking {}: {}", cache.join(".lock").display(), std::io::Error::last_os_error());
        }
    }
    Ok(f)
}

/// The run's directory: one per VM inside, each with its socket, initramfs
/// and (empty) virtiofsd mount point; removed at the end however the run
/// ends.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        // two levels, each entry removed alone, never recursively: a VM's
        // `root` is where virtiofsd (in its own mount namespace) bound the
        // host's `/`; here it is an empty directory
        fn clear(dir: &Path, depth: u32) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if !p.is_dir() {
                    let _ = std::fs::remove_file(&p);
                } else if depth > 0 && e.file_name() != "root" {
                    clear(&p, depth - 1);
                } else {
                    let _ = std::fs::remove_dir(&p);
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        clear(&self.0, 1);
    }
}

/// The script the VM runs in the chroot: the environment, the host's working
/// directory, then the command.
fn script(env: &[(String, String)], cwd: &Path, cmd: &[String]) -> String {
    let mut s = String::from("# written by cargo xtask vmtest\n");
    for (n, v) in env {
        s += &format!("export {n}={}\n", quote(v));
    }
    s += &format!("cd {} || exit 125\nexec", quote(&cwd.display().to_string()));
    for a in cmd {
        s += " ";
        s += &quote(a);
    }
    s + "\n"
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_under_tmp_is_kept_inside_the_tmpfs_outermost_only() {
        let tmpfs: Vec<String> = TMPFS.iter().map(|s| s.to_string()).collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(kept(&s(&["/tmp/ci", "/tmp/ci/mcp-sensor"]), &tmpfs), s(&["/tmp/ci"]));
        assert_eq!(kept(&s(&["/tmp/ci/mcp-sensor", "/tmp/ci"]), &tmpfs), s(&["/tmp/ci"]));
        assert!(kept(&s(&["/work/main", "/work/main"]), &tmpfs).is_empty());
        assert!(kept(&s(&["/tmpx/ci"]), &tmpfs).is_empty(), "a prefix is not a parent");
        assert_eq!(kept(&s(&["/work/main", "/var/tmp/x"]), &tmpfs), s(&["/var/tmp/x"]));
    }

    #[test]
    fn counts_cargo_test_results() {
        let out: Vec<String> = [
            "    | test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 34 filtered out; finished in 70.1s",
            "test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(test_counts(&out), Some((6, 1)));
        assert_eq!(test_counts(&["no tests here".to_string()]), None);
    }

    #[test]
    fn script_quotes_every_word() {
        let s = script(&[("A".into(), "x'y".into())], Path::new("/w d"), &["sh".into(), "-c".into(), "echo 'hi'".into()]);
        assert_eq!(s, "# written by cargo xtask vmtest\nexport A='x'\\''y'\ncd '/w d' || exit 125\nexec 'sh' '-c' 'echo '\\''hi'\\'''\n");
    }
}
