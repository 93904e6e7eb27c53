use super::*;
use crate::event::{Body, Direction, Rpc};

fn ev(pid: u32, body: Body) -> Event {
    Event {
        ns_pid: None, container: None,
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
    let id = method.filter(|m| !m.starts_with("notifications/")).map(|_| 1.into());
    ev(
        10,
        Body::Rpc(Rpc { method: method.map(str::to_string), id, ..Rpc::new(Direction::ClientToServer, "request", 1, false) }),
    )
}

/// The server's answer to request id 1.
fn answer() -> Event {
    ev(10, Body::Rpc(Rpc { id: Some(1.into()), ..Rpc::new(Direction::ServerToClient, "response", 1, false) }))
}

/// `method` asked and answered: an MCP conversation.
fn talk(method: &str) -> Vec<Event> {
    vec![msg(Some(method)), answer()]
}

fn garbage() -> Event {
    ev(10, Body::Malformed { direction: Direction::ServerToClient, reason: "not JSON".into(), size: 4 })
}

#[test]
fn unknown_sessions_pass() {
    let mut g = Gate::new(10);
    assert!(g.offer(7, open(7), false).is_some());
    let (found, out) = g.on_channel(7, vec![garbage()]);
    assert_eq!((found, out.len()), (None, 1));
}

#[test]
fn confirmed_candidate_writes_held_events_in_order_then_streams() {
    let mut g = Gate::new(10);
    g.add(10, How::StdioPipes, false);
    assert!(g.offer(10, ev(10, Body::Fork { child_pid: 11 }), false).is_none());
    assert!(g.offer(10, open(11), false).is_none());
    let (found, out) = g.on_channel(
        10,
        vec![msg(Some("initialize")), answer(), msg(Some("notifications/initialized")), msg(Some("tools/list"))],
    );
    assert_eq!(found, Some(Found { session: 10, how: How::StdioPipes, held: 4, first_ns: Some(0), lost: 0 }));
    // the two held events, the held `initialize` and its answer, then the two that came with the verdict
    assert_eq!(out.len(), 6);
    assert!(matches!(out[0].body, Body::Fork { child_pid: 11 }));
    assert!(matches!(&out[2].body, Body::Rpc(r) if r.method.as_deref() == Some("initialize")));
    assert!(matches!(&out[4].body, Body::Rpc(r) if r.method.as_deref() == Some("notifications/initialized")));
    assert!(matches!(&out[5].body, Body::Rpc(r) if r.method.as_deref() == Some("tools/list")));
    assert!(!g.is_candidate(10));
    assert!(g.offer(10, open(10), false).is_some(), "a confirmed server streams");
    assert_eq!(g.actions, vec![KernelAction::Confirm { session: 10, pids: vec![10], complete: true }]);
    assert_eq!(g.stats.confirmed, 1);
}

#[test]
fn rejected_candidate_is_unwatched_with_its_members_and_its_late_records_dropped() {
    let mut g = Gate::new(10);
    g.add(10, How::ClientChild, false);
    g.member(10, 11);
    g.offer(10, open(11), false);
    let (found, out) = g.on_channel(10, vec![garbage()]);
    assert_eq!((found, out.len()), (None, 0));
    assert_eq!(g.actions, vec![KernelAction::Unwatch { session: 10, pids: vec![10, 11], complete: true }]);
    assert!(g.offer(10, open(11), false).is_none(), "records still in the ring are dropped");
    assert_eq!(g.stats.rejected, 1);
    assert_eq!(g.stats.discarded, 3);
    assert!(g.last_reject.as_ref().unwrap().1.contains("not JSON-RPC"));
}

#[test]
fn a_busy_launcher_is_held_to_the_bound_counted_past_it_and_still_confirmed() {
    // npx: thousands of opens before the server it starts says a word
    let mut g = Gate::new(3);
    g.add(10, How::StdioPipes, false);
    for _ in 0..5 {
        assert!(g.offer(10, open(10), false).is_none());
    }
    assert!(g.is_candidate(10), "being busy is no verdict");
    assert_eq!(g.stats.held_overflow, 0, "not a loss until it is a server");
    let (found, out) = g.on_channel(10, talk("server/discover"));
    // the three opens that fit and the request; the answer came with the verdict
    assert_eq!(found.map(|f| (f.held, f.lost)), Some((4, 2)));
    assert_eq!(out.len(), 5);
    assert_eq!(g.stats.rejected, 0);
    assert_eq!(g.stats.held_overflow, 2, "a server's events were lost");
}

#[test]
fn a_busy_candidate_that_is_not_mcp_loses_nothing_it_discards_its_overflow() {
    let mut g = Gate::new(2);
    g.add(10, How::StdioPipes, false);
    for _ in 0..5 {
        g.offer(10, open(10), false);
    }
    g.reject_candidate(10, "its stdio began with 'x'".into());
    assert_eq!((g.stats.held_overflow, g.stats.discarded), (0, 5));
}

#[test]
fn all_candidates_together_hold_at_most_four_bounds() {
    let mut g = Gate::new(2);
    for s in 1..=5 {
        g.add(s, How::StdioPipes, false);
        g.offer(s, open(s), false);
        g.offer(s, open(s), false);
    }
    assert_eq!(g.held_total, 8, "four bounds of two");
    let mut found = Vec::new();
    for s in 1..=5 {
        found.push(g.on_channel(s, talk("tools/list")).0.map(|f| (f.held, f.lost)));
    }
    assert_eq!(g.stats.held_overflow, 2, "two events lost in all");
    // the first, quiet the longest, gave its two up to the fifth
    assert_eq!(found[0], Some((1, 2)));
    assert_eq!(found[4], Some((3, 0)));
}

#[test]
fn a_crowd_of_idle_candidates_cannot_take_a_new_servers_events() {
    // thousands of piped `sleep`s: each held its exec and went quiet
    let mut g = Gate::new(16);
    for s in 100..164 {
        g.add(s, How::StdioPipes, false);
        g.offer(s, open(s), false);
    }
    assert_eq!(g.held_total, 64, "the total bound (4 x 16) is full");
    // then a server's launcher, busy before its first MCP message
    g.add(10, How::StdioPipes, false);
    for _ in 0..12 {
        g.offer(10, open(10), false);
    }
    let (found, out) = g.on_channel(10, talk("tools/list"));
    assert_eq!(found.map(|f| (f.held, f.lost)), Some((13, 0)), "all of its events kept");
    assert_eq!(out.len(), 14);
    // the quietest twelve gave theirs up: not a loss while they are not servers
    assert_eq!(g.stats.held_overflow, 0);
    for s in 100..112 {
        g.reject_candidate(s, "exited before speaking MCP".into());
    }
    assert_eq!(g.stats.discarded, 12, "their given-up events are discarded with them");
}

#[test]
fn found_is_dated_at_the_first_event() {
    let mut g = Gate::new(10);
    g.add(10, How::StdioPipes, false);
    g.offer(10, Event { ts_ns: 100, ..open(10) }, false);
    g.offer(10, Event { ts_ns: 200, ..open(10) }, false);
    let (found, _) = g.on_channel(10, vec![Event { ts_ns: 900, ..msg(Some("tools/list")) }, answer()]);
    assert_eq!(found.unwrap().first_ns, Some(100));
}

#[test]
fn root_exit_rejects_an_undecided_candidate_only() {
    let mut g = Gate::new(10);
    g.add(10, How::StdioPipes, false);
    g.add(20, How::StdioPipes, false);
    g.on_channel(20, talk("server/discover"));
    g.exited(10, 10);
    g.exited(20, 20);
    assert_eq!(g.stats.rejected, 1);
    assert!(matches!(&g.actions[0], KernelAction::Confirm { session: 20, .. }));
    assert!(matches!(&g.actions[1], KernelAction::Unwatch { session: 10, .. }));
    assert_eq!(g.actions.len(), 2);
}

#[test]
fn a_recycled_pid_can_be_a_candidate_again() {
    let mut g = Gate::new(10);
    g.add(10, How::StdioPipes, false);
    g.exited(10, 10);
    g.add(10, How::StdioPipes, false);
    assert!(g.is_candidate(10));
    assert!(g.offer(10, open(10), false).is_none(), "held, not dropped as rejected");
}

#[test]
fn a_member_exit_is_not_the_root_exit() {
    let mut g = Gate::new(10);
    g.add(10, How::StdioPipes, false);
    g.member(10, 11);
    g.exited(10, 11);
    assert!(g.is_candidate(10));
}

#[test]
fn one_way_mcp_lines_do_not_confirm_and_their_events_are_discarded() {
    // `printf '{"jsonrpc":"2.0","method":"notifications/message"}\n{"kind":"x"}\n' | cat | sort`
    let mut g = Gate::new(10);
    g.add(10, How::StdioPipes, false);
    g.offer(10, open(10), false);
    let (found, _) = g.on_channel(10, vec![msg(Some("notifications/message"))]);
    assert_eq!(found, None);
    let (found, _) = g.on_channel(10, vec![garbage()]);
    assert_eq!(found, None);
    assert_eq!((g.stats.rejected, g.stats.discarded), (1, 3), "the open, the held notification, the garbage");
}

#[test]
fn a_kernel_decision_held_for_a_rejected_candidate_is_written_not_discarded() {
    let mut g = Gate::new(1);
    g.add(10, How::StdioPipes, false);
    g.offer(10, open(10), false);
    // past the bound, and still held: the kernel killed or refused on it
    assert!(g.offer(10, Event { ts_ns: 5, ..open(10) }, true).is_none());
    g.reject_candidate(10, "x".into());
    let out = g.take_released();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].1.ts_ns), (10, 5));
    assert_eq!(g.stats.discarded, 1);
    // a late record of the rejected session with a decision is written too
    assert!(g.offer(10, open(10), true).is_some());
    assert!(g.offer(10, open(10), false).is_none());
}
