//! Kernel features: what the running kernel offers the sensor, probed at
//! start, and the hooks and enforcement mechanisms chosen from them.
//!
//! Owns the choice of kernel object (full or compat, see
//! `mcp-sensor-ebpf/bpf/compat.bpf.h`) and of the enforcement mechanism
//! (BPF LSM deny where the LSM is active, SIGKILL at the syscall
//! elsewhere). Features are probed by loading tiny programs (aya's
//! libbpf-style probes) and reading the active LSM list, never inferred
//! from the kernel version: distributions backport. The result is
//! reported by `doctor`, on stderr at start, and in the `sensor_start`
//! event that opens every log, so a reduced sensor is never silent.

use aya::programs::{LsmAttachType, ProgramType};
use aya::sys::{is_helper_supported, is_program_supported, BpfHelper};
use serde::Serialize;

/// Bytes one read/write can have captured by the compat object (its
/// capture loop has a fixed budget: `MS_COMPAT_STEPS` chunks of
/// `MS_CHUNK_LARGE` in stdio.bpf.c, less the iovec steps).
pub const COMPAT_STDIO_CAP: u64 = 32 * crate::abi::CHUNK_LARGE as u64;

/// `MCP_SENSOR_BPF_OBJECT=compat` loads the compat object on any kernel
/// (for testing it where the full one would load).
pub const FORCE_COMPAT: &str = "MCP_SENSOR_BPF_OBJECT";

/// What the kernel offers, as probed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Probed {
    /// `uname -r`.
    pub kernel: String,
    /// `bpf_loop` (Linux 5.17).
    pub bpf_loop: bool,
    /// `bpf_task_pt_regs` (Linux 5.15).
    pub task_pt_regs: bool,
    /// `bpf` is in /sys/kernel/security/lsm (CONFIG_BPF_LSM, and `bpf` in
    /// CONFIG_LSM or the `lsm=` boot parameter).
    pub lsm_active: bool,
    /// BPF LSM programs load (Linux 5.7).
    pub lsm_programs: bool,
    /// kprobe programs load and kprobe events exist (CONFIG_KPROBES).
    pub kprobes: bool,
    /// fentry/fexit programs load (BPF trampolines, 5.5 on x86_64).
    pub fentry: bool,
}

impl Probed {
    /// Probes the running kernel. Needs root for the program probes; as
    /// another user they read as absent.
    pub fn probe() -> Probed {
        let helper = |h| is_helper_supported(ProgramType::TracePoint, h).unwrap_or(false);
        let prog = |t| is_program_supported(t).unwrap_or(false);
        Probed {
            kernel: kernel_release(),
            bpf_loop: helper(BpfHelper::BPF_FUNC_loop),
            task_pt_regs: helper(BpfHelper::BPF_FUNC_task_pt_regs),
            lsm_active: active_lsms().iter().any(|l| l == "bpf"),
            lsm_programs: prog(ProgramType::Lsm(LsmAttachType::Mac)),
            // the program type loads without CONFIG_KPROBES; attaching needs
            // kprobe events, which tracefs lists only when they exist
            kprobes: prog(ProgramType::KProbe)
                && ["/sys/kernel/tracing/kprobe_events", "/sys/kernel/debug/tracing/kprobe_events"]
                    .iter()
                    .any(|p| std::path::Path::new(p).exists()),
            fentry: prog(ProgramType::Tracing),
        }
    }
}

/// Which build of the kernel programs a kernel gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Object {
    /// bpf_loop, bpf_task_pt_regs, fetching atomics: 5.17+.
    Full,
    /// Bounded loops and the stack-top register guess: 5.10 to 5.16.
    Compat,
}

