//! Errors: [`EngineError`] for what a command could not do, and [`ErrorCode`], the one list of
//! machine-readable codes that the engine's events, the app's IPC errors (`{code, message}`) and
//! the window's script (`ui/codes.js`, checked against this list by a test) share.

use crate::ice::IceServerError;
use confab_call::chat::ChatError;
use confab_call::CallError;
use confab_media::MediaError;
use serde::Serialize;

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// Every code an error can carry, kebab-case on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }
        }
    };
}

codes! {
    // The server's refusals (protocol v1).
    /// Our message was malformed (a bug, or a newer server).
    BadMessage = "bad-message",
    InvalidRoom = "invalid-room",
    InvalidName = "invalid-name",
    WrongPassword = "wrong-password",
    RoomFull = "room-full",
    AlreadyJoined = "already-joined",
    NotJoined = "not-joined",
    UnknownPeer = "unknown-peer",
    TooLarge = "too-large",
    RateLimited = "rate-limited",
    ServerFull = "server-full",
    /// A refusal this version does not know.
    Refused = "refused",
    // Calls.
    NobodyToCall = "nobody-to-call",
    NotRinging = "not-ringing",
    AlreadyInCall = "already-in-call",
    /// Chat needs a call (it travels over the call's links).
    NotInCall = "not-in-call",
    ChatEmpty = "chat-empty",
    /// A call through the SFU has no direct link to carry chat.
    ChatUnavailable = "chat-unavailable",
    ChatTooLong = "chat-too-long",
    ChatRateLimited = "chat-rate-limited",
    /// A link could not be set up or broke for good.
    CallFailed = "call-failed",
    /// "Relay only" is on and no TURN relay could be had (none set, or it refused us).
    Relay = "relay",
    // The connection to the server.
    Unreachable = "unreachable",
    Timeout = "timeout",
    Disconnected = "disconnected",
    BadAddress = "bad-address",
    /// `ws://` to an address outside the private networks: the user is asked first.
    InsecureServer = "insecure-server",
    /// A join given up by the person, or a system dialog they said no to (the desktop's share
    /// picker).
    Cancelled = "cancelled",
    Reconnecting = "reconnecting",
    /// The engine is gone (the app is closing).
    Stopped = "stopped",
    // Devices.
    Camera = "camera",
    Microphone = "microphone",
    Speaker = "speaker",
    Device = "device",
    /// What we shared can no longer be captured (a closed window): sharing stopped.
    Share = "share",
    // The app.
    InvalidArgument = "invalid-argument",
    BadIceServer = "bad-ice-server",
    Settings = "settings",
    Host = "host",
    BadLink = "bad-link",
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<confab_protocol::ErrorCode> for ErrorCode {
    fn from(c: confab_protocol::ErrorCode) -> Self {
        use confab_protocol::ErrorCode as P;
        match c {
            P::BadMessage => ErrorCode::BadMessage,
            P::InvalidRoom => ErrorCode::InvalidRoom,
            P::InvalidName => ErrorCode::InvalidName,
            P::WrongPassword => ErrorCode::WrongPassword,
            P::RoomFull => ErrorCode::RoomFull,
            P::AlreadyJoined => ErrorCode::AlreadyJoined,
            P::NotJoined => ErrorCode::NotJoined,
            P::UnknownPeer => ErrorCode::UnknownPeer,
            P::TooLarge => ErrorCode::TooLarge,
            P::RateLimited => ErrorCode::RateLimited,
            P::ServerFull => ErrorCode::ServerFull,
            P::Unknown => ErrorCode::Refused,
        }
    }
}

impl From<CallError> for ErrorCode {
    fn from(e: CallError) -> Self {
        match e {
            CallError::NotJoined => ErrorCode::NotJoined,
            CallError::NobodyToCall => ErrorCode::NobodyToCall,
            CallError::UnknownPeer => ErrorCode::UnknownPeer,
            CallError::NotRinging => ErrorCode::NotRinging,
            CallError::AlreadyInCall => ErrorCode::AlreadyInCall,
        }
    }
}

/// Why joining a room (or staying in it) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The server said no (`room-full`, `wrong-password`, …); its words.
    #[error("{message}")]
    Refused {
        code: confab_protocol::ErrorCode,
        message: String,
    },
    #[error("{0}")]
    Unreachable(String),
    #[error("the server did not answer the join within 10 s")]
    Timeout,
    #[error("{0}")]
    Disconnected(String),
    #[error("the join was cancelled")]
    Cancelled,
}

