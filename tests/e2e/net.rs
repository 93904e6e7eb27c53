//! Network beyond connect(2): a UDP `sendto` without `connect`, TCP Fast
//! Open (`sendto` with `MSG_FASTOPEN`), io_uring's `IORING_OP_CONNECT` and
//! `IORING_OP_SENDMSG` are each a `connect` event naming the destination (`op`, `hook`,
//! `transport` say which path), seen by the cgroup socket programs in
//! every mode; under `--enforce` each is refused in the kernel (EPERM
//! seen by the caller, nothing sent) with an alert naming the
//! destination. Every test has its positive control in the same run: a
//! send or connect that is allowed and arrives, and is reported once.
//! Named `kernel_net_*`: the VM matrix runs them on each kernel.

use crate::enforce::rule_file;
use crate::harness::*;
use crate::uring::test_prog;
use serde_json::Value;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::Stdio;

const METADATA: &str = "169.254.169.254";

/// The python interpreter itself, not pyenv's shim (a bash script that
/// costs seconds per run in the VMs): resolved once.
fn python() -> &'static str {
    static PY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let out = std::process::Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().expect("run python3");
        assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

/// The `connect` events to `addr`:`port`.
fn connects<'a>(run: &'a Run, addr: &str, port: u16) -> Vec<&'a Value> {
    run.of_kind("connect").filter(|e| e["addr"] == addr && e["port"] == port).collect()
}

/// The alerts of `rule` whose event names `addr`.
fn alerts<'a>(run: &'a Run, rule: &str, addr: &str) -> Vec<&'a Value> {
    run.of_kind("alert").filter(|a| a["rule"] == rule && a["event"]["addr"] == addr).collect()
}

/// Occurrences `found` stand for: each alert line, and its repeats as its
/// `alert_summary` counts them (one alert per finding: aggregate.rs).
fn occurrences(run: &Run, found: &[&Value]) -> u64 {
    found
        .iter()
        .map(|a| run.of_kind("alert_summary").find(|s| s["alert_id"] == a["alert_id"]).map_or(1, |s| s["count"].as_u64().unwrap()))
        .sum()
}

/// A UDP socket on 127.0.0.1 the test reads from (the positive control).
fn udp_sink() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

/// Python: socket A sends to the metadata address once, then twice to the
/// sink; socket B sends to the metadata address once; each result printed.
/// `tail`: more lines run at the end.
fn udp_script(sink: u16, tail: &str) -> String {
    format!(
        "import socket\n\
         def send(s, dst, what):\n  try:\n    s.sendto(what, dst); print('sent', dst[1], flush=True)\n  \
         except OSError as e:\n    print('errno', e.errno, dst[1], flush=True)\n\
         a=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         b=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         send(a, ('{METADATA}', 80), b'm')\n\
         send(a, ('127.0.0.1', {sink}), b'one')\n\
         send(a, ('127.0.0.1', {sink}), b'two')\n\
         send(b, ('{METADATA}', 80), b'm')\n{tail}"
    )
}

/// The sink got both datagrams: the control, the allowed sends went out.
fn sink_got_both(sink: &UdpSocket, run: &Run) {
    let mut buf = [0u8; 16];
    for want in ["one", "two"] {
        let n = sink.recv(&mut buf).unwrap_or_else(|e| panic!("the sink got no datagram ({e})\n{}", run.describe()));
        assert_eq!(&buf[..n], want.as_bytes(), "{}", run.describe());
    }
}

/// The events every UDP run shows: one per socket and destination, from
/// the cgroup sendmsg4 program; the sink's reported once for two sends.
fn udp_events(run: &Run, sink: u16) -> Vec<&Value> {
    let local = connects(run, "127.0.0.1", sink);
    assert_eq!(local.len(), 1, "first send per socket and destination only\n{}", run.describe());
    let meta = connects(run, METADATA, 80);
    assert_eq!(meta.len(), 2, "one per socket\n{}", run.describe());
    for e in local.iter().chain(&meta) {
        assert_eq!((&e["op"], &e["hook"], &e["transport"], &e["family"]), (&"sendto".into(), &"cgroup_sendmsg4".into(), &"udp".into(), &"inet".into()), "{e}");
    }
    meta
}

#[test]
fn kernel_net_udp_sendto_without_connect_is_reported_and_alerts() {
    let d = scratch("net-udp");
    let (sink, port) = udp_sink();
    let run = exec_with(&d, &[], &[python(), "-c", &udp_script(port, "")], Stdio::null());
    assert_eq!(run.status(), 0, "{}", run.describe());
    sink_got_both(&sink, &run);
    let meta = udp_events(&run, port);
    // unenforced, the send is not refused by the sensor (the kernel may
    // still find no route: ENETUNREACH where there is no network)
    assert!(meta.iter().all(|e| e["ret"] == 0 && e["error"].is_null()), "{meta:?}");
    let found = alerts(&run, "cloud-metadata-connect", METADATA);
    // the two sends to one destination in one run are one finding, counted
    assert_eq!(found.len(), 1, "{}", run.describe());
    assert_eq!(occurrences(&run, &found), 2, "{}", run.describe());
    assert!(found.iter().all(|a| a["action"] == "would_deny" && a["event"]["port"] == 80), "{found:?}");
}

