//! Fixtures for the secrets an agent host holds (issue 18, part 5): the
//! agents' own logins, package registry tokens, shell histories, and
//! another process's environment and memory under /proc. Each file that
//! alerts has a benign neighbour that must stay quiet.

use super::bench::open;
use super::eval::proc_pid;
use super::tests_defaults::{active, fires, ids, quiet, user, NODE, RO};
use super::{defaults, EvalContext, ProcTree};

#[test]
fn agents_own_logins_are_credential_files() {
    let s = defaults();
    for p in [
        "/home/u/.claude/.credentials.json",
        "/home/u/.codex/auth.json",
        "/home/u/.gemini/oauth_creds.json",
        "/home/u/.copilot/config.json",
        "/root/.claude/.credentials.json",
    ] {
        fires(&s, &open(NODE, p, RO), "credential-file-read");
        fires(&s, &open("/usr/bin/cat", p, RO), "credential-file-read");
    }
    // their settings, instructions and MCP configurations are not logins
    for p in [
        "/home/u/.claude/settings.json",
        "/home/u/.claude.json",
        "/home/u/.codex/config.toml",
        "/home/u/.gemini/settings.json",
        "/home/u/.copilot/mcp-config.json",
        "/home/u/project/auth.json",
    ] {
        quiet(&s, &open(NODE, p, RO), "credential-file-read");
    }
    // the agent CLI a server runs reads its own login
    quiet(&s, &open("/home/u/.local/bin/claude", "/home/u/.claude/.credentials.json", RO), "credential-file-read");
    quiet(&s, &open("/usr/local/bin/codex", "/home/u/.codex/auth.json", RO), "credential-file-read");
}

#[test]
fn publish_tokens_are_credential_files() {
    let s = defaults();
    for p in [
        "/home/u/.pypirc",
        "/home/u/.cargo/credentials.toml",
        "/home/u/.cargo/credentials",
        "/home/u/.gem/credentials",
    ] {
        fires(&s, &open(NODE, p, RO), "credential-file-read");
    }
    for p in ["/home/u/.cargo/config.toml", "/home/u/project/setup.cfg", "/home/u/.gem/specs/index"] {
        quiet(&s, &open(NODE, p, RO), "credential-file-read");
    }
    quiet(&s, &open("/home/u/.cargo/bin/cargo", "/home/u/.cargo/credentials.toml", RO), "credential-file-read");
}

#[test]
fn registry_configuration_alerts_while_serving_and_never_kills() {
    let s = defaults();
    let r = s.rule("registry-token-read").expect("in the default pack");
    assert_eq!(r.action, super::Action::Alert, "npx reads ~/.npmrc at every launch: not in the kill profile");
    for p in [
        "/home/u/.npmrc",
        "/home/u/project/.npmrc",
        "/home/u/.yarnrc.yml",
        "/home/u/.config/pip/pip.conf",
        "/home/u/.pip/pip.conf",
        "/home/u/.nuget/NuGet/NuGet.Config",
        "/home/u/.m2/settings.xml",
        "/home/u/.m2/settings-security.xml",
        "/home/u/.gradle/gradle.properties",
        "/home/u/.composer/auth.json",
        "/home/u/.config/composer/auth.json",
    ] {
        fires(&s, &open(NODE, p, RO), "registry-token-read");
    }
    // the files next to them
    for p in [
        "/home/u/project/package.json",
        "/home/u/project/.yarnrc",
        "/home/u/project/requirements.txt",
        "/home/u/.m2/repository/org/x/x-1.pom",
        "/home/u/project/gradle.properties",
        "/home/u/project/composer.json",
    ] {
        quiet(&s, &open(NODE, p, RO), "registry-token-read");
    }
    // a launcher before the first request, and the package manager itself
    let launch = open(NODE, "/home/u/.npmrc", RO);
    assert!(!ids(&s, &launch, &EvalContext::default()).iter().any(|i| i == "registry-token-read"));
    quiet(&s, &open("/usr/bin/pip3", "/home/u/.config/pip/pip.conf", RO), "registry-token-read");
    quiet(&s, &open("/usr/share/maven/bin/mvn", "/home/u/.m2/settings.xml", RO), "registry-token-read");
    let s = user("- list: registry_token_servers\n  append: true\n  items: [srv]\n");
    quiet(&s, &open(NODE, "/home/u/.npmrc", RO), "registry-token-read");
}

