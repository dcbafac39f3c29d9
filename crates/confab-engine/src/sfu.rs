//! Calls through an SFU: a Janus VideoRoom, spoken to over Janus's WebSocket API.
//!
//! The engine publishes its camera and microphone once (one peer connection, the *publisher*
//! link, which offers) and **subscribes for the people its call let in**: for each of them it
//! opens, in its own Janus session and with its own `private_id`, a subscriber handle on its
//! own feed, and hands Janus's offer to that person over Confab's signaling (`sfu-offer`). The
//! person answers on a link of their own (a *subscriber* link, `Role::Subscribe`) and their
//! answer and candidates come back the same way (`sfu-answer`, `sfu-candidate`); this task
//! passes them to Janus on that handle. Media then flows between Janus and that person.
//!
//! Who receives us stays the call rules' decision: the actor keeps the set of people it admits
//! (linked by the rules) in a `watch`, which this task follows — a change is never lost,
//! however busy the task is — opening a subscription for each newcomer and detaching the
//! handle of whoever left it (the media stops at once). Someone who left the room while the
//! rules wait for their rejoin is *held*: their subscription is paused at Janus (nothing of
//! ours reaches them), and resumed when they are back under a new id with proof that it is
//! them (the subscription and their link carry over: no new negotiation, the media resumes
//! with the next picture; one they never answered is opened afresh for the new id).
//! Janus is run by the operator and trusted as such; room members are not. Everything a person
//! sends about a subscription is taken only for the handle opened for that person (the
//! signaling server stamps who sent it), and what each one can make us send to Janus is
//! bounded.

use confab_call::layers::Want;
use confab_janus::{text, Janus, KEEPALIVE, NO_SUCH_FEED, NO_SUCH_ROOM, UNAUTHORIZED, VIDEOROOM};
use confab_protocol::call::{CallSignal, IceCandidate, SdpType, SessionDescription};
use confab_protocol::{PeerId, SfuInfo};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The people our call lets in: the session subscribes for each of them.
pub type Admitted = BTreeMap<PeerId, Admission>;

/// How one person is let in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// Out of the room for now (the call rules wait for their rejoin): nothing of ours goes to
    /// them until they are back.
    pub held: bool,
    /// The id they had before their rejoin: a subscription opened for it is theirs.
    pub was: Option<PeerId>,
}

#[derive(Debug)]
pub enum SfuCommand {
    /// Their answer to our offer of subscription `sub`.
    Answer(PeerId, u64, String),
    /// A candidate of their side of subscription `sub`.
    Candidate(PeerId, u64, IceCandidate),
    /// They ask for this layer of our camera on subscription `sub`.
    Layer(PeerId, u64, Want),
    /// A description or candidate of our publisher link, for Janus.
    Publish(CallSignal),
}

#[derive(Debug)]
pub enum SfuEvent {
    /// Janus's answer (or a candidate) for our publisher link.
    Remote(CallSignal),
    /// Janus's offer of our media to this person, on subscription `sub` (our handle): send it
    /// to them. `shares`: the media sections that carry our screen.
    Offer {
        peer: PeerId,
        sub: u64,
        sdp: String,
        shares: Vec<String>,
    },
    /// The session with the SFU failed; the task ends after this.
    Failed(SfuError),
    /// The SFU room let our feed go (or was removed): the signaling server does that once we
    /// are no longer in the room (our signaling was away too long); the task ends after this.
    Kicked,
}

/// What can go wrong with the SFU: Janus's own errors.
pub type SfuError = confab_janus::JanusError;

