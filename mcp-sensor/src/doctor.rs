//! `mcp-sensor doctor`: which kernel features the sensor needs are here,
//! and what each one's absence means. Owns no state; prints a report and
//! returns whether the sensor can run.

use aya::maps::MapType;
use aya::programs::ProgramType;
use aya::sys::{is_helper_supported, is_map_supported, is_program_supported, BpfHelper};
use std::path::Path;

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    /// What the sensor loses without it.
    means: &'static str,
    required: bool,
}

fn yes(r: Result<bool, impl std::fmt::Display>) -> (bool, String) {
    match r {
        Ok(true) => (true, "supported".into()),
        Ok(false) => (false, "not supported".into()),
        Err(e) => (false, format!("probe failed: {e}")),
    }
}

pub fn run() -> i32 {
    let mut checks = Vec::new();
    let root = unsafe { libc::geteuid() } == 0;
    checks.push(Check {
        name: "root",
        ok: root,
        detail: if root { "running as root".into() } else { "not root".into() },
        means: "loading BPF programs needs root (CAP_BPF, CAP_PERFMON)",
        required: true,
    });
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    checks.push(Check {
        name: "kernel BTF",
        ok: btf,
        detail: "/sys/kernel/btf/vmlinux".into(),
        means: "CO-RE relocation and tp_btf programs need CONFIG_DEBUG_INFO_BTF=y",
        required: true,
    });
    let lockdown = std::fs::read_to_string("/sys/kernel/security/lockdown").unwrap_or_default();
    let confidential = lockdown.contains("[confidentiality]");
    checks.push(Check {
        name: "lockdown",
        ok: !confidential,
        detail: if lockdown.is_empty() { "no lockdown LSM".into() } else { lockdown.trim().to_string() },
        means: "lockdown=confidentiality forbids reading kernel memory from BPF",
        required: true,
    });
    if root {
        let (ok, detail) = yes(is_program_supported(ProgramType::TracePoint));
        checks.push(Check { name: "tracepoint programs", ok, detail, means: "file, network and stdio probes are syscall tracepoints", required: true });
        let (ok, detail) = yes(is_program_supported(ProgramType::RawTracePoint));
        checks.push(Check { name: "raw_tp programs", ok, detail, means: "process lifecycle (fork/exec/exit) uses BTF-typed tracepoints", required: true });
        let (ok, detail) = yes(is_map_supported(MapType::RingBuf));
        checks.push(Check { name: "ring buffer", ok, detail, means: "all events travel through a BPF ring buffer (5.8+)", required: true });
        let (ok, detail) = yes(is_helper_supported(ProgramType::TracePoint, BpfHelper::BPF_FUNC_send_signal));
        checks.push(Check { name: "bpf_send_signal", ok, detail, means: "enforce mode kills in the kernel with it; without, only alerts", required: false });
        let (ok, detail) = yes(is_program_supported(ProgramType::CgroupSockAddr));
        checks.push(Check { name: "cgroup socket-address programs", ok, detail, means: "enforce mode refuses denied connects with them", required: false });
    }
    let cg2 = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .find(|p| Path::new(&format!("{p}/cgroup.controllers")).exists() || Path::new(&format!("{p}/cgroup.procs")).exists() && is_cgroup2(p));
    checks.push(Check {
        name: "cgroup v2",
        ok: cg2.is_some(),
        detail: cg2.map_or("not mounted".into(), |p| format!("mounted at {p}")),
        means: "connect enforcement attaches at the cgroup v2 root",
        required: false,
    });
    if root && btf {
        let r = crate::loader::load(&crate::loader::LoadOptions::default());
        checks.push(match r {
            Ok(s) => Check { name: "sensor programs", ok: true, detail: format!("{} programs loaded and attached", s.attached.len()), means: "the sensor itself", required: true },
            Err(e) => Check { name: "sensor programs", ok: false, detail: e.to_string(), means: "the sensor itself", required: true },
        });
    }
    let mut fatal = false;
    for c in &checks {
        let mark = if c.ok { "ok  " } else if c.required { "FAIL" } else { "warn" };
        eprintln!("{mark} {:<32} {}", c.name, c.detail);
        if !c.ok {
            eprintln!("     {}", c.means);
            fatal |= c.required;
        }
    }
    eprintln!("kprobes, fentry and LSM programs are not used: the sensor runs without them.");
    if fatal {
        eprintln!("the sensor cannot run on this machine: fix the FAIL lines above");
        1
    } else {
        eprintln!("the sensor can run here");
        0
    }
}

fn is_cgroup2(p: &str) -> bool {
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    let c = std::ffi::CString::new(p).unwrap();
    // SAFETY: valid path and out-struct.
    unsafe { libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type == libc::CGROUP2_SUPER_MAGIC }
}
