//! Fixtures for the default rules about files: alerts, and the near misses
//! that must stay quiet (a public key, a template .env, a read where only
//! writes matter). Shared fixture helpers live here too.

use super::bench::open;
use super::{defaults, load, EvalContext, FileId, FileIdentities, RuleSet};
use crate::event::{Body, Event};

pub(super) const RO: &[&str] = &["O_RDONLY", "O_CLOEXEC"];
pub(super) const WR: &[&str] = &["O_WRONLY", "O_CREAT", "O_TRUNC", "O_CLOEXEC"];
pub(super) const NODE: &str = "/usr/bin/node";

pub(super) fn active() -> EvalContext<'static> {
    EvalContext {
        first_request_seen: true,
        ..Default::default()
    }
}

pub(super) fn ids(set: &RuleSet, ev: &Event, ctx: &EvalContext) -> Vec<String> {
    set.evaluate(ev, ctx)
        .iter()
        .map(|m| m.id.to_string())
        .collect()
}

#[track_caller]
pub(super) fn fires(set: &RuleSet, ev: &Event, id: &str) {
    let got = ids(set, ev, &active());
    assert!(
        got.iter().any(|g| g == id),
        "expected `{id}` for {:?}, got {got:?}",
        ev.body
    );
}

#[track_caller]
pub(super) fn quiet(set: &RuleSet, ev: &Event, id: &str) {
    let got = ids(set, ev, &active());
    assert!(
        !got.iter().any(|g| g == id),
        "expected no `{id}` for {:?}",
        ev.body
    );
}

