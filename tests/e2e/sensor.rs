//! The kernel sensor through `mcp-sensor exec`: exec, open and connect of a
//! watched tree, nothing from unwatched processes, lineage across
//! daemonizing, and the command-line contract (stdio, exit status).

use crate::harness::*;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use serde_json::Value;
use std::process::{Command, Stdio};

#[test]
fn exec_and_opens_resolve_symlinks_dirfds_and_proc_root() {
    let d = scratch("opens");
    let real = d.join("real");
    std::fs::create_dir_all(real.join("sub")).unwrap();
    std::fs::write(real.join("secret.txt"), "s3cret\n").unwrap();
    std::os::unix::fs::symlink(real.join("secret.txt"), d.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(&real, d.join("dirlink")).unwrap();
    let real_s = real.to_str().unwrap();
    let d_s = d.to_str().unwrap();
    let script = format!(
        "cat {d_s}/link.txt; cat {d_s}/dirlink/sub/../secret.txt; cat /proc/self/root{real_s}/secret.txt; \
         python3 -c 'import os; fd=os.open(\"{real_s}\", os.O_RDONLY); os.close(os.open(\"secret.txt\", os.O_RDONLY, dir_fd=fd))'"
    );
    let r = exec(&d, &["sh", "-c", &script]);
    assert_eq!(r.status(), 0, "{}", r.describe());
    assert_eq!(r.stdout(), "s3cret\n".repeat(3), "CMD's stdout must pass through untouched");

    let want = real.join("secret.txt").display().to_string();
    let opens = r.find("open", "path", &want);
    // cat via symlink, via `..` through a symlinked dir, via /proc/self/root, and python's dirfd open
    let by_comm = |c: &str| opens.iter().filter(|e| e["comm"] == c).count();
    assert_eq!(by_comm("cat"), 3, "three cats open the real path\n{}", r.describe());
    assert_eq!(by_comm("python3"), 1, "dirfd-relative open resolves\n{}", r.describe());
    let ino = std::fs::metadata(&want).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
    for o in &opens {
        assert_eq!(o["ino"], ino, "file identity: {o}");
        assert_eq!(o["resolved"], true);
        assert!(o["ret"].as_i64().unwrap() >= 0);
        assert_eq!(o["flags"][0], "O_RDONLY");
        for f in ["ts", "pid", "ppid", "comm", "exe"] {
            assert!(!o[f].is_null(), "{f} missing in {o}");
        }
    }

    // exec: the binary the kernel ran, argv, cwd, uid
    let cats = r.find("exec", "exe", "/usr/bin/cat");
    assert_eq!(cats.len(), 3, "{}", r.describe());
    assert_eq!(cats[0]["argv"][1], format!("{d_s}/link.txt"));
    assert_eq!(cats[0]["uid"], 0);
    let sh = r.of_kind("exec").next().expect("CMD's own exec is traced");
    assert_eq!(sh["argv"][0], "sh");
    assert!(sh["exe"].as_str().unwrap().ends_with("dash") || sh["exe"].as_str().unwrap().ends_with("bash"), "{sh}");
    assert_eq!(sh["cwd"], std::env::current_dir().unwrap().display().to_string());
}

#[test]
fn failed_open_reports_errno_and_callers_path() {
    let d = scratch("enoent");
    let r = exec(&d, &["cat", "/nonexistent/mcp-sensor-missing"]);
    assert_eq!(r.status(), 1);
    let o = r.find("open", "path", "/nonexistent/mcp-sensor-missing");
    assert_eq!(o.len(), 1, "{}", r.describe());
    assert_eq!(o[0]["error"], "ENOENT");
    assert_eq!(o[0]["resolved"], false);
    assert_eq!(o[0]["ret"], -libc::ENOENT);
}

#[test]
fn script_exec_reports_interpreter_and_script() {
    let d = scratch("script");
    let script = d.join("tool.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = exec(&d, &[script.to_str().unwrap()]);
    assert_eq!(r.status(), 0);
    let e = r.of_kind("exec").next().unwrap_or_else(|| panic!("{}", r.describe()));
    assert!(e["exe"].as_str().unwrap().ends_with("/dash") || e["exe"].as_str().unwrap().ends_with("/bash"), "exe is the interpreter: {e}");
    assert_eq!(e["script"], script.display().to_string());
}

#[test]
fn connects_inet_and_unix_with_results() {
    let d = scratch("connect");
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let sock = d.join("s.sock");
    let _unix = UnixListener::bind(&sock).unwrap();
    let py = format!(
        "import socket\n\
         s=socket.create_connection(('127.0.0.1',{port})); s.close()\n\
         u=socket.socket(socket.AF_UNIX); u.connect('{}'); u.close()\n\
         t=socket.socket(socket.AF_INET6)\n\
         try:\n  t.connect(('::1', 1))\n\
         except OSError: pass\n",
        sock.display()
    );
    let r = exec(&d, &["python3", "-c", &py]);
    assert_eq!(r.status(), 0, "{}", r.describe());
    let (_conn, _) = tcp.accept().unwrap();
    let c4: Vec<_> = r.of_kind("connect").filter(|e| e["family"] == "inet" && e["port"] == port).collect();
    assert_eq!(c4.len(), 1, "{}", r.describe());
    assert_eq!(c4[0]["addr"], "127.0.0.1");
    assert_eq!(c4[0]["ret"], 0);
    let cu = r.find("connect", "path", sock.to_str().unwrap());
    assert_eq!(cu.len(), 1, "{}", r.describe());
    assert_eq!(cu[0]["family"], "unix");
    let c6: Vec<_> = r.of_kind("connect").filter(|e| e["family"] == "inet6").collect();
    assert_eq!(c6.len(), 1, "{}", r.describe());
    assert_eq!(c6[0]["addr"], "::1");
    assert_eq!(c6[0]["error"], "ECONNREFUSED");
}

#[test]
fn unwatched_processes_produce_nothing() {
    let d = scratch("unwatched");
    let marker = d.join("unwatched-marker");
    std::fs::write(&marker, "x").unwrap();
    let (ready, go, after) = (d.join("watched-ready"), d.join("go"), d.join("watched-after"));
    std::fs::write(&after, "x").unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    // the watched command marks that it runs, waits while an unwatched
    // shell opens, execs and connects, then opens a file of its own
    let events = d.join("events.jsonl");
    let watched = format!(
        "touch {ready}; {wait_go}; cat {after} >/dev/null",
        ready = ready.display(),
        wait_go = wait_sh(&go),
        after = after.display()
    );
    let mut sensor = exec_command(&d, &events).args(["--", "sh", "-c", &watched]).spawn().unwrap();
    // attached and writing: the watched command's first open is in the log
    let is_ready = |e: &Value| e["kind"] == "open" && e["path"] == ready.display().to_string();
    wait_for_event(&events, "the watched command's first open in the events file", is_ready);
    // the unwatched shell checks for itself that the watched command ran first
    let other = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "[ -e {} ] || exit 3; cat {} >/dev/null; python3 -c \"import socket; socket.create_connection(('127.0.0.1',{port}))\"",
            ready.display(),
            marker.display()
        ))
        .status()
        .unwrap();
    assert_eq!(other.code(), Some(0), "the unwatched shell ran before the sensor was watching (3) or failed");
    std::fs::write(&go, "").unwrap();
    assert!(sensor.wait().unwrap().success());
    let evs = read_events(&events);
    let text: Vec<String> = evs.iter().map(|e| e.to_string()).collect();
    // watching before and after the unwatched shell ran
    let root = evs.iter().find(|e| is_ready(e)).expect("the ready mark")["server"]["pid"].clone();
    assert!(root.is_u64(), "the watched command's events name its server: {text:?}");
    let last = evs.iter().any(|e| e["kind"] == "open" && e["path"] == after.display().to_string() && e["comm"] == "cat");
    assert!(last, "the watched command's open after the unwatched shell is seen: {text:?}");
    for e in &evs {
        assert!(!e.to_string().contains("unwatched-marker"), "unwatched open leaked: {e}");
        assert!(e["port"] != port, "unwatched connect leaked: {e}");
        let own = ["drops", "sensor_start", "watch_end"].iter().any(|k| e["kind"] == *k); // the sensor's own lines
        assert!(own || e["server"]["pid"] == root, "only the watched tree is watched: {e}");
    }
}

