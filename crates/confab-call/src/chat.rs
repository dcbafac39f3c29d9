//! Chat in a call: what a person may say, what is taken from the others, and what someone who
//! joins later is shown. Pure: wire text in, lines out, time passed in (ms). The engine carries
//! the wire messages over one data channel per link, never through the signaling server.
//!
//! Everything another person sends is untrusted: a message larger than [`MAX_WIRE_BYTES`] is
//! refused unread, text is cleaned ([`confab_protocol::clean_text`]: no bidi tricks, no
//! invisible characters) and limited to [`MAX_TEXT_CHARS`], each person may send [`BURST`]
//! messages at once and then [`PER_SECOND`] a second, and the sender of a line is the link it
//! came over, never a name in the message. A newcomer takes one history (the last
//! [`HISTORY_LEN`] lines) from the first member that sends one, shown as "shared by" them.

use crate::Millis;
use confab_protocol::{check_name, clean_text, PeerId};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// The most characters of one message (after cleaning).
pub const MAX_TEXT_CHARS: usize = 2000;
/// The largest wire message read at all: what one data channel message carries everywhere
/// (webrtc-rs reads at most 16 KiB a message; a shared history is cut to fit).
pub const MAX_WIRE_BYTES: usize = 16 * 1024;
/// How many lines are kept, and handed to people who join later.
pub const HISTORY_LEN: usize = 50;
/// Messages one person may send at once…
pub const BURST: f64 = 5.0;
/// …and then per second.
pub const PER_SECOND: f64 = 1.0;
/// How far back a shared history may reach.
const HISTORY_MAX_AGE_MS: Millis = 24 * 3600 * 1000;

/// What travels over the chat data channel, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Wire {
    Say {
        text: String,
    },
    /// The lines before the receiver joined; `ago_ms` is relative to sending.
    History {
        lines: Vec<WireLine>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireLine {
    pub name: String,
    pub text: String,
    pub ago_ms: Millis,
}

/// One line of the chat as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatLine {
    /// The link it came over; `None` for our own lines and for lines of a shared history
    /// (whose authors cannot be checked).
    pub from: Option<PeerId>,
    pub name: String,
    pub text: String,
    /// When it was said, on the caller's clock.
    pub at_ms: Millis,
    /// For lines from before we joined: the name of the member who shared them.
    pub shared_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("the message is empty")]
    Empty,
    #[error("the message is longer than {MAX_TEXT_CHARS} characters")]
    TooLong,
    #[error("too many messages at once; wait a moment")]
    RateLimited,
    #[error("a chat message of {0} bytes was refused unread")]
    Oversize(usize),
    #[error("a chat message could not be read: {0}")]
    Malformed(String),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Millis,
}

