//! The impairment logic: a pure, seeded, time-fed state machine that decides which datagram
//! is dropped and when each surviving one is delivered. No sockets, no clock, no tasks: the
//! caller says what time it is. The socket wrapper in [`crate::runtime`] is its thin shell.
//!
//! Stages, in the order a datagram meets them:
//! 0. **scripted handshake loss** — [`LoseHandshake`], for tests of DTLS retransmission (only
//!    for datagrams offered by their bytes, [`Pipe::scripted_drop`]);
//! 1. **blackout** — everything is dropped while it is on;
//! 2. **random loss** — each datagram independently with probability `loss`;
//! 3. **bursty loss** — a Gilbert-Elliott channel ([`Burst`]);
//! 4. **rate cap** — a bottleneck serialising datagrams at `rate_bps` behind a bounded FIFO
//!    queue; a datagram that would wait longer than `queue_ms` (or find more than
//!    `queue_bytes` queued ahead of it) is tail-dropped;
//! 5. **delay and jitter** — `delay_ms` plus a uniform jitter in `[-jitter_ms, +jitter_ms]`;
//!    datagrams keep their order unless `reorder` is set.
//!
//! Every datagram draws the same number of random numbers whatever happens to it, so a given
//! seed and a given sequence of datagrams always give the same drops and the same delays.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

/// Gilbert-Elliott bursty loss: a two-state Markov chain advanced once per datagram.
///
/// In the good state nothing is lost (random loss is the separate `loss` knob); in the bad
/// state a datagram is lost with probability `loss_in_bad`. The mean bad-state run is `1 / r`
/// datagrams and the long-run share of time in the bad state is `p / (p + r)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// Probability of moving good → bad, per datagram.
    pub p: f64,
    /// Probability of moving bad → good, per datagram.
    pub r: f64,
    /// Loss probability while in the bad state.
    pub loss_in_bad: f64,
}

impl Burst {
    /// The expected long-run loss rate this channel gives.
    pub fn mean_loss(&self) -> f64 {
        if self.p + self.r == 0.0 {
            0.0
        } else {
            self.p / (self.p + self.r) * self.loss_in_bad
        }
    }
}

/// Scripted loss for tests of the DTLS handshake: the first `count` datagrams a socket
/// receives that carry a handshake message of type `msg_type` in a plaintext (epoch 0) DTLS
/// record are dropped. Type 2, ServerHello, opens the server's flight 4; type 16,
/// ClientKeyExchange, is in the client's flight 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoseHandshake {
    pub msg_type: u8,
    pub count: u32,
}

impl LoseHandshake {
    /// Whether `datagram` holds a plaintext DTLS handshake record of this type (RFC 6347 4.1:
    /// a 13-byte record header, content type 22, epoch 0; the handshake header's first byte is
    /// the message type). Every record of the datagram is looked at.
    pub fn matches(&self, datagram: &[u8]) -> bool {
        let mut rest = datagram;
        while rest.len() >= 14 {
            let length = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
            if rest[0] == 22 && rest[3..5] == [0, 0] && rest[13] == self.msg_type {
                return true;
            }
            rest = rest.get(13 + length..).unwrap_or_default();
        }
        false
    }
}

/// Network conditions. `Impairment::default()` is a clean network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Independent random loss probability per datagram, `0.0..=1.0`.
    pub loss: f64,
    /// Bursty (Gilbert-Elliott) loss on top of `loss`.
    pub burst: Option<Burst>,
    /// One-way delay added to every datagram.
    pub delay_ms: u32,
    /// Uniform jitter: each datagram's delay is `delay_ms ± jitter_ms` (never below zero).
    pub jitter_ms: u32,
    /// Bottleneck rate in bits per second (IP payload bytes × 8); `None` is no cap.
    pub rate_bps: Option<u64>,
    /// The bottleneck queue holds at most this many milliseconds of traffic at `rate_bps`.
    pub queue_ms: u32,
    /// An extra byte limit on the bottleneck queue (`None`: only `queue_ms` applies).
    pub queue_bytes: Option<u64>,
    /// Let jitter reorder datagrams (off: a datagram never overtakes an earlier one).
    pub reorder: bool,
    /// 100 % loss while set.
    pub blackout: bool,
    /// Seed of the random numbers behind loss and jitter.
    pub seed: u64,
    /// Scripted loss of DTLS handshake datagrams (tests of handshake retransmission).
    pub lose_handshake: Option<LoseHandshake>,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            loss: 0.0,
            burst: None,
            delay_ms: 0,
            jitter_ms: 0,
            rate_bps: None,
            queue_ms: 200,
            queue_bytes: None,
            reorder: false,
            blackout: false,
            seed: 1,
            lose_handshake: None,
        }
    }
}

