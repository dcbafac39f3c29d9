//! Who gets your media: attacks on a running call by someone in the room, with real engines,
//! a real server and real media on loopback.

mod common;

use common::*;
use confab_engine::call::Notice;
use confab_engine::media_kit::video::VideoCodec;
use confab_engine::EngineEvent;
use confab_protocol::PeerId;

async fn frames_from(p: &Peer, of: &str) -> u64 {
    p.engine
        .stats()
        .await
        .unwrap()
        .iter()
        .find(|s| s.id == of)
        .map_or(0, |s| s.video.frames_decoded)
}

/// Someone who guessed the room name calls into a running call: nobody sends them anything
/// until a member admits them; then everyone does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn room_guesser_gets_no_media_until_admitted() {
    init_logs();
    let server = server().await;
    let mut a = join(
        &server,
        "private",
        "Ada",
        config(440.0, VideoCodec::H264, false),
    )
    .await;
    let mut b = join(
        &server,
        "private",
        "Bob",
        config(660.0, VideoCodec::H264, false),
    )
    .await;
    a.wait_participants(1).await;
    a.engine.call(None).await.unwrap();
    b.wait_event("Ada's ring", |e| {
        matches!(e, EngineEvent::Notice(Notice::IncomingCall { .. }))
    })
    .await;
    b.engine.accept(PeerId(a.id.clone())).await.unwrap();
    b.wait_stats(&a.id, "the call runs", |s| sees_pattern(s, 10))
        .await;

    let mut m = join(
        &server,
        "private",
        "Mallory",
        config(880.0, VideoCodec::H264, false),
    )
    .await;
    m.wait_participants(2).await;
    m.engine.call(None).await.unwrap();
    // Both members are asked; meanwhile a whole second and more of their own call goes by.
    a.wait_event(
        "Ada is asked",
        |e| matches!(e, EngineEvent::Notice(Notice::JoinRequest { name, .. }) if name == "Mallory"),
    )
    .await;
    let seen = frames_from(&a, &b.id).await;
    a.wait_stats(&b.id, "the members' call goes on", |s| {
        s.video.frames_decoded > seen + 45
    })
    .await;
    for (member, id) in [(&a, &b.id), (&b, &a.id)] {
        let stats = member.engine.stats().await.unwrap();
        assert!(
            stats.iter().all(|s| s.name != "Mallory"),
            "no link to Mallory before anyone admits her: {stats:#?}"
        );
        assert!(
            stats.iter().any(|s| s.id == *id),
            "the members' link is alive"
        );
    }
    let got = m.engine.stats().await.unwrap();
    assert!(
        got.iter()
            .all(|s| s.video.frames_decoded == 0 && s.audio.packets == 0),
        "Mallory received media without being admitted: {got:#?}"
    );
    assert_eq!(m.engine.resources().await.unwrap().links, 0);

    // Ada admits her: Bob follows Ada, and Mallory gets both.
    a.engine.accept(PeerId(m.id.clone())).await.unwrap();
    b.wait_event(
        "Bob is told Ada let her in",
        |e| matches!(e, EngineEvent::Notice(Notice::Admitted { by, .. }) if by == "Ada"),
    )
    .await;
    for (of, hz) in [(&a.id, 440.0), (&b.id, 660.0)] {
        m.wait_stats(of, "admitted: media from both members", |s| {
            sees_pattern(s, 10) && hears(s, hz)
        })
        .await;
    }
    for p in [&a, &b, &m] {
        p.engine.shutdown().await;
    }
}

/// A member can say no: the newcomer is told, and still gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn denied_newcomer_gets_nothing() {
    init_logs();
    let server = server().await;
    let mut a = join(
        &server,
        "deny",
        "Ada",
        config(440.0, VideoCodec::H264, false),
    )
    .await;
    let mut b = join(
        &server,
        "deny",
        "Bob",
        config(660.0, VideoCodec::H264, false),
    )
    .await;
    a.wait_participants(1).await;
    a.engine.call(None).await.unwrap();
    b.wait_event("Ada's ring", |e| {
        matches!(e, EngineEvent::Notice(Notice::IncomingCall { .. }))
    })
    .await;
    b.engine.accept(PeerId(a.id.clone())).await.unwrap();
    a.wait_stats(&b.id, "the call runs", |s| sees_pattern(s, 10))
        .await;
    let mut m = join(
        &server,
        "deny",
        "Mallory",
        config(880.0, VideoCodec::H264, false),
    )
    .await;
    m.wait_participants(2).await;
    m.engine.call(Some(PeerId(a.id.clone()))).await.unwrap();
    a.wait_event("Ada is asked", |e| {
        matches!(e, EngineEvent::Notice(Notice::JoinRequest { .. }))
    })
    .await;
    a.engine.decline(PeerId(m.id.clone())).await.unwrap();
    m.wait_event("Mallory is told", |e| {
        matches!(e, EngineEvent::Notice(Notice::Declined { reason: Some(r), .. }) if r == "denied")
    })
    .await;
    assert_eq!(m.engine.resources().await.unwrap().links, 0);
    for p in [&a, &b, &m] {
        p.engine.shutdown().await;
    }
}