pub(super) fn user(text: &str) -> RuleSet {
    load(&[("user.yaml", text)]).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

#[test]
fn ssh_key_read() {
    let s = defaults();
    fires(
        &s,
        &open(NODE, "/home/u/.ssh/id_ed25519", RO),
        "ssh-key-read",
    );
    fires(
        &s,
        &open("/usr/bin/cat", "/root/.ssh/id_rsa", RO),
        "ssh-key-read",
    );
    fires(
        &s,
        &open(NODE, "/home/u/.ssh/deploy_key", RO),
        "ssh-key-read",
    );
    quiet(
        &s,
        &open(NODE, "/home/u/.ssh/id_ed25519.pub", RO),
        "ssh-key-read",
    );
    quiet(
        &s,
        &open(NODE, "/home/u/.ssh/known_hosts", RO),
        "ssh-key-read",
    );
    quiet(&s, &open(NODE, "/home/u/.ssh/config", RO), "ssh-key-read");
    quiet(
        &s,
        &open("/usr/bin/ssh", "/home/u/.ssh/id_ed25519", RO),
        "ssh-key-read",
    );
    let mut failed = open(NODE, "/home/u/.ssh/id_ecdsa", RO);
    if let Body::Open { ret, .. } = &mut failed.body {
        *ret = -2;
    }
    quiet(&s, &failed, "ssh-key-read");
}

#[test]
fn ssh_authorized_keys_and_system_secrets() {
    let s = defaults();
    let w = open(
        NODE,
        "/home/u/.ssh/authorized_keys",
        &["O_WRONLY", "O_APPEND"],
    );
    fires(&s, &w, "ssh-authorized-keys-write");
    quiet(&s, &w, "ssh-key-read");
    quiet(
        &s,
        &open(NODE, "/home/u/.ssh/authorized_keys", RO),
        "ssh-authorized-keys-write",
    );
    fires(
        &s,
        &open(NODE, "/etc/shadow", RO),
        "sensitive-system-file-read",
    );
    fires(
        &s,
        &open(NODE, "/etc/ssh/ssh_host_ed25519_key", RO),
        "sensitive-system-file-read",
    );
    quiet(
        &s,
        &open(NODE, "/etc/ssh/ssh_host_ed25519_key.pub", RO),
        "sensitive-system-file-read",
    );
    quiet(
        &s,
        &open(NODE, "/etc/passwd", RO),
        "sensitive-system-file-read",
    );
}

#[test]
fn credential_files() {
    let s = defaults();
    for p in [
        "/home/u/.aws/credentials",
        "/home/u/.aws/config",
        "/home/u/.config/gcloud/application_default_credentials.json",
        "/home/u/.config/gcloud/legacy_credentials/u@example.com/adc.json",
        "/home/u/.kube/config",
        "/root/.netrc",
        "/home/u/.git-credentials",
        "/home/u/.docker/config.json",
    ] {
        fires(&s, &open(NODE, p, RO), "credential-file-read");
    }
    quiet(
        &s,
        &open("/usr/local/bin/aws", "/home/u/.aws/credentials", RO),
        "credential-file-read",
    );
    quiet(
        &s,
        &open(NODE, "/home/u/.aws/cli/alias", RO),
        "credential-file-read",
    );
    let s = user("- list: credential_reader_servers\n  append: true\n  items: [srv]\n");
    quiet(
        &s,
        &open(NODE, "/home/u/.aws/credentials", RO),
        "credential-file-read",
    );
}

#[test]
fn browser_credentials() {
    let s = defaults();
    for p in [
        "/home/u/.config/google-chrome/Default/Login Data",
        "/home/u/.config/google-chrome/Profile 1/Network/Cookies",
        "/home/u/.config/chromium/Default/Login Data",
        "/home/u/.mozilla/firefox/abcd.default-release/logins.json",
        "/home/u/snap/firefox/common/.mozilla/firefox/x.default/key4.db",
    ] {
        fires(&s, &open(NODE, p, RO), "browser-credential-read");
    }
    quiet(
        &s,
        &open(
            NODE,
            "/home/u/.config/google-chrome/Default/Preferences",
            RO,
        ),
        "browser-credential-read",
    );
}

#[test]
fn dotenv_only_while_serving() {
    let s = defaults();
    let ev = open(NODE, "/home/u/project/.env", RO);
    fires(&s, &ev, "dotenv-read");
    assert!(
        ids(&s, &ev, &EvalContext::default()).is_empty(),
        "startup dotenv load is quiet"
    );
    fires(
        &s,
        &open(NODE, "/home/u/project/.env.local", RO),
        "dotenv-read",
    );
    quiet(
        &s,
        &open(NODE, "/home/u/project/.env.example", RO),
        "dotenv-read",
    );
    quiet(
        &s,
        &open(NODE, "/home/u/project/environment.ts", RO),
        "dotenv-read",
    );
}

#[test]
fn agent_config_tampering() {
    let s = defaults();
    for p in [
        "/home/u/.cursor/mcp.json",
        "/home/u/.config/Claude/claude_desktop_config.json",
        "/home/u/.claude.json",
        "/home/u/.claude/settings.json",
        "/home/u/project/.vscode/mcp.json",
        "/home/u/project/CLAUDE.md",
        "/home/u/project/AGENTS.md",
        "/home/u/project/.cursorrules",
    ] {
        fires(&s, &open(NODE, p, WR), "agent-config-tampering");
        quiet(&s, &open(NODE, p, RO), "agent-config-tampering");
    }
    quiet(
        &s,
        &open(NODE, "/home/u/project/NOTES.md", WR),
        "agent-config-tampering",
    );
}

#[test]
fn persistence_and_git_hooks() {
    let s = defaults();
    fires(
        &s,
        &open(NODE, "/home/u/.bashrc", &["O_WRONLY", "O_APPEND"]),
        "persistence-file-write",
    );
    fires(
        &s,
        &open(NODE, "/etc/ld.so.preload", WR),
        "persistence-file-write",
    );
    quiet(
        &s,
        &open(NODE, "/home/u/.bashrc", RO),
        "persistence-file-write",
    );
    fires(
        &s,
        &open(NODE, "/home/u/project/.git/hooks/pre-commit", WR),
        "git-hook-write",
    );
    quiet(
        &s,
        &open(NODE, "/home/u/project/.git/hooks/pre-commit.sample", WR),
        "git-hook-write",
    );
}

#[test]
fn file_identity_matches_other_paths_to_the_same_inode() {
    let s = user("- rule: secret-read\n  description: d\n  severity: high\n  kind: open\n  match:\n    file: /srv/secret.txt\n");
    assert_eq!(s.identity_paths(), ["/srv/secret.txt"]);
    let ev = open(NODE, "/proc/self/root/srv/../srv/hardlink", RO); // dev 8:1, ino 1234
    quiet(&s, &ev, "secret-read");
    let idents = FileIdentities::resolve(s.identity_paths(), |_| {
        Some(FileId {
            dev: 8 << 20 | 1,
            ino: 1234,
        })
    });
    let ctx = EvalContext {
        identities: Some(&idents),
        ..active()
    };
    assert_eq!(ids(&s, &ev, &ctx), ["secret-read"]);
    fires(&s, &open(NODE, "/srv/secret.txt", RO), "secret-read");
}
