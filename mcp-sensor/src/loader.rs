//! Loader: puts the embedded kernel programs into the kernel and attaches
//! them; owns the maps' userspace handles afterwards.
//!
//! Attach points follow from program names (`ms_<tracepoint>`): a program
//! `ms_sys_enter_connect` is the syscalls tracepoint `sys_enter_connect`, a
//! `tp_btf` program `ms_sched_process_exec` the BTF tracepoint
//! `sched_process_exec`. The exceptions are the programs of a whole
//! syscall family (`MULTI_ATTACH`), attached to each member's tracepoint. Every failure carries the hint a user can act on,
//! and load failures carry the verifier's log.

use crate::abi::{self, ms_chan, ms_chan_key, ms_watch};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use crate::features::{Object, Plan, Probed};
use aya::programs::{BtfTracePoint, CgroupAttachMode, Lsm, Program, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use std::path::Path;

mod discovery;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Ring-buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Stdio bytes captured per syscall at most.
    pub stdio_cap: u64,
    /// Attach the stdio capture programs.
    pub capture_stdio: bool,
    /// Host-wide discovery (abi DISC_* bits); 0 for `exec`.
    pub discover: u32,
    /// Switch kernel enforcement on (`--enforce`); off, nothing is killed
    /// or refused. The cgroup socket programs are attached either way.
    pub enforce: bool,
    /// Sizes of the kernel tables that grow with the host.
    pub tables: Tables,
}

/// Entries of the kernel tables sized at load (aya `map_max_entries`):
/// `--max-watched` / `sensor.max_watched` and `--max-channels` /
/// `sensor.max_channels`. A refused insert is counted, never silent
/// (abi MS_CNT_WATCH_FULL, MS_CNT_CHAN_FULL, MS_CNT_CAND_LOST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    /// WATCHED: processes watched at once (servers, their trees, and
    /// discovery candidates: one per idle piped process under `run`).
    /// FIRST_REQ (a session's first-request stamp) has as many: a session
    /// is rooted in a watched process.
    pub watched: u32,
    /// CHANNELS: stdio pipes and sockets watched at once (two per
    /// discovery candidate).
    pub channels: u32,
}

impl Tables {
    /// Fewest entries a table may have.
    pub const MIN: u32 = 1024;
    /// Most entries a table may have (each is preallocated: ~100 bytes of
    /// kernel memory per entry).
    pub const MAX: u32 = 1 << 22;
}

impl Default for Tables {
    /// `run`'s: enough for 20,000 idle piped processes (two channels
    /// each) beside the servers themselves; 5.8 MB (WATCHED) and 6.8 MB
    /// (CHANNELS) of kernel memory, preallocated (bpftool's memlock).
    /// `exec` watches one server's tree and defaults to 16384 and 4096
    /// (1.4 MB and 0.4 MB; cli.rs).
    fn default() -> Self {
        Tables { watched: 65536, channels: 65536 }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ring_bytes: 32 << 20,
            stdio_cap: 16 << 20,
            capture_stdio: true,
            discover: 0,
            enforce: false,
            tables: Tables::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("BPF needs root (CAP_BPF and CAP_PERFMON); run mcp-sensor as root")]
    NotRoot,
    #[error(
        "kernel BTF not found at /sys/kernel/btf/vmlinux: this kernel needs \
         CONFIG_DEBUG_INFO_BTF=y (run `mcp-sensor doctor`)"
    )]
    NoBtf,
    #[error("--ring-buffer-size {0} must be a power of two of at least 4096 bytes")]
    RingSize(u32),
    #[error("loading the BPF object failed: {source}\nhint: {hint}")]
    Object { source: aya::EbpfError, hint: &'static str },
    #[error("loading program {name} failed: {source}\nhint: {hint}")]
    Program { name: String, source: aya::programs::ProgramError, hint: &'static str },
    #[error(
        "the kernel's verifier refused program {name} on Linux {kernel}: this is a bug in \
         mcp-sensor, not in your setup; please report it with the output of \
         `mcp-sensor doctor --json`\nverifier log (end):\n{log}"
    )]
    Verifier { name: String, kernel: String, log: String },
    #[error("attaching program {name} to {target} failed: {source}\nhint: {hint}")]
    Attach { name: String, target: String, source: aya::programs::ProgramError, hint: &'static str },
    #[error("registering the ring buffer with the event loop: {0}")]
    Poll(std::io::Error),
    #[error("map {0} missing from the BPF object (build mismatch)")]
    Map(&'static str),
    #[error(
        "--enforce needs cgroup v2 (to refuse connects in the kernel), and no cgroup2 \
         filesystem is mounted: mount it (mount -t cgroup2 none /sys/fs/cgroup) or run without --enforce"
    )]
    NoCgroup2,
    #[error("map {name}: {source}")]
    MapAccess { name: &'static str, source: aya::maps::MapError },
}

