//! Opening and closing devices, off the engine's actor: a camera can take seconds to open (ten
//! when it is busy), and signaling must not wait for it. The actor says what it wants
//! ([`Want`], latest wins) and asks for switches; this task does the blocking work in order and
//! reports what is open now. A share is the exception: starting one can wait minutes for the
//! person (the desktop's own picker), so it runs beside the worker ([`PendingShare`]) and is
//! given up when the call ends or another share is asked for; until then the camera, the
//! microphone and the call go on.

use crate::error::{EngineError, ErrorCode};
use crate::media::MediaHub;
use confab_media::device::mic_check::{self, MicCheckProgress, MicCheckResult};
use confab_media::device::{AudioOut, AudioSourceSpec, VideoSourceSpec};
use confab_media::processing::ProcessingSettings;
use confab_media::MediaError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How often a running share is checked for a capture that stopped by itself.
const SHARE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// What should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    /// The camera (in a call, or previewing).
    pub camera: bool,
    /// The microphone and the speaker (in a call).
    pub call: bool,
}

/// The devices to use (each `None` = unchanged). `speaker`: `None` plays nowhere,
/// `Some(None)` the default speaker.
pub struct Switch {
    pub camera: Option<VideoSourceSpec>,
    pub microphone: Option<AudioSourceSpec>,
    pub speaker: Option<Option<Option<String>>>,
    /// Start sharing (`Some(Some(source))`) or stop (`Some(None)`); only in a call.
    pub share: Option<Option<VideoSourceSpec>>,
    pub reply: oneshot::Sender<Result<(), EngineError>>,
}

/// A microphone test (the join screen's): only outside a call; a call that starts ends it.
pub struct MicCheck {
    pub processing: ProcessingSettings,
    /// The level as it comes (full = dropped: it is only a meter).
    pub progress: mpsc::Sender<MicCheckProgress>,
    pub reply: oneshot::Sender<Result<MicCheckResult, EngineError>>,
}

/// What is open now (descriptions for the snapshot), and what went wrong.
#[derive(Debug, Default)]
pub struct Report {
    pub camera: Option<String>,
    pub microphone: Option<String>,
    pub speaker: Option<String>,
    /// What is shared, if anything.
    pub share: Option<String>,
    pub errors: Vec<(ErrorCode, String)>,
}

pub struct Devices {
    want: watch::Sender<Want>,
    switches: mpsc::Sender<Switch>,
    checks: mpsc::Sender<MicCheck>,
    task: JoinHandle<()>,
}

impl Devices {
    pub fn start(
        hub: Arc<MediaHub>,
        video: VideoSourceSpec,
        audio: AudioSourceSpec,
        speaker: Option<Option<String>>,
        reports: mpsc::Sender<Report>,
    ) -> Devices {
        let (want, want_rx) = watch::channel(Want::default());
        let (switches, switch_rx) = mpsc::channel(8);
        let (checks, check_rx) = mpsc::channel(2);
        let worker = Worker {
            hub,
            video,
            audio,
            speaker,
            now: Want::default(),
            report: Report::default(),
            reports,
            check: None,
            shared: None,
            pending: None,
        };
        let task = tokio::spawn(worker.run(want_rx, switch_rx, check_rx));
        Devices {
            want,
            switches,
            checks,
            task,
        }
    }

    pub fn want(&self, w: Want) {
        self.want.send_if_modified(|cur| {
            let changed = *cur != w;
            *cur = w;
            changed
        });
    }

    pub async fn switch(&self, s: Switch) {
        if let Err(e) = self.switches.send(s).await {
            let _ = e.0.reply.send(Err(EngineError::Stopped));
        }
    }

    pub async fn mic_check(&self, c: MicCheck) {
        if let Err(e) = self.checks.send(c).await {
            let _ = e.0.reply.send(Err(EngineError::Stopped));
        }
    }

    /// Closes every device and waits for the worker.
    pub async fn stop(self) {
        self.want(Want::default());
        drop(self.checks);
        drop(self.switches);
        drop(self.want);
        let _ = self.task.await;
    }
}