#[test]
fn daemonized_grandchild_stays_watched() {
    let d = scratch("daemon");
    let marker = d.join("daemon-marker");
    std::fs::write(&marker, "x").unwrap();
    let done = d.join("done");
    // double fork + setsid: the grandchild waits until its parent is gone
    // and it is re-parented away from CMD's tree, then opens the marker
    let py = "import os, sys, time\n\
        marker, done = sys.argv[1], sys.argv[2]\n\
        deadline = time.monotonic() + 60\n\
        if os.fork() == 0:\n\
        \x20   os.setsid()\n\
        \x20   parent = os.getpid()\n\
        \x20   if os.fork() == 0:\n\
        \x20       while os.getppid() == parent and time.monotonic() < deadline: time.sleep(0.005)\n\
        \x20       open(marker).close(); open(done, 'w').close()\n\
        \x20   os._exit(0)\n\
        os.wait()\n\
        while not os.path.exists(done) and time.monotonic() < deadline: time.sleep(0.02)\n";
    let r = exec(&d, &["python3", "-c", py, marker.to_str().unwrap(), done.to_str().unwrap()]);
    assert_eq!(r.status(), 0, "{}", r.describe());
    let opens = r.find("open", "path", marker.to_str().unwrap());
    assert_eq!(opens.len(), 1, "{}", r.describe());
    let forked = r.of_kind("fork").find(|e| e["child_pid"] == opens[0]["pid"]).unwrap_or_else(|| panic!("{}", r.describe()));
    assert_ne!(opens[0]["ppid"], forked["pid"], "the open came after the re-parenting\n{}", r.describe());
    assert!(done.exists());
}

