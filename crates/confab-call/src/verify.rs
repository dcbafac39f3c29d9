//! The verification code of one link: a short code both people read aloud, equal on both sides
//! exactly when both see each other's real DTLS certificate — different when anyone in the
//! middle (the signaling server included) substitutes one.
//!
//! A commitment keeps a man in the middle from grinding certificates until two short codes
//! match: the side that made the first offer sends `commit = H(fingerprint ":" random)` before
//! it sees anything of the other side's; the answering side then reveals its random in the
//! open, and only then does the offerer reveal its own. A middleman has to fix its values
//! towards one side before it learns the other side's, so two codes it did not choose match
//! only by chance (one in a million). The code covers both fingerprints, both randoms and the
//! link's nonces.
//!
//! Pure: randomness and fingerprints are arguments; `callcore.js` has the same rules
//! (`Verifier`), and both pass `scenarios/verify.json`.

use crate::core::hash;
use confab_protocol::call::CallSignal;
use serde::Serialize;

/// Why a link could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyError {
    #[error("the other side's reveal does not match what it committed to")]
    CommitMismatch,
    #[error("the other side revealed before committing")]
    NoCommit,
    #[error("a fingerprint is missing from the session descriptions")]
    NoFingerprint,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Made the first offer: commits first, reveals last.
    Offerer,
    Answerer,
}

#[derive(Debug, Clone)]
pub struct Verifier {
    role: Role,
    random: String,
    /// The link's nonces (bind the code to this call).
    binding: String,
    own_fp: Option<String>,
    their_fp: Option<String>,
    their_commit: Option<String>,
    their_random: Option<String>,
    committed: bool,
    revealed: bool,
    result: Option<Result<String, VerifyError>>,
}

/// `a=fingerprint:sha-256 AB:CD:…` of a session description, lower case (the first one).
pub fn fingerprint(sdp: &str) -> Option<String> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=fingerprint:"))
        .map(|v| v.trim().to_ascii_lowercase())
        .find(|v| v.starts_with("sha-256 ") && v.len() <= 128)
}

/// What the offerer commits to: `H(fingerprint ":" random)` (the fingerprint as
/// [`fingerprint`] returns it).
pub fn commitment(fingerprint: &str, random: &str) -> String {
    hash(&format!("{fingerprint}:{random}"))
}

/// Six digits, `123 456`.
fn short(digest_hex: &str) -> String {
    let n = u32::from_str_radix(&digest_hex[..8], 16).unwrap_or(0) % 1_000_000;
    format!("{:03} {:03}", n / 1000, n % 1000)
}

impl Verifier {
    /// `random`: 128 random bits as hex; `binding`: a value both ends know for this link.
    pub fn new(role: Role, random: String, binding: String) -> Self {
        Verifier {
            role,
            random,
            binding,
            own_fp: None,
            their_fp: None,
            their_commit: None,
            their_random: None,
            committed: false,
            revealed: false,
            result: None,
        }
    }

    /// The code, once known (or why there is none).
    pub fn result(&self) -> Option<&Result<String, VerifyError>> {
        self.result.as_ref()
    }

    /// Our local description is set: returns the commitment to send (offerer, first time),
    /// to be sent before the description itself.
    pub fn local_description(&mut self, sdp: &str) -> Option<CallSignal> {
        if self.own_fp.is_none() {
            self.own_fp = fingerprint(sdp);
        }
        if self.role == Role::Offerer && !self.committed {
            let fp = self.own_fp.as_ref()?;
            self.committed = true;
            return Some(CallSignal::Verify {
                commit: Some(commitment(fp, &self.random)),
                reveal: None,
            });
        }
        self.maybe_reveal()
    }

    /// A remote description was applied.
    pub fn remote_description(&mut self, sdp: &str) -> Option<CallSignal> {
        if self.their_fp.is_none() {
            self.their_fp = fingerprint(sdp);
        }
        self.maybe_reveal()
    }

    /// A `verify` signal from the other side.
    pub fn signal(&mut self, commit: Option<String>, reveal: Option<String>) -> Option<CallSignal> {
        if let Some(c) = commit {
            if self.role == Role::Answerer && self.their_commit.is_none() && c.len() <= 64 {
                self.their_commit = Some(c);
            }
        }
        if let Some(r) = reveal {
            if self.their_random.is_none() && r.len() <= 64 {
                self.their_random = Some(r);
            }
        }
        let out = self.maybe_reveal();
        self.finish();
        out
    }

    /// Reveals ours when it is our turn: the answerer as soon as it has the commitment and
    /// both fingerprints; the offerer once it has the answerer's random.
    fn maybe_reveal(&mut self) -> Option<CallSignal> {
        if self.revealed || self.own_fp.is_none() || self.their_fp.is_none() {
            return None;
        }
        let turn = match self.role {
            Role::Answerer => self.their_commit.is_some(),
            Role::Offerer => self.committed && self.their_random.is_some(),
        };
        if !turn {
            return None;
        }
        self.revealed = true;
        let out = Some(CallSignal::Verify {
            commit: None,
            reveal: Some(self.random.clone()),
        });
        self.finish();
        out
    }

