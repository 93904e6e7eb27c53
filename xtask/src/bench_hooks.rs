//! `cargo xtask bench --hooks` (issue 16): what one hook costs a process
//! the sensor does not watch, per kind of hook, on the running kernel.
//!
//! Each hook runs the same body (xtask/bpf/hooks.bpf.c): the sensor's
//! fast path for an unwatched process, one hash lookup that misses. One
//! program is loaded and attached at a time, while two loops run in a
//! child process (`xtask worker`): open("/dev/null")+close, and getpid,
//! which no hook is on (a syscall tracepoint sends every syscall down the
//! kernel's traced slow path). Each worker times batches (`worker`).
//! Rounds visit the hooks in a random order (seeded, printed); reported
//! are the medians over rounds and the ratio to no hook in the same round.
//! A hook the kernel refuses is reported with its error. Results and
//! commands: BENCHMARKS.md, "Hook cost per kernel (issue 16)".

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap};
use aya::programs::{FEntry, FExit, KProbe, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use std::process::Command;

#[derive(clap::Args)]
pub struct HookArgs {
    /// --hooks: iterations of the getpid loop per round (the open loop
    /// takes --open-iters).
    #[arg(long, default_value_t = 1_000_000)]
    getpid_iters: u64,
}

#[repr(C, align(32))]
struct Aligned<B: ?Sized>(B);
static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/hooks.bpf.o")));

/// The function the fentry/fexit/kprobe variants hook: every open, openat,
/// openat2 and creat goes through it (5.6+).
const FUNC: &str = "do_sys_openat2";

#[derive(Clone, Copy, PartialEq)]
enum Hook {
    None,
    Tracepoint,
    Fexit,
    Fentry,
    Kprobe,
    Kretprobe,
}

const HOOKS: [Hook; 6] = [Hook::None, Hook::Tracepoint, Hook::Fexit, Hook::Fentry, Hook::Kprobe, Hook::Kretprobe];

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::None => "none (baseline)",
            Hook::Tracepoint => "tracepoint (today)",
            Hook::Fexit => "fexit",
            Hook::Fentry => "fentry",
            Hook::Kprobe => "kprobe",
            Hook::Kretprobe => "kretprobe",
        }
    }
    /// Its program in hooks.bpf.c.
    fn program(self) -> Option<&'static str> {
        match self {
            Hook::None => None,
            Hook::Tracepoint => Some("hk_tracepoint"),
            Hook::Fexit => Some("hk_fexit"),
            Hook::Fentry => Some("hk_fentry"),
            Hook::Kprobe => Some("hk_kprobe"),
            Hook::Kretprobe => Some("hk_kretprobe"),
        }
    }
    fn point(self) -> String {
        match self {
            Hook::None => "-".into(),
            Hook::Tracepoint => "syscalls/sys_exit_openat".into(),
            _ => FUNC.into(),
        }
    }
}

/// The hook's program, loaded and attached; `Err` is the refusal: which
/// step, the errno and the verifier's words.
fn attach(hook: Hook, btf: &Btf) -> Result<Ebpf, String> {
    let step = |what: &str, e: aya::programs::ProgramError| refusal(what, &anyhow::Error::from(e));
    let mut ebpf = EbpfLoader::new().btf(Some(btf)).load(&OBJECT.0).map_err(|e| refusal("object", &e.into()))?;
    // a few watched processes, none of them ours: pids above any pid_max
    let mut w: HashMap<_, u32, [u64; 2]> = HashMap::try_from(ebpf.map_mut("WATCHED").unwrap()).unwrap();
    for k in 0..8u32 {
        w.insert(0x8000_0000 + k, [1, 0], 0).map_err(|e| refusal("map", &e.into()))?;
    }
    let Some(name) = hook.program() else { return Ok(ebpf) };
    let prog = ebpf.program_mut(name).expect("in hooks.bpf.c");
    match hook {
        Hook::None => unreachable!(),
        Hook::Tracepoint => {
            let p: &mut TracePoint = prog.try_into().unwrap();
            p.load().map_err(|e| step("load", e))?;
            p.attach("syscalls", "sys_exit_openat").map_err(|e| step("attach", e))?;
        }
        Hook::Fexit => {
            let p: &mut FExit = prog.try_into().unwrap();
            p.load(FUNC, btf).map_err(|e| step("load", e))?;
            p.attach().map_err(|e| step("attach", e))?;
        }
        Hook::Fentry => {
            let p: &mut FEntry = prog.try_into().unwrap();
            p.load(FUNC, btf).map_err(|e| step("load", e))?;
            p.attach().map_err(|e| step("attach", e))?;
        }
        Hook::Kprobe | Hook::Kretprobe => {
            let p: &mut KProbe = prog.try_into().unwrap();
            p.load().map_err(|e| step("load", e))?;
            p.attach(FUNC, 0).map_err(|e| step("attach", e))?;
        }
    }
    Ok(ebpf)
}

