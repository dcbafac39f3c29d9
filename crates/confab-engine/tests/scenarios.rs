//! Call scenarios with real engines, a real server and real media on loopback.

mod common;

use common::*;
use confab_engine::call::{Notice, Phase};
use confab_engine::media_kit::video::VideoCodec;
use confab_engine::EngineEvent;
use confab_protocol::PeerId;
use confab_signal::{SignalConfig, SignalServer};
use std::time::Duration;

/// Binds the same address again after a server stopped (retrying while the old socket lets go).
async fn restart_on(
    listen: std::net::SocketAddr,
    config: impl Fn() -> SignalConfig,
) -> SignalServer {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => return SignalServer::start_on(l, config()).unwrap(),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!("rebinding {listen}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot listen on {listen} again: {e}"),
        }
    }
}

async fn audio_packets_from(p: &Peer, of: &str) -> u64 {
    p.engine
        .stats()
        .await
        .unwrap()
        .iter()
        .find(|s| s.id == of)
        .map_or(0, |s| s.audio.packets)
}

async fn released(p: &Peer) -> bool {
    for _ in 0..60 {
        let r = p.engine.resources().await.unwrap();
        if r.links == 0 && r.link_tasks == 0 && r.media == Default::default() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_party_mesh() {
    init_logs();
    let server = server().await;
    let mut a = join(
        &server,
        "mesh",
        "Ada",
        config(440.0, VideoCodec::H264, false),
    )
    .await;
    let b = join(
        &server,
        "mesh",
        "Bob",
        config(660.0, VideoCodec::H264, true),
    )
    .await;
    let c = join(&server, "mesh", "Cy", config(880.0, VideoCodec::Vp8, true)).await;
    a.wait_participants(2).await;
    a.engine.call(None).await.unwrap();
    let tones = [(&a, 440.0), (&b, 660.0), (&c, 880.0)];
    for (me, _) in tones {
        for (other, hz) in tones {
            if me.id == other.id {
                continue;
            }
            let s = me
                .wait_stats(&other.id, "every pair sees and hears each other", |s| {
                    sees_pattern(s, 30) && hears(s, hz)
                })
                .await;
            assert_eq!(s.video.frames_out_of_order, 0, "{s:#?}");
        }
        assert_eq!(me.engine.resources().await.unwrap().links, 2);
    }
    // c prefers VP8, a and b H.264: whoever offers decides each link's codec.
    let a_sees_c = a
        .engine
        .stats()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == c.id)
        .unwrap();
    assert_eq!(
        a_sees_c.video.codec.as_deref(),
        Some("h264"),
        "a rang c, so a's offer chose"
    );
    for p in [&a, &b, &c] {
        p.engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn glare_both_call_at_once() {
    init_logs();
    let server = server().await;
    let mut a = join(
        &server,
        "glare",
        "Ada",
        config(440.0, VideoCodec::H264, false),
    )
    .await;
    let mut b = join(
        &server,
        "glare",
        "Bob",
        config(660.0, VideoCodec::H264, false),
    )
    .await;
    a.wait_participants(1).await;
    b.wait_participants(1).await;
    let (ra, rb) = tokio::join!(a.engine.call(None), b.engine.call(None));
    ra.unwrap();
    rb.unwrap();
    a.wait_stats(&b.id, "a gets b's media", |s| {
        sees_pattern(s, 30) && hears(s, 660.0)
    })
    .await;
    b.wait_stats(&a.id, "b gets a's media", |s| {
        sees_pattern(s, 30) && hears(s, 440.0)
    })
    .await;
    for p in [&a, &b] {
        assert_eq!(
            p.engine.resources().await.unwrap().links,
            1,
            "one call, one link"
        );
        let snap = p.engine.snapshot().await.unwrap();
        assert!(snap.in_call);
        assert_eq!(snap.participants[0].phase, Phase::Connected);
    }
    a.engine.shutdown().await;
    b.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decline() {
    init_logs();
    let server = server().await;
    let mut a = join(&server, "no", "Ada", config(440.0, VideoCodec::H264, false)).await;
    let mut b = join(&server, "no", "Bob", config(660.0, VideoCodec::H264, false)).await;
    a.wait_participants(1).await;
    a.engine.call(None).await.unwrap();
    b.wait_event("the ring", |e| {
        matches!(e, EngineEvent::Notice(Notice::IncomingCall { .. }))
    })
    .await;
    b.engine.decline(PeerId(a.id.clone())).await.unwrap();
    let ev = a
        .wait_event("the decline", |e| {
            matches!(e, EngineEvent::Notice(Notice::Declined { .. }))
        })
        .await;
    let EngineEvent::Notice(Notice::Declined { name, .. }) = ev else {
        unreachable!()
    };
    assert_eq!(name, "Bob");
    a.wait_event(
        "the call to end",
        |e| matches!(e, EngineEvent::State(s) if !s.in_call),
    )
    .await;
    assert!(released(&a).await && released(&b).await);
    // Declining twice is an error in words, not a crash.
    let err = b.engine.decline(PeerId(a.id.clone())).await.unwrap_err();
    assert_eq!(err.code(), confab_engine::ErrorCode::NotRinging);
    a.engine.shutdown().await;
    b.engine.shutdown().await;
}

async fn frames_from(p: &Peer, of: &str) -> u64 {
    let stats = p.engine.stats().await.unwrap();
    stats
        .iter()
        .find(|s| s.id == of)
        .map(|s| s.video.frames_decoded)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mute_gives_silence_and_camera_off_stops_frames() {
    init_logs();
    let server = server().await;
    let mut a = join(
        &server,
        "mute",
        "Ada",
        config(440.0, VideoCodec::H264, true),
    )
    .await;
    let mut b = join(
        &server,
        "mute",
        "Bob",
        config(660.0, VideoCodec::H264, true),
    )
    .await;
    a.wait_participants(1).await;
    a.engine.call(None).await.unwrap();
    b.wait_stats(&a.id, "b hears and sees a", |s| {
        sees_pattern(s, 20) && hears(s, 440.0)
    })
    .await;

    a.engine.set_mic_enabled(false).await.unwrap();
    b.wait_stats(&a.id, "b hears silence from a", |s| s.audio.level < 0.005)
        .await;
    b.wait_event(
        "a shown muted",
        |e| matches!(e, EngineEvent::State(s) if s.participants.iter().any(|p| !p.audio)),
    )
    .await;
    // The video still flows while muted.
    let before = frames_from(&b, &a.id).await;
    b.wait_stats(&a.id, "video flows while muted", |s| {
        s.video.frames_decoded > before + 10
    })
    .await;

    // Unmuted again; then the camera goes off while the microphone keeps sending, so that the
    // audio proves the link alive while no picture comes.
    a.engine.set_mic_enabled(true).await.unwrap();
    b.wait_stats(&a.id, "a heard again", |s| hears(s, 440.0))
        .await;
    a.engine.set_camera_enabled(false).await.unwrap();
    b.wait_event(
        "a shown with camera off",
        |e| matches!(e, EngineEvent::State(s) if s.participants.iter().any(|p| !p.video)),
    )
    .await;
    // Let frames already on their way arrive (measured in audio packets, which keep coming),
    // then check that a whole second more of a live link brings no new picture.
    let a0 = audio_packets_from(&b, &a.id).await;
    b.wait_stats(&a.id, "the link settles", |s| s.audio.packets > a0 + 15)
        .await;
    let stopped = frames_from(&b, &a.id).await;
    let a1 = audio_packets_from(&b, &a.id).await;
    b.wait_stats(&a.id, "a second of a live link", |s| {
        s.audio.packets > a1 + 50
    })
    .await;
    assert_eq!(
        frames_from(&b, &a.id).await,
        stopped,
        "no frames with the camera off, while the link is alive (audio kept coming)"
    );

    // The camera back on: new frames return (from a keyframe).
    a.engine.set_camera_enabled(true).await.unwrap();
    b.wait_stats(&a.id, "a is back", |s| {
        hears(s, 440.0) && s.video.frames_decoded > stopped + 15
    })
    .await;
    a.engine.shutdown().await;
    b.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn newcomer_joins_a_running_call() {
    init_logs();
    let server = server().await;
    let mut a = join(&server, "run", "Ada", config(440.0, VideoCodec::H264, true)).await;
    let b = join(&server, "run", "Bob", config(660.0, VideoCodec::H264, true)).await;
    a.wait_participants(1).await;
    a.engine.call(None).await.unwrap();
    a.wait_stats(&b.id, "a-b call", |s| sees_pattern(s, 10))
        .await;
    let mut c = join(&server, "run", "Cy", config(880.0, VideoCodec::H264, false)).await;
    c.wait_event("c sees the call in progress", |e| {
        matches!(e, EngineEvent::State(s) if s.participants.len() == 2 && s.participants.iter().all(|p| p.in_call))
    })
    .await;
    c.engine.call(None).await.unwrap();
    for (other, hz) in [(&a, 440.0), (&b, 660.0)] {
        c.wait_stats(&other.id, "c gets everyone", |s| {
            sees_pattern(s, 20) && hears(s, hz)
        })
        .await;
        other
            .wait_stats(&c.id, "everyone gets c", |s| {
                sees_pattern(s, 20) && hears(s, 880.0)
            })
            .await;
    }
    for p in [&a, &b, &c] {
        p.engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_call_survives_a_server_restart() {
    init_logs();
    // The first server gets a listener that is already bound (no bind-drop-rebind race).
    let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listen = first.local_addr().unwrap();
    let config_on = || SignalConfig {
        listen,
        ..Default::default()
    };
    let server = SignalServer::start_on(first, config_on()).unwrap();
    let mut a = join(&server, "up", "Ada", config(440.0, VideoCodec::H264, true)).await;
    let mut b = join(&server, "up", "Bob", config(660.0, VideoCodec::H264, true)).await;
    a.wait_participants(1).await;
    a.engine.call(None).await.unwrap();
    b.wait_stats(&a.id, "the call runs", |s| sees_pattern(s, 20))
        .await;

    server.shutdown(Duration::from_secs(2)).await;
    a.wait_event("a notices", |e| {
        matches!(e, EngineEvent::State(s) if s.connection == confab_engine::ConnectionStatus::Reconnecting)
    })
    .await;
    // Media keeps flowing peer to peer while the server is down.
    let before = frames_from(&b, &a.id).await;
    b.wait_stats(&a.id, "media flows without the server", |s| {
        s.video.frames_decoded > before + 20
    })
    .await;

    // The restart takes the same port again (the clients know only that address).
    let server = restart_on(listen, config_on).await;
    for p in [&mut a, &mut b] {
        p.wait_event("rejoined, with the other back in the call", |e| {
            matches!(e, EngineEvent::State(s) if s.connection == confab_engine::ConnectionStatus::Connected
                && s.participants.len() == 1
                && s.participants[0].phase == Phase::Connected)
        })
        .await;
    }
    // Signaling works again under the new ids: a hang-up reaches the other side.
    a.engine.hang_up().await.unwrap();
    b.wait_event("the hang-up", |e| {
        matches!(e, EngineEvent::Notice(Notice::HungUp { .. }))
    })
    .await;
    assert!(released(&b).await);
    a.engine.shutdown().await;
    b.engine.shutdown().await;
    server.shutdown(Duration::from_secs(2)).await;
}