impl Bucket {
    fn new(now: Millis) -> Self {
        Bucket {
            tokens: BURST,
            at: now,
        }
    }
    fn take(&mut self, now: Millis) -> bool {
        let dt = now.saturating_sub(self.at) as f64 / 1000.0;
        self.tokens = (self.tokens + dt * PER_SECOND).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The chat of one call.
#[derive(Debug, Default)]
pub struct Chat {
    lines: VecDeque<ChatLine>,
    buckets: HashMap<PeerId, Bucket>,
    mine: Option<Bucket>,
    /// A history was taken (or there was no need: we said or heard something first).
    history_settled: bool,
}

impl Chat {
    pub fn new() -> Self {
        Self::default()
    }

    /// The lines, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &ChatLine> {
        self.lines.iter()
    }

    /// Says `text`: the line to show and the wire message to send on every link.
    pub fn say(
        &mut self,
        my_name: &str,
        text: &str,
        now: Millis,
    ) -> Result<(ChatLine, String), ChatError> {
        let text = checked_text(text)?;
        if !self.mine.get_or_insert_with(|| Bucket::new(now)).take(now) {
            return Err(ChatError::RateLimited);
        }
        let line = ChatLine {
            from: None,
            name: my_name.to_owned(),
            text: text.clone(),
            at_ms: now,
            shared_by: None,
        };
        self.push(line.clone());
        let wire = serde_json::to_string(&Wire::Say { text }).expect("serializes");
        Ok((line, wire))
    }

    /// A message that came over the link to `from`, whose name in the room is `name`. Returns
    /// the new lines to show (none for an unwanted history).
    pub fn receive(
        &mut self,
        from: &PeerId,
        name: &str,
        wire: &[u8],
        now: Millis,
    ) -> Result<Vec<ChatLine>, ChatError> {
        if wire.len() > MAX_WIRE_BYTES {
            return Err(ChatError::Oversize(wire.len()));
        }
        let msg: Wire =
            serde_json::from_slice(wire).map_err(|e| ChatError::Malformed(e.to_string()))?;
        let bucket = self
            .buckets
            .entry(from.clone())
            .or_insert_with(|| Bucket::new(now));
        if !bucket.take(now) {
            return Err(ChatError::RateLimited);
        }
        match msg {
            Wire::Say { text } => {
                let line = ChatLine {
                    from: Some(from.clone()),
                    name: name.to_owned(),
                    text: checked_text(&text)?,
                    at_ms: now,
                    shared_by: None,
                };
                self.push(line.clone());
                Ok(vec![line])
            }
            Wire::History { lines } => {
                if self.history_settled || !self.lines.is_empty() {
                    return Ok(Vec::new());
                }
                self.history_settled = true;
                let skip = lines.len().saturating_sub(HISTORY_LEN);
                let taken: Vec<ChatLine> = lines
                    .into_iter()
                    .skip(skip)
                    .filter_map(|l| {
                        let text = checked_text(&l.text).ok()?;
                        let who = check_name(&l.name).unwrap_or_else(|_| "someone".into());
                        Some(ChatLine {
                            from: None,
                            name: who,
                            text,
                            at_ms: now.saturating_sub(l.ago_ms.min(HISTORY_MAX_AGE_MS)),
                            shared_by: Some(name.to_owned()),
                        })
                    })
                    .collect();
                for l in &taken {
                    self.push(l.clone());
                }
                Ok(taken)
            }
        }
    }

    /// The wire message that hands the chat so far to someone who just joined the call (none
    /// when there is nothing to hand).
    pub fn history(&self, now: Millis) -> Option<String> {
        if self.lines.is_empty() {
            return None;
        }
        let lines: Vec<WireLine> = self
            .lines
            .iter()
            .map(|l| WireLine {
                name: l.name.clone(),
                text: l.text.clone(),
                ago_ms: now.saturating_sub(l.at_ms),
            })
            .collect();
        // The newest lines that fit in one message.
        #[derive(Serialize)]
        #[serde(tag = "kind", rename = "history")]
        struct Out<'a> {
            lines: &'a [WireLine],
        }
        (0..lines.len()).find_map(|skip| {
            let wire = serde_json::to_string(&Out {
                lines: &lines[skip..],
            })
            .expect("serializes");
            (wire.len() <= MAX_WIRE_BYTES).then_some(wire)
        })
    }

    /// The link to `peer` is gone: its rate limit is forgotten (a new link starts afresh).
    pub fn forget(&mut self, peer: &PeerId) {
        self.buckets.remove(peer);
    }

