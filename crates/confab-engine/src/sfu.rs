//! Calls through an SFU: a Janus VideoRoom, spoken to over Janus's WebSocket API.
//!
//! The engine publishes its camera and microphone once (one peer connection, the *publisher*
//! link, which offers) and receives each other person through their own *subscriber* link
//! (Janus offers, we answer). Both are ordinary links (`link::run` with a [`Role`]); this task
//! only carries their descriptions and candidates to and from Janus, and tells the engine which
//! description belongs to which link. Who is in the call stays the call rules' decision: a
//! subscriber link is opened where the rules open a link.
//!
//! Janus is run by the operator and trusted as such; what it relays from other publishers (their
//! number) is bounded. Other room members are not trusted: a display name at Janus is anyone's to
//! claim, so a person's pictures are taken only from the feed that person named in a `feed`
//! signal (stamped with its sender by the signaling server).

use confab_call::layers::Want;
use confab_janus::{text, Janus, KEEPALIVE, NO_SUCH_ROOM, UNAUTHORIZED, VIDEOROOM};
use confab_protocol::call::{CallSignal, SdpType, SessionDescription};
use confab_protocol::{PeerId, SfuInfo};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// Whose description or candidate a message carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Our own publisher link.
    Publisher,
    /// The subscriber link receiving this person.
    Feed(PeerId),
}

#[derive(Debug)]
pub enum SfuCommand {
    /// Receive this person (once they have named their feed, and it is published).
    Subscribe(PeerId),
    /// This person says they publish as this feed (a `feed` signal, sender stamped by the
    /// signaling server).
    Announced(PeerId, u64),
    Unsubscribe(PeerId),
    /// This person is out of our call: the feed they named is no longer theirs to us.
    Forget(PeerId),
    /// Forward this layer of the person's camera to us.
    Layer(PeerId, Want),
    /// A description or candidate from one of our links, for Janus.
    Signal(Target, CallSignal),
}

#[derive(Debug)]
pub enum SfuEvent {
    /// We publish as this feed: tell the people in the call.
    Published(u64),
    /// A description from Janus for one of our links.
    Remote(Target, CallSignal),
    /// The session with the SFU failed; the task ends after this.
    Failed(SfuError),
    /// The SFU room let our feed go: the signaling server does that once we are no longer in
    /// the room (our signaling was away too long); the task ends after this.
    Kicked,
}

/// What can go wrong with the SFU: Janus's own errors.
pub type SfuError = confab_janus::JanusError;

/// Other publishers in one room that we keep track of: as many as a room takes.
const MAX_FEEDS: usize = confab_janus::ROOM_PUBLISHERS;
/// The signaling server makes a room's VideoRoom room when the room is made; a first joiner
/// can be here before it is. Joining is tried again this often, for this long.
const ROOM_RETRY: Duration = Duration::from_millis(250);
const ROOM_WAIT: Duration = Duration::from_secs(10);

pub struct SfuParams {
    pub info: SfuInfo,
    /// The feed to publish under (this membership's next: `SfuInfo::feed_for`).
    pub feed: Option<u64>,
    /// Our id in the room: the display name we publish under.
    pub me: PeerId,
}

/// Which feed at the SFU is whose. Anyone in the room can publish under any display name, and
/// can name any feed in a `feed` signal; a feed is taken as a person's only when both agree: the
/// person named it (their signal, stamped by the signaling server) and it is published under
/// their id (which only they had when they published it first).
#[derive(Debug, Default)]
struct Feeds {
    /// Feeds published at the SFU now, and their display names.
    present: HashMap<u64, String>,
    /// The feed each person named.
    named: HashMap<PeerId, u64>,
}

impl Feeds {
    /// Janus's list of publishers (at our join, and as they come).
    fn published(&mut self, list: &Value) {
        for p in list.as_array().into_iter().flatten() {
            let (Some(feed), Some(display)) = (p["id"].as_u64(), p["display"].as_str()) else {
                continue;
            };
            if self.present.len() >= MAX_FEEDS && !self.present.contains_key(&feed) {
                tracing::warn!("more than {MAX_FEEDS} publishers in the SFU room; ignoring more");
                break;
            }
            self.present
                .insert(feed, confab_protocol::truncate(display, 64).into_owned());
        }
    }

    fn gone(&mut self, feed: u64) {
        self.present.remove(&feed);
    }

