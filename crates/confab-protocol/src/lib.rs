//! Confab signaling protocol v1.
//!
//! One JSON object per WebSocket text frame, at the path [`WS_PATH`]; the `type` field names the
//! message. [`ClientMessage`] goes client → server, [`ServerMessage`] server → client. The
//! `data` object of a signal is opaque to the server ([`SignalData`]); Confab clients carry the
//! call flow in it (see [`call`]). The normative description is `docs/protocol.md`.
//!
//! Decoding is written by hand (not `#[serde(tag)]`) so that a signal's `data` stays raw JSON
//! end to end (the server relays it without re-parsing) and so that every malformed input gets a
//! precise, human-readable error.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

pub mod call;
mod rules;

pub use rules::{
    check_name, check_password, check_room, clean_text, normalize_name, validate_name,
    validate_password, validate_room, RuleError, MAX_NAME_CHARS, MAX_PASSWORD_LEN, MAX_ROOM_LEN,
};

/// Hex digits of a rejoin token (128 bits).
pub const REJOIN_TOKEN_LEN: usize = 32;

/// Whether `token` has a rejoin token's form: [`REJOIN_TOKEN_LEN`] lowercase hex digits.
fn rejoin_token(token: Option<String>, kind: &str) -> Result<Option<String>, DecodeError> {
    match token {
        Some(t)
            if t.len() != REJOIN_TOKEN_LEN
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Err(DecodeError::new(format!(
                "`{kind}` field `rejoin` must be the {REJOIN_TOKEN_LEN} hex digits a welcome gave"
            )))
        }
        t => Ok(t),
    }
}

/// The WebSocket path of protocol v1.
pub const WS_PATH: &str = "/ws";

/// A peer id, assigned by the server at join time. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub String);

impl PeerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PeerId {
    fn from(s: &str) -> Self {
        PeerId(s.to_owned())
    }
}

/// A peer as listed in `welcome` and announced by `peer-joined`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub id: PeerId,
    pub name: String,
}

/// The `data` of a signal: any JSON object, kept as raw text.
#[derive(Debug, Clone)]
pub struct SignalData(Box<RawValue>);

impl SignalData {
    /// Wraps raw JSON text, which must be an object.
    pub fn from_raw(raw: Box<RawValue>) -> Result<Self, DecodeError> {
        if raw.get().trim_start().starts_with('{') {
            Ok(SignalData(raw))
        } else {
            Err(DecodeError::new("field `data` must be a JSON object"))
        }
    }

    /// Serializes a value that must serialize to a JSON object.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, DecodeError> {
        let raw = serde_json::value::to_raw_value(value)
            .map_err(|e| DecodeError::new(format!("cannot serialize signal data: {e}")))?;
        Self::from_raw(raw)
    }

    /// The raw JSON text of the object.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Parses the object into a typed value.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

impl PartialEq for SignalData {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for SignalData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMessage {
    Join {
        room: String,
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        /// Joining again after a lost connection: the token the last `welcome` gave. The
        /// server drops the old connection's member at once (the others hear `peer-left` now,
        /// not when the server notices the dead connection), and frees its seat.
        #[serde(skip_serializing_if = "Option::is_none")]
        rejoin: Option<String>,
    },
    Signal {
        to: PeerId,
        data: SignalData,
    },
    Leave,
    /// Asks for a `pong`: a client that cannot see WebSocket pings (a browser) proves its
    /// connection with it.
    Ping,
}

/// The SFU (a Janus VideoRoom) a room's calls go through: its address, and this member's own
/// VideoRoom room, the PIN it is created with and the token that lets the member in. The
/// signaling server derives `room` and `pin` from the room's name, the token and a secret of
/// its own, so only the member learns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SfuInfo {
    /// `janus+ws://HOST:PORT` or `janus+wss://HOST:PORT[/PATH]`.
    pub url: String,
    /// The VideoRoom room id (below 2^53, so that JavaScript reads it exactly).
    pub room: u64,
    pub pin: String,
    /// The token that lets this member into its VideoRoom room (the room's `allowed` list):
    /// this membership's own, kept by a rejoin with its rejoin token. Once the member has
    /// left, the server removes the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A call goes through the SFU once the room holds more than this many people (0: every
    /// call); below, peer to peer. Absent: 6 (the mesh's limit).
    #[serde(default = "default_sfu_above")]
    pub above: u32,
}