/// People subscribed for at once: as many as a room's publishers.
pub(crate) const MAX_ADMITTED: usize = confab_janus::ROOM_PUBLISHERS;
/// Candidates one person's side of a subscription may send (a link gathers a handful), and
/// how long one may be.
const MAX_TRICKLES: u32 = 64;
const MAX_CANDIDATE: usize = 1024;
/// A person's asks for another layer reach Janus at most this often.
const LAYER_EVERY: Duration = Duration::from_secs(1);
/// The signaling server makes a room's VideoRoom room when the room is made; a first joiner
/// can be here before it is. Joining is tried again this often, for this long.
const ROOM_RETRY: Duration = Duration::from_millis(250);
const ROOM_WAIT: Duration = Duration::from_secs(10);
/// Janus takes a subscription of our feed once our publish is up; one asked for just before
/// is tried again this often, this many times.
const FEED_RETRY: Duration = Duration::from_millis(250);
const FEED_TRIES: u32 = 20;
/// A subscription that could not be opened (refused, or our feed never up) is tried afresh
/// after this.
const REATTACH: Duration = Duration::from_secs(2);

pub struct SfuParams {
    pub info: SfuInfo,
    /// Our id in the room: the display name we publish under.
    pub me: PeerId,
    /// Who our call lets in (the actor's; followed, never missed).
    pub admitted: watch::Receiver<Admitted>,
    /// How many subscriptions we hold open for them, for whoever watches (tests).
    pub subscriptions: Arc<AtomicUsize>,
}

/// One person's subscription to our feed.
#[derive(Debug, Default)]
struct Sub {
    /// Paused at Janus (or to be, once attached): see [`Admission::held`].
    held: bool,
    /// Our handle at Janus (the subscription's `sub`), once attached.
    handle: Option<u64>,
    attaching: bool,
    /// Joins refused because our feed was not up yet.
    tries: u32,
    trickles: u32,
    layer: Option<Want>,
    layer_at: Option<Instant>,
    /// Janus's offer went to them and waits for their answer (one answer an offer).
    offered: bool,
    /// An answer of theirs was taken: media flows to them (or is paused).
    answered: bool,
}

/// The subscriptions we hold for the people our call let in: the pure part of the session.
#[derive(Debug, Default)]
struct Subs {
    admitted: HashMap<PeerId, Sub>,
    handles: HashMap<u64, PeerId>,
}

impl Subs {
    /// Admits a person; false if already in or there is no room for more.
    fn admit(&mut self, p: PeerId) -> bool {
        if self.admitted.contains_key(&p) || self.admitted.len() >= MAX_ADMITTED {
            return false;
        }
        self.admitted.insert(p, Sub::default());
        true
    }

    /// The people admitted.
    fn people(&self) -> Vec<PeerId> {
        self.admitted.keys().cloned().collect()
    }

    /// How many subscriptions are open and not held: ours flows on each of them.
    fn open(&self) -> usize {
        self.handles
            .values()
            .filter(|p| self.admitted.get(*p).is_some_and(|s| !s.held))
            .count()
    }

    /// `old` is back as `new` (proven by the call rules): their subscription carries over.
    /// False if there is none of `old`'s, or `new` has one already.
    fn rename(&mut self, old: &PeerId, new: &PeerId) -> bool {
        if self.admitted.contains_key(new) {
            return false;
        }
        let Some(sub) = self.admitted.remove(old) else {
            return false;
        };
        if let Some(h) = sub.handle {
            self.handles.insert(h, new.clone());
        }
        self.admitted.insert(new.clone(), sub);
        true
    }

    /// Holds or lets go `p`'s subscription: the handle to pause (`true`) or resume at Janus,
    /// if one is attached and that changes.
    fn hold(&mut self, p: &PeerId, held: bool) -> Option<(u64, bool)> {
        let s = self.admitted.get_mut(p)?;
        if s.held == held {
            return None;
        }
        s.held = held;
        s.handle.map(|h| (h, held))
    }

    /// Lets a person go; the handle to detach, if one was attached.
    fn release(&mut self, p: &PeerId) -> Option<u64> {
        let h = self.admitted.remove(p)?.handle?;
        self.handles.remove(&h);
        Some(h)
    }

    /// The people to attach a handle for now (each marked as attaching); none for someone
    /// held (out of the room, nothing to offer them through).
    fn take_unattached(&mut self) -> Vec<PeerId> {
        let mut out = Vec::new();
        for (p, s) in &mut self.admitted {
            if s.handle.is_none() && !s.attaching && !s.held {
                s.attaching = true;
                out.push(p.clone());
            }
        }
        out
    }

