//! Real engines, a real signaling server on 127.0.0.1:0, real peer connections on loopback.
#![allow(dead_code)]

use confab_engine::media_kit::device::{AudioSourceSpec, VideoFormat, VideoSourceSpec};
use confab_engine::media_kit::video::VideoCodec;
use confab_engine::{Engine, EngineConfig, EngineEvent, NullSink, PeerStats, RtcSettings};
use confab_signal::{SignalConfig, SignalServer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| confab_engine::DEFAULT_LOG_FILTER.into()),
        )
        .with_test_writer()
        .try_init();
}

pub async fn server() -> SignalServer {
    SignalServer::start(SignalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .expect("server starts")
}

pub fn config(tone_hz: f64, codec: VideoCodec, auto_accept: bool) -> EngineConfig {
    EngineConfig {
        video: VideoSourceSpec::TestPattern,
        audio: AudioSourceSpec::Tone(tone_hz),
        speaker: None,
        format: VideoFormat {
            width: 320,
            height: 240,
            fps: 30.0,
        },
        rtc: RtcSettings {
            ice_servers: vec![],
            udp_addrs: vec!["127.0.0.1:0".into()],
            mdns: false,
            preferred_codec: codec,
            start_bitrate: 600_000,
            max_bitrate: 1_500_000,
            runtime: None,
            certificate: None,
            relay_only: false,
            health: Default::default(),
        },
        auto_accept,
        audio_bitrate: 32_000,
        // The tone tests measure the transport; noise suppression would take a steady tone
        // for noise (tests/audio.rs turns processing on).
        processing: confab_engine::media_kit::processing::ProcessingSettings::OFF,
        signaling_silence: confab_engine::signaling::SILENCE_LIMIT,
    }
}

pub struct Peer {
    pub engine: Engine,
    pub events: mpsc::Receiver<EngineEvent>,
    pub id: String,
}

pub async fn join(server: &SignalServer, room: &str, name: &str, config: EngineConfig) -> Peer {
    join_with_sink(server, room, name, config, Arc::new(NullSink)).await
}

/// Joins with `sink` taking the pictures the window would get.
pub async fn join_with_sink(
    server: &SignalServer,
    room: &str,
    name: &str,
    config: EngineConfig,
    sink: Arc<dyn confab_engine::VideoSink>,
) -> Peer {
    let (engine, events) = Engine::start(config, sink).expect("engine starts");
    let joined = engine
        .join(&server.ws_url(), room, name, None)
        .await
        .expect("joins");
    Peer {
        engine,
        events,
        id: joined.id.to_string(),
    }
}

impl Peer {
    /// Waits for an event that matches.
    pub async fn wait_event(
        &mut self,
        what: &str,
        mut f: impl FnMut(&EngineEvent) -> bool,
    ) -> EngineEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) if f(&ev) => return ev,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("events ended while waiting for {what}"),
                Err(_) => panic!("no {what} within 20 s"),
            }
        }
    }

    /// Waits until this peer sees `n` others in the room.
    pub async fn wait_participants(&mut self, n: usize) {
        self.wait_event(
            "the room to fill",
            |e| matches!(e, EngineEvent::State(s) if s.participants.len() == n),
        )
        .await;
    }

    /// Polls stats until `f` holds for the stats of `of`; returns them.
    pub async fn wait_stats(
        &self,
        of: &str,
        what: &str,
        f: impl Fn(&PeerStats) -> bool,
    ) -> PeerStats {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stats = self.engine.stats().await.unwrap();
            if let Some(s) = stats.iter().find(|s| s.id == of) {
                if f(s) {
                    return s.clone();
                }
                if Instant::now() > deadline {
                    panic!("{what}: not within 30 s; last stats {s:#?}");
                }
            } else if Instant::now() > deadline {
                panic!("{what}: no link to {of} within 30 s; stats {stats:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub fn hears(s: &PeerStats, hz: f64) -> bool {
    s.audio.tone_hz.is_some_and(|h| (h - hz).abs() < 5.0) && s.audio.level > 0.05
}

pub fn sees_pattern(s: &PeerStats, frames: u64) -> bool {
    s.video.pattern_frames >= frames
}

/// Ada (`a_cfg`) and Bob (`b_cfg`) join `room`; Ada calls, Bob accepts her ring. The call's
/// media may still be starting when this returns.
pub async fn call_pair(
    server: &SignalServer,
    room: &str,
    a_cfg: EngineConfig,
    b_cfg: EngineConfig,
) -> (Peer, Peer) {
    let mut a = join(server, room, "Ada", a_cfg).await;
    let mut b = join(server, room, "Bob", b_cfg).await;
    ring_accepted(&mut a, &mut b).await;
    (a, b)
}

/// `a` calls everyone in the room (once `b` is there) and `b` accepts the ring.
pub async fn ring_accepted(a: &mut Peer, b: &mut Peer) {
    a.wait_participants(1).await;
    a.engine.call(None).await.unwrap();
    b.wait_event("the ring", |e| {
        matches!(
            e,
            EngineEvent::Notice(confab_engine::call::Notice::IncomingCall { .. })
        )
    })
    .await;
    b.engine
        .accept(confab_protocol::PeerId(a.id.clone()))
        .await
        .unwrap();
}

/// [`ring_accepted`], answering once `b` decodes `a`'s camera.
pub async fn call_accepted(a: &mut Peer, b: &mut Peer) {
    ring_accepted(a, b).await;
    b.wait_stats(&a.id, "the caller's camera", |s| sees_pattern(s, 10))
        .await;
}
