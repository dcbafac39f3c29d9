//! TCP accept, optional TLS, HTTP/1.1 routing and the WebSocket upgrade.

use crate::hub::Hub;
use crate::{session, SignalConfig};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::IpAddr;
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
    pub config: Arc<SignalConfig>,
    pub hub: Arc<Hub>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    pub acceptor: Option<TlsAcceptor>,
}

/// A connection's place among those the server holds (TCP, TLS, HTTP and WebSocket alike):
/// when every place is taken, the server stops accepting until one frees up. It also counts
/// the connections of its IP address while it lives.
struct Held {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut m = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

type Place = Arc<Held>;

pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Room for the joined connections plus some in their handshake.
    let places = Arc::new(Semaphore::new(shared.config.limits.max_connections + 256));
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let permit = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            p = places.clone().acquire_owned() => match p {
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
                {
                    let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
                    let n = m.entry(ip).or_insert(0);
                    if *n >= shared.config.max_connections_per_ip {
                        tracing::info!(%ip, "refusing a connection: too many from this address");
                        continue; // dropping the stream closes it
                    }
                    *n += 1;
                }
                let place = Arc::new(Held {
                    _permit: permit,
                    ip,
                    per_ip: per_ip.clone(),
                });
                let _ = tcp.set_nodelay(true);
                tracing::trace!(%peer, "tcp accepted");
                shared.tracker.spawn(serve_tcp(tcp, shared.clone(), place));
            }
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_tcp(tcp: TcpStream, shared: Arc<Shared>, place: Place) {
    match &shared.acceptor {
        None => serve_http(tcp, shared, place).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(shared.config.handshake_timeout, acceptor.accept(tcp));
            match handshake.await {
                Ok(Ok(tls)) => serve_http(tls, shared, place).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

async fn serve_http<S>(io: S, shared: Arc<Shared>, place: Place)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        let place = place.clone();
        async move { Ok::<_, std::convert::Infallible>(route(req, &shared, place)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.handshake_timeout)
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
    }
}

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
/// stylesheet, logo and test-pattern reader (one copy of each).
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

fn web_file(path: &str) -> Option<Response<Full<Bytes>>> {
    let (_, kind, body) = WEB.iter().find(|(p, _, _)| *p == path)?;
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(WEB_CSP),
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

fn route(req: Request<Incoming>, shared: &Arc<Shared>, place: Place) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, path) if web_file(path).is_some() => web_file(path).expect("checked"),
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

fn upgrade(
    mut req: Request<Incoming>,
    shared: &Arc<Shared>,
    place: Place,
) -> Response<Full<Bytes>> {
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
                session::run(ws, hub, config, cancel).await;
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
