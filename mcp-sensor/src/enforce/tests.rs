//! The compile step on real (temporary) files: what ends up in the deny
//! tables for open, exec and connect kill rules.

use super::compile::compile;
use super::walk::NamePattern;
use crate::abi;
use crate::rules::{self, FileId};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    crate::test_dir(&format!("enf-{name}"))
}

fn id(p: &Path) -> FileId {
    let m = std::fs::metadata(p).unwrap();
    FileId::from_stat(m.dev(), m.ino())
}

fn write(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, "secret").unwrap();
}

/// The default enforce profile switched to alert-only, so the tables hold
/// the test's rules alone.
const PROFILE_ALERT_ONLY: &str = "- rule: ssh-key-read\n  action: alert\n- rule: ssh-authorized-keys-write\n  action: alert\n\
- rule: credential-file-read\n  action: alert\n- rule: agent-config-tampering\n  action: alert\n\
- rule: unexpected-shell\n  action: alert\n- rule: cloud-metadata-connect\n  action: alert\n";

fn set(yaml: &str) -> rules::RuleSet {
    rules::load(&[("profile.yaml", PROFILE_ALERT_ONLY), ("user.yaml", yaml)]).unwrap_or_else(|e| panic!("{e:?}"))
}

fn index(set: &rules::RuleSet, id: &str) -> u32 {
    set.rules().position(|r| r.id == id).unwrap() as u32
}

