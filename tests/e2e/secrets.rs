//! Another process's secrets under /proc (issue 18): a watched process
//! that reads its client's environment raises `foreign-process-secrets-read`;
//! reading its own (`/proc/self`), its server root's or its child's stays
//! quiet, and the run proves the sensor saw each of those opens.

use crate::harness::*;
use serde_json::Value;

fn opens_of<'a>(run: &'a Run, path: &str) -> Vec<&'a Value> {
    run.of_kind("open").filter(|e| e["path"] == path).collect()
}

#[test]
fn reading_the_clients_environ_alerts_and_the_trees_own_do_not() {
    let d = scratch("proc-environ");
    let pids = d.join("pids");
    // sh is the watched root; its parent (mcp-sensor exec's front, which
    // holds the environment it was given) plays the MCP client
    // the sleep is reaped before sh exits: nothing outlives the command, so
    // exec waits for its final lines (a live member would detach it)
    let script = format!(
        "sleep 5 & c=$!; echo \"$$ $PPID $c\" > {}; \
         cat /proc/self/environ > /dev/null; \
         cat /proc/$PPID/environ > /dev/null; \
         cat /proc/$$/environ > /dev/null; \
         : < /proc/$c/environ; kill $c; wait $c; true",
        pids.display()
    );
    let run = exec(&d, &["sh", "-c", &script]);
    assert_eq!(run.status(), 0, "{}", run.describe());
    let text = std::fs::read_to_string(&pids).expect("the script wrote its pids");
    let v: Vec<u64> = text.split_whitespace().map(|p| p.parse().unwrap()).collect();
    let (root, client, child) = (v[0], v[1], v[2]);

    let alerts: Vec<&Value> = run.of_kind("alert").filter(|a| a["rule"] == "foreign-process-secrets-read").collect();
    assert_eq!(alerts.len(), 1, "one alert, for the client's environ\n{}", run.describe());
    let a = alerts[0];
    assert_eq!(a["event"]["path"], format!("/proc/{client}/environ"), "{a}");
    assert_eq!(a["event"]["ppid"], root, "read by cat, a child of the root: {a}");
    assert_eq!(a["severity"], "high", "{a}");
    assert_eq!(a["action"], "alert", "{a}");

    // positive controls: the sensor saw the quiet opens, as the kernel
    // resolved them (/proc/self/environ is /proc/<opener>/environ)
    let own: Vec<&Value> = run
        .of_kind("open")
        .filter(|e| e["ppid"] == root && e["pid"] != root && e["path"] == format!("/proc/{}/environ", e["pid"]))
        .collect();
    assert_eq!(own.len(), 1, "cat's /proc/self/environ seen as its own pid\n{}", run.describe());
    let of_root = opens_of(&run, &format!("/proc/{root}/environ"));
    assert!(of_root.iter().any(|e| e["pid"] != root), "a child reading its server root's environ was seen\n{}", run.describe());
    let of_child = opens_of(&run, &format!("/proc/{child}/environ"));
    assert!(of_child.iter().any(|e| e["pid"] == root), "the root reading its child's environ was seen\n{}", run.describe());
    for e in own.iter().chain(&of_root).chain(&of_child) {
        assert_eq!(e["ret"].as_i64().map(|r| r >= 0), Some(true), "a successful open: {e}");
    }
    run.final_drops();
}

/// tests/e2e/progs/vm_read.c, compiled into `dir`.
fn vm_read(dir: &std::path::Path) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/progs/vm_read.c");
    let bin = dir.join("vm_read");
    let out = std::process::Command::new("cc").arg("-O1").arg("-o").arg(&bin).arg(&src).output().expect("run cc");
    assert!(out.status.success(), "cc {}: {}", src.display(), String::from_utf8_lossy(&out.stderr));
    bin
}

#[test]
fn kernel_reaching_into_the_clients_memory_alerts_and_into_its_own_tree_does_not() {
    let d = scratch("vm-read");
    let bin = vm_read(&d);
    // sh is the watched root; its parent (mcp-sensor exec's front) plays
    // the MCP client: read its memory, attach to it; then the root's own
    let script = format!("echo \"$$ $PPID\"; {b} $PPID; {b} $PPID attach; {b} $$", b = bin.display());
    let run = exec(&d, &["sh", "-c", &script]);
    assert_eq!(run.status(), 0, "{}", run.describe());
    let out = run.stdout();
    let pids: Vec<u64> = out.lines().next().unwrap().split_whitespace().map(|p| p.parse().unwrap()).collect();
    let (root, client) = (pids[0], pids[1]);
    // the reads worked: the rules see what really happened
    assert_eq!(out.matches("ELF").count(), 2, "{out}");
    assert!(out.contains("attached"), "{out}");

    let ev = |sys: &str, target: u64| -> Vec<&Value> {
        run.of_kind("ptrace").filter(|e| e["syscall"] == sys && e["target_pid"] == target).collect()
    };
    // positive control: the read of its own tree is seen, and quiet
    let own = ev("process_vm_readv", root);
    assert_eq!(own.len(), 1, "{}", run.describe());
    assert_eq!(own[0]["ret"], 4, "{}", own[0]);
    let attach = ev("ptrace", client);
    assert_eq!(attach.len(), 1, "{}", run.describe());
    assert_eq!(attach[0]["request"], "PTRACE_ATTACH", "{}", attach[0]);

    let alerts: Vec<&Value> = run.of_kind("alert").filter(|a| a["rule"] == "foreign-process-memory-access").collect();
    let mut seen: Vec<(String, u64)> = alerts
        .iter()
        .map(|a| (a["event"]["syscall"].as_str().unwrap().to_string(), a["event"]["target_pid"].as_u64().unwrap()))
        .collect();
    seen.sort();
    assert_eq!(seen, [("process_vm_readv".to_string(), client), ("ptrace".to_string(), client)], "{}", run.describe());
    run.final_drops();
}