fn refusal(step: &str, e: &anyhow::Error) -> String {
    let errno = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>()).and_then(std::io::Error::raw_os_error);
    let name = match errno {
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::ESRCH) => "ESRCH",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EBUSY) => "EBUSY",
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP",
        Some(524) => "ENOTSUPP",
        Some(_) => "errno",
        None => "no errno",
    };
    let msg = format!("{e:#}").replace('\n', " / ");
    format!("refused at {step}: {name} ({}): {msg}", errno.unwrap_or(0))
}

/// Invocations of the program so far (hk_calls in .bss).
fn calls(ebpf: &Ebpf) -> u64 {
    let bss: Array<_, [u64; 2]> = Array::try_from(ebpf.map(".bss").expect(".bss")).expect(".bss layout");
    bss.get(&0, 0).map_or(0, |v| v[0])
}

/// Tracing programs someone else has loaded (another engineer's sensor or
/// test): attached to a syscall tracepoint, one sends every syscall down
/// the slow path, the baseline's too. Kinds: kprobe, tracepoint,
/// perf_event, raw_tracepoint(_writable), tracing, lsm.
fn foreign() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| [2, 5, 7, 17, 24, 26, 29].contains(&(p.program_type() as u32)))
        .map(|p| format!("{}#{}", p.name_as_str().unwrap_or("?"), p.id()))
        .filter(|n| !n.starts_with("hk_"))
        .collect()
}