    /// A person's word (a later one replaces the earlier: they published again).
    fn named(&mut self, who: PeerId, feed: u64) {
        if self.named.len() < MAX_FEEDS || self.named.contains_key(&who) {
            self.named.insert(who, feed);
        }
    }

    /// The person is out of our call: the feed they named is no longer theirs to us.
    fn forget(&mut self, who: &PeerId) {
        self.named.remove(who);
    }

    /// The feed to receive `who` from, if there is one both they and the SFU vouch for.
    fn feed_of(&self, who: &PeerId) -> Option<u64> {
        let feed = *self.named.get(who)?;
        (self.present.get(&feed)? == who.as_str()).then_some(feed)
    }
}

/// The session's state once joined.
struct Session {
    janus: Janus,
    room: u64,
    pin: String,
    publisher: u64,
    /// Our publisher's `private_id`, which our subscriptions name (rooms require it).
    private_id: u64,
    /// The room let our feed go.
    kicked: bool,
    feeds: Feeds,
    /// People we want to receive.
    wanted: HashMap<PeerId, Option<u64>>,
    /// Subscriber handle → whom it receives.
    handles: HashMap<u64, PeerId>,
    /// Transactions of attaches under way → for whom.
    attaching: HashMap<String, PeerId>,
    events: mpsc::Sender<SfuEvent>,
}

impl Session {
    /// Attaches a subscriber handle for everyone wanted whose feed is known.
    async fn subscribe_ready(&mut self) -> Result<(), SfuError> {
        let ready: Vec<PeerId> = self
            .wanted
            .iter()
            .filter(|(p, h)| h.is_none() && self.feeds.feed_of(p).is_some())
            .filter(|(p, _)| !self.attaching.values().any(|a| a == *p))
            .map(|(p, _)| p.clone())
            .collect();
        for p in ready {
            let tx = self
                .janus
                .send(json!({"janus": "attach", "plugin": VIDEOROOM}))
                .await?;
            self.attaching.insert(tx, p);
        }
        Ok(())
    }

    fn handle_of(&self, target: &Target) -> Option<u64> {
        match target {
            Target::Publisher => Some(self.publisher),
            Target::Feed(p) => self.wanted.get(p).copied().flatten(),
        }
    }

    async fn command(&mut self, cmd: SfuCommand) -> Result<(), SfuError> {
        match cmd {
            SfuCommand::Subscribe(p) => {
                self.wanted.entry(p).or_insert(None);
                self.subscribe_ready().await?;
            }
            SfuCommand::Announced(p, feed) => {
                self.feeds.named(p, feed);
                self.subscribe_ready().await?;
            }
            SfuCommand::Unsubscribe(p) => {
                if let Some(Some(h)) = self.wanted.remove(&p) {
                    self.handles.remove(&h);
                    self.janus
                        .send(json!({"janus": "detach", "handle_id": h}))
                        .await?;
                }
            }
            SfuCommand::Forget(p) => self.feeds.forget(&p),
            SfuCommand::Layer(p, want) => {
                if let Some(Some(h)) = self.wanted.get(&p) {
                    // Janus numbers a publisher's encodings from the lowest (0); ours are
                    // listed full size first, which it reads as high to low.
                    let substream = match want {
                        Want::Full => 1,
                        Want::Half => 0,
                    };
                    let body = json!({"request": "configure", "substream": substream});
                    self.janus
                        .send(json!({"janus": "message", "handle_id": h, "body": body}))
                        .await?;
                }
            }
            SfuCommand::Signal(target, sig) => {
                let Some(handle) = self.handle_of(&target) else {
                    tracing::debug!(?target, "nothing at the SFU for this message yet");
                    return Ok(());
                };
                match sig {
                    CallSignal::Description { description } => {
                        let kind = match description.kind {
                            SdpType::Offer => "offer",
                            SdpType::Answer => "answer",
                        };
                        let body = match (&target, description.kind) {
                            (Target::Publisher, SdpType::Offer) => {
                                // Which of our video streams is the shared screen, for those
                                // who receive it (Janus renames tracks).
                                json!({"request": "publish", "audio": true, "video": true,
                                       "descriptions": descriptions(&description.sdp)})
                            }
                            (Target::Feed(_), SdpType::Answer) => {
                                json!({"request": "start", "room": self.room})
                            }
                            _ => {
                                tracing::debug!(?target, "a description Janus does not take");
                                return Ok(());
                            }
                        };
                        let jsep = json!({"type": kind, "sdp": description.sdp});
                        self.janus
                            .send(json!({"janus": "message", "handle_id": handle, "body": body, "jsep": jsep}))
                            .await?;
                    }
                    CallSignal::Candidate { candidate } => {
                        let c = json!({
                            "candidate": candidate.candidate,
                            "sdpMid": candidate.sdp_mid,
                            "sdpMLineIndex": candidate.sdp_m_line_index,
                        });
                        self.janus
                            .send(json!({"janus": "trickle", "handle_id": handle, "candidate": c}))
                            .await?;
                    }
                    // Verification is between two people's own connections: not through an SFU.
                    _ => {}
                }
            }
        }
        Ok(())
    }

