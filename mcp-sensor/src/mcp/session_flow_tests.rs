//! Tests of [`super::session`] beyond the happy path: cancellation,
//! progress, unmatched and truncated messages, bounds, batches, garbage,
//! and the output's event form.

use super::session::{Session, SessionOutput};
use super::session_tests::{ids, ok, req, rpc, send, send_raw, C2S, S2C};
use crate::event::Body;
use serde_json::{json, Value};

#[test]
fn cancellation_takes_request_out_of_flight_and_late_response_still_matches() {
    let mut s = Session::new();
    send(
        &mut s,
        C2S,
        req(
            json!(5),
            "tools/call",
            json!({"name":"slow","arguments":{}}),
        ),
        1,
    );
    send(
        &mut s,
        C2S,
        req(
            json!(6),
            "tools/call",
            json!({"name":"fast","arguments":{}}),
        ),
        2,
    );
    let r = rpc(send(
        &mut s,
        C2S,
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5,"reason":"timeout"}}),
        3,
    ));
    assert_eq!(
        (r.message, r.method.as_deref(), r.id.clone()),
        ("notification", Some("notifications/cancelled"), None)
    );
    assert_eq!(ids(&s.in_flight()), [json!(6)]);
    assert_eq!(s.stats().cancelled, 1);
    let r = rpc(send(&mut s, S2C, ok(json!(5), json!({"content":[]})), 4));
    assert_eq!(r.tool.as_deref(), Some("slow"));
    assert_eq!(s.stats().unmatched_responses, 0);
}

#[test]
fn cancellation_of_unknown_request_changes_nothing() {
    let mut s = Session::new();
    send(&mut s, C2S, req(json!(1), "ping", json!({})), 1);
    send(
        &mut s,
        C2S,
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"1"}}),
        2,
    );
    assert_eq!(s.in_flight().len(), 1);
    assert_eq!(s.stats().cancelled, 0);
}

#[test]
fn responses_without_requests_are_reported() {
    let mut s = Session::new();
    let r = rpc(send(&mut s, S2C, ok(json!(42), json!({"content":[]})), 1));
    assert_eq!(
        (r.message, r.method.clone(), r.id.clone()),
        ("response", None, Some(json!(42)))
    );
    assert_eq!(r.latency_ms, None);
    let r = rpc(send(
        &mut s,
        S2C,
        json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}),
        2,
    ));
    assert_eq!((r.message, r.id.clone()), ("error", Some(Value::Null)));
    assert_eq!(s.stats().unmatched_responses, 2);
}

#[test]
fn in_flight_keeps_arrival_order_and_first_request_is_noticed() {
    let mut s = Session::new();
    assert!(!s.first_request_seen());
    send(
        &mut s,
        C2S,
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        1,
    );
    // A server's own request is not the client asking for anything.
    send(&mut s, S2C, req(json!(0), "roots/list", json!({})), 2);
    assert!(!s.first_request_seen());
    for (i, id) in [json!(3), json!("b"), json!(1)].into_iter().enumerate() {
        send(
            &mut s,
            C2S,
            req(
                id,
                "tools/call",
                json!({"name":format!("t{i}"),"arguments":{"i":i}}),
            ),
            10 + i as u64,
        );
    }
    assert!(s.first_request_seen());
    let f = s.in_flight();
    assert_eq!(ids(&f), [json!(3), json!("b"), json!(1)]);
    assert_eq!(f[1].tool.as_deref(), Some("t1"));
    assert_eq!(f[1].arguments, Some(json!({"i":1})));
    assert_eq!(f[1].ts_ns, 11);
    assert_eq!(f[1].method, "tools/call");
    assert_eq!(s.pending_count(S2C), 1);
}

#[test]
fn pending_requests_are_capped_oldest_first() {
    let mut s = Session::with_max_pending(3);
    for i in 0..5 {
        send(&mut s, C2S, req(json!(i), "ping", json!({})), i);
    }
    assert_eq!(ids(&s.in_flight()), [json!(2), json!(3), json!(4)]);
    assert_eq!(s.stats().evicted, 2);
    // An evicted request's response is unmatched, not a crash.
    let r = rpc(send(&mut s, S2C, ok(json!(0), json!({})), 9));
    assert_eq!(r.method, None);
}

#[test]
fn reused_id_replaces_the_older_request() {
    let mut s = Session::new();
    send(&mut s, C2S, req(json!(1), "ping", json!({})), 1);
    send(&mut s, C2S, req(json!(1), "tools/list", json!({})), 2);
    assert_eq!(s.in_flight().len(), 1);
    assert_eq!(s.stats().duplicate_ids, 1);
    let r = rpc(send(&mut s, S2C, ok(json!(1), json!({"tools":[]})), 3));
    assert_eq!(r.method.as_deref(), Some("tools/list"));
}

#[test]
fn truncated_request_and_response_are_still_matched() {
    let mut s = Session::new();
    let big = "a".repeat(3 << 20);
    let request = req(
        json!(9),
        "tools/call",
        json!({"name":"write_file","arguments":{"content":big}}),
    );
    let r = rpc(send(&mut s, C2S, request, 1_000_000));
    assert!(r.truncated);
    assert_eq!(
        (r.message, r.tool.as_deref(), r.arguments.clone()),
        ("request", Some("write_file"), None)
    );
    assert!(r.size > 3 << 20);
    let f = s.in_flight();
    assert_eq!(
        (f[0].tool.as_deref(), f[0].truncated),
        (Some("write_file"), true)
    );
    // Node writes the id after the big result.
    let text = format!(
        r#"{{"result":{{"content":[{{"type":"text","text":"{big}"}}]}},"jsonrpc":"2.0","id":9}}"#
    );
    let r = rpc(send_raw(
        &mut s,
        S2C,
        format!("{text}\n").as_bytes(),
        2_000_000,
    ));
    assert!(r.truncated);
    assert_eq!(
        (r.message, r.method.as_deref(), r.tool.as_deref()),
        ("response", Some("tools/call"), Some("write_file"))
    );
    assert_eq!((r.result.clone(), r.is_error), (None, None));
    assert_eq!(r.latency_ms, Some(1.0));
    assert!(s.in_flight().is_empty());
}

