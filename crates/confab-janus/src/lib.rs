//! A small client of Janus's WebSocket API: one connection, one session, plugin handles and
//! their requests. The engine speaks it for calls through the SFU (`confab-engine::sfu`); the
//! signaling server speaks it to make and remove the VideoRoom rooms (see [`RoomSpec`]): only
//! the server knows a room's `secret` and Janus's `admin_key`, so a room member can join a
//! room but never make, edit, kick from or destroy one.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// The VideoRoom plugin's name.
pub const VIDEOROOM: &str = "janus.plugin.videoroom";
/// VideoRoom error codes: no such room, room exists, not allowed.
pub const NO_SUCH_ROOM: i64 = 426;
pub const ROOM_EXISTS: i64 = 427;
pub const UNAUTHORIZED: i64 = 433;
/// VideoRoom: no such feed (participant) in the room.
pub const NO_SUCH_FEED: i64 = 428;
/// Janus's own codes for a session or handle it no longer has: the connection is stale.
pub const NO_SUCH_SESSION: i64 = 458;
pub const NO_SUCH_HANDLE: i64 = 459;
/// Janus keeps a session 60 s without a word; a client should speak more often than that.
pub const KEEPALIVE: Duration = Duration::from_secs(25);
/// Every request is answered within this, or given up.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JanusError {
    #[error("cannot reach the media server at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("the media server refused {what}: {reason} ({code})")]
    Refused {
        what: &'static str,
        code: i64,
        reason: String,
    },
    #[error("the media server did not answer {0} within 10 s")]
    Timeout(&'static str),
    #[error("the connection to the media server was lost: {0}")]
    Lost(String),
    #[error("the media server sent something Confab does not understand: {0}")]
    Protocol(String),
}

impl JanusError {
    /// The VideoRoom (or Janus) error code of a refusal.
    pub fn code(&self) -> Option<i64> {
        match self {
            JanusError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One WebSocket connection to Janus and (after [`Janus::create_session`]) its session.
pub struct Janus {
    ws: Ws,
    session: u64,
    next: u64,
    /// Messages that arrived while a request waited for its answer.
    early: Vec<Value>,
}

impl Janus {
    /// Connects to `ws_url` (`ws://…` or `wss://…`: [`confab_protocol::SfuInfo::ws_url`]).
    pub async fn connect(ws_url: &str) -> Result<Self, JanusError> {
        let unreachable = |why: String| JanusError::Unreachable {
            url: ws_url.to_owned(),
            why,
        };
        let mut req = ws_url
            .into_client_request()
            .map_err(|e| unreachable(e.to_string()))?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(1 << 20));
        let (ws, _) = tokio::time::timeout(
            ANSWER_WITHIN,
            tokio_tungstenite::connect_async_with_config(req, Some(config), true),
        )
        .await
        .map_err(|_| JanusError::Timeout("the connection"))?
        .map_err(|e| unreachable(e.to_string()))?;
        Ok(Janus {
            ws,
            session: 0,
            next: 1,
            early: Vec::new(),
        })
    }

    /// Makes the session every later request belongs to.
    pub async fn create_session(&mut self) -> Result<u64, JanusError> {
        let m = self
            .request("a session", json!({"janus": "create"}))
            .await?;
        self.session = m["data"]["id"]
            .as_u64()
            .ok_or_else(|| JanusError::Protocol("create answered without a session id".into()))?;
        Ok(self.session)
    }

    /// Sends one request; returns its transaction.
    pub async fn send(&mut self, mut msg: Value) -> Result<String, JanusError> {
        let tx = format!("t{}", self.next);
        self.next += 1;
        msg["transaction"] = json!(tx);
        if self.session != 0 {
            msg["session_id"] = json!(self.session);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .map_err(|e| JanusError::Lost(e.to_string()))?;
        Ok(tx)
    }

    /// The next message from Janus.
    pub async fn read(&mut self) -> Result<Value, JanusError> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str())
                        .map_err(|e| JanusError::Protocol(e.to_string()))
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(JanusError::Lost("the media server closed it".into()))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(JanusError::Lost(e.to_string())),
            }
        }
    }

    /// What arrived while requests waited for their answers (events for the caller).
    pub fn take_early(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.early)
    }

    /// Sends a request and waits for its final answer (skipping Janus's `ack`); whatever else
    /// arrives meanwhile is kept for [`Janus::take_early`].
    pub async fn request(&mut self, what: &'static str, msg: Value) -> Result<Value, JanusError> {
        let tx = self.send(msg).await?;
        let wait = async {
            loop {
                let m = self.read().await?;
                if m["transaction"].as_str() != Some(tx.as_str()) {
                    self.early.push(m);
                    continue;
                }
                match m["janus"].as_str() {
                    Some("ack") => continue,
                    Some("error") => {
                        return Err(JanusError::Refused {
                            what,
                            code: m["error"]["code"].as_i64().unwrap_or(0),
                            reason: text(&m["error"]["reason"]),
                        })
                    }
                    _ => return Ok(m),
                }
            }
        };
        tokio::time::timeout(ANSWER_WITHIN, wait)
            .await
            .map_err(|_| JanusError::Timeout(what))?
    }

    /// A new handle on the VideoRoom plugin.
    pub async fn attach(&mut self) -> Result<u64, JanusError> {
        let m = self
            .request(
                "a new handle",
                json!({"janus": "attach", "plugin": VIDEOROOM}),
            )
            .await?;
        m["data"]["id"]
            .as_u64()
            .ok_or_else(|| JanusError::Protocol("attach answered without a handle id".into()))
    }

    /// A VideoRoom request on a handle; its `plugindata.data`, or the plugin's refusal.
    pub async fn plugin(
        &mut self,
        what: &'static str,
        handle: u64,
        body: Value,
    ) -> Result<Value, JanusError> {
        let m = self
            .request(
                what,
                json!({"janus": "message", "handle_id": handle, "body": body}),
            )
            .await?;
        let data = m["plugindata"]["data"].clone();
        match data["error_code"].as_i64() {
            Some(code) => Err(JanusError::Refused {
                what,
                code,
                reason: text(&data["error"]),
            }),
            None => Ok(data),
        }
    }

    /// Ends the session (hanging up every handle at once) and closes the connection.
    pub async fn close(mut self) {
        if self.session != 0 {
            let _ = self.send(json!({"janus": "destroy"})).await;
        }
        let _ = self.ws.close(None).await;
    }
}

