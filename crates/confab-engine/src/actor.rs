//! The engine's actor: one task that owns the signaling client, the call rules
//! ([`CallCore`]), the links and the media hub, and carries out what the call rules decide.
//! Device work runs beside it ([`Devices`]) so that a slow camera never stalls signaling.

use crate::api::{
    ConnectionStatus, EngineConfig, EngineEvent, EngineResources, Joined, Level, PeerVerification,
    Snapshot,
};
use crate::devices::{Devices, MicCheck, Report, Switch, Want};
use crate::error::{EngineError, ErrorCode, JoinError};
use crate::ice::IceServer;
use crate::link::{self, LinkCommand, LinkEvent, LinkParams, Role, Verification};
use crate::media::{LinkId, MediaHub, MediaSettings, VideoSink};
use crate::route::RouteWatch;
use crate::sfu::{self, Admission, Admitted, SfuCommand, SfuEvent, SfuParams};
use crate::signaling::{self, Check, JoinParams, SigEvent};
use crate::stats::{NetworkStats, PeerStats};
use confab_call::chat::{Chat, ChatLine};
use confab_call::layers::Want as LayerWant;
use confab_call::mesh_return::MeshReturn;
use confab_call::{Action, CallCore, Millis};
use confab_media::device::mic_check::{MicCheckProgress, MicCheckResult};
use confab_media::processing::{ProcessingSettings, ProcessingStats};
use confab_protocol::call::{CallSignal, SdpType, SessionDescription, SfuLayer};
use confab_protocol::{ClientMessage, PeerId, SfuInfo};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A person who offers a new subscription (they published anew) is received on a new link at
/// most this often.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(2);

pub type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

pub enum Cmd {
    Join(JoinParams, Reply<Joined>),
    Leave(Reply<()>),
    Call(Option<PeerId>, Reply<()>),
    CallWhenPresent(Reply<()>),
    Accept(PeerId, Reply<()>),
    Decline(PeerId, Reply<()>),
    HangUp(Reply<()>),
    SetMedia {
        audio: Option<bool>,
        video: Option<bool>,
        reply: Reply<()>,
    },
    Devices(Switch),
    MicCheck(
        tokio::sync::mpsc::Sender<MicCheckProgress>,
        Reply<MicCheckResult>,
    ),
    Preview(bool, Reply<()>),
    AdmitAll(bool, Reply<()>),
    IceServers(Vec<IceServer>, Reply<()>),
    RelayOnly(bool, Reply<()>),
    Processing(ProcessingSettings, Reply<()>),
    ProcessingStats(oneshot::Sender<ProcessingStats>),
    Stats(oneshot::Sender<Vec<PeerStats>>),
    SfuNetwork(oneshot::Sender<Option<NetworkStats>>),
    Resources(oneshot::Sender<EngineResources>),
    Snapshot(oneshot::Sender<Snapshot>),
    Say(String, Reply<ChatLine>),
    Chat(oneshot::Sender<Vec<ChatLine>>),
    #[cfg(feature = "fault-injection")]
    Panic,
    Shutdown,
}

/// Starts the media hub and the actor; returns the event stream and the actor's task.
pub fn spawn(
    config: EngineConfig,
    sink: Arc<dyn VideoSink>,
    cmds: mpsc::Receiver<Cmd>,
) -> Result<(mpsc::Receiver<EngineEvent>, JoinHandle<()>), EngineError> {
    let rt = tokio::runtime::Handle::current();
    let hub = MediaHub::start(
        rt,
        MediaSettings {
            format: config.format,
            start_bitrate: config.rtc.start_bitrate,
            max_bitrate: config.rtc.max_bitrate,
            audio_bitrate: config.audio_bitrate,
            processing: config.processing,
        },
        sink,
    )?;
    let (ev_tx, ev_rx) = mpsc::channel(256);
    let (link_tx, link_rx) = mpsc::channel(1024);
    let (dev_tx, dev_rx) = mpsc::channel(16);
    let devices = Devices::start(
        hub.clone(),
        config.video.clone(),
        config.audio.clone(),
        config.speaker.clone(),
        dev_tx,
    );
    let session = format!("{:032x}", rand::random::<u128>());
    let secret = format!("{:032x}", rand::random::<u128>());
    let actor = Actor {
        core: CallCore::new(session, secret, config.auto_accept),
        config,
        hub,
        devices: Some(devices),
        events: ev_tx,
        sig: None,
        pending_join: None,
        join_params: None,
        connection: ConnectionStatus::Offline,
        links: HashMap::new(),
        link_peer: HashMap::new(),
        link_tx,
        closing: Vec::new(),
        next_link: 1,
        preview: false,
        camera: None,
        microphone: None,
        speaker: None,
        share: None,
        joined_at: None,
        last_snapshot: None,
        history: Vec::new(),
        epoch: Instant::now(),
        refusal_told: false,
        verifications: HashMap::new(),
        chat: Chat::new(),
        sfu_info: None,
        subscribed: HashMap::new(),
        sfu: None,
        sfu_kicked: false,
        sfu_kicked_in_room: None,
        sfu_offers: HashMap::new(),
        mesh_return: MeshReturn::default(),
    };
    // The actor's health is watched: if it panics, the devices are released and whoever
    // listens is told in words (the handle's commands answer `Stopped` from then on).
    let (watch_events, watch_hub) = (actor.events.clone(), actor.hub.clone());
    let task = tokio::spawn(async move {
        use futures_util::FutureExt;
        let run = std::panic::AssertUnwindSafe(actor.run(cmds, link_rx, dev_rx));
        if run.catch_unwind().await.is_err() {
            tracing::error!("the engine's actor panicked");
            let _ = watch_events.try_send(EngineEvent::Error {
                code: ErrorCode::Stopped,
                message: "Confab's call engine stopped unexpectedly; the call has ended. \
                          Please restart Confab (and report the log)."
                    .into(),
            });
            let _ = tokio::task::spawn_blocking(move || watch_hub.shutdown()).await;
        }
    });
    Ok((ev_rx, task))
}

struct LinkHandle {
    id: LinkId,
    role: Role,
    tx: mpsc::Sender<LinkCommand>,
    task: JoinHandle<()>,
}

/// A call through an SFU: the session task and our publisher link.
struct SfuHandle {
    tx: mpsc::Sender<SfuCommand>,
    events: mpsc::Receiver<SfuEvent>,
    /// Who our call lets in: the session subscribes for exactly them (a `watch`: a change is
    /// never dropped, however much else the session has queued).
    admitted: tokio::sync::watch::Sender<Admitted>,
    /// How many subscriptions the session holds open.
    subscriptions: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
    publisher: LinkHandle,
    /// Where we publish: our own VideoRoom room and the token that lets us in. A rejoin that
    /// kept our place at the SFU keeps the session (what we publish, and the subscriptions
    /// we handed out, flow on); one that got a new place publishes again.
    info: SfuInfo,
}

/// A subscriber link: the subscription whose offer it took (the publisher's handle at the SFU).
struct Subscribed {
    sub: Option<u64>,
    at: Instant,
}

