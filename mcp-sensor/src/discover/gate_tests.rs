use super::*;
use crate::event::{Body, Direction, Rpc};

fn ev(pid: u32, body: Body) -> Event {
    Event {
        ts: String::new(),
        ts_ns: 0,
        pid,
        tid: pid,
        ppid: 1,
        uid: 0,
        comm: "node".into(),
        exe: None,
        body,
        server: None,
        tool_call: None,
    }
}

fn open(pid: u32) -> Event {
    ev(pid, Body::Fork { child_pid: 0 })
}

fn msg(method: Option<&str>) -> Event {
    ev(
        10,
        Body::Rpc(Rpc { method: method.map(str::to_string), ..Rpc::new(Direction::ClientToServer, "request", 1, false) }),
    )
}

fn garbage() -> Event {
    ev(10, Body::Malformed { direction: Direction::ServerToClient, reason: "not JSON".into(), size: 4 })
}

#[test]
fn unknown_sessions_pass() {
    let mut g = Gate::new(10);
    assert!(g.offer(7, open(7)).is_some());
    let (found, out) = g.on_channel(7, vec![garbage()]);
    assert_eq!((found, out.len()), (None, 1));
}

#[test]
fn confirmed_candidate_writes_held_events_in_order_then_streams() {
    let mut g = Gate::new(10);
    g.add(10, How::StdioPipes);
    assert!(g.offer(10, ev(10, Body::Fork { child_pid: 11 })).is_none());
    assert!(g.offer(10, open(11)).is_none());
    let (found, out) = g.on_channel(10, vec![msg(Some("initialize")), msg(Some("notifications/initialized")), msg(Some("tools/list"))]);
    assert_eq!(found, Some(Found { session: 10, how: How::StdioPipes, held: 3 }));
    // the two held events, the held `initialize`, then the two that came with the verdict
    assert_eq!(out.len(), 5);
    assert!(matches!(out[0].body, Body::Fork { child_pid: 11 }));
    assert!(matches!(&out[2].body, Body::Rpc(r) if r.method.as_deref() == Some("initialize")));
    assert!(matches!(&out[4].body, Body::Rpc(r) if r.method.as_deref() == Some("tools/list")));
    assert!(!g.is_candidate(10));
    assert!(g.offer(10, open(10)).is_some(), "a confirmed server streams");
    assert_eq!(g.actions, vec![KernelAction::Confirm { session: 10, pids: vec![10], complete: true }]);
    assert_eq!(g.stats.confirmed, 1);
}

#[test]
fn rejected_candidate_is_unwatched_with_its_members_and_its_late_records_dropped() {
    let mut g = Gate::new(10);
    g.add(10, How::ClientChild);
    g.member(10, 11);
    g.offer(10, open(11));
    let (found, out) = g.on_channel(10, vec![garbage()]);
    assert_eq!((found, out.len()), (None, 0));
    assert_eq!(g.actions, vec![KernelAction::Unwatch { session: 10, pids: vec![10, 11], complete: true }]);
    assert!(g.offer(10, open(11)).is_none(), "records still in the ring are dropped");
    assert_eq!(g.stats.rejected, 1);
    assert_eq!(g.stats.discarded, 3);
    assert!(g.last_reject.as_ref().unwrap().1.contains("not JSON-RPC"));
}

#[test]
fn a_busy_silent_candidate_is_rejected_at_the_hold_limit() {
    let mut g = Gate::new(3);
    g.add(10, How::StdioPipes);
    for _ in 0..3 {
        assert!(g.offer(10, open(10)).is_none());
    }
    assert!(g.is_candidate(10));
    assert!(g.offer(10, open(10)).is_none());
    assert!(!g.is_candidate(10));
    assert_eq!(g.actions.len(), 1);
    assert!(g.last_reject.as_ref().unwrap().1.contains("3 events"));
}

#[test]
fn root_exit_rejects_an_undecided_candidate_only() {
    let mut g = Gate::new(10);
    g.add(10, How::StdioPipes);
    g.add(20, How::StdioPipes);
    g.on_channel(20, vec![msg(Some("server/discover"))]);
    g.root_exited(10);
    g.root_exited(20);
    assert_eq!(g.stats.rejected, 1);
    assert!(matches!(&g.actions[0], KernelAction::Confirm { session: 20, .. }));
    assert!(matches!(&g.actions[1], KernelAction::Unwatch { session: 10, .. }));
    assert_eq!(g.actions.len(), 2);
}

#[test]
fn a_recycled_pid_can_be_a_candidate_again() {
    let mut g = Gate::new(10);
    g.add(10, How::StdioPipes);
    g.root_exited(10);
    g.add(10, How::StdioPipes);
    assert!(g.is_candidate(10));
    assert!(g.offer(10, open(10)).is_none(), "held, not dropped as rejected");
}