#[test]
fn kernel_net_udp_sendto_to_a_denied_destination_is_refused_under_enforce() {
    let d = scratch("net-udp-enf");
    let (sink, port) = udp_sink();
    // a kill rule on a second local port: refused in the kernel, killed by
    // the agent (cgroup programs cannot signal)
    let kill_port = udp_sink().1;
    let rules = rule_file(
        &d,
        &format!("- rule: udp-kill\n  description: d\n  severity: high\n  kind: connect\n  action: kill\n  match:\n    addr: 127.0.0.1\n    port: {kill_port}\n"),
    );
    let tail = format!("send(b, ('127.0.0.1', {kill_port}), b'k')\nimport time\ntime.sleep(20)\nprint('survived', flush=True)\n");
    let run = exec_with(&d, &["--enforce", "--rules", &rules], &[python(), "-c", &udp_script(port, &tail)], Stdio::null());
    let out = run.stdout();
    assert_eq!(out.matches(&format!("errno {} 80", libc::EPERM)).count(), 2, "the sender saw EPERM twice\n{}", run.describe());
    assert_eq!(out.matches(&format!("sent {port}")).count(), 2, "{}", run.describe());
    sink_got_both(&sink, &run);
    let meta = udp_events(&run, port);
    assert!(meta.iter().all(|e| e["ret"] == -libc::EPERM && e["error"] == "EPERM"), "{meta:?}");
    let denied = alerts(&run, "cloud-metadata-connect", METADATA);
    // each send was refused (the sender saw EPERM twice, above); one finding, counted
    assert_eq!(denied.len(), 1, "{}", run.describe());
    assert_eq!(occurrences(&run, &denied), 2, "{}", run.describe());
    for a in &denied {
        assert_eq!((&a["action"], &a["decided_by"]), (&"denied".into(), &"kernel_cgroup".into()), "{a}");
        assert_eq!(a["event"]["port"], 80, "{a}");
    }
    // the kill rule: refused (EPERM), then killed by the agent
    assert_eq!(run.status(), 128 + 9, "{}", run.describe());
    assert!(out.contains(&format!("errno {} {kill_port}", libc::EPERM)), "{}", run.describe());
    assert!(!out.contains("survived"), "{}", run.describe());
    let killed = alerts(&run, "udp-kill", "127.0.0.1");
    assert_eq!(killed.len(), 1, "{}", run.describe());
    let k = killed[0];
    assert_eq!((&k["action"], &k["decided_by"], &k["event"]["port"]), (&"killed".into(), &"kernel_cgroup+agent".into(), &kill_port.into()), "{k}");
    assert_eq!(k["killed"][0]["pid"], k["pid"], "{k}");
    let enforced = &run.final_drops()["enforced"];
    assert_eq!((&enforced["deny_send"], &enforced["deny_connect"]), (&3.into(), &0.into()), "{}", run.describe());
}

/// The kernel's TCP Fast Open client side is on (net.ipv4.tcp_fastopen
/// bit 1, the default): without it sendto(MSG_FASTOPEN) fails before any
/// connect, and the test would prove nothing.
fn require_tfo_client() {
    let v = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fastopen").unwrap_or_default();
    let v: u32 = v.trim().parse().unwrap_or(0);
    assert!(v & 1 != 0, "net.ipv4.tcp_fastopen is {v}: the TFO client bit (1) is off; set it to test TFO");
}

/// Python: a TFO sendto to `tfo`, then a plain connect(2) to `plain`, each
/// result printed.
fn tfo_script(tfo: u16, plain: u16) -> String {
    format!(
        "import socket\n\
         c=socket.socket()\n\
         try:\n  c.sendto(b'hello', socket.MSG_FASTOPEN, ('127.0.0.1', {tfo})); print('tfo sent', flush=True)\n\
         except OSError as e:\n  print('tfo errno', e.errno, flush=True)\n\
         p=socket.socket()\n\
         p.connect(('127.0.0.1', {plain})); print('connected', flush=True)\n"
    )
}

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Whether `l` has a connection waiting (the sensor's run is over by then).
fn accepted(l: &TcpListener) -> bool {
    match l.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

/// The one connect event to `port` (assert: exactly one), with its path.
fn one_connect<'a>(run: &'a Run, port: u16, op: &str, hook: &str) -> &'a Value {
    let c = connects(run, "127.0.0.1", port);
    assert_eq!(c.len(), 1, "one event per connect\n{}", run.describe());
    assert_eq!((&c[0]["op"], &c[0]["hook"], &c[0]["transport"]), (&op.into(), &hook.into(), &"tcp".into()), "{}", c[0]);
    c[0]
}

