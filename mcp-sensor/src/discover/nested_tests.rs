use crate::discover::gate::{Found, Gate, KernelAction};
use crate::discover::How;
use crate::event::{Body, Direction, Event, Rpc, ServerRef};

fn ev(pid: u32, ts_ns: u64) -> Event {
    Event {
        ns_pid: None, container: None,
        ts: String::new(),
        ts_ns,
        pid,
        tid: pid,
        ppid: 1,
        uid: 0,
        comm: "sh".into(),
        exe: None,
        body: Body::Fork { child_pid: 0 },
        server: Some(ServerRef { name: "sh -c x".into(), pid }),
        tool_call: None,
    }
}

fn msg(method: &str, ts_ns: u64) -> Event {
    Event {
        body: Body::Rpc(Rpc { method: Some(method.into()), id: Some(1.into()), ..Rpc::new(Direction::ClientToServer, "request", 1, false) }),
        ..ev(10, ts_ns)
    }
}

/// `method` at `ts_ns`, answered 1 ns later: an MCP conversation.
fn talk(method: &str, ts_ns: u64) -> Vec<Event> {
    let answer = Body::Rpc(Rpc { id: Some(1.into()), ..Rpc::new(Direction::ServerToClient, "response", 1, false) });
    vec![msg(method, ts_ns), Event { body: answer, ..ev(10, ts_ns + 1) }]
}

/// Server 10, confirmed by its first message; `pid` forked in it.
fn confirmed_server_with_member(pid: u32) -> Gate {
    let mut g = Gate::new(100);
    g.add(10, How::StdioPipes, false);
    g.member(10, pid);
    let (found, _) = g.on_channel(10, talk("server/discover", 5));
    assert!(found.is_some());
    g.actions.clear();
    g
}

#[test]
fn a_tools_shell_split_off_before_the_kernel_heard_of_the_confirmation_folds_back_and_is_written() {
    // the commands server's `sh -c` with fresh pipes, exec'd in the window
    // between the handshake and the kernel clearing the candidate flags
    let mut g = confirmed_server_with_member(30);
    g.add(30, How::StdioPipes, true);
    assert!(g.offer(30, ev(30, 50), false).is_none(), "held until its own channel decides");
    g.reject_candidate(30, "its stdio began with 'h'".into());
    assert_eq!(
        g.actions,
        vec![KernelAction::Fold { from: 30, into: 10, pids: vec![30], complete: true, candidate: false }]
    );
    let out = g.take_released();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 10, "written as the server's");
    assert!(out[0].1.server.is_none(), "named when written, after the server it joined");
    assert_eq!(g.resolve(30), 10, "its later records are the server's");
    assert_eq!((g.stats.folded, g.stats.rejected, g.stats.discarded), (1, 0, 0));
}

#[test]
fn a_nested_candidate_that_exits_silent_joins_its_undecided_tree_in_time_order() {
    let mut g = Gate::new(100);
    g.add(10, How::ClientChild, false);
    g.offer(10, ev(10, 10), false);
    g.member(10, 30);
    g.add(30, How::StdioPipes, true);
    g.offer(30, ev(30, 20), false);
    g.offer(10, ev(10, 30), false);
    g.offer(30, ev(30, 40), false);
    g.exited(30, 30);
    assert!(!g.is_candidate(30) && g.is_candidate(10));
    assert!(matches!(g.actions[0], KernelAction::Fold { from: 30, into: 10, candidate: true, .. }));
    let (found, out) = g.on_channel(10, talk("tools/list", 50));
    assert_eq!(found, Some(Found { session: 10, how: How::ClientChild, held: 5, first_ns: Some(10), lost: 0 }));
    let ts: Vec<u64> = out.iter().map(|e| e.ts_ns).collect();
    assert_eq!(ts, vec![10, 20, 30, 40, 50, 51]);
    match &g.actions[1] {
        KernelAction::Confirm { session: 10, pids, .. } => assert!(pids.contains(&30), "{pids:?}"),
        a => panic!("{a:?}"),
    }
}