    /// A handle attached for `p`: true to use it, false to let it go (released meanwhile).
    fn attached(&mut self, p: &PeerId, handle: u64) -> bool {
        match self.admitted.get_mut(p) {
            Some(s) if s.handle.is_none() => {
                s.handle = Some(handle);
                s.attaching = false;
                self.handles.insert(handle, p.clone());
                true
            }
            _ => false,
        }
    }

    /// An attach refused: to be tried again with the next chance.
    fn not_attached(&mut self, p: &PeerId) {
        if let Some(s) = self.admitted.get_mut(p) {
            s.attaching = false;
        }
    }

    fn whose(&self, handle: u64) -> Option<&PeerId> {
        self.handles.get(&handle)
    }

    /// `p`'s subscription, if `sub` is the one we opened for them.
    fn of(&mut self, p: &PeerId, sub: u64) -> Option<&mut Sub> {
        self.admitted.get_mut(p).filter(|s| s.handle == Some(sub))
    }

    /// Janus's offer on `handle` goes to its person: their answer is awaited.
    fn offered(&mut self, handle: u64) {
        if let Some(s) = self
            .handles
            .get(&handle)
            .and_then(|p| self.admitted.get_mut(p))
        {
            s.offered = true;
        }
    }

    /// Whether `p`'s answer on `sub` is the one an offer awaits.
    fn answer(&mut self, p: &PeerId, sub: u64) -> bool {
        match self.of(p, sub) {
            Some(s) if s.offered => {
                s.offered = false;
                s.answered = true;
                true
            }
            _ => false,
        }
    }

    /// Whether `p`'s subscription was ever answered.
    fn answered(&self, p: &PeerId) -> bool {
        self.admitted.get(p).is_some_and(|s| s.answered)
    }

    /// Opens `p`'s subscription afresh (its offer went to an id they no longer have, or
    /// nowhere): the handle to detach, if one was attached.
    fn renew(&mut self, p: &PeerId) -> Option<u64> {
        let s = self.admitted.get_mut(p)?;
        let h = s.handle;
        *s = Sub {
            held: s.held,
            ..Sub::default()
        };
        if let Some(h) = h {
            self.handles.remove(&h);
        }
        h
    }

    /// Whether `p` may trickle one more candidate on `sub`.
    fn trickle(&mut self, p: &PeerId, sub: u64) -> bool {
        match self.of(p, sub) {
            Some(s) if s.trickles < MAX_TRICKLES => {
                s.trickles += 1;
                true
            }
            _ => false,
        }
    }

    /// Whether `p`'s ask for `want` on `sub` at `now` changes the layer we forward them (at
    /// most once per `LAYER_EVERY`).
    fn layer(&mut self, p: &PeerId, sub: u64, want: Want, now: Instant) -> bool {
        match self.of(p, sub) {
            Some(s)
                if s.layer != Some(want) && s.layer_at.is_none_or(|at| now >= at + LAYER_EVERY) =>
            {
                s.layer = Some(want);
                s.layer_at = Some(now);
                true
            }
            _ => false,
        }
    }

    /// A subscription that could not be opened: its handle is let go and it is attached
    /// afresh later. The handle to detach.
    fn failed(&mut self, handle: u64) -> Option<u64> {
        let p = self.handles.remove(&handle)?;
        if let Some(s) = self.admitted.get_mut(&p) {
            *s = Sub {
                held: s.held,
                ..Sub::default()
            };
        }
        Some(handle)
    }

    /// A join on `handle` refused because our feed is not up yet: whether to try again.
    fn retry(&mut self, handle: u64) -> bool {
        let Some(p) = self.handles.get(&handle) else {
            return false;
        };
        match self.admitted.get_mut(p) {
            Some(s) if s.tries < FEED_TRIES => {
                s.tries += 1;
                true
            }
            _ => false,
        }
    }
}

