//! The call flow, carried in the `data` object of `signal` messages.
//!
//! The server never looks inside; every Confab client (engine, web client) speaks exactly this.
//! Each object has a `kind`. See `docs/protocol.md`, "Call flow", for the rules.

use serde::{Deserialize, Serialize};

/// One call-flow message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CallSignal {
    /// The sender's call presence and media state. Sent to every room peer when it changes,
    /// and to a newcomer when it joins.
    State {
        in_call: bool,
        audio: bool,
        video: bool,
        /// Stable for the life of the sender's client, across reconnections (informative: a
        /// link carries over to a new id only with a `resume` proof).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
    },
    /// "Join me in a call." `nonce`: the sender's half of the link secret (see `resume`).
    Ring {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
    },
    /// Answer to `ring`: the ringer then sends an offer. `nonce`: the sender's half of the
    /// link secret.
    Accept {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
    },
    /// Answer to `ring`: no.
    Decline {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Leaves the call with the receiver (also cancels a ring).
    HangUp,
    /// "I let `peer` into our call": sent by a call member to its other call members, who then
    /// accept `peer`'s ring without asking.
    Admit { peer: crate::PeerId },
    /// A peer back under a new id proves it held a link with the receiver: each proof is
    /// `sha256(link secret ":" sender id ":" receiver id)` (hex, first 32 characters), bound to
    /// both ids so that nobody else can replay it.
    Resume { proofs: Vec<String> },
    /// The verification code's exchange on a link: the offerer's commitment, then each side's
    /// random (see `confab_call::verify`).
    Verify {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reveal: Option<String>,
    },
    /// An SDP offer or answer, shaped like `RTCSessionDescriptionInit`.
    Description { description: SessionDescription },
    /// A trickled ICE candidate, shaped like `RTCIceCandidateInit`.
    Candidate { candidate: IceCandidate },
    /// Through an SFU, from a publisher to a person its call let in: the SFU's offer of the
    /// sender's media to the receiver, from a subscription the sender opened for them (`sub`,
    /// its handle at the SFU). `shares`: the media sections (mids) carrying the sender's
    /// screen. A person's pictures come only from the offers that person sent (the server
    /// stamps who sent this): nobody else's subscription can be passed off as theirs.
    SfuOffer {
        sub: u64,
        sdp: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shares: Vec<String>,
    },
    /// The answer to an `sfu-offer`, back to its sender, who hands it to the SFU.
    SfuAnswer { sub: u64, sdp: String },
    /// A candidate of the receiving side of subscription `sub`, back to its publisher.
    SfuCandidate { sub: u64, candidate: IceCandidate },
    /// "Forward me this layer of your camera" (simulcast), to the publisher of `sub`.
    SfuLayer { sub: u64, layer: SfuLayer },
}

/// A layer of a simulcast camera at the SFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SfuLayer {
    /// The full-size encoding.
    Full,
    /// The half-size one.
    Half,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpType {
    Offer,
    Answer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    #[serde(rename = "type")]
    pub kind: SdpType,
    pub sdp: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

impl CallSignal {
    /// Wraps the message as the `data` of a signal.
    pub fn to_data(&self) -> crate::SignalData {
        crate::SignalData::from_value(self).expect("call signals serialize to objects")
    }

    /// Reads a call-flow message out of a signal's `data`.
    pub fn from_data(data: &crate::SignalData) -> Result<Self, serde_json::Error> {
        data.parse()
    }
}
