//! Shells under other names (issue 18): a copy of bash anywhere, busybox
//! renamed and run as `sh`, bash run from a memfd. The default pack's
//! `unexpected-shell` must fire on each, by what the file is (`exe_is`),
//! and under `--enforce` the shell must not run its command: the first
//! exec of a copy is the agent's kill, the next is the kernel's.
//!
//! The watched "server" is python: it reads one `tools/call` request on
//! its stdin (so rules with `after_first_request` apply), then runs the
//! case's programs with `subprocess` (no shell of its own). Copies go in
//! `$HOME/.cache`, not a temp directory. Each test has its control in the
//! same run: a non-shell program copied or run the same way raises
//! nothing, and its exec event proves the sensor saw it.

use crate::harness::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

const REQUEST: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"run\",\"arguments\":{}}}\n";

/// A directory of this test's own under `$HOME/.cache` (outside every
/// temp directory: the rule must not depend on where the copy is).
fn cache_dir(name: &str) -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let d = Path::new(&home).join(".cache").join(format!("mcp-sensor-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `body` (python, after `C` = `cache` and helpers) as a watched
/// server that first reads one tools/call request; `during` runs while it
/// does (given the events file).
fn serve(d: &Path, cache: &Path, flags: &[&str], body: &str, during: impl FnOnce(&Path)) -> Run {
    require_root();
    let events = d.join("events.jsonl");
    let _ = std::fs::remove_file(&events);
    let script = format!(
        "import os, shutil, subprocess, sys, time\n\
         sys.stdin.readline()\n\
         C = {c:?}\n\
         def run(argv, **kw):\n\
         \x20 try:\n\
         \x20   return str(subprocess.run(argv, **kw).returncode)\n\
         \x20 except OSError as e:\n\
         \x20   return 'errno%d' % e.errno\n\
         {body}",
        c = cache.display().to_string()
    );
    let mut child = exec_command(d, &events)
        .args(flags)
        .args(["--", "/usr/bin/python3", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mcp-sensor");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(REQUEST).unwrap();
    during(&events);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    // the watcher outlives CMD while what CMD left runs (a killed shell's
    // `sleep`): its final totals say it is done
    wait_for_event(&events, "the watcher's final drops line", |e| e["kind"] == "drops" && e["final"] == true);
    Run { events: read_events(&events), out }
}

fn execs_of<'a>(run: &'a Run, exe: &Path) -> Vec<&'a Value> {
    let exe = exe.display().to_string();
    run.of_kind("exec").filter(|e| e["exe"] == exe.as_str()).collect()
}

/// The `unexpected-shell` alerts on the exec of pid `pid`.
fn shell_alerts<'a>(run: &'a Run, pid: &Value) -> Vec<&'a Value> {
    run.of_kind("alert").filter(|a| a["rule"] == "unexpected-shell" && a["event"]["kind"] == "exec" && a["event"]["pid"] == *pid).collect()
}

fn done(cache: &Path, run: &Run) -> String {
    let f = cache.join("done");
    std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}: the server did not finish\n{}", f.display(), run.describe()))
}

#[test]
fn kernel_copied_bash_under_another_name_is_an_unexpected_shell() {
    let d = scratch("shell-copy");
    let c = cache_dir("copy");
    let body = "shutil.copy2('/bin/bash', C + '/x')\n\
                shutil.copy2('/bin/true', C + '/y')\n\
                r1 = run([C + '/x', '-c', 'echo copied > ' + C + '/x.out'])\n\
                r2 = run([C + '/y'])\n\
                open(C + '/done', 'w').write(r1 + ' ' + r2)\n";
    let run = serve(&d, &c, &[], body, |_| {});
    assert_eq!(done(&c, &run), "0 0", "{}", run.describe());
    let x = execs_of(&run, &c.join("x"));
    assert_eq!(x.len(), 1, "the copy's exec\n{}", run.describe());
    assert_eq!(x[0]["exe_is"], json!({"name": "bash", "by": "content"}), "{}", x[0]);
    let alerts = shell_alerts(&run, &x[0]["pid"]);
    assert_eq!(alerts.len(), 1, "unexpected-shell on the copy\n{}", run.describe());
    assert_eq!(alerts[0]["event"]["exe_is"]["by"], "content", "{}", alerts[0]);
    assert!(alerts[0]["tool_call"]["name"] == "run", "attributed to the call: {}", alerts[0]);
    // the control: a copy of a program that is no shell, seen and quiet
    let y = execs_of(&run, &c.join("y"));
    assert_eq!(y.len(), 1, "the control's exec was seen\n{}", run.describe());
    assert!(y[0].get("exe_is").is_none(), "{}", y[0]);
    assert!(shell_alerts(&run, &y[0]["pid"]).is_empty(), "{}", run.describe());
    let _ = std::fs::remove_dir_all(&c);
}