    fn finish(&mut self) {
        if self.result.is_some() || !self.revealed {
            return;
        }
        let (Some(own_fp), Some(their_fp)) = (&self.own_fp, &self.their_fp) else {
            return;
        };
        let Some(their_random) = &self.their_random else {
            return;
        };
        if self.role == Role::Answerer {
            let Some(commit) = &self.their_commit else {
                self.result = Some(Err(VerifyError::NoCommit));
                return;
            };
            if commitment(their_fp, their_random) != *commit {
                self.result = Some(Err(VerifyError::CommitMismatch));
                return;
            }
        }
        let (ofp, afp, or, ar) = match self.role {
            Role::Offerer => (own_fp, their_fp, &self.random, their_random),
            Role::Answerer => (their_fp, own_fp, their_random, &self.random),
        };
        let digest = hash(&format!(
            "confab-sas:{}:{ofp}:{afp}:{or}:{ar}",
            self.binding
        ));
        self.result = Some(Ok(short(&digest)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(fp: &str) -> String {
        format!("v=0\r\nm=audio 9 X 111\r\na=fingerprint:sha-256 {fp}\r\n")
    }

    /// Runs the exchange between two verifiers; what each sends goes to the other.
    fn exchange(o: &mut Verifier, a: &mut Verifier, o_sdp: &str, a_sdp: &str) {
        let mut to_a = Vec::new();
        let mut to_o = Vec::new();
        to_a.extend(o.local_description(o_sdp));
        to_a.extend(o.local_description(o_sdp));
        to_o.extend(a.remote_description(o_sdp));
        to_o.extend(a.local_description(a_sdp));
        for s in to_a.drain(..) {
            if let CallSignal::Verify { commit, reveal } = s {
                to_o.extend(a.signal(commit, reveal));
            }
        }
        to_a.extend(o.remote_description(a_sdp));
        for _ in 0..3 {
            for s in std::mem::take(&mut to_o) {
                if let CallSignal::Verify { commit, reveal } = s {
                    to_a.extend(o.signal(commit, reveal));
                }
            }
            for s in std::mem::take(&mut to_a) {
                if let CallSignal::Verify { commit, reveal } = s {
                    to_o.extend(a.signal(commit, reveal));
                }
            }
        }
    }

    #[test]
    fn both_sides_read_the_same_code() {
        let mut o = Verifier::new(Role::Offerer, "r-o".into(), "b".into());
        let mut a = Verifier::new(Role::Answerer, "r-a".into(), "b".into());
        exchange(&mut o, &mut a, &sdp("AA:BB"), &sdp("CC:DD"));
        let (co, ca) = (o.result().cloned(), a.result().cloned());
        assert!(matches!(&co, Some(Ok(c)) if c.len() == 7), "{co:?}");
        assert_eq!(co, ca);
    }

    #[test]
    fn substituted_certificates_give_different_codes() {
        // A man in the middle: the offerer talks to M's certificate, the answerer to another.
        let mut o = Verifier::new(Role::Offerer, "r-o".into(), "b".into());
        let mut m_as_answerer = Verifier::new(Role::Answerer, "m1".into(), "b".into());
        exchange(&mut o, &mut m_as_answerer, &sdp("AA:BB"), &sdp("EE:01"));
        let mut m_as_offerer = Verifier::new(Role::Offerer, "m2".into(), "b".into());
        let mut a = Verifier::new(Role::Answerer, "r-a".into(), "b".into());
        exchange(&mut m_as_offerer, &mut a, &sdp("EE:02"), &sdp("CC:DD"));
        assert_ne!(o.result(), a.result());
    }

    #[test]
    fn a_reveal_that_does_not_match_the_commitment_is_refused() {
        let mut a = Verifier::new(Role::Answerer, "r-a".into(), "b".into());
        a.signal(Some(hash("aa:bb:r-o")), None);
        a.remote_description(&sdp("AA:BB"));
        a.local_description(&sdp("CC:DD"));
        a.signal(None, Some("another random".into()));
        assert_eq!(a.result(), Some(&Err(VerifyError::CommitMismatch)));
        let mut early = Verifier::new(Role::Answerer, "r-a".into(), "b".into());
        early.remote_description(&sdp("AA:BB"));
        early.local_description(&sdp("CC:DD"));
        assert_eq!(
            early.signal(None, Some("r-o".into())),
            None,
            "no commitment: the answerer does not reveal"
        );
        assert_eq!(early.result(), None);
    }

    #[test]
    fn fingerprints_are_read_from_sdp() {
        assert_eq!(
            fingerprint("v=0\r\na=fingerprint:SHA-256 AB:CD\r\n").as_deref(),
            Some("sha-256 ab:cd")
        );
        assert_eq!(fingerprint("v=0\r\na=fingerprint:sha-1 AB\r\n"), None);
        assert_eq!(fingerprint("garbage"), None);
    }
}
