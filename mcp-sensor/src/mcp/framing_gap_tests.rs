//! Tests of [`super::framing`] when the capture is imperfect or the
//! stream is hostile: gaps, resets, garbage, deep nesting.

use super::framing::{Frame, Reassembler, DEFAULT_MAX_MESSAGE};
use super::framing_tests::{feed, line, one, values};
use serde_json::json;

#[test]
fn gap_inside_message_reports_truncated_true_length_and_resyncs() {
    let m = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read","arguments":{"path":"/etc/passwd"}}}"#;
    let next = b"{\"jsonrpc\":\"2.0\",\"method\":\"after\"}\n";
    let mut r = Reassembler::new(DEFAULT_MAX_MESSAGE);
    let mut out = Vec::new();
    // Bytes 70..80 lost, after params.name.
    r.push(0, 1, &m[..70], &mut out);
    r.push(80, 2, &m[80..], &mut out);
    r.push(m.len() as u64, 3, b"\n", &mut out);
    r.push(m.len() as u64 + 1, 4, next, &mut out);
    assert_eq!(out.len(), 2);
    let Frame::Message {
        value,
        id,
        method,
        params_name,
        size,
        truncated,
        ts_ns,
        ..
    } = &out[0]
    else {
        panic!()
    };
    assert_eq!(params_name.as_deref(), Some("read"));
    assert_eq!(value, &None);
    assert!(truncated);
    assert_eq!(*size, m.len() as u64);
    assert_eq!(*ts_ns, 3);
    assert_eq!(id, &Some(json!(3)));
    assert_eq!(method.as_deref(), Some("tools/call"));
    assert!(matches!(&out[1], Frame::Message { value: Some(v), .. } if v["method"] == "after"));
    assert_eq!((r.stats().gaps, r.stats().gap_bytes), (1, 10));
}

#[test]
fn gap_between_messages_costs_nothing_else() {
    let a = line(&json!({"jsonrpc":"2.0","id":1,"method":"a"}));
    let b = line(&json!({"jsonrpc":"2.0","id":2,"method":"b"}));
    let mut r = Reassembler::new(DEFAULT_MAX_MESSAGE);
    let mut out = Vec::new();
    r.push(0, 1, &a, &mut out);
    r.push(a.len() as u64 + 50, 2, &b, &mut out);
    assert_eq!(values(&out).len(), 2);
    assert_eq!(r.stats().gap_bytes, 50);
    assert_eq!(r.stats().malformed, 0);
}

#[test]
fn gap_losing_a_message_start_recovers_its_trailing_id() {
    let a = line(&json!({"jsonrpc":"2.0","id":1,"method":"a"}));
    let tail = br#"xt","text":"lots of output"}]},"jsonrpc":"2.0","id":7}"#;
    let mut r = Reassembler::new(DEFAULT_MAX_MESSAGE);
    let mut out = Vec::new();
    r.push(0, 1, &a, &mut out);
    let at = a.len() as u64 + 1000;
    r.push(at, 2, tail, &mut out);
    r.push(
        at + tail.len() as u64,
        3,
        b"\n{\"jsonrpc\":\"2.0\",\"method\":\"n\"}\n",
        &mut out,
    );
    assert_eq!(out.len(), 3);
    assert!(
        matches!(&out[1], Frame::Message { value: None, truncated: true, id: Some(id), .. } if id == &json!(7))
    );
    assert!(matches!(&out[2], Frame::Message { value: Some(_), .. }));
}

#[test]
fn fragment_after_gap_without_keys_is_malformed() {
    let mut r = Reassembler::new(DEFAULT_MAX_MESSAGE);
    let mut out = Vec::new();
    r.push(10, 1, b"ing text\"}}\n", &mut out);
    assert!(matches!(one(&out), Frame::Malformed { reason, .. } if reason.contains("gap")));
    assert_eq!((r.stats().gaps, r.stats().gap_bytes), (1, 10));
}