#[test]
fn kernel_renamed_busybox_run_as_sh_is_an_unexpected_shell() {
    let d = scratch("shell-busybox");
    let c = cache_dir("busybox");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).exists()).unwrap_or_else(|| {
        panic!("busybox is not installed: scripts/install-deps.sh installs busybox-static")
    });
    let body = format!(
        "shutil.copy2({busybox:?}, C + '/tool')\n\
         r1 = run(['sh', '-c', 'echo bb > ' + C + '/bb.out'], executable=C + '/tool')\n\
         r2 = run(['true'], executable=C + '/tool')\n\
         open(C + '/done', 'w').write(r1 + ' ' + r2)\n"
    );
    let run = serve(&d, &c, &[], &body, |_| {});
    assert_eq!(done(&c, &run), "0 0", "{}", run.describe());
    let tool = execs_of(&run, &c.join("tool"));
    assert_eq!(tool.len(), 2, "both runs of the copy\n{}", run.describe());
    let (sh, t) = (tool[0], tool[1]);
    assert_eq!(sh["argv"][0], "sh", "{sh}");
    assert_eq!(sh["exe_is"], json!({"name": "sh", "by": "applet", "multicall": "busybox"}), "{sh}");
    let alerts = shell_alerts(&run, &sh["pid"]);
    assert_eq!(alerts.len(), 1, "unexpected-shell on busybox as sh\n{}", run.describe());
    // the control: the same copy run as `true` is busybox, not a shell
    assert_eq!(t["exe_is"], json!({"name": "true", "by": "applet", "multicall": "busybox"}), "{t}");
    assert!(shell_alerts(&run, &t["pid"]).is_empty(), "{}", run.describe());
    let _ = std::fs::remove_dir_all(&c);
}

#[test]
fn kernel_bash_from_a_memfd_is_an_unexpected_shell() {
    let d = scratch("shell-memfd");
    let c = cache_dir("memfd");
    // the shell is short-lived: when it is gone before the agent reads
    // /proc/<pid>/exe, the memfd is read from the fd the server still holds
    let body = "fd = os.memfd_create('x', 0)\n\
                data = open('/bin/bash', 'rb').read()\n\
                while data:\n\
                \x20 data = data[os.write(fd, data):]\n\
                pid = os.fork()\n\
                if pid == 0:\n\
                \x20 os.execv('/proc/self/fd/%d' % fd, ['x', '-c', 'echo m > ' + C + '/m.out'])\n\
                _, st = os.waitpid(pid, 0)\n\
                r2 = run(['/bin/true'])\n\
                open(C + '/done', 'w').write(str(os.waitstatus_to_exitcode(st)) + ' ' + r2)\n";
    let run = serve(&d, &c, &[], body, |_| {});
    assert_eq!(done(&c, &run), "0 0", "{}", run.describe());
    // a memfd has no path (exec'd through /proc/self/fd; fexecve failed with
    // ENOENT in Debian 11's VM): the kernel flags it `pseudo`
    let m: Vec<&Value> = run.of_kind("exec").filter(|e| e["argv"][0] == "x" && e["file_flags"] == json!(["pseudo"])).collect();
    assert_eq!(m.len(), 1, "the memfd exec\n{}", run.describe());
    assert_eq!(m[0]["exe_is"], json!({"name": "bash", "by": "content"}), "{}", m[0]);
    // its own name, as /proc/<pid>/exe shows it (path.bpf.h), so `exe: "/memfd:*"` matches
    assert_eq!(m[0]["exe"], "/memfd:x", "{}", m[0]);
    assert_eq!(shell_alerts(&run, &m[0]["pid"]).len(), 1, "unexpected-shell on the memfd shell\n{}", run.describe());
    let fileless: Vec<&Value> = run.of_kind("alert").filter(|a| a["rule"] == "fileless-exec" && a["event"]["pid"] == m[0]["pid"]).collect();
    assert_eq!(fileless.len(), 1, "fileless-exec on the memfd exec\n{}", run.describe());
    // the control: /bin/true run the same way, seen and quiet
    let t = execs_of(&run, Path::new("/usr/bin/true"));
    let t = if t.is_empty() { execs_of(&run, Path::new("/bin/true")) } else { t };
    assert_eq!(t.len(), 1, "the control's exec was seen\n{}", run.describe());
    assert!(shell_alerts(&run, &t[0]["pid"]).is_empty(), "{}", run.describe());
    let _ = std::fs::remove_dir_all(&c);
}