/// Conditions that make no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidImpairment {
    #[error("{what} must be a probability between 0 and 1, not {value}")]
    NotAProbability { what: &'static str, value: f64 },
    #[error("the rate cap must be at least 8000 bit/s (one byte a millisecond), not {0}")]
    RateTooLow(u64),
    #[error("jitter ({jitter_ms} ms) and delay ({delay_ms} ms) must each be at most 60000 ms")]
    DelayTooLong { delay_ms: u32, jitter_ms: u32 },
}

impl Impairment {
    /// A clean network with this seed.
    pub fn seeded(seed: u64) -> Self {
        Impairment {
            seed,
            ..Default::default()
        }
    }

    /// Checks that every knob is in range.
    pub fn validate(&self) -> Result<(), InvalidImpairment> {
        let prob = |what: &'static str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(InvalidImpairment::NotAProbability { what, value })
            }
        };
        prob("loss", self.loss)?;
        if let Some(b) = self.burst {
            prob("burst.p", b.p)?;
            prob("burst.r", b.r)?;
            prob("burst.loss_in_bad", b.loss_in_bad)?;
        }
        if let Some(rate) = self.rate_bps {
            if rate < 8000 {
                return Err(InvalidImpairment::RateTooLow(rate));
            }
        }
        if self.delay_ms > 60_000 || self.jitter_ms > 60_000 {
            return Err(InvalidImpairment::DelayTooLong {
                delay_ms: self.delay_ms,
                jitter_ms: self.jitter_ms,
            });
        }
        Ok(())
    }
}

/// Why a written impairment is not one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImpairmentSyntax {
    #[error("`{0}`: expected KEY=VALUE (loss=5%, delay=50ms, jitter=5ms, rate=1mbit, queue=200ms, seed=7)")]
    NotAPair(String),
    #[error("unknown impairment `{0}` (have: loss, delay, jitter, rate, queue, seed)")]
    UnknownKey(String),
    #[error("`{key}={value}`: {why}")]
    BadValue {
        key: String,
        value: String,
        why: &'static str,
    },
    #[error(transparent)]
    Invalid(#[from] InvalidImpairment),
}

impl std::str::FromStr for Impairment {
    type Err = ImpairmentSyntax;

    /// Conditions as people write them on a command line: `clean`, or comma-separated
    /// `loss=5%` (or `0.05`), `delay=50ms` (one way), `jitter=5ms`, `rate=1mbit` (`kbit`,
    /// `mbit` or bit/s), `queue=200ms`, `seed=N`. Checked like [`Impairment::validate`].
    fn from_str(text: &str) -> Result<Self, ImpairmentSyntax> {
        let mut cfg = Impairment::default();
        if text.trim() == "clean" {
            return Ok(cfg);
        }
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| ImpairmentSyntax::NotAPair(part.into()))?;
            let bad = |why| ImpairmentSyntax::BadValue {
                key: key.into(),
                value: value.into(),
                why,
            };
            let ms = || {
                value
                    .strip_suffix("ms")
                    .unwrap_or(value)
                    .parse::<u32>()
                    .map_err(|_| bad("a whole number of milliseconds, e.g. 50ms"))
            };
            match key {
                "loss" => {
                    cfg.loss = match value.strip_suffix('%') {
                        Some(pct) => pct.parse::<f64>().map(|p| p / 100.0),
                        None => value.parse::<f64>(),
                    }
                    .ok()
                    .filter(|p| p.is_finite())
                    .ok_or_else(|| bad("a percentage (5%) or a probability (0.05)"))?;
                }
                "delay" => cfg.delay_ms = ms()?,
                "jitter" => cfg.jitter_ms = ms()?,
                "queue" => cfg.queue_ms = ms()?,
                "rate" => {
                    let lower = value.to_ascii_lowercase();
                    let (digits, unit) = if let Some(d) = lower.strip_suffix("mbit") {
                        (d, 1_000_000.0)
                    } else if let Some(d) = lower.strip_suffix("kbit") {
                        (d, 1_000.0)
                    } else {
                        (lower.as_str(), 1.0)
                    };
                    let bps = digits
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v > 0.0)
                        .ok_or_else(|| bad("a rate such as 1mbit, 300kbit or 500000"))?;
                    cfg.rate_bps = Some((bps * unit) as u64);
                }
                "seed" => {
                    cfg.seed = value.parse().map_err(|_| bad("a whole number"))?;
                }
                other => return Err(ImpairmentSyntax::UnknownKey(other.into())),
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Blackout,
    /// Random (`loss`) or bursty (`burst`) loss.
    Loss,
    /// Tail drop at the bottleneck queue, or the pipe's hard limit on datagrams in flight.
    Queue,
}

