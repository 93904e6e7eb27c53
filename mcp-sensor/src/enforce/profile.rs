//! What `--enforce` will stop, by rule, and who decides it: the start-up
//! line (stderr and `sensor_start`'s `enforced`) and `rules list`. Pure.

use crate::rules::{EventKind, KernelPlan, RuleSet};
use serde::Serialize;

/// One active `action: kill` or `deny` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnforcedRule {
    pub rule: String,
    /// `kill` or `deny`.
    pub action: &'static str,
    /// `kernel` (at the syscall, never late), `kernel+agent` (the kernel
    /// decides part of it, the agent the rest: that part can be late) or
    /// `agent` (always late).
    pub decided_by: &'static str,
    /// What the kernel leaves to the agent, when anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The enforce profile of `set`, in rule order, then the io_uring set-up
/// kill (`enforce/uring.rs`) when it applies. `lsm`: whether BPF LSM
/// decides opens on this kernel (`Some(true)`: the ring is allowed, its
/// opens refused one by one, so no set-up kill is listed); `None` when the
/// kernel is not known (`rules list`), which lists the kill with its
/// condition.
pub fn profile(set: &RuleSet, lsm: Option<bool>) -> Vec<EnforcedRule> {
    let kills = set.kill_rules();
    let kernel_opens = kills.iter().any(|k| k.kind == EventKind::Open && matches!(k.plan, KernelPlan::Open { .. }));
    let mut out: Vec<EnforcedRule> = kills
        .into_iter()
        .map(|k| {
            let (decided_by, why) = match (&k.plan, k.conds.partial) {
                (KernelPlan::Agent { why }, _) => ("agent", Some(why.to_string())),
                (_, Some(why)) => ("kernel+agent", Some(why.to_string())),
                (KernelPlan::Connect { .. }, None) if k.kill => ("kernel+agent", Some(CONNECT_KILL_WHY.to_string())),
                // write rules also judge renames, links, symlinks and
                // truncates (fchange.bpf.c): only BPF LSM refuses those
                (KernelPlan::Open { .. }, None) if k.conds.write && lsm != Some(true) => (
                    "kernel+agent",
                    Some(match lsm {
                        None => format!("{CHANGE_WHY} (where BPF LSM is not active; with it they are refused)"),
                        Some(_) => CHANGE_WHY.to_string(),
                    }),
                ),
                _ => ("kernel", None),
            };
            EnforcedRule { rule: k.id.to_string(), action: if k.kill { "kill" } else { "deny" }, decided_by, why }
        })
        .collect();
    let uring = set.rules().find(|r| r.enabled && r.kinds.contains(&EventKind::IoUringSetup));
    if let (true, Some(r), Some(false) | None) = (kernel_opens, uring, lsm) {
        if !out.iter().any(|e| e.rule == r.id) {
            let why = match lsm {
                None => format!("{URING_WHY} (only where BPF LSM is not active; with it the ring's opens are refused one by one)"),
                Some(_) => URING_WHY.to_string(),
            };
            out.push(EnforcedRule { rule: r.id.clone(), action: "kill", decided_by: "kernel", why: Some(why) });
        }
    }
    out
}

/// Why a connect kill rule is partly the agent's (sockaddr.bpf.c).
const CONNECT_KILL_WHY: &str = "the kernel refuses every connect and UDP send it matches, and kills at connect(2)'s exit; \
     a TCP Fast Open or io_uring connect or a UDP send is killed by the agent (cgroup programs cannot send signals)";

/// Why a write rule is partly the agent's without BPF LSM.
const CHANGE_WHY: &str = "opens for writing are killed at the syscall; a rename, link, symlink or truncate onto the file \
     (the filesystem server's write_file over an existing file) is killed by the agent, late";

/// Why an `io_uring_setup` rule kills under `--enforce` whatever its own
/// action (ARCHITECTURE.md, "io_uring under --enforce").
const URING_WHY: &str =
    "a watched server's io_uring_setup is killed while opens are stopped in the kernel: a ring's opens bypass the open syscalls' hooks";

