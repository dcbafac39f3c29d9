//! TCP accept, optional TLS, HTTP/1.1 routing and the WebSocket upgrade.

use crate::hub::Hub;
use crate::{session, SignalConfig};
use bytes::Bytes;
use confab_rooms::AddrKey;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Shared {
    /// Connections in their TLS/HTTP handshake right now.
    pub handshakes: Arc<AtomicUsize>,
    pub config: Arc<SignalConfig>,
    pub hub: Arc<Hub>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    pub acceptor: Option<TlsAcceptor>,
}

/// Counts of something per client address (an IPv6 address counts per /64).
#[derive(Clone, Default)]
struct PerAddress(Arc<Mutex<HashMap<AddrKey, usize>>>);

/// One count of an address, given back when dropped.
struct Counted {
    map: PerAddress,
    key: AddrKey,
}

impl PerAddress {
    /// Counts one more for `ip`, unless it already has `max`.
    fn try_count(&self, ip: IpAddr, max: usize) -> Option<Counted> {
        let key = AddrKey::from(ip);
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key).or_insert(0);
        if *n >= max {
            if *n == 0 {
                m.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Counted {
            map: self.clone(),
            key,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut m = self.map.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// A connection's place among those the server holds (TCP, TLS, HTTP and WebSocket alike):
/// when every place is taken, the server stops accepting until one frees up. It also counts
/// the connections of its address while it lives.
struct Held {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    _per_address: Counted,
}

type Place = Arc<Held>;

pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Room for the joined connections plus some in their handshake.
    let places = Arc::new(Semaphore::new(shared.config.limits.max_connections + 256));
    // Handshakes in progress have their own, smaller limit: while it is reached, new
    // connections wait in the kernel's listen backlog (costing the server nothing).
    let handshakes = Arc::new(Semaphore::new(shared.config.max_handshakes.max(1)));
    let per_ip = PerAddress::default();
    let handshakes_per_ip = PerAddress::default();
    loop {
        let (permit, handshake) = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            p = async {
                let place = places.clone().acquire_owned().await?;
                let handshake = handshakes.clone().acquire_owned().await?;
                Ok::<_, tokio::sync::AcquireError>((place, handshake))
            } => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let ip = peer.ip();
                // Dropping the stream closes it.
                let Some(counted) = per_ip.try_count(ip, shared.config.max_connections_per_ip)
                else {
                    tracing::info!(%ip, "refusing a connection: too many from this address");
                    continue;
                };
                // One address cannot take every handshake place.
                let Some(in_handshake) =
                    handshakes_per_ip.try_count(ip, shared.config.max_handshakes_per_ip)
                else {
                    tracing::info!(%ip, "refusing a connection: too many handshakes from this address");
                    continue;
                };
                let place = Arc::new(Held {
                    _permit: permit,
                    ip,
                    _per_address: counted,
                });
                let _ = tcp.set_nodelay(true);
                tracing::trace!(%peer, "tcp accepted");
                let handshake = InHandshake::new(&shared.handshakes, handshake, in_handshake);
                shared
                    .tracker
                    .spawn(serve_tcp(tcp, shared.clone(), place, handshake));
            }
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A connection's place among those in their TLS/HTTP handshake (and its count in the
/// server's stats), held until it becomes a WebSocket or ends.
struct InHandshake {
    count: Arc<AtomicUsize>,
    _permit: OwnedSemaphorePermit,
    _per_address: Counted,
}

impl InHandshake {
    fn new(count: &Arc<AtomicUsize>, permit: OwnedSemaphorePermit, per_address: Counted) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        InHandshake {
            count: count.clone(),
            _permit: permit,
            _per_address: per_address,
        }
    }
}

impl Drop for InHandshake {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_tcp(tcp: TcpStream, shared: Arc<Shared>, place: Place, _handshake: InHandshake) {
    // The whole handshake — TLS, then HTTP requests until the WebSocket upgrade — has one
    // deadline.
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout;
    match &shared.acceptor {
        None => serve_http(tcp, shared, place, deadline).await,
        Some(acceptor) => {
            let tls = tokio::time::timeout_at(deadline, acceptor.accept(tcp));
            match tls.await {
                Ok(Ok(tls)) => serve_http(tls, shared, place, deadline).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

/// Serves HTTP on a connection until it upgrades to a WebSocket (the upgraded connection then
/// lives in its own task), ends, or reaches the handshake deadline.
async fn serve_http<S>(io: S, shared: Arc<Shared>, place: Place, deadline: tokio::time::Instant)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        let place = place.clone();
        async move { Ok::<_, std::convert::Infallible>(route(req, &shared, place)) }
    });
    // The request head is read into a small buffer: hyper's default would let every
    // connection in its handshake hold about 400 KiB.
    let head = shared.config.max_header_bytes;
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.handshake_timeout)
        .max_buf_size(head.max(MIN_HEADER_BUFFER))
        .max_header_size(head)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "http connection ended");
            }
        }
        _ = shared.cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
        _ = tokio::time::sleep_until(deadline) => {
            // Plain HTTP (the page, its files) is done long before; a connection still here
            // is idle keep-alive or too slow. It makes room for others.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

/// The smallest read buffer hyper accepts.
pub const MIN_HEADER_BUFFER: usize = 8192;

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// The web client, built into the binary: its own page and script, and the desktop UI's
/// stylesheet, logo, test-pattern reader and name/room rules (one copy of each).
const WEB: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../web/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../web/index.html"),
    ),
    (
        "/client.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/client.js"),
    ),
    (
        "/callcore.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/callcore.js"),
    ),
    (
        "/sfu.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/sfu.js"),
    ),
    (
        "/measure.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/measure.js"),
    ),
    (
        "/notices.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/notices.js"),
    ),
    (
        "/rules.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/rules.js"),
    ),
    (
        "/pattern.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/pattern.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../../ui/style.css"),
    ),
    (
        "/logo.svg",
        "image/svg+xml",
        include_str!("../../../ui/logo.svg"),
    ),
];