#[test]
fn protected_files_by_identity_honour_exceptions() {
    let d = scratch("files");
    let home = d.join("home");
    for f in [".ssh/id_ed25519", ".ssh/id_ed25519.pub", ".ssh/known_hosts"] {
        write(&home.join(f));
    }
    let yaml = format!(
        "- rule: key\n  description: k\n  severity: critical\n  kind: open\n  action: kill\n  kill_scope: tree\n  match:\n    path: {}/.ssh/id_*\n  except:\n    - basename: '*.pub'\n",
        home.display()
    );
    let s = set(&yaml);
    let t = compile(&s, &[], &[]);
    let key = id(&home.join(".ssh/id_ed25519"));
    assert_eq!(t.files.len(), 1, "only the private key: {:?}", t.files);
    let v = t.files[&key];
    assert_eq!(v.rule, index(&s, "key"));
    assert_eq!(v.flags, abi::VF_KILL | abi::VF_TREE);
    // an exception makes new-file protection the agent's (the kernel tests names only)
    assert!(t.dirs.is_empty(), "{:?}", t.dirs);
    // a hard link is the same identity: protected without being named
    std::fs::hard_link(home.join(".ssh/id_ed25519"), d.join("innocent")).unwrap();
    assert!(t.files.contains_key(&id(&d.join("innocent"))));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn files_that_do_not_exist_yet_are_protected_by_directory_and_name() {
    let d = scratch("dirs");
    std::fs::create_dir_all(d.join("u1/.aws")).unwrap();
    std::fs::create_dir_all(d.join("u2/.aws")).unwrap();
    let yaml = format!(
        "- rule: aws\n  description: a\n  severity: high\n  kind: open\n  action: kill\n  match:\n    path: ['{}/*/.aws/credentials', '**/.aws/sso-*.json']\n",
        d.display()
    );
    let s = set(&yaml);
    let t = compile(&s, &[d.join("u2")], &[]);
    assert!(t.files.is_empty());
    let exact = NamePattern { prefix: "credentials".into(), suffix: String::new(), exact: true };
    let sso = NamePattern { prefix: "sso-".into(), suffix: ".json".into(), exact: false };
    let u1 = &t.dirs[&id(&d.join("u1/.aws"))];
    assert_eq!(u1.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), vec![exact.clone()]);
    // u2 is a home: the `**` glob covers it too, in the next slot
    let u2 = &t.dirs[&id(&d.join("u2/.aws"))];
    assert_eq!(u2.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), vec![exact, sso]);
    assert_eq!(u2[0].1.flags, abi::VF_KILL, "scope process");
    // a rescan after the file appears protects it by identity as well
    write(&d.join("u1/.aws/credentials"));
    let t2 = compile(&s, &[d.join("u2")], &[]);
    assert!(t2.files.contains_key(&id(&d.join("u1/.aws/credentials"))));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn forbidden_executables_by_identity_through_symlinks() {
    let d = scratch("exec");
    let real = d.join("realshell");
    std::fs::copy("/bin/true", &real).unwrap();
    let link = d.join("bin/sneaky");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // the rule names the link's directory; the kernel sees the target's inode
    let yaml = format!(
        "- rule: no-shell\n  description: s\n  severity: high\n  kind: exec\n  action: kill\n  match:\n    exe_name: [realshell, dash]\n    exe: '{}/**'\n",
        d.display()
    );
    let s = set(&yaml);
    let t = compile(&s, &[], &[]);
    // `exe: dir/**` names no files to walk, so the rule found its file
    // among... nothing: only the bin dirs are searched besides the globs.
    assert!(!t.exec.contains_key(&id(&real)), "{:?}", t.exec);
    let yaml = format!(
        "- rule: no-shell\n  description: s\n  severity: high\n  kind: exec\n  action: kill\n  match:\n    exe_name: realshell\n    exe: '{}/*'\n",
        d.display()
    );
    let s = set(&yaml);
    let t = compile(&s, &[], &[]);
    assert_eq!(t.exec.len(), 1, "{:?}", t.exec);
    assert!(t.exec.contains_key(&id(&link)), "the link resolves to the protected inode");
    // dash from the standard bin directories, found by name
    let s = set("- rule: no-dash\n  description: s\n  severity: high\n  kind: exec\n  action: kill\n  match:\n    exe_name: dash\n");
    let t = compile(&s, &[], &[]);
    let dash = std::fs::canonicalize("/usr/bin/dash").expect("dash is installed (Debian's /bin/sh)");
    assert!(t.exec.contains_key(&id(&dash)), "dash is forbidden by identity: {:?}", t.exec);
    assert!(t.exec.contains_key(&id(Path::new("/bin/sh"))), "and so /bin/sh, a link to it");
    assert!(t.exec.values().all(|v| v.rule == index(&s, "no-dash")));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn networks_carry_the_ports_of_every_network_containing_them() {
    let s = set(
        "- rule: meta\n  description: m\n  severity: high\n  kind: connect\n  action: kill\n  match:\n    addr: 169.254.169.254\n\
         - rule: lan\n  description: l\n  severity: high\n  kind: connect\n  action: kill\n  kill_scope: tree\n  match:\n    addr: 169.254.0.0/16\n    port: [22, 8000-8999]\n\
         - rule: v6\n  description: l\n  severity: high\n  kind: connect\n  action: kill\n  match:\n    addr: fd00::/8\n",
    );
    let t = compile(&s, &[], &[]);
    let key = |a: &str, p: u8| {
        t.nets.iter().find(|n| n.addr == a.parse::<std::net::Ipv6Addr>().unwrap().octets() && n.prefix == p).unwrap_or_else(|| panic!("{a}/{p}: {:?}", t.nets))
    };
    let host = key("::ffff:169.254.169.254", 128);
    let (meta, lan) = (index(&s, "meta"), index(&s, "lan"));
    let got: Vec<(u16, u16, u32)> = host.ports.iter().map(|(l, h, v)| (*l, *h, v.rule)).collect();
    assert_eq!(got, vec![(0, 65535, meta), (22, 22, lan), (8000, 8999, lan)]);
    let net = key("::ffff:169.254.0.0", 112);
    assert_eq!(net.ports.len(), 2, "the host's rule does not widen to the network");
    assert_eq!(net.ports[0].2.flags, abi::VF_KILL | abi::VF_TREE);
    assert_eq!(key("fd00::", 8).ports.len(), 1);
}

#[test]
fn rules_the_kernel_cannot_decide_are_noted_not_compiled() {
    let s = set(
        "- rule: ctx\n  description: c\n  severity: high\n  kind: open\n  action: kill\n  match:\n    path: /etc/shadow\n    tool: [read_file]\n",
    );
    let t = compile(&s, &[], &[]);
    assert!(t.files.is_empty() && t.dirs.is_empty());
    assert_eq!(t.notes.len(), 1, "{:?}", t.notes);
    assert!(t.notes[0].contains("`ctx` is decided by the agent"), "{:?}", t.notes);
    // the default pack with its profile alert-only: nothing reaches the kernel
    let t = compile(&set(""), &[], &[]);
    assert!(t.files.is_empty() && t.exec.is_empty() && t.nets.is_empty() && t.dirs.is_empty());
    assert!(t.shapes.dirs.is_empty() && t.shapes.names.is_empty() && t.exempt.is_empty());
}

#[test]
fn the_default_profile_compiles_to_shapes_exemptions_and_shells_after_the_first_request() {
    use super::compile::Exempt;
    let s = rules::defaults();
    let t = compile(&s, &[], &[]); // no homes: shapes alone must cover keys anywhere
    let key = index(&s, "ssh-key-read");
    let ak = index(&s, "ssh-authorized-keys-write");
    let ssh = &t.shapes.dirs[&(".ssh".to_string(), String::new())];
    // the public files are allowed first, then every other name is protected
    let deny: Vec<_> = ssh.iter().filter(|x| !x.allow).collect();
    assert!(ssh.iter().take_while(|x| x.allow).count() >= 8, "{ssh:?}");
    assert!(ssh.iter().any(|x| x.allow && x.pat == NamePattern::parse("*.pub", 32).unwrap() && x.v.rule == key));
    assert_eq!(deny[0].pat, NamePattern::parse("*", 32).unwrap());
    assert_eq!(deny[0].v.rule, key);
    assert_eq!(deny[0].v.flags, abi::VF_KILL | abi::VF_EXEMPT, "ssh and its tools are exempt");
    assert!(deny.iter().any(|x| x.v.rule == ak && x.v.flags & abi::VF_WRITE != 0 && x.pat.prefix == "authorized_keys"), "{ssh:?}");
    // credential files by name, anywhere; and under their directories
    let cred = index(&s, "credential-file-read");
    assert_eq!(t.shapes.names[".netrc"].rule, cred);
    assert!(t.shapes.dirs[&(".aws".to_string(), String::new())].iter().any(|x| x.pat.prefix == "credentials" && x.v.rule == cred));
    assert!(t.shapes.dirs.contains_key(&("gcloud".to_string(), ".config".to_string())));
    // publish tokens and the agents' own logins, by shape, under any home
    assert_eq!(t.shapes.names[".pypirc"].rule, cred);
    for (dir, name) in [(".claude", ".credentials.json"), (".codex", "auth.json"), (".gemini", "oauth_creds.json"), (".copilot", "config.json"), (".cargo", "credentials.toml")] {
        let slots = &t.shapes.dirs[&(dir.to_string(), String::new())];
        assert!(slots.iter().any(|x| !x.allow && x.pat == NamePattern::parse(name, 32).unwrap() && x.v.rule == cred), "{dir}/{name}: {slots:?}");
    }
    // a Claude login read is killed, a settings write is the tampering rule's, a settings read is free
    let claude = &t.shapes.dirs[&(".claude".to_string(), String::new())];
    let settings = claude.iter().find(|x| x.pat.prefix == "settings.json").expect("agent-config-tampering's slot");
    assert_ne!(settings.v.rule, cred);
    assert_eq!(settings.v.flags & abi::VF_WRITE, abi::VF_WRITE);
    assert!(!t.notes.iter().any(|n| n.contains("too many name patterns")), "{:?}", t.notes);
    // registry configurations, histories and /proc reads only alert: nothing in the kernel
    for alert_only in ["registry-token-read", "shell-history-read", "foreign-process-secrets-read"] {
        let r = index(&s, alert_only);
        assert!(!t.shapes.names.values().any(|v| v.rule == r), "{alert_only}");
        assert!(!t.shapes.dirs.values().flatten().any(|x| x.v.rule == r), "{alert_only}");
    }
    assert!(!t.shapes.names.contains_key(".npmrc") && !t.shapes.names.contains_key(".bash_history"));
    // agent configurations: written only
    let cfg = index(&s, "agent-config-tampering");
    assert_eq!(t.shapes.names["CLAUDE.md"].flags & abi::VF_WRITE, abi::VF_WRITE);
    assert_eq!(t.shapes.names["CLAUDE.md"].rule, cfg);
    // the process exceptions as kernel identities and comms
    assert!(t.exempt.contains(&Exempt::Comm { comm: "git".into(), rule: cred }), "{:?}", t.exempt);
    assert!(t.exempt.contains(&Exempt::Comm { comm: "claude".into(), rule: cred }), "an agent CLI reads its own login: {:?}", t.exempt);
    if let Ok(ssh_bin) = std::fs::canonicalize("/usr/bin/ssh") {
        assert!(t.exempt.contains(&Exempt::Exe { id: id(&ssh_bin), rule: key }), "{:?}", t.exempt);
    }
    // shells: by identity, only after the first request, and only runs
    // that are not script runs (the trusted_script_run exception is the
    // agent's: MS_VF_SHELL_CMD), and not started by direnv (its
    // evaluation shell: the parent's identity, EXEMPT as a parent)
    let shell = index(&s, "unexpected-shell");
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let flags = abi::VF_KILL | abi::VF_AFTER_REQ | abi::VF_SHELL_CMD | abi::VF_EXEMPT | abi::VF_EXEMPT_PARENT;
    assert_eq!(t.exec[&id(&sh)], super::Verdict { rule: shell, flags });
    let direnv = std::path::Path::new("/usr/bin/direnv");
    let parents: Vec<&Exempt> = t.exempt.iter().filter(|e| matches!(e, Exempt::Parent { .. })).collect();
    if direnv.exists() {
        assert!(parents.contains(&&Exempt::Parent { id: id(direnv), rule: shell }), "{:?}", t.exempt);
    }
    assert!(parents.iter().all(|e| matches!(e, Exempt::Parent { rule, .. } if *rule == shell)), "{parents:?}");
    assert!(t.notes.iter().any(|n| n.contains("`unexpected-shell`: the kernel decides it in part")), "{:?}", t.notes);
    // cloud metadata: refused, nobody killed
    let md = index(&s, "cloud-metadata-connect");
    assert!(t.nets.iter().any(|n| n.ports.iter().any(|p| p.2.rule == md && p.2.flags & abi::VF_KILL == 0)));
}

#[test]
fn kernel_decisions_from_record_flags() {
    use super::KernelDecision;
    assert_eq!(KernelDecision::from_flags(abi::F_SCRIPT), None);
    let k = KernelDecision::from_flags(abi::F_KILLED | abi::F_KILL_TREE | (4 << abi::F_RULE_SHIFT)).unwrap();
    assert_eq!(k, KernelDecision { rule: Some(3), killed: true, denied: false, tree: true });
    let k = KernelDecision::from_flags(abi::F_DENIED | (1 << abi::F_RULE_SHIFT)).unwrap();
    assert_eq!((k.rule, k.killed, k.denied), (Some(0), false, true));
}
