//! `confab-signal`: the Confab signaling server.

use anyhow::Context;
use clap::Parser;
use confab_signal::{RoomLimits, SignalConfig, SignalServer, TlsFiles};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The Confab signaling server: rooms, and the relay of call set-up messages between the
/// people in a room (protocol v1, WebSocket at /ws). Media never passes through it.
///
/// Every flag can also be set by the environment variable shown. Logs go to stderr; set
/// RUST_LOG (e.g. RUST_LOG=confab_signal=debug) for more.
#[derive(Debug, Parser)]
#[command(name = "confab-signal", version, about, long_about)]
struct Args {
    /// Address and port to listen on (HTTP: /ws for WebSocket, /healthz for health checks).
    #[arg(long, env = "CONFAB_LISTEN", default_value = "0.0.0.0:8787")]
    listen: SocketAddr,

    /// Serve wss:// (TLS) with this PEM certificate chain; needs --tls-key.
    #[arg(long, env = "CONFAB_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The PEM private key for --tls-cert.
    #[arg(long, env = "CONFAB_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Largest message a client may send, in bytes. Larger ones are answered with a
    /// `too-large` error; twice this closes the connection.
    #[arg(long, env = "CONFAB_MAX_MESSAGE_BYTES", default_value_t = 65536)]
    max_message_bytes: usize,

    /// People a room holds at most.
    #[arg(long, env = "CONFAB_ROOM_CAPACITY", default_value_t = 8)]
    room_capacity: usize,

    /// Connections held at most; more are refused with `server-full`.
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,

    /// Connections one IP address may hold at once (people behind one NAT share an address).
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    max_connections_per_ip: usize,

    /// Rooms open at most; a join that would open another is refused with `server-full`.
    #[arg(long, env = "CONFAB_MAX_ROOMS", default_value_t = 10_000)]
    max_rooms: usize,

    /// Messages a client may send per second, sustained (token bucket).
    #[arg(long, env = "CONFAB_RATE", default_value_t = 50.0)]
    rate: f64,

    /// Messages a client may send in a burst (token bucket size).
    #[arg(long, env = "CONFAB_RATE_BURST", default_value_t = 200.0)]
    rate_burst: f64,

    /// Errors a client may cause in a burst (refilled one a second) before it is disconnected.
    #[arg(long, env = "CONFAB_ERROR_BUDGET", default_value_t = 20.0)]
    error_budget: f64,

    /// Seconds a client has to finish the TLS and WebSocket handshake.
    #[arg(long, env = "CONFAB_HANDSHAKE_TIMEOUT", default_value_t = 10.0)]
    handshake_timeout: f64,

    /// Seconds a connection may stay without joining a room.
    #[arg(long, env = "CONFAB_JOIN_TIMEOUT", default_value_t = 30.0)]
    join_timeout: f64,

    /// Seconds between the server's pings.
    #[arg(long, env = "CONFAB_PING_INTERVAL", default_value_t = 20.0)]
    ping_interval: f64,

    /// Seconds without any frame from a client (pongs included) before it is disconnected.
    #[arg(long, env = "CONFAB_IDLE_TIMEOUT", default_value_t = 60.0)]
    idle_timeout: f64,

    /// Messages queued for one client at most. A signal that does not fit is dropped and its
    /// sender told; a client that cannot take a room update is disconnected (it resyncs when
    /// it joins again); a client that does not read for 10 s is disconnected.
    #[arg(long, env = "CONFAB_OUTBOUND_QUEUE", default_value_t = 64)]
    outbound_queue: usize,

    /// Bytes queued for one client at most (as --outbound-queue, in bytes).
    #[arg(long, env = "CONFAB_OUTBOUND_QUEUE_BYTES", default_value_t = 262_144)]
    outbound_queue_bytes: usize,

    /// Connections in their TLS/HTTP handshake at once; more wait in the listen backlog.
    #[arg(long, env = "CONFAB_MAX_HANDSHAKES", default_value_t = 128)]
    max_handshakes: usize,

