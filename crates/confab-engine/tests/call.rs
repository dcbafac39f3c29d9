//! Two and three engines calling each other through a real server, with real media.

mod common;

use common::*;
use confab_engine::call::Notice;
use confab_engine::media_kit::video::VideoCodec;
use confab_engine::EngineEvent;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_engines_see_and_hear_each_other() {
    init_logs();
    let server = server().await;
    let mut a = join(
        &server,
        "pair",
        "Ada",
        config(440.0, VideoCodec::H264, false),
    )
    .await;
    let mut b = join(
        &server,
        "pair",
        "Bob",
        config(660.0, VideoCodec::H264, false),
    )
    .await;
    a.wait_participants(1).await;
    a.engine.call(None).await.unwrap();
    let ring = b
        .wait_event("the incoming call", |e| {
            matches!(e, EngineEvent::Notice(Notice::IncomingCall { .. }))
        })
        .await;
    let EngineEvent::Notice(Notice::IncomingCall { from, name }) = ring else {
        unreachable!()
    };
    assert_eq!((from.as_str(), name.as_str()), (a.id.as_str(), "Ada"));
    b.engine.accept(from).await.unwrap();

    let at_a = a
        .wait_stats(&b.id, "a decodes b's pattern and hears b", |s| {
            sees_pattern(s, 60) && hears(s, 660.0)
        })
        .await;
    let at_b = b
        .wait_stats(&a.id, "b decodes a's pattern and hears a", |s| {
            sees_pattern(s, 60) && hears(s, 440.0)
        })
        .await;
    for s in [&at_a, &at_b] {
        assert_eq!((s.video.width, s.video.height), (320, 240), "{s:#?}");
        assert_eq!(s.video.codec.as_deref(), Some("h264"));
        assert_eq!(s.video.frames_out_of_order, 0, "{s:#?}");
        assert!(
            s.video.pattern_frames * 10 >= s.video.frames_decoded * 9,
            "most frames read back: {s:#?}"
        );
        assert!(s.video.latency_ms_p50.is_some_and(|l| l < 500.0), "{s:#?}");
        assert!(s.audio.packets > 50);
    }
    assert_eq!(at_a.name, "Bob");
    // Each side's set-up timeline has every phase, in the order a call goes through them.
    for s in [&at_a, &at_b] {
        let p = &s.setup_phases;
        let all = [
            p.ice_connected_ms,
            p.connected_ms,
            p.first_encoded_ms,
            p.first_sent_ms,
            p.first_received_ms,
            p.first_assembled_ms,
            p.first_decoded_ms,
        ];
        assert!(all.iter().all(Option::is_some), "{p:#?}");
        let ms = |v: Option<f64>| v.unwrap();
        assert!(ms(p.ice_connected_ms) <= ms(p.connected_ms), "{p:#?}");
        // Pictures go out only once the connection is up, and are sent after being encoded.
        assert!(ms(p.connected_ms) <= ms(p.first_encoded_ms), "{p:#?}");
        assert!(ms(p.first_encoded_ms) <= ms(p.first_sent_ms), "{p:#?}");
        assert!(
            ms(p.first_received_ms) <= ms(p.first_assembled_ms),
            "{p:#?}"
        );
        assert!(ms(p.first_assembled_ms) <= ms(p.first_decoded_ms), "{p:#?}");
        assert_eq!(p.first_decoded_ms, s.answer_to_first_frame_ms, "{p:#?}");
    }

    // Hang up releases every link, task and device on both sides.
    a.engine.hang_up().await.unwrap();
    for p in [&a, &b] {
        let mut released = false;
        for _ in 0..50 {
            let r = p.engine.resources().await.unwrap();
            if r.links == 0 && r.link_tasks == 0 && r.media == Default::default() {
                released = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(released, "{:?}", p.engine.resources().await.unwrap());
    }
    a.engine.shutdown().await;
    b.engine.shutdown().await;
}