#[test]
fn exit_status_passes_through_and_signals_are_128_plus() {
    let d = scratch("status");
    assert_eq!(exec(&d, &["sh", "-c", "exit 42"]).status(), 42);
    let r = exec(&d, &["sh", "-c", "kill -9 $$"]);
    assert_eq!(r.status(), 137, "{}", r.describe());
    let exit = r.of_kind("exit").last().unwrap_or_else(|| panic!("{}", r.describe()));
    assert_eq!(exit["signal"], 9);
}

#[test]
fn stdin_and_stdout_are_the_commands() {
    let d = scratch("stdio");
    let events = d.join("e.jsonl");
    let mut child = exec_command(&d, &events)
        .args(["--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello mcp\n").unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    // the sensor was watching tr, and wrote its events where it was told
    let evs = read_events(&events);
    assert!(evs.iter().any(|e| e["kind"] == "exec" && e["argv"][0] == "tr"), "{evs:?}");
    assert!(evs.iter().any(|e| e["kind"] == "drops" && e["final"] == true), "{evs:?}");
    assert_eq!(out, "HELLO MCP\n", "the sensor writes nothing to stdout");
}

#[test]
fn command_not_found_is_127_like_a_shell() {
    require_root();
    let d = scratch("notfound");
    let events = d.join("events.jsonl");
    let out = exec_command(&d, &events).args(["--", "no-such-command-mcp"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-command-mcp: command not found"), "{err}");
    assert!(!events.exists(), "nothing ran: no events file");
}

#[test]
fn not_root_is_a_clear_error() {
    require_root();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", sensor_bin(), "exec"])
        .args(isolation(&scratch("not-root")))
        .args(["--", "true"])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("root"), "names what is missing: {err}");
}