    async fn tell(&self, ev: SfuEvent) -> Result<(), SfuError> {
        self.events
            .send(ev)
            .await
            .map_err(|_| SfuError::Lost("the engine stopped".into()))
    }

    /// One message from Janus.
    async fn message(&mut self, m: Value) -> Result<(), SfuError> {
        let tx = m["transaction"].as_str().unwrap_or("");
        if let Some(p) = self.attaching.remove(tx) {
            let Some(handle) = m["data"]["id"].as_u64() else {
                tracing::warn!("the SFU refused a handle for {p}: {}", m["error"]);
                return Ok(());
            };
            let feed = self.feeds.feed_of(&p);
            let (Some(slot), Some(feed)) = (self.wanted.get_mut(&p), feed) else {
                // No longer wanted (or gone): let the handle go.
                self.janus
                    .send(json!({"janus": "detach", "handle_id": handle}))
                    .await?;
                return Ok(());
            };
            *slot = Some(handle);
            self.handles.insert(handle, p);
            let body = json!({"request": "join", "ptype": "subscriber", "room": self.room,
                              "pin": self.pin, "feed": feed,
                              "private_id": self.private_id});
            self.janus
                .send(json!({"janus": "message", "handle_id": handle, "body": body}))
                .await?;
            return Ok(());
        }
        let sender = m["sender"].as_u64();
        match m["janus"].as_str() {
            Some("event") => {}
            Some("hangup") | Some("detached") => {
                tracing::debug!(?sender, "SFU: {}", m["janus"]);
                return Ok(());
            }
            _ => return Ok(()),
        }
        let data = &m["plugindata"]["data"];
        let target = match sender {
            Some(h) if h == self.publisher => Target::Publisher,
            Some(h) => match self.handles.get(&h) {
                Some(p) => Target::Feed(p.clone()),
                None => return Ok(()),
            },
            None => return Ok(()),
        };
        if let Some(code) = data["error_code"].as_i64() {
            tracing::warn!(?target, code, "the SFU refused: {}", text(&data["error"]));
        }
        if target == Target::Publisher {
            if data["publishers"].is_array() {
                self.feeds.published(&data["publishers"]);
                self.subscribe_ready().await?;
            }
            for key in ["unpublished", "leaving", "kicked"] {
                if let Some(feed) = data[key].as_u64() {
                    self.feeds.gone(feed);
                }
            }
            if data["leaving"] == "ok" && data["reason"] == "kicked" {
                self.kicked = true;
            }
        }
        if let (Some(kind), Some(sdp)) = (m["jsep"]["type"].as_str(), m["jsep"]["sdp"].as_str()) {
            let kind = match kind {
                "offer" => SdpType::Offer,
                "answer" => SdpType::Answer,
                _ => return Ok(()),
            };
            // Janus names every track `janusMID`: give the shared screen's its word back.
            let shares: Vec<&str> = data["streams"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["feed_description"] == SHARE)
                .filter_map(|s| s["mid"].as_str())
                .collect();
            let description = SessionDescription {
                kind,
                sdp: confab_call::sdp::mark_shares(sdp, &shares),
            };
            self.tell(SfuEvent::Remote(
                target,
                CallSignal::Description { description },
            ))
            .await?;
        }
        Ok(())
    }
}

