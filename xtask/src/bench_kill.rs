//! Kill delay under `--enforce`: from the violating syscall to the
//! victim's death, per mechanism: an open killed at the syscall's exit
//! (the rule names only the file), an exec killed at `sched_process_exec`
//! (the rule names the program), and an agent-decided open kill (the rule
//! also tests the opener's `exe_name`, which the kernel does not decide).
//! Both times come from the sensor's own events: the violating `open`,
//! `exec` or `connect` and the victim's `exit`. Where BPF LSM is active the
//! open and exec are refused inside the syscall (the file is never opened)
//! and then killed: those rows say `kernel_lsm`. A refused connect is the
//! cgroup program's (`kernel_cgroup`).

use anyhow::{Context, Result};
use serde_json::Value;
use std::process::{Command, Stdio};

/// Nanoseconds of the day from an event's RFC 3339 `ts` (same day: a run
/// lasts well under a second).
fn ts_ns(ts: &str) -> Option<u64> {
    let t = ts.split('T').nth(1)?.trim_end_matches('Z');
    let (hms, frac) = t.split_once('.')?;
    let mut it = hms.split(':').map(|x| x.parse::<u64>());
    let (h, m, s) = (it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?);
    let frac = format!("{frac:0<9}");
    Some(((h * 60 + m) * 60 + s) * 1_000_000_000 + frac[..9].parse::<u64>().ok()?)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// One run of `script`: µs from the violating event to the victim's exit,
/// and who decided.
fn one(sensor: &std::path::Path, dir: &std::path::Path, rules: &std::path::Path, script: &str) -> Result<(f64, String)> {
    let events = dir.join("kill-events.jsonl");
    let _ = std::fs::remove_file(&events);
    let st = Command::new(sensor)
        .args(["exec", "--enforce", "--state-dir"])
        .arg(dir.join("state"))
        .arg("--rules")
        .arg(rules)
        .arg("--events")
        .arg(&events)
        .args(["--", "python3", "-c", script])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(st.code() == Some(137), "the victim was not killed: {st}");
    let text = std::fs::read_to_string(&events)?;
    let evs: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let alert = evs
        .iter()
        .find(|e| e["kind"] == "alert" && e["action"] == "killed" && e["rule"] == "bench-kill")
        .context("no killed alert")?;
    let open = &alert["event"];
    let exit = evs
        .iter()
        .find(|e| e["kind"] == "exit" && e["pid"] == open["pid"])
        .context("no exit of the victim")?;
    let (a, b) = (ts_ns(open["ts"].as_str().unwrap()).unwrap(), ts_ns(exit["ts"].as_str().unwrap()).unwrap());
    Ok((b.saturating_sub(a) as f64 / 1000.0, alert["decided_by"].as_str().unwrap_or("?").to_string()))
}

/// Markdown rows: kill delay per mechanism, median and p99.
pub fn kill_delay(rounds: usize) -> Result<String> {
    let sensor = crate::root().join("target/release/mcp-sensor");
    let dir = std::env::temp_dir().join(format!("mcp-sensor-bench-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("id_bench");
    std::fs::write(&key, "not a key\n")?;
    // a program of its own to forbid: a copy of true
    let prog = dir.join("forbidden-true");
    std::fs::copy("/bin/true", &prog)?;
    let open_rule = |extra: &str| {
        format!("- rule: bench-kill\n  description: b\n  severity: high\n  kind: open\n  action: kill\n  match:\n    path: {}\n{extra}", key.display())
    };
    let exec_rule = format!("- rule: bench-kill\n  description: b\n  severity: high\n  kind: exec\n  action: kill\n  match:\n    file: {}\n", prog.display());
    let open_script = format!("open({:?}).read()\nimport time\ntime.sleep(5)\n", key.display().to_string());
    let exec_script = format!("import os\nos.execv({p:?}, [{p:?}])\n", p = prog.display().to_string());
    // a connect refused by the cgroup program, and the kill at its exit
    let connect_rule = "- rule: bench-kill\n  description: b\n  severity: high\n  kind: connect\n  action: kill\n  match:\n    addr: 127.0.0.1\n    port: 9\n".to_string();
    let connect_script = "import socket, time\ntry:\n  socket.socket().connect(('127.0.0.1', 9))\nexcept OSError:\n  pass\ntime.sleep(5)\n".to_string();
    // `kernel`: whichever mechanism this kernel uses (BPF LSM refuses
    // opens and execs where it is active; the row names the one seen)
    let cases = [
        ("kernel", "open -> victim's exit", open_rule(""), &open_script),
        ("kernel", "exec -> victim's exit", exec_rule, &exec_script),
        ("kernel_cgroup", "connect -> victim's exit (refused, then SIGKILL at the connect's exit)", connect_rule, &connect_script),
        ("agent", "open -> victim's exit (the agent's pidfd kill)", open_rule("    exe_name: 'python3*'\n"), &open_script),
    ];
    let mut rows = Vec::new();
    for (i, (who, what, rule, script)) in cases.iter().enumerate() {
        let rules = dir.join(format!("case{i}.yaml"));
        std::fs::write(&rules, rule)?;
        let mut v = Vec::new();
        let mut seen = String::new();
        for _ in 0..rounds {
            let (us, by) = one(&sensor, &dir, &rules, script)?;
            let expected = if *who == "kernel" { by.starts_with("kernel_") && by != "kernel_cgroup" } else { by == *who };
            anyhow::ensure!(expected, "expected a kill decided by {who}, got {by}");
            anyhow::ensure!(seen.is_empty() || seen == by, "one case decided by both {seen} and {by}");
            seen = by;
            v.push(us);
        }
        let (p50, p99) = (percentile(&mut v, 0.5), percentile(&mut v, 0.99));
        rows.push(format!("| `{seen}`: {what} | {rounds} | {p50:.0} µs | {p99:.0} µs |"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(format!("| decided by: violating syscall -> death | n | median | p99 |\n|---|---|---|---|\n{}", rows.join("\n")))
}