fn default_sfu_above() -> u32 {
    DEFAULT_SFU_ABOVE
}

/// Rooms larger than this call through the SFU unless the server says otherwise.
pub const DEFAULT_SFU_ABOVE: u32 = 6;

/// The largest room id an [`SfuInfo`] may carry.
pub const MAX_SFU_ROOM: u64 = (1 << 53) - 1;

impl SfuInfo {
    /// The WebSocket URL of the SFU (the `janus+` prefix taken off).
    pub fn ws_url(&self) -> &str {
        sfu_ws_url(&self.url)
    }

    /// Checks what a server sent (or an operator configured) before anyone uses it.
    pub fn checked(self) -> Result<Self, DecodeError> {
        check_sfu_url(&self.url)?;
        if self.room == 0 || self.room > MAX_SFU_ROOM {
            return Err(DecodeError::new(format!(
                "`sfu.room` must be between 1 and 2^53-1, not {}",
                self.room
            )));
        }
        if self.pin.is_empty()
            || self.pin.len() > 64
            || !self.pin.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(DecodeError::new(
                "`sfu.pin` must be 1 to 64 letters and digits",
            ));
        }
        if self.token.as_ref().is_some_and(|t| {
            t.is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_alphanumeric())
        }) {
            return Err(DecodeError::new(
                "`sfu.token` must be 1 to 64 letters and digits",
            ));
        }
        Ok(self)
    }
}

/// The WebSocket URL of an SFU address (`janus+ws://…` → `ws://…`).
pub fn sfu_ws_url(url: &str) -> &str {
    url.strip_prefix("janus+").unwrap_or(url)
}

/// Checks an SFU address: `janus+ws://` or `janus+wss://`, a host, at most 512 bytes.
pub fn check_sfu_url(url: &str) -> Result<(), DecodeError> {
    let rest = url
        .strip_prefix("janus+ws://")
        .or_else(|| url.strip_prefix("janus+wss://"))
        .ok_or_else(|| {
            DecodeError::new(format!(
                "the SFU address must start with janus+ws:// or janus+wss://, not {:?}",
                truncate(url, 40)
            ))
        })?;
    if url.len() > 512 || rest.is_empty() || rest.starts_with('/') {
        return Err(DecodeError::new(format!(
            "the SFU address {:?} has no host (or is longer than 512 bytes)",
            truncate(url, 40)
        )));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DecodeError::new("the SFU address may not contain spaces"));
    }
    Ok(())
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    Welcome {
        id: PeerId,
        room: String,
        peers: Vec<PeerInfo>,
        /// The media server this room's calls go through, when the server has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        sfu: Option<SfuInfo>,
        /// This membership's secret ([`REJOIN_TOKEN_LEN`] hex digits), for this client only:
        /// presented in a later `join` of the same room, it replaces this membership.
        #[serde(skip_serializing_if = "Option::is_none")]
        rejoin: Option<String>,
    },
    PeerJoined {
        id: PeerId,
        name: String,
    },
    PeerLeft {
        id: PeerId,
    },
    Signal {
        from: PeerId,
        data: SignalData,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// The answer to a `ping`.
    Pong,
}

