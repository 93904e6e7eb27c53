//! The agent's half of known files (rules/known.rs): the scan of the homes
//! for the files open rules name, the watched servers' `HOME`s (a server
//! is often given one that /etc/passwd does not list), and the check that
//! a canonical name still has the identity it was learned with.
//!
//! Reads the filesystem and /proc; the table itself is pure.

use crate::enforce::walk;
use crate::rules::{FileId, KnownFiles, KnownSource, RuleSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Directory entries one scan reads at most (the enforcement compile's bound).
pub const SCAN_BUDGET: usize = crate::enforce::SCAN_BUDGET;

/// `path`'s identity as events and the kernel know it (follows symlinks:
/// an open does).
pub fn identity(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| FileId::from_stat(m.dev(), m.ino()))
}

/// `extra` (the servers' `HOME`s) first, then the users' homes not among
/// them: a scan's budget goes to the servers' own homes before a large
/// `/root` or `/home/*` can use it up.
pub fn homes(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut h = extra.to_vec();
    for u in walk::homes() {
        if !h.contains(&u) {
            h.push(u);
        }
    }
    h
}

/// Replaces what the last scan found with the files `rules`' open path
/// globs name now under `homes`. Returns whether the scan was cut short
/// (files past the budget are then known only once opened).
pub fn scan(known: &mut KnownFiles, rules: &RuleSet, homes: &[PathBuf]) -> bool {
    known.forget_scanned();
    scan_more(known, rules, homes)
}

/// Adds the files `rules`' open path globs name under `homes` (a new
/// server's `HOME`, with a budget of its own), keeping what is known.
pub fn scan_more(known: &mut KnownFiles, rules: &RuleSet, homes: &[PathBuf]) -> bool {
    let mut budget = SCAN_BUDGET;
    let mut truncated = false;
    for g in rules.open_path_globs() {
        let f = walk::expand(g, homes, &mut budget);
        truncated |= f.truncated;
        for p in &f.files {
            if let (Some(id), Some(name)) = (identity(p), p.to_str()) {
                known.learn(id, name, KnownSource::Scan);
            }
        }
    }
    truncated
}

/// The `HOME` a process was started with, when it is a directory.
pub fn process_home(pid: u32) -> Option<PathBuf> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let home = env.split(|&b| b == 0).find_map(|kv| kv.strip_prefix(b"HOME="))?;
    let home = PathBuf::from(std::str::from_utf8(home).ok()?);
    (home.is_absolute() && home != Path::new("/") && home.is_dir()).then_some(home)
}

/// Whether `canonical` still names `id` (an identity is only as good as
/// the inode number not being reused since it was learned).
pub fn still_names(canonical: &str, id: FileId) -> bool {
    identity(Path::new(canonical)) == Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_finds_what_the_open_rules_name_and_forgets_what_went() {
        let d = crate::test_dir("known");
        let ssh = d.join("u/.ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let key = ssh.join("id_test");
        std::fs::write(&key, "k").unwrap();
        std::fs::write(ssh.join("known_hosts"), "h").unwrap();
        let rules = crate::rules::check(&[(
            "x.yaml",
            "- rule: k\n  description: d\n  severity: high\n  kind: open\n  match:\n    path: \"**/.ssh/id_*\"\n",
        )])
        .unwrap();
        let mut known = KnownFiles::default();
        assert!(!scan(&mut known, &rules, &[d.join("u")]));
        let id = identity(&key).unwrap();
        assert_eq!(known.canonical(id), key.to_str());
        assert_eq!(known.len(), 1, "known_hosts is not named by the rule");
        assert!(still_names(key.to_str().unwrap(), id));
        std::fs::remove_file(&key).unwrap();
        assert!(!still_names(key.to_str().unwrap(), id));
        scan(&mut known, &rules, &[d.join("u")]);
        assert!(known.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_process_home_is_read_from_its_environment() {
        let me = std::process::id();
        let want = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_dir() && h != Path::new("/"));
        assert_eq!(process_home(me), want);
        assert_eq!(process_home(u32::MAX), None);
    }
}
