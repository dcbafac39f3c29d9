//! The Confab signaling server.
//!
//! This crate owns sockets only: TCP (optionally TLS), HTTP (`/healthz`, the WebSocket upgrade at
//! `/ws`) and one read and one write task per WebSocket. Every rule of protocol v1 lives in the
//! pure [`confab_rooms::Rooms`] state machine, which [`hub::Hub`] feeds under one lock.
//!
//! The same [`SignalServer`] runs as the `confab-signal` binary and inside the desktop app
//! ("Host on this computer").

mod http;
mod hub;
mod session;
mod tls;

pub use confab_rooms::Config as RoomLimits;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything the server can be told.
#[derive(Debug, Clone)]
pub struct SignalConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The room logic's limits (room size, connections, rooms, message size, rates, join timeout).
    pub limits: RoomLimits,
    /// Time a client has to complete the TLS and HTTP upgrade handshake.
    pub handshake_timeout: Duration,
    /// The server pings a client this often.
    pub ping_interval: Duration,
    /// A client that sends nothing (not even a pong) this long is disconnected.
    pub idle_timeout: Duration,
    /// Messages queued for one client at most; what does not fit is dropped.
    pub outbound_queue: usize,
    /// Time one write to a client may take; a client slower than that is disconnected.
    pub write_timeout: Duration,
    /// Connections one IP address may hold at once (many people behind one NAT share one).
    pub max_connections_per_ip: usize,
    /// Serve `wss://` with this certificate chain and private key (PEM files).
    pub tls: Option<TlsFiles>,
}

/// A PEM certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for SignalConfig {
    fn default() -> Self {
        SignalConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8787)),
            limits: RoomLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            outbound_queue: 64,
            write_timeout: Duration::from_secs(10),
            max_connections_per_ip: 256,
            tls: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read TLS file {path}: {message}")]
    TlsFile { path: PathBuf, message: String },
    #[error("the TLS certificate or key is not usable: {0}")]
    TlsConfig(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A running server. Dropping it without [`SignalServer::shutdown`] cancels it but does not wait.
pub struct SignalServer {
    addr: SocketAddr,
    tls: bool,
    cancel: CancellationToken,
    tracker: TaskTracker,
    hub: Arc<hub::Hub>,
}

impl SignalServer {
    /// Binds the listening socket and starts serving.
    pub async fn start(config: SignalConfig) -> Result<Self, SignalError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| SignalError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Self::start_on(listener, config)
    }

    /// Serves on an already bound listener.
    pub fn start_on(listener: TcpListener, config: SignalConfig) -> Result<Self, SignalError> {
        if config.outbound_queue == 0 {
            return Err(SignalError::Config(
                "the outbound queue needs room for at least one message".into(),
            ));
        }
        if config.limits.max_message_bytes == 0 {
            return Err(SignalError::Config(
                "the message size limit must be above zero".into(),
            ));
        }
        let addr = listener.local_addr().map_err(|source| SignalError::Bind {
            addr: config.listen,
            source,
        })?;
        let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let tls = acceptor.is_some();
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        let hub = Arc::new(hub::Hub::new(confab_rooms::Rooms::new(
            config.limits.clone(),
            seed,
        )));
        let shared = Arc::new(http::Shared {
            config: Arc::new(config),
            hub: hub.clone(),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            acceptor,
        });
        tracker.spawn(http::accept_loop(listener, shared.clone()));
        tracker.spawn(hub::tick_loop(hub.clone(), cancel.clone()));
        tracing::info!(%addr, tls, "signaling server listening");
        Ok(SignalServer {
            addr,
            tls,
            cancel,
            tracker,
            hub,
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL clients connect to, e.g. `ws://127.0.0.1:8787/ws`.
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.addr, confab_protocol::WS_PATH)
    }

    /// Connections held and rooms open right now.
    pub fn counts(&self) -> (usize, usize) {
        self.hub.counts()
    }

    /// Closes every client with "going away" and waits for every task (at most `grace`, then
    /// the remaining tasks are dropped with the runtime).
    pub async fn shutdown(self, grace: Duration) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within {grace:?}");
        }
        tracing::info!("signaling server stopped");
    }
}

/// Resolves on Ctrl+C or SIGTERM: how the binaries learn they should stop gracefully.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl Drop for SignalServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
