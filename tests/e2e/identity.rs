//! Where events come from (issue 13): every line names its host, and a
//! server in a PID and mount namespace of its own (`unshare`), in a cgroup
//! named the way container runtimes name theirs, has its events carry the
//! container id and its namespace pid next to the host pid.

use crate::harness::*;
use crate::mcp::{drive, fs_server, mcp_env};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A container id as docker writes it: 64 hex digits.
const CONTAINER_ID: &str = "5e1f0c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7";

/// The cgroup2 mount, or one made for the test (a VM's init mounts none).
fn cgroup2_root(dir: &Path) -> PathBuf {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let found = mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        post.starts_with("cgroup2 ").then(|| PathBuf::from(pre.split(' ').nth(4).unwrap()))
    });
    if let Some(root) = found {
        return root;
    }
    let root = dir.join("cgroup2");
    std::fs::create_dir_all(&root).unwrap();
    let st = std::process::Command::new("mount").args(["-t", "cgroup2", "none"]).arg(&root).status().unwrap();
    assert!(st.success(), "mount -t cgroup2 at {}", root.display());
    root
}

/// Removes the test's cgroups once their processes are gone.
struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
        let _ = std::fs::remove_dir(self.0.parent().unwrap());
    }
}

#[test]
fn kernel_a_server_in_its_own_pid_namespace_and_container_cgroup_says_so() {
    let d = scratch("identity");
    let notes = d.join("notes.txt");
    std::fs::write(&notes, "in a container\n").unwrap();
    let parent = cgroup2_root(&d).join(format!("mcp-sensor-e2e-{}", std::process::id()));
    let cg = Cgroup(parent.join(format!("docker-{CONTAINER_ID}.scope")));
    std::fs::create_dir_all(&cg.0).unwrap();

    // the watched root moves itself into the cgroup, then the real
    // filesystem server runs as pid 1 of a new PID namespace
    let env = mcp_env();
    let server = fs_server(&env, &d).join(" ");
    let script = format!("echo $$ > {}/cgroup.procs && exec unshare --pid --fork --mount-proc {server}", cg.0.display());
    let s = drive(&d, vec!["sh".into(), "-c".into(), script], json!([{"call": "read_text_file", "arguments": {"path": notes}}]), &[]);
    assert_eq!(s.client["results"][0]["content_text"], "in a container\n", "{}", s.client);
    let run = &s.run;

    // the host, on every line
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap().trim().to_string();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    assert!(!run.events.is_empty());
    for e in &run.events {
        assert_eq!(e["host"]["boot_id"], boot_id.as_str(), "{e}");
        assert_eq!(e["host"]["name"], hostname.as_str(), "{e}");
    }

    // the server's open: in the container, pid 1 of its namespace
    let opens = run.find("open", "path", notes.to_str().unwrap());
    assert!(!opens.is_empty(), "the server opened the file\n{}", run.describe());
    for o in &opens {
        assert_eq!(o["container"], json!({"id": CONTAINER_ID, "runtime": "docker"}), "{o}");
        assert_eq!(o["ns_pid"], 1, "node is the namespace's first process: {o}");
        assert_ne!(o["pid"], 1, "next to the host pid: {o}");
    }
    // the watched root ran before it joined: no container, no namespace
    let root: Vec<&Value> = run.of_kind("exec").filter(|e| e["exe"].as_str().is_some_and(|x| x.ends_with("/unshare"))).collect();
    assert_eq!(root.len(), 1, "sh exec'd unshare\n{}", run.describe());
    assert!(root[0]["ns_pid"].is_null(), "unshare runs in the host's PID namespace: {}", root[0]);
    assert_eq!(root[0]["container"]["id"], CONTAINER_ID, "after the move into the cgroup: {}", root[0]);
}