#[test]
fn gap_inside_content_length_body_counts_lost_bytes() {
    let body = br#"{"jsonrpc":"2.0","id":5,"method":"m","params":{"x":"yyyyyyyyyyyyyyyy"}}"#;
    let head = format!("Content-Length: {}\r\n\r\n", body.len());
    let mut r = Reassembler::new(DEFAULT_MAX_MESSAGE);
    let mut out = Vec::new();
    r.push(0, 1, head.as_bytes(), &mut out);
    let base = head.len() as u64;
    r.push(base, 2, &body[..30], &mut out);
    r.push(base + 40, 3, &body[40..], &mut out);
    r.push(
        base + body.len() as u64,
        4,
        b"{\"jsonrpc\":\"2.0\",\"method\":\"n\"}\n",
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert!(
        matches!(&out[0], Frame::Message { truncated: true, size, id: Some(id), .. }
        if *size == body.len() as u64 && id == &json!(5))
    );
    assert!(matches!(&out[1], Frame::Message { value: Some(_), .. }));
}

#[test]
fn first_chunk_past_zero_is_a_gap() {
    let (mut r, mut out) = (Reassembler::new(DEFAULT_MAX_MESSAGE), Vec::new());
    r.push(
        100,
        1,
        b"{\"jsonrpc\":\"2.0\",\"method\":\"n\"}\n",
        &mut out,
    );
    assert_eq!(values(&out).len(), 1);
    assert_eq!((r.stats().gaps, r.stats().gap_bytes), (1, 100));
}

#[test]
fn offset_going_backwards_is_a_reported_reset() {
    let (mut r, mut out) = (Reassembler::new(DEFAULT_MAX_MESSAGE), Vec::new());
    r.push(0, 1, b"{\"jsonrpc\":\"2.0\",\"id\":1,", &mut out);
    r.push(0, 2, b"{\"jsonrpc\":\"2.0\",\"method\":\"n\"}\n", &mut out);
    assert_eq!(out.len(), 2);
    assert!(
        matches!(&out[0], Frame::Malformed { reason, size: 24, .. } if reason.contains("reset"))
    );
    assert!(matches!(&out[1], Frame::Message { value: Some(_), .. }));
    assert_eq!(r.stats().resets, 1);
    assert_eq!(r.next_offset(), 31);
}

#[test]
fn garbage_lines_are_malformed_and_reassembly_goes_on() {
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\x00\x01\xfe\xff binary\n");
    stream.extend_from_slice(b"npm WARN exec The following package was not found\n");
    stream.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":\"bad \xff utf8\"}\n");
    stream.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":1,\n");
    stream.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n");
    let (frames, stats) = feed(&stream, 9, DEFAULT_MAX_MESSAGE);
    assert_eq!(frames.len(), 5);
    let reasons: Vec<&str> = frames[..4]
        .iter()
        .map(|f| match f {
            Frame::Malformed { reason, .. } => reason.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(reasons[0].contains("UTF-8"), "{reasons:?}");
    assert!(reasons[1].contains("not JSON-RPC"), "{reasons:?}");
    assert!(reasons[2].contains("invalid JSON"), "{reasons:?}");
    assert!(reasons[3].contains("invalid JSON"), "{reasons:?}");
    assert!(matches!(&frames[4], Frame::Message { value: Some(_), .. }));
    assert_eq!((stats.malformed, stats.messages), (4, 1));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut stream = "[".repeat(100_000).into_bytes();
    stream.push(b'\n');
    stream.extend_from_slice(&"{\"a\":".repeat(100_000).into_bytes());
    stream.push(b'\n');
    let (frames, _) = feed(&stream, 4096, DEFAULT_MAX_MESSAGE);
    assert_eq!(frames.len(), 2);
    for f in &frames {
        assert!(
            matches!(f, Frame::Malformed { reason, .. } if reason.contains("recursion limit")),
            "{f:?}"
        );
    }
}

#[test]
fn deeply_nested_request_is_still_tracked_by_id_and_method() {
    let mut m =
        br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t","arguments":{"x":"#
            .to_vec();
    m.extend_from_slice("[".repeat(500).as_bytes());
    m.extend_from_slice("]".repeat(500).as_bytes());
    m.extend_from_slice(b"}}}\n");
    let (frames, _) = feed(&m, 1000, DEFAULT_MAX_MESSAGE);
    let Frame::Message {
        value,
        id,
        method,
        params_name,
        truncated,
        ..
    } = one(&frames)
    else {
        panic!()
    };
    assert_eq!(value, &None);
    assert!(!truncated);
    assert_eq!(id, &Some(json!(3)));
    assert_eq!(method.as_deref(), Some("tools/call"));
    assert_eq!(params_name.as_deref(), Some("t"));
}