    fn push(&mut self, line: ChatLine) {
        self.history_settled = true;
        if self.lines.len() == HISTORY_LEN {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

fn checked_text(text: &str) -> Result<String, ChatError> {
    // A first cut on raw length, so cleaning never walks a huge string.
    if text.len() > MAX_TEXT_CHARS * 4 {
        return Err(ChatError::TooLong);
    }
    let clean = clean_text(text);
    if clean.is_empty() {
        return Err(ChatError::Empty);
    }
    if clean.chars().count() > MAX_TEXT_CHARS {
        return Err(ChatError::TooLong);
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PeerId {
        PeerId(s.to_owned())
    }

    #[test]
    fn a_line_said_is_a_line_heard() {
        let (mut ada, mut bob) = (Chat::new(), Chat::new());
        let (mine, wire) = ada
            .say("Ada", "  hello, see https://example.org  ", 1000)
            .unwrap();
        assert_eq!(mine.text, "hello, see https://example.org");
        let got = bob.receive(&id("a"), "Ada", wire.as_bytes(), 1010).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].from, Some(id("a")));
        assert_eq!(
            (got[0].name.as_str(), got[0].text.as_str()),
            ("Ada", mine.text.as_str())
        );
        assert_eq!(got[0].at_ms, 1010, "the receiver's clock");
        assert_eq!(bob.lines().count(), 1);
    }

    #[test]
    fn spoofed_chat_sender() {
        // The wire has no sender: a line is from the link it came over. A name inside a
        // `say` is unknown JSON and ignored — the text is shown under the link's name.
        let mut bob = Chat::new();
        let got = bob
            .receive(
                &id("m"),
                "Mallory",
                br#"{"kind":"say","text":"hi","name":"Ada","from":"a"}"#,
                0,
            )
            .unwrap();
        assert_eq!(
            (got[0].name.as_str(), got[0].from.clone()),
            ("Mallory", Some(id("m")))
        );
    }

    #[test]
    fn oversize_chat_message() {
        let mut bob = Chat::new();
        let huge = format!(
            r#"{{"kind":"say","text":"{}"}}"#,
            "a".repeat(MAX_WIRE_BYTES)
        );
        assert_eq!(
            bob.receive(&id("m"), "M", huge.as_bytes(), 0),
            Err(ChatError::Oversize(huge.len()))
        );
        let long = format!(
            r#"{{"kind":"say","text":"{}"}}"#,
            "a".repeat(MAX_TEXT_CHARS + 1)
        );
        assert_eq!(
            bob.receive(&id("m"), "M", long.as_bytes(), 0),
            Err(ChatError::TooLong)
        );
        // The same limit holds for what we say.
        assert_eq!(
            Chat::new()
                .say("Ada", &"é".repeat(MAX_TEXT_CHARS + 1), 0)
                .unwrap_err(),
            ChatError::TooLong
        );
        assert!(Chat::new()
            .say("Ada", &"é".repeat(MAX_TEXT_CHARS), 0)
            .is_ok());
        assert_eq!(bob.lines().count(), 0);
    }

    #[test]
    fn chat_flood() {
        let mut bob = Chat::new();
        let say = br#"{"kind":"say","text":"spam"}"#;
        let mut shown = 0;
        for i in 0..100 {
            if bob.receive(&id("m"), "M", say, i).is_ok() {
                shown += 1;
            }
        }
        assert_eq!(shown, BURST as usize, "a burst, then the limit");
        // A second later, one more; another person is not limited by the first.
        assert!(bob.receive(&id("m"), "M", say, 1100).is_ok());
        assert!(bob.receive(&id("a"), "Ada", say, 1100).is_ok());
        // And our own typing is limited the same way.
        let mut ada = Chat::new();
        let ok = (0..10).filter(|_| ada.say("Ada", "x", 0).is_ok()).count();
        assert_eq!(ok, BURST as usize);
        assert_eq!(ada.say("Ada", "x", 0).unwrap_err(), ChatError::RateLimited);
    }

    #[test]
    fn bidi_and_invisible_text_in_chat() {
        let mut bob = Chat::new();
        let got = bob
            .receive(
                &id("m"),
                "M",
                "{\"kind\":\"say\",\"text\":\"open invoice\u{202E}fdp.exe\u{200B}\"}".as_bytes(),
                0,
            )
            .unwrap();
        assert_eq!(got[0].text, "open invoicefdp.exe");
        // Nothing but invisible characters is nothing.
        assert_eq!(
            bob.receive(
                &id("m"),
                "M",
                "{\"kind\":\"say\",\"text\":\"\u{200B}\u{2060}\"}".as_bytes(),
                1
            ),
            Err(ChatError::Empty)
        );
    }

    #[test]
    fn malformed_chat_is_an_error_not_a_crash() {
        let mut bob = Chat::new();
        for junk in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"kind":"shout","text":"x"}"#,
            br#"{"kind":"say"}"#,
            br#"{"kind":"say","text":7}"#,
            b"\xff\xfe",
        ] {
            assert!(
                matches!(
                    bob.receive(&id("m"), "M", junk, 0),
                    Err(ChatError::Malformed(_))
                ),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn a_newcomer_is_shown_what_was_said_once() {
        let mut ada = Chat::new();
        let mut bob = Chat::new();
        for (n, t) in [(0, "first"), (1000, "second")] {
            let (_, wire) = ada.say("Ada", t, n).unwrap();
            bob.receive(&id("a"), "Ada", wire.as_bytes(), n).unwrap();
        }
        let history = ada.history(5000).unwrap();
        let mut cat = Chat::new();
        let got = cat
            .receive(&id("a"), "Ada", history.as_bytes(), 60_000)
            .unwrap();
        assert_eq!(
            got.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert_eq!(got[0].at_ms, 55_000, "said 5 s before it was shared");
        assert!(got
            .iter()
            .all(|l| l.shared_by.as_deref() == Some("Ada") && l.from.is_none()));
        // Bob's copy of the same history, arriving second, adds nothing.
        let again = bob.history(5000).unwrap();
        assert!(cat
            .receive(&id("b"), "Bob", again.as_bytes(), 60_001)
            .unwrap()
            .is_empty());
        assert_eq!(cat.lines().count(), 2);
        assert_eq!(Chat::new().history(0), None, "nothing to hand");
    }

    #[test]
    fn a_long_history_is_cut_to_one_message() {
        let mut ada = Chat::new();
        for n in 0..HISTORY_LEN as u64 {
            let text = format!("{n} {}", "x".repeat(MAX_TEXT_CHARS - 10));
            ada.say("Ada", &text, n * 1000).unwrap();
        }
        let h = ada.history(HISTORY_LEN as u64 * 1000).unwrap();
        assert!(h.len() <= MAX_WIRE_BYTES, "{}", h.len());
        let got = Chat::new()
            .receive(&id("a"), "Ada", h.as_bytes(), 0)
            .unwrap();
        assert!(got.len() >= 5, "{} lines fit", got.len());
        assert!(
            got.last().unwrap().text.starts_with("49 "),
            "the newest are kept"
        );
    }

    #[test]
    fn forged_history_for_someone_already_talking() {
        // A member who was in the call is not rewritten by a later "history".
        let mut bob = Chat::new();
        bob.say("Bob", "hello", 0).unwrap();
        let forged = serde_json::to_string(&Wire::History {
            lines: vec![WireLine {
                name: "Bob".into(),
                text: "I agree to everything".into(),
                ago_ms: 10,
            }],
        })
        .unwrap();
        assert!(bob
            .receive(&id("m"), "Mallory", forged.as_bytes(), 100)
            .unwrap()
            .is_empty());
        assert_eq!(bob.lines().count(), 1);
        // A newcomer sees it, but as shared by Mallory, with no sender link; a bad name is
        // shown as "someone"; at most the last HISTORY_LEN lines; ages are capped.
        let mut lines: Vec<WireLine> = (0..200)
            .map(|n| WireLine {
                name: "Bob".into(),
                text: format!("line {n}"),
                ago_ms: u64::MAX,
            })
            .collect();
        lines.last_mut().unwrap().name = "Ada\u{202E}".into();
        let big = serde_json::to_string(&Wire::History { lines }).unwrap();
        let mut cat = Chat::new();
        let got = cat
            .receive(&id("m"), "Mallory", big.as_bytes(), 100_000_000)
            .unwrap();
        assert_eq!(got.len(), HISTORY_LEN);
        assert_eq!(got[0].text, "line 150");
        assert_eq!(got.last().unwrap().name, "someone");
        assert!(got
            .iter()
            .all(|l| l.shared_by.as_deref() == Some("Mallory")));
        assert!(got
            .iter()
            .all(|l| l.at_ms == 100_000_000 - HISTORY_MAX_AGE_MS));
    }

    #[test]
    fn the_chat_keeps_the_last_lines() {
        let mut bob = Chat::new();
        for n in 0..(HISTORY_LEN as u64 + 10) {
            let wire = format!(r#"{{"kind":"say","text":"{n}"}}"#);
            bob.receive(&id("a"), "Ada", wire.as_bytes(), n * 2000)
                .unwrap();
        }
        assert_eq!(bob.lines().count(), HISTORY_LEN);
        assert_eq!(bob.lines().next().unwrap().text, "10");
        bob.forget(&id("a"));
    }
}