#[test]
fn truncated_message_without_id_or_method_is_malformed() {
    let mut s = Session::new();
    let text = format!("[{}]\n", "1,".repeat(1 << 20));
    let out = send_raw(&mut s, S2C, text.as_bytes(), 5);
    assert!(
        matches!(
            &out[..],
            [SessionOutput::Malformed {
                direction: S2C,
                ts_ns: 5,
                ..
            }]
        ),
        "{out:?}"
    );
}

#[test]
fn malformed_frames_become_malformed_bodies() {
    let mut s = Session::new();
    let out = send_raw(&mut s, C2S, b"npm WARN something\n", 7);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ts_ns(), 7);
    match out.into_iter().next().unwrap().into_body() {
        Body::Malformed {
            direction,
            reason,
            size,
        } => {
            assert_eq!((direction, size), (C2S, 18));
            assert!(reason.contains("not JSON-RPC"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.stats().malformed, 1);
}

#[test]
fn non_jsonrpc_json_is_malformed() {
    let mut s = Session::new();
    for text in [
        &b"[]\n"[..],
        b"{\"hello\":1}\n",
        b"{\"id\":1}\n",
        b"{\"method\":5,\"id\":1}\n",
        b"[1]\n",
        // an event line of this sensor's own log: `method` and `id`, no `jsonrpc`
        b"{\"kind\":\"rpc\",\"method\":\"server/discover\",\"id\":1}\n",
        b"{\"jsonrpc\":\"1.0\",\"method\":\"tools/list\",\"id\":1}\n",
    ] {
        let out = send_raw(&mut s, S2C, text, 1);
        assert!(
            matches!(&out[..], [SessionOutput::Malformed { .. }]),
            "{:?}: {out:?}",
            String::from_utf8_lossy(text)
        );
    }
    assert_eq!(s.stats().malformed, 7);
}

#[test]
fn progress_notifications_update_the_request() {
    let mut s = Session::new();
    send(
        &mut s,
        C2S,
        req(
            json!(2),
            "tools/call",
            json!({"name":"t","arguments":{},"_meta":{"progressToken":"p-1"}}),
        ),
        1,
    );
    let r = rpc(send(
        &mut s,
        S2C,
        json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p-1","progress":50,"total":100}}),
        2,
    ));
    assert_eq!(
        (r.message, r.method.as_deref()),
        ("notification", Some("notifications/progress"))
    );
    assert_eq!(s.in_flight()[0].progress, Some(50.0));
}

#[test]
fn batch_yields_one_output_per_member() {
    let mut s = Session::new();
    let batch = json!([req(json!(1), "ping", json!({})), {"jsonrpc":"2.0","method":"notifications/initialized"}]);
    let out = send(&mut s, C2S, batch, 1);
    let kinds: Vec<_> = out.iter().map(|o| o.rpc().unwrap().message).collect();
    assert_eq!(kinds, ["request", "notification"]);
    assert_eq!(s.in_flight().len(), 1);
}

#[test]
fn outputs_serialize_as_rpc_events() {
    let mut s = Session::new();
    let out = send(
        &mut s,
        C2S,
        req(
            json!(1),
            "tools/call",
            json!({"name":"t","arguments":{"a":1}}),
        ),
        1,
    );
    let body: Body = out.into_iter().next().unwrap().into();
    let v = serde_json::to_value(&body).unwrap();
    assert_eq!(
        v,
        json!({"kind":"rpc","direction":"client_to_server","message":"request","method":"tools/call",
               "id":1,"tool":"t","arguments":{"a":1},"size":v["size"],"truncated":false})
    );
}

#[test]
fn truncated_request_with_lost_id_is_reported_but_not_tracked() {
    let mut s = Session::new();
    // Node order, id at the very end, and the end lost in a gap.
    let big = "a".repeat(2 << 20);
    let text = format!(
        r#"{{"method":"tools/call","params":{{"name":"w","arguments":{{"s":"{big}"}}}},"jsonrpc":"2.0","id":4}}"#
    );
    let mut r = super::framing::Reassembler::new(1 << 20);
    let mut frames = Vec::new();
    r.push(0, 1, &text.as_bytes()[..100_000], &mut frames);
    r.push(text.len() as u64, 2, b"\n", &mut frames);
    let mut out = Vec::new();
    for f in frames {
        s.on_frame(C2S, f, &mut out);
    }
    let r = rpc(out);
    assert_eq!(
        (r.message, r.method.as_deref(), r.tool.as_deref(), r.id),
        ("request", Some("tools/call"), Some("w"), None)
    );
    assert!(r.truncated);
    assert!(s.first_request_seen());
    assert!(s.in_flight().is_empty());
}

#[test]
fn truncated_notification_stays_a_notification() {
    let mut s = Session::new();
    let text = format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"data\":\"{}\"}}}}\n",
        "x".repeat(2 << 20)
    );
    let r = rpc(send_raw(&mut s, S2C, text.as_bytes(), 1));
    assert_eq!((r.message, r.truncated), ("notification", true));
}
