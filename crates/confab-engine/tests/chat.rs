//! Chat in a call, over each link's data channel (never through the signaling server): real
//! engines, a real server, real peer connections on loopback.

mod common;

use common::*;
use confab_engine::call::Notice;
use confab_engine::media_kit::video::VideoCodec;
use confab_engine::{EngineError, EngineEvent, ErrorCode};
use confab_protocol::PeerId;

async fn heard(p: &mut Peer, text: &str) -> confab_engine::call::chat::ChatLine {
    let ev = p
        .wait_event(
            &format!("the line {text:?}"),
            |e| matches!(e, EngineEvent::Chat(l) if l.text == text),
        )
        .await;
    let EngineEvent::Chat(line) = ev else {
        unreachable!()
    };
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_goes_to_the_call_and_to_people_who_join_later() {
    init_logs();
    let server = server().await;
    let mut a = join(
        &server,
        "chat",
        "Ada",
        config(440.0, VideoCodec::H264, false),
    )
    .await;
    let mut b = join(
        &server,
        "chat",
        "Bob",
        config(660.0, VideoCodec::H264, false),
    )
    .await;
    // Not in a call yet: nobody to say it to.
    let e = a.engine.say("anyone?").await.unwrap_err();
    assert_eq!(
        (e.code(), &e),
        (ErrorCode::NotInCall, &EngineError::NotInCall)
    );
    a.wait_participants(1).await;
    a.engine.call(None).await.unwrap();
    b.wait_event("Ada's ring", |e| {
        matches!(e, EngineEvent::Notice(Notice::IncomingCall { .. }))
    })
    .await;
    b.engine.accept(PeerId(a.id.clone())).await.unwrap();
    b.wait_stats(&a.id, "the call runs", |s| sees_pattern(s, 5))
        .await;

    // Said, cleaned, heard under the link's own name.
    let mine = a
        .engine
        .say("hello \u{202E}see https://example.org/a?b=c")
        .await
        .unwrap();
    assert_eq!(mine.text, "hello see https://example.org/a?b=c");
    let got = heard(&mut b, &mine.text).await;
    assert_eq!(got.from, Some(PeerId(a.id.clone())));
    assert_eq!(got.name, "Ada");
    b.engine.say("hi Ada").await.unwrap();
    assert_eq!(heard(&mut a, "hi Ada").await.name, "Bob");

    // Typing too fast is refused in words, not dropped silently.
    let refused = loop {
        match a.engine.say("again").await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(refused.code(), ErrorCode::ChatRateLimited);

    // Cat joins later, is let in, and is shown what was said, as shared by a member.
    let mut c = join(
        &server,
        "chat",
        "Cat",
        config(880.0, VideoCodec::H264, false),
    )
    .await;
    c.wait_participants(2).await;
    c.engine.call(None).await.unwrap();
    a.wait_event("Ada is asked", |e| {
        matches!(e, EngineEvent::Notice(Notice::JoinRequest { .. }))
    })
    .await;
    a.engine.accept(PeerId(c.id.clone())).await.unwrap();
    let first = heard(&mut c, "hello see https://example.org/a?b=c").await;
    assert!(
        matches!(first.shared_by.as_deref(), Some("Ada" | "Bob")),
        "{first:?}"
    );
    assert_eq!((first.name.as_str(), first.from.clone()), ("Ada", None));
    heard(&mut c, "hi Ada").await;
    // The history came once, and is in Cat's chat in order.
    let texts: Vec<String> = c
        .engine
        .chat()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(
        &texts[..2],
        ["hello see https://example.org/a?b=c", "hi Ada"]
    );
    assert_eq!(texts.iter().filter(|t| t.as_str() == "hi Ada").count(), 1);
    // And what Cat says reaches both (once Cat's links to both carry the call).
    for of in [&a.id, &b.id] {
        c.wait_stats(of, "Cat is connected to both", |s| sees_pattern(s, 5))
            .await;
    }
    c.engine.say("thanks for having me").await.unwrap();
    for p in [&mut a, &mut b] {
        assert_eq!(heard(p, "thanks for having me").await.name, "Cat");
    }
    for p in [&a, &b, &c] {
        p.engine.shutdown().await;
    }
}
