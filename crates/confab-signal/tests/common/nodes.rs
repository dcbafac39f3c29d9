//! One server, or several nodes sharing rooms through a real `redis-server`: the checks in
//! `checks` run on either.

use super::{Client, WAIT};
use confab_signal::{SignalConfig, SignalServer};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (free when asked; taken by whoever binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port`.
pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` on a free port, stopped on drop.
pub struct Redis {
    pub child: Child,
    pub port: u16,
    pub url: String,
}

impl Redis {
    /// On a free port. Tests start servers in parallel: a port free when picked may be taken
    /// before `redis-server` binds it, so it tries again until the server answering is its own.
    pub fn start() -> Redis {
        for _ in 0..10 {
            let port = free_port();
            if let Some(child) = Self::spawn(port) {
                return Redis {
                    child,
                    port,
                    url: format!("redis://127.0.0.1:{port}"),
                };
            }
        }
        panic!("redis-server did not start on any of 10 free ports");
    }

    /// Starts it again (empty) on the same port after it was killed.
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.port).expect("redis-server restarts on its port");
    }

    /// `redis-server` on `port`, once it answers there with its own process id.
    fn spawn(port: u16) -> Option<Child> {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (cargo xtask test installs it)");
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return None; // the port was taken
            }
            if server_pid(port) == Some(child.id()) {
                return Some(child);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

/// The process id of the Redis answering on `port`, if one does.
fn server_pid(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    tcp.write_all(b"INFO server\r\n").ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("process_id:") {
        let n = tcp.read(&mut buf).ok().filter(|n| *n > 0)?;
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    let line = text.lines().find(|l| l.starts_with("process_id:"))?;
    line["process_id:".len()..].trim().parse().ok()
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node joined to the Redis at `url`, once it has reached it.
pub async fn cluster_node(url: &str, tweak: impl FnOnce(&mut SignalConfig)) -> SignalServer {
    let url = url.to_owned();
    let server = super::start(move |c| {
        tweak(c);
        c.redis = Some(url);
    })
    .await;
    let deadline = Instant::now() + WAIT;
    while server.store_healthy() != Some(true) {
        assert!(Instant::now() < deadline, "the node never reached redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

/// The servers a check runs on: one alone, or `n` nodes of one cluster.
pub struct Nodes {
    pub servers: Vec<SignalServer>,
    /// Dropped after the servers (fields drop in order).
    pub redis: Option<Redis>,
}

impl Nodes {
    /// One server without Redis when `n` is 1; otherwise a fresh Redis and `n` nodes on it.
    /// Every node gets the same limits (`tweak`), as a cluster must.
    pub async fn start(n: usize, tweak: impl Fn(&mut SignalConfig)) -> Nodes {
        assert!(n > 0);
        if n == 1 {
            return Nodes {
                servers: vec![super::start(tweak).await],
                redis: None,
            };
        }
        let redis = Redis::start();
        let mut servers = Vec::with_capacity(n);
        for _ in 0..n {
            servers.push(cluster_node(&redis.url, &tweak).await);
        }
        Nodes {
            servers,
            redis: Some(redis),
        }
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Node `i`, counting round: client `i` of a check goes to node `i % n`.
    pub fn node(&self, i: usize) -> &SignalServer {
        &self.servers[i % self.servers.len()]
    }

    /// A client connected to node `i % n`.
    pub async fn client(&self, i: usize) -> Client {
        Client::connect(self.node(i)).await
    }
}