fn hint_for(errno: Option<i32>) -> &'static str {
    match errno {
        // root is checked before loading: an EPERM now is not about privileges
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "the kernel refused BPF to root: lockdown=confidentiality, a container's seccomp \
             profile or a missing capability (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN) forbids it; \
             `mcp-sensor doctor` says which"
        }
        Some(libc::E2BIG) | Some(libc::ENOSPC) => {
            "the verifier ran out of room: this is a bug in mcp-sensor; please report it with \
             the output of `mcp-sensor doctor --json`"
        }
        Some(libc::ENOENT) => {
            "a tracepoint or kernel type is missing: run `mcp-sensor doctor` to see what this kernel lacks"
        }
        _ => "run `mcp-sensor doctor` to see which kernel features are present",
    }
}

/// Lines of a verifier log kept in the error: the refusal is at the end.
const VERIFIER_TAIL: usize = 40;

/// A program's load error: a verifier refusal (a log explains it) is the
/// sensor's bug on this kernel, anything else gets the errno's hint.
fn program_error(name: &str, source: aya::programs::ProgramError) -> LoadError {
    if let aya::programs::ProgramError::LoadError { verifier_log, .. } = &source {
        let log = format!("{verifier_log:?}");
        if !log.trim().is_empty() {
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(VERIFIER_TAIL)..].join("\n");
            return LoadError::Verifier { name: name.to_string(), kernel: crate::features::kernel_release(), log: tail };
        }
    }
    LoadError::Program { hint: hint_for(errno_of(&source)), name: name.to_string(), source }
}

fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        cur = err.source();
    }
    None
}

/// Mounts tracefs when it is not mounted (syscall tracepoints need it to
/// find their ids); root-only, like the rest of loading.
fn ensure_tracefs() {
    for dir in ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"] {
        if Path::new(dir).exists() {
            return;
        }
    }
    let (src, target, fs) = (c"tracefs", c"/sys/kernel/tracing", c"tracefs");
    // SAFETY: constant NUL-terminated strings; failure is reported by the
    // attach that needs it.
    unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
}

/// The loaded, attached sensor. Dropping it detaches everything.
pub struct Sensor {
    ebpf: Ebpf,
    pub attached: Vec<String>,
    /// The hooks and mechanisms chosen for this kernel.
    pub plan: Plan,
    /// Sessions whose channels are to be removed from CHANNELS by the next
    /// sweep (see `Sensor::sweep_channels` in loader/discovery.rs).
    sweep: std::collections::HashSet<u32>,
}

impl LoadError {
    /// A map insert refused because the map is full (E2BIG; ENOMEM where
    /// the kernel could not allocate an entry): a table to size up, not a
    /// failure of the sensor.
    pub fn is_table_full(&self) -> bool {
        match self {
            LoadError::MapAccess { source: aya::maps::MapError::SyscallError(e), .. } => {
                matches!(e.io_error.raw_os_error(), Some(libc::E2BIG) | Some(libc::ENOMEM))
            }
            _ => false,
        }
    }
}

/// Bytes pending in the ring before the kernel wakes the agent
/// (`ms_wakeup_bytes`, common.bpf.h): an eighth of the ring, at most 512 KiB.
fn wakeup_bytes(ring_bytes: u32) -> u64 {
    (u64::from(ring_bytes) / 8).min(512 << 10)
}

