//! The Confab signaling server.
//!
//! This crate owns sockets only: TCP (optionally TLS), HTTP (`/healthz`, the WebSocket upgrade at
//! `/ws`) and one read and one write task per WebSocket. Every rule of protocol v1 lives in the
//! pure [`confab_rooms::Rooms`] state machine, which [`hub::Hub`] feeds under one lock.
//!
//! The same [`SignalServer`] runs as the `confab-signal` binary and inside the desktop app
//! ("Host on this computer").

mod cluster;
mod http;
mod hub;
mod session;
mod sfu;
mod tls;

pub use confab_rooms::{Config as RoomLimits, Sfu};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Bytes queued for one client at most (a message always fits an empty queue).
    pub outbound_queue_bytes: usize,
    /// Connections in their TLS/HTTP handshake at once; more wait in the listen backlog.
    pub max_handshakes: usize,
    /// Connections one address may have in their handshake at once; more are closed at once.
    pub max_handshakes_per_ip: usize,
    /// Largest HTTP request head (request line and headers), in bytes (at least 8192).
    pub max_header_bytes: usize,
    /// Browser origins allowed on `/ws` besides the server's own (e.g. `https://example.com`).
    pub allowed_origins: Vec<String>,
    /// Lets the web client act on `join`, `call`, `accept`, `source` and `size` URL
    /// parameters (`GET /client-config.json` says so). For automated tests only.
    pub test_hooks: bool,
    /// Time one write to a client may take; a client slower than that is disconnected.
    pub write_timeout: Duration,
    /// Connections one IP address may hold at once (many people behind one NAT share one).
    pub max_connections_per_ip: usize,
    /// Serve `wss://` with this certificate chain and private key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Join the nodes that share this Redis (`redis://HOST:PORT`): they serve the same rooms.
    /// Every node of a cluster must have the same room limits.
    pub redis: Option<String>,
    /// With an SFU (`limits.sfu`): how long an emptied room's VideoRoom room is kept before
    /// the server destroys it (not if someone is in the room again by then).
    pub sfu_remove_after: Duration,
    /// With an SFU: the SFU work waiting for its shell at most (a room whose work does not fit
    /// is made good later). Tests make it small.
    pub sfu_queue: usize,
}

/// A snapshot of what a server holds ([`SignalServer::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    /// WebSocket connections (joined or not).
    pub connections: usize,
    /// Rooms with at least one peer.
    pub rooms: usize,
    /// Connections still in their TLS/HTTP handshake.
    pub handshakes: usize,
    /// Bytes of messages waiting in the outbound queues (and being written).
    pub queued_bytes: usize,
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
            outbound_queue_bytes: 256 * 1024,
            max_handshakes: 128,
            max_handshakes_per_ip: 16,
            max_header_bytes: 16 * 1024,
            allowed_origins: Vec::new(),
            test_hooks: false,
            write_timeout: Duration::from_secs(10),
            max_connections_per_ip: 256,
            tls: None,
            redis: None,
            sfu_remove_after: Duration::from_secs(10),
            sfu_queue: sfu::OPS_QUEUE,
        }
    }
}