#[test]
fn shell_histories_alert_except_a_shell_reading_its_own() {
    let s = defaults();
    assert_eq!(s.rule("shell-history-read").unwrap().action, super::Action::Alert);
    for p in [
        "/home/u/.bash_history",
        "/root/.zsh_history",
        "/home/u/.local/share/fish/fish_history",
        "/home/u/.python_history",
        "/home/u/.node_repl_history",
        "/home/u/.psql_history",
        "/home/u/.mysql_history",
        "/home/u/.sqlite_history",
        "/home/u/.irb_history",
        "/home/u/.rediscli_history",
    ] {
        fires(&s, &open("/usr/bin/cat", p, RO), "shell-history-read");
        fires(&s, &open(NODE, p, RO), "shell-history-read");
    }
    for p in ["/home/u/.bashrc", "/home/u/.zshrc", "/home/u/.config/fish/config.fish", "/home/u/project/history.md"] {
        quiet(&s, &open("/usr/bin/cat", p, RO), "shell-history-read");
    }
    // an interactive shell loads its own history; another shell's is not its own
    quiet(&s, &open("/usr/bin/bash", "/home/u/.bash_history", RO), "shell-history-read");
    quiet(&s, &open("/usr/bin/zsh", "/home/u/.zsh_history", RO), "shell-history-read");
    quiet(&s, &open("/usr/bin/fish", "/home/u/.local/share/fish/fish_history", RO), "shell-history-read");
    fires(&s, &open("/usr/bin/zsh", "/home/u/.bash_history", RO), "shell-history-read");
    fires(&s, &open("/usr/bin/bash", "/home/u/.python_history", RO), "shell-history-read");
}

#[test]
fn proc_paths_name_their_pid() {
    assert_eq!(proc_pid("/proc/1234/environ"), Some(Some(1234)));
    assert_eq!(proc_pid("/proc/1/task/7/mem"), Some(Some(1)));
    assert_eq!(proc_pid("/proc/self/environ"), Some(None));
    assert_eq!(proc_pid("/proc/thread-self/maps"), Some(None));
    for none in ["/proc/meminfo", "/proc/sys/kernel/pid_max", "/proc/", "/proc/99999999999/environ", "/home/proc/1/environ", "/proc/1"] {
        assert_eq!(proc_pid(none), None, "{none}");
    }
}

/// The fixture process is pid 101, parent 100, of server `srv` rooted at 100.
#[test]
fn another_processes_environment_and_memory() {
    let s = defaults();
    let id = "foreign-process-secrets-read";
    assert_eq!(s.rule(id).unwrap().severity, super::Severity::High);
    // the client (the root's parent), init, anyone outside the tree
    for p in ["/proc/50/environ", "/proc/1/environ", "/proc/50/mem", "/proc/50/maps", "/proc/50/smaps", "/proc/50/task/51/environ"] {
        fires(&s, &open(NODE, p, RO), id);
    }
    // its own, by name or by number; its server's root; its parent below the root
    for p in ["/proc/self/environ", "/proc/thread-self/environ", "/proc/101/environ", "/proc/101/mem", "/proc/100/environ", "/proc/self/maps"] {
        quiet(&s, &open(NODE, p, RO), id);
    }
    // what ps and top read of everyone
    for p in ["/proc/50/cmdline", "/proc/50/status", "/proc/50/stat", "/proc/meminfo"] {
        quiet(&s, &open(NODE, p, RO), id);
    }
    // a refused open is not a read
    let mut denied = open(NODE, "/proc/1/environ", RO);
    if let crate::event::Body::Open { ret, .. } = &mut denied.body {
        *ret = -13;
    }
    quiet(&s, &denied, id);
    // a child or sibling: the agent's process table says it is in the tree
    let child = open(NODE, "/proc/102/environ", RO);
    assert!(ids(&s, &child, &active()).iter().any(|i| i == id), "unknown to the rules alone");
    let members = |pid: u32| pid == 102;
    let ctx = EvalContext { tree: Some(ProcTree(&members)), ..active() };
    assert!(!ids(&s, &child, &ctx).iter().any(|i| i == id));
    assert!(ids(&s, &open(NODE, "/proc/50/environ", RO), &ctx).iter().any(|i| i == id));
    // a debugger server can be allowed
    let s = user("- list: proc_reader_servers\n  append: true\n  items: [srv]\n");
    quiet(&s, &open(NODE, "/proc/50/environ", RO), id);
}