/// What happened to the datagrams offered so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams and bytes offered to the pipe (what the sender sent).
    pub packets: u64,
    pub bytes: u64,
    /// Datagrams and bytes handed on to the receiver.
    pub delivered_packets: u64,
    pub delivered_bytes: u64,
    pub dropped_blackout: u64,
    /// Random loss and bursty loss.
    pub dropped_loss: u64,
    /// Of `dropped_loss`, the ones the Gilbert-Elliott channel took.
    pub dropped_burst: u64,
    pub dropped_queue: u64,
    /// Dropped by [`LoseHandshake`].
    pub dropped_scripted: u64,
    /// Datagrams held back (by delay, jitter or the rate queue) rather than passed on at once.
    pub delayed: u64,
}

impl Counters {
    /// Adds `other` to `self`, field by field.
    pub fn add(&mut self, other: &Counters) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.delivered_packets += other.delivered_packets;
        self.delivered_bytes += other.delivered_bytes;
        self.dropped_blackout += other.dropped_blackout;
        self.dropped_loss += other.dropped_loss;
        self.dropped_burst += other.dropped_burst;
        self.dropped_queue += other.dropped_queue;
        self.dropped_scripted += other.dropped_scripted;
        self.delayed += other.delayed;
    }

    /// Dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_blackout + self.dropped_loss + self.dropped_queue + self.dropped_scripted
    }
}

/// SplitMix64: tiny, seedable, and the same sequence on every platform and version.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Hard limits on what one pipe holds, whatever the conditions (a long delay at a high rate
/// would otherwise hold without end).
pub const MAX_HELD_PACKETS: usize = 20_000;
pub const MAX_HELD_BYTES: usize = 32 << 20;

#[derive(Debug)]
struct Held<P> {
    at: Instant,
    seq: u64,
    len: usize,
    payload: P,
}

impl<P> PartialEq for Held<P> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<P> Eq for Held<P> {}
impl<P> PartialOrd for Held<P> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<P> Ord for Held<P> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One direction of one link: datagrams go in with [`Pipe::offer`] and come out, at their
/// time, from [`Pipe::pop_due`]. `P` is whatever the caller carries along (the datagram).
#[derive(Debug)]
pub struct Pipe<P> {
    cfg: Impairment,
    rng: Rng,
    /// Gilbert-Elliott state: in the bad state.
    bad: bool,
    /// When the bottleneck has sent everything queued so far.
    link_free_at: Option<Instant>,
    /// Delivery time of the last datagram accepted (keeps order when `reorder` is off).
    last_at: Option<Instant>,
    /// In delivery order when `reorder` is off.
    fifo: VecDeque<Held<P>>,
    /// Earliest first when `reorder` is on.
    heap: BinaryHeap<Reverse<Held<P>>>,
    held_bytes: usize,
    seq: u64,
    counters: Counters,
    /// Datagrams dropped so far by the current [`LoseHandshake`] rule.
    scripted: u32,
}

impl<P> Pipe<P> {
    /// A pipe with these conditions. Call [`Impairment::validate`] first: out-of-range
    /// probabilities are clamped here.
    pub fn new(cfg: Impairment) -> Self {
        Pipe {
            cfg,
            rng: Rng(cfg.seed),
            bad: false,
            link_free_at: None,
            last_at: None,
            fifo: VecDeque::new(),
            heap: BinaryHeap::new(),
            held_bytes: 0,
            seq: 0,
            counters: Counters::default(),
            scripted: 0,
        }
    }

    pub fn impairment(&self) -> &Impairment {
        &self.cfg
    }

