//! Enforcement in the rule stage: turns a kill rule's match into the
//! action its alert reports (`killed`/`denied`, decided by the kernel or
//! the agent, who died, the delay), and keeps the kernel maps following
//! the rules. Called from `detect` (the lead's rule stage).

use super::{Enforcer, KernelDecision, Offender};
use crate::decode::Header;
use crate::detect::alert_event;
use crate::event::{Body, Event, Hop};
use crate::procs::ProcTable;
use crate::rules::{Action, Match, RuleSet};

/// Rescan (compile the kill rules again) every this many identity
/// refreshes of the detector (2 s each): new keys and new homes are
/// protected within ~10 s, new files in protected directories at once.
pub const RESCAN_EVERY_REFRESHES: u64 = 5;

/// What enforcement needs from the record behind an event.
#[derive(Debug, Clone, Copy)]
pub struct RecordFacts {
    pub flags: u32,
    pub pid: u32,
    pub start_ns: u64,
    pub ts_ns: u64,
    pub session: u32,
}

impl RecordFacts {
    pub fn of(h: &Header) -> RecordFacts {
        RecordFacts { flags: h.flags, pid: h.pid, start_ns: h.start_ns, ts_ns: h.ts_ns, session: h.session }
    }

    /// The current record's facts when `ev` came from it; else (an event
    /// held back and delivered later) what the event and the process table
    /// say, without a kernel decision.
    pub fn for_event(cur: Option<RecordFacts>, ev: &Event, session: u32, procs: &ProcTable) -> RecordFacts {
        match cur {
            Some(r) if r.pid == ev.pid && r.ts_ns == ev.ts_ns => r,
            _ => RecordFacts {
                flags: 0,
                pid: ev.pid,
                start_ns: procs.get(ev.pid).map_or(0, |p| p.start_ns),
                ts_ns: ev.ts_ns,
                session,
            },
        }
    }

    fn offender(&self) -> Offender {
        Offender { pid: self.pid, start_ns: self.start_ns, ts_ns: self.ts_ns, session: self.session }
    }
}

/// Compiles `rules` into the kernel maps; prints the notes when they change.
pub fn install_and_report(e: &mut Enforcer, rules: &RuleSet) {
    match e.install(rules) {
        Ok(Some(notes)) => {
            for n in notes {
                crate::say!("mcp-sensor: enforce: {n}");
            }
        }
        Ok(None) => {}
        Err(err) => crate::say!(
            "mcp-sensor: enforce: updating the kernel deny maps failed: {err} (the previous kernel rules stay; the agent still kills on matches)"
        ),
    }
}

fn fill(alert: &mut Event, o: super::Outcome) {
    if let Body::Alert(a) = &mut alert.body {
        a.action = o.action;
        a.decided_by = Some(o.decided_by);
        a.killed = o.killed.into_iter().map(|(pid, exe)| Hop { pid, exe }).collect();
        a.delay_ns = o.delay_ns;
        a.late = o.late;
    }
}

fn is_connect(alert: &Event) -> bool {
    matches!(&alert.body, Body::Alert(a) if matches!(a.event.body, Body::Connect { .. }))
}

/// A connect or send a cgroup program reported itself (not connect(2)):
/// the kernel can refuse it there but not kill (no bpf_send_signal in
/// cgroup programs), so a kill rule's kill is the agent's.
fn refused_without_kill(alert: &Event, kernel: Option<super::KernelDecision>) -> bool {
    let hook_record = matches!(&alert.body, Body::Alert(a) if matches!(a.event.body, Body::Connect { hook, .. } if hook != "sys_connect"));
    hook_record && kernel.is_some_and(|k| k.denied && !k.killed)
}

/// `decided_by` of a refusal in the kernel followed by the agent's kill.
pub const CGROUP_THEN_AGENT: &str = "kernel_cgroup+agent";

/// A kill rule matched: the kernel already acted on the record (its flags
/// say so), or the agent kills now.
pub fn act(e: &Enforcer, rec: &RecordFacts, m: &Match<'_>, alert: &mut Event, procs: &ProcTable) {
    let kernel = KernelDecision::from_flags(rec.flags);
    if m.action == Action::Alert && !super::is_killed_setup(alert, kernel.is_some_and(|k| k.killed)) {
        return;
    }
    if m.action == Action::Deny && kernel.is_none() {
        return; // a connect can only be refused in the kernel: `would_deny`
    }
    let connect = is_connect(alert);
    if m.action == Action::Kill && refused_without_kill(alert, kernel) {
        // refused in the kernel (nothing was sent), killed by the agent
        let mut o = e.decide(rec.offender(), m.kill_scope, None, connect, procs);
        o.decided_by = CGROUP_THEN_AGENT;
        fill(alert, o);
        return;
    }
    let o = e.decide(rec.offender(), m.kill_scope, kernel, connect, procs);
    if o.killed.is_empty() && o.action == "killed" {
        // the process was gone before the agent could act: say so
        if let Body::Alert(a) = &mut alert.body {
            a.decided_by = Some(o.decided_by);
            a.late = o.late || o.decided_by == "agent";
        }
        return;
    }
    fill(alert, o);
}

/// The alert for a kernel decision no kill rule matched on the agent's
/// side (the rules were reloaded in between): from the rule the kernel
/// named, so a kill is never unreported.
pub fn unmatched_kernel_kill(
    e: &Enforcer,
    rules: &RuleSet,
    rec: &RecordFacts,
    ev: &Event,
    alerts: &[Event],
    procs: &ProcTable,
) -> Option<Event> {
    let k = KernelDecision::from_flags(rec.flags)?;
    let reported = alerts.iter().any(|a| matches!(&a.body, Body::Alert(x) if x.decided_by.is_some_and(|d| d.starts_with("kernel"))));
    if reported {
        return None;
    }
    let rule = rules.rules().nth(k.rule? as usize)?;
    let m = Match {
        id: &rule.id,
        severity: rule.severity,
        action: rule.action,
        kill_scope: rule.kill_scope,
        description: &rule.description,
        tags: &rule.tags,
    };
    let mut alert = alert_event(ev, &m, procs);
    let connect = matches!(ev.body, Body::Connect { .. });
    fill(&mut alert, e.decide(rec.offender(), rule.kill_scope, Some(k), connect, procs));
    Some(alert)
}