struct Worker {
    hub: Arc<MediaHub>,
    video: VideoSourceSpec,
    audio: AudioSourceSpec,
    speaker: Option<Option<String>>,
    /// What runs now.
    now: Want,
    report: Report,
    reports: mpsc::Sender<Report>,
    /// A running microphone test: its stop flag and its thread (awaited when it ends).
    check: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// What is being shared (asking for it again keeps the running capture).
    shared: Option<VideoSourceSpec>,
    /// A share being started.
    pending: Option<PendingShare>,
}

/// A share being started, beside the worker: its cancel flag and task, what was asked, and
/// its switch's reply (with the first error of the switch's other parts), sent once it is done.
struct PendingShare {
    cancel: Arc<AtomicBool>,
    task: JoinHandle<Result<Option<String>, MediaError>>,
    share: VideoSourceSpec,
    reply: oneshot::Sender<Result<(), EngineError>>,
    first: Option<EngineError>,
}

/// How a share being started ended (never, without one).
async fn share_started(pending: &mut Option<PendingShare>) -> Result<Option<String>, MediaError> {
    match pending {
        Some(p) => (&mut p.task)
            .await
            .unwrap_or_else(|e| Err(MediaError::Device(format!("device work failed: {e}")))),
        None => std::future::pending().await,
    }
}

/// Runs blocking device work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MediaError> + Send + 'static,
) -> Result<T, MediaError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(MediaError::Device(format!("device work failed: {e}"))))
}

