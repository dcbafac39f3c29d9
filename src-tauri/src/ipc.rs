//! The error every command returns: `{code, message}`, for the UI to show in words.

use confab_engine::EngineError;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct IpcError {
    /// Stable, machine-readable (`wrong-password`, `room-full`, `unreachable`, `device`, …).
    pub code: String,
    /// For people.
    pub message: String,
}

impl IpcError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        IpcError {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        IpcError::new("invalid-argument", message)
    }
}

impl From<EngineError> for IpcError {
    fn from(e: EngineError) -> Self {
        let message = match &e {
            EngineError::Server { code, message } => match code.as_str() {
                "wrong-password" => "This room has a password, and that was not it.".to_owned(),
                "room-full" => "This room is full.".to_owned(),
                "unreachable" => {
                    let mut m = message.clone();
                    if let Some(first) = m.get(..1) {
                        m.replace_range(..1, &first.to_uppercase());
                    }
                    format!(
                        "{m}. Is it running? Without a server, \"Host on this computer\" lets \
                         others on your network join you."
                    )
                }
                _ => message.clone(),
            },
            other => other.to_string(),
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
    use confab_engine::core::CallError;

    #[test]
    fn serializes_to_code_and_message() {
        let e = IpcError::new("room-full", "This room is full.");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"code":"room-full","message":"This room is full."}"#
        );
    }

    #[test]
    fn engine_errors_keep_their_codes_and_get_words() {
        let cases: Vec<(EngineError, &str, &str)> = vec![
            (
                EngineError::Server {
                    code: "wrong-password".into(),
                    message: "room r needs the right password".into(),
                },
                "wrong-password",
                "password",
            ),
            (
                EngineError::Server {
                    code: "unreachable".into(),
                    message: "cannot reach the server at ws://x/ws: refused".into(),
                },
                "unreachable",
                "Cannot reach the server",
            ),
            (
                EngineError::Call(CallError::NobodyToCall),
                "nobody-to-call",
                "nobody else",
            ),
            (
                EngineError::BadAddress("`a b` is not a server address".into()),
                "bad-address",
                "not a server address",
            ),
            (EngineError::NotJoined, "not-joined", "not in a room"),
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
}
