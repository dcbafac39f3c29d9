//! A network lab for Confab's tests and benchmarks.
//!
//! [`Pipe`]: a pure, seeded, time-fed impairment state machine ([`Impairment`]: random and
//! bursty loss, delay with jitter, a rate cap with a bounded queue, a blackout).

pub mod impair;

pub use impair::{Burst, Counters, DropReason, Impairment, InvalidImpairment, Pipe};