const WEB_CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                       media-src 'self' blob: mediastream:; style-src 'self'; object-src 'none'; \
                       base-uri 'none'; frame-ancestors 'none'";

/// The web client's policy: its own origin only, and the SFU's WebSocket when there is one.
fn web_csp(config: &SignalConfig) -> String {
    match &config.limits.sfu {
        Some(sfu) => {
            let ws = sfu.ws_url();
            // The origin only (scheme, host, port): a CSP source ends there.
            let origin = match ws.find("://").map(|i| i + 3) {
                Some(start) => match ws[start..].find('/') {
                    Some(end) => &ws[..start + end],
                    None => ws,
                },
                None => ws,
            };
            WEB_CSP.replacen(
                "connect-src 'self'",
                &format!("connect-src 'self' {origin}"),
                1,
            )
        }
        None => WEB_CSP.to_owned(),
    }
}

fn web_file(path: &str, config: &SignalConfig) -> Option<Response<Full<Bytes>>> {
    let (_, kind, body) = WEB.iter().find(|(p, _, _)| *p == path)?;
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&web_csp(config))
            .unwrap_or_else(|_| HeaderValue::from_static(WEB_CSP)),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(res)
}

/// What the web client needs to know about this server: `{"testHooks":bool}` — whether it may
/// act on its test-only URL parameters (join, call, accept, source, size).
fn client_config(shared: &Shared) -> Response<Full<Bytes>> {
    let body = format!(r#"{{"testHooks":{}}}"#, shared.config.test_hooks);
    let mut res = Response::new(Full::new(Bytes::from(body)));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

fn route(req: Request<Incoming>, shared: &Arc<Shared>, place: Place) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => match shared.hub.store_healthy() {
            Some(false) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "redis unreachable: serving local rooms only\n",
            ),
            _ => text(StatusCode::OK, "ok\n"),
        },
        (&Method::GET, "/client-config.json") => client_config(shared),
        (&Method::GET, path) if WEB.iter().any(|(p, _, _)| *p == path) => {
            web_file(path, &shared.config).expect("checked")
        }
        (&Method::GET, confab_protocol::WS_PATH) => upgrade(req, shared, place),
        (_, "/healthz") | (_, confab_protocol::WS_PATH) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn header_has(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// The authority of a URL or Host header, lower case, without the scheme's default port.
fn authority(s: &str, default_port: &str) -> String {
    let s = s.trim().to_ascii_lowercase();
    match s.strip_suffix(default_port) {
        Some(rest) if rest.ends_with(':') => rest.trim_end_matches(':').to_owned(),
        _ => s,
    }
}

/// Whether a browser page from the request's `Origin` may open the WebSocket: the server's own
/// page (the Origin names the host and port the request was sent to), or an origin the
/// operator allowed. Requests without an Origin come from native clients (browsers always
/// send one on a WebSocket) and are let in.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim();
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false; // "null" (sandboxed pages, files) and anything malformed
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let Some(host) = host else {
        return false;
    };
    !rest.is_empty()
        && !rest.contains(['/', '@', '?', '#'])
        && authority(rest, default_port) == authority(host, default_port)
}

fn upgrade(
    mut req: Request<Incoming>,
    shared: &Arc<Shared>,
    place: Place,
) -> Response<Full<Bytes>> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, host, &shared.config.allowed_origins) {
        tracing::info!(
            origin = origin.unwrap_or(""),
            host = host.unwrap_or(""),
            "refusing a WebSocket from another site"
        );
        return text(
            StatusCode::FORBIDDEN,
            "this signaling server only takes WebSocket connections from its own pages\n",
        );
    }
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let (Some(key), true, true, true) = (
        key,
        version_ok,
        header_has(&req, header::CONNECTION, "upgrade"),
        header_has(&req, header::UPGRADE, "websocket"),
    ) else {
        let mut res = text(
            StatusCode::UPGRADE_REQUIRED,
            "this is the Confab signaling endpoint: connect with a WebSocket (version 13)\n",
        );
        res.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return res;
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let hub = shared.hub.clone();
    let cancel = shared.cancel.clone();
    let ws_config = session::ws_config(&shared.config);
    let config = shared.config.clone();
    let ip = place.ip;
    shared.tracker.spawn(async move {
        let _place = place; // held for the life of the WebSocket
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config),
                )
                .await;
                session::run(ws, ip, hub, config, cancel).await;
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    /// The web client may open a WebSocket to its own server and, with --sfu, to the SFU's
    /// origin (nothing more of its address).
    #[test]
    fn the_web_clients_policy_lets_it_reach_the_sfu_only() {
        use crate::{RoomLimits, Sfu, SignalConfig};
        let mut config = SignalConfig::default();
        assert!(super::web_csp(&config).contains("connect-src 'self';"));
        config.limits = RoomLimits {
            sfu: Some(Sfu {
                url: "janus+wss://sfu.example:8989/janus".into(),
                secret: "s".repeat(16),
                above: 6,
                admin_key: None,
            }),
            ..RoomLimits::default()
        };
        let csp = super::web_csp(&config);
        assert!(
            csp.contains("connect-src 'self' wss://sfu.example:8989;"),
            "{csp}"
        );
        assert!(csp.contains("default-src 'self';"), "{csp}");
    }

    #[test]
    fn origins() {
        let none: &[String] = &[];
        let ok = |o: &str, h: &str| origin_allowed(Some(o), Some(h), none);
        assert!(
            origin_allowed(None, None, none),
            "native clients send no Origin"
        );
        assert!(ok("http://10.0.0.5:8787", "10.0.0.5:8787"));
        assert!(ok("https://Example.COM", "example.com:443"));
        assert!(ok("http://example.com:80", "example.com"));
        assert!(ok("http://[::1]:8787", "[::1]:8787"));
        assert!(!ok("http://example.com", "example.com:8787"));
        assert!(!ok("https://example.com:80", "example.com"));
        assert!(!ok("http://evil.example", "example.com"));
        assert!(!ok("null", "example.com"));
        assert!(!ok("ws://example.com", "example.com"));
        assert!(!ok("http://user@example.com", "example.com"));
        assert!(!ok("http://example.com/path", "example.com"));
        assert!(!origin_allowed(Some("http://example.com"), None, none));
        let allowed = vec!["https://app.example.com/".to_owned()];
        assert!(origin_allowed(
            Some("https://app.example.com"),
            Some("signal.example.com"),
            &allowed
        ));
    }
}
