//! The [`Engine`] handle: every public operation is a command sent to the engine's actor
//! (`actor.rs`) over a bounded channel, answered on a oneshot.

use crate::actor::{self, Cmd};
use crate::api::{EngineConfig, EngineEvent, EngineResources, Joined, Snapshot};
use crate::error::EngineError;
use crate::ice::IceServer;
use crate::media::VideoSink;
use crate::signaling::{self, JoinParams};
use crate::stats::{NetworkStats, PeerStats};
use confab_media::device::{AudioSourceSpec, VideoSourceSpec};
use confab_protocol::PeerId;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The handle. Cheap to clone; the engine stops when [`Engine::shutdown`] is called or every
/// handle is dropped.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Cmd>,
    silence_limit: std::time::Duration,
    task: Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Engine {
    /// Starts the engine on the current tokio runtime.
    pub fn start(
        config: EngineConfig,
        sink: Arc<dyn VideoSink>,
    ) -> Result<(Engine, mpsc::Receiver<EngineEvent>), EngineError> {
        let (tx, rx) = mpsc::channel(64);
        let silence_limit = config.signaling_silence;
        let (events, task) = actor::spawn(config, sink, rx)?;
        Ok((
            Engine {
                tx,
                silence_limit,
                task: Arc::new(tokio::sync::Mutex::new(Some(task))),
            },
            events,
        ))
    }

    /// Sends a command and waits for its answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, EngineError>>) -> Cmd,
    ) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Sends a query whose answer cannot fail.
    async fn query<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Cmd,
    ) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Joins a room; resolves with the welcome, or the server's refusal in words.
    pub async fn join(
        &self,
        server: &str,
        room: &str,
        name: &str,
        password: Option<&str>,
    ) -> Result<Joined, EngineError> {
        // One server, or a cluster's nodes separated by commas or spaces (tried in order).
        let urls = signaling::normalize_urls(server).map_err(EngineError::BadAddress)?;
        confab_protocol::validate_room(room).map_err(EngineError::InvalidRoom)?;
        // The name as the server will announce it (normalized), so ours matches.
        let name = confab_protocol::check_name(name)
            .map_err(|e| EngineError::InvalidName(e.to_string()))?;
        let params = JoinParams {
            urls,
            room: room.into(),
            name,
            password: password.filter(|p| !p.is_empty()).map(Into::into),
            silence_limit: self.silence_limit,
        };
        self.ask(|r| Cmd::Join(params, r)).await
    }

    pub async fn leave(&self) -> Result<(), EngineError> {
        self.ask(Cmd::Leave).await
    }

    /// Rings everyone in the room (`None`) or one peer.
    pub async fn call(&self, target: Option<PeerId>) -> Result<(), EngineError> {
        self.ask(|r| Cmd::Call(target, r)).await
    }

    /// Calls everyone as soon as someone is in the room (now, if someone is).
    pub async fn call_when_present(&self) -> Result<(), EngineError> {
        self.ask(Cmd::CallWhenPresent).await
    }

    pub async fn accept(&self, peer: PeerId) -> Result<(), EngineError> {
        self.ask(|r| Cmd::Accept(peer, r)).await
    }

    pub async fn decline(&self, peer: PeerId) -> Result<(), EngineError> {
        self.ask(|r| Cmd::Decline(peer, r)).await
    }

    pub async fn hang_up(&self) -> Result<(), EngineError> {
        self.ask(Cmd::HangUp).await
    }

    pub async fn set_mic_enabled(&self, on: bool) -> Result<(), EngineError> {
        self.ask(|reply| Cmd::SetMedia {
            audio: Some(on),
            video: None,
            reply,
        })
        .await
    }

    pub async fn set_camera_enabled(&self, on: bool) -> Result<(), EngineError> {
        self.ask(|reply| Cmd::SetMedia {
            audio: None,
            video: Some(on),
            reply,
        })
        .await
    }

    /// Switches devices (each `None` = unchanged), also during a call.
    pub async fn select_devices(
        &self,
        camera: Option<VideoSourceSpec>,
        microphone: Option<AudioSourceSpec>,
        speaker: Option<Option<Option<String>>>,
    ) -> Result<(), EngineError> {
        self.ask(|reply| {
            Cmd::Devices(crate::devices::Switch {
                camera,
                microphone,
                speaker,
                share: None,
                reply,
            })
        })
        .await
    }

    /// Lets everyone who asks to join our call in without asking (`true`), or asks each time.
    pub async fn set_admit_all(&self, on: bool) -> Result<(), EngineError> {
        self.ask(|r| Cmd::AdmitAll(on, r)).await
    }

    /// Shows the camera locally without a call.
    pub async fn set_preview(&self, on: bool) -> Result<(), EngineError> {
        self.ask(|r| Cmd::Preview(on, r)).await
    }

    /// STUN/TURN servers for the calls set up from now on (each is checked first).
    pub async fn set_ice_servers(&self, servers: Vec<IceServer>) -> Result<(), EngineError> {
        for s in &servers {
            s.check()?;
        }
        self.ask(|r| Cmd::IceServers(servers, r)).await
    }

    /// Says `text` to everyone in the call; the line as shown (cleaned) comes back.
    pub async fn say(&self, text: &str) -> Result<confab_call::chat::ChatLine, EngineError> {
        self.ask(|r| Cmd::Say(text.to_owned(), r)).await
    }

    /// The chat of the current call so far, oldest first.
    pub async fn chat(&self) -> Result<Vec<confab_call::chat::ChatLine>, EngineError> {
        self.query(Cmd::Chat).await
    }

    /// "Relay only" for the calls set up from now on: media only through a TURN relay.
    pub async fn set_relay_only(&self, on: bool) -> Result<(), EngineError> {
        self.ask(|r| Cmd::RelayOnly(on, r)).await
    }

    /// Shares a screen or window (`Some(VideoSourceSpec::Screen(..))`, from
    /// `confab_media::device::share_source`; `TestPattern` is the synthetic test screen) on its
    /// own track next to the camera, or stops sharing (`None`); only in a call (`not-in-call`).
    /// It stops with the call, and when what is shared can no longer be captured (a closed
    /// window: an `Error` event with code `share`). `snapshot().sharing` says what is shared.
    pub async fn share(
        &self,
        source: Option<confab_media::device::VideoSourceSpec>,
    ) -> Result<(), EngineError> {
        // Opened by the devices task, like a camera: a slow capture never stalls signaling.
        self.ask(|reply| {
            Cmd::Devices(crate::devices::Switch {
                camera: None,
                microphone: None,
                speaker: None,
                share: Some(source),
                reply,
            })
        })
        .await
    }

    /// Tests the microphone (the join screen's test; only outside a call, `already-in-call`):
    /// records 3 s of it, cleaned as in a call, its level on `progress` about ten times a
    /// second, then plays the recording on the speaker. Answers what it heard. A call that
    /// starts meanwhile ends the test (`stopped`).
    pub async fn check_microphone(
        &self,
        progress: tokio::sync::mpsc::Sender<confab_media::device::mic_check::MicCheckProgress>,
    ) -> Result<confab_media::device::mic_check::MicCheckResult, EngineError> {
        self.ask(|reply| Cmd::MicCheck(progress, reply)).await
    }

    /// Echo cancellation, noise suppression and gain on the microphone, from its next frame.
    pub async fn set_audio_processing(
        &self,
        settings: confab_media::processing::ProcessingSettings,
    ) -> Result<(), EngineError> {
        self.ask(|r| Cmd::Processing(settings, r)).await
    }

    /// What the microphone's processing is doing (settings, the echo canceller's estimates),
    /// as of the last second.
    pub async fn audio_processing(
        &self,
    ) -> Result<confab_media::processing::ProcessingStats, EngineError> {
        self.query(Cmd::ProcessingStats).await
    }

    pub async fn stats(&self) -> Result<Vec<PeerStats>, EngineError> {
        self.query(Cmd::Stats).await
    }

    /// In a call through an SFU: what our publisher link carries to it (our whole uplink of
    /// media); `None` otherwise.
    pub async fn sfu_network(&self) -> Result<Option<NetworkStats>, EngineError> {
        self.query(Cmd::SfuNetwork).await
    }

    pub async fn resources(&self) -> Result<EngineResources, EngineError> {
        self.query(Cmd::Resources).await
    }

    pub async fn snapshot(&self) -> Result<Snapshot, EngineError> {
        self.query(Cmd::Snapshot).await
    }

    /// Makes the actor panic (tests of its watch only).
    #[cfg(feature = "fault-injection")]
    pub async fn inject_panic(&self) {
        let _ = self.tx.send(Cmd::Panic).await;
    }

    /// Hangs up, leaves, closes every link and device, and waits for all of it.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Cmd::Shutdown).await;
        let task = self.task.lock().await.take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}