    /// New conditions from now on. Datagrams already in flight keep their delivery times;
    /// the random sequence restarts only when the seed changes.
    pub fn set(&mut self, cfg: Impairment) {
        if cfg.seed != self.cfg.seed {
            self.rng = Rng(cfg.seed);
        }
        if cfg.reorder != self.cfg.reorder {
            // Move what is held to the other queue; both are in delivery order when drained.
            let mut all: Vec<Held<P>> = self.fifo.drain(..).collect();
            all.extend(self.heap.drain().map(|Reverse(h)| h));
            all.sort();
            if cfg.reorder {
                self.heap.extend(all.into_iter().map(Reverse));
            } else {
                self.fifo.extend(all);
            }
        }
        if cfg.rate_bps.is_none() {
            self.link_free_at = None;
        }
        if cfg.lose_handshake != self.cfg.lose_handshake {
            self.scripted = 0;
        }
        self.cfg = cfg;
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Datagrams waiting for their delivery time.
    pub fn held(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }

    /// Stage 0: whether the [`LoseHandshake`] rule takes this datagram (then it is counted as
    /// offered and dropped, and must not be [`offer`](Self::offer)ed). No random numbers are
    /// drawn, so the other stages see the same sequence with or without the rule.
    pub fn scripted_drop(&mut self, datagram: &[u8]) -> bool {
        let Some(rule) = self.cfg.lose_handshake else {
            return false;
        };
        if self.scripted >= rule.count || !rule.matches(datagram) {
            return false;
        }
        self.scripted += 1;
        let c = &mut self.counters;
        c.packets += 1;
        c.bytes += datagram.len() as u64;
        c.dropped_scripted += 1;
        true
    }

    /// Offers a datagram of `len` bytes arriving at `now`. `Ok(at)`: it will come out of
    /// [`pop_due`](Self::pop_due) at `at`; `Err`: it is gone.
    pub fn offer(&mut self, now: Instant, len: usize, payload: P) -> Result<Instant, DropReason> {
        let c = &mut self.counters;
        c.packets += 1;
        c.bytes += len as u64;
        // Always four draws, so the sequence does not depend on what happened before.
        let u_loss = self.rng.unit();
        let u_state = self.rng.unit();
        let u_bad = self.rng.unit();
        let u_jitter = self.rng.unit();

        if self.cfg.blackout {
            c.dropped_blackout += 1;
            return Err(DropReason::Blackout);
        }
        if u_loss < self.cfg.loss {
            c.dropped_loss += 1;
            return Err(DropReason::Loss);
        }
        if let Some(b) = self.cfg.burst {
            self.bad = if self.bad {
                u_state >= b.r
            } else {
                u_state < b.p
            };
            if self.bad && u_bad < b.loss_in_bad {
                c.dropped_loss += 1;
                c.dropped_burst += 1;
                return Err(DropReason::Loss);
            }
        } else {
            self.bad = false;
        }
        let held = self.fifo.len() + self.heap.len();
        if held >= MAX_HELD_PACKETS || self.held_bytes + len > MAX_HELD_BYTES {
            c.dropped_queue += 1;
            return Err(DropReason::Queue);
        }

        // The bottleneck: FIFO at `rate_bps`, tail drop past the queue limit.
        let mut depart = now;
        if let Some(rate) = self.cfg.rate_bps {
            let start = self.link_free_at.map_or(now, |free| free.max(now));
            let wait = start - now;
            let queued_bytes = wait.as_nanos() * u128::from(rate) / 8_000_000_000;
            let over_ms = wait > Duration::from_millis(u64::from(self.cfg.queue_ms));
            let over_bytes = self
                .cfg
                .queue_bytes
                .is_some_and(|limit| queued_bytes + len as u128 > u128::from(limit));
            if over_ms || over_bytes {
                c.dropped_queue += 1;
                return Err(DropReason::Queue);
            }
            let tx_ns = len as u128 * 8_000_000_000 / u128::from(rate);
            let tx = Duration::from_nanos(u64::try_from(tx_ns).unwrap_or(u64::MAX));
            depart = start + tx;
            self.link_free_at = Some(depart);
        }

        // Propagation delay and jitter.
        let jitter = i64::from(self.cfg.jitter_ms);
        let offset_us = if jitter == 0 {
            0
        } else {
            // Uniform over [-jitter, +jitter] ms, in microseconds.
            ((u_jitter * 2.0 - 1.0) * (jitter * 1000) as f64).round() as i64
        };
        let delay_us = (i64::from(self.cfg.delay_ms) * 1000 + offset_us).max(0) as u64;
        let mut at = depart + Duration::from_micros(delay_us);
        if !self.cfg.reorder {
            if let Some(last) = self.last_at {
                at = at.max(last);
            }
        }
        self.last_at = Some(self.last_at.map_or(at, |l| l.max(at)));
        if at > now {
            c.delayed += 1;
        }
        let held = Held {
            at,
            seq: self.seq,
            len,
            payload,
        };
        self.seq += 1;
        self.held_bytes += len;
        if self.cfg.reorder {
            self.heap.push(Reverse(held));
        } else {
            // `at` is never earlier than the back's, so the queue stays sorted.
            self.fifo.push_back(held);
        }
        Ok(at)
    }

    /// When the next datagram is due, if any is held.
    pub fn next_due(&self) -> Option<Instant> {
        let f = self.fifo.front().map(|h| h.at);
        let h = self.heap.peek().map(|Reverse(h)| h.at);
        match (f, h) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next datagram whose time has come.
    pub fn pop_due(&mut self, now: Instant) -> Option<P> {
        let from_fifo = match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(Reverse(h))) => f <= h,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let held = if from_fifo {
            if self.fifo.front()?.at > now {
                return None;
            }
            self.fifo.pop_front()?
        } else {
            if self.heap.peek()?.0.at > now {
                return None;
            }
            self.heap.pop()?.0
        };
        self.held_bytes -= held.len;
        self.counters.delivered_packets += 1;
        self.counters.delivered_bytes += held.len as u64;
        Some(held.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impairments_read_as_written_and_refuse_nonsense_in_words() {
        let i: Impairment = "loss=5%, delay=50ms,jitter=5,rate=1mbit,queue=300ms,seed=9"
            .parse()
            .unwrap();
        assert_eq!(
            (
                i.loss,
                i.delay_ms,
                i.jitter_ms,
                i.rate_bps,
                i.queue_ms,
                i.seed
            ),
            (0.05, 50, 5, Some(1_000_000), 300, 9)
        );
        assert_eq!("loss=0.1".parse::<Impairment>().unwrap().loss, 0.1);
        assert_eq!(
            "rate=300kbit".parse::<Impairment>().unwrap().rate_bps,
            Some(300_000)
        );
        assert_eq!("clean".parse::<Impairment>(), Ok(Impairment::default()));
        for (text, says) in [
            ("loss", "expected KEY=VALUE"),
            ("lose=5%", "unknown impairment `lose`"),
            ("loss=lots", "a percentage"),
            ("loss=150%", "between 0 and 1"),
            ("loss=NaN", "a percentage"),
            ("delay=-5ms", "milliseconds"),
            ("delay=90000ms", "at most 60000"),
            ("rate=fast", "a rate such as"),
            ("rate=1kbit", "at least 8000"),
            ("seed=x", "a whole number"),
        ] {
            let e = text.parse::<Impairment>().unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Offers `n` datagrams of `len` bytes every `gap`, draining as it goes; returns for each
    /// datagram the delay the pipe gave it (None: dropped).
    fn run(cfg: Impairment, n: usize, len: usize, gap: Duration) -> Vec<Option<Duration>> {
        let t0 = Instant::now();
        let mut pipe = Pipe::new(cfg);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let now = t0 + gap * i as u32;
            while pipe.pop_due(now).is_some() {}
            out.push(pipe.offer(now, len, i).ok().map(|at| at - now));
        }
        out
    }

    fn loss_rate(v: &[Option<Duration>]) -> f64 {
        v.iter().filter(|x| x.is_none()).count() as f64 / v.len() as f64
    }

    #[test]
    fn scripted_handshake_loss_takes_the_first_matching_datagrams_only() {
        // A ChangeCipherSpec record (20), then a plaintext ServerHello (22, type 2).
        let mut flight = vec![20, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1];
        flight.extend([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 2, 0, 4, 2, 0, 0, 0]);
        let mut encrypted = flight.clone();
        encrypted[17] = 1; // the ServerHello record's epoch 1: not plaintext
        let rule = LoseHandshake {
            msg_type: 2,
            count: 2,
        };
        assert!(rule.matches(&flight));
        assert!(!rule.matches(&encrypted));
        assert!(!rule.matches(&flight[..20]), "a cut-off record is not read");
        assert!(!LoseHandshake {
            msg_type: 16,
            ..rule
        }
        .matches(&flight));

        let mut pipe = Pipe::<()>::new(Impairment {
            lose_handshake: Some(rule),
            ..Impairment::seeded(5)
        });
        let verdicts: Vec<bool> = [&flight, &encrypted, &flight, &flight]
            .iter()
            .map(|d| pipe.scripted_drop(d))
            .collect();
        assert_eq!(verdicts, [true, false, true, false]);
        let c = pipe.counters();
        assert_eq!((c.packets, c.dropped_scripted, c.dropped()), (2, 2, 2));
    }

    #[test]
    fn clean_pipe_delivers_everything_at_once() {
        let v = run(Impairment::default(), 1000, 1200, ms(1));
        assert!(v.iter().all(|d| d.is_some_and(|d| d < ms(1))), "{v:?}");
    }

    #[test]
    fn random_loss_rate_within_tolerance() {
        for (seed, loss) in [(1, 0.01), (2, 0.05), (3, 0.10), (4, 0.30)] {
            let n = 20_000;
            let cfg = Impairment {
                loss,
                ..Impairment::seeded(seed)
            };
            let got = loss_rate(&run(cfg, n, 100, ms(1)));
            // 4 standard deviations of a binomial.
            let tol = 4.0 * (loss * (1.0 - loss) / n as f64).sqrt();
            assert!((got - loss).abs() < tol, "asked {loss}, got {got}");
        }
    }

    #[test]
    fn same_seed_same_drops_other_seed_other_drops() {
        let cfg = Impairment {
            loss: 0.2,
            jitter_ms: 20,
            delay_ms: 30,
            ..Impairment::seeded(42)
        };
        let a = run(cfg, 2000, 100, ms(1));
        let b = run(cfg, 2000, 100, ms(1));
        let c = run(Impairment { seed: 43, ..cfg }, 2000, 100, ms(1));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    /// Lengths of the runs of consecutive losses.
    fn loss_runs(v: &[Option<Duration>]) -> Vec<usize> {
        let mut runs = Vec::new();
        let mut cur = 0;
        for d in v {
            if d.is_none() {
                cur += 1;
            } else if cur > 0 {
                runs.push(cur);
                cur = 0;
            }
        }
        if cur > 0 {
            runs.push(cur);
        }
        runs
    }

    #[test]
    fn gilbert_elliott_bursts_have_the_expected_length_and_rate() {
        // Mean burst 1/r = 5 datagrams, bad 1/(1+p/r)... p/(p+r) = 0.01/0.21 ≈ 4.8 % loss.
        let burst = Burst {
            p: 0.01,
            r: 0.2,
            loss_in_bad: 1.0,
        };
        let cfg = Impairment {
            burst: Some(burst),
            ..Impairment::seeded(7)
        };
        let v = run(cfg, 100_000, 100, ms(1));
        let rate = loss_rate(&v);
        assert!(
            (rate - burst.mean_loss()).abs() < 0.01,
            "loss {rate} vs {}",
            burst.mean_loss()
        );
        let runs = loss_runs(&v);
        let mean = runs.iter().sum::<usize>() as f64 / runs.len() as f64;
        assert!((mean - 5.0).abs() < 0.5, "mean burst {mean}");
        // Bursty, not random: at the same loss rate independent loss gives runs of ~1.05.
        let random = run(
            Impairment {
                loss: rate,
                ..Impairment::seeded(7)
            },
            100_000,
            100,
            ms(1),
        );
        let r = loss_runs(&random);
        let random_mean = r.iter().sum::<usize>() as f64 / r.len() as f64;
        assert!(random_mean < 1.2, "random mean run {random_mean}");
        // Counted as loss, and as burst loss.
        let mut pipe = Pipe::new(cfg);
        let t = Instant::now();
        for i in 0..10_000u32 {
            let _ = pipe.offer(t, 100, i);
        }
        let c = pipe.counters();
        assert!(
            c.dropped_burst > 0 && c.dropped_burst == c.dropped_loss,
            "{c:?}"
        );
    }

    #[test]
    fn rate_cap_limits_throughput_to_the_rate() {
        // 3 Mbit/s offered into a 1 Mbit/s cap for 5 s.
        let cfg = Impairment {
            rate_bps: Some(1_000_000),
            queue_ms: 100,
            ..Impairment::seeded(1)
        };
        let t0 = Instant::now();
        let mut pipe = Pipe::new(cfg);
        let mut delivered = Vec::new();
        let gap = Duration::from_micros(3200); // 1200 B every 3.2 ms = 3 Mbit/s
        for i in 0..(5_000_000 / 3200) {
            let now = t0 + gap * i;
            while pipe.pop_due(now).is_some() {
                delivered.push(now);
            }
            let _ = pipe.offer(now, 1200, ());
        }
        while let Some(at) = pipe.next_due() {
            pipe.pop_due(at);
            delivered.push(at);
        }
        let span = *delivered.last().unwrap() - delivered[0];
        let rate = (delivered.len() - 1) as f64 * 1200.0 * 8.0 / span.as_secs_f64();
        assert!(
            (950_000.0..=1_001_000.0).contains(&rate),
            "delivered at {rate} bit/s"
        );
        let c = pipe.counters();
        // About two thirds tail-dropped.
        let dropped = c.dropped_queue as f64 / c.packets as f64;
        assert!((0.6..0.7).contains(&dropped), "{c:?}");
        assert_eq!(c.dropped_loss + c.dropped_blackout, 0);
    }

    #[test]
    fn rate_cap_under_the_rate_adds_only_serialisation() {
        let cfg = Impairment {
            rate_bps: Some(1_000_000),
            ..Impairment::seeded(1)
        };
        // 1000 B every 10 ms = 0.8 Mbit/s: each takes 8 ms to serialise, never queues.
        let v = run(cfg, 500, 1000, ms(10));
        assert!(v.iter().all(|d| *d == Some(ms(8))), "{:?}", &v[..5]);
    }

    #[test]
    fn queue_limit_in_ms_bounds_the_wait() {
        let cfg = Impairment {
            rate_bps: Some(800_000), // 100 bytes a ms
            queue_ms: 50,
            ..Impairment::seeded(1)
        };
        // A burst of 100 datagrams of 1000 B at the same instant: each takes 10 ms.
        let t = Instant::now();
        let mut pipe = Pipe::new(cfg);
        let verdicts: Vec<_> = (0..100).map(|i| pipe.offer(t, 1000, i)).collect();
        let accepted: Vec<_> = verdicts.iter().filter_map(|v| v.ok()).collect();
        // Waits of 0, 10, .., 50 ms are allowed: six datagrams.
        assert_eq!(accepted.len(), 6, "{verdicts:?}");
        assert_eq!(*accepted.last().unwrap() - t, ms(60));
        assert!(verdicts[6..].iter().all(|v| *v == Err(DropReason::Queue)));
        assert_eq!(pipe.counters().dropped_queue, 94);
    }

    #[test]
    fn queue_limit_in_bytes_bounds_the_backlog() {
        let cfg = Impairment {
            rate_bps: Some(800_000),
            queue_ms: 10_000,
            queue_bytes: Some(3000),
            ..Impairment::seeded(1)
        };
        let t = Instant::now();
        let mut pipe = Pipe::new(cfg);
        let ok = (0..10).filter(|i| pipe.offer(t, 1000, *i).is_ok()).count();
        // 0, 1000 and 2000 bytes ahead fit with this one; 3000 + 1000 does not.
        assert_eq!(ok, 3);
        // Once the bottleneck has drained, there is room again.
        assert!(pipe.offer(t + ms(100), 1000, 99).is_ok());
    }

    #[test]
    fn jitter_stays_within_bounds_and_never_reorders() {
        let cfg = Impairment {
            delay_ms: 50,
            jitter_ms: 20,
            ..Impairment::seeded(9)
        };
        let v: Vec<Duration> = run(cfg, 5000, 200, ms(2))
            .into_iter()
            .map(|d| d.expect("no loss configured"))
            .collect();
        assert!(v.iter().all(|d| *d >= ms(30) && *d <= ms(70)), "bounds");
        // In order: each delivery (send time + delay) is no earlier than the one before.
        let at: Vec<Duration> = v
            .iter()
            .enumerate()
            .map(|(i, d)| ms(2) * i as u32 + *d)
            .collect();
        assert!(at.windows(2).all(|w| w[0] <= w[1]), "reordered");
        // Keeping order holds back a datagram behind a slower one before it; with datagrams
        // further apart than the jitter range nothing is held back, and the delays spread
        // over the whole range.
        let spread: Vec<Duration> = run(cfg, 2000, 200, ms(50)).into_iter().flatten().collect();
        let min = spread.iter().min().unwrap();
        let max = spread.iter().max().unwrap();
        assert!(*min >= ms(30) && *min < ms(31), "{min:?}");
        assert!(*max <= ms(70) && *max > ms(69), "{max:?}");
    }

    #[test]
    fn jitter_reorders_only_when_asked() {
        let cfg = Impairment {
            delay_ms: 50,
            jitter_ms: 20,
            reorder: true,
            ..Impairment::seeded(9)
        };
        let v: Vec<Duration> = run(cfg, 5000, 200, ms(2))
            .into_iter()
            .map(|d| d.expect("no loss configured"))
            .collect();
        assert!(v.iter().all(|d| *d >= ms(30) && *d <= ms(70)));
        let at: Vec<Duration> = v
            .iter()
            .enumerate()
            .map(|(i, d)| ms(2) * i as u32 + *d)
            .collect();
        let overtaken = at.windows(2).filter(|w| w[0] > w[1]).count();
        assert!(overtaken > 100, "only {overtaken} reordered");
    }

    #[test]
    fn pop_due_releases_in_time_order_and_never_early() {
        let cfg = Impairment {
            delay_ms: 40,
            jitter_ms: 30,
            reorder: true,
            loss: 0.1,
            ..Impairment::seeded(11)
        };
        let t0 = Instant::now();
        let mut pipe = Pipe::new(cfg);
        let mut due = Vec::new();
        for i in 0..1000u32 {
            if let Ok(at) = pipe.offer(t0 + ms(u64::from(i)), 300, i) {
                due.push((at, i));
            }
        }
        assert_eq!(pipe.held(), due.len());
        let mut got = Vec::new();
        let mut now = t0;
        while pipe.held() > 0 {
            while let Some(i) = pipe.pop_due(now) {
                let at = due.iter().find(|d| d.1 == i).expect("offered").0;
                assert!(at <= now, "released early");
                got.push((at, i));
            }
            now += ms(1);
        }
        due.sort();
        assert_eq!(got, due);
        assert_eq!(pipe.counters().delivered_packets, due.len() as u64);
    }

    #[test]
    fn fixed_delay_is_exact() {
        let cfg = Impairment {
            delay_ms: 120,
            ..Impairment::seeded(3)
        };
        let v = run(cfg, 100, 500, ms(5));
        assert!(v.iter().all(|d| *d == Some(ms(120))));
    }

    #[test]
    fn blackout_drops_everything_until_lifted() {
        let t = Instant::now();
        let mut pipe = Pipe::new(Impairment::seeded(5));
        assert!(pipe.offer(t, 100, 0).is_ok());
        pipe.set(Impairment {
            blackout: true,
            ..*pipe.impairment()
        });
        assert!((1..100).all(|i| pipe.offer(t, 100, i) == Err(DropReason::Blackout)));
        pipe.set(Impairment {
            blackout: false,
            ..*pipe.impairment()
        });
        assert!(pipe.offer(t, 100, 100).is_ok());
        let c = pipe.counters();
        assert_eq!((c.packets, c.dropped_blackout), (101, 99));
        assert_eq!(pipe.pop_due(t), Some(0));
        assert_eq!(pipe.pop_due(t), Some(100));
        assert_eq!(pipe.counters().delivered_packets, 2);
    }

    #[test]
    fn lifting_the_cap_ends_queueing() {
        let capped = Impairment {
            rate_bps: Some(100_000),
            queue_ms: 1000,
            ..Impairment::seeded(1)
        };
        let t = Instant::now();
        let mut pipe = Pipe::new(capped);
        for i in 0..5 {
            pipe.offer(t, 1250, i).expect("fits"); // 100 ms each
        }
        pipe.set(Impairment {
            rate_bps: None,
            ..capped
        });
        // Those in flight keep their times (up to 500 ms); a new one is not queued behind
        // them in the bottleneck, but is not delivered ahead of them either (no reordering).
        let at = pipe.offer(t + ms(10), 1250, 5).expect("accepted");
        assert_eq!(at - t, ms(500));
        let at = pipe.offer(t + ms(600), 1250, 6).expect("accepted");
        assert_eq!(at - t, ms(600));
    }

    #[test]
    fn hard_limit_on_held_datagrams() {
        let cfg = Impairment {
            delay_ms: 10_000,
            ..Impairment::seeded(1)
        };
        let t = Instant::now();
        let mut pipe = Pipe::new(cfg);
        let ok = (0..MAX_HELD_PACKETS + 10)
            .filter(|i| pipe.offer(t, 10, *i).is_ok())
            .count();
        assert_eq!(ok, MAX_HELD_PACKETS);
        assert_eq!(pipe.counters().dropped_queue, 10);
    }

    #[test]
    fn validate_refuses_nonsense() {
        assert!(Impairment::default().validate().is_ok());
        let bad = Impairment {
            loss: 1.5,
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(InvalidImpairment::NotAProbability { what: "loss", .. })
        ));
        let slow = Impairment {
            rate_bps: Some(10),
            ..Default::default()
        };
        assert_eq!(slow.validate(), Err(InvalidImpairment::RateTooLow(10)));
        let burst = Impairment {
            burst: Some(Burst {
                p: -0.1,
                r: 0.5,
                loss_in_bad: 1.0,
            }),
            ..Default::default()
        };
        assert!(burst.validate().is_err());
    }
}