/// Waits until no foreign tracing program is loaded (at most an hour).
fn wait_quiet() -> Result<()> {
    let start = std::time::Instant::now();
    let mut said = false;
    loop {
        let f = foreign();
        if f.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(start.elapsed().as_secs() < 3600, "other tracing programs stayed loaded for an hour: {f:?}");
        if !said {
            println!("waiting: other tracing programs loaded: {}", f.join(" "));
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Batches per worker run.
const BATCHES: u64 = 50;

/// `xtask worker hook-open|hook-getpid N`: N iterations in BATCHES
/// batches; prints ns per iteration of the fastest batch and of the
/// median one. Time on a shared machine only adds (preemption, a vCPU
/// descheduled on the host), so the fastest batch is the cost of the
/// code path, the median what the loop got.
pub fn worker(what: &str, iters: u64) -> Result<()> {
    let per = (iters / BATCHES).max(1);
    let path = c"/dev/null";
    let mut t = Vec::new();
    for _ in 0..BATCHES {
        let start = std::time::Instant::now();
        match what {
            "open" => {
                for _ in 0..per {
                    // SAFETY: constant path; the fd is closed at once.
                    let fd = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
                    anyhow::ensure!(fd >= 0, "open /dev/null: {}", std::io::Error::last_os_error());
                    // SAFETY: our fd.
                    unsafe { libc::close(fd) };
                }
            }
            "getpid" => {
                for _ in 0..per {
                    // SAFETY: no arguments, no side effects.
                    unsafe { libc::syscall(libc::SYS_getpid) };
                }
            }
            other => anyhow::bail!("unknown worker hook-{other}"),
        }
        t.push(start.elapsed().as_nanos() as f64 / per as f64);
    }
    let s = sorted(&t);
    println!("{:.1} {:.1}", s[0], s[s.len() / 2]);
    Ok(())
}

/// (fastest batch, median batch) in ns per iteration.
fn run_worker(what: &str, iters: u64) -> Result<(f64, f64)> {
    let out = Command::new(std::env::current_exe()?).args(["worker", &format!("hook-{what}"), &iters.to_string()]).output()?;
    anyhow::ensure!(out.status.success(), "worker {what} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>().context("worker output")?;
    anyhow::ensure!(v.len() == 2, "worker output {text:?}");
    Ok((v[0], v[1]))
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s
}

/// "median (min-max)" of ns per iteration.
fn ns(v: &[f64]) -> String {
    let s = sorted(v);
    format!("{:.0} ({:.0}-{:.0})", s[s.len() / 2], s[0], s[s.len() - 1])
}

/// The ratio to the baseline of the same round, as "median (q1-q3)" over
/// the rounds: a pair is measured seconds apart, so drift on a shared
/// machine cancels better than in a ratio of medians.
fn ratio(v: &[f64], base: &[f64]) -> String {
    let s = sorted(&v.iter().zip(base).map(|(x, b)| x / b).collect::<Vec<_>>());
    let q = |f: f64| s[((s.len() - 1) as f64 * f).round() as usize];
    format!("{:.3}x ({:.3}-{:.3})", q(0.5), q(0.25), q(0.75))
}

pub fn run(a: &HookArgs, rounds: usize, open_iters: u64, seed: Option<u64>) -> Result<()> {
    // SAFETY: no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "bench --hooks loads BPF programs: run it as root");
    // 5.10 charges maps to RLIMIT_MEMLOCK
    let inf = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: a valid rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &inf) };
    let btf = Btf::from_sys_fs().context("/sys/kernel/btf/vmlinux")?;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim().to_string();
    let seed = seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64));
    println!("kernel {release}, {} CPUs, seed {seed}, {rounds} rounds, open loop {open_iters}, getpid loop {}", std::thread::available_parallelism().map_or(0, |n| n.get()), a.getpid_iters);

    wait_quiet()?;
    // which hooks this kernel takes (each checked to fire on our opens)
    let mut refused: Vec<(Hook, String)> = Vec::new();
    let mut usable = Vec::new();
    for h in HOOKS {
        match attach(h, &btf) {
            Ok(ebpf) if h != Hook::None => {
                let before = calls(&ebpf);
                run_worker("open", 1000)?;
                let n = calls(&ebpf) - before;
                if n < 900 {
                    refused.push((h, format!("attached, but ran {n} times for 1000 opens")));
                } else {
                    usable.push(h);
                }
            }
            Ok(_) => usable.push(h),
            Err(e) => {
                println!("{}: {e}", h.name());
                refused.push((h, e));
            }
        }
    }
    if let Some((_, why)) = refused.iter().find(|(h, _)| *h == Hook::None) {
        anyhow::bail!("hooks.bpf.o does not load on this kernel: {why}");
    }
    run_worker("open", open_iters / 10)?; // warm caches
    run_worker("getpid", a.getpid_iters / 10)?;

    let mut rng = seed | 1;
    // per hook, per round: (fastest batch, median batch)
    let mut open: Vec<Vec<(f64, f64)>> = vec![vec![]; HOOKS.len()];
    let mut getpid: Vec<Vec<(f64, f64)>> = vec![vec![]; HOOKS.len()];
    for round in 0..rounds {
        let mut order = usable.clone();
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        let mut line = format!("round {} (open fastest/median, getpid fastest/median ns):", round + 1);
        for h in order {
            let i = HOOKS.iter().position(|x| *x == h).unwrap();
            let (o, g) = loop {
                wait_quiet()?;
                let ebpf = attach(h, &btf).map_err(anyhow::Error::msg)?;
                let o = run_worker("open", open_iters)?;
                let g = run_worker("getpid", a.getpid_iters)?;
                drop(ebpf);
                let f = foreign();
                if f.is_empty() {
                    break (o, g);
                }
                println!("round {} {}: measured again, loaded meanwhile: {}", round + 1, h.name(), f.join(" "));
            };
            open[i].push(o);
            getpid[i].push(g);
            line += &format!(" {} {:.0}/{:.0}/{:.0}/{:.0}", h.name().split(' ').next().unwrap(), o.0, o.1, g.0, g.1);
        }
        println!("{line}");
    }

    println!("\nns per iteration of the fastest of {BATCHES} batches, median over rounds (min-max); ratio to none in the same round, median (q1-q3); the same ratio from each run's median batch\n");
    println!("| hook | attached to | open+close ns | ratio | ratio, median batch | getpid ns | ratio | ratio, median batch |");
    println!("|---|---|---|---|---|---|---|---|");
    let fast = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    let med = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
    for (i, h) in HOOKS.iter().enumerate() {
        if let Some((_, why)) = refused.iter().find(|(r, _)| r == h) {
            println!("| {} | {} | {why} | | | | | |", h.name(), h.point());
            continue;
        }
        let (o, g, ob, gb) = (&open[i], &getpid[i], &open[0], &getpid[0]);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            h.name(),
            h.point(),
            ns(&fast(o)),
            ratio(&fast(o), &fast(ob)),
            ratio(&med(o), &med(ob)),
            ns(&fast(g)),
            ratio(&fast(g), &fast(gb)),
            ratio(&med(g), &med(gb))
        );
    }
    println!("\n{rounds} rounds, hooks in random order in each; ratios per round; kernel {release}");
    Ok(())
}