/// The `code` of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// Not JSON, unknown type, missing or wrong field.
    BadMessage,
    InvalidRoom,
    InvalidName,
    WrongPassword,
    RoomFull,
    AlreadyJoined,
    NotJoined,
    UnknownPeer,
    TooLarge,
    RateLimited,
    ServerFull,
    /// A code this version does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadMessage,
        ErrorCode::InvalidRoom,
        ErrorCode::InvalidName,
        ErrorCode::WrongPassword,
        ErrorCode::RoomFull,
        ErrorCode::AlreadyJoined,
        ErrorCode::NotJoined,
        ErrorCode::UnknownPeer,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::ServerFull,
        ErrorCode::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad-message",
            ErrorCode::InvalidRoom => "invalid-room",
            ErrorCode::InvalidName => "invalid-name",
            ErrorCode::WrongPassword => "wrong-password",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::AlreadyJoined => "already-joined",
            ErrorCode::NotJoined => "not-joined",
            ErrorCode::UnknownPeer => "unknown-peer",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::ServerFull => "server-full",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text frame is not a valid message. Maps to [`ErrorCode::BadMessage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub message: String,
}

impl DecodeError {
    fn new(message: impl Into<String>) -> Self {
        DecodeError {
            message: message.into(),
        }
    }

    fn json(e: serde_json::Error) -> Self {
        DecodeError::new(format!("not a valid message: {e}"))
    }
}

fn required<T>(value: Option<T>, kind: &str, field: &str) -> Result<T, DecodeError> {
    value.ok_or_else(|| DecodeError::new(format!("`{kind}` message is missing field `{field}`")))
}

fn raw_data(value: Option<&RawValue>, kind: &str) -> Result<SignalData, DecodeError> {
    let raw = required(value, kind, "data")?;
    SignalData::from_raw(raw.to_owned())
}

#[derive(Deserialize)]
struct ClientWire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    room: Option<String>,
    name: Option<String>,
    password: Option<String>,
    rejoin: Option<String>,
    to: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

impl ClientMessage {
    /// Decodes one text frame.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let w: ClientWire = serde_json::from_str(text).map_err(DecodeError::json)?;
        let kind = w
            .kind
            .ok_or_else(|| DecodeError::new("message has no `type` field"))?;
        match kind.as_ref() {
            "join" => Ok(ClientMessage::Join {
                room: required(w.room, "join", "room")?,
                name: required(w.name, "join", "name")?,
                password: w.password,
                rejoin: rejoin_token(w.rejoin, "join")?,
            }),
            "signal" => Ok(ClientMessage::Signal {
                to: PeerId(required(w.to, "signal", "to")?),
                data: raw_data(w.data, "signal")?,
            }),
            "leave" => Ok(ClientMessage::Leave),
            "ping" => Ok(ClientMessage::Ping),
            other => Err(DecodeError::new(format!(
                "unknown message type `{}`",
                truncate(other, 40)
            ))),
        }
    }

    /// Encodes as one text frame.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("client messages always serialize")
    }
}

#[derive(Deserialize)]
struct ServerWire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    id: Option<String>,
    room: Option<String>,
    name: Option<String>,
    peers: Option<Vec<PeerInfo>>,
    sfu: Option<SfuInfo>,
    rejoin: Option<String>,
    from: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    code: Option<ErrorCode>,
    message: Option<String>,
}

impl ServerMessage {
    /// Decodes one text frame.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let w: ServerWire = serde_json::from_str(text).map_err(DecodeError::json)?;
        let kind = w
            .kind
            .ok_or_else(|| DecodeError::new("message has no `type` field"))?;
        match kind.as_ref() {
            "welcome" => Ok(ServerMessage::Welcome {
                id: PeerId(required(w.id, "welcome", "id")?),
                room: required(w.room, "welcome", "room")?,
                peers: required(w.peers, "welcome", "peers")?,
                sfu: w.sfu.map(SfuInfo::checked).transpose()?,
                rejoin: rejoin_token(w.rejoin, "welcome")?,
            }),
            "peer-joined" => Ok(ServerMessage::PeerJoined {
                id: PeerId(required(w.id, "peer-joined", "id")?),
                name: required(w.name, "peer-joined", "name")?,
            }),
            "peer-left" => Ok(ServerMessage::PeerLeft {
                id: PeerId(required(w.id, "peer-left", "id")?),
            }),
            "signal" => Ok(ServerMessage::Signal {
                from: PeerId(required(w.from, "signal", "from")?),
                data: raw_data(w.data, "signal")?,
            }),
            "pong" => Ok(ServerMessage::Pong),
            "error" => Ok(ServerMessage::Error {
                code: required(w.code, "error", "code")?,
                message: w.message.unwrap_or_default(),
            }),
            other => Err(DecodeError::new(format!(
                "unknown message type `{}`",
                truncate(other, 40)
            ))),
        }
    }

    /// Encodes as one text frame.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }

    /// Shorthand for an `error` message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }
}

/// Shortens untrusted text quoted back in an error message, on a character boundary.
pub fn truncate(s: &str, max_chars: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max_chars) {
        None => Cow::Borrowed(s),
        Some((i, _)) => Cow::Owned(format!("{}…", &s[..i])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_on_char_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééééé", 2), "éé…");
    }
}