pub fn load(opts: &LoadOptions) -> Result<Sensor, LoadError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LoadError::NotRoot);
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(LoadError::NoBtf);
    }
    if opts.ring_bytes < 4096 || !opts.ring_bytes.is_power_of_two() {
        return Err(LoadError::RingSize(opts.ring_bytes));
    }
    ensure_tracefs();
    let btf = Btf::from_sys_fs().map_err(|_| LoadError::NoBtf)?;
    let mut plan = Plan::for_kernel(&Probed::probe());
    let (object, stdio_cap) = match plan.object {
        Object::Full => (mcp_sensor_ebpf::object(), opts.stdio_cap),
        Object::Compat => (mcp_sensor_ebpf::compat_object(), opts.stdio_cap.min(plan.stdio_cap_max)),
    };
    plan.stdio_cap_max = stdio_cap;
    let lsm = opts.enforce && plan.lsm();
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .override_global("ms_stdio_cap", &stdio_cap, true)
        .override_global("ms_discover_flags", &opts.discover, true)
        .override_global("ms_lsm_enforce", &u32::from(lsm), true)
        .override_global("ms_wakeup_bytes", &wakeup_bytes(opts.ring_bytes), true)
        .map_max_entries("EVENTS", opts.ring_bytes)
        .map_max_entries("WATCHED", opts.tables.watched)
        .map_max_entries("CHANNELS", opts.tables.channels)
        // a stamp per session, and every session's root is watched
        .map_max_entries("FIRST_REQ", opts.tables.watched)
        .load(object)
        .map_err(|source| {
            let hint = hint_for(errno_of(&source));
            LoadError::Object { source, hint }
        })?;

    let mut attached = Vec::new();
    let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_string()).collect();
    for name in names {
        let Some(target) = name.strip_prefix("ms_").map(str::to_string) else { continue };
        let multi = MULTI_ATTACH.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        if name == STDIO_PROGRAM && !opts.capture_stdio {
            continue;
        }
        let prog = ebpf.program_mut(&name).expect("listed above");
        let program_err = |source: aya::programs::ProgramError| program_error(&name, source);
        let attach_err = |target: &str, source: aya::programs::ProgramError| LoadError::Attach {
            hint: hint_for(errno_of(&source)),
            name: name.clone(),
            target: target.to_string(),
            source,
        };
        match prog {
            Program::BtfTracePoint(p) => {
                let p: &mut BtfTracePoint = p;
                p.load(&target, &btf).map_err(program_err)?;
                p.attach().map_err(|e| attach_err(&target, e))?;
            }
            Program::TracePoint(p) => {
                let p: &mut TracePoint = p;
                p.load().map_err(program_err)?;
                for t in multi.map_or_else(|| vec![target.clone()], |m| m.iter().map(|t| t.to_string()).collect()) {
                    p.attach("syscalls", &t).map_err(|e| attach_err(&t, e))?;
                    attached.push(t);
                }
                continue;
            }
            // cgroup/connect4|6, sendmsg4|6 (sockaddr.bpf.c) at the cgroup
            // v2 root in every mode: the connects that are not connect(2)
            // and UDP sends are seen only there. As a bpf_link (5.7+),
            // which runs next to whatever else is attached there (a link
            // takes no ALLOW_MULTI flag: it is always multi). Without
            // cgroup v2, only --enforce fails (it must refuse there);
            // monitoring goes on without them, and says so.
            Program::CgroupSockAddr(p) => {
                let Some(root) = crate::enforce::cgroup2_root() else {
                    if opts.enforce {
                        return Err(LoadError::NoCgroup2);
                    }
                    if !plan.degraded.iter().any(|d| d.starts_with(NO_CGROUP2)) {
                        plan.degraded.push(format!("{NO_CGROUP2}: UDP sends, TCP Fast Open and io_uring connects are not seen"));
                    }
                    continue;
                };
                let dir = std::fs::File::open(&root).map_err(|_| LoadError::NoCgroup2)?;
                p.load().map_err(program_err)?;
                p.attach(dir, CgroupAttachMode::Single).map_err(|e| attach_err(&root, e))?;
            }
            // BPF LSM: only under --enforce, where the kernel has it active
            Program::Lsm(p) => {
                if !lsm {
                    continue;
                }
                let p: &mut Lsm = p;
                let hook = target.strip_prefix("lsm_").unwrap_or(&target).to_string();
                p.load(&hook, &btf).map_err(program_err)?;
                p.attach().map_err(|e| attach_err(&hook, e))?;
            }
            _ => continue,
        }
        attached.push(target);
    }
    Ok(Sensor { ebpf, attached, plan, sweep: Default::default() })
}