impl SignalConfig {
    /// Limits for a server on a local network — the app's "Host on this computer": a few
    /// people in a few rooms, not the internet. Listens on every interface, port 8787 (set
    /// `listen` to pick another).
    pub fn lan() -> Self {
        SignalConfig {
            limits: RoomLimits {
                room_capacity: 8,
                max_connections: 32,
                max_rooms: 4,
                address_join_burst: 20.0,
                address_join_per_sec: 1.0,
                password_failures_per_address: 5,
                password_failures_per_room: 10,
                tracked_addresses: 256,
                ..RoomLimits::default()
            },
            max_connections_per_ip: 8,
            max_handshakes: 16,
            max_handshakes_per_ip: 4,
            outbound_queue: 64,
            outbound_queue_bytes: 256 * 1024,
            ..SignalConfig::default()
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
    handshakes: Arc<AtomicUsize>,
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
        if config.outbound_queue_bytes < 1024 {
            return Err(SignalError::Config(
                "the outbound queue needs room for at least 1024 bytes".into(),
            ));
        }
        if config.max_handshakes == 0 || config.max_handshakes_per_ip == 0 {
            return Err(SignalError::Config(
                "at least one connection must be allowed in its handshake".into(),
            ));
        }
        if config.max_header_bytes < 1024 {
            return Err(SignalError::Config(
                "HTTP request heads need at least 1024 bytes".into(),
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
        let queue = hub::QueueLimits {
            messages: config.outbound_queue,
            bytes: config.outbound_queue_bytes,
        };
        let (sfu_ops, sfu_rx) = match &config.limits.sfu {
            Some(_) => {
                let (tx, rx) = sfu::SfuQueue::new(config.sfu_queue);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let (hub, cluster) = match &config.redis {
            None => {
                let rooms = confab_rooms::Rooms::new(config.limits.clone(), seed);
                (Arc::new(hub::Hub::new(rooms, queue, None, sfu_ops)), None)
            }
            Some(url) => {
                let mut name = [0u8; 8];
                rand::fill(&mut name);
                let node: String = name.iter().map(|b| format!("{b:02x}")).collect();
                let healthy = Arc::new(AtomicBool::new(false));
                let dirty = Arc::new(AtomicBool::new(false));
                let store = cluster::Store::new(url, node.clone(), healthy.clone(), dirty.clone())
                    .map_err(SignalError::Config)?;
                let (ops, ops_rx) = tokio::sync::mpsc::channel(cluster::OPS_QUEUE);
                let rooms = confab_rooms::Rooms::clustered(config.limits.clone(), seed, node);
                let link = hub::ClusterLink {
                    ops,
                    healthy,
                    dirty,
                };
                let hub = Arc::new(hub::Hub::new(rooms, queue, Some(link), sfu_ops));
                (hub, Some((Arc::new(store), ops_rx)))
            }
        };
        if let (Some(rx), Some(sfu)) = (sfu_rx, &config.limits.sfu) {
            tracker.spawn(sfu::ops_loop(
                sfu.clone(),
                hub.clone(),
                cluster.as_ref().map(|(store, _)| store.clone()),
                config.sfu_remove_after,
                rx,
                cancel.clone(),
            ));
        }
        let handshakes = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(http::Shared {
            handshakes: handshakes.clone(),
            config: Arc::new(config),
            hub: hub.clone(),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            acceptor,
        });
        tracker.spawn(http::accept_loop(listener, shared.clone()));
        tracker.spawn(hub::tick_loop(hub.clone(), cancel.clone()));
        if let Some((store, ops_rx)) = cluster {
            let c = cancel.clone();
            tracker.spawn(cluster::ops_loop(hub.clone(), store.clone(), ops_rx, c));
            tracker.spawn(cluster::subscriber_loop(
                hub.clone(),
                store.clone(),
                cancel.clone(),
            ));
            tracker.spawn(cluster::heartbeat_loop(hub.clone(), store, cancel.clone()));
        }
        tracing::info!(%addr, tls, "signaling server listening");
        Ok(SignalServer {
            addr,
            tls,
            cancel,
            tracker,
            hub,
            handshakes,
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

    /// This node's name in its cluster (`None` without `redis`).
    pub fn node_id(&self) -> Option<String> {
        self.hub.read_rooms(|r| r.node_id().map(str::to_owned))
    }

    /// Whether the cluster's Redis answers (`None` without `redis`); `/healthz` says the same.
    pub fn store_healthy(&self) -> Option<bool> {
        self.hub.store_healthy()
    }

    /// Connections held and rooms open right now.
    pub fn counts(&self) -> (usize, usize) {
        self.hub.counts()
    }

    /// What the server holds right now.
    pub fn stats(&self) -> ServerStats {
        let (connections, rooms) = self.hub.counts();
        ServerStats {
            connections,
            rooms,
            handshakes: self.handshakes.load(Ordering::Relaxed),
            queued_bytes: self.hub.queued_bytes(),
        }
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