/// The session's state once joined.
struct Session {
    janus: Janus,
    room: u64,
    pin: String,
    publisher: u64,
    feed: u64,
    /// Our publisher's `private_id`, which our subscriptions name (rooms require it).
    private_id: u64,
    /// Our publish is up at Janus (its `webrtcup`): our feed can be subscribed to.
    up: bool,
    /// The room let our feed go.
    kicked: bool,
    subs: Subs,
    /// Transactions of attaches under way → for whom.
    attaching: HashMap<String, PeerId>,
    /// Subscriber joins to send again (our feed was not up yet), and when; subscriptions to
    /// open afresh then too.
    rejoin: Vec<u64>,
    rejoin_at: Option<Instant>,
    admitted: watch::Receiver<Admitted>,
    subscriptions: Arc<AtomicUsize>,
    events: mpsc::Sender<SfuEvent>,
}

impl Session {
    /// Follows who our call lets in: a subscription for each newcomer, none for who left,
    /// the one of someone back under a new id carried over, paused while they are held. A
    /// subscription never answered (its offer went to their old id, or was on its way) is
    /// opened afresh for the new id rather than carried over.
    async fn reconcile(&mut self) -> Result<(), SfuError> {
        let want = self.admitted.borrow_and_update().clone();
        for (p, a) in &want {
            if let Some(was) = &a.was {
                if self.subs.rename(was, p) && !self.subs.answered(p) {
                    self.renew(p).await?;
                }
            }
        }
        for p in self.subs.people() {
            if !want.contains_key(&p) {
                if let Some(h) = self.subs.release(&p) {
                    self.janus
                        .send(json!({"janus": "detach", "handle_id": h}))
                        .await?;
                }
            }
        }
        for (p, a) in want {
            self.subs.admit(p.clone());
            match self.subs.hold(&p, a.held) {
                // (Janus answers `paused` / `started`; a resumed subscription gets the next
                // keyframe, which Janus asks of our publisher.)
                Some((h, true)) => {
                    self.on_handle(h, json!({"request": "pause"}), None).await?;
                }
                Some((h, false)) if self.subs.answered(&p) => {
                    self.on_handle(h, json!({"request": "start"}), None).await?;
                }
                Some(_) => self.renew(&p).await?,
                None => {}
            }
        }
        self.count();
        self.attach_admitted().await
    }

    /// Opens `p`'s subscription afresh: its handle is let go, a new one attached.
    async fn renew(&mut self, p: &PeerId) -> Result<(), SfuError> {
        if let Some(h) = self.subs.renew(p) {
            self.janus
                .send(json!({"janus": "detach", "handle_id": h}))
                .await?;
        }
        Ok(())
    }

    fn count(&self) {
        self.subscriptions
            .store(self.subs.open(), Ordering::Relaxed);
    }

    /// A subscription that could not be opened is let go and tried afresh later.
    async fn failed(&mut self, handle: u64) -> Result<(), SfuError> {
        if let Some(h) = self.subs.failed(handle) {
            self.janus
                .send(json!({"janus": "detach", "handle_id": h}))
                .await?;
        }
        self.count();
        self.rejoin_at.get_or_insert(Instant::now() + REATTACH);
        Ok(())
    }

    /// Attaches a subscriber handle for everyone admitted who has none, once we publish.
    async fn attach_admitted(&mut self) -> Result<(), SfuError> {
        if !self.up {
            return Ok(());
        }
        for p in self.subs.take_unattached() {
            let tx = self
                .janus
                .send(json!({"janus": "attach", "plugin": VIDEOROOM}))
                .await?;
            self.attaching.insert(tx, p);
        }
        Ok(())
    }

    /// Subscribes `handle` to our own feed, naming our own private id.
    async fn join_own_feed(&mut self, handle: u64) -> Result<(), SfuError> {
        let body = json!({"request": "join", "ptype": "subscriber", "room": self.room,
                          "pin": self.pin, "feed": self.feed,
                          "private_id": self.private_id});
        self.janus
            .send(json!({"janus": "message", "handle_id": handle, "body": body}))
            .await?;
        Ok(())
    }

