//! Calls through a real Janus on impaired lines.
//!
//! Simulcast: three engines in one call through the SFU, each sending its
//! camera in two encodings (640x480 and 320x240). Cy's line (the network lab on Cy's sockets,
//! one cap a link) narrows to 90 % of what the two full-size feeds took: the pictures keep
//! breaking (NACK fills the gaps, so it is keyframe after keyframe rather than loss), Cy's
//! engine asks Janus for the half-size layer, and decodes both others' pattern at 320x240, still
//! moving, while Bob keeps receiving Ada at 640x480. When the line widens again, Cy is back on
//! full size after its clean spell.
//!
//! The bottleneck is set from what Cy measured, not at a fixed rate: the test pattern at
//! 640x480 and 10 fps compresses to ~50 kbit/s, where a camera takes ~500 kbit/s, so the issue's
//! "300 kbit/s" would never be reached. And the pattern's half layer costs most of what its full
//! one does (its keyframes dominate), so a much narrower line would carry neither.
//!
//! Loss: two engines through Janus, each receiving through the lab with 5 % random loss and
//! 50 ms of delay: what NACK, Janus's own retransmissions, keyframe requests through Janus and
//! the layer choice make of it.

mod common;

use common::*;
use confab_engine::media_kit::device::{AudioSourceSpec, VideoFormat};
use confab_engine::media_kit::video::VideoCodec;
use confab_engine::{EngineConfig, PeerStats};
use confab_netlab::janus::Janus;
use confab_netlab::{Impairment, NetLab};
use confab_signal::{RoomLimits, SignalConfig, SignalServer};
use std::time::{Duration, Instant};

/// 640x480 at 10 fps, and no microphone: at the pattern's bitrates the sound (~40 kbit/s with
/// its headers) would be most of what a link carries, and the layers are about pictures.
fn sized() -> EngineConfig {
    let mut c = config(440.0, VideoCodec::H264, true);
    c.audio = AudioSourceSpec::None;
    c.format = VideoFormat {
        width: 640,
        height: 480,
        fps: 10.0,
    };
    // Janus gathers on the machine's own address, not on loopback.
    c.rtc.udp_addrs = vec!["0.0.0.0:0".into()];
    c
}

/// One Janus test at a time: two at once (two Janus, five engines encoding two layers each)
/// would starve a 2-core machine, and the narrowing test sets its line from what it measured.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// A signaling server whose rooms all go through `janus`.
async fn through(janus: &Janus, secret: &str) -> SignalServer {
    SignalServer::start(SignalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        limits: RoomLimits {
            sfu: Some(janus.sfu(secret, 0)),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("server starts")
}

/// Stats of everyone `p` receives, by name.
async fn seen_by(p: &Peer) -> Vec<PeerStats> {
    p.engine.stats().await.unwrap()
}

fn of<'a>(stats: &'a [PeerStats], name: &str) -> Option<&'a PeerStats> {
    stats.iter().find(|s| s.name == name)
}