/// Programs attached to several syscall tracepoints: one program per
/// syscall family, so the verifier checks it once (file.bpf.c,
/// stdio.bpf.c). The program tells the syscalls apart by the record's id.
const MULTI_ATTACH: &[(&str, &[&str])] = &[
    (
        "ms_open_exits",
        &["sys_exit_open", "sys_exit_openat", "sys_exit_openat2", "sys_exit_creat", "sys_exit_open_by_handle_at"],
    ),
    ("ms_ptrace_exits", &["sys_exit_ptrace", "sys_exit_process_vm_readv", "sys_exit_process_vm_writev"]),
    (
        "ms_fchange_exits",
        &[
            "sys_exit_rename", "sys_exit_renameat", "sys_exit_renameat2", "sys_exit_link", "sys_exit_linkat",
            "sys_exit_symlink", "sys_exit_symlinkat", "sys_exit_truncate", "sys_exit_ftruncate",
        ],
    ),
    (
        STDIO_PROGRAM,
        &[
            "sys_exit_read", "sys_exit_pread64", "sys_exit_recvfrom", "sys_exit_readv", "sys_exit_preadv",
            "sys_exit_preadv2", "sys_exit_write", "sys_exit_pwrite64", "sys_exit_sendto", "sys_exit_writev",
            "sys_exit_pwritev", "sys_exit_pwritev2",
        ],
    ),
];

/// The start of the `degraded` note of a host without cgroup v2.
const NO_CGROUP2: &str = "no cgroup2 filesystem mounted";

/// The stdio capture program (stdio.bpf.c), left out with `--no-stdio-capture`.
const STDIO_PROGRAM: &str = "ms_stdio_exits";

/// Detaching is done in parallel: each detach of a syscall tracepoint
/// program waits for an RCU grace period of its own (~70 ms on this kernel,
/// where syscall tracepoints are faultable), so ~35 programs detached one
/// after another kept `exec` alive 1.3 s after its server had exited. The
/// waits of concurrent detaches overlap.
impl Drop for Sensor {
    fn drop(&mut self) {
        let programs: Vec<&mut Program> = self.ebpf.programs_mut().map(|(_, p)| p).collect();
        std::thread::scope(|s| {
            for p in programs {
                s.spawn(move || {
                    // a failure leaves the program to the fd close at exit
                    let _ = match p {
                        Program::TracePoint(p) => p.unload(),
                        Program::BtfTracePoint(p) => p.unload(),
                        Program::CgroupSockAddr(p) => p.unload(),
                        Program::Lsm(p) => p.unload(),
                        _ => Ok(()),
                    };
                });
            }
        });
    }
}

