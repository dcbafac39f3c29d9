//! A network lab for Confab's tests and benchmarks.
//!
//! - [`NetLab`]: an impaired network for in-process peer connections. Its
//!   [`runtime`](NetLab::runtime) goes into `PeerConnectionBuilder::with_runtime`; every UDP
//!   socket the connection opens then receives through a seeded [`Pipe`] with random and
//!   bursty loss, delay with jitter, a rate cap with a bounded queue, and a switchable
//!   blackout ([`Impairment`]), changeable at run time, with [`Counters`].
//! - [`kernel`]: a kernel-level lab for processes: network namespaces, veth pairs, tbf rate
//!   caps, nftables loss and blackouts, a masquerading NAT between two homes and an
//!   "internet", and a coturn TURN server there. Needs root; everything is torn down on drop.
//! - [`janus`]: a real Janus (VideoRoom over WebSocket) on loopback, for calls through an SFU.
//! - [`tcp`]: a TCP relay whose connections can be frozen (a path that died without a word).
//!
//! Traffic stays on loopback and inside the namespaces the lab made itself.

pub mod harness;
pub mod impair;
pub mod janus;
pub mod kernel;
pub mod runtime;
pub mod tcp;

pub use impair::{
    Burst, Counters, DropReason, Impairment, ImpairmentSyntax, InvalidImpairment, LoseHandshake,
    Pipe,
};
pub use runtime::{NetLab, NetlabError};