/// Joins the SFU room as a publisher (waiting for the signaling server to have made it).
async fn join(params: &SfuParams, events: mpsc::Sender<SfuEvent>) -> Result<Session, SfuError> {
    let mut janus = Janus::connect(params.info.ws_url()).await?;
    janus.create_session().await?;
    let publisher = janus.attach().await?;
    let (room, pin) = (params.info.room, params.info.pin.clone());
    let mut join = json!({"request": "join", "ptype": "publisher", "room": room, "pin": pin,
                          "display": params.me.as_str()});
    if let Some(feed) = params.feed {
        // The feed the signaling server gave us (and kicks once we have left the room).
        join["id"] = json!(feed);
    }
    if let Some(token) = &params.info.token {
        // Ours: the server lets it in when it makes the room (or at once, if it is made).
        join["token"] = json!(token);
    }
    let waiting = tokio::time::Instant::now();
    let joined = loop {
        match janus
            .plugin("joining the room", publisher, join.clone())
            .await
        {
            Err(e)
                if matches!(e.code(), Some(NO_SUCH_ROOM | UNAUTHORIZED))
                    && waiting.elapsed() < ROOM_WAIT =>
            {
                tokio::time::sleep(ROOM_RETRY).await;
            }
            r => break r?,
        }
    };
    let our_feed = joined["id"]
        .as_u64()
        .ok_or_else(|| SfuError::Protocol("joined without a feed id".into()))?;
    // Every subscription names it: kicking our feed ends them too.
    let private_id = joined["private_id"].as_u64().unwrap_or(0);
    let mut s = Session {
        janus,
        room,
        pin,
        publisher,
        private_id,
        kicked: false,
        feeds: Feeds::default(),
        wanted: HashMap::new(),
        handles: HashMap::new(),
        attaching: HashMap::new(),
        events,
    };
    s.feeds.published(&joined["publishers"]);
    s.tell(SfuEvent::Published(our_feed)).await?;
    Ok(s)
}

/// Runs the session with the SFU until the engine lets go of it (drops the command sender).
pub async fn run(
    params: SfuParams,
    mut commands: mpsc::Receiver<SfuCommand>,
    events: mpsc::Sender<SfuEvent>,
) {
    let result = async {
        let mut s = join(&params, events.clone()).await?;
        for m in s.janus.take_early() {
            s.message(m).await?;
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            if s.kicked {
                let _ = events.send(SfuEvent::Kicked).await;
                break;
            }
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(c) => s.command(c).await?,
                    None => break,
                },
                m = s.janus.read() => s.message(m?).await?,
                _ = keepalive.tick() => {
                    s.janus.send(json!({"janus": "keepalive"})).await?;
                }
            }
        }
        // Leaving: destroying the session hangs up every handle at once.
        s.janus.close().await;
        Ok::<(), SfuError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!("SFU session: {e}");
        let _ = events.send(SfuEvent::Failed(e)).await;
    }
}

/// The description a publisher gives its shared screen's stream (`publish`'s `descriptions`),
/// which Janus hands to subscribers as `feed_description`.
const SHARE: &str = "share";

