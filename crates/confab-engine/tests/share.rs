//! Screen sharing in a real call: the share is a track of its own next to the camera (there
//! from the start, so sharing never renegotiates the call). Ada shares the test screen (the
//! test pattern at 1280x720, 5 fps); Bob decodes it and reads the pattern back, while Ada's
//! camera keeps coming; when she stops, the share stops, Bob's window is told to take her
//! screen down, and the camera goes on.

mod common;

use common::*;
use confab_engine::media_kit::device::VideoSourceSpec;
use confab_engine::media_kit::video::VideoCodec;
use confab_engine::SHARE_FORMAT;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What Bob's window is handed for Ada's screen: when its pictures came, and when it was told
/// the screen ended.
#[derive(Default)]
struct ScreenSink {
    pictures: Mutex<Vec<Instant>>,
    ended: Mutex<Vec<Instant>>,
}

impl confab_engine::VideoSink for ScreenSink {
    fn frame(
        &self,
        source: &confab_engine::media::FrameSource,
        _: &Arc<confab_engine::media_kit::VideoFrame>,
    ) {
        if matches!(source, confab_engine::media::FrameSource::RemoteShare(_)) {
            self.pictures.lock().unwrap().push(Instant::now());
        }
    }
    fn ended(&self, source: &confab_engine::media::FrameSource) {
        if matches!(source, confab_engine::media::FrameSource::RemoteShare(_)) {
            self.ended.lock().unwrap().push(Instant::now());
        }
    }
}

/// The snapshot follows the devices task's report, a moment after `share` returns.
async fn sharing_becomes(p: &Peer, on: bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = p.engine.snapshot().await.unwrap().sharing;
        if s.is_some() == on {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the snapshot says sharing {s:?}, not {on}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn share_in_a_call(codec: VideoCodec) {
    init_logs();
    let server = server().await;
    let room = format!("share-{}", codec.name());
    let mut a = join(&server, &room, "Ada", config(440.0, codec, false)).await;
    let screen = Arc::new(ScreenSink::default());
    let mut b = join_with_sink(
        &server,
        &room,
        "Bob",
        config(660.0, codec, false),
        screen.clone(),
    )
    .await;
    // Not in a call: nothing to share with.
    let e = a
        .engine
        .share(Some(VideoSourceSpec::TestPattern))
        .await
        .unwrap_err();
    assert_eq!(e.code(), confab_engine::ErrorCode::NotInCall, "{e}");
    call_accepted(&mut a, &mut b).await;

    // Sharing starts on the running call: no new offer, no new link.
    a.engine
        .share(Some(VideoSourceSpec::TestPattern))
        .await
        .unwrap();
    sharing_becomes(&a, true).await;
    let s = b
        .wait_stats(&a.id, "Ada's screen", |s| s.share.pattern_frames >= 10)
        .await;
    assert_eq!(
        (s.share.width, s.share.height),
        (SHARE_FORMAT.width, SHARE_FORMAT.height),
        "{s:#?}"
    );
    assert_eq!(s.share.codec.as_deref(), Some(codec.name()), "{s:#?}");
    assert_eq!(s.share.frames_out_of_order, 0, "{s:#?}");
    assert_eq!(
        s.share.pattern_frames, s.share.frames_decoded,
        "every shared picture reads back: {s:#?}"
    );
    // Asked again for the same screen (a double click, a stale snapshot): the running share
    // goes on; started over, its frame numbers would go back to 0.
    a.engine
        .share(Some(VideoSourceSpec::TestPattern))
        .await
        .unwrap();
    // Read after the second ask: a capture started over would count from 0 from here on.
    let mid = b
        .wait_stats(&a.id, "Ada's screen at the second ask", |_| true)
        .await;
    let (before, last) = (mid.share.pattern_frames, mid.share.last_pattern_frame);
    let again = b
        .wait_stats(&a.id, "Ada's screen after a second ask", |s| {
            s.share.pattern_frames >= before + 10
        })
        .await;
    assert_eq!(again.share.frames_out_of_order, 0, "{again:#?}");
    assert_eq!(again.share.frames_repeated, 0, "{again:#?}");
    assert!(
        again.share.last_pattern_frame >= last.map(|l| l + 10),
        "the screen's frame numbers go on: {last:?} then {again:#?}"
    );
    // The camera goes on beside it, at its own size.
    let cam = s.video.pattern_frames;
    let s = b
        .wait_stats(&a.id, "Ada's camera beside the screen", |s| {
            s.video.pattern_frames >= cam + 30
        })
        .await;
    assert_eq!((s.video.width, s.video.height), (320, 240), "{s:#?}");
    assert_eq!(s.video.frames_out_of_order, 0, "{s:#?}");

    // Stopped: no more shared pictures; the camera still comes.
    assert!(
        screen.ended.lock().unwrap().is_empty(),
        "on show while shared"
    );
    a.engine.share(None).await.unwrap();
    let stopped_at = Instant::now();
    sharing_becomes(&a, false).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stopped = b.wait_stats(&a.id, "after the share", |_| true).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = b
        .wait_stats(&a.id, "the camera after the share", |s| {
            s.video.pattern_frames >= stopped.video.pattern_frames + 20
        })
        .await;
    assert_eq!(
        later.share.frames_decoded, stopped.share.frames_decoded,
        "no shared picture after stopping"
    );
    // Bob's window was told to take the screen down (not left with its last picture), once,
    // after the pictures stopped.
    let deadline = stopped_at + confab_engine::media::SHARE_GONE_AFTER + Duration::from_secs(3);
    while screen.ended.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ended = screen.ended.lock().unwrap().clone();
    let last_picture = *screen
        .pictures
        .lock()
        .unwrap()
        .last()
        .expect("pictures came");
    assert_eq!(ended.len(), 1, "told once that the screen ended: {ended:?}");
    // The engine counts from the last picture it assembled; the window got it a decode later.
    let decode_slack = Duration::from_millis(500);
    assert!(
        ended[0] + decode_slack >= last_picture + confab_engine::media::SHARE_GONE_AFTER,
        "not before its pictures stopped: {:?} after the last",
        ended[0].duration_since(last_picture)
    );
    a.engine.shutdown().await;
    b.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_screen_arrives_on_its_own_track_beside_the_camera_h264() {
    share_in_a_call(VideoCodec::H264).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_screen_arrives_on_its_own_track_beside_the_camera_vp8() {
    if !confab_engine::media_kit::video::AVAILABLE.contains(&VideoCodec::Vp8) {
        eprintln!("skipped: this build has no VP8");
        return;
    }
    share_in_a_call(VideoCodec::Vp8).await;
}
