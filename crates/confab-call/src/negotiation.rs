//! Perfect negotiation for one link, without the peer connection: which remote descriptions to
//! apply (and whether to roll our own offer back first), which remote candidates to add, queue or
//! drop, and the limits on what the other side may send. The link task asks before every step and
//! reports what it did; this module keeps the signaling state.
//!
//! Rules (`docs/protocol.md`, rules 3 and 5): candidates are queued until the remote description
//! is set; on an offer collision the impolite side (smaller id) ignores the other's offer and the
//! polite side rolls back and answers; an answer we did not ask for is ignored.

use crate::sdp::{self, SdpError, SdpLimits};
use crate::Millis;
use confab_protocol::call::{IceCandidate, SdpType, SessionDescription};
use std::net::IpAddr;

/// What the other side may send on one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiationRules {
    pub sdp: SdpLimits,
    /// Remote candidates taken per negotiation (the count starts again with every remote
    /// description, so that ICE restarts get their own).
    pub max_remote_candidates: usize,
    /// Accept candidates on loopback addresses (only when we gather on loopback ourselves:
    /// otherwise a peer could point our connectivity checks at this machine's own services).
    pub allow_loopback: bool,
    /// Accept `.local` host names (multicast DNS on).
    pub allow_mdns: bool,
    /// Remote offers: a burst of this many…
    pub offer_burst: u32,
    /// …then one per this interval.
    pub offer_every_ms: Millis,
}

