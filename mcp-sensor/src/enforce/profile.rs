//! What `--enforce` will stop, by rule, and who decides it: the start-up
//! line (stderr and `sensor_start`'s `enforced`) and `rules list`. Pure.

use crate::rules::{KernelPlan, RuleSet};
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

/// The enforce profile of `set`, in rule order.
pub fn profile(set: &RuleSet) -> Vec<EnforcedRule> {
    set.kill_rules()
        .into_iter()
        .map(|k| {
            let (decided_by, why) = match (&k.plan, k.conds.partial) {
                (KernelPlan::Agent { why }, _) => ("agent", Some(why.to_string())),
                (_, Some(why)) => ("kernel+agent", Some(why.to_string())),
                _ => ("kernel", None),
            };
            EnforcedRule { rule: k.id.to_string(), action: if k.kill { "kill" } else { "deny" }, decided_by, why }
        })
        .collect()
}

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
        let p = profile(&set);
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
        assert!(startup_line(&profile(&none)).contains("nothing will be stopped"));
    }

    #[test]
    fn a_profile_rule_can_be_made_alert_only() {
        let set = crate::rules::load(&[("mine.yaml", "- rule: unexpected-shell\n  action: alert\n- rule: cloud-metadata-connect\n  action: kill\n  kill_scope: tree\n")]).unwrap();
        let p = profile(&set);
        assert!(!p.iter().any(|r| r.rule == "unexpected-shell"), "{p:?}");
        assert!(p.iter().any(|r| r.rule == "cloud-metadata-connect" && r.action == "kill"), "{p:?}");
    }
}