/// The start-up line: which rules will kill or deny, and how.
pub fn startup_line(p: &[EnforcedRule]) -> String {
    if p.is_empty() {
        return "enforce: no active rule has `action: kill` or `deny`: nothing will be stopped (see rules/README.md, Enforcement)".into();
    }
    let items: Vec<String> = p.iter().map(|r| format!("{} ({}, {})", r.rule, r.action, r.decided_by)).collect();
    format!("enforce: these rules stop violations: {}", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_is_decided_in_the_kernel() {
        let set = crate::rules::defaults();
        let p = profile(&set, Some(true));
        let got: Vec<(&str, &str, &str)> = p.iter().map(|r| (r.rule.as_str(), r.action, r.decided_by)).collect();
        assert_eq!(
            got,
            vec![
                ("ssh-key-read", "kill", "kernel"),
                ("ssh-authorized-keys-write", "kill", "kernel"),
                ("credential-file-read", "kill", "kernel"),
                ("agent-config-tampering", "kill", "kernel"),
                ("unexpected-shell", "kill", "kernel+agent"),
                ("cloud-metadata-connect", "deny", "kernel"),
            ],
            "{p:#?}"
        );
        assert!(startup_line(&p).contains("ssh-key-read (kill, kernel)"));
        let none = crate::rules::load(&[("off.yaml", "- disable: [ssh-key-read, ssh-authorized-keys-write, credential-file-read, agent-config-tampering, unexpected-shell, cloud-metadata-connect]\n")]).unwrap();
        assert!(startup_line(&profile(&none, Some(false))).contains("nothing will be stopped"));
        assert!(startup_line(&profile(&none, None)).contains("nothing will be stopped"), "no kernel open rule: io_uring is allowed");
    }

    #[test]
    fn write_rules_are_partly_the_agents_without_bpf_lsm() {
        let set = crate::rules::defaults();
        for lsm in [Some(false), None] {
            let p = profile(&set, lsm);
            for id in ["ssh-authorized-keys-write", "agent-config-tampering"] {
                let r = p.iter().find(|r| r.rule == id).unwrap();
                assert_eq!(r.decided_by, "kernel+agent", "{lsm:?} {r:?}");
                assert!(r.why.as_deref().unwrap().contains("rename"), "{r:?}");
            }
            let read = p.iter().find(|r| r.rule == "ssh-key-read").unwrap();
            assert_eq!(read.decided_by, "kernel", "reads have no rename to miss: {read:?}");
        }
    }

    #[test]
    fn io_uring_setup_is_listed_where_bpf_lsm_does_not_decide_opens() {
        let set = crate::rules::defaults();
        let without = profile(&set, Some(false));
        let last = without.last().unwrap();
        assert_eq!((last.rule.as_str(), last.action, last.decided_by), ("io-uring-setup", "kill", "kernel"), "{without:#?}");
        assert!(startup_line(&without).contains("io-uring-setup (kill, kernel)"));
        let unknown = profile(&set, None);
        assert!(unknown.last().unwrap().why.as_deref().unwrap().contains("BPF LSM is not active"), "{unknown:#?}");
        assert!(!profile(&set, Some(true)).iter().any(|r| r.rule == "io-uring-setup"));
        let off = crate::rules::load(&[("off.yaml", "- disable: [io-uring-setup]\n")]).unwrap();
        assert!(!profile(&off, Some(false)).iter().any(|r| r.rule == "io-uring-setup"));
    }

    #[test]
    fn a_profile_rule_can_be_made_alert_only() {
        let set = crate::rules::load(&[("mine.yaml", "- rule: unexpected-shell\n  action: alert\n- rule: cloud-metadata-connect\n  action: kill\n  kill_scope: tree\n")]).unwrap();
        let p = profile(&set, Some(false));
        assert!(!p.iter().any(|r| r.rule == "unexpected-shell"), "{p:?}");
        assert!(p.iter().any(|r| r.rule == "cloud-metadata-connect" && r.action == "kill"), "{p:?}");
    }

    #[test]
    fn a_connect_kill_rule_says_the_agent_kills_what_connect2_does_not_carry() {
        // cgroup programs refuse TFO, io_uring connects and UDP sends but
        // cannot signal: the kill there is the agent's
        let set = crate::rules::load(&[("mine.yaml", "- rule: cloud-metadata-connect
  action: kill
")]).unwrap();
        let p = profile(&set, Some(false));
        let r = p.iter().find(|r| r.rule == "cloud-metadata-connect").unwrap();
        assert_eq!((r.action, r.decided_by), ("kill", "kernel+agent"), "{r:?}");
        assert!(r.why.as_deref().unwrap().contains("UDP send"), "{r:?}");
        // deny stays the kernel's alone
        let r = profile(&crate::rules::defaults(), Some(false)).into_iter().find(|r| r.rule == "cloud-metadata-connect").unwrap();
        assert_eq!((r.action, r.decided_by), ("deny", "kernel"), "{r:?}");
    }
}
