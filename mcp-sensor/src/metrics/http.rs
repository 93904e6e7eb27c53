//! The metrics endpoint: `GET /metrics` (OpenMetrics text) and
//! `GET /healthz` (200 `ok`, or 503 with the reason), over HTTP/1.1 (hyper)
//! on the agent's tokio runtime.
//!
//! Owns the listen address (`--metrics-address`, `metrics.address`): parsed
//! with a hint, bound at start before the sensor loads, so a bad address or
//! a port in use stops `run` with a clear error instead of a daemon
//! without metrics. Connections are bounded ([`MAX_CONNECTIONS`]) and a
//! client must send its request head within [`HEADER_TIMEOUT`].

use super::Tap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// `IP:PORT` (`127.0.0.1:9464`, `[::1]:9464`) or `:PORT` (every IPv4 address).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    let full = if t.starts_with(':') { format!("0.0.0.0{t}") } else { t.to_string() };
    full.parse::<SocketAddr>().map_err(|_| {
        format!(
            "`{s}` is not an address to listen on: write IP:PORT, e.g. 127.0.0.1:9464 (this host only), \
             [::1]:9464, or :9464 (every IPv4 address); host names are not resolved"
        )
    })
}

/// Binds `addr` now; the error says what to do about it.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use std::io::ErrorKind as K;
    let l = std::net::TcpListener::bind(addr).map_err(|e| {
        let hint = match e.kind() {
            K::AddrInUse => format!(
                "another process listens there (`ss -ltnp 'sport = :{}'` names it): stop it, or choose another port \
                 with --metrics-address or metrics.address",
                addr.port()
            ),
            K::AddrNotAvailable => "no interface of this host has that address: use 127.0.0.1, 0.0.0.0, or one `ip -brief addr` lists".into(),
            K::PermissionDenied => "permission denied: choose a port above 1023, or check the security policy (SELinux, AppArmor)".into(),
            _ => "choose another address with --metrics-address or metrics.address".into(),
        };
        anyhow::anyhow!("listening for metrics on {addr}: {e}: {hint}")
    })?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves until the task is dropped. An accept error is said once and
/// retried after a pause (a full fd table must not spin).
pub async fn serve(listener: std::net::TcpListener, tap: Arc<Tap>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            crate::say!("mcp-sensor: metrics endpoint not served: {e}");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut said = false;
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                if !said {
                    crate::say!("mcp-sensor: metrics endpoint: accepting a connection failed: {e} (retrying)");
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let tap = tap.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let tap = tap.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&req, &tap)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            drop(permit);
        });
    }
}

fn respond(req: &Request<Incoming>, tap: &Tap) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let code = if matches!(path, "/metrics" | "/healthz") { StatusCode::METHOD_NOT_ALLOWED } else { StatusCode::NOT_FOUND };
        return text(code, "text/plain; charset=utf-8", "GET /metrics or GET /healthz\n".into());
    }
    match path {
        "/metrics" => text(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", tap.metrics.render()),
        "/healthz" => match tap.health() {
            Ok(s) => text(StatusCode::OK, "text/plain; charset=utf-8", format!("{s}\n")),
            Err(s) => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", format!("{s}\n")),
        },
        _ => text(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found: GET /metrics or GET /healthz\n".into()),
    }
}

fn text(code: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(ctype));
    r
}
