//! Per-message cost of the agent's pipeline on recorded-shape streams.
//!
//! Owns the synthetic capture streams (raw ring records, exactly as the
//! kernel lays them out) used to measure what the agent spends per
//! message: decode, reassembly, JSON parsing, session model, correlation,
//! rules and serialization. Not a timed assertion: the ignored tests run a
//! stream through [`Pipeline`] so that an instruction counter (callgrind,
//! BENCHMARKS.md) can be pointed at them; the always-run test checks the
//! streams decode into the events they claim to carry.

use crate::abi;
use crate::correlate::Sessions;
use crate::detect::Detector;
use crate::output::Output;
use crate::pipeline::Pipeline;
use crate::procs::ProcTable;
use bytes::Bytes;
use std::io::Write;
use std::sync::{Arc, Mutex};

const SERVER: u32 = 100;

/// One stdio record as the kernel writes it: header, then `data`.
pub fn stdio_record(dir: u8, offset: u64, ts_ns: u64, data: &[u8]) -> Bytes {
    // SAFETY: ms_stdio is a repr(C) POD; all-zero is a valid value.
    let mut s: abi::ms_stdio = unsafe { std::mem::zeroed() };
    s.h.kind = abi::EV_STDIO;
    s.h.ts_ns = ts_ns;
    s.h.pid = SERVER;
    s.h.tid = SERVER;
    s.h.ppid = 1;
    s.h.session = SERVER;
    s.h.comm[..4].copy_from_slice(b"node");
    s.dir = dir;
    s.len = data.len() as u16;
    s.offset = offset;
    let mut raw = vec![0u8; std::mem::size_of::<abi::ms_stdio>()];
    // SAFETY: raw is exactly size_of::<ms_stdio>() bytes; unaligned write.
    unsafe { std::ptr::write_unaligned(raw.as_mut_ptr() as *mut abi::ms_stdio, s) };
    raw.extend_from_slice(data);
    Bytes::from(raw)
}

/// Records of a stream of lines, each line written (and read) whole, as
/// the MCP SDKs do for small messages.
struct Channel {
    off: [u64; 2],
    ts: u64,
    out: Vec<Bytes>,
}

impl Channel {
    fn line(&mut self, dir: u8, text: &str) {
        let data = format!("{text}\n");
        self.ts += 1000;
        self.out.push(stdio_record(dir, self.off[dir as usize], self.ts, data.as_bytes()));
        self.off[dir as usize] += data.len() as u64;
    }
}

/// A handshake, then `calls` `echo` tool calls with the everything
/// server's framing (Python SDK client requests, Node SDK responses).
pub fn echo_session(calls: usize) -> Vec<Bytes> {
    let mut c = Channel { off: [0, 0], ts: 0, out: Vec::new() };
    c.line(abi::DIR_IN, r#"{"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp","version":"0.1.0"}},"jsonrpc":"2.0","id":0}"#);
    c.line(abi::DIR_OUT, r#"{"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":true}},"serverInfo":{"name":"mcp-servers/everything","version":"2.0.0"}},"jsonrpc":"2.0","id":0}"#);
    c.line(abi::DIR_IN, r#"{"method":"notifications/initialized","jsonrpc":"2.0"}"#);
    for i in 1..=calls {
        c.line(abi::DIR_IN, &format!(r#"{{"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m{i}"}}}},"jsonrpc":"2.0","id":{i}}}"#));
        c.line(abi::DIR_OUT, &format!(r#"{{"result":{{"content":[{{"type":"text","text":"Echo: m{i}"}}]}},"jsonrpc":"2.0","id":{i}}}"#));
    }
    c.out
}

/// `msgs` 1 KiB requests written back to back and captured in 16 KiB
/// records that cut through messages (the capture benchmark's flood).
pub fn flood(msgs: usize) -> Vec<Bytes> {
    let pad = "x".repeat(900);
    let mut text = Vec::new();
    for i in 0..msgs {
        writeln!(text, r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"t","arguments":{{"p":"{pad}"}}}}}}"#).unwrap();
    }
    text.chunks(abi::CHUNK_LARGE)
        .enumerate()
        .map(|(i, c)| stdio_record(abi::DIR_IN, (i * abi::CHUNK_LARGE) as u64, i as u64 + 1, c))
        .collect()
}

/// A shared in-memory sink: the tests read what the pipeline wrote.
#[derive(Clone, Default)]
pub struct Sink(pub Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A pipeline as `exec` builds it (default rules, one registered server),
/// writing to `w`.
pub fn pipeline(w: Box<dyn Write + Send>) -> Pipeline {
    let mut sessions = Sessions::default();
    sessions.register(SERVER, "node server.js".into());
    let mut procs = ProcTable::new();
    procs.observe(SERVER, 1, 0, "node");
    Pipeline::new(Output::to_writer(w), procs, sessions, Detector::new(crate::rules::defaults(), None))
}

/// Runs `records` through `p`: the function an instruction counter is
/// pointed at (building the pipeline, which compiles the rules, is not
/// part of it).
#[inline(never)]
pub fn run(p: &mut Pipeline, records: &[Bytes]) -> u64 {
    for r in records {
        p.on_raw(r);
    }
    p.out.flush();
    p.out.lines
}

/// `run` on a pipeline writing to a discarding sink.
pub fn run_discarding(records: &[Bytes]) -> u64 {
    let mut p = pipeline(Box::new(std::io::sink()));
    run(&mut p, records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(records: &[Bytes]) -> Vec<serde_json::Value> {
        let sink = Sink::default();
        run(&mut pipeline(Box::new(sink.clone())), records);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn streams_carry_what_they_claim() {
        let evs = lines(&echo_session(5));
        assert_eq!(evs.len(), 3 + 10, "{evs:?}");
        let last = &evs[12];
        assert_eq!(last["kind"], "rpc");
        assert_eq!(last["message"], "response");
        assert_eq!(last["tool"], "echo");
        assert_eq!(last["id"], 5);
        assert_eq!(last["result"], "Echo: m5");

        let evs = lines(&flood(100));
        assert_eq!(evs.len(), 100);
        assert!(evs.iter().all(|e| e["kind"] == "rpc" && e["truncated"] == false), "{evs:?}");
        assert_eq!(evs[99]["id"], 99);
    }

    /// `valgrind --tool=callgrind --toggle-collect='*pipeline_bench::run'
    /// <test binary> pipeline_bench::tests::echo_calls --ignored`
    #[test]
    #[ignore = "measurement, run under an instruction counter"]
    fn echo_calls() {
        let n = std::env::var("CALLS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
        let recs = echo_session(n);
        println!("lines written: {}", run_discarding(&recs));
    }

    #[test]
    #[ignore = "measurement, run under an instruction counter"]
    fn flood_messages() {
        let n = std::env::var("MSGS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
        let recs = flood(n);
        println!("lines written: {}", run_discarding(&recs));
    }
}