impl Worker {
    async fn run(
        mut self,
        mut want: watch::Receiver<Want>,
        mut switches: mpsc::Receiver<Switch>,
        mut checks: mpsc::Receiver<MicCheck>,
    ) {
        // A shared window that closes ends the share: looked at once a second.
        let mut share_poll = tokio::time::interval(SHARE_CHECK);
        share_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = share_poll.tick(), if self.report.share.is_some() => {
                    if self.hub.share_ended() {
                        self.share_lost().await;
                    }
                }
                changed = want.changed() => {
                    let w = *want.borrow_and_update();
                    self.apply(w).await;
                    if changed.is_err() {
                        break;
                    }
                }
                done = share_started(&mut self.pending), if self.pending.is_some() => {
                    self.share_ready(done).await;
                }
                Some(c) = checks.recv() => self.start_check(c).await,
                s = switches.recv() => match s {
                    Some(s) => self.switch(s).await,
                    None => {
                        // The engine is stopping: close everything.
                        self.apply(Want::default()).await;
                        break;
                    }
                },
            }
        }
        // However the loop ended, a share still being started is given up, and a microphone
        // test still running is stopped and joined.
        self.give_up_share().await;
        self.end_check().await;
    }

    /// Starts a microphone test on a thread of its own (it takes six seconds; device switches
    /// and calls do not wait for it). A test already running is ended first.
    async fn start_check(&mut self, c: MicCheck) {
        self.end_check().await;
        if self.now.call {
            let _ = c.reply.send(Err(EngineError::MicInCall));
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (mic, speaker, flag) = (self.audio.clone(), self.speaker.clone(), stop.clone());
        let task = tokio::task::spawn_blocking(move || {
            let result = (|| {
                let mut out = match speaker {
                    Some(which) => AudioOut::speaker(which)?,
                    None => AudioOut::null(),
                };
                mic_check::run(
                    &mic,
                    c.processing,
                    &flag,
                    |p| {
                        let _ = c.progress.try_send(p);
                    },
                    |f| out.play(f),
                )
            })();
            let _ = c.reply.send(result.map_err(EngineError::from));
        });
        self.check = Some((stop, task));
    }

    /// Ends a running microphone test (a call needs the microphone) and waits for its thread.
    async fn end_check(&mut self) {
        if let Some((stop, task)) = self.check.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = task.await;
        }
    }

    /// A share being started is done: what is shared now, and its switch's answer.
    async fn share_ready(&mut self, done: Result<Option<String>, MediaError>) {
        let Some(p) = self.pending.take() else { return };
        let mut first = p.first;
        match done {
            Ok(d) => {
                self.shared = Some(p.share).filter(|_| d.is_some());
                self.report.share = d;
            }
            Err(e) => {
                self.share_gone();
                first.get_or_insert(e.into());
            }
        }
        self.answer(p.reply, first).await;
    }

    /// Gives up a share still being started (the desktop's picker closes) and waits for it;
    /// its switch hears that it was cancelled.
    async fn give_up_share(&mut self) {
        let Some(p) = self.pending.take() else { return };
        p.cancel.store(true, Ordering::Relaxed);
        if matches!(p.task.await, Ok(Ok(Some(_)))) {
            // Chosen just as it was given up: stopped again.
            let hub = self.hub.clone();
            let _ = blocking(move || hub.set_share_source(None, Arc::default())).await;
        }
        self.share_gone();
        let _ = p.reply.send(Err(MediaError::Cancelled(
            "nothing was shared: sharing was stopped before anything was chosen".into(),
        )
        .into()));
    }

    /// The shared screen or window went away: sharing stops, and the window hears why.
    async fn share_lost(&mut self) {
        let hub = self.hub.clone();
        let _ = blocking(move || hub.set_share_source(None, Arc::default())).await;
        let what = self.share_gone().unwrap_or_default();
        self.report.errors.push((
            ErrorCode::Share,
            format!("Sharing stopped: “{what}” can no longer be captured (was it closed?)"),
        ));
        self.send_report().await;
    }

    /// Nothing is shared any more: what was (its description).
    fn share_gone(&mut self) -> Option<String> {
        self.shared = None;
        self.report.share.take()
    }

    async fn send_report(&mut self) {
        let r = Report {
            camera: self.report.camera.clone(),
            microphone: self.report.microphone.clone(),
            speaker: self.report.speaker.clone(),
            share: self.report.share.clone(),
            errors: std::mem::take(&mut self.report.errors),
        };
        let _ = self.reports.send(r).await;
    }

    async fn open_camera(&mut self) -> Result<(), MediaError> {
        let (hub, spec) = (self.hub.clone(), self.video.clone());
        match blocking(move || hub.set_video_source(&spec)).await {
            Ok(d) => {
                self.report.camera = d;
                Ok(())
            }
            Err(e) => {
                self.report.camera = None;
                self.report.errors.push((
                    ErrorCode::Camera,
                    format!("{e}; the call goes on without video"),
                ));
                Err(e)
            }
        }
    }

    async fn open_microphone(&mut self) -> Result<(), MediaError> {
        let (hub, spec) = (self.hub.clone(), self.audio.clone());
        match blocking(move || hub.set_audio_source(&spec)).await {
            Ok(d) => {
                self.report.microphone = d;
                Ok(())
            }
            Err(e) => {
                self.report.microphone = None;
                self.report.errors.push((
                    ErrorCode::Microphone,
                    format!("{e}; others will not hear you"),
                ));
                Err(e)
            }
        }
    }

    async fn open_speaker(&mut self) -> Result<(), MediaError> {
        let (hub, which) = (self.hub.clone(), self.speaker.clone());
        match blocking(move || hub.set_speaker(which)).await {
            Ok(d) => {
                self.report.speaker = Some(d);
                Ok(())
            }
            Err(e) => {
                // No sound card: play nowhere, the call goes on.
                let hub = self.hub.clone();
                let _ = blocking(move || hub.set_speaker(None)).await;
                self.report.speaker = None;
                self.report.errors.push((
                    ErrorCode::Speaker,
                    format!("{e}; you will not hear the others"),
                ));
                Err(e)
            }
        }
    }

    async fn apply(&mut self, w: Want) {
        let was = self.now;
        if w == was {
            return;
        }
        self.now = w;
        if !w.camera && !w.call {
            self.give_up_share().await;
            let hub = self.hub.clone();
            let _ = blocking(move || {
                hub.stop_devices();
                Ok(())
            })
            .await;
            self.report.camera = None;
            self.report.microphone = None;
            self.report.speaker = None;
            self.share_gone();
            self.send_report().await;
            return;
        }
        if w.camera && !was.camera {
            let _ = self.open_camera().await;
        } else if !w.camera && was.camera {
            let hub = self.hub.clone();
            let _ = blocking(move || hub.set_video_source(&VideoSourceSpec::None)).await;
            self.report.camera = None;
        }
        if w.call && !was.call {
            self.end_check().await;
            let _ = self.open_microphone().await;
            let _ = self.open_speaker().await;
        } else if !w.call && was.call {
            // The call is over: so is the share, chosen or still being chosen.
            self.give_up_share().await;
            let hub = self.hub.clone();
            let _ = blocking(move || {
                hub.set_share_source(None, Arc::default())?;
                hub.set_audio_source(&AudioSourceSpec::None)?;
                hub.set_speaker(None)
            })
            .await;
            self.report.microphone = None;
            self.report.speaker = None;
            self.share_gone();
        }
        self.send_report().await;
    }

    async fn switch(&mut self, s: Switch) {
        let mut first: Option<EngineError> = None;
        // A device already open as asked is left alone: reopening it would cost a camera a
        // second of black, and restart the test pattern's frame numbers mid-call.
        if let Some(c) = s.camera {
            let open_as_asked = c == self.video && self.report.camera.is_some();
            self.video = c;
            if self.now.camera && !open_as_asked {
                if let Err(e) = self.open_camera().await {
                    first.get_or_insert(e.into());
                }
            }
        }
        if let Some(m) = s.microphone {
            let open_as_asked = m == self.audio && self.report.microphone.is_some();
            self.audio = m;
            if self.now.call && !open_as_asked {
                if let Err(e) = self.open_microphone().await {
                    first.get_or_insert(e.into());
                }
            }
        }
        if let Some(sp) = s.speaker {
            let open_as_asked = sp == self.speaker && self.report.speaker.is_some();
            self.speaker = sp;
            if self.now.call && !open_as_asked {
                if let Err(e) = self.open_speaker().await {
                    first.get_or_insert(e.into());
                }
            }
        }
        if let Some(share) = s.share {
            // A share still being started gives way to whatever is asked now.
            self.give_up_share().await;
            match share {
                Some(_) if !self.now.call => {
                    first.get_or_insert(EngineError::NotInCall);
                }
                Some(spec) if self.shared.as_ref() == Some(&spec) && !self.hub.share_ended() => {
                    // Already shared: a second ask (a double click, a stale snapshot) keeps
                    // the running capture rather than starting the screen over.
                }
                Some(spec) => {
                    // The old share stops at once; the new one may wait for the person, and
                    // the worker goes on meanwhile. Its switch is answered once it is done.
                    self.share_gone();
                    let cancel = Arc::new(AtomicBool::new(false));
                    let (hub, flag, asked) = (self.hub.clone(), cancel.clone(), spec.clone());
                    let task = tokio::task::spawn_blocking(move || {
                        hub.set_share_source(Some(&asked), flag)
                    });
                    if first.is_some() {
                        self.report.errors.clear();
                    }
                    self.send_report().await;
                    self.pending = Some(PendingShare {
                        cancel,
                        task,
                        share: spec,
                        reply: s.reply,
                        first,
                    });
                    return;
                }
                None => {
                    let hub = self.hub.clone();
                    let stopped = blocking(move || hub.set_share_source(None, Arc::default()));
                    if let Err(e) = stopped.await {
                        first.get_or_insert(e.into());
                    }
                    self.share_gone();
                }
            }
        }
        self.answer(s.reply, first).await;
    }

    /// The caller hears of its own failure; the window learns what is open now.
    async fn answer(
        &mut self,
        reply: oneshot::Sender<Result<(), EngineError>>,
        first: Option<EngineError>,
    ) {
        if first.is_some() {
            self.report.errors.clear();
        }
        self.send_report().await;
        let _ = reply.send(first.map_or(Ok(()), Err));
    }
}