impl Sensor {
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self.ebpf.take_map("EVENTS").ok_or(LoadError::Map("EVENTS"))?;
        RingBuf::try_from(map).map_err(|source| LoadError::MapAccess { name: "EVENTS", source })
    }

    /// Takes a map out of the object for its one user (the enforcer).
    pub fn take_map(&mut self, name: &'static str) -> Result<aya::maps::Map, LoadError> {
        self.ebpf.take_map(name).ok_or(LoadError::Map(name))
    }

    /// A second handle on the watched set, for reading it from elsewhere
    /// (the enforcer finds a server's whole tree in it).
    pub fn watched_handle(&self) -> Result<BpfHashMap<MapData, u32, ms_watch>, LoadError> {
        use aya::maps::IterableMap;
        let err = |source| LoadError::MapAccess { name: "WATCHED", source };
        let map = self.ebpf.map("WATCHED").ok_or(LoadError::Map("WATCHED"))?;
        let h: BpfHashMap<&MapData, u32, ms_watch> = BpfHashMap::try_from(map).map_err(err)?;
        let id = h.map().info().map_err(err)?.id();
        let data = MapData::from_id(id).map_err(err)?;
        BpfHashMap::try_from(aya::maps::Map::HashMap(data)).map_err(err)
    }

    pub(crate) fn watched(&mut self) -> Result<BpfHashMap<&mut MapData, u32, ms_watch>, LoadError> {
        let map = self.ebpf.map_mut("WATCHED").ok_or(LoadError::Map("WATCHED"))?;
        BpfHashMap::try_from(map).map_err(|source| LoadError::MapAccess { name: "WATCHED", source })
    }

    /// Watches `pid` and everything it forks from now on, as session
    /// `session`. A start time of 0 lets the kernel claim the process the
    /// first time it sees it (for a child held before exec).
    pub fn watch(&mut self, pid: u32, start_ns: u64, session: u32) -> Result<(), LoadError> {
        if pid == session {
            // a new session: a first-request stamp of an earlier session of
            // this pid is not its own (the kernel keeps stamps past the
            // root's exit for what outlives it)
            let _ = self.first_requests()?.remove(&pid); // absent: nothing to reset
        }
        let w = ms_watch { start_ns, session, flags: 0 };
        self.watched()?
            .insert(pid, w, 0)
            .map_err(|source| LoadError::MapAccess { name: "WATCHED", source })
    }

    /// Registers a pipe or socket (kernel dev, inode) as a session's
    /// JSON-RPC channel.
    pub fn add_channel(&mut self, dev: u32, ino: u64, session: u32) -> Result<(), LoadError> {
        let key = ms_chan_key { ino, dev, _pad: 0 };
        self.channels()?
            .insert(key, ms_chan { session, flags: 0, off: [0, 0] }, 0)
            .map_err(|source| LoadError::MapAccess { name: "CHANNELS", source })
    }

    pub(crate) fn channels(&mut self) -> Result<BpfHashMap<&mut MapData, ms_chan_key, ms_chan>, LoadError> {
        let map = self.ebpf.map_mut("CHANNELS").ok_or(LoadError::Map("CHANNELS"))?;
        BpfHashMap::try_from(map).map_err(|source| LoadError::MapAccess { name: "CHANNELS", source })
    }

    /// Kernel-side loss counters summed over CPUs: (per-kind ring drops,
    /// other counters), both indexed as in abi.h.
    pub fn counters(&mut self) -> Result<(Vec<u64>, Vec<u64>), LoadError> {
        let sum = |name: &'static str, n: u32| -> Result<Vec<u64>, LoadError> {
            let map = self.ebpf.map(name).ok_or(LoadError::Map(name))?;
            let arr: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)
                .map_err(|source| LoadError::MapAccess { name, source })?;
            (0..n)
                .map(|i| {
                    arr.get(&i, 0)
                        .map(|v| v.iter().sum())
                        .map_err(|source| LoadError::MapAccess { name, source })
                })
                .collect()
        };
        Ok((sum("DROPS", abi::EV_KIND_MAX)?, sum("COUNTERS", abi::CNT_MAX)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::programs::ProgramError;

    fn load_error(errno: i32, log: &str) -> ProgramError {
        ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(errno),
            verifier_log: aya_obj::VerifierLog::new(log.to_string()),
        }
    }

    #[test]
    fn the_ring_wakes_the_agent_at_an_eighth_of_its_size_at_most_512_kib() {
        assert_eq!(wakeup_bytes(32 << 10), 4 << 10);
        assert_eq!(wakeup_bytes(4 << 20), 512 << 10);
        assert_eq!(wakeup_bytes(64 << 20), 512 << 10);
    }

    #[test]
    fn a_verifier_refusal_is_the_sensors_bug_with_the_logs_end() {
        let log: String = (0..100).map(|i| format!("line {i}\n")).collect::<String>() + "combined stack size of 2 calls is 736. Too large\n";
        let e = program_error("ms_open_exits", load_error(libc::EACCES, &log));
        let msg = e.to_string();
        assert!(matches!(e, LoadError::Verifier { .. }), "{msg}");
        assert!(msg.contains("ms_open_exits") && msg.contains("bug in mcp-sensor"), "{msg}");
        assert!(msg.contains("mcp-sensor doctor --json"), "{msg}");
        assert!(msg.contains("Too large"), "the refusal itself is kept: {msg}");
        assert!(!msg.contains("line 0\n"), "only the log's end: {msg}");
        assert!(!msg.contains("as root"), "{msg}");
    }

    #[test]
    fn eperm_without_a_log_is_not_blamed_on_the_user_being_root_or_not() {
        let e = program_error("ms_open_exits", load_error(libc::EPERM, ""));
        let msg = e.to_string();
        assert!(matches!(e, LoadError::Program { .. }), "{msg}");
        assert!(msg.contains("lockdown"), "{msg}");
        assert!(!msg.contains("run as root"), "root is checked before loading: {msg}");
    }
}