/// Each media section of our offer: its mid and, for the shared screen's, `share` (our track
/// ids say which: `confab-LINK-share-SSRC`).
fn descriptions(sdp: &str) -> Value {
    let mut out = Vec::new();
    for section in sdp.split("\nm=").skip(1) {
        let mid = section
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("a=mid:"));
        let track = section
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("a=msid:"))
            .and_then(|m| m.split_whitespace().nth(1));
        if let (Some(mid), Some(track)) = (mid, track) {
            let what = match crate::media::Stream::of_track_id(track) {
                crate::media::Stream::Share => SHARE,
                crate::media::Stream::Camera if section.starts_with("video") => "camera",
                crate::media::Stream::Camera => "microphone",
            };
            out.push(json!({"mid": mid, "description": what}));
        }
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pubs(list: &[(u64, &str)]) -> Value {
        Value::Array(
            list.iter()
                .map(|(id, d)| json!({"id": id, "display": d}))
                .collect(),
        )
    }

    #[test]
    fn a_feed_is_someones_when_they_named_it_and_publish_it_under_their_id() {
        let mut f = Feeds::default();
        f.published(&pubs(&[(11, "ann")]));
        assert_eq!(f.feed_of(&"ann".into()), None, "Ann has not named it");
        f.named("ann".into(), 11);
        assert_eq!(f.feed_of(&"ann".into()), Some(11));
        f.gone(11);
        assert_eq!(f.feed_of(&"ann".into()), None, "unpublished");
        // Ann publishes again (a rejoin): her new word and feed replace the old.
        f.named("ann".into(), 12);
        f.published(&pubs(&[(12, "ann")]));
        assert_eq!(f.feed_of(&"ann".into()), Some(12));
    }

    /// Mallory publishes her own pictures under Ann's id as display name: nobody takes them
    /// for Ann's, since Ann named another feed.
    #[test]
    fn spoofed_display_at_the_sfu() {
        let mut f = Feeds::default();
        f.published(&pubs(&[(66, "ann")]));
        f.published(&pubs(&[(11, "ann")]));
        f.named("ann".into(), 11);
        assert_eq!(f.feed_of(&"ann".into()), Some(11));
        // Mallory also claims feed 66 is hers: published under another name, so not hers.
        f.named("mallory".into(), 66);
        assert_eq!(f.feed_of(&"mallory".into()), None);
    }

    /// Mallory names Ann's feed as her own, to show Ann's pictures under her name (or to be
    /// subscribed twice): the feed is published under Ann's id, so it is not Mallory's.
    #[test]
    fn claimed_foreign_feed() {
        let mut f = Feeds::default();
        f.published(&pubs(&[(11, "ann"), (22, "mallory")]));
        f.named("ann".into(), 11);
        f.named("mallory".into(), 11);
        assert_eq!(f.feed_of(&"mallory".into()), None);
        assert_eq!(f.feed_of(&"ann".into()), Some(11));
    }

    /// Ann hangs up (staying in the room), and Mallory publishes under the feed Ann had named,
    /// with Ann's id as display name: when Ann calls again, nobody takes it for hers before she
    /// names her new one (a member never publishes one feed twice: `SfuInfo::feed_for`).
    #[test]
    fn taken_over_feed_after_a_hang_up() {
        let mut f = Feeds::default();
        f.published(&pubs(&[(11, "ann")]));
        f.named("ann".into(), 11);
        f.forget(&"ann".into());
        f.gone(11);
        f.published(&pubs(&[(11, "ann")]));
        assert_eq!(f.feed_of(&"ann".into()), None);
        f.named("ann".into(), 12);
        f.published(&pubs(&[(12, "ann")]));
        assert_eq!(f.feed_of(&"ann".into()), Some(12));
    }

    /// A room member (or a crafted publisher list) cannot grow what is kept without end.
    #[test]
    fn feed_flood() {
        let mut f = Feeds::default();
        let many: Vec<(u64, String)> = (0..10_000).map(|i| (i, format!("p{i}"))).collect();
        let list: Vec<(u64, &str)> = many.iter().map(|(i, d)| (*i, d.as_str())).collect();
        f.published(&pubs(&list));
        for i in 0..10_000u64 {
            f.named(PeerId(format!("p{i}")), i);
        }
        assert!(f.present.len() <= MAX_FEEDS && f.named.len() <= MAX_FEEDS);
        let long = "x".repeat(10_000);
        let mut g = Feeds::default();
        g.published(&pubs(&[(1, &long)]));
        assert!(g.present[&1].len() < 100);
    }

    #[test]
    fn the_shared_screen_keeps_its_name_through_janus() {
        let ours = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=msid:confab-1 confab-1-audio-5\r\n\
                    m=video 9 X 102\r\na=mid:1\r\na=msid:confab-1 confab-1-video-6\r\n\
                    m=video 9 X 102\r\na=mid:2\r\na=msid:confab-1 confab-1-share-7\r\n";
        assert_eq!(
            descriptions(ours),
            json!([{"mid": "0", "description": "microphone"},
                   {"mid": "1", "description": "camera"},
                   {"mid": "2", "description": "share"}])
        );
        let janus = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=msid:janus janus0\r\n\
                     m=video 9 X 102\r\na=mid:1\r\na=msid:janus janus1\r\n\
                     m=video 9 X 102\r\na=mid:2\r\na=msid:janus janus2\r\n";
        let marked = confab_call::sdp::mark_shares(janus, &["2"]);
        assert!(
            marked.contains("a=msid:janus janus2-share\r\nm=")
                || marked.ends_with("janus2-share\r\n")
        );
        assert!(marked.contains("a=msid:janus janus1\r\n"));
        use crate::media::Stream;
        assert_eq!(Stream::of_track_id("janus2-share"), Stream::Share);
        assert_eq!(Stream::of_track_id("janus1"), Stream::Camera);
        assert_eq!(confab_call::sdp::mark_shares(janus, &[]), janus);
        // Nothing else changes, line endings included.
        assert_eq!(marked.replace("janus2-share", "janus2"), janus);
    }
}
