//! Renames, links, symlinks and truncates judged by the write rules
//! (eval.rs, "Writes without an open"): the tampering and persistence
//! rules fire on a change onto their files, the read rules never do, and
//! a change that failed is quiet.

use super::bench::open;
use super::tests_defaults::{fires, quiet, user, NODE};
use super::defaults;
use crate::event::{Body, Change, Event};

fn change(kind: &str, path: &str, source: Option<&str>, ret: i32) -> Event {
    let mut ev = open(NODE, path, &[]);
    let c = Change {
        op: "renameat2",
        path: path.into(),
        source: source.map(Into::into),
        resolved: false,
        ret,
        error: (ret < 0).then(|| "EPERM".into()),
        flags: vec![],
        length: None,
        dev: 0,
        ino: 0,
        file_flags: vec![],
    };
    ev.body = match kind {
        "rename" => Body::Rename(c),
        "link" => Body::Link(c),
        "symlink" => Body::Symlink(c),
        _ => Body::Truncate(c),
    };
    ev
}

#[test]
fn a_change_onto_a_protected_name_is_a_write_of_it() {
    let s = defaults();
    let tmp = Some("/home/u/p/CLAUDE.md.0123456789abcdef0123456789abcdef.tmp");
    for kind in ["rename", "link", "symlink", "truncate"] {
        fires(&s, &change(kind, "/home/u/p/CLAUDE.md", tmp, 0), "agent-config-tampering");
        fires(&s, &change(kind, "/home/u/p/.claude/settings.json", None, 0), "agent-config-tampering");
        fires(&s, &change(kind, "/home/u/.bashrc", None, 0), "persistence-file-write");
        fires(&s, &change(kind, "/home/u/.ssh/authorized_keys", None, 0), "ssh-authorized-keys-write");
        fires(&s, &change(kind, "/home/u/p/.git/hooks/pre-commit", None, 0), "git-hook-write");
        // the exception holds as for an open
        quiet(&s, &change(kind, "/home/u/p/.git/hooks/pre-commit.sample", None, 0), "git-hook-write");
        // failed: nothing changed
        quiet(&s, &change(kind, "/home/u/p/CLAUDE.md", tmp, -1), "agent-config-tampering");
        // read rules are about opens that read: a change is none
        quiet(&s, &change(kind, "/home/u/.ssh/id_ed25519", None, 0), "ssh-key-read");
        quiet(&s, &change(kind, "/home/u/.aws/credentials", None, 0), "credential-file-read");
    }
    // the .tmp itself is no protected name
    quiet(&s, &change("rename", "/home/u/p/notes.txt", Some("/home/u/p/CLAUDE.md"), 0), "agent-config-tampering");
}

#[test]
fn user_rules_see_changes_only_when_they_require_write() {
    let s = user(
        "- rule: w\n  description: d\n  severity: low\n  kind: open\n  match:\n    path: /w/*\n    write: true\n\
         - rule: r\n  description: d\n  severity: low\n  kind: open\n  match:\n    path: /w/*\n\
         - rule: f\n  description: d\n  severity: low\n  kind: open\n  match:\n    path: /w/*\n    write: true\n    flags: O_TRUNC\n\
         - rule: nw\n  description: d\n  severity: low\n  kind: open\n  match:\n    path: /w/*\n    write: false\n",
    );
    let ev = change("rename", "/w/x", Some("/w/y"), 0);
    fires(&s, &ev, "w");
    quiet(&s, &ev, "r");
    quiet(&s, &ev, "f");
    quiet(&s, &ev, "nw");
}