impl JoinError {
    pub fn code(&self) -> ErrorCode {
        match self {
            JoinError::Refused { code, .. } => (*code).into(),
            JoinError::Unreachable(_) => ErrorCode::Unreachable,
            JoinError::Timeout => ErrorCode::Timeout,
            JoinError::Disconnected(_) => ErrorCode::Disconnected,
            JoinError::Cancelled => ErrorCode::Cancelled,
        }
    }

    /// Worth trying again later (the server may be back, or have room again).
    pub fn transient(&self) -> bool {
        matches!(
            self,
            JoinError::Unreachable(_) | JoinError::Timeout | JoinError::Disconnected(_)
        ) || matches!(
            self,
            JoinError::Refused {
                code: confab_protocol::ErrorCode::ServerFull
                    | confab_protocol::ErrorCode::RateLimited,
                ..
            }
        )
    }
}

/// Why a command failed. [`EngineError::code`] is stable and machine-readable; the message
/// is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("{0}")]
    Join(#[from] JoinError),
    #[error("{0}")]
    Device(#[from] MediaError),
    #[error("{0}")]
    BadAddress(String),
    #[error("{0}")]
    InvalidRoom(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    IceServer(#[from] IceServerError),
    #[error("already in room {0}; leave it first")]
    AlreadyJoined(String),
    #[error("not in a room")]
    NotJoined,
    #[error("not in a call: chat goes to the people in your call")]
    NotInCall,
    #[error(
        "no chat in this call: it goes through the media server, and chat travels only on \
         direct links"
    )]
    ChatThroughSfu,
    #[error("{0}")]
    Chat(#[from] ChatError),
    #[error("the microphone is in the call now: test it outside a call")]
    MicInCall,
    #[error("the call engine has stopped")]
    Stopped,
}

impl EngineError {
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::Call(e) => (*e).into(),
            EngineError::Join(e) => e.code(),
            EngineError::Device(MediaError::Cancelled(_)) => ErrorCode::Cancelled,
            EngineError::Device(_) => ErrorCode::Device,
            EngineError::BadAddress(_) => ErrorCode::BadAddress,
            EngineError::InvalidRoom(_) => ErrorCode::InvalidRoom,
            EngineError::InvalidName(_) => ErrorCode::InvalidName,
            EngineError::IceServer(_) => ErrorCode::BadIceServer,
            EngineError::AlreadyJoined(_) => ErrorCode::AlreadyJoined,
            EngineError::NotJoined => ErrorCode::NotJoined,
            EngineError::NotInCall => ErrorCode::NotInCall,
            EngineError::ChatThroughSfu => ErrorCode::ChatUnavailable,
            EngineError::Chat(ChatError::Empty) => ErrorCode::ChatEmpty,
            EngineError::Chat(ChatError::TooLong) => ErrorCode::ChatTooLong,
            EngineError::Chat(ChatError::RateLimited) => ErrorCode::ChatRateLimited,
            // Only the other side's messages are oversize or malformed, never a command's.
            EngineError::Chat(_) => ErrorCode::InvalidArgument,
            EngineError::MicInCall => ErrorCode::AlreadyInCall,
            EngineError::Stopped => ErrorCode::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_kebab_case_and_cover_the_protocol() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'),
                "{s}"
            );
            assert_eq!(serde_json::to_value(c).unwrap(), s);
        }
        for p in confab_protocol::ErrorCode::ALL {
            let ours = ErrorCode::from(p);
            assert!(ErrorCode::ALL.contains(&ours));
            if p != confab_protocol::ErrorCode::Unknown {
                assert_eq!(ours.as_str(), p.as_str(), "the server's codes pass through");
            }
        }
    }

    #[test]
    fn a_cancelled_system_dialog_has_its_own_code() {
        let e = EngineError::from(MediaError::Cancelled("nothing was shared".into()));
        assert_eq!(e.code(), ErrorCode::Cancelled);
        assert_eq!(e.to_string(), "nothing was shared");
        let e = EngineError::from(MediaError::Device("no camera".into()));
        assert_eq!(e.code(), ErrorCode::Device);
    }
}