impl Default for NegotiationRules {
    fn default() -> Self {
        NegotiationRules {
            sdp: SdpLimits::default(),
            max_remote_candidates: 64,
            allow_loopback: false,
            allow_mdns: true,
            offer_burst: 5,
            offer_every_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signaling {
    Stable,
    HaveLocalOffer,
    HaveRemoteOffer,
}

/// What to do with a remote description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Apply it (after rolling back our own offer if `rollback`); answer it if it is an offer.
    Apply { rollback: bool },
    /// Leave it: a colliding offer on the impolite side, or an answer we did not ask for.
    Ignore(&'static str),
}

/// Why a remote description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Sdp(#[from] SdpError),
    #[error("the other side sends offers too fast")]
    TooManyOffers,
}

/// What to do with a remote candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateDecision {
    Add(IceCandidate),
    /// Kept until the remote description is set.
    Queued,
    Dropped(&'static str),
}

#[derive(Debug, Clone)]
pub struct Negotiation {
    rules: NegotiationRules,
    polite: bool,
    signaling: Signaling,
    making_offer: bool,
    remote_set: bool,
    pending: Vec<IceCandidate>,
    candidates_taken: usize,
    offer_tokens: f64,
    offer_clock: Millis,
}

impl Negotiation {
    pub fn new(rules: NegotiationRules, polite: bool, now: Millis) -> Self {
        Negotiation {
            rules,
            polite,
            signaling: Signaling::Stable,
            making_offer: false,
            remote_set: false,
            pending: Vec::new(),
            candidates_taken: 0,
            offer_tokens: rules.offer_burst as f64,
            offer_clock: now,
        }
    }

    pub fn signaling(&self) -> Signaling {
        self.signaling
    }

    pub fn remote_set(&self) -> bool {
        self.remote_set
    }

    // ----- our offers ------------------------------------------------------------------------

    /// We start making an offer (create + set local).
    pub fn offer_started(&mut self) {
        self.making_offer = true;
    }

    /// Our offer is the local description now.
    pub fn offer_set(&mut self) {
        self.signaling = Signaling::HaveLocalOffer;
    }

    /// Done making the offer (sent or failed).
    pub fn offer_finished(&mut self) {
        self.making_offer = false;
    }

    // ----- remote descriptions ---------------------------------------------------------------

    /// A remote description arrived: checked against the limits, then decided on.
    pub fn on_remote_description(
        &mut self,
        d: &SessionDescription,
        now: Millis,
    ) -> Result<Decision, Refused> {
        sdp::check(&d.sdp, &self.rules.sdp)?;
        match d.kind {
            SdpType::Offer => {
                if !self.take_offer_token(now) {
                    return Err(Refused::TooManyOffers);
                }
                let collision = self.making_offer || self.signaling != Signaling::Stable;
                if collision && !self.polite {
                    return Ok(Decision::Ignore(
                        "a colliding offer (we are the impolite side)",
                    ));
                }
                Ok(Decision::Apply {
                    rollback: collision && self.signaling == Signaling::HaveLocalOffer,
                })
            }
            SdpType::Answer => {
                if self.signaling != Signaling::HaveLocalOffer {
                    return Ok(Decision::Ignore("an answer we did not ask for"));
                }
                Ok(Decision::Apply { rollback: false })
            }
        }
    }

    /// Our own offer was rolled back.
    pub fn rolled_back(&mut self) {
        self.signaling = Signaling::Stable;
    }

    /// The remote description is set. Returns the candidates that waited for it.
    pub fn remote_applied(&mut self, kind: SdpType) -> Vec<IceCandidate> {
        self.signaling = match kind {
            SdpType::Offer => Signaling::HaveRemoteOffer,
            SdpType::Answer => Signaling::Stable,
        };
        self.remote_set = true;
        self.candidates_taken = self.pending.len();
        std::mem::take(&mut self.pending)
    }

    /// Our answer is the local description now.
    pub fn answer_set(&mut self) {
        self.signaling = Signaling::Stable;
    }

    fn take_offer_token(&mut self, now: Millis) -> bool {
        let elapsed = now.saturating_sub(self.offer_clock) as f64;
        self.offer_clock = self.offer_clock.max(now);
        let per_ms = 1.0 / self.rules.offer_every_ms.max(1) as f64;
        self.offer_tokens =
            (self.offer_tokens + elapsed * per_ms).min(self.rules.offer_burst as f64);
        if self.offer_tokens >= 1.0 {
            self.offer_tokens -= 1.0;
            true
        } else {
            false
        }
    }

    // ----- remote candidates -----------------------------------------------------------------

    pub fn on_remote_candidate(&mut self, c: IceCandidate) -> CandidateDecision {
        if let Err(why) = check_candidate(&c.candidate, &self.rules) {
            return CandidateDecision::Dropped(why);
        }
        if self.candidates_taken >= self.rules.max_remote_candidates {
            return CandidateDecision::Dropped("too many candidates");
        }
        self.candidates_taken += 1;
        if self.remote_set {
            CandidateDecision::Add(c)
        } else {
            self.pending.push(c);
            CandidateDecision::Queued
        }
    }
}

/// Checks a candidate line (`candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY ADDRESS PORT typ
/// TYPE …`): well formed, and an address worth sending connectivity checks to.
pub fn check_candidate(line: &str, rules: &NegotiationRules) -> Result<(), &'static str> {
    if line.len() > 512 {
        return Err("an oversized candidate");
    }
    let body = line.strip_prefix("candidate:").unwrap_or(line);
    let fields: Vec<&str> = body.split_ascii_whitespace().take(8).collect();
    let [_foundation, component, transport, priority, address, port, typ, kind] = fields[..] else {
        return Err("a malformed candidate");
    };
    let well_formed = component.parse::<u16>().is_ok()
        && matches!(transport.to_ascii_lowercase().as_str(), "udp" | "tcp")
        && priority.parse::<u32>().is_ok()
        && port.parse::<u16>().is_ok_and(|p| p != 0)
        && typ == "typ"
        && matches!(kind, "host" | "srflx" | "prflx" | "relay");
    if !well_formed {
        return Err("a malformed candidate");
    }
    match address.parse::<IpAddr>() {
        Ok(ip) => address_allowed(ip, rules),
        Err(_) if rules.allow_mdns && is_mdns_name(address) => Ok(()),
        Err(_) => Err("a candidate with a host name"),
    }
}

fn is_mdns_name(name: &str) -> bool {
    name.len() <= 253
        && name.strip_suffix(".local").is_some_and(|h| {
            !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn address_allowed(ip: IpAddr, rules: &NegotiationRules) -> Result<(), &'static str> {
    if ip.is_unspecified() {
        return Err("an unspecified address");
    }
    if ip.is_multicast() {
        return Err("a multicast address");
    }
    if ip.is_loopback() && !rules.allow_loopback {
        return Err("a loopback address");
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        return Err("a link-local address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> SessionDescription {
        SessionDescription {
            kind: SdpType::Offer,
            sdp: "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
                .into(),
        }
    }

    fn answer() -> SessionDescription {
        SessionDescription {
            kind: SdpType::Answer,
            ..offer()
        }
    }

    fn cand(addr: &str) -> IceCandidate {
        IceCandidate {
            candidate: format!("candidate:1 1 udp 2130706431 {addr} 50000 typ host"),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
            username_fragment: None,
        }
    }

    #[test]
    fn offer_collision_the_impolite_side_ignores() {
        let mut n = Negotiation::new(NegotiationRules::default(), false, 0);
        n.offer_started();
        n.offer_set();
        n.offer_finished();
        assert!(matches!(
            n.on_remote_description(&offer(), 0),
            Ok(Decision::Ignore(_))
        ));
        // Its own offer goes on: the answer to it is applied.
        assert_eq!(
            n.on_remote_description(&answer(), 0),
            Ok(Decision::Apply { rollback: false })
        );
        n.remote_applied(SdpType::Answer);
        assert_eq!(n.signaling(), Signaling::Stable);
    }

    #[test]
    fn offer_collision_the_polite_side_rolls_back_and_answers() {
        let mut n = Negotiation::new(NegotiationRules::default(), true, 0);
        n.offer_started();
        n.offer_set();
        n.offer_finished();
        assert_eq!(
            n.on_remote_description(&offer(), 0),
            Ok(Decision::Apply { rollback: true })
        );
        n.rolled_back();
        n.remote_applied(SdpType::Offer);
        assert_eq!(n.signaling(), Signaling::HaveRemoteOffer);
        n.answer_set();
        assert_eq!(n.signaling(), Signaling::Stable);
        // A later offer (an ICE restart) without collision: no rollback.
        assert_eq!(
            n.on_remote_description(&offer(), 10_000),
            Ok(Decision::Apply { rollback: false })
        );
    }

    #[test]
    fn offer_while_making_one_collides_even_before_it_is_set() {
        let mut n = Negotiation::new(NegotiationRules::default(), true, 0);
        n.offer_started();
        assert_eq!(
            n.on_remote_description(&offer(), 0),
            Ok(Decision::Apply { rollback: false }),
            "nothing to roll back yet"
        );
        let mut i = Negotiation::new(NegotiationRules::default(), false, 0);
        i.offer_started();
        assert!(matches!(
            i.on_remote_description(&offer(), 0),
            Ok(Decision::Ignore(_))
        ));
    }

    #[test]
    fn unasked_answer_is_ignored() {
        let mut n = Negotiation::new(NegotiationRules::default(), true, 0);
        assert!(matches!(
            n.on_remote_description(&answer(), 0),
            Ok(Decision::Ignore(_))
        ));
    }

    #[test]
    fn candidates_wait_for_the_remote_description() {
        let mut n = Negotiation::new(NegotiationRules::default(), true, 0);
        assert_eq!(
            n.on_remote_candidate(cand("192.0.2.7")),
            CandidateDecision::Queued
        );
        assert_eq!(
            n.on_remote_candidate(cand("198.51.100.1")),
            CandidateDecision::Queued
        );
        let waiting = n.remote_applied(SdpType::Offer);
        assert_eq!(waiting, vec![cand("192.0.2.7"), cand("198.51.100.1")]);
        assert_eq!(
            n.on_remote_candidate(cand("203.0.113.9")),
            CandidateDecision::Add(cand("203.0.113.9"))
        );
    }

    #[test]
    fn candidate_flood_is_capped() {
        let mut n = Negotiation::new(NegotiationRules::default(), true, 0);
        for i in 0..64 {
            assert_eq!(
                n.on_remote_candidate(cand(&format!("192.0.2.{i}"))),
                CandidateDecision::Queued
            );
        }
        assert!(matches!(
            n.on_remote_candidate(cand("192.0.2.200")),
            CandidateDecision::Dropped(_)
        ));
        assert_eq!(n.remote_applied(SdpType::Offer).len(), 64);
        // A new negotiation (ICE restart) gets its own allowance.
        n.answer_set();
        assert!(n.on_remote_description(&offer(), 5_000).is_ok());
        n.remote_applied(SdpType::Offer);
        assert!(matches!(
            n.on_remote_candidate(cand("192.0.2.201")),
            CandidateDecision::Add(_)
        ));
    }

    #[test]
    fn candidates_pointing_at_this_machine_or_nowhere_are_dropped() {
        let rules = NegotiationRules::default();
        for bad in [
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "::",
            "224.0.0.251",
            "ff02::fb",
            "169.254.1.1",
            "fe80::1",
            "255.255.255.255",
            "evil.example.com",
            "a b.local",
        ] {
            let c = format!("candidate:1 1 udp 2130706431 {bad} 50000 typ host");
            assert!(
                check_candidate(&c, &rules).is_err(),
                "{bad} must be dropped"
            );
        }
        for good in [
            "192.0.2.1",
            "10.0.0.5",
            "2001:db8::1",
            "0a1b2c3d-1111-2222.local",
        ] {
            let c = format!("candidate:1 1 udp 2130706431 {good} 50000 typ host");
            assert_eq!(check_candidate(&c, &rules), Ok(()), "{good}");
        }
        let loopback_ok = NegotiationRules {
            allow_loopback: true,
            ..rules
        };
        assert!(check_candidate(
            "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
            &loopback_ok
        )
        .is_ok());
        for malformed in [
            "",
            "candidate:",
            "candidate:1 1 udp 2130706431 192.0.2.1 0 typ host",
            "candidate:1 1 sctp 1 192.0.2.1 5 typ host",
            "candidate:1 1 udp x 192.0.2.1 5 typ host",
            "candidate:1 1 udp 1 192.0.2.1 5 type host",
            "candidate:1 1 udp 1 192.0.2.1 5 typ bogus",
        ] {
            assert!(check_candidate(malformed, &rules).is_err(), "{malformed:?}");
        }
        assert!(check_candidate(&"a".repeat(600), &rules).is_err());
    }

    #[test]
    fn offer_flood_is_rate_limited() {
        let mut n = Negotiation::new(NegotiationRules::default(), true, 0);
        let mut applied = 0;
        for _ in 0..20 {
            if n.on_remote_description(&offer(), 0).is_ok() {
                applied += 1;
                n.remote_applied(SdpType::Offer);
                n.answer_set();
            }
        }
        assert_eq!(applied, 5, "a burst of five");
        assert_eq!(
            n.on_remote_description(&offer(), 1_000),
            Err(Refused::TooManyOffers)
        );
        assert!(n.on_remote_description(&offer(), 2_100).is_ok());
    }

    #[test]
    fn oversized_or_overfull_descriptions_are_refused() {
        let mut n = Negotiation::new(NegotiationRules::default(), true, 0);
        let mut d = offer();
        d.sdp = format!("v=0\r\n{}", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n".repeat(3));
        assert!(matches!(
            n.on_remote_description(&d, 0),
            Err(Refused::Sdp(SdpError::TooManySections { .. }))
        ));
    }
}
