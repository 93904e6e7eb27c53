//! Tests of [`super::framing`]: reassembly under splitting, framing
//! variants and size limits (imperfect capture: `framing_gap_tests`).

use super::framing::{Frame, Reassembler, Stats, DEFAULT_MAX_MESSAGE, PREFIX_KEEP};
use serde_json::{json, Value};

/// Feeds `stream` in chunks of `chunk` bytes, chunk i stamped with ts i.
pub(super) fn feed(stream: &[u8], chunk: usize, max: usize) -> (Vec<Frame>, Stats) {
    let mut r = Reassembler::new(max);
    let mut out = Vec::new();
    for (i, piece) in stream.chunks(chunk).enumerate() {
        r.push((i * chunk) as u64, i as u64, piece, &mut out);
    }
    (out, *r.stats())
}

pub(super) fn values(frames: &[Frame]) -> Vec<Value> {
    frames
        .iter()
        .map(|f| match f {
            Frame::Message { value: Some(v), .. } => v.clone(),
            other => panic!("expected a whole message, got {other:?}"),
        })
        .collect()
}

pub(super) fn line(v: &Value) -> Vec<u8> {
    let mut l = serde_json::to_vec(v).unwrap();
    l.push(b'\n');
    l
}

pub(super) fn one(frames: &[Frame]) -> &Frame {
    assert_eq!(frames.len(), 1, "{frames:?}");
    &frames[0]
}

fn sample() -> Vec<Value> {
    vec![
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"clientInfo":{"name":"c"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"id":"s-1","result":{"content":[{"type":"text","text":"a\nb \u{e9}\u{1f600} \"q\""}]},"jsonrpc":"2.0"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","arguments":{}}}),
    ]
}

#[test]
fn messages_split_across_chunks_of_every_size() {
    let msgs = sample();
    let mut stream = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let mut l = line(m);
        if i == 1 {
            // \r\n and a blank line in the middle of the stream
            l.insert(l.len() - 1, b'\r');
            l.extend_from_slice(b"\r\n");
        }
        stream.extend_from_slice(&l);
    }
    for chunk in 1..=stream.len() {
        let (frames, stats) = feed(&stream, chunk, DEFAULT_MAX_MESSAGE);
        assert_eq!(values(&frames), msgs, "chunk size {chunk}");
        assert_eq!(stats.messages, 4);
        assert_eq!(stats.malformed, 0);
        assert_eq!(stats.bytes, stream.len() as u64);
        // Each frame is stamped with the chunk holding its newline.
        let ends = (1..stream.len()).filter(|&i| {
            stream[i] == b'\n'
                && (stream[i - 1] == b'}' || stream[i - 1] == b'\r' && stream[i - 2] == b'}')
        });
        let ts: Vec<u64> = ends.map(|i| (i / chunk) as u64).collect();
        assert_eq!(frames.iter().map(Frame::ts_ns).collect::<Vec<_>>(), ts);
    }
}

#[test]
fn many_messages_in_one_chunk_share_its_timestamp() {
    let stream: Vec<u8> = (0..200)
        .flat_map(|i| line(&json!({"jsonrpc":"2.0","id":i,"method":"ping"})))
        .collect();
    let mut r = Reassembler::new(DEFAULT_MAX_MESSAGE);
    let mut out = Vec::new();
    r.push(0, 77, &stream, &mut out);
    assert_eq!(out.len(), 200);
    assert!(out.iter().all(|f| f.ts_ns() == 77));
    for (i, f) in out.iter().enumerate() {
        let Frame::Message { id, method, .. } = f else {
            panic!()
        };
        assert_eq!(id, &Some(json!(i)));
        assert_eq!(method.as_deref(), Some("ping"));
    }
}

#[test]
fn crlf_is_tolerated_and_size_excludes_the_terminator() {
    let body = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
    let mut stream = body.to_vec();
    stream.extend_from_slice(b"\r\n");
    // Every split, including between \r and \n.
    for chunk in 1..=stream.len() {
        let (frames, _) = feed(&stream, chunk, DEFAULT_MAX_MESSAGE);
        let f = one(&frames);
        assert_eq!(f.size(), body.len() as u64);
        assert!(matches!(
            f,
            Frame::Message {
                value: Some(_),
                truncated: false,
                ..
            }
        ));
    }
}

