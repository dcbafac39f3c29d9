//! Which of our addresses the system would send from to reach a far address, and a watch on
//! that answer. When it changes (an interface went down, another network took over, a VPN
//! came up) the path a connection was made on is gone, seconds before anything on it times
//! out. Asking costs a few system calls and sends nothing: a UDP socket is connected to the
//! far address (a route lookup) and asked for its own address. It works the same on Linux,
//! macOS and Windows, and needs no watch on the system's interfaces: the engine asks once a
//! second per connection.
//!
//! A watch compares the answer with the one it started from, never with the connection's
//! own address: policy routing may pick another source for a fresh socket, but it picks it
//! the same way until the network changes.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// The address the system would send from to reach `far` now.
pub fn source_for(far: IpAddr) -> io::Result<IpAddr> {
    let any: IpAddr = match far {
        IpAddr::V4(_) => IpAddr::from([0u8; 4]),
        IpAddr::V6(_) => IpAddr::from([0u16; 8]),
    };
    let s = UdpSocket::bind(SocketAddr::new(any, 0))?;
    // The port only has to be valid: nothing is sent.
    s.connect(SocketAddr::new(far, 9))?;
    Ok(s.local_addr()?.ip())
}

/// The source a connection to `far` started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteWatch {
    far: IpAddr,
    base: IpAddr,
}

impl RouteWatch {
    /// A watch on the way to `far`, or none when there is no way to it now.
    pub fn new(far: IpAddr) -> Option<RouteWatch> {
        source_for(far).ok().map(|base| RouteWatch { far, base })
    }

    pub fn far(&self) -> IpAddr {
        self.far
    }

    /// The system would now send from another address, or could not send at all.
    pub fn moved(&self) -> bool {
        moved(self.base, source_for(self.far))
    }
}

fn moved(base: IpAddr, now: io::Result<IpAddr>) -> bool {
    now.map_or(true, |src| src != base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_address_is_reached_from_loopback_and_stays_put() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(source_for(lo).unwrap(), lo);
        let w = RouteWatch::new(lo).unwrap();
        assert_eq!(w.far(), lo);
        assert!(!w.moved());
    }

    #[test]
    fn another_source_or_no_route_is_a_move() {
        let a = IpAddr::from([10, 0, 1, 2]);
        let b = IpAddr::from([10, 0, 3, 2]);
        assert!(!moved(a, Ok(a)));
        assert!(moved(a, Ok(b)));
        let unreachable = io::Error::new(io::ErrorKind::NetworkUnreachable, "no route");
        assert!(moved(a, Err(unreachable)));
    }
}