    /// Connections one address (IPv4 address, IPv6 /64) may have in their handshake at
    /// once; more are closed at once.
    #[arg(long, env = "CONFAB_MAX_HANDSHAKES_PER_IP", default_value_t = 16)]
    max_handshakes_per_ip: usize,

    /// Largest HTTP request head (request line and headers), in bytes; larger get 431.
    #[arg(long, env = "CONFAB_MAX_HEADER_BYTES", default_value_t = 16_384)]
    max_header_bytes: usize,

    /// Joins one connection may make per second, sustained (token bucket).
    #[arg(long, env = "CONFAB_JOIN_RATE", default_value_t = 0.5)]
    join_rate: f64,

    /// Joins one connection may make in a burst.
    #[arg(long, env = "CONFAB_JOIN_BURST", default_value_t = 5.0)]
    join_burst: f64,

    /// Joins one address (IPv4 address, IPv6 /64) may make per second, over all its
    /// connections.
    #[arg(long, env = "CONFAB_ADDRESS_JOIN_RATE", default_value_t = 2.0)]
    address_join_rate: f64,

    /// Joins one address may make in a burst.
    #[arg(long, env = "CONFAB_ADDRESS_JOIN_BURST", default_value_t = 60.0)]
    address_join_burst: f64,

    /// Wrong room passwords one address may give before it must wait (1 s, doubling with
    /// each further failure, up to 5 minutes; forgotten after 15 quiet minutes).
    #[arg(long, env = "CONFAB_PASSWORD_FAILURES", default_value_t = 5)]
    password_failures: u32,

    /// Wrong passwords one room may receive before it stops answering addresses it does not
    /// know (with the same backoff); its own people's addresses still get in.
    #[arg(long, env = "CONFAB_ROOM_PASSWORD_FAILURES", default_value_t = 20)]
    room_password_failures: u32,

    /// A browser origin allowed to open /ws besides the server's own pages (repeat, or
    /// separate with commas), e.g. https://example.com. Clients without an Origin header
    /// (native apps) are always allowed.
    #[arg(
        long = "allow-origin",
        env = "CONFAB_ALLOW_ORIGINS",
        value_delimiter = ','
    )]
    allow_origins: Vec<String>,

    /// Serve the same rooms as every other node using this Redis (redis://HOST:PORT): any
    /// number of nodes behind a load balancer. Without it, this server stands alone.
    #[arg(long, env = "CONFAB_REDIS")]
    redis: Option<String>,

    /// Calls in this server's rooms go through this SFU, a Janus VideoRoom reached over its
    /// WebSocket API (janus+ws://HOST:PORT or janus+wss://…): rooms larger than a mesh.
    /// `welcome` hands each room's members its VideoRoom room and PIN.
    #[arg(long, env = "CONFAB_SFU")]
    sfu: Option<String>,

    /// The secret the SFU's rooms and PINs are derived from. Every node of a cluster needs the
    /// same one; without it, a random one per start (fine for a single node).
    #[arg(
        long,
        env = "CONFAB_SFU_SECRET",
        requires = "sfu",
        hide_env_values = true
    )]
    sfu_secret: Option<String>,

    /// Janus VideoRoom's admin_key (janus.plugin.videoroom.jcfg), if it has one: this server
    /// makes each room's VideoRoom room with it. Set it in Janus and here, so that only this
    /// server can make rooms (a room member can only join).
    #[arg(
        long,
        env = "CONFAB_SFU_ADMIN_KEY",
        requires = "sfu",
        hide_env_values = true
    )]
    sfu_admin_key: Option<String>,

    /// With --sfu: a call goes through the SFU once its room holds more than this many people
    /// (a running call moves over when the room grows past it); 0: every call.
    #[arg(long, env = "CONFAB_SFU_ABOVE", default_value_t = confab_protocol::DEFAULT_SFU_ABOVE)]
    sfu_above: u32,

    /// FOR AUTOMATED TESTS ONLY: lets the web client act on its test URL parameters (join,
    /// call, accept, source, size), so that a link can join and call without anyone
    /// pressing a button. Never on a server people use.
    #[arg(long, hide_short_help = true)]
    test_hooks: bool,
}

fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{name} must be a positive number of seconds, not {v}"))
}