#[test]
fn a_nested_candidate_that_speaks_mcp_is_a_server_of_its_own() {
    // an agent-like candidate (JSON-RPC on its stdio, not MCP) starting an
    // MCP server with pipes of its own
    let mut g = Gate::new(100);
    g.add(10, How::StdioPipes, false);
    g.member(10, 30);
    g.add(30, How::StdioPipes, true);
    let (found, _) = g.on_channel(30, talk("tools/list", 5));
    assert_eq!(found.map(|f| f.session), Some(30));
    let (_, out) = g.on_channel(10, vec![msg("session/prompt", 6)]);
    assert!(out.is_empty());
    assert_eq!(g.stats.rejected, 1, "the agent is not MCP");
    assert_eq!(g.resolve(30), 30, "its server stays its own");
    assert!(g.offer(30, ev(30, 7), false).is_some());
}

#[test]
fn a_nested_candidate_of_a_rejected_tree_is_rejected() {
    let mut g = Gate::new(100);
    g.add(10, How::StdioPipes, false);
    g.member(10, 30);
    g.add(30, How::StdioPipes, true);
    g.reject_candidate(10, "x".into());
    g.reject_candidate(30, "y".into());
    assert_eq!(g.stats.rejected, 2);
    assert!(matches!(g.actions[1], KernelAction::Unwatch { session: 30, .. }));
    assert_eq!(g.resolve(30), 30);
}

#[test]
fn folds_of_folds_resolve_to_the_outermost_tree() {
    // npx -> sh (own pipes) -> node (own pipes): each folds into the last
    let mut g = Gate::new(100);
    g.add(10, How::StdioPipes, false);
    g.member(10, 20);
    g.add(20, How::StdioPipes, true);
    g.member(20, 30);
    g.add(30, How::StdioPipes, true);
    g.exited(30, 30);
    assert_eq!(g.resolve(30), 20);
    g.exited(20, 20);
    assert_eq!(g.resolve(30), 10);
    assert_eq!(g.stats.folded, 2);
}

#[test]
fn a_candidate_the_kernel_did_not_nest_is_rejected_as_before() {
    let mut g = confirmed_server_with_member(30);
    g.add(30, How::StdioPipes, false);
    g.reject_candidate(30, "x".into());
    assert!(matches!(g.actions[0], KernelAction::Unwatch { session: 30, .. }));
}

#[test]
fn a_storm_of_nested_candidates_folding_into_one_tree_stays_within_its_hold_bound() {
    // a CI runner with piped children: each child is a nested candidate that
    // exits silent and folds back; the tree holds at most its bound
    let mut g = Gate::new(4);
    g.add(10, How::StdioPipes, false);
    g.offer(10, ev(10, 1), false);
    for i in 0..100u32 {
        let pid = 1000 + i;
        g.member(10, pid);
        g.add(pid, How::StdioPipes, true);
        g.offer(pid, ev(pid, 10 + 3 * u64::from(i)), false);
        g.offer(pid, ev(pid, 11 + 3 * u64::from(i)), i == 50); // one kernel decision
        g.exited(pid, pid);
    }
    assert_eq!(g.stats.folded, 100);
    assert_eq!(g.held_total, 5, "the bound (4) and the kernel's decision: {}", g.held_total);
    let (found, out) = g.on_channel(10, talk("tools/list", 1000));
    let found = found.expect("confirmed");
    // 201 events and the request: 6 held (with the request), 196 counted
    assert_eq!((found.held, found.lost), (6, 196), "every event held or counted");
    let ts: Vec<u64> = out.iter().map(|e| e.ts_ns).collect();
    assert_eq!(ts, vec![1, 10, 11, 13, 161, 1000, 1001], "the earliest, and the decided one, in time order");
}

#[test]
fn a_fold_keeps_the_earliest_events_of_both_trees() {
    use super::merge_bounded;
    let held = |ts: &[u64]| ts.iter().map(|&t| (ev(1, t), false)).collect::<Vec<_>>();
    let ts = |v: &Vec<(Event, bool)>| v.iter().map(|(e, _)| e.ts_ns).collect::<Vec<_>>();
    let mut a = held(&[10, 30, 50]);
    assert_eq!(merge_bounded(&mut a, held(&[20, 40]), 3), 2);
    assert_eq!(ts(&a), vec![10, 20, 30]);
    let mut full = held(&[10, 20]);
    assert_eq!(merge_bounded(&mut full, held(&[30, 40]), 2), 2, "full, all later: counted");
    assert_eq!(ts(&full), vec![10, 20]);
    let mut roomy = held(&[10]);
    assert_eq!(merge_bounded(&mut roomy, held(&[5]), 8), 0);
    assert_eq!(ts(&roomy), vec![5, 10]);
}