/// The hooks and mechanisms the sensor uses on this kernel, and what it
/// gives up there.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Plan {
    pub kernel: String,
    pub object: Object,
    /// Event kind -> the hook that produces it.
    pub hooks: std::collections::BTreeMap<&'static str, &'static str>,
    /// How opens and execs are stopped under `--enforce`:
    /// `lsm_deny` (BPF LSM refuses, EPERM; kill rules also kill) or
    /// `sigkill_at_syscall` (the syscall completes, SIGKILL is delivered
    /// before the process runs another instruction).
    pub file_enforcement: &'static str,
    /// Largest read/write captured whole on the stdio channel, bytes: the
    /// kernel's limit (compat: [`COMPAT_STDIO_CAP`]); once loaded, the
    /// effective cap (`--stdio-cap` within that limit).
    pub stdio_cap_max: u64,
    /// What is off or reduced on this kernel, and why; empty when nothing is.
    pub degraded: Vec<String>,
    /// Available, not used, with why.
    pub unused: Vec<String>,
    /// Under `--enforce`: the rules that will kill or deny, and who decides
    /// each (`enforce::profile`); absent without `--enforce`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforced: Option<Vec<crate::enforce::EnforcedRule>>,
}

impl Plan {
    /// The plan for a kernel that offers `p`; `enforce`: `--enforce` given.
    pub fn for_kernel(p: &Probed) -> Plan {
        let mut object = if p.bpf_loop && p.task_pt_regs { Object::Full } else { Object::Compat };
        // tests run the compat object on kernels that could take the full one
        if std::env::var_os(FORCE_COMPAT).is_some_and(|v| v == "compat") {
            object = Object::Compat;
        }
        let lsm = p.lsm_active && p.lsm_programs;
        let mut degraded = Vec::new();
        if object == Object::Compat {
            degraded.push(format!(
                "stdio capture: at most {} KiB of one read/write (no bpf_loop, Linux 5.17); \
                 the rest is counted as stdio_bytes_over_cap",
                COMPAT_STDIO_CAP >> 10
            ));
            degraded.push(
                "stdio offsets: two threads writing one channel at the same instant may be \
                 ordered wrongly (no fetching atomics, Linux 5.12); reassembly reports it as a gap"
                    .into(),
            );
        }
        if !lsm {
            let why = if !p.lsm_active {
                "BPF LSM is not active: boot with lsm=...,bpf (see /sys/kernel/security/lsm)"
            } else {
                "BPF LSM programs do not load here"
            };
            degraded.push(format!(
                "--enforce stops protected opens and execs with SIGKILL at the syscall's exit, \
                 not by refusing them, and renames, links, symlinks and truncates onto protected \
                 names by the agent's kill, after they happened ({why})"
            ));
        }
        let mut unused = Vec::new();
        if p.kprobes {
            unused.push(
                "kprobes: measured no cheaper than the syscall tracepoints for an unwatched open \
                 (BENCHMARKS.md, \"Hook cost per kernel\")"
                    .into(),
            );
        }
        if p.fentry {
            unused.push(
                "fentry/fexit: measured no cheaper than the syscall tracepoints for an unwatched open; \
                 their gain (no tax on every syscall) needs every syscall tracepoint gone \
                 (BENCHMARKS.md, \"Hook cost per kernel\")"
                    .into(),
            );
        }
        let mut hooks: std::collections::BTreeMap<_, _> = [
            ("fork, exit", "tp_btf/sched_process_fork, sched_process_exit"),
            ("exec", "tp_btf/sched_process_exec"),
            ("open", "tracepoint/syscalls/sys_exit_{open,openat,openat2,creat,open_by_handle_at}"),
            (
                "rename, link, symlink, truncate",
                "tracepoint/syscalls/sys_exit_{rename,renameat,renameat2,link,linkat,symlink,symlinkat,truncate,ftruncate}",
            ),
            ("connect(2)", "tracepoint/syscalls/sys_{enter,exit}_connect"),
            ("stdio", "tracepoint/syscalls/sys_exit_{read,write,readv,writev,...}"),
            ("io_uring_setup", "tp_btf/io_uring_create"),
            ("ptrace", "tracepoint/syscalls/sys_exit_{ptrace,process_vm_readv,process_vm_writev}"),
            ("connect (other paths), UDP send; their deny", "cgroup/connect4, connect6, sendmsg4, sendmsg6"),
        ]
        .into_iter()
        .collect();
        if lsm {
            hooks.insert("open deny", "lsm/file_open");
            hooks.insert("exec deny", "lsm/bprm_check_security");
            hooks.insert("rename, link, symlink, truncate deny", "lsm/inode_rename, inode_link, inode_symlink, path_truncate");
        }
        Plan {
            kernel: p.kernel.clone(),
            object,
            hooks,
            file_enforcement: if lsm { "lsm_deny" } else { "sigkill_at_syscall" },
            stdio_cap_max: if object == Object::Compat { COMPAT_STDIO_CAP } else { crate::loader::LoadOptions::default().stdio_cap },
            degraded,
            unused,
            enforced: None,
        }
    }

