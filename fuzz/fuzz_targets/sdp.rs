//! What the engine reads out of a remote session description and remote candidates itself
//! (`confab_call::sdp`, `negotiation`, `verify`). The first byte picks the rules (polite or
//! not, loopback and mDNS allowed or not, offer or answer); the rest is the description, whose
//! `a=candidate:` lines are also fed as trickled candidates. Nothing may panic, the limits must
//! hold, and what is extracted must stay within its stated bounds.
#![no_main]

use confab_call::negotiation::{
    check_candidate, CandidateDecision, Decision, Negotiation, NegotiationRules,
};
use confab_call::sdp::{self, SdpLimits};
use confab_call::verify::{self, Role, Verifier};
use confab_protocol::call::{IceCandidate, SdpType, SessionDescription};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let rules = NegotiationRules {
        allow_loopback: flags & 1 != 0,
        allow_mdns: flags & 2 != 0,
        max_remote_candidates: 8,
        ..NegotiationRules::default()
    };
    let polite = flags & 4 != 0;
    let kind = if flags & 8 != 0 {
        SdpType::Answer
    } else {
        SdpType::Offer
    };

    // The section count and its limits.
    let limits = SdpLimits::default();
    if let Ok(s) = sdp::check(text, &limits) {
        assert!(text.len() <= limits.max_bytes);
        assert!(s.audio <= limits.max_audio && s.video <= limits.max_video);
        assert!(s.application <= limits.max_application);
        assert!(s.audio + s.video + s.application > 0);
    }
    let codecs = sdp::video_codecs(text);
    assert!(codecs.len() <= 32);
    for c in &codecs {
        assert!(!c.is_empty() && c.len() <= 32 && *c == c.to_ascii_uppercase());
    }
    if let Some(fp) = verify::fingerprint(text) {
        assert!(fp.starts_with("sha-256 ") && fp.len() <= 128);
    }

    // Candidates, one per line, and through a negotiation.
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_prefix("a=").unwrap_or(l))
        .filter(|l| l.starts_with("candidate:"))
        .collect();
    for l in &lines {
        if check_candidate(l, &rules).is_ok() {
            // A candidate taken points at a usable address (or an mDNS name, when allowed).
            // Read as check_candidate (and webrtc-rs) read it: fields after "candidate:",
            // whatever whitespace follows the colon.
            let body = l.strip_prefix("candidate:").unwrap_or(l);
            let address = body.split_ascii_whitespace().nth(4).expect("well formed");
            match address.parse::<std::net::IpAddr>() {
                Ok(ip) => {
                    assert!(!ip.is_unspecified() && !ip.is_multicast(), "{l}");
                    assert!(rules.allow_loopback || !ip.is_loopback(), "{l}");
                }
                Err(_) => assert!(rules.allow_mdns && address.ends_with(".local"), "{l}"),
            }
        }
    }
    let mut n = Negotiation::new(rules, polite, 0);
    if flags & 16 != 0 {
        n.offer_started();
        n.offer_set();
    }
    let mut taken = 0;
    let candidate = |n: &mut Negotiation, l: &str, taken: &mut usize| {
        let c = IceCandidate {
            candidate: l.to_owned(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
            username_fragment: None,
        };
        match n.on_remote_candidate(c) {
            CandidateDecision::Add(_) | CandidateDecision::Queued => *taken += 1,
            CandidateDecision::Dropped(_) => {}
        }
    };
    let half = lines.len() / 2;
    for l in &lines[..half] {
        candidate(&mut n, l, &mut taken);
    }
    let d = SessionDescription {
        kind,
        sdp: text.to_owned(),
    };
    if let Ok(Decision::Apply { rollback }) = n.on_remote_description(&d, 0) {
        if rollback {
            n.rolled_back();
        }
        let waiting = n.remote_applied(kind);
        assert!(waiting.len() <= rules.max_remote_candidates);
        if kind == SdpType::Offer {
            n.answer_set();
        }
    }
    for l in &lines[half..] {
        candidate(&mut n, l, &mut taken);
    }
    assert!(
        taken <= rules.max_remote_candidates,
        "{taken} candidates taken in one negotiation"
    );

    // The verification exchange with this description on the other side, and its lines as
    // the other side's commit and reveal.
    let ours = "v=0\r\na=fingerprint:sha-256 AA:BB\r\n";
    for role in [Role::Offerer, Role::Answerer] {
        let mut v = Verifier::new(role, "00112233".into(), "binding".into());
        let _ = v.local_description(ours);
        let _ = v.remote_description(text);
        let mut parts = text.split('\n');
        let _ = v.signal(
            parts.next().map(str::to_owned),
            parts.next().map(str::to_owned),
        );
        let _ = v.signal(
            parts.next().map(str::to_owned),
            parts.next().map(str::to_owned),
        );
        if let Some(Ok(code)) = v.result() {
            assert_eq!(code.len(), 7, "{code}");
        }
    }
});