/// A reason Janus gave, bounded for a log or a message.
pub fn text(v: &Value) -> String {
    let s = v.as_str().unwrap_or("no reason given");
    confab_protocol::truncate(s, 200).into_owned()
}

/// A VideoRoom room as the signaling server makes it: private, PIN-protected, its `secret`
/// (needed to edit, kick from or destroy it) known only to the server (and never in its
/// `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct RoomSpec {
    pub room: u64,
    pub pin: String,
    pub secret: String,
}

impl std::fmt::Debug for RoomSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomSpec")
            .field("room", &self.room)
            .field("pin", &"<hidden>")
            .field("secret", &"<hidden>")
            .finish()
    }
}

/// Publishers one room takes at most (and subscriptions one publisher opens for the people
/// its call let in).
pub const ROOM_PUBLISHERS: usize = 64;

impl RoomSpec {
    /// Makes the room for at most `publishers`, unless it exists, and lets the `allowed`
    /// tokens join it (only they may). `admin_key` is Janus's VideoRoom `admin_key`, if it has
    /// one (then only who knows it can make rooms).
    pub async fn ensure(
        &self,
        janus: &mut Janus,
        handle: u64,
        admin_key: Option<&str>,
        allowed: &[String],
        publishers: usize,
    ) -> Result<(), JanusError> {
        let mut create = json!({"request": "create", "room": self.room, "pin": self.pin,
                                "allowed": allowed,
                                "secret": self.secret, "is_private": true,
                                "publishers": publishers,
                                "audiocodec": "opus", "videocodec": "h264,vp8",
                                "notify_joining": false,
                                // A subscription names the private id of a participant in
                                // the room: only who is let in can subscribe.
                                "require_pvtid": true});
        if let Some(key) = admin_key {
            create["admin_key"] = json!(key);
        }
        match janus.plugin("making the room", handle, create).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(ROOM_EXISTS) => {
                self.allow(janus, handle, true, allowed).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Adds `tokens` to the room's `allowed` list, or takes them off it (then they cannot
    /// join the room any more; who is in it stays until kicked). Answers the list as it is
    /// now (Janus answers it whole), or `None` when nothing was asked or Janus did not say.
    pub async fn allow(
        &self,
        janus: &mut Janus,
        handle: u64,
        add: bool,
        tokens: &[String],
    ) -> Result<Option<Vec<String>>, JanusError> {
        if tokens.is_empty() {
            return Ok(None);
        }
        let action = if add { "add" } else { "remove" };
        let allowed = json!({"request": "allowed", "room": self.room, "secret": self.secret,
                             "action": action, "allowed": tokens});
        let answer = janus
            .plugin("the room's allowed list", handle, allowed)
            .await?;
        Ok(allowed_list(&answer))
    }

    /// The room's `allowed` list as it is (asked with `enable`, which it is already: Janus
    /// answers the list whole), or `None` when Janus did not say.
    pub async fn listed(
        &self,
        janus: &mut Janus,
        handle: u64,
    ) -> Result<Option<Vec<String>>, JanusError> {
        let ask = json!({"request": "allowed", "room": self.room, "secret": self.secret,
                         "action": "enable"});
        let answer = janus.plugin("the room's allowed list", handle, ask).await?;
        Ok(allowed_list(&answer))
    }

    /// Kicks a participant (`feed`) out of the room, with every subscription it made.
    pub async fn kick(&self, janus: &mut Janus, handle: u64, feed: u64) -> Result<(), JanusError> {
        let kick = json!({"request": "kick", "room": self.room, "secret": self.secret, "id": feed});
        janus
            .plugin("kicking a feed", handle, kick)
            .await
            .map(|_| ())
    }

    /// Destroys the room (everyone still in it is told and let go); gone already is fine.
    pub async fn destroy(&self, janus: &mut Janus, handle: u64) -> Result<(), JanusError> {
        let destroy = json!({"request": "destroy", "room": self.room, "secret": self.secret});
        match janus.plugin("removing the room", handle, destroy).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(NO_SUCH_ROOM) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The `allowed` list in an answer to an `allowed` request, if it has one.
fn allowed_list(answer: &serde_json::Value) -> Option<Vec<String>> {
    answer["allowed"].as_array().map(|list| {
        list.iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect()
    })
}