#[test]
fn empty_and_blank_lines_are_ignored_silently() {
    let (frames, stats) = feed(b"\n\n   \n\r\n\t\r\n", 3, DEFAULT_MAX_MESSAGE);
    assert!(frames.is_empty());
    assert_eq!(stats.malformed, 0);
}

#[test]
fn content_length_framing_in_every_split() {
    let a = br#"{"jsonrpc":"2.0","id":1,"method":"a"}"#;
    let b = b"{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 2,\n  \"result\": {}\n}";
    let mut stream = Vec::new();
    stream.extend_from_slice(format!("Content-Length: {}\r\n\r\n", a.len()).as_bytes());
    stream.extend_from_slice(a);
    // Back to back, lower case, with a Content-Type header, pretty JSON.
    stream.extend_from_slice(
        format!(
            "content-length:{}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n",
            b.len()
        )
        .as_bytes(),
    );
    stream.extend_from_slice(b);
    // Then plain newline framing again.
    stream.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"method\":\"n\"}\n");
    for chunk in 1..=stream.len() {
        let (frames, stats) = feed(&stream, chunk, DEFAULT_MAX_MESSAGE);
        let v = values(&frames);
        assert_eq!(v.len(), 3, "chunk {chunk}");
        assert_eq!(v[0]["method"], "a");
        assert_eq!(v[1]["id"], 2);
        assert_eq!(v[2]["method"], "n");
        assert_eq!(frames[0].size(), a.len() as u64);
        assert_eq!(frames[1].size(), b.len() as u64);
        assert_eq!(stats.malformed, 0);
    }
}

#[test]
fn content_length_over_the_limit_does_not_swallow_later_lines() {
    let stream =
        b"Content-Length: 999999999\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\"}\n";
    let (frames, _) = feed(stream, 7, 1 << 20);
    assert_eq!(frames.len(), 2);
    assert!(matches!(&frames[0], Frame::Malformed { reason, .. } if reason.contains("over the")));
    assert!(matches!(&frames[1], Frame::Message { value: Some(_), .. }));
}

#[test]
fn content_length_with_wrong_length_reports_the_lines_inside() {
    let m1 = br#"{"jsonrpc":"2.0","id":1,"method":"a"}"#;
    let m2 = br#"{"jsonrpc":"2.0","id":2,"method":"b"}"#;
    let mut stream = format!("Content-Length: {}\r\n\r\n", m1.len() + m2.len() + 2).into_bytes();
    stream.extend_from_slice(m1);
    stream.push(b'\n');
    stream.extend_from_slice(m2);
    stream.push(b'\n');
    let (frames, _) = feed(&stream, 5, DEFAULT_MAX_MESSAGE);
    let v = values(&frames);
    assert_eq!(v.len(), 2);
    assert_eq!(v[1]["method"], "b");
}

#[test]
fn content_length_without_blank_line_falls_back_to_lines() {
    let stream = b"Content-Length: 38\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\"}\n";
    let (frames, _) = feed(stream, 4, DEFAULT_MAX_MESSAGE);
    assert_eq!(frames.len(), 2);
    assert!(matches!(&frames[0], Frame::Malformed { reason, .. } if reason.contains("blank line")));
    assert!(matches!(&frames[1], Frame::Message { method: Some(m), .. } if m == "m"));
}

/// A message of exactly `size` bytes (without newline).
fn sized_message(size: usize, id_first: bool) -> Vec<u8> {
    let (head, tail) = if id_first {
        (
            r#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"write_file","arguments":{"content":""#,
            r#""}}}"#,
        )
    } else {
        (
            r#"{"result":{"content":[{"type":"text","text":""#,
            r#""}]},"jsonrpc":"2.0","id":42}"#,
        )
    };
    let mut m = head.as_bytes().to_vec();
    m.resize(size - tail.len(), b'a');
    m.extend_from_slice(tail.as_bytes());
    assert_eq!(m.len(), size);
    m
}

#[test]
fn message_of_8_mib_is_kept_whole() {
    let mut stream = sized_message(DEFAULT_MAX_MESSAGE, true);
    stream.extend_from_slice(b"\r\n");
    let (frames, stats) = feed(&stream, 64 << 10, DEFAULT_MAX_MESSAGE);
    let Frame::Message {
        value: Some(v),
        size,
        truncated,
        ..
    } = one(&frames)
    else {
        panic!("not whole: {frames:?}")
    };
    assert!(!truncated);
    assert_eq!(*size, DEFAULT_MAX_MESSAGE as u64);
    assert_eq!(v["id"], 41);
    assert_eq!(stats.truncated, 0);
}