/// Under `--enforce` (the default pack): the first exec of a copy is
/// recognised after it started and killed by the agent (`decided_by:
/// agent`, before its command ran); its identity then goes into the
/// kernel's exec deny map, and the next exec of the same copy is stopped
/// in the kernel. The server itself runs on (scope process). A shell run
/// from a memfd is the agent's to kill.
#[test]
fn kernel_copied_shell_is_killed_by_the_agent_then_by_the_kernel() {
    let d = scratch("shell-enforce");
    let c = cache_dir("enforce");
    let go = d.join("go");
    let body = format!(
        "shutil.copy2('/bin/bash', C + '/x')\n\
         r1 = run([C + '/x', '-c', 'sleep 3; echo 1 > ' + C + '/ran1'])\n\
         i = 0\n\
         while not os.path.exists({go:?}) and i < 3000:\n\
         \x20 time.sleep(0.02); i += 1\n\
         r2 = run([C + '/x', '-c', 'echo 2 > ' + C + '/ran2'])\n\
         r3 = run(['/bin/true'])\n\
         fd = os.memfd_create('m', 0)\n\
         data = open('/bin/bash', 'rb').read()\n\
         while data:\n\
         \x20 data = data[os.write(fd, data):]\n\
         r4 = run(['m', '-c', 'sleep 3; echo 4 > ' + C + '/ran4'], executable='/proc/self/fd/%d' % fd, pass_fds=[fd])\n\
         open(C + '/done', 'w').write(r1 + ' ' + r2 + ' ' + r3 + ' ' + r4)\n",
        go = go.display().to_string()
    );
    let run = serve(&d, &c, &["--enforce"], &body, |events| {
        wait_for_event(events, "the agent's kill of the copy", |e| e["kind"] == "alert" && e["action"] == "killed");
        std::fs::write(&go, "").unwrap();
    });
    let res = done(&c, &run);
    let r: Vec<&str> = res.split(' ').collect();
    assert_eq!(r[0], "-9", "the agent killed the first run: {res}\n{}", run.describe());
    assert_ne!(r[1], "0", "the second run was stopped: {res}");
    assert_eq!(r[2], "0", "the server ran on: {res}");
    assert_eq!(r[3], "-9", "the agent killed the memfd shell: {res}");
    assert!(!c.join("ran1").exists() && !c.join("ran2").exists(), "a copy ran its command\n{}", run.describe());
    assert!(!c.join("ran4").exists(), "the memfd shell ran its command\n{}", run.describe());
    let killed: Vec<&Value> = run.of_kind("alert").filter(|a| a["rule"] == "unexpected-shell" && a["action"] == "killed").collect();
    assert_eq!(killed.len(), 3, "{}", run.describe());
    // a memfd has no later exec: the agent's, every time
    assert_eq!(killed[2]["decided_by"], "agent", "{}", killed[2]);
    assert_eq!(killed[2]["event"]["file_flags"], json!(["pseudo"]), "{}", killed[2]);
    assert_eq!(killed[0]["decided_by"], "agent", "{}", killed[0]);
    assert_eq!(killed[0]["event"]["exe_is"], json!({"name": "bash", "by": "content"}), "{}", killed[0]);
    // which kernel mechanism: what the sensor planned, checked against the
    // VM runner's word where there is one (tests/e2e/kernel.rs)
    let start = &run.events[0];
    assert_eq!(start["kind"], "sensor_start", "{start}");
    if let Ok(e) = std::env::var("MCP_SENSOR_EXPECT_ENFORCEMENT") {
        assert_eq!(start["file_enforcement"], e.as_str(), "{start}");
    }
    // a shell's kill waits for its argv (MS_VF_SHELL_CMD, issue 15): at
    // sched_process_exec, before its first instruction, BPF LSM or not
    assert_eq!(killed[1]["decided_by"], "kernel_syscall_exit", "the kernel stopped the second: {}", killed[1]);
    assert_eq!(killed[1]["event"]["exe_is"], json!({"name": "bash", "by": "content"}), "{}", killed[1]);
    let fin = run.final_drops();
    assert_eq!(fin["enforced"]["kill_exec"], 1, "the kernel counted its stop: {fin}");
    assert_eq!(fin["enforced"]["deny_exec"], 0, "{fin}");
    let _ = std::fs::remove_dir_all(&c);
}
