//! The error every command returns: `{code, message}`, for the UI to show in words. Codes come
//! from the engine's one list ([`ErrorCode`]), which `ui/codes.js` mirrors (checked by a test).

use confab_engine::{EngineError, ErrorCode, JoinError};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct IpcError {
    /// Stable, machine-readable (`wrong-password`, `room-full`, `unreachable`, `device`, …).
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

impl IpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        IpcError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        IpcError::new(ErrorCode::InvalidArgument, message)
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl From<EngineError> for IpcError {
    fn from(e: EngineError) -> Self {
        use confab_protocol::ErrorCode as P;
        let message = match &e {
            EngineError::Join(JoinError::Refused {
                code: P::WrongPassword,
                ..
            }) => "This room has a password, and that was not it.".to_owned(),
            EngineError::Join(JoinError::Refused {
                code: P::RoomFull, ..
            }) => "This room is full.".to_owned(),
            EngineError::Join(JoinError::Unreachable(m)) => format!(
                "{}. Is it running? Without a server, \"Host on this computer\" lets others on \
                 your network join you.",
                capitalized(m)
            ),
            other => capitalized(&other.to_string()),
        };
        IpcError {
            code: e.code(),
            message,
        }
    }
}

pub type IpcResult<T> = Result<T, IpcError>;

#[cfg(test)]
mod tests {
    use super::*;
    use confab_engine::call::CallError;

    #[test]
    fn serializes_to_code_and_message() {
        let e = IpcError::new(ErrorCode::RoomFull, "This room is full.");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"code":"room-full","message":"This room is full."}"#
        );
    }

    #[test]
    fn engine_errors_keep_their_codes_and_get_words() {
        let cases: Vec<(EngineError, &str, &str)> = vec![
            (
                JoinError::Refused {
                    code: confab_protocol::ErrorCode::WrongPassword,
                    message: "room r needs the right password".into(),
                }
                .into(),
                "wrong-password",
                "password",
            ),
            (
                JoinError::Unreachable("cannot reach the server at ws://x/ws: refused".into())
                    .into(),
                "unreachable",
                "Cannot reach the server",
            ),
            (
                EngineError::Call(CallError::NobodyToCall),
                "nobody-to-call",
                "nobody else",
            ),
            (
                EngineError::Call(CallError::AlreadyInCall),
                "already-in-call",
                "Already in a call",
            ),
            (
                EngineError::BadAddress("`a b` is not a server address".into()),
                "bad-address",
                "not a server address",
            ),
            (
                confab_engine::IceServer::parse("turn:x:1")
                    .unwrap_err()
                    .into(),
                "bad-ice-server",
                "username and a password",
            ),
            (EngineError::NotJoined, "not-joined", "Not in a room"),
        ];
        for (e, code, words) in cases {
            let ipc = IpcError::from(e);
            let json: serde_json::Value = serde_json::to_value(&ipc).unwrap();
            assert_eq!(json["code"], code);
            assert!(json["message"].as_str().unwrap().contains(words), "{json}");
            assert_eq!(
                json.as_object().unwrap().len(),
                2,
                "exactly code and message"
            );
        }
    }

    /// The window's script knows the codes from `ui/codes.js`; it must be exactly the engine's
    /// list. `CONFAB_BLESS=1` rewrites it.
    #[test]
    fn ui_codes_match_the_engine_list() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/codes.js");
        let mut js = String::from(
            "// Generated from confab_engine::ErrorCode by src-tauri/src/ipc.rs \
             (ui_codes_match_the_engine_list);\n// CONFAB_BLESS=1 cargo test -p confab \
             --bin confab ui_codes rewrites it. Every `code` an IPC error or engine event \
             carries.\nwindow.ConfabCodes = Object.freeze({\n",
        );
        for c in ErrorCode::ALL {
            let key: String = c
                .as_str()
                .split('-')
                .enumerate()
                .map(|(i, w)| if i == 0 { w.to_owned() } else { capitalized(w) })
                .collect();
            js.push_str(&format!("  {key}: '{}',\n", c.as_str()));
        }
        js.push_str("});\n");
        if std::env::var_os("CONFAB_BLESS").is_some() {
            std::fs::write(&path, &js).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            on_disk, js,
            "ui/codes.js is out of date: run with CONFAB_BLESS=1"
        );
    }
}