/// Waits until Cy's view of Ada and Bob is `width` wide and moving.
async fn until_cy_sees(cy: &Peer, width: usize, janus: &Janus, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut first: Option<Vec<PeerStats>> = None;
    loop {
        let s = seen_by(cy).await;
        let at = |name: &str| {
            let now = of(&s, name)?;
            let was = of(first.as_ref()?, name)?;
            Some(
                now.video.width == width
                    && now.video.pattern_frames >= was.video.pattern_frames + 10,
            )
        };
        if at("Ada") == Some(true) && at("Bob") == Some(true) {
            return;
        }
        let wide = |name: &str| of(&s, name).is_some_and(|p| p.video.width == width);
        if first.is_none() && wide("Ada") && wide("Bob") {
            first = Some(s.clone());
        }
        assert!(
            Instant::now() < deadline,
            "{what}: Cy does not see both others {width} wide within 45 s: {s:#?}\njanus: {}",
            janus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_whose_line_narrows_gets_the_half_layer_while_the_others_keep_full_size() {
    let _turn = one_at_a_time().await;
    init_logs();
    let janus = Janus::start().expect("janus starts (cargo xtask test installs it)");
    let server = through(&janus, "simulcast test").await;
    let lab = NetLab::new(Impairment::seeded(0x300)).unwrap();
    let mut cy_cfg = sized();
    cy_cfg.rtc.runtime = Some(lab.runtime());

    let mut ada = join(&server, "layers", "Ada", sized()).await;
    let bob = join(&server, "layers", "Bob", sized()).await;
    let cy = join(&server, "layers", "Cy", cy_cfg).await;
    ada.wait_participants(2).await;
    ada.engine.call(None).await.unwrap();

    // A clear line: full size from both.
    until_cy_sees(&cy, 640, &janus, "at first").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let took: f64 = seen_by(&cy).await.iter().map(|p| p.network.recv_kbps).sum();
    assert!(took > 40.0, "Cy receives {took} kbit/s");
    // The lab caps each socket, and each of Cy's links from Janus has its own: half the line
    // each.
    let cap = (took / 2.0 * 0.9 * 1000.0) as u64;
    lab.update(|c| c.rate_bps = Some(cap)).unwrap();

    // The line narrows: the half layer of both, in order and moving (10 fps: 40 in 4 s).
    until_cy_sees(&cy, 320, &janus, "on a narrow line").await;
    let (cy0, bob0) = (seen_by(&cy).await, seen_by(&bob).await);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (cy1, bob1) = (seen_by(&cy).await, seen_by(&bob).await);
    let why = format!(
        "the line: {cap} bit/s a link, from {took} kbit/s in all; {:?}",
        lab.counters()
    );
    for name in ["Ada", "Bob"] {
        let (a, b) = (of(&cy0, name).unwrap(), of(&cy1, name).unwrap());
        let v = &b.video;
        assert_eq!(
            (v.width, v.height),
            (320, 240),
            "Cy from {name}: {b:#?}; {why}"
        );
        assert_eq!(v.frames_out_of_order, 0, "Cy from {name}: {b:#?}");
        let moved = v.pattern_frames - a.video.pattern_frames;
        assert!(
            moved >= 20,
            "Cy from {name}: {moved} frames in 4 s: {b:#?}; {why}"
        );
    }
    // Bob, on a clear line: Ada at full size, moving.
    let (a, b) = (of(&bob0, "Ada").unwrap(), of(&bob1, "Ada").unwrap());
    assert_eq!((b.video.width, b.video.height), (640, 480), "{b:#?}");
    assert!(
        b.video.pattern_frames - a.video.pattern_frames >= 20,
        "Bob from Ada: {a:#?} -> {b:#?}"
    );
    assert!(lab.counters().dropped_queue > 0, "{why}");

    // The line widens: full size again after the clean spell.
    lab.update(|c| c.rate_bps = None).unwrap();
    until_cy_sees(&cy, 640, &janus, "once the line is clear again").await;
    for p in [ada, bob, cy] {
        p.engine.shutdown().await;
    }
}

/// Through Janus at 5 % random loss and 50 ms of delay into both engines (Janus's own sockets
/// are not the lab's: its packets to Bob are lost on the way in, Bob's requests for them reach
/// it): Bob asks Janus for the lost packets (Janus resends them from its own store), and
/// Ada's pictures stay whole, in order and moving, her tone heard. The same bar as the mesh's
/// `video_holds_under` (H.264), over 10 s once the call runs, at 640x480 (two layers) and 10
/// fps (a debug build here encodes both layers of two cameras at ~20 fps, not 30).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_through_janus_at_5_pct_loss_stays_whole_and_moving() {
    let _turn = one_at_a_time().await;
    init_logs();
    let janus = Janus::start().expect("janus starts (cargo xtask test installs it)");
    let server = through(&janus, "loss test").await;
    let lab = NetLab::new(Impairment {
        loss: 0.05,
        delay_ms: 50,
        ..Impairment::seeded(0x5f)
    })
    .unwrap();
    let cfg = |hz| {
        let mut c = config(hz, VideoCodec::H264, true);
        c.format = VideoFormat {
            width: 640,
            height: 480,
            fps: 10.0,
        };
        c.rtc.udp_addrs = vec!["0.0.0.0:0".into()];
        c.rtc.runtime = Some(lab.runtime());
        c
    };
    let mut ada = join(&server, "lossy", "Ada", cfg(440.0)).await;
    let bob = join(&server, "lossy", "Bob", cfg(660.0)).await;
    ada.wait_participants(1).await;
    ada.engine.call(None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(45);
    let before = loop {
        let s = seen_by(&bob).await;
        if let Some(a) = of(&s, "Ada").filter(|a| sees_pattern(a, 20) && hears(a, 440.0)) {
            break a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "Bob does not get Ada through Janus within 45 s: {s:#?}\njanus: {}",
            janus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = of(&seen_by(&bob).await, "Ada")
        .cloned()
        .expect("Bob still gets Ada");
    let (v0, v1) = (&before.video, &after.video);
    let decoded = v1.frames_decoded - v0.frames_decoded;
    let whole = v1.pattern_frames - v0.pattern_frames;
    let why = format!("through Janus, {:?}: {after:#?}", lab.counters());
    eprintln!(
        "through Janus at 5 % loss: {decoded} decoded in 10 s, {whole} read back, {} freezes, \
         {}x{}, {} keyframe requests, {} packets lost, {} asked for again",
        v1.freezes - v0.freezes,
        v1.width,
        v1.height,
        v1.keyframe_requests - v0.keyframe_requests,
        lab.counters().dropped_loss,
        after.network.nacked - before.network.nacked
    );
    assert!(lab.counters().dropped_loss > 0, "{why}");
    // Bob asked Janus for what was lost (Janus resends from its own store).
    let asked = after.network.nacked - before.network.nacked;
    assert!(asked > 0, "no packet asked for again; {why}");
    assert!(decoded >= 70, "{decoded} frames in 10 s; {why}");
    assert!(
        whole * 100 >= decoded * 98,
        "{whole} of {decoded} read back; {why}"
    );
    assert_eq!(v1.frames_out_of_order, 0, "{why}");
    assert!(v1.freezes - v0.freezes <= 2, "freezes; {why}");
    assert!(hears(&after, 440.0), "{why}");
    for p in [ada, bob] {
        p.engine.shutdown().await;
    }
}