/// An `sfu-offer` as received.
struct SfuOffer {
    sub: u64,
    sdp: String,
    shares: Vec<String>,
}

/// People whose offers are kept before a link takes them (a room holds fewer).
const MAX_SFU_OFFERS: usize = 64;

/// The publisher link's stand-in for a peer id (server ids are hex: no one has this one).
fn publisher_id() -> PeerId {
    PeerId::from("@sfu")
}

struct SigHandle {
    out: mpsc::Sender<ClientMessage>,
    /// Asks the client to prove its connection now (a link lost its path), or to leave it
    /// (its route moved).
    check: mpsc::Sender<Check>,
    /// The way to the server the connection in use started on (from its welcome).
    route: Option<RouteWatch>,
    events: mpsc::Receiver<SigEvent>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

struct Actor {
    config: EngineConfig,
    core: CallCore,
    hub: Arc<MediaHub>,
    devices: Option<Devices>,
    events: mpsc::Sender<EngineEvent>,
    sig: Option<SigHandle>,
    pending_join: Option<Reply<Joined>>,
    join_params: Option<JoinParams>,
    connection: ConnectionStatus,
    links: HashMap<PeerId, LinkHandle>,
    link_peer: HashMap<LinkId, PeerId>,
    link_tx: mpsc::Sender<LinkEvent>,
    /// Link tasks told to close, awaited later (and at shutdown).
    closing: Vec<JoinHandle<()>>,
    next_link: LinkId,
    preview: bool,
    camera: Option<String>,
    microphone: Option<String>,
    speaker: Option<String>,
    /// What we share (from the devices task's report).
    share: Option<String>,
    joined_at: Option<Instant>,
    last_snapshot: Option<Snapshot>,
    /// Stats of links that ended, kept so that a report at the end covers the whole session.
    history: Vec<PeerStats>,
    /// The call rules' clock starts here.
    epoch: Instant,
    /// The user was told that rejoining is being refused (once per drop).
    refusal_told: bool,
    /// Each link's verification code, by the link.
    verifications: HashMap<LinkId, Verification>,
    /// The chat of the current call (a new call starts a new one).
    chat: Chat,
    /// The SFU the room's calls go through (from `welcome`), if any.
    sfu_info: Option<SfuInfo>,
    /// Subscriber links: the subscription each took its offer from, and when it was opened.
    subscribed: HashMap<PeerId, Subscribed>,
    /// The session with it while in a call.
    sfu: Option<SfuHandle>,
    /// The SFU room let our feed go while our signaling was away: publish anew once back.
    sfu_kicked: bool,
    /// When the SFU room last let our feed go while we were in the room.
    sfu_kicked_in_room: Option<Instant>,
    /// Offers of subscriptions not taken yet: from someone we have no link with yet, or a new
    /// one from someone whose link was replaced less than `RESUBSCRIBE_EVERY` ago. The latest
    /// a person, for room members only.
    sfu_offers: HashMap<PeerId, SfuOffer>,
    /// When a call through the SFU goes back to direct links.
    mesh_return: MeshReturn,
}

impl Actor {
    fn now(&self) -> Millis {
        self.epoch.elapsed().as_millis() as Millis
    }

    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        mut link_events: mpsc::Receiver<LinkEvent>,
        mut device_reports: mpsc::Receiver<Report>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Shutdown) | None => break,
                    Some(c) => self.command(c).await,
                },
                ev = async { self.sig.as_mut().expect("guarded").events.recv().await }, if self.sig.is_some() => {
                    match ev {
                        Some(ev) => self.signaling_event(ev).await,
                        None => self.signaling_stopped().await,
                    }
                }
                ev = async { self.sfu.as_mut().expect("guarded").events.recv().await }, if self.sfu.is_some() => {
                    self.sfu_event(ev).await
                }
                Some(ev) = link_events.recv() => self.link_event(ev).await,
                Some(r) = device_reports.recv() => self.device_report(r).await,
                _ = tick.tick() => {
                    ticks += 1;
                    if ticks % 4 == 0 {
                        self.signaling_route_moved();
                    }
                    let now = self.now();
                    self.core.tick(now);
                    self.apply().await;
                    self.check_mesh_return().await;
                    self.take_waiting_offers();
                    self.reap_closing().await;
                    if self.core.in_call() {
                        let peers = self.hub.levels().into_iter().map(|(id, level)| Level { id, level }).collect();
                        self.emit(EngineEvent::Levels { local: self.hub.local_level(), peers }).await;
                    }
                }
            }
        }
        self.shutdown().await;
    }

    /// Hang up and leave, close every link, stop devices, await everything.
    async fn shutdown(&mut self) {
        let now = self.now();
        self.core.leave(now);
        self.apply().await;
        self.stop_signaling().await;
        self.stop_sfu();
        for (_, l) in self.links.drain() {
            let _ = l.tx.send(LinkCommand::Close).await;
            self.closing.push(l.task);
        }
        // All links close at once; together they get a few seconds, then they are aborted
        // (and awaited: no task outlives the engine).
        let mut closing: Vec<JoinHandle<()>> = self.closing.drain(..).collect();
        let all = futures_util::future::join_all(closing.iter_mut());
        if tokio::time::timeout(Duration::from_secs(4), all)
            .await
            .is_err()
        {
            tracing::warn!("links did not close within 4 s; stopping them");
            for t in &closing {
                t.abort();
            }
            for t in closing {
                let _ = t.await;
            }
        }
        if let Some(d) = self.devices.take() {
            d.stop().await;
        }
        let hub = self.hub.clone();
        let _ = tokio::task::spawn_blocking(move || hub.shutdown()).await;
    }

    /// Awaits link tasks that have finished closing.
    async fn reap_closing(&mut self) {
        let (done, running): (Vec<_>, Vec<_>) =
            self.closing.drain(..).partition(JoinHandle::is_finished);
        self.closing = running;
        for t in done {
            let _ = t.await;
        }
    }

    async fn emit(&self, ev: EngineEvent) -> bool {
        // Events are for a UI: never stall the engine on a slow one.
        if self.events.try_send(ev).is_err() {
            tracing::debug!("event dropped: the receiver is not keeping up");
            return false;
        }
        true
    }

    async fn error(&self, code: ErrorCode, message: String) {
        self.emit(EngineEvent::Error { code, message }).await;
    }

    fn snapshot(&self) -> Snapshot {
        let (audio, video) = self.core.media();
        Snapshot {
            connection: self.connection,
            server: self.join_params.as_ref().map(|p| p.urls.join(", ")),
            room: self.join_params.as_ref().map(|p| p.room.clone()),
            me: self.core.me().cloned(),
            name: self.join_params.as_ref().map(|p| p.name.clone()),
            in_call: self.core.in_call(),
            admit_all: self.core.admits_all(),
            through_sfu: self.sfu.is_some(),
            sharing: self.share.clone(),
            audio,
            video,
            camera: self.camera.clone(),
            microphone: self.microphone.clone(),
            speaker: self.speaker.clone(),
            participants: self.core.participants(),
            verification: self
                .links
                .iter()
                .filter_map(|(peer, l)| {
                    self.verifications.get(&l.id).map(|v| PeerVerification {
                        id: peer.clone(),
                        code: v.code.as_ref().ok().cloned(),
                        problem: v.code.as_ref().err().map(ToString::to_string),
                        fingerprint: v.fingerprint.clone(),
                    })
                })
                .collect(),
        }
    }

    async fn publish_snapshot(&mut self) {
        let s = self.snapshot();
        // Only a snapshot that went out counts as sent: a dropped one is tried again.
        if self.last_snapshot.as_ref() != Some(&s) && self.emit(EngineEvent::State(s.clone())).await
        {
            self.last_snapshot = Some(s);
        }
    }

    /// Carries out what the call rules decided.
    async fn apply(&mut self) {
        for a in self.core.drain() {
            match a {
                Action::Send { to, signal } => self.send_signal(to, &signal),
                Action::OpenLink {
                    peer,
                    offerer,
                    polite,
                } => self.open_link(peer, offerer, polite),
                Action::CloseLink { peer } => {
                    // Out of our call: their subscription to us ends at once, and an offer of
                    // theirs not taken yet is dropped.
                    self.release(&peer);
                    self.close_link(&peer);
                }
                Action::RebindLink { from, to } if self.sfu.is_some() => {
                    if self.links.contains_key(&to) {
                        // Never over a live link (its task would be lost): the old one goes.
                        self.release(&from);
                        self.close_link(&from);
                    } else if self
                        .links
                        .get(&from)
                        .is_some_and(|l| l.role == Role::Subscribe)
                    {
                        // Through an SFU the link receiving them carries over: the session
                        // they kept through the rejoin goes on sending on it (one they publish
                        // anew offers afresh, and replaces it), and so does ours for them.
                        self.carry_over(&from, &to);
                    } else {
                        self.release(&from);
                        self.close_link(&from);
                        self.open_subscriber(to.clone());
                        self.admit(to);
                    }
                }
                Action::RebindLink { from, to } => {
                    if self.links.contains_key(&to) {
                        // Never overwrite a live link: the old one is let go instead.
                        if let Some(l) = self.links.remove(&from) {
                            self.link_peer.remove(&l.id);
                            let _ = l.tx.try_send(LinkCommand::Close);
                            self.closing.push(l.task);
                        }
                    } else if let Some(l) = self.links.remove(&from) {
                        let _ = l.tx.try_send(LinkCommand::Rebind(to.clone()));
                        self.link_peer.insert(l.id, to.clone());
                        self.links.insert(to, l);
                    }
                }
                Action::Notice { notice } => {
                    self.emit(EngineEvent::Notice(notice)).await;
                }
                Action::Changed => {}
            }
        }
        if !self.core.in_call() && self.chat.lines().next().is_some() {
            self.chat = Chat::new();
        }
        if !self.core.in_call() {
            self.stop_sfu();
            self.sfu_offers.clear();
        }
        self.sync_devices();
        self.publish_snapshot().await;
    }

    fn send_signal(&self, to: PeerId, sig: &CallSignal) {
        if let Some(s) = &self.sig {
            let msg = ClientMessage::Signal {
                to,
                data: sig.to_data(),
            };
            if s.out.try_send(msg).is_err() {
                tracing::warn!("signaling queue full: a call message was dropped");
            }
        }
    }

    fn open_link(&mut self, peer: PeerId, offerer: bool, polite: bool) {
        if self.links.contains_key(&peer) {
            return;
        }
        if self.sfu.is_none() && self.should_use_sfu(Some(&peer)) {
            self.go_sfu();
        }
        if self.sfu.is_some() {
            self.open_subscriber(peer.clone());
            self.admit(peer);
            return;
        }
        let handle = self.spawn_link(peer.clone(), Role::Mesh, offerer, polite);
        self.link_peer.insert(handle.id, peer.clone());
        self.links.insert(peer, handle);
    }

    /// Whether the call should go through the SFU: the room has one and has grown past its
    /// threshold, or `peer` (whom we are about to link with) already sends through it.
    fn should_use_sfu(&self, peer: Option<&PeerId>) -> bool {
        let Some(info) = &self.sfu_info else {
            return false;
        };
        let room = self.core.participants().len() + 1;
        room > info.above as usize || peer.is_some_and(|p| self.sfu_offers.contains_key(p))
    }

    /// The people we have a link with in `role`.
    fn linked_as(&self, role: Role) -> Vec<PeerId> {
        self.links
            .iter()
            .filter(|(_, l)| l.role == role)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Whether a call through the SFU goes back to a direct link: the room is down to two,
    /// and its threshold lets two call directly. (Only two: a mesh of more, set up all at
    /// once, and a room that hovers at the threshold moving to and fro, cost more than
    /// staying.) Someone away (whose rejoin the rules still wait for) counts as in the room,
    /// and a room seen while our own connection is down is not judged.
    fn small_enough_for_mesh(&self) -> bool {
        let known = self.core.known_peers();
        let room = known + 1;
        self.connection == ConnectionStatus::Connected
            && self.core.participants().len() == known
            && self
                .sfu_info
                .as_ref()
                .is_some_and(|info| room <= 2 && room <= info.above as usize)
    }

    /// A call through the SFU in a room small enough for direct links goes back to them once
    /// the room has stayed so for a while ([`MeshReturn`]: a room pushed to and fro does not
    /// move the call back and forth). Only the side that offers the direct link (the smaller
    /// id) acts on its own wait: the other follows its offer, so neither leaves Janus to wait
    /// for a link that never comes.
    async fn check_mesh_return(&mut self) {
        // Checked four times a second: the cheap tests first.
        let small = self.sfu.is_some()
            && self.core.in_call()
            && self.small_enough_for_mesh()
            && self
                .core
                .me()
                .is_some_and(|me| self.core.participants().iter().all(|p| *me < p.id));
        if self.mesh_return.tick(self.now(), small) {
            self.go_mesh();
            self.publish_snapshot().await;
        }
    }

    /// Moves a call through the SFU back to direct links (see [`Self::small_enough_for_mesh`]):
    /// the session with the SFU ends, and each link receiving someone from it is replaced by a
    /// direct one, without the call rules seeing a change (the link reports connected again).
    /// The smaller id offers, as when the mesh fills in: it moves when its wait is over
    /// ([`Self::check_mesh_return`]), the other when that offer (or the commitment before it)
    /// reaches it.
    fn go_mesh(&mut self) {
        let Some(me) = self.core.me().cloned() else {
            return;
        };
        let through = self.linked_as(Role::Subscribe);
        let present: Vec<PeerId> = self.core.participants().into_iter().map(|p| p.id).collect();
        tracing::info!(
            people = present.len() + 1,
            "the call moves back to direct links"
        );
        self.stop_sfu();
        self.sfu_offers.clear();
        // A kick from that session is no reason to give up a later one.
        self.sfu_kicked_in_room = None;
        for p in through {
            self.close_link(&p);
            if !present.contains(&p) {
                // Gone from the room (the rules may still wait for a rejoin): nobody to link to.
                continue;
            }
            let offerer = me < p;
            let handle = self.spawn_link(p.clone(), Role::Mesh, offerer, !offerer);
            self.link_peer.insert(handle.id, p.clone());
            self.links.insert(p, handle);
        }
    }

    /// Moves the call to the SFU: our media goes to it, and every direct link is replaced by
    /// a link receiving that person from the SFU. The call rules see the same people, linked.
    /// Everyone in the call moves: each at the same room event, or on hearing an `sfu-offer`
    /// from someone it is linked with.
    fn go_sfu(&mut self) {
        if !self.ensure_sfu() {
            return;
        }
        let direct = self.linked_as(Role::Mesh);
        if !direct.is_empty() {
            tracing::info!(people = direct.len() + 1, "the call moves to the SFU");
        }
        for p in direct {
            self.close_link(&p);
            self.open_subscriber(p.clone());
            self.admit(p);
        }
    }

    /// Through the SFU: the person's media arrives on a link that answers the offers they
    /// send (an offer of theirs that came first is taken now).
    fn open_subscriber(&mut self, peer: PeerId) {
        self.subscribed.insert(
            peer.clone(),
            Subscribed {
                sub: None,
                at: Instant::now(),
            },
        );
        let handle = self.spawn_link(peer.clone(), Role::Subscribe, false, true);
        self.link_peer.insert(handle.id, peer.clone());
        self.links.insert(peer.clone(), handle);
        if let Some(offer) = self.sfu_offers.remove(&peer) {
            self.take_offer(peer, offer);
        }
    }

    /// Our call let this person in: our session subscribes for them and offers it to them.
    fn admit(&self, peer: PeerId) {
        if let Some(s) = &self.sfu {
            s.admitted.send_if_modified(|a| {
                if a.contains_key(&peer) || a.len() >= sfu::MAX_ADMITTED {
                    return false;
                }
                a.insert(peer, Admission::default());
                true
            });
        }
    }

    /// Everyone in the room as the call rules know it (not those away).
    fn present(&self) -> HashSet<PeerId> {
        self.core.participants().into_iter().map(|p| p.id).collect()
    }

    /// Everyone we let in who is no longer in the room (the server said they left, or our
    /// own rejoin found them gone; the call rules wait for their rejoin): nothing of ours goes
    /// to them meanwhile (their subscriptions are paused), and offers of theirs not taken yet
    /// are dropped.
    fn hold_absent(&mut self) {
        let present = self.present();
        self.sfu_offers.retain(|p, _| present.contains(p));
        if let Some(s) = &self.sfu {
            s.admitted.send_if_modified(|a| {
                let mut changed = false;
                for (_, x) in a.iter_mut().filter(|(p, _)| !present.contains(*p)) {
                    changed |= !x.held;
                    x.held = true;
                }
                changed
            });
        }
    }

    /// The person is back under a new id (the call rules have their proof): the link we
    /// receive them on and our subscription for them carry over, no longer held.
    fn carry_over(&mut self, from: &PeerId, to: &PeerId) {
        if let Some(o) = self.sfu_offers.remove(from) {
            self.sfu_offers.insert(to.clone(), o);
        }
        if let Some(s) = self.subscribed.remove(from) {
            self.subscribed.insert(to.clone(), s);
        }
        if let Some(l) = self.links.remove(from) {
            let _ = l.tx.try_send(LinkCommand::Rebind(to.clone()));
            self.link_peer.insert(l.id, to.clone());
            self.links.insert(to.clone(), l);
        }
        let moved = self.sfu.as_ref().is_some_and(|s| {
            s.admitted.send_if_modified(|a| {
                if a.remove(from).is_none() {
                    return false;
                }
                let was = Some(from.clone());
                a.insert(to.clone(), Admission { held: false, was });
                true
            })
        });
        if !moved {
            self.admit(to.clone());
        }
    }

    /// The person is out of our call: their subscription to us ends, and an offer of theirs
    /// not taken yet is dropped.
    fn release(&mut self, peer: &PeerId) {
        self.sfu_offers.remove(peer);
        if let Some(s) = &self.sfu {
            s.admitted.send_if_modified(|a| a.remove(peer).is_some());
        }
    }

    /// An `sfu-offer` from `from` (stamped by the server). Only a person we receive through
    /// the SFU is answered, on their own link: a new subscription (they published anew)
    /// replaces the link, at most once per `RESUBSCRIBE_EVERY` (someone in the call offering
    /// sub after sub must not make us rebuild their link at the rate they send); a later one
    /// waits its turn.
    fn sfu_offer(&mut self, from: PeerId, offer: SfuOffer) {
        if !(1..=confab_protocol::MAX_SFU_ROOM).contains(&offer.sub) || offer.shares.len() > 8 {
            tracing::debug!("{from} sent an SFU offer Confab does not take");
            return;
        }
        if self.sfu.is_none() && self.small_enough_for_mesh() {
            // A room of two calls directly: an offer sent before the room shrank (or by
            // someone who has not noticed yet) is not followed.
            tracing::debug!("{from} offered an SFU subscription in a room of two");
            return;
        }
        let mesh = self.links.get(&from).is_some_and(|l| l.role == Role::Mesh);
        if mesh && self.sfu_info.is_some() && !self.small_enough_for_mesh() {
            // Someone we are linked with directly sends through the SFU: the call moved
            // there; follow.
            self.go_sfu();
        }
        match self.subscribed.get(&from) {
            Some(Subscribed { sub: Some(s), at }) if *s != offer.sub => {
                if at.elapsed() >= RESUBSCRIBE_EVERY {
                    self.close_link(&from);
                    self.open_subscriber(from.clone());
                    self.take_offer(from, offer);
                } else {
                    self.sfu_offers.insert(from, offer);
                }
            }
            Some(_) if self.links.contains_key(&from) => self.take_offer(from, offer),
            _ => {
                // No link for them yet: kept for the one the call rules may open.
                let member = self.core.participants().iter().any(|p| p.id == from);
                if member
                    && (self.sfu_offers.len() < MAX_SFU_OFFERS
                        || self.sfu_offers.contains_key(&from))
                {
                    self.sfu_offers.insert(from, offer);
                }
            }
        }
    }

    /// Hands an offer to the person's subscriber link.
    fn take_offer(&mut self, from: PeerId, offer: SfuOffer) {
        let (Some(link), Some(sub)) = (self.links.get(&from), self.subscribed.get_mut(&from))
        else {
            return;
        };
        sub.sub = Some(offer.sub);
        // Janus names every track `janusMID`: give the shared screen's its word back.
        let shares: Vec<&str> = offer.shares.iter().map(String::as_str).collect();
        let description = SessionDescription {
            kind: SdpType::Offer,
            sdp: confab_call::sdp::mark_shares(&offer.sdp, &shares),
        };
        let sig = CallSignal::Description { description };
        if link.tx.try_send(LinkCommand::Remote(sig)).is_err() {
            tracing::warn!("link queue full: an SFU offer was dropped");
        }
    }

    /// Offers that waited for their turn (see [`Self::sfu_offer`]) are taken once it comes.
    fn take_waiting_offers(&mut self) {
        if self.sfu_offers.is_empty() {
            return;
        }
        let due: Vec<PeerId> = self
            .sfu_offers
            .keys()
            .filter(|p| {
                self.subscribed
                    .get(*p)
                    .is_some_and(|s| s.sub.is_some() && s.at.elapsed() >= RESUBSCRIBE_EVERY)
            })
            .cloned()
            .collect();
        for p in due {
            if let Some(offer) = self.sfu_offers.remove(&p) {
                self.sfu_offer(p, offer);
            }
        }
    }

    /// Lets a link go (its task is awaited later).
    fn close_link(&mut self, peer: &PeerId) {
        self.subscribed.remove(peer);
        if let Some(l) = self.links.remove(peer) {
            self.remember(peer, l.id);
            self.link_peer.remove(&l.id);
            let _ = l.tx.try_send(LinkCommand::Close);
            self.closing.push(l.task);
        }
    }

    /// Starts the session with the SFU and our publisher link, unless running; false if
    /// there is no SFU or we have no id yet.
    fn ensure_sfu(&mut self) -> bool {
        let (Some(info), Some(me)) = (self.sfu_info.clone(), self.core.me().cloned()) else {
            return false;
        };
        if self.sfu.as_ref().is_some_and(|s| s.info == info) {
            return true;
        }
        self.stop_sfu();
        let (tx, rx) = mpsc::channel(256);
        let (ev_tx, ev_rx) = mpsc::channel(256);
        // Everyone we already receive through the SFU is let in by the new session too (held,
        // if they are away).
        let present = self.present();
        let linked: Admitted = self
            .linked_as(Role::Subscribe)
            .into_iter()
            .map(|p| {
                let held = !present.contains(&p);
                (p, Admission { held, was: None })
            })
            .collect();
        let (admitted, admitted_rx) = tokio::sync::watch::channel(linked);
        let subscriptions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn(sfu::run(
            SfuParams {
                info: info.clone(),
                me,
                admitted: admitted_rx,
                subscriptions: subscriptions.clone(),
            },
            rx,
            ev_tx,
        ));
        let publisher = self.spawn_link(publisher_id(), Role::Publish, true, false);
        self.sfu = Some(SfuHandle {
            tx,
            events: ev_rx,
            admitted,
            subscriptions,
            task,
            publisher,
            info,
        });
        true
    }

    /// Publishes again, through a new session (kicked while in the room, or back with a new
    /// place at the SFU): it subscribes for everyone we receive, whose links stay (they are served by the
    /// others' sessions); each gets our new offers and replaces their link for us.
    fn republish(&mut self) {
        self.stop_sfu();
        self.ensure_sfu();
    }

    /// A command for our session with the SFU, if there is one.
    fn to_session(&self, cmd: SfuCommand) {
        if let Some(s) = &self.sfu {
            if s.tx.try_send(cmd).is_err() {
                tracing::warn!("SFU queue full: a message was dropped");
            }
        }
    }

    /// Ends the session with the SFU (its task and our publisher link are awaited later).
    fn stop_sfu(&mut self) {
        if let Some(s) = self.sfu.take() {
            let _ = s.publisher.tx.try_send(LinkCommand::Close);
            self.closing.push(s.publisher.task);
            // Dropping the command sender ends the session.
            drop(s.tx);
            self.closing.push(s.task);
        }
    }

    async fn sfu_event(&mut self, ev: Option<SfuEvent>) {
        match ev {
            Some(SfuEvent::Remote(sig)) => {
                if let Some(s) = &self.sfu {
                    let _ = s.publisher.tx.try_send(LinkCommand::Remote(sig));
                }
            }
            Some(SfuEvent::Offer {
                peer,
                sub,
                sdp,
                shares,
            }) => {
                // (Only to someone still in our call: the session follows a step behind.)
                if self.links.contains_key(&peer) {
                    self.send_signal(peer, &CallSignal::SfuOffer { sub, sdp, shares });
                }
            }
            Some(SfuEvent::Failed(e)) => {
                self.error(ErrorCode::CallFailed, format!("{e}; the call cannot go on"))
                    .await;
                self.stop_sfu();
                let now = self.now();
                self.core.hang_up(now);
                self.apply().await;
            }
            Some(SfuEvent::Kicked) if self.connection != ConnectionStatus::Connected => {
                // Away from the room longer than the server waits: back in it, we are a new
                // member with a VideoRoom room of its own anew (see the welcome).
                self.stop_sfu();
                self.sfu_kicked = true;
            }
            Some(SfuEvent::Kicked)
                if self
                    .sfu_kicked_in_room
                    .is_none_or(|at| at.elapsed() > Duration::from_secs(30)) =>
            {
                // In the room, yet our VideoRoom room went (a node of a cluster that thought
                // us gone, or Janus restarted): the server makes it again within seconds, and
                // our token is still ours: publish again, once.
                self.sfu_kicked_in_room = Some(Instant::now());
                self.republish();
                self.publish_snapshot().await;
            }
            Some(SfuEvent::Kicked) => {
                self.error(
                    ErrorCode::CallFailed,
                    "the media server let us go; the call cannot go on".into(),
                )
                .await;
                self.stop_sfu();
                let now = self.now();
                self.core.hang_up(now);
                self.apply().await;
            }
            None => self.stop_sfu(),
        }
    }

    fn spawn_link(&mut self, peer: PeerId, role: Role, offerer: bool, polite: bool) -> LinkHandle {
        let id = self.next_link;
        self.next_link += 1;
        let (tx, rx) = mpsc::channel(256);
        let me = self.core.me().map(ToString::to_string).unwrap_or_default();
        let (x, y) = if me <= peer.0 {
            (me.as_str(), peer.as_str())
        } else {
            (peer.as_str(), me.as_str())
        };
        let params = LinkParams {
            id,
            role,
            peer: peer.clone(),
            offerer,
            polite,
            binding: format!("{x}:{y}"),
            rtc: Arc::new(self.config.rtc.clone()),
        };
        let task = tokio::spawn(link::run(
            params,
            rx,
            self.link_tx.clone(),
            self.hub.clone(),
        ));
        LinkHandle { id, role, tx, task }
    }

    /// Devices run while in a call (or previewing) and are released otherwise; the worker
    /// opens and closes them, the actor only says what it wants.
    fn sync_devices(&mut self) {
        let in_call = self.core.in_call();
        let (audio, video) = self.core.media();
        self.hub.set_sending(audio, video);
        if let Some(d) = &self.devices {
            d.want(Want {
                camera: in_call || self.preview,
                call: in_call,
            });
        }
    }

    async fn device_report(&mut self, r: Report) {
        self.camera = r.camera;
        self.share = r.share;
        self.microphone = r.microphone;
        self.speaker = r.speaker;
        for (code, message) in r.errors {
            self.error(code, message).await;
        }
        self.publish_snapshot().await;
    }

    async fn command(&mut self, cmd: Cmd) {
        let now = self.now();
        match cmd {
            Cmd::Join(params, reply) => {
                if let Some(p) = &self.join_params {
                    let _ = reply.send(Err(EngineError::AlreadyJoined(p.room.clone())));
                    return;
                }
                let (out_tx, out_rx) = mpsc::channel(512);
                let (check_tx, check_rx) = mpsc::channel(4);
                let (ev_tx, ev_rx) = mpsc::channel(512);
                let cancel = CancellationToken::new();
                let task = tokio::spawn(signaling::run(
                    params.clone(),
                    out_rx,
                    check_rx,
                    ev_tx,
                    cancel.clone(),
                ));
                self.sig = Some(SigHandle {
                    out: out_tx,
                    check: check_tx,
                    route: None,
                    events: ev_rx,
                    cancel,
                    task,
                });
                self.join_params = Some(params);
                self.pending_join = Some(reply);
                self.connection = ConnectionStatus::Connecting;
                self.joined_at = Some(Instant::now());
                self.publish_snapshot().await;
            }
            Cmd::Leave(reply) => {
                if self.join_params.is_none() {
                    let _ = reply.send(Err(EngineError::NotJoined));
                    return;
                }
                self.core.leave(now);
                self.apply().await;
                self.stop_signaling().await;
                let _ = reply.send(Ok(()));
            }
            Cmd::Call(target, reply) => {
                let r = self.core.call(target.as_ref(), now).map_err(Into::into);
                self.apply().await;
                let _ = reply.send(r);
            }
            Cmd::CallWhenPresent(reply) => {
                let r = self.core.call_when_present(now).map_err(Into::into);
                self.apply().await;
                let _ = reply.send(r);
            }
            Cmd::Accept(peer, reply) => {
                let r = self.core.accept(&peer, now).map_err(Into::into);
                self.apply().await;
                let _ = reply.send(r);
            }
            Cmd::Decline(peer, reply) => {
                let r = self.core.decline(&peer, now).map_err(Into::into);
                self.apply().await;
                let _ = reply.send(r);
            }
            Cmd::HangUp(reply) => {
                self.core.hang_up(now);
                self.apply().await;
                let _ = reply.send(Ok(()));
            }
            Cmd::SetMedia {
                audio,
                video,
                reply,
            } => {
                let (a, v) = self.core.media();
                self.core.set_media(audio.unwrap_or(a), video.unwrap_or(v));
                self.apply().await;
                let _ = reply.send(Ok(()));
            }
            Cmd::Devices(switch) => match &self.devices {
                Some(d) => d.switch(switch).await,
                None => {
                    let _ = switch.reply.send(Err(EngineError::Stopped));
                }
            },
            Cmd::MicCheck(progress, reply) => match &self.devices {
                Some(d) => {
                    d.mic_check(MicCheck {
                        processing: self.config.processing,
                        progress,
                        reply,
                    })
                    .await
                }
                None => {
                    let _ = reply.send(Err(EngineError::Stopped));
                }
            },
            Cmd::IceServers(servers, reply) => {
                self.config.rtc.ice_servers = servers;
                let _ = reply.send(Ok(()));
            }
            Cmd::RelayOnly(on, reply) => {
                self.config.rtc.relay_only = on;
                let _ = reply.send(Ok(()));
            }
            Cmd::Processing(settings, reply) => {
                self.config.processing = settings;
                self.hub.set_processing(settings);
                let _ = reply.send(Ok(()));
            }
            Cmd::ProcessingStats(reply) => {
                let _ = reply.send(self.hub.processing_stats());
            }
            Cmd::AdmitAll(on, reply) => {
                self.core.set_admit_all(on);
                self.publish_snapshot().await;
                let _ = reply.send(Ok(()));
            }
            Cmd::Preview(on, reply) => {
                self.preview = on;
                self.sync_devices();
                let _ = reply.send(Ok(()));
            }
            Cmd::SfuNetwork(reply) => {
                let _ = reply.send(self.sfu.as_ref().map(|s| self.hub.stats(s.publisher.id).3));
            }
            Cmd::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Cmd::Resources(reply) => {
                self.reap_closing().await;
                let _ = reply.send(EngineResources {
                    sfu_subscriptions: self.sfu.as_ref().map_or(0, |s| {
                        s.subscriptions.load(std::sync::atomic::Ordering::Relaxed)
                    }),
                    links: self.links.len(),
                    link_tasks: self.links.len() + self.closing.len(),
                    media: self.hub.resources(),
                });
            }
            Cmd::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Cmd::Say(text, reply) => {
                let _ = reply.send(self.say(&text));
            }
            Cmd::Chat(reply) => {
                let _ = reply.send(self.chat.lines().cloned().collect());
            }
            #[cfg(feature = "fault-injection")]
            Cmd::Panic => panic!("injected fault"),
            Cmd::Shutdown => {}
        }
    }

    /// Says a chat line to everyone in the call (over each link's chat channel).
    fn say(&mut self, text: &str) -> Result<ChatLine, EngineError> {
        if !self.core.in_call() {
            return Err(EngineError::NotInCall);
        }
        if self.sfu.is_some() {
            return Err(EngineError::ChatThroughSfu);
        }
        let name = self
            .join_params
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let (line, wire) = self.chat.say(&name, text, self.now())?;
        for l in self.links.values() {
            let _ = l.tx.try_send(LinkCommand::Chat(wire.clone()));
        }
        Ok(line)
    }

    fn link_stats(&self, peer: &PeerId, link: LinkId) -> PeerStats {
        let (video, share, audio, network) = self.hub.stats(link);
        let setup_ms = match (self.joined_at, self.hub.first_frame(link)) {
            (Some(j), Some(f)) => Some(f.saturating_duration_since(j).as_secs_f64() * 1000.0),
            _ => None,
        };
        PeerStats {
            id: peer.to_string(),
            name: self.core.name_of(peer).unwrap_or("").to_owned(),
            video,
            share,
            audio,
            network,
            setup_ms,
            answer_to_first_frame_ms: self.hub.answer_to_first_frame_ms(link),
            setup_phases: self.hub.setup_phases(link),
            verification_code: self
                .verifications
                .get(&link)
                .and_then(|v| v.code.as_ref().ok().cloned()),
        }
    }

    /// Keeps what a link measured before it goes.
    fn remember(&mut self, peer: &PeerId, link: LinkId) {
        let s = self.link_stats(peer, link);
        if s.video.frames_decoded > 0 || s.audio.packets > 0 {
            self.history.retain(|h| h.id != s.id);
            self.history.push(s);
        }
    }

    /// Every peer heard from in this session: live links first, then ended ones.
    fn stats(&self) -> Vec<PeerStats> {
        let mut out: Vec<PeerStats> = self
            .links
            .iter()
            .map(|(peer, l)| self.link_stats(peer, l.id))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        for h in &self.history {
            if !out.iter().any(|o| o.id == h.id) {
                out.push(h.clone());
            }
        }
        out
    }

    async fn signaling_event(&mut self, ev: SigEvent) {
        let now = self.now();
        match ev {
            SigEvent::Welcome {
                id,
                room,
                peers,
                sfu,
                route,
            } => {
                self.connection = ConnectionStatus::Connected;
                if let Some(s) = &mut self.sig {
                    s.route = route;
                }
                self.sfu_info = sfu;
                self.refusal_told = false;
                let rejoined = self.pending_join.is_none();
                self.core.welcome(id.clone(), peers, now);
                // Whoever left while we were away is held, as if we had heard them go (a
                // session kept through our rejoin still subscribes for them).
                self.hold_absent();
                self.apply().await;
                if rejoined {
                    // After the resume proofs the rules just sent: a link broken by the same
                    // network change restarts ICE now (its last offer went out on the dead
                    // connection).
                    for l in self.links.values() {
                        let _ = l.tx.try_send(LinkCommand::SignalingBack);
                    }
                }
                let kicked = std::mem::take(&mut self.sfu_kicked);
                let moved = self
                    .sfu
                    .as_ref()
                    .is_some_and(|s| Some(&s.info) != self.sfu_info.as_ref());
                if self.core.in_call() && (kicked || moved) {
                    self.republish();
                    self.publish_snapshot().await;
                }
                if let Some(reply) = self.pending_join.take() {
                    let _ = reply.send(Ok(Joined {
                        id,
                        room,
                        participants: self.core.participants(),
                    }));
                }
            }
            SigEvent::PeerJoined { id, name } => {
                self.core.peer_joined(id, name, now);
                self.apply().await;
                if self.core.in_call() && self.sfu.is_none() && self.should_use_sfu(None) {
                    // The room grew past what a mesh holds: the call moves to the SFU.
                    self.go_sfu();
                    self.publish_snapshot().await;
                }
                // No longer small: a wait for a move back ends here.
                self.check_mesh_return().await;
            }
            SigEvent::PeerLeft { id } => {
                // Out of the room: nothing of ours reaches them from now on, not from when
                // the call rules stop waiting for a rejoin (their subscription is held, and
                // ends with the link; back under a new id with proof, it carries over).
                self.core.peer_left(&id, now);
                self.hold_absent();
                self.apply().await;
                // The room may be down to two: a direct link again, after a while.
                self.check_mesh_return().await;
            }
            SigEvent::Signal { from, data } => match CallSignal::from_data(&data) {
                Ok(
                    sig @ (CallSignal::Description { .. }
                    | CallSignal::Candidate { .. }
                    | CallSignal::Verify { .. }),
                ) => {
                    // What opens a direct link: an offer, or the offerer's verification
                    // commitment, which goes just before it.
                    let opens = match &sig {
                        CallSignal::Description { description } => {
                            description.kind == SdpType::Offer
                        }
                        CallSignal::Verify { commit, .. } => commit.is_some(),
                        _ => false,
                    };
                    if opens
                        && self.sfu.is_some()
                        && self.small_enough_for_mesh()
                        && self
                            .links
                            .get(&from)
                            .is_some_and(|l| l.role == Role::Subscribe)
                    {
                        // Someone we receive through the SFU opens a direct link: the room
                        // shrank back to two and their wait ran out first; follow (before
                        // this message, which the new link must not miss).
                        self.mesh_return.moved(now);
                        self.go_mesh();
                        self.publish_snapshot().await;
                    }
                    // A direct link's messages: none of our links takes them while the call
                    // runs through the SFU (whoever sends them is about to move too).
                    let direct = self.links.get(&from).filter(|l| l.role == Role::Mesh);
                    if let Some(l) = direct {
                        if l.tx.try_send(LinkCommand::Remote(sig)).is_err() {
                            tracing::warn!("link queue full: a call message was dropped");
                        }
                    } else {
                        tracing::debug!(
                            "{from} sent a session message but there is no call with them"
                        );
                    }
                }
                Ok(CallSignal::SfuOffer { sub, sdp, shares }) => {
                    if self.sfu_info.is_none() || !self.core.in_call() {
                        tracing::debug!("{from} offered an SFU subscription outside an SFU call");
                    } else {
                        self.sfu_offer(from, SfuOffer { sub, sdp, shares });
                        self.publish_snapshot().await;
                    }
                }
                // About the subscription we opened for them: only from someone in our call
                // through the SFU (nobody else can fill the session's queue), and the session
                // checks it is theirs.
                Ok(
                    CallSignal::SfuAnswer { sub, .. }
                    | CallSignal::SfuCandidate { sub, .. }
                    | CallSignal::SfuLayer { sub, .. },
                ) if !self
                    .links
                    .get(&from)
                    .is_some_and(|l| l.role == Role::Subscribe) =>
                {
                    tracing::debug!("{from} is not received through the SFU: {sub} ignored");
                }
                Ok(CallSignal::SfuAnswer { sub, sdp }) => {
                    self.to_session(SfuCommand::Answer(from, sub, sdp));
                }
                Ok(CallSignal::SfuCandidate { sub, candidate }) => {
                    self.to_session(SfuCommand::Candidate(from, sub, candidate));
                }
                Ok(CallSignal::SfuLayer { sub, layer }) => {
                    let want = match layer {
                        SfuLayer::Full => LayerWant::Full,
                        SfuLayer::Half => LayerWant::Half,
                    };
                    self.to_session(SfuCommand::Layer(from, sub, want));
                }
                Ok(sig) => {
                    self.core.signal(&from, sig, now);
                    self.apply().await;
                }
                Err(e) => tracing::debug!("ignoring a call message from {from}: {e}"),
            },
            SigEvent::Error { code, message } => {
                self.error(code.into(), message).await;
            }
            SigEvent::Reconnecting { reason, attempt } => {
                self.connection = ConnectionStatus::Reconnecting;
                if let Some(s) = &mut self.sig {
                    s.route = None;
                }
                self.tell_links_signaling_down();
                self.core.disconnected();
                self.apply().await;
                if attempt == 1 {
                    self.error(
                        ErrorCode::Reconnecting,
                        format!("lost the connection to the server ({reason}); reconnecting"),
                    )
                    .await;
                }
            }
            SigEvent::RejoinRefused { error, attempt } => {
                self.connection = ConnectionStatus::Reconnecting;
                if self.links.is_empty() {
                    // No call to save: the refusal stands.
                    self.fatal(error).await;
                    return;
                }
                if !self.refusal_told {
                    self.refusal_told = true;
                    self.error(
                        error.code(),
                        format!(
                            "the server refused to let us back in ({error}); the call goes on \
                             and Confab keeps trying"
                        ),
                    )
                    .await;
                }
                tracing::info!("rejoin refused ({error}), attempt {attempt}; links are alive");
                self.publish_snapshot().await;
            }
            SigEvent::Fatal(error) => self.fatal(error).await,
        }
    }

    /// The room is lost for good: tell whoever waits, and stop everything tied to it.
    async fn fatal(&mut self, error: JoinError) {
        let now = self.now();
        let first = self.pending_join.is_some();
        if let Some(reply) = self.pending_join.take() {
            let _ = reply.send(Err(error.into()));
        } else {
            self.error(error.code(), error.to_string()).await;
        }
        self.core.leave(now);
        self.apply().await;
        self.stop_signaling().await;
        if first {
            self.publish_snapshot().await;
        }
    }

    /// Has the way to the server moved since we joined? Then the connection is on a dead
    /// path: the client is told to leave it and connect again now, rather than after a check
    /// or the silence limit.
    fn signaling_route_moved(&mut self) {
        let Some(s) = &mut self.sig else {
            return;
        };
        if !s.route.is_some_and(|r| r.moved()) {
            return;
        }
        // Kept for the next tick when the client's queue is full (checks asked meanwhile).
        if s.check.try_send(Check::Moved).is_err() {
            return;
        }
        tracing::info!("our route to the signaling server moved; connecting again");
        s.route = None;
        self.tell_links_signaling_down();
    }

    /// No ICE restart offers while the signaling connection is down: they would be lost, or
    /// queued and sent stale after the rejoin (which restarts broken links itself). Links
    /// through an SFU negotiate over its own connection: not theirs to wait for.
    fn tell_links_signaling_down(&self) {
        for l in self.links.values().filter(|l| l.role == Role::Mesh) {
            let _ = l.tx.try_send(LinkCommand::SignalingDown);
        }
    }

    async fn signaling_stopped(&mut self) {
        if let Some(s) = self.sig.take() {
            let _ = s.task.await;
        }
        self.connection = ConnectionStatus::Offline;
        self.join_params = None;
        self.publish_snapshot().await;
    }

    async fn stop_signaling(&mut self) {
        self.sfu_offers.clear();
        if let Some(s) = self.sig.take() {
            // Let queued hang-ups go out before the leave.
            let deadline = Instant::now() + Duration::from_millis(500);
            while s.out.capacity() < s.out.max_capacity() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            s.cancel.cancel();
            let mut task = s.task;
            if tokio::time::timeout(Duration::from_secs(3), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
        self.connection = ConnectionStatus::Offline;
        self.join_params = None;
        self.joined_at = None;
        if let Some(reply) = self.pending_join.take() {
            let _ = reply.send(Err(JoinError::Cancelled.into()));
        }
        self.publish_snapshot().await;
    }

    async fn link_event(&mut self, ev: LinkEvent) {
        let now = self.now();
        match ev {
            // A link already let go (its messages may still be queued when the call moves to
            // or from the SFU) sends nothing: its words would reach the wrong link over there.
            LinkEvent::Signal(id, _, _)
                if !self.link_peer.contains_key(&id)
                    && self.sfu.as_ref().is_none_or(|s| s.publisher.id != id) => {}
            LinkEvent::Signal(id, _, sig)
                if self.sfu.as_ref().is_some_and(|s| s.publisher.id == id) =>
            {
                self.to_session(SfuCommand::Publish(sig));
            }
            LinkEvent::Signal(_, to, sig) => {
                // A subscriber link's answer and candidates go to the person whose offer it
                // took, named by its subscription.
                let sub = self.subscribed.get(&to).and_then(|s| s.sub);
                let subscriber = self
                    .links
                    .get(&to)
                    .is_some_and(|l| l.role == Role::Subscribe);
                match (subscriber, sub, sig) {
                    (false, _, sig) => self.send_signal(to, &sig),
                    (true, Some(sub), CallSignal::Description { description })
                        if description.kind == SdpType::Answer =>
                    {
                        let sdp = description.sdp;
                        self.send_signal(to, &CallSignal::SfuAnswer { sub, sdp });
                    }
                    (true, Some(sub), CallSignal::Candidate { candidate }) => {
                        self.send_signal(to, &CallSignal::SfuCandidate { sub, candidate });
                    }
                    (true, _, _) => {
                        tracing::debug!("a subscriber link's message has nowhere to go")
                    }
                }
            }
            LinkEvent::Layer(id, want) => {
                if let Some(peer) = self.link_peer.get(&id).cloned() {
                    if let Some(sub) = self.subscribed.get(&peer).and_then(|s| s.sub) {
                        let layer = match want {
                            LayerWant::Full => SfuLayer::Full,
                            LayerWant::Half => SfuLayer::Half,
                        };
                        self.send_signal(peer, &CallSignal::SfuLayer { sub, layer });
                    }
                }
            }
            LinkEvent::Connected(id) => {
                if let Some(peer) = self.link_peer.get(&id).cloned() {
                    self.core.link_connected(&peer, now);
                    self.apply().await;
                }
            }
            LinkEvent::Verified(id, v) => {
                if let Err(e) = &v.code {
                    let name = self
                        .link_peer
                        .get(&id)
                        .and_then(|p| self.core.name_of(p))
                        .unwrap_or("someone")
                        .to_owned();
                    tracing::warn!("the call with {name} could not be verified: {e}");
                }
                self.verifications.insert(id, v);
                self.publish_snapshot().await;
            }
            LinkEvent::ChatOpen(id) => {
                // Someone who joins later sees what was said (each member offers; the first
                // history taken wins on their side).
                if let (Some(wire), Some(peer)) = (self.chat.history(now), self.link_peer.get(&id))
                {
                    if let Some(l) = self.links.get(peer) {
                        let _ = l.tx.try_send(LinkCommand::Chat(wire));
                    }
                }
            }
            LinkEvent::Chat(id, wire) => {
                let Some(peer) = self.link_peer.get(&id).cloned() else {
                    return;
                };
                let name = self.core.name_of(&peer).unwrap_or("someone").to_owned();
                match self.chat.receive(&peer, &name, &wire, now) {
                    Ok(lines) => {
                        for line in lines {
                            self.emit(EngineEvent::Chat(line)).await;
                        }
                    }
                    Err(e) => tracing::debug!(%peer, "a chat message was refused: {e}"),
                }
            }
            LinkEvent::Failed(id, error)
                if self.sfu.as_ref().is_some_and(|s| s.publisher.id == id) =>
            {
                self.error(
                    error.code(),
                    format!("sending to the media server: {error}"),
                )
                .await;
            }
            LinkEvent::Failed(id, error) => {
                if let Some(peer) = self.link_peer.get(&id).cloned() {
                    let name = self.core.name_of(&peer).unwrap_or("someone").to_owned();
                    self.error(error.code(), format!("call with {name}: {error}"))
                        .await;
                    self.core.link_failed(&peer, now);
                    self.apply().await;
                }
            }
            LinkEvent::PathLost(_) => {
                // Our network may have changed under us: the signaling connection then went
                // with it, and the ICE restart needs it.
                if let Some(s) = &self.sig {
                    let _ = s.check.try_send(Check::Ping);
                }
            }
            LinkEvent::PathMoved(id) => {
                // Our network changed under the link. If the signaling connection's way moved
                // too, it is left now (the links hear `SignalingDown` first), and the link
                // restarts ICE once we have rejoined: an offer now would be lost with it.
                self.signaling_route_moved();
                if let Some(l) = self.link_peer.get(&id).and_then(|p| self.links.get(p)) {
                    let _ = l.tx.try_send(LinkCommand::PathGone);
                }
            }
            LinkEvent::Closed(id) => {
                // A link that ended on its own (not through CloseLink).
                if let Some(peer) = self.link_peer.remove(&id) {
                    if let Some(l) = self.links.remove(&peer) {
                        self.remember(&peer, l.id);
                        self.closing.push(l.task);
                    }
                    self.core.link_failed(&peer, now);
                    self.chat.forget(&peer);
                    self.apply().await;
                }
                self.hub.remove_link(id);
                self.verifications.remove(&id);
            }
        }
    }
}