#[test]
fn proc_owner_field_is_checked_and_usable_in_user_rules() {
    let s = user(
        "- rule: siblings\n  description: d\n  severity: low\n  kind: open\n  match:\n    path: /proc/*/environ\n    proc_owner: [self, tree]\n",
    );
    fires(&s, &open(NODE, "/proc/self/environ", RO), "siblings");
    fires(&s, &open(NODE, "/proc/100/environ", RO), "siblings");
    quiet(&s, &open(NODE, "/proc/50/environ", RO), "siblings");
    let bad = super::load(&[(
        "bad.yaml",
        "- rule: b\n  description: d\n  severity: low\n  kind: exec\n  match:\n    proc_owner: other\n",
    )])
    .err()
    .expect("an exec rule cannot test proc_owner, and `other` is no owner");
    let text: Vec<String> = bad.iter().map(|e| e.to_string()).collect();
    assert!(text.iter().any(|t| t.contains("proc_owner")), "{text:?}");
}

fn ptrace(syscall: &'static str, target_pid: u32, ret: i32) -> crate::event::Event {
    let request = (syscall == "ptrace").then_some("PTRACE_ATTACH");
    super::bench::event(NODE, crate::event::Body::Ptrace { syscall, request, target_pid, ret, error: None }, Some("run"))
}

/// The fixture process is pid 101, parent 100, of server `srv` rooted at 100.
#[test]
fn another_processes_memory_by_ptrace_or_process_vm() {
    let s = defaults();
    let id = "foreign-process-memory-access";
    assert_eq!(s.rule(id).unwrap().severity, super::Severity::High);
    // the client (the root's parent), init; a refused attach is still the attempt
    for sys in ["ptrace", "process_vm_readv", "process_vm_writev"] {
        fires(&s, &ptrace(sys, 50, 0), id);
        fires(&s, &ptrace(sys, 1, -1), id);
    }
    // itself, its server's root
    for pid in [101, 100] {
        quiet(&s, &ptrace("ptrace", pid, 0), id);
    }
    // a child: the agent's process table says it is in the tree
    let child = ptrace("process_vm_readv", 102, 0);
    let members = |pid: u32| pid == 102;
    let ctx = EvalContext { tree: Some(ProcTree(&members)), ..active() };
    assert!(!ids(&s, &child, &ctx).iter().any(|i| i == id));
    assert!(ids(&s, &ptrace("process_vm_readv", 50, 0), &ctx).iter().any(|i| i == id));
    // a debugger server can be allowed
    let s = user("- list: proc_reader_servers\n  append: true\n  items: [srv]\n");
    quiet(&s, &ptrace("ptrace", 50, 0), id);
    // user rules: the syscall and the outcome
    let s = user(
        "- rule: vm-writes\n  description: d\n  severity: low\n  kind: ptrace\n  match:\n    syscall: process_vm_writev\n    outcome: success\n",
    );
    fires(&s, &ptrace("process_vm_writev", 50, 0), "vm-writes");
    quiet(&s, &ptrace("process_vm_writev", 50, -1), "vm-writes");
    quiet(&s, &ptrace("process_vm_readv", 50, 0), "vm-writes");
}