#[test]
fn message_just_over_limit_is_truncated() {
    let stream = [sized_message(200, true), b"\n".to_vec()].concat();
    let (frames, _) = feed(&stream, 16, 198);
    assert!(matches!(
        one(&frames),
        Frame::Message {
            value: None,
            truncated: true,
            size: 200,
            ..
        }
    ));
    let (frames, _) = feed(&stream, 16, 200);
    assert!(matches!(
        one(&frames),
        Frame::Message {
            value: Some(_),
            truncated: false,
            ..
        }
    ));
}

#[test]
fn over_limit_request_keeps_true_length_and_recovers_id_method_tool() {
    let size = 3 << 20;
    let stream = [sized_message(size, true), b"\n".to_vec()].concat();
    let (frames, stats) = feed(&stream, 64 << 10, 1 << 20);
    let Frame::Message {
        value,
        id,
        method,
        params_name,
        size: got,
        truncated,
        error,
        ..
    } = one(&frames)
    else {
        panic!()
    };
    assert_eq!(value, &None);
    assert!(truncated);
    assert!(!error);
    assert_eq!(*got, size as u64);
    assert_eq!(id, &Some(json!(41)));
    assert_eq!(method.as_deref(), Some("tools/call"));
    assert_eq!(params_name.as_deref(), Some("write_file"));
    assert_eq!(stats.truncated, 1);
}

#[test]
fn over_limit_node_response_recovers_trailing_id() {
    let size = 3 << 20;
    let stream = [sized_message(size, false), b"\r\n".to_vec()].concat();
    let (frames, _) = feed(&stream, 65000, 1 << 20);
    let Frame::Message {
        id,
        method,
        size: got,
        truncated,
        ..
    } = one(&frames)
    else {
        panic!()
    };
    assert!(truncated);
    assert_eq!(*got, size as u64);
    assert_eq!(id, &Some(json!(42)));
    assert_eq!(method, &None);
}

#[test]
fn hundred_mb_line_keeps_memory_bounded() {
    let total: usize = 100 << 20;
    let chunk = 64 << 10;
    let head =
        br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"t","arguments":{"s":""#;
    let tail = b"\"}}}\n";
    let mut r = Reassembler::new(DEFAULT_MAX_MESSAGE);
    let mut out = Vec::new();
    let mut buf = vec![b'a'; chunk];
    let mut offset = 0usize;
    let mut peak = 0;
    while offset < total {
        let n = chunk.min(total - offset);
        buf.fill(b'a');
        if offset == 0 {
            buf[..head.len()].copy_from_slice(head);
        }
        if offset + n == total {
            buf[n - tail.len()..n].copy_from_slice(tail);
        }
        r.push(offset as u64, 0, &buf[..n], &mut out);
        offset += n;
        peak = peak.max(r.buffered_capacity());
        if offset > DEFAULT_MAX_MESSAGE + chunk {
            // Past the limit only the prefix and a small tail remain.
            assert!(
                r.buffered_capacity() <= PREFIX_KEEP + (16 << 10),
                "{}",
                r.buffered_capacity()
            );
        }
    }
    assert!(peak <= DEFAULT_MAX_MESSAGE + (16 << 10), "peak {peak}");
    let Frame::Message {
        id,
        method,
        params_name,
        size,
        truncated,
        ..
    } = one(&out)
    else {
        panic!()
    };
    assert!(truncated);
    assert_eq!(*size, (total - 1) as u64);
    assert_eq!(id, &Some(json!(9)));
    assert_eq!(method.as_deref(), Some("tools/call"));
    assert_eq!(params_name.as_deref(), Some("t"));
    assert!(r.buffered_capacity() <= 64 << 10);
}

#[test]
fn over_limit_garbage_is_malformed_with_true_length() {
    let mut stream = vec![0xffu8; 5000];
    stream.push(b'\n');
    let (frames, _) = feed(&stream, 100, 1000);
    assert!(matches!(one(&frames), Frame::Malformed { size: 5000, .. }));
}