    async fn on_handle(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<(), SfuError> {
        let mut msg = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(jsep) = jsep {
            msg["jsep"] = jsep;
        }
        self.janus.send(msg).await?;
        Ok(())
    }

    async fn command(&mut self, cmd: SfuCommand) -> Result<(), SfuError> {
        match cmd {
            SfuCommand::Answer(p, sub, sdp) => {
                if self.subs.answer(&p, sub) {
                    let body = json!({"request": "start", "room": self.room});
                    self.on_handle(sub, body, Some(json!({"type": "answer", "sdp": sdp})))
                        .await?;
                } else {
                    tracing::debug!("{p} answered no offer of a subscription of theirs");
                }
            }
            SfuCommand::Candidate(p, sub, c) => {
                let fits = c.candidate.len() <= MAX_CANDIDATE
                    && c.sdp_mid.as_ref().is_none_or(|m| m.len() <= 32);
                if fits && self.subs.trickle(&p, sub) {
                    self.trickle(sub, &c).await?;
                }
            }
            SfuCommand::Layer(p, sub, want) => {
                if self.subs.layer(&p, sub, want, Instant::now()) {
                    // Janus numbers a publisher's encodings from the lowest (0); ours are
                    // listed full size first, which it reads as high to low.
                    let substream = match want {
                        Want::Full => 1,
                        Want::Half => 0,
                    };
                    let body = json!({"request": "configure", "substream": substream});
                    self.on_handle(sub, body, None).await?;
                }
            }
            SfuCommand::Publish(CallSignal::Description { description })
                if description.kind == SdpType::Offer =>
            {
                // Which of our video streams is the shared screen, for those who receive it
                // (Janus renames tracks).
                let body = json!({"request": "publish", "audio": true, "video": true,
                                  "descriptions": descriptions(&description.sdp)});
                let jsep = json!({"type": "offer", "sdp": description.sdp});
                self.on_handle(self.publisher, body, Some(jsep)).await?;
            }
            SfuCommand::Publish(CallSignal::Candidate { candidate }) => {
                self.trickle(self.publisher, &candidate).await?;
            }
            // Verification is between two people's own connections: not through an SFU.
            SfuCommand::Publish(_) => {}
        }
        Ok(())
    }

    async fn trickle(&mut self, handle: u64, c: &IceCandidate) -> Result<(), SfuError> {
        let c = json!({
            "candidate": c.candidate,
            "sdpMid": c.sdp_mid,
            "sdpMLineIndex": c.sdp_m_line_index,
        });
        self.janus
            .send(json!({"janus": "trickle", "handle_id": handle, "candidate": c}))
            .await?;
        Ok(())
    }

    async fn tell(&self, ev: SfuEvent) -> Result<(), SfuError> {
        self.events
            .send(ev)
            .await
            .map_err(|_| SfuError::Lost("the engine stopped".into()))
    }

    /// Sends again the joins Janus refused before our feed was up, and opens afresh the
    /// subscriptions that could not be opened.
    async fn rejoin_due(&mut self) -> Result<(), SfuError> {
        self.rejoin_at = None;
        for h in std::mem::take(&mut self.rejoin) {
            if self.subs.whose(h).is_some() {
                self.join_own_feed(h).await?;
            }
        }
        self.attach_admitted().await
    }

    /// One message from Janus.
    async fn message(&mut self, m: Value) -> Result<(), SfuError> {
        let tx = m["transaction"].as_str().unwrap_or("");
        if let Some(p) = self.attaching.remove(tx) {
            let Some(handle) = m["data"]["id"].as_u64() else {
                tracing::warn!("the SFU refused a handle for {p}: {}", m["error"]);
                self.subs.not_attached(&p);
                self.rejoin_at.get_or_insert(Instant::now() + REATTACH);
                return Ok(());
            };
            if self.subs.attached(&p, handle) {
                self.count();
                self.join_own_feed(handle).await?;
            } else {
                // No longer admitted: let the handle go.
                self.janus
                    .send(json!({"janus": "detach", "handle_id": handle}))
                    .await?;
            }
            return Ok(());
        }
        let Some(sender) = m["sender"].as_u64() else {
            return Ok(());
        };
        match m["janus"].as_str() {
            Some("event") => {}
            Some("webrtcup") if sender == self.publisher => {
                self.up = true;
                return self.attach_admitted().await;
            }
            Some(other) => {
                tracing::debug!(sender, "SFU: {other}");
                return Ok(());
            }
            None => return Ok(()),
        }
        let data = &m["plugindata"]["data"];
        if sender == self.publisher {
            if let Some(code) = data["error_code"].as_i64() {
                tracing::warn!(
                    code,
                    "the SFU refused our publish: {}",
                    text(&data["error"])
                );
            }
            // The server removes our room once we are no longer in the Confab room (our
            // signaling was away too long).
            if data["videoroom"] == "destroyed"
                || (data["leaving"] == "ok" && data["reason"] == "kicked")
            {
                self.kicked = true;
            }
            if let (Some("answer"), Some(sdp)) =
                (m["jsep"]["type"].as_str(), m["jsep"]["sdp"].as_str())
            {
                let description = SessionDescription {
                    kind: SdpType::Answer,
                    sdp: sdp.to_owned(),
                };
                self.tell(SfuEvent::Remote(CallSignal::Description { description }))
                    .await?;
            }
            return Ok(());
        }
        let Some(peer) = self.subs.whose(sender).cloned() else {
            return Ok(());
        };
        match data["error_code"].as_i64() {
            Some(NO_SUCH_FEED) if self.subs.retry(sender) => {
                self.rejoin.push(sender);
                self.rejoin_at.get_or_insert(Instant::now() + FEED_RETRY);
                return Ok(());
            }
            Some(code) => {
                tracing::warn!(
                    code,
                    "the SFU refused {peer}'s subscription: {}",
                    text(&data["error"])
                );
                return self.failed(sender).await;
            }
            None => {}
        }
        if let (Some("offer"), Some(sdp)) = (m["jsep"]["type"].as_str(), m["jsep"]["sdp"].as_str())
        {
            // Janus names every track `janusMID`: which are our screen's, the receiver marks.
            let shares = data["streams"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["feed_description"] == SHARE)
                .filter_map(|s| s["mid"].as_str().map(str::to_owned))
                .collect();
            self.subs.offered(sender);
            self.tell(SfuEvent::Offer {
                peer,
                sub: sender,
                sdp: sdp.to_owned(),
                shares,
            })
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
    let feed = joined["id"]
        .as_u64()
        .ok_or_else(|| SfuError::Protocol("joined without a feed id".into()))?;
    // Our subscriptions name it (the room requires it).
    let private_id = joined["private_id"].as_u64().unwrap_or(0);
    Ok(Session {
        janus,
        room,
        pin,
        publisher,
        feed,
        private_id,
        up: false,
        kicked: false,
        subs: Subs::default(),
        attaching: HashMap::new(),
        rejoin: Vec::new(),
        rejoin_at: None,
        admitted: params.admitted.clone(),
        subscriptions: params.subscriptions.clone(),
        events,
    })
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
        s.reconcile().await?;
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            if s.kicked {
                let _ = events.send(SfuEvent::Kicked).await;
                break;
            }
            let rejoin = s.rejoin_at;
            tokio::select! {
                // Who is let in first: an answer from someone's new id must find their
                // subscription carried over to it.
                biased;
                changed = s.admitted.changed() => match changed {
                    Ok(()) => s.reconcile().await?,
                    Err(_) => break,
                },
                cmd = commands.recv() => match cmd {
                    Some(c) => s.command(c).await?,
                    None => break,
                },
                m = s.janus.read() => s.message(m?).await?,
                _ = async { tokio::time::sleep_until(rejoin.expect("guarded")).await }, if rejoin.is_some() => {
                    s.rejoin_due().await?;
                }
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

    fn p(s: &str) -> PeerId {
        PeerId::from(s)
    }

    #[test]
    fn a_subscription_is_opened_for_each_admitted_person_once() {
        let mut s = Subs::default();
        assert!(s.admit(p("ann")));
        assert!(!s.admit(p("ann")), "admitted once");
        assert_eq!(s.take_unattached(), vec![p("ann")]);
        assert!(s.take_unattached().is_empty(), "already attaching");
        assert!(s.attached(&p("ann"), 11));
        assert_eq!(s.whose(11), Some(&p("ann")));
        assert!(!s.attached(&p("ann"), 12), "a second handle is let go");
        // Released while a handle was coming: it is let go.
        assert!(s.admit(p("bob")));
        assert_eq!(s.take_unattached(), vec![p("bob")]);
        assert_eq!(s.release(&p("bob")), None);
        assert!(!s.attached(&p("bob"), 13));
        assert_eq!(s.release(&p("ann")), Some(11));
        assert_eq!(s.whose(11), None);
    }

    /// Ann and Mallory admitted, their subscriptions on handles 11 and 66.
    fn ann_and_mallory() -> Subs {
        let mut s = Subs::default();
        s.admit(p("ann"));
        s.admit(p("mallory"));
        s.take_unattached();
        s.attached(&p("ann"), 11);
        s.attached(&p("mallory"), 66);
        s
    }

    /// Mallory, in our call, answers (or trickles to, or configures) the subscription we
    /// opened for Ann: nothing reaches Janus, and Ann's goes on.
    #[test]
    fn forged_answer_for_another_persons_subscription() {
        let mut s = ann_and_mallory();
        assert!(s.of(&p("mallory"), 11).is_none());
        let now = Instant::now();
        s.offered(11);
        assert!(!s.answer(&p("mallory"), 11));
        assert!(!s.trickle(&p("mallory"), 11));
        assert!(!s.layer(&p("mallory"), 11, Want::Half, now));
        assert!(s.of(&p("eve"), 11).is_none(), "and nobody outside the call");
        assert!(s.answer(&p("ann"), 11));
        assert!(s.layer(&p("ann"), 11, Want::Half, now));
    }

    /// One person's side of a subscription cannot make us send Janus without end: one answer
    /// an offer, candidates capped, a layer asked again not asked of Janus again and layers
    /// flipped to and fro asked of it once a second, a feed that is not up waited for a
    /// bounded number of times.
    #[test]
    fn answer_trickle_and_layer_flood() {
        let mut s = Subs::default();
        s.admit(p("mallory"));
        s.take_unattached();
        s.attached(&p("mallory"), 66);
        assert!(!s.answer(&p("mallory"), 66), "no offer yet");
        s.offered(66);
        let answers = (0..1000).filter(|_| s.answer(&p("mallory"), 66)).count();
        assert_eq!(answers, 1);
        s.offered(66);
        assert!(s.answer(&p("mallory"), 66), "a renegotiation's");
        let sent = (0..10_000).filter(|_| s.trickle(&p("mallory"), 66)).count();
        assert_eq!(sent, MAX_TRICKLES as usize);
        let t0 = Instant::now();
        assert!(s.layer(&p("mallory"), 66, Want::Half, t0));
        let again = (0..1000)
            .filter(|_| s.layer(&p("mallory"), 66, Want::Half, t0))
            .count();
        assert_eq!(again, 0);
        let ms = Duration::from_millis;
        let flips = (0..3500u64)
            .map(|i| (i, if i % 2 == 0 { Want::Full } else { Want::Half }))
            .filter(|(i, want)| s.layer(&p("mallory"), 66, *want, t0 + ms(1 + i)))
            .count();
        assert_eq!(
            flips, 3,
            "flipped every millisecond for 3.5 s: once a second"
        );
        let tries = (0..1000).filter(|_| s.retry(66)).count();
        assert_eq!(tries, FEED_TRIES as usize);
        assert!(!s.retry(99), "not a handle of ours");
        // Given up: the handle goes, and the subscription is opened afresh later.
        assert_eq!(s.failed(66), Some(66));
        assert_eq!(s.open(), 0);
        assert_eq!(s.take_unattached(), vec![p("mallory")]);
    }

    /// Ann leaves the room: her subscription is held (paused at Janus, not counted as open),
    /// and carries over when she is back under a new id; someone held without a handle yet
    /// gets none until back.
    #[test]
    fn a_held_subscription_carries_over_a_rejoin() {
        let mut s = Subs::default();
        s.admit(p("ann"));
        s.take_unattached();
        s.attached(&p("ann"), 11);
        assert_eq!(s.open(), 1);
        assert_eq!(s.hold(&p("ann"), true), Some((11, true)));
        assert_eq!(s.hold(&p("ann"), true), None, "held once");
        assert_eq!(s.open(), 0);
        assert!(s.rename(&p("ann"), &p("ann2")));
        assert_eq!(s.whose(11), Some(&p("ann2")));
        assert!(s.of(&p("ann"), 11).is_none(), "her old id is nobody now");
        assert_eq!(s.hold(&p("ann2"), false), Some((11, false)));
        assert_eq!(s.open(), 1);
        assert!(
            !s.rename(&p("ann"), &p("ann3")),
            "nothing left under the old id"
        );
        s.admit(p("bob"));
        s.hold(&p("bob"), true);
        assert!(
            s.take_unattached().is_empty(),
            "nothing to offer Bob through"
        );
        s.hold(&p("bob"), false);
        assert_eq!(s.take_unattached(), vec![p("bob")]);
    }

    /// A subscription whose offer never got an answer (it went to the old id, or was on its
    /// way) is not carried over as it is: opened afresh, it offers itself to the new id.
    #[test]
    fn an_unanswered_subscription_is_opened_afresh_for_the_new_id() {
        let mut s = Subs::default();
        s.admit(p("ann"));
        s.take_unattached();
        s.attached(&p("ann"), 11);
        s.offered(11);
        assert!(s.rename(&p("ann"), &p("ann2")));
        assert!(!s.answered(&p("ann2")));
        assert_eq!(s.renew(&p("ann2")), Some(11));
        assert_eq!(s.whose(11), None);
        assert_eq!(s.take_unattached(), vec![p("ann2")]);
        // An answered one carries over as it is.
        s.attached(&p("ann2"), 12);
        s.offered(12);
        assert!(s.answer(&p("ann2"), 12));
        assert!(s.rename(&p("ann2"), &p("ann3")));
        assert!(s.answered(&p("ann3")));
        // One still attaching when renewed is attached again (its handle, when it comes, is
        // let go: the subscription has one by then or asks anew).
        s.admit(p("bob"));
        assert_eq!(s.take_unattached(), vec![p("bob")]);
        assert!(s.rename(&p("bob"), &p("bob2")));
        assert_eq!(s.renew(&p("bob2")), None);
        assert_eq!(s.take_unattached(), vec![p("bob2")]);
    }

    /// Mallory, in our call, claims Ann's subscription as hers: a carry-over only ever moves
    /// a subscription onto an id that has none (the actor asks for it only on the call rules'
    /// proof of a rejoin).
    #[test]
    fn rejoin_onto_another_persons_subscription() {
        let mut s = ann_and_mallory();
        assert!(!s.rename(&p("ann"), &p("mallory")));
        assert_eq!(s.whose(11), Some(&p("ann")));
        assert_eq!(s.whose(66), Some(&p("mallory")));
    }

    /// The call rules bound who is admitted; the session bounds it again.
    #[test]
    fn admission_flood() {
        let mut s = Subs::default();
        let admitted = (0..10_000)
            .filter(|i| s.admit(PeerId(format!("p{i}"))))
            .count();
        assert_eq!(admitted, MAX_ADMITTED);
        assert_eq!(s.take_unattached().len(), MAX_ADMITTED);
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
