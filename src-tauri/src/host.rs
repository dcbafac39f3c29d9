//! "Host on this computer": the signaling server (the same code as `confab-signal`) run inside
//! the app for people on the same network. Hosting is state the window is sent (the `hosting`
//! event), not state it keeps: it starts with the host command and ends with Stop, leaving the
//! room, or quitting.

use crate::invite;
use confab_signal::{SignalConfig, SignalServer};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

/// What the window shows while hosting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hosting {
    /// `IP:PORT` others on the network type in.
    pub address: String,
    /// The WebSocket URL of the server.
    pub server: String,
    pub room: String,
    /// `confab://join?…`, for another Confab.
    pub link: String,
    /// For this app itself (loopback).
    #[serde(skip)]
    pub local: String,
}

/// A room name nobody guesses: `confab-` and 16 base-32 characters (80 bits from the OS's
/// random source).
pub fn random_room() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bits: u128 = rand::random();
    let name: String = (0..16)
        .map(|i| ALPHABET[((bits >> (5 * i)) & 31) as usize] as char)
        .collect();
    format!("confab-{name}")
}

/// The address others on the LAN reach this computer at (the interface of the default route;
/// nothing is sent).
pub fn lan_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    match probe() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

/// The limits of a server for one network: a few rooms and people, not the internet.
pub fn lan_config(port: u16) -> SignalConfig {
    SignalConfig {
        listen: SocketAddr::from(([0, 0, 0, 0], port)),
        ..SignalConfig::lan()
    }
}

#[derive(Default)]
pub struct Host {
    /// The running server. The lock is only held to look or swap, never across a start or
    /// a shutdown.
    running: Mutex<Option<(SignalServer, Hosting)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("Could not open a port to host on ({0}).")]
    NoPort(String),
}

impl Host {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(SignalServer, Hosting)>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn current(&self) -> Option<Hosting> {
        self.lock().as_ref().map(|(_, h)| h.clone())
    }

    /// Starts hosting `room` (or says where it already runs, for that room).
    pub async fn start(&self, room: &str) -> Result<Hosting, HostError> {
        if let Some(h) = self.current() {
            return Ok(for_room(h, room));
        }
        // The usual port if it is free, any port otherwise.
        let mut last_error = String::new();
        let mut server = None;
        for port in [8787u16, 0] {
            match SignalServer::start(lan_config(port)).await {
                Ok(s) => {
                    server = Some(s);
                    break;
                }
                Err(e) => {
                    tracing::info!("hosting on port {port}: {e}");
                    last_error = e.to_string();
                }
            }
        }
        let server = server.ok_or(HostError::NoPort(last_error))?;
        let port = server.local_addr().port();
        let address = SocketAddr::new(lan_ip(), port).to_string();
        let url = format!("ws://{address}/ws");
        let hosting = Hosting {
            link: invite::make(&url, room),
            address,
            server: url,
            room: room.to_owned(),
            local: format!("ws://127.0.0.1:{port}/ws"),
        };
        let raced = {
            let mut slot = self.lock();
            match slot.as_ref() {
                Some((_, h)) => Some((server, for_room(h.clone(), room))),
                None => {
                    *slot = Some((server, hosting.clone()));
                    None
                }
            }
        };
        // Another start won the race: ours goes.
        if let Some((ours, theirs)) = raced {
            ours.shutdown(Duration::from_secs(1)).await;
            return Ok(theirs);
        }
        Ok(hosting)
    }

    /// Stops hosting (everyone on it is told "going away"). Returns whether it was running.
    pub async fn stop(&self) -> bool {
        let taken = self.lock().take();
        match taken {
            Some((server, _)) => {
                server.shutdown(Duration::from_secs(2)).await;
                true
            }
            None => false,
        }
    }
}

fn for_room(mut h: Hosting, room: &str) -> Hosting {
    if h.room != room {
        h.room = room.to_owned();
        h.link = invite::make(&h.server, room);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_rooms_are_long_valid_and_different() {
        let a = random_room();
        let b = random_room();
        assert_ne!(a, b);
        assert_eq!(a.len(), "confab-".len() + 16, "16 x 5 bits = 80 bits");
        confab_protocol::validate_room(&a).unwrap();
    }

    #[tokio::test]
    async fn hosting_starts_once_and_stops() {
        let host = Host::default();
        let h = host.start("r1").await.unwrap();
        let again = host.start("r2").await.unwrap();
        assert_eq!(h.server, again.server, "one server");
        assert_eq!(again.room, "r2");
        assert!(again.link.contains("room=r2"));
        assert!(host.current().is_some());
        assert!(host.stop().await);
        assert!(host.current().is_none());
        assert!(!host.stop().await);
    }
}