impl Args {
    fn sfu(&self) -> anyhow::Result<Option<confab_rooms::Sfu>> {
        let Some(url) = &self.sfu else {
            return Ok(None);
        };
        confab_protocol::check_sfu_url(url).map_err(|e| anyhow::anyhow!("--sfu: {e}"))?;
        let secret = match &self.sfu_secret {
            Some(s) => {
                anyhow::ensure!(s.len() >= 16, "--sfu-secret must be at least 16 characters");
                s.clone()
            }
            None => {
                if self.redis.is_some() {
                    tracing::warn!(
                        "--sfu without --sfu-secret: this node's SFU rooms differ from the \
                         other nodes'; give every node the same --sfu-secret"
                    );
                }
                format!("{:032x}", rand::random::<u128>())
            }
        };
        anyhow::ensure!(self.sfu_above <= 1000, "--sfu-above must be at most 1000");
        Ok(Some(confab_rooms::Sfu {
            url: url.clone(),
            secret,
            above: self.sfu_above,
            admin_key: self.sfu_admin_key.clone(),
        }))
    }

    fn config(&self) -> anyhow::Result<SignalConfig> {
        anyhow::ensure!(self.rate > 0.0, "--rate must be above zero");
        anyhow::ensure!(self.rate_burst >= 1.0, "--rate-burst must be at least 1");
        anyhow::ensure!(
            self.error_budget >= 1.0,
            "--error-budget must be at least 1"
        );
        anyhow::ensure!(
            self.room_capacity >= 2,
            "--room-capacity must be at least 2"
        );
        anyhow::ensure!(self.join_rate > 0.0, "--join-rate must be above zero");
        anyhow::ensure!(self.join_burst >= 1.0, "--join-burst must be at least 1");
        anyhow::ensure!(
            self.address_join_rate > 0.0,
            "--address-join-rate must be above zero"
        );
        anyhow::ensure!(
            self.address_join_burst >= 1.0,
            "--address-join-burst must be at least 1"
        );
        anyhow::ensure!(
            self.password_failures >= 1 && self.room_password_failures >= 1,
            "--password-failures and --room-password-failures must be at least 1"
        );
        Ok(SignalConfig {
            redis: self.redis.clone(),
            listen: self.listen,
            limits: RoomLimits {
                room_capacity: self.room_capacity,
                max_connections: self.max_connections,
                max_rooms: self.max_rooms,
                max_message_bytes: self.max_message_bytes,
                rate_per_sec: self.rate,
                rate_burst: self.rate_burst,
                join_timeout: secs("join-timeout", self.join_timeout)?,
                error_budget: self.error_budget,
                join_burst: self.join_burst,
                join_per_sec: self.join_rate,
                address_join_burst: self.address_join_burst,
                address_join_per_sec: self.address_join_rate,
                password_failures_per_address: self.password_failures,
                password_failures_per_room: self.room_password_failures,
                sfu: self.sfu()?,
                ..RoomLimits::default()
            },
            handshake_timeout: secs("handshake-timeout", self.handshake_timeout)?,
            ping_interval: secs("ping-interval", self.ping_interval)?,
            idle_timeout: secs("idle-timeout", self.idle_timeout)?,
            outbound_queue: self.outbound_queue,
            outbound_queue_bytes: self.outbound_queue_bytes,
            max_handshakes: self.max_handshakes,
            max_handshakes_per_ip: self.max_handshakes_per_ip,
            max_header_bytes: self.max_header_bytes,
            allowed_origins: self.allow_origins.clone(),
            test_hooks: self.test_hooks,
            write_timeout: Duration::from_secs(10),
            max_connections_per_ip: self.max_connections_per_ip,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            ..SignalConfig::default()
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = args.config()?;
    if config.test_hooks {
        tracing::warn!(
            "--test-hooks: the web client may join and call from its URL alone; for automated tests only"
        );
    }
    let server = SignalServer::start(config).await?;
    // One line on stdout that scripts (and `cargo xtask`) can read.
    println!("confab-signal listening on {}", server.ws_url());
    confab_signal::shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
