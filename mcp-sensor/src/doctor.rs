//! `mcp-sensor doctor`: which kernel features the sensor needs are here,
//! what each one's absence means, and which hooks and enforcement the
//! sensor uses on this kernel (features.rs). Owns no state; prints a
//! report (text on stderr, or one JSON object on stdout with `--json`)
//! and returns whether the sensor can run. A failure the user can fix
//! (root, BTF, lockdown) is told apart from one only a new release can
//! (the verifier refused a program: a sensor bug).

use aya::maps::MapType;
use aya::programs::ProgramType;
use aya::sys::{is_helper_supported, is_map_supported, is_program_supported, BpfHelper};
use std::path::Path;

#[derive(serde::Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    /// What the sensor loses without it.
    means: &'static str,
    required: bool,
}

/// What the load of the sensor's own programs said.
#[derive(serde::Serialize)]
struct LoadResult {
    ok: bool,
    attached: Vec<String>,
    /// The error with its whole chain (a verifier refusal carries the log's end).
    error: Option<String>,
    /// The refusal is the sensor's bug, not the machine's setup.
    sensor_bug: bool,
}

fn yes(r: Result<bool, impl std::fmt::Display>) -> (bool, String) {
    match r {
        Ok(true) => (true, "supported".into()),
        Ok(false) => (false, "not supported".into()),
        Err(e) => (false, format!("probe failed: {e}")),
    }
}

pub fn run(args: &crate::cli::DoctorArgs) -> i32 {
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
    let probed = crate::features::Probed::probe();
    let lsms = crate::features::active_lsms();
    checks.push(Check {
        name: "BPF LSM",
        ok: probed.lsm_active && probed.lsm_programs,
        detail: match (lsms.is_empty(), probed.lsm_active, probed.lsm_programs) {
            (true, _, _) => "no LSM list (securityfs)".into(),
            (false, true, false) => format!("bpf is an active LSM ({}) but its programs do not load here", lsms.join(",")),
            (false, false, _) => format!("bpf is not an active LSM ({}): boot with lsm=...,bpf", lsms.join(",")),
            (false, true, true) => format!("active LSMs: {}", lsms.join(",")),
        },
        means: "--enforce refuses protected opens and execs with it (EPERM); without, it kills at the syscall's exit",
        required: false,
    });
    let plan = crate::features::Plan::for_kernel(&probed);
    let load = (root && btf).then(|| {
        // everything --enforce would load too (cgroup and LSM programs);
        // the enforcement switch stays off
        let opts = crate::loader::LoadOptions { enforce: cg2.is_some(), ..Default::default() };
        match crate::loader::load(&opts) {
            Ok(s) => LoadResult { ok: true, attached: s.attached.clone(), error: None, sensor_bug: false },
            Err(e) => LoadResult {
                ok: false,
                attached: Vec::new(),
                sensor_bug: matches!(e, crate::loader::LoadError::Verifier { .. }),
                error: Some(e.to_string()),
            },
        }
    });
    let fixable = checks.iter().any(|c| c.required && !c.ok);
    let bug = load.as_ref().is_some_and(|l| l.sensor_bug);
    let runs = !fixable && load.as_ref().is_some_and(|l| l.ok);
    let verdict = if runs {
        "the sensor can run here"
    } else if fixable {
        "the sensor cannot run on this machine: fix the FAIL lines above"
    } else if bug {
        "the sensor cannot run on this kernel because of a bug in mcp-sensor: please report it \
         with the output of `mcp-sensor doctor --json`"
    } else {
        "the sensor's programs did not load: see the error above"
    };
    if args.json {
        let report = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "checks": checks,
            "probed": probed,
            "plan": plan,
            "load": load,
            "runs": runs,
            "verdict": verdict,
        });
        println!("{report}");
        return i32::from(!runs);
    }
    for c in &checks {
        let mark = if c.ok { "ok  " } else if c.required { "FAIL" } else { "warn" };
        eprintln!("{mark} {:<32} {}", c.name, c.detail);
        if !c.ok {
            eprintln!("     {}", c.means);
        }
    }
    match &load {
        Some(l) if l.ok => eprintln!("ok   {:<32} {} programs loaded and attached", "sensor programs", l.attached.len()),
        Some(l) => eprintln!("FAIL {:<32} {}", "sensor programs", l.error.as_deref().unwrap_or("")),
        None => {}
    }
    if !root {
        // helper and program probes load test programs: without root they
        // all fail, and a plan from them would name limits this kernel
        // may not have
        eprintln!("on this kernel ({}): run `mcp-sensor doctor` as root to see which programs, hooks", plan.kernel);
        eprintln!("     and enforcement it gets (probing loads test programs: needs CAP_BPF)");
        eprintln!("{verdict}");
        return i32::from(!runs);
    }
    eprintln!("on this kernel ({}):", plan.kernel);
    eprintln!("     programs: {:?} object", plan.object);
    for (what, hook) in &plan.hooks {
        eprintln!("     {what:<16} {hook}");
    }
    eprintln!("     --enforce on opens and execs: {}", plan.file_enforcement);
    for d in &plan.degraded {
        eprintln!("warn reduced here: {d}");
    }
    for u in &plan.unused {
        eprintln!("     not used: {u}");
    }
    eprintln!("{verdict}");
    i32::from(!runs)
}

fn is_cgroup2(p: &str) -> bool {
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    let c = std::ffi::CString::new(p).unwrap();
    // SAFETY: valid path and out-struct.
    unsafe { libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type == libc::CGROUP2_SUPER_MAGIC }
}
