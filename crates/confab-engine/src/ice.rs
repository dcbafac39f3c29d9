//! STUN and TURN servers, and the one grammar people type them in (the app's Network box, the
//! app's settings file, `confab-peer --ice-server`):
//!
//! ```text
//! URL[,URL…] [USERNAME CREDENTIAL]        one server a line; URLs start with stun:, turn: or turns:
//! ```
//!
//! A TURN server needs a username and a credential; a STUN server takes none.

use serde::{Deserialize, Serialize};

/// A STUN or TURN server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub credential: String,
}

/// Why a server line was refused (the message says how to mend it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IceServerError {
    #[error("`{0}` is not a STUN or TURN address (it starts with stun:, turn: or turns:)")]
    BadUrl(String),
    #[error("{0} needs a username and a password after it")]
    TurnWithoutCredentials(String),
    #[error("a STUN server takes no username or password: {0}")]
    StunWithCredentials(String),
    #[error("too many words on the line `{0}` (URL, then username and password)")]
    TooManyWords(String),
    #[error("a server line is too long")]
    TooLong,
}

const MAX_LINE: usize = 1024;

fn is_turn(url: &str) -> bool {
    url.starts_with("turn:") || url.starts_with("turns:")
}

impl IceServer {
    /// Parses one line of the grammar above.
    pub fn parse(line: &str) -> Result<IceServer, IceServerError> {
        if line.len() > MAX_LINE {
            return Err(IceServerError::TooLong);
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (urls, username, credential) = match words[..] {
            [u] => (u, "", ""),
            [u, name, cred] => (u, name, cred),
            [u, _] => return Err(IceServerError::TurnWithoutCredentials(u.into())),
            _ => return Err(IceServerError::TooManyWords(line.trim().into())),
        };
        let server = IceServer {
            urls: urls.split(',').map(str::to_owned).collect(),
            username: username.into(),
            credential: credential.into(),
        };
        server.check()?;
        Ok(server)
    }

    /// Parses a block of lines (blank lines are skipped).
    pub fn parse_lines(text: &str) -> Result<Vec<IceServer>, IceServerError> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(IceServer::parse)
            .collect()
    }

    /// Checks a server however it was made (settings files are outside input too).
    pub fn check(&self) -> Result<(), IceServerError> {
        if self.urls.is_empty() {
            return Err(IceServerError::BadUrl(String::new()));
        }
        for u in &self.urls {
            let ok = (u.starts_with("stun:") || is_turn(u))
                && u.len() > 6
                && u.len() <= 256
                && !u.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(IceServerError::BadUrl(u.chars().take(64).collect()));
            }
        }
        let creds = !self.username.is_empty() || !self.credential.is_empty();
        let any_turn = self.urls.iter().any(|u| is_turn(u));
        if any_turn && (self.username.is_empty() || self.credential.is_empty()) {
            return Err(IceServerError::TurnWithoutCredentials(self.urls[0].clone()));
        }
        if !any_turn && creds {
            return Err(IceServerError::StunWithCredentials(self.urls[0].clone()));
        }
        Ok(())
    }

    /// A TURN server (it can give relay addresses), not only STUN.
    pub fn is_turn(&self) -> bool {
        self.urls.iter().any(|u| {
            let u = u.to_ascii_lowercase();
            u.starts_with("turn:") || u.starts_with("turns:")
        })
    }

    /// The line this server is written as (`parse` reads it back).
    pub fn to_line(&self) -> String {
        let urls = self.urls.join(",");
        if self.username.is_empty() {
            urls
        } else {
            format!("{urls} {} {}", self.username, self.credential)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_round_trip() {
        let stun = IceServer::parse("stun:stun.example.org:3478").unwrap();
        assert_eq!(stun.urls, vec!["stun:stun.example.org:3478"]);
        assert!(stun.username.is_empty());
        let turn =
            IceServer::parse("  turn:t.example.org:3478,turns:t.example.org:5349 ada s3cret ")
                .unwrap();
        assert_eq!(turn.urls.len(), 2);
        assert_eq!(
            (turn.username.as_str(), turn.credential.as_str()),
            ("ada", "s3cret")
        );
        for s in [stun, turn] {
            assert_eq!(IceServer::parse(&s.to_line()).unwrap(), s);
        }
        let many = IceServer::parse_lines("stun:a:1\n\n  turn:b:2 u p\n").unwrap();
        assert_eq!(many.len(), 2);
    }

    #[test]
    fn bad_lines_get_worded_errors() {
        use IceServerError::*;
        assert!(matches!(IceServer::parse("http://x"), Err(BadUrl(_))));
        assert!(matches!(
            IceServer::parse("turn:x:1"),
            Err(TurnWithoutCredentials(_))
        ));
        assert!(matches!(
            IceServer::parse("turn:x:1 user"),
            Err(TurnWithoutCredentials(_))
        ));
        assert!(matches!(
            IceServer::parse("stun:x:1 u p"),
            Err(StunWithCredentials(_))
        ));
        assert!(matches!(
            IceServer::parse("stun:x:1 a b c"),
            Err(TooManyWords(_))
        ));
        assert!(matches!(IceServer::parse(""), Err(TooManyWords(_))));
        assert!(matches!(IceServer::parse(&"x".repeat(5000)), Err(TooLong)));
        let e = IceServer::parse("turn:x:1").unwrap_err().to_string();
        assert!(e.contains("username and a password"), "{e}");
        // Settings files are checked the same way.
        let bad = IceServer {
            urls: vec!["turn:x:1".into()],
            username: String::new(),
            credential: String::new(),
        };
        assert!(bad.check().is_err());
    }
}
