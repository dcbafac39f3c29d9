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

/// The join screen's microphone test, through the engine: outside a call it records the
/// microphone (here the 660 Hz test tone), reports its level while recording and while playing
/// back, and says what it heard; in a call the microphone belongs to the call; a call that
/// starts during a test ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_microphone_test_records_reports_and_plays_back() {
    use confab_engine::media_kit::device::mic_check::MicCheckPhase;
    init_logs();
    let server = server().await;
    let ada = join(
        &server,
        "mic-check",
        "Ada",
        config(660.0, VideoCodec::H264, false),
    )
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let news = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(p) = rx.recv().await {
            all.push(p);
        }
        all
    });
    let result = ada.engine.check_microphone(tx).await.unwrap();
    let news = news.await.unwrap();
    assert!(result.heard && !result.stopped, "{result:?}");
    assert_eq!(result.frames, 150, "3 s of 20 ms frames");
    assert!(
        result
            .dominant_hz
            .is_some_and(|hz| (hz - 660.0).abs() < 3.0),
        "{result:?}"
    );
    // The meter's news: both phases, recording first, each with the tone's level (RMS 0.21).
    let first_playing = news
        .iter()
        .position(|p| p.phase == MicCheckPhase::Playing)
        .expect("news while playing back");
    assert!(first_playing >= 20, "{news:?}");
    assert!(news[first_playing..]
        .iter()
        .all(|p| p.phase == MicCheckPhase::Playing));
    assert!(
        news.iter().all(|p| (p.level - 0.212).abs() < 0.03),
        "{news:?}"
    );

    // A call starting during a test ends it, and the call gets the microphone.
    let mut bob = join(
        &server,
        "mic-check",
        "Bob",
        config(440.0, VideoCodec::H264, true),
    )
    .await;
    bob.wait_participants(1).await;
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let engine = ada.engine.clone();
    let test = tokio::spawn(async move { engine.check_microphone(tx).await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    ada.engine.call(None).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), test)
        .await
        .expect("the test ends when the call starts")
        .unwrap()
        .unwrap();
    assert!(ended.stopped && ended.frames < 150, "{ended:?}");
    bob.wait_stats(&ada.id, "Ada's tone in the call", |s| hears(s, 660.0))
        .await;
    // In the call the microphone is the call's.
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let err = ada.engine.check_microphone(tx).await.unwrap_err();
    assert_eq!(err.code().as_str(), "already-in-call", "{err}");
}