    /// BPF LSM decides opens and execs.
    pub fn lsm(&self) -> bool {
        self.file_enforcement == "lsm_deny"
    }

    /// One line for stderr at start: the kernel, the object, enforcement.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "kernel {}: {} programs; --enforce on files and execs: {}",
            self.kernel,
            match self.object {
                Object::Full => "full",
                Object::Compat => "compat (5.10-5.16)",
            },
            if self.lsm() { "BPF LSM deny" } else { "SIGKILL at the syscall" },
        );
        if !self.degraded.is_empty() {
            s.push_str(&format!("; reduced here: {}", self.degraded.join("; ")));
        }
        s
    }
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data, filled by uname.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    // SAFETY: uname NUL-terminates release.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy().into_owned()
}

/// The active LSMs (/sys/kernel/security/lsm), mounting securityfs when it
/// is not mounted (root only; otherwise the list reads as empty).
pub fn active_lsms() -> Vec<String> {
    const LSM: &str = "/sys/kernel/security/lsm";
    if !std::path::Path::new(LSM).exists() {
        let (src, target, fs) = (c"securityfs", c"/sys/kernel/security", c"securityfs");
        // SAFETY: constant NUL-terminated strings; failure leaves the list empty.
        unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    }
    parse_lsms(&std::fs::read_to_string(LSM).unwrap_or_default())
}

fn parse_lsms(s: &str) -> Vec<String> {
    s.trim().split(',').filter(|l| !l.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probed(loop_: bool, regs: bool, lsm: bool) -> Probed {
        Probed {
            kernel: "x".into(),
            bpf_loop: loop_,
            task_pt_regs: regs,
            lsm_active: lsm,
            lsm_programs: lsm,
            kprobes: false,
            fentry: false,
        }
    }

    #[test]
    fn full_object_needs_both_helpers() {
        assert_eq!(Plan::for_kernel(&probed(true, true, false)).object, Object::Full);
        // 5.15/5.16: task_pt_regs without bpf_loop
        assert_eq!(Plan::for_kernel(&probed(false, true, false)).object, Object::Compat);
        assert_eq!(Plan::for_kernel(&probed(false, false, false)).object, Object::Compat);
    }

    #[test]
    fn compat_says_what_it_gives_up() {
        let p = Plan::for_kernel(&probed(false, false, true));
        assert_eq!(p.stdio_cap_max, COMPAT_STDIO_CAP);
        assert!(p.degraded.iter().any(|d| d.contains("stdio capture")), "{:?}", p.degraded);
        assert!(p.lsm());
        let full = Plan::for_kernel(&probed(true, true, true));
        assert!(full.degraded.is_empty(), "{:?}", full.degraded);
    }

    #[test]
    fn without_bpf_lsm_enforcement_is_sigkill_and_says_how_to_get_lsm() {
        let p = Plan::for_kernel(&probed(true, true, false));
        assert_eq!(p.file_enforcement, "sigkill_at_syscall");
        assert!(!p.hooks.values().any(|h| h.starts_with("lsm/")));
        assert!(p.degraded.iter().any(|d| d.contains("lsm=")), "{:?}", p.degraded);
        // active but not loadable is a different reason
        let mut q = probed(true, true, true);
        q.lsm_programs = false;
        let p = Plan::for_kernel(&q);
        assert!(p.degraded.iter().any(|d| d.contains("do not load")), "{:?}", p.degraded);
    }

    #[test]
    fn lsm_list_parses() {
        assert_eq!(parse_lsms("lockdown,capability,landlock,bpf\n"), ["lockdown", "capability", "landlock", "bpf"]);
        assert!(parse_lsms("").is_empty());
    }
}
