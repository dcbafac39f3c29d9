//! A share waiting for the desktop's own picker (Wayland's portal: the person may take
//! minutes to choose) holds nothing else: the camera can be switched meanwhile, and hanging
//! up gives the picker up at once, the share's ask answered `cancelled`.
//!
//! The desktop here is a session bus that never answers (a socket that takes the connection
//! and stays silent), so the share waits as it does while a person looks at the picker. A
//! test binary of its own: it sets the session bus's address for the whole process before
//! anything else runs.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use confab_engine::media_kit::device::{ScreenRef, VideoSourceSpec};
use confab_engine::media_kit::video::VideoCodec;
use confab_engine::ErrorCode;
use std::time::{Duration, Instant};

/// The snapshot's camera, once it is `on` (the devices task reports a moment later).
async fn camera_becomes(p: &Peer, on: bool) -> Duration {
    let asked = Instant::now();
    loop {
        let s = p.engine.snapshot().await.unwrap();
        if s.camera.is_some() == on {
            return asked.elapsed();
        }
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "the camera is still {:?}",
            s.camera
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_share_waiting_for_the_desktops_picker_holds_neither_the_camera_nor_the_call() {
    let dir = std::env::temp_dir().join(format!("confab-silent-bus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("bus");
    // Takes connections (the kernel's backlog) and never says a word.
    let _silent = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // Before any thread of this test binary reads the environment.
    std::env::set_var(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", socket.display()),
    );
    init_logs();
    let server = server().await;
    let mut a = join(
        &server,
        "picker",
        "Ada",
        config(440.0, VideoCodec::H264, false),
    )
    .await;
    let mut b = join(
        &server,
        "picker",
        "Bob",
        config(660.0, VideoCodec::H264, false),
    )
    .await;
    call_accepted(&mut a, &mut b).await;
    camera_becomes(&a, true).await;

    // Ada shares through the desktop's picker, which does not answer.
    let sharing = tokio::spawn({
        let engine = a.engine.clone();
        async move {
            engine
                .share(Some(VideoSourceSpec::Screen(ScreenRef::Portal)))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!sharing.is_finished(), "the share waits for the desktop");

    // Meanwhile the camera is switched off and on again, as asked.
    let switch = |to| a.engine.select_devices(Some(to), None, None);
    tokio::time::timeout(Duration::from_secs(5), switch(VideoSourceSpec::None))
        .await
        .expect("a camera switch is answered while the picker is open")
        .unwrap();
    let off = camera_becomes(&a, false).await;
    tokio::time::timeout(Duration::from_secs(5), switch(VideoSourceSpec::TestPattern))
        .await
        .expect("a camera switch is answered while the picker is open")
        .unwrap();
    let on = camera_becomes(&a, true).await;
    assert!(!sharing.is_finished(), "the share still waits");
    eprintln!("with the picker open: camera off in {off:?}, on again in {on:?}");

    // Hanging up gives the picker up at once.
    let hung_up = Instant::now();
    a.engine.hang_up().await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), sharing)
        .await
        .expect("the share's ask is answered once the call ends")
        .unwrap();
    let e = answer.expect_err("nothing was shared");
    assert_eq!(e.code(), ErrorCode::Cancelled, "{e}");
    assert!(
        hung_up.elapsed() < Duration::from_secs(3),
        "given up after {:?}",
        hung_up.elapsed()
    );
    let s = a.engine.snapshot().await.unwrap();
    assert!(!s.in_call && s.sharing.is_none(), "{s:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
