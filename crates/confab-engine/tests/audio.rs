//! The microphone's processing in a real call: two engines on loopback, Ada's "microphone" the
//! steady test tone. Noise suppression takes a steady tone for noise, so what Bob hears of it
//! says whether Ada's processing runs — and switching it off in the call brings the tone back.

mod common;

use common::*;
use confab_engine::media_kit::processing::ProcessingSettings;
use confab_engine::media_kit::video::VideoCodec;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processing_runs_on_what_is_sent_and_switches_in_the_call() {
    init_logs();
    let server = server().await;
    let mut on = config(440.0, VideoCodec::H264, false);
    on.processing = ProcessingSettings::default();
    let (a, b) = call_pair(&server, "apm", on, config(660.0, VideoCodec::H264, false)).await;

    // The tone goes out at 0.25 of full scale (RMS 0.18). With noise suppression on, it is
    // turned down once the suppressor has learnt it (a few seconds), and still heard.
    b.wait_stats(&a.id, "Ada's tone", |s| hears(s, 440.0)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let suppressed = b
        .wait_stats(&a.id, "Ada's tone turned down", |s| {
            s.audio.tone_hz.is_some_and(|h| (h - 440.0).abs() < 5.0) && s.audio.level < 0.09
        })
        .await;
    let stats = a.engine.audio_processing().await.unwrap();
    assert_eq!(
        stats.settings,
        Some(ProcessingSettings::default()),
        "{stats:?}"
    );
    assert!(
        stats.capture_frames >= 200,
        "four seconds and more processed (published once a second): {stats:?}"
    );
    assert!(
        stats.render_frames >= 200,
        "Bob's tone was the echo reference: {stats:?}"
    );
    assert_eq!(stats.panics, 0, "{stats:?}");
    // The echo path's delay hint: no speaker here (0 ms of its buffering) plus a frame each side.
    assert_eq!(stats.delay_ms, 40, "{stats:?}");

    // Off in the call: the tone comes back at its own level, from the next frame.
    a.engine
        .set_audio_processing(ProcessingSettings::OFF)
        .await
        .unwrap();
    let clean = b
        .wait_stats(&a.id, "Ada's tone at full level", |s| {
            hears(s, 440.0) && s.audio.level > 0.15
        })
        .await;
    assert!(
        clean.audio.level > suppressed.audio.level * 2.0,
        "{} then {}",
        suppressed.audio.level,
        clean.audio.level
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stats = a.engine.audio_processing().await.unwrap();
    assert_eq!(stats.settings, Some(ProcessingSettings::OFF), "{stats:?}");
    a.engine.shutdown().await;
    b.engine.shutdown().await;
}