#[test]
fn kernel_net_tcp_fast_open_is_a_connect_event_and_refused_under_enforce() {
    require_root();
    require_tfo_client();
    let d = scratch("net-tfo");
    let (tfo, tfo_port) = listener();
    let (plain, plain_port) = listener();
    let run = exec_with(&d, &[], &[python(), "-c", &tfo_script(tfo_port, plain_port)], Stdio::null());
    assert_eq!(run.stdout(), "tfo sent\nconnected\n", "{}", run.describe());
    assert!(accepted(&tfo) && accepted(&plain), "both connections arrived");
    one_connect(&run, tfo_port, "sendto", "cgroup_connect4");
    // the control: plain connect(2) stays connect(2)'s, reported once
    assert_eq!(one_connect(&run, plain_port, "connect", "sys_connect")["ret"], 0);

    // enforced: TFO to a denied port is refused, the plain connect is not
    let (tfo, tfo_port) = listener();
    let rules = rule_file(
        &d,
        &format!("- rule: no-tfo\n  description: d\n  severity: high\n  kind: connect\n  action: deny\n  match:\n    addr: 127.0.0.1\n    port: {tfo_port}\n"),
    );
    let run = exec_with(&d, &["--enforce", "--rules", &rules], &[python(), "-c", &tfo_script(tfo_port, plain_port)], Stdio::null());
    assert_eq!(run.stdout(), format!("tfo errno {}\nconnected\n", libc::EPERM), "{}", run.describe());
    assert!(!accepted(&tfo), "the refused TFO connect never arrived");
    assert!(accepted(&plain), "the control connect arrived");
    assert_eq!(one_connect(&run, tfo_port, "sendto", "cgroup_connect4")["error"], "EPERM");
    let a = alerts(&run, "no-tfo", "127.0.0.1");
    assert_eq!(a.len(), 1, "{}", run.describe());
    assert_eq!((&a[0]["action"], &a[0]["decided_by"], &a[0]["event"]["port"]), (&"denied".into(), &"kernel_cgroup".into(), &tfo_port.into()), "{}", a[0]);
    assert_eq!(run.final_drops()["enforced"]["deny_connect"], 1, "{}", run.describe());
}

/// uring_connect under the sensor with `flags`: a TCP connect to
/// 127.0.0.1:`port`, then a UDP send to 127.0.0.1:`udp`, both through the
/// ring.
fn uring_connect(d: &Path, flags: &[&str], port: u16, udp: u16) -> Run {
    let prog = test_prog(d, "uring_connect");
    exec_with(d, flags, &[prog.to_str().unwrap(), "127.0.0.1", &port.to_string(), &udp.to_string()], Stdio::null())
}

/// The ring's UDP send arrived and was reported once, from sendmsg4.
fn ring_send_seen(run: &Run, sink: &UdpSocket, udp: u16) {
    let mut buf = [0u8; 8];
    let n = sink.recv(&mut buf).unwrap_or_else(|e| panic!("the ring's datagram never came ({e})\n{}", run.describe()));
    assert_eq!(&buf[..n], b"ring");
    let c = connects(run, "127.0.0.1", udp);
    assert_eq!(c.len(), 1, "{}", run.describe());
    assert_eq!((&c[0]["op"], &c[0]["hook"], &c[0]["transport"]), (&"io_uring".into(), &"cgroup_sendmsg4".into(), &"udp".into()), "{}", c[0]);
}

#[test]
fn kernel_net_io_uring_connect_is_a_connect_event_and_refused_under_enforce() {
    require_root();
    let d = scratch("net-uring");
    let (l, port) = listener();
    let (sink, udp) = udp_sink();
    let run = uring_connect(&d, &[], port, udp);
    assert_eq!((run.status(), run.stdout()), (0, "connect 0\nsend 4\n".to_string()), "{}", run.describe());
    assert!(accepted(&l), "the ring's connect arrived");
    assert_eq!(run.of_kind("io_uring_setup").count(), 1, "the ring was seen: {}", run.describe());
    one_connect(&run, port, "io_uring", "cgroup_connect4");
    ring_send_seen(&run, &sink, udp);

    // enforced, with the set-up rule off (else io_uring_setup is killed
    // before any connect): the ring's connect is refused
    let (l, port) = listener();
    let rules = rule_file(
        &d,
        &format!("- disable: [io-uring-setup]\n- rule: no-ring\n  description: d\n  severity: high\n  kind: connect\n  action: deny\n  match:\n    addr: 127.0.0.1\n    port: {port}\n"),
    );
    let run = uring_connect(&d, &["--enforce", "--rules", &rules], port, udp);
    assert_eq!((run.status(), run.stdout()), (1, format!("connect -{}\nsend 4\n", libc::EPERM)), "{}", run.describe());
    assert!(!accepted(&l), "the refused connect never arrived");
    // the control: the ring's allowed send still goes out
    ring_send_seen(&run, &sink, udp);
    assert_eq!(one_connect(&run, port, "io_uring", "cgroup_connect4")["error"], "EPERM");
    let a = alerts(&run, "no-ring", "127.0.0.1");
    assert_eq!(a.len(), 1, "{}", run.describe());
    assert_eq!((&a[0]["action"], &a[0]["decided_by"]), (&"denied".into(), &"kernel_cgroup".into()), "{}", a[0]);
    assert_eq!(run.final_drops()["enforced"]["deny_connect"], 1, "{}", run.describe());
}
