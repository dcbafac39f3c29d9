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
    let (mut a, mut b) = call_pair(
        &server,
        "private",
        config(440.0, VideoCodec::H264, false),
        config(660.0, VideoCodec::H264, false),
    )
    .await;
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
    let (mut a, b) = call_pair(
        &server,
        "deny",
        config(440.0, VideoCodec::H264, false),
        config(660.0, VideoCodec::H264, false),
    )
    .await;
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

async fn verification(p: &Peer, of: &str) -> confab_engine::api::PeerVerification {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let snap = p.engine.snapshot().await.unwrap();
        if let Some(v) = snap.verification.into_iter().find(|v| v.id.0 == of) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no verification of {of} within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Without anyone in the middle both people read the same code.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verification_codes_match_without_a_middleman() {
    init_logs();
    let server = server().await;
    let mut a = join(&server, "v", "Ada", config(440.0, VideoCodec::H264, false)).await;
    let b = join(&server, "v", "Bob", config(660.0, VideoCodec::H264, true)).await;
    a.wait_participants(1).await;
    a.engine.call(None).await.unwrap();
    let va = verification(&a, &b.id).await;
    let vb = verification(&b, &a.id).await;
    let code = va.code.clone().expect("a code");
    assert_eq!(code.len(), 7, "{code}");
    assert!(code.chars().all(|c| c.is_ascii_digit() || c == ' '));
    assert_eq!(va.code, vb.code, "{va:?} vs {vb:?}");
    assert!(va.fingerprint.is_some() && va.fingerprint != vb.fingerprint);
    let stats = a
        .wait_stats(&b.id, "the code in the stats", |s| {
            s.verification_code.is_some()
        })
        .await;
    assert_eq!(stats.verification_code, va.code);
    assert!(
        !a.engine.snapshot().await.unwrap().through_sfu,
        "a direct call"
    );
    a.engine.shutdown().await;
    b.engine.shutdown().await;
}

/// How the middleman treats the verification's own messages.
#[derive(Clone, Copy)]
enum Middleman {
    /// Relays them untouched.
    PassThrough,
    /// Commits to its own certificate towards the answerer, and reveals accordingly.
    Substitutes,
}

/// A WebSocket proxy on Ada's path to the server that rewrites what passes: every session
/// description's certificate fingerprint becomes the middleman's (as a middleman terminating
/// DTLS on both sides must present), and the verification's messages as `mode` says.
async fn middleman(upstream: String, mode: Middleman) -> String {
    const FAKE: &str = "sha-256 4D:49:54:4D:4D:49:54:4D:4D:49:54:4D:4D:49:54:4D:4D:49:54:4D:4D:49:54:4D:4D:49:54:4D:4D:49:54:4D";
    let rewrite = move |text: &str| -> String {
        let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) else {
            return text.to_owned();
        };
        let data = &mut v["data"];
        match data["kind"].as_str() {
            Some("description") => {
                let sdp = data["description"]["sdp"].as_str().unwrap_or("").to_owned();
                let fixed: Vec<String> = sdp
                    .split("\r\n")
                    .map(|l| {
                        if l.starts_with("a=fingerprint:") {
                            format!("a=fingerprint:{FAKE}")
                        } else {
                            l.to_owned()
                        }
                    })
                    .collect();
                data["description"]["sdp"] = fixed.join("\r\n").into();
            }
            Some("verify") => {
                if let Middleman::Substitutes = mode {
                    let fake = FAKE.to_ascii_lowercase();
                    if data.get("commit").is_some() {
                        data["commit"] = confab_call::verify::commitment(&fake, "middleman").into();
                    }
                    if data.get("reveal").is_some()
                        && v["type"] == "signal"
                        && v.get("to").is_some()
                    {
                        // Ada's reveal, on its way to Bob.
                        v["data"]["reveal"] = "middleman".into();
                    }
                }
            }
            _ => {}
        }
        v.to_string()
    };
    ws_relay(upstream, rewrite, rewrite).await
}

/// A WebSocket proxy for one client on its path to the server (its URL): each text message
/// passes through `up` (client to server) or `down` (server to client) on its way.
async fn ws_relay(
    upstream: String,
    mut up: impl FnMut(&str) -> String + Send + 'static,
    mut down: impl FnMut(&str) -> String + Send + 'static,
) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let client = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let (server, _) = tokio_tungstenite::connect_async(upstream).await.unwrap();
        let (mut c_tx, mut c_rx) = client.split();
        let (mut s_tx, mut s_rx) = server.split();
        let up = async {
            while let Some(Ok(m)) = c_rx.next().await {
                let m = match m {
                    Message::Text(t) => Message::Text(up(t.as_str()).into()),
                    other => other,
                };
                if s_tx.send(m).await.is_err() {
                    break;
                }
            }
        };
        let down = async {
            while let Some(Ok(m)) = s_rx.next().await {
                let m = match m {
                    Message::Text(t) => Message::Text(down(t.as_str()).into()),
                    other => other,
                };
                if c_tx.send(m).await.is_err() {
                    break;
                }
            }
        };
        tokio::join!(up, down);
    });
    url
}

/// Someone in the middle substitutes certificates (the signaling server could): the two
/// people do not read the same code — either the answerer cannot verify at all, or the codes
/// differ — whatever the middleman does with the verification's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn man_in_the_middle_cannot_match_the_codes() {
    init_logs();
    for mode in [Middleman::PassThrough, Middleman::Substitutes] {
        let server = server().await;
        let via = middleman(server.ws_url(), mode).await;
        let (engine, events) = confab_engine::Engine::start(
            config(440.0, VideoCodec::H264, false),
            std::sync::Arc::new(confab_engine::NullSink),
        )
        .unwrap();
        let joined = engine.join(&via, "mitm", "Ada", None).await.unwrap();
        let mut a = Peer {
            engine,
            events,
            id: joined.id.to_string(),
        };
        let b = join(
            &server,
            "mitm",
            "Bob",
            config(660.0, VideoCodec::H264, true),
        )
        .await;
        a.wait_participants(1).await;
        a.engine.call(None).await.unwrap();
        let va = verification(&a, &b.id).await;
        let vb = verification(&b, &a.id).await;
        match mode {
            Middleman::PassThrough => {
                assert!(
                    vb.code.is_none() && vb.problem.is_some(),
                    "Bob cannot verify: {vb:?}"
                );
            }
            Middleman::Substitutes => {
                assert!(va.code.is_some() && vb.code.is_some(), "{va:?} {vb:?}");
                assert_ne!(va.code, vb.code, "the middleman matched the codes");
            }
        }
        assert_ne!(va.code, vb.code);
        a.engine.shutdown().await;
        b.engine.shutdown().await;
    }
}

/// Counts the pictures of our own camera that reach the window.
struct CountingSink(std::sync::atomic::AtomicU64);
impl confab_engine::VideoSink for CountingSink {
    fn frame(
        &self,
        source: &confab_engine::FrameSource,
        _: &std::sync::Arc<confab_engine::media_kit::VideoFrame>,
    ) {
        if *source == confab_engine::FrameSource::Local {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The engine's actor is watched: when it panics the camera is released and the window is
/// told in words; commands answer "stopped" rather than hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_engine_releases_the_camera_and_says_so() {
    use std::sync::atomic::Ordering;
    init_logs();
    let sink = std::sync::Arc::new(CountingSink(Default::default()));
    let (engine, mut events) =
        confab_engine::Engine::start(config(440.0, VideoCodec::H264, false), sink.clone()).unwrap();
    engine.set_preview(true).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sink.0.load(Ordering::Relaxed) < 10 {
        assert!(std::time::Instant::now() < deadline, "the preview runs");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    engine.inject_panic().await;
    let told = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(ev) = events.recv().await {
            if let EngineEvent::Error { code, message } = ev {
                if code == confab_engine::ErrorCode::Stopped {
                    return message;
                }
            }
        }
        String::new()
    })
    .await
    .expect("told within 10 s");
    assert!(told.contains("restart Confab"), "{told}");
    assert!(matches!(
        engine.snapshot().await,
        Err(confab_engine::EngineError::Stopped)
    ));
    // The camera (the test pattern source) is stopped: no picture arrives any more.
    let at_stop = sink.0.load(Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let settled = sink.0.load(Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(
        sink.0.load(Ordering::Relaxed),
        settled,
        "pictures keep coming after the engine stopped (had {at_stop} at the stop)"
    );
    engine.shutdown().await;
}

/// A server that welcomes, then neither reads nor writes (a pong needs a read): a half-open
/// connection, or one over a dead path. Its URL, how often it was connected to, its task.
async fn silent_server() -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
    tokio::task::JoinHandle<()>,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let connects = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = connects.clone();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                continue;
            };
            let _join = ws.next().await;
            let welcome = r#"{"type":"welcome","id":"0123456789abcdef0123456789abcdef","room":"quiet","peers":[]}"#;
            let _ = ws.send(Message::Text(welcome.into())).await;
            held.push(ws);
        }
    });
    (url, connects, server)
}

/// A server that stops talking (a half-open connection: no frames, not even pings) is left
/// for a new connection, rather than trusted forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_noticed() {
    init_logs();
    let (url, connects, server) = silent_server().await;
    let mut cfg = config(440.0, VideoCodec::H264, false);
    cfg.signaling_silence = std::time::Duration::from_secs(2);
    let (engine, mut events) =
        confab_engine::Engine::start(cfg, std::sync::Arc::new(confab_engine::NullSink)).unwrap();
    engine.join(&url, "quiet", "Ada", None).await.unwrap();
    let started = std::time::Instant::now();
    let mut p = Peer {
        engine,
        events: std::mem::replace(&mut events, tokio::sync::mpsc::channel(1).1),
        id: String::new(),
    };
    p.wait_event("reconnecting after the silence", |e| {
        matches!(e, EngineEvent::State(s) if s.connection == confab_engine::ConnectionStatus::Reconnecting)
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1500)
            && waited < std::time::Duration::from_secs(10),
        "noticed after {waited:?}"
    );
    p.wait_event("connected again", |e| {
        matches!(e, EngineEvent::State(s) if s.connection == confab_engine::ConnectionStatus::Connected)
    })
    .await;
    assert!(connects.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    p.engine.shutdown().await;
    server.abort();
}

/// The signaling client alone, joined through `url`, with a 45 s silence limit; its check
/// channel and its events.
fn client(
    url: &str,
) -> (
    tokio::sync::mpsc::Sender<confab_engine::signaling::Check>,
    tokio::sync::mpsc::Receiver<confab_engine::signaling::SigEvent>,
    tokio_util::sync::CancellationToken,
    tokio::sync::mpsc::Sender<confab_protocol::ClientMessage>,
) {
    use confab_engine::signaling::{run, JoinParams, SILENCE_LIMIT};
    let (out_tx, out_rx) = tokio::sync::mpsc::channel(8);
    let (check_tx, check_rx) = tokio::sync::mpsc::channel(1);
    let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(8);
    let cancel = tokio_util::sync::CancellationToken::new();
    let params = JoinParams {
        urls: vec![url.to_owned()],
        room: "check".into(),
        name: "Ada".into(),
        password: None,
        silence_limit: SILENCE_LIMIT,
    };
    tokio::spawn(run(params, out_rx, check_rx, ev_tx, cancel.clone()));
    (check_tx, ev_rx, cancel, out_tx)
}

async fn next_event(
    events: &mut tokio::sync::mpsc::Receiver<confab_engine::signaling::SigEvent>,
) -> confab_engine::signaling::SigEvent {
    tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the client runs")
}

/// A network change leaves the signaling connection on a dead path: no close, no error, just
/// silence, which the silence limit notices only after 45 s. When a link loses its path the
/// engine asks for a check: the client pings, and a server that does not answer within 3 s
/// is left for a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_path_is_found_by_a_check_not_after_45_s() {
    use confab_engine::signaling::{Check, SigEvent, CHECK_LIMIT};
    let (url, _, server) = silent_server().await;
    let (check, mut events, cancel, _out) = client(&url);
    assert!(matches!(
        next_event(&mut events).await,
        SigEvent::Welcome { .. }
    ));
    let asked = std::time::Instant::now();
    check.send(Check::Ping).await.unwrap();
    match next_event(&mut events).await {
        SigEvent::Reconnecting { reason, .. } => {
            assert!(reason.contains("did not answer a check"), "{reason}");
            let took = asked.elapsed();
            assert!(
                took >= CHECK_LIMIT && took < CHECK_LIMIT * 2,
                "found after {took:?}"
            );
        }
        other => panic!("expected a reconnection, got {other:?}"),
    }
    assert!(
        matches!(next_event(&mut events).await, SigEvent::Welcome { .. }),
        "joined again"
    );
    cancel.cancel();
    server.abort();
}

/// When the engine sees the way to the server move (our network changed), the client leaves
/// the connection at once and joins again: no ping, no wait. The welcome carries the way the
/// connection started on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_route_leaves_the_connection_at_once() {
    use confab_engine::signaling::{Check, SigEvent};
    let server = server().await;
    let (check, mut events, cancel, _out) = client(&server.ws_url());
    match next_event(&mut events).await {
        SigEvent::Welcome { route, .. } => {
            let r = route.expect("a route to the server");
            assert_eq!(r.far(), std::net::IpAddr::from([127, 0, 0, 1]));
            assert!(!r.moved(), "loopback stays put");
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
    let asked = std::time::Instant::now();
    check.send(Check::Moved).await.unwrap();
    match next_event(&mut events).await {
        SigEvent::Reconnecting { reason, .. } => {
            assert!(reason.contains("network changed"), "{reason}");
            let took = asked.elapsed();
            assert!(
                took < std::time::Duration::from_secs(1),
                "left after {took:?}"
            );
        }
        other => panic!("expected a reconnection, got {other:?}"),
    }
    assert!(
        matches!(
            next_event(&mut events).await,
            SigEvent::Welcome { route: Some(_), .. }
        ),
        "joined again"
    );
    cancel.cancel();
}

/// Ada's path to the server dies silently (the server still holds her connection, and would
/// until its idle timeout, a minute). She finds out, connects again and presents her rejoin
/// token: Bob hears at once that her old membership left, then that she is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoin_drops_the_dead_membership_at_once() {
    use confab_engine::signaling::{Check, SigEvent};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = server().await;
    let relay = confab_netlab::tcp::FreezingRelay::start(server.local_addr())
        .await
        .unwrap();
    let (check, mut events, cancel, _out) = client(&relay.ws_url());
    let SigEvent::Welcome { id: old, .. } = next_event(&mut events).await else {
        panic!("Ada joins");
    };
    // Bob, straight to the server, in the same room.
    let (mut bob, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    bob.send(Message::Text(
        r#"{"type":"join","room":"check","name":"Bob"}"#.into(),
    ))
    .await
    .unwrap();
    let mut heard = Vec::new();
    let mut next_for_bob = async || loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), bob.next())
            .await
            .expect("Bob hears within 10 s")
            .expect("Bob's connection stays")
            .unwrap();
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            break (
                v["type"].as_str().unwrap().to_owned(),
                v["id"].as_str().unwrap_or("").to_owned(),
                v,
            );
        }
    };
    let (kind, _, welcome) = next_for_bob().await;
    assert_eq!(kind, "welcome");
    assert_eq!(welcome["peers"][0]["id"], old.as_str());

    // Ada has heard Bob arrive: nothing is on its way to her when her path dies (a frame
    // still arriving would prove the connection to her check).
    loop {
        if let SigEvent::PeerJoined { name, .. } = next_event(&mut events).await {
            assert_eq!(name, "Bob");
            break;
        }
    }
    relay.freeze();
    let frozen = std::time::Instant::now();
    check.send(Check::Ping).await.unwrap();
    while !matches!(next_event(&mut events).await, SigEvent::Reconnecting { .. }) {}
    let (new, peers) = loop {
        if let SigEvent::Welcome { id, peers, .. } = next_event(&mut events).await {
            break (id, peers);
        }
    };
    assert_ne!(new, old);
    assert!(
        peers.iter().all(|p| p.id != old),
        "her old membership is gone before she is seated: {peers:?}"
    );
    for _ in 0..2 {
        let (kind, id, _) = next_for_bob().await;
        heard.push((kind, id));
    }
    assert_eq!(
        heard,
        [
            ("peer-left".to_owned(), old.to_string()),
            ("peer-joined".to_owned(), new.to_string())
        ],
        "Bob hears the old one leave, then the new one arrive"
    );
    // The check's 3 s, a reconnection, and nothing more (the server's own timeout is 60 s).
    let took = frozen.elapsed();
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    cancel.cancel();
    drop(relay);
    server.shutdown(std::time::Duration::from_secs(1)).await;
}

/// A server that answers keeps the connection through a check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_server_passes_a_check() {
    use confab_engine::signaling::{Check, SigEvent, CHECK_LIMIT};
    let server = server().await;
    let (check, mut events, cancel, _out) = client(&server.ws_url());
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv()).await;
    assert!(
        matches!(first, Ok(Some(SigEvent::Welcome { .. }))),
        "{first:?}"
    );
    for _ in 0..3 {
        check.send(Check::Ping).await.unwrap();
        tokio::time::sleep(CHECK_LIMIT / 2).await;
    }
    let after = tokio::time::timeout(CHECK_LIMIT * 2, events.recv()).await;
    assert!(after.is_err(), "nothing happened: {after:?}");
    cancel.cancel();
}

/// A member that joins and leaves in a loop for 10 s, from another address's worth of
/// connections, while two engines are in a call: the call never stops, neither engine loses its
/// server connection, and both keep their ids (no rejoin was needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flapping_member_cannot_stop_a_call() {
    use futures_util::{SinkExt, StreamExt};
    use std::time::{Duration, Instant};
    use tokio_tungstenite::tungstenite::Message;
    init_logs();
    let server = server().await;
    let (mut a, mut b) = call_pair(
        &server,
        "flap",
        config(440.0, VideoCodec::H264, false),
        config(660.0, VideoCodec::H264, false),
    )
    .await;
    for (p, of) in [(&a, &b.id), (&b, &a.id)] {
        p.wait_stats(of, "the call runs", |s| sees_pattern(s, 10))
            .await;
    }

    // What happened before the flapping (joining, ringing) is not what is checked.
    for p in [&mut a, &mut b] {
        while p.events.try_recv().is_ok() {}
    }

    // Two flapping connections: join, leave, join again, as fast as the server lets them.
    let run_for = Duration::from_secs(10);
    let started = Instant::now();
    let url = server.ws_url();
    let flappers: Vec<_> = (0..2)
        .map(|n| {
            let url = url.clone();
            tokio::spawn(async move {
                let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                let (mut tx, mut rx) = ws.split();
                let reader = tokio::spawn(async move {
                    let mut welcomes = 0u32;
                    while let Some(Ok(m)) = rx.next().await {
                        if let Message::Text(t) = m {
                            welcomes += t.as_str().contains(r#""type":"welcome""#) as u32;
                        }
                    }
                    welcomes
                });
                while started.elapsed() < run_for {
                    for msg in [
                        format!(r#"{{"type":"join","room":"flap","name":"Flap{n}"}}"#),
                        r#"{"type":"leave"}"#.to_owned(),
                    ] {
                        if tx.send(Message::Text(msg.into())).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(15)).await;
                    }
                }
                let _ = tx.close().await;
                reader.await.unwrap_or(0)
            })
        })
        .collect();

    // Meanwhile: both directions keep decoding, and neither engine's connection changes.
    let mut flapper_ids = std::collections::HashSet::new();
    let mut last = (
        frames_from(&a, &b.id).await,
        frames_from(&b, &a.id).await,
        Instant::now(),
    );
    while started.elapsed() < run_for + Duration::from_secs(1) {
        for p in [&mut a, &mut b] {
            while let Ok(ev) = p.events.try_recv() {
                if let EngineEvent::State(s) = ev {
                    assert_eq!(
                        s.connection,
                        confab_engine::ConnectionStatus::Connected,
                        "an engine lost its server connection during the flapping"
                    );
                    assert_eq!(s.me.as_ref().map(|m| m.0.as_str()), Some(p.id.as_str()));
                    assert!(s.in_call, "a call ended during the flapping");
                    for part in s.participants.iter().filter(|x| x.name.starts_with("Flap")) {
                        flapper_ids.insert(part.id.0.clone());
                    }
                }
            }
        }
        let now = (
            frames_from(&a, &b.id).await,
            frames_from(&b, &a.id).await,
            Instant::now(),
        );
        if now.0 > last.0 && now.1 > last.1 {
            last = now;
        } else {
            // A loaded machine may pause a moment; a stopped call stays stopped.
            assert!(
                now.2 - last.2 < Duration::from_secs(3),
                "no new picture for 3 s during the flapping: {last:?} -> {now:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut welcomes = 0;
    for f in flappers {
        welcomes += f.await.unwrap();
    }
    // The attack happened: the flapper got in, and the members saw it come and go.
    assert!(welcomes >= 2, "the flapper joined {welcomes} times");
    assert!(
        flapper_ids.len() >= 2,
        "the members saw {} flapper ids",
        flapper_ids.len()
    );
    // And the call is still the same call, both ways, with both sounds.
    for (p, of, hz) in [(&a, &b.id, 660.0), (&b, &a.id, 440.0)] {
        let seen = frames_from(p, of).await;
        p.wait_stats(of, "the call goes on after the flapping", |s| {
            s.video.frames_decoded > seen + 15 && hears(s, hz)
        })
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().connections != 2 {
        assert!(
            Instant::now() < deadline,
            "the flappers are gone, the members stay: {:?}",
            server.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in [&a, &b] {
        p.engine.shutdown().await;
    }
}

/// Janus as a room member could speak to it: connected, with a session and a VideoRoom handle.
async fn at_the_sfu(janus: &confab_netlab::janus::Janus) -> (confab_janus::Janus, u64) {
    let mut j = confab_janus::Janus::connect(&janus.url().replace("janus+", ""))
        .await
        .expect("janus answers");
    j.create_session().await.expect("a session");
    let handle = j.attach().await.expect("a handle");
    (j, handle)
}

/// Waits until `viewer` has read `more` pattern frames of `of` beyond what it has now.
async fn keeps_seeing(viewer: &Peer, of: &str, what: &str, more: u64) -> confab_engine::PeerStats {
    let before = viewer
        .wait_stats(of, what, |_| true)
        .await
        .video
        .pattern_frames;
    viewer
        .wait_stats(of, what, |s| sees_pattern(s, before + more))
        .await
}

/// Whether joining `room` with `pin` (and `token`) is refused with `code` (`None`: let in).
async fn join_refusal(
    janus: &confab_netlab::janus::Janus,
    room: u64,
    pin: &str,
    token: Option<&str>,
) -> Option<i64> {
    let (mut j, handle) = at_the_sfu(janus).await;
    let mut join = serde_json::json!({"request": "join", "ptype": "publisher", "room": room,
                                      "pin": pin, "display": "probe"});
    if let Some(t) = token {
        join["token"] = t.into();
    }
    let refused = match j.plugin("joining", handle, join).await {
        Ok(_) => None,
        Err(e) => Some(e.code().unwrap_or_else(|| panic!("not a refusal: {e}"))),
    };
    j.close().await;
    refused
}

const SFU_SECRET: &str = "a-test-secret-of-16+";

/// A server whose every call goes through `janus`, waiting 500 ms (not 10 s) before it removes
/// an emptied room or kicks a departed member's feed.
async fn sfu_server(janus: &confab_netlab::janus::Janus) -> confab_signal::SignalServer {
    confab_signal::SignalServer::start(confab_signal::SignalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        limits: confab_signal::RoomLimits {
            sfu: Some(janus.sfu(SFU_SECRET, 0)),
            ..Default::default()
        },
        sfu_remove_after: std::time::Duration::from_millis(500),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// A small camera (320x240, 15 fps, VP8) for calls through Janus.
fn small_through_janus(auto_accept: bool) -> confab_engine::EngineConfig {
    let mut c = config(440.0, VideoCodec::Vp8, auto_accept);
    c.format = confab_engine::media_kit::device::VideoFormat {
        width: 320,
        height: 240,
        fps: 15.0,
    };
    // Janus gathers on the machine's own address, not on loopback.
    c.rtc.udp_addrs = vec!["0.0.0.0:0".into()];
    c
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Joins `room` over a raw signaling connection; returns the welcome's `sfu` object.
async fn raw_join(ws: &mut Ws, room: &str, name: &str) -> serde_json::Value {
    raw_welcome(ws, room, name).await["sfu"].clone()
}

/// Joins `room` over a raw signaling connection; returns the welcome.
async fn raw_welcome(ws: &mut Ws, room: &str, name: &str) -> serde_json::Value {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let join = serde_json::json!({"type": "join", "room": room, "name": name});
    ws.send(Message::text(join.to_string())).await.unwrap();
    loop {
        let Some(Ok(m)) = ws.next().await else {
            panic!("no welcome")
        };
        let Message::Text(t) = m else { continue };
        let m: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        if m["type"] == "welcome" {
            return m;
        }
    }
}

/// A room member with the SFU room's number and PIN (from `welcome`) speaks to Janus
/// directly: they may join their own VideoRoom room (with their own token), but not make
/// rooms, nor edit, kick from or destroy theirs (only the signaling server knows the room's
/// secret and Janus's admin key); the PIN alone does not let anyone in. When the member leaves
/// the server removes its room, so nobody who has left can stay in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sfu_room_destroyed_by_a_member() {
    use confab_janus::{NO_SUCH_ROOM, UNAUTHORIZED};
    use futures_util::SinkExt;
    use serde_json::json;
    use std::time::{Duration, Instant};
    use tokio_tungstenite::tungstenite::Message;
    init_logs();
    let janus = confab_netlab::janus::Janus::start().expect("janus starts");
    let server = sfu_server(&janus).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let sfu = raw_join(&mut ws, "target", "Mallory").await;
    let (room, pin) = (
        sfu["room"].as_u64().unwrap(),
        sfu["pin"].as_str().unwrap().to_owned(),
    );
    let token = sfu["token"].as_str().expect("a token").to_owned();
    // The server makes the room right after the welcome.
    let made = Instant::now();
    while join_refusal(&janus, room, &pin, Some(&token)).await == Some(NO_SUCH_ROOM) {
        assert!(made.elapsed() < Duration::from_secs(5), "no room made");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        join_refusal(&janus, room, "0000", Some(&token)).await,
        Some(UNAUTHORIZED)
    );
    assert_eq!(
        join_refusal(&janus, room, &pin, None).await,
        Some(UNAUTHORIZED),
        "the PIN alone lets nobody in"
    );

    let (mut m, handle) = at_the_sfu(&janus).await;
    // Janus says 429 for a missing admin key or secret (the room has one), 433 for a wrong one.
    const MISSING: i64 = 429;
    let attacks = [
        (
            "a room of one's own",
            MISSING,
            json!({"request": "create", "room": 4242}),
        ),
        (
            "a room with a guessed admin key",
            UNAUTHORIZED,
            json!({"request": "create", "room": 4242, "admin_key": pin}),
        ),
        (
            "a new PIN",
            MISSING,
            json!({"request": "edit", "room": room, "new_pin": "mine"}),
        ),
        (
            "a new PIN with the PIN as secret",
            UNAUTHORIZED,
            json!({"request": "edit", "room": room, "secret": pin, "new_pin": "mine"}),
        ),
        (
            "kicking someone",
            MISSING,
            json!({"request": "kick", "room": room, "id": 1}),
        ),
        (
            "letting a friend in",
            MISSING,
            json!({"request": "allowed", "room": room, "action": "add", "allowed": ["friend"]}),
        ),
        (
            "opening the room to all",
            UNAUTHORIZED,
            json!({"request": "allowed", "room": room, "secret": token, "action": "disable"}),
        ),
        (
            "destroying the room",
            MISSING,
            json!({"request": "destroy", "room": room}),
        ),
        (
            "destroying it with the PIN as secret",
            UNAUTHORIZED,
            json!({"request": "destroy", "room": room, "secret": pin}),
        ),
    ];
    for (what, code, body) in attacks {
        let refused = m.plugin("an attack", handle, body).await;
        assert_eq!(
            refused.as_ref().map_err(|e| e.code()).err(),
            Some(Some(code)),
            "{what}: {refused:?}"
        );
    }
    assert_eq!(
        join_refusal(&janus, room, &pin, Some(&token)).await,
        None,
        "the room stands"
    );
    assert_eq!(
        join_refusal(&janus, room, &pin, Some("friend")).await,
        Some(UNAUTHORIZED),
        "and lets in only its members"
    );
    m.close().await;

    // She leaves: her room goes at once (nobody else is ever in it).
    ws.send(Message::text(r#"{"type":"leave"}"#)).await.unwrap();
    let left = Instant::now();
    while join_refusal(&janus, room, &pin, Some(&token)).await != Some(NO_SUCH_ROOM) {
        assert!(left.elapsed() < Duration::from_secs(5), "her room stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back, she is a member anew, with a room of her own anew.
    let sfu = raw_join(&mut ws, "target", "Mallory").await;
    let again = sfu["token"].as_str().expect("a token").to_owned();
    let (room2, pin2) = (sfu["room"].as_u64().unwrap(), sfu["pin"].as_str().unwrap());
    assert_ne!(again, token);
    assert_ne!(room2, room);
    let made = Instant::now();
    while join_refusal(&janus, room2, pin2, Some(&again)).await == Some(NO_SUCH_ROOM) {
        assert!(made.elapsed() < Duration::from_secs(5), "no room made");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(join_refusal(&janus, room2, pin2, Some(&again)).await, None);
    assert_eq!(
        join_refusal(&janus, room2, pin2, Some(&token)).await,
        Some(UNAUTHORIZED),
        "an old membership's token opens nothing"
    );
    server.shutdown(Duration::from_secs(2)).await;
}

/// A WebSocket proxy on a client's path to the server that hands over the `sfu` of the first
/// `welcome` it relays (a member's own VideoRoom room, PIN and token, which nobody else is
/// ever sent).
async fn welcome_tap(
    upstream: String,
) -> (String, tokio::sync::oneshot::Receiver<serde_json::Value>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let tap = move |text: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        if v["type"] == "welcome" {
            if let Some(tx) = tx.take() {
                let _ = tx.send(v["sfu"].clone());
            }
        }
        text.to_owned()
    };
    (ws_relay(upstream, str::to_owned, tap).await, rx)
}

/// The VideoRoom rooms at Janus in which someone publishes under `display` (listed with the
/// admin key, as only the operator can).
async fn rooms_with(janus: &confab_netlab::janus::Janus, display: &str) -> Vec<u64> {
    let (mut j, handle) = at_the_sfu(janus).await;
    let key = janus.sfu(SFU_SECRET, 0).admin_key;
    let listed = j
        .plugin(
            "listing rooms",
            handle,
            serde_json::json!({"request": "list", "admin_key": key}),
        )
        .await
        .expect("the rooms");
    let mut out = Vec::new();
    for room in listed["list"].as_array().into_iter().flatten() {
        let Some(id) = room["room"].as_u64() else {
            continue;
        };
        let ask = serde_json::json!({"request": "listparticipants", "room": id});
        let Ok(there) = j.plugin("listing", handle, ask).await else {
            continue;
        };
        let shown = there["participants"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if shown.iter().any(|p| p["display"] == display) {
            out.push(id);
        }
    }
    j.close().await;
    out
}

/// Mallory, a member of a room whose call between Ada and Bob goes through the SFU, speaks to
/// Janus with a client of her own to watch Ada without anyone's say. Ada publishes in a
/// VideoRoom room of her own (only her token gets in; a subscription must name the private id
/// of a participant in it), and even with that room's number and PIN in hand (Ada's `welcome`,
/// tapped here; nobody else is ever sent them) Mallory cannot join it, nor subscribe to Ada's
/// camera naming the private id Janus gave her in her own room, nor with none, nor find Ada's
/// feed in her own room. Ada and Bob's call goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unadmitted_member_subscribes_with_a_raw_janus_client() {
    use confab_janus::{NO_SUCH_FEED, UNAUTHORIZED};
    use serde_json::json;
    use std::time::{Duration, Instant};
    init_logs();
    let janus = confab_netlab::janus::Janus::start().expect("janus starts");
    let server = sfu_server(&janus).await;
    let small = || small_through_janus(true);
    let (tap, adas) = welcome_tap(server.ws_url()).await;
    let (engine, events) =
        confab_engine::Engine::start(small(), std::sync::Arc::new(confab_engine::NullSink))
            .unwrap();
    let joined = engine
        .join(&tap, "watched", "Ada", None)
        .await
        .expect("Ada joins");
    let mut ada = Peer {
        engine,
        events,
        id: joined.id.to_string(),
    };
    let adas = adas.await.expect("Ada's welcome");
    let bob = join(&server, "watched", "Bob", small()).await;
    ada.wait_participants(1).await;
    ada.engine.call(None).await.unwrap();
    bob.wait_stats(&ada.id, "Bob sees Ada through the SFU", |s| {
        sees_pattern(s, 10)
    })
    .await;

    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let hers = raw_join(&mut ws, "watched", "Mallory").await;
    assert_ne!(hers["room"], adas["room"], "a VideoRoom room of one's own");
    let (mut m, own) = at_the_sfu(&janus).await;
    let sit = json!({"request": "join", "ptype": "publisher", "room": hers["room"],
                     "pin": hers["pin"], "token": hers["token"], "display": "Mallory"});
    let joined = Instant::now();
    let seat = loop {
        match m.plugin("joining her room", own, sit.clone()).await {
            Ok(seat) => break seat,
            Err(e) => assert!(
                joined.elapsed() < Duration::from_secs(5),
                "a member gets into her own room: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let private_id = seat["private_id"].as_u64().expect("a private id");
    let (room, pin) = (adas["room"].as_u64().unwrap(), &adas["pin"]);
    let list = json!({"request": "listparticipants", "room": room});
    let listed = m.plugin("listing Ada's room", own, list).await.unwrap();
    let ada_feed = listed["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["display"] == ada.id.as_str())
        .and_then(|p| p["id"].as_u64())
        .unwrap_or_else(|| panic!("Ada publishes in her room: {listed}"));

    let refusal = async |m: &mut confab_janus::Janus, body: serde_json::Value| {
        let h = m.attach().await.unwrap();
        match m.plugin("trying", h, body.clone()).await {
            Ok(answer) => panic!("let in with {body}: {answer}"),
            Err(e) => e.code().unwrap_or_else(|| panic!("not a refusal: {e}")),
        }
    };
    let publish = json!({"request": "join", "ptype": "publisher", "room": room, "pin": pin,
                         "token": hers["token"], "display": "Mallory"});
    assert_eq!(
        refusal(&mut m, publish).await,
        UNAUTHORIZED,
        "into Ada's room"
    );
    let subscribe = json!({"request": "join", "ptype": "subscriber", "room": room, "pin": pin,
                           "feed": ada_feed, "private_id": private_id});
    assert_eq!(
        refusal(&mut m, subscribe.clone()).await,
        UNAUTHORIZED,
        "Ada's camera, naming her own private id"
    );
    let mut bare = subscribe;
    bare.as_object_mut().unwrap().remove("private_id");
    assert_eq!(
        refusal(&mut m, bare).await,
        UNAUTHORIZED,
        "Ada's camera, naming none"
    );
    let mine = json!({"request": "join", "ptype": "subscriber", "room": hers["room"],
                      "pin": hers["pin"], "feed": ada_feed, "private_id": private_id});
    assert_eq!(
        refusal(&mut m, mine).await,
        NO_SUCH_FEED,
        "Ada's camera in her own room"
    );
    m.close().await;
    let s = keeps_seeing(&bob, &ada.id, "Bob keeps seeing Ada", 15).await;
    assert!(hears(&s, 440.0), "Ada's tone: {s:#?}");
    for p in [ada, bob] {
        p.engine.shutdown().await;
    }
    server.shutdown(Duration::from_secs(2)).await;
}

/// Ada, Bob and Cy in one call through the SFU: Ada holds a subscription of her media for
/// each of the two others. Cy's connection to the server goes, without a hang-up: the server
/// tells the room he left, but his client still holds what it receives (a client of his own
/// making would keep it on purpose). Ada's ends it: the subscription she opened for him is
/// paused at Janus as soon as the server says he left, not when the call rules stop waiting
/// for his rejoin (30 s), and nothing of hers reaches him. Bob's stays, and he keeps seeing
/// Ada.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ex_member_keeps_watching() {
    use std::time::{Duration, Instant};
    init_logs();
    let janus = confab_netlab::janus::Janus::start().expect("janus starts");
    let server = sfu_server(&janus).await;
    let small = || small_through_janus(true);
    let mut ada = join(&server, "left", "Ada", small()).await;
    let bob = join(&server, "left", "Bob", small()).await;
    let relay = confab_netlab::tcp::FreezingRelay::start(server.local_addr())
        .await
        .unwrap();
    let (engine, events) =
        confab_engine::Engine::start(small(), std::sync::Arc::new(confab_engine::NullSink))
            .unwrap();
    let joined = engine
        .join(&relay.ws_url(), "left", "Cy", None)
        .await
        .expect("Cy joins through the relay");
    let cy = Peer {
        engine,
        events,
        id: joined.id.to_string(),
    };
    ada.wait_participants(2).await;
    ada.engine.call(None).await.unwrap();
    for p in [&bob, &cy] {
        p.wait_stats(&ada.id, "Ada is seen through the SFU", |s| {
            sees_pattern(s, 10)
        })
        .await;
    }
    let subscriptions = async || ada.engine.resources().await.unwrap().sfu_subscriptions;
    assert_eq!(subscriptions().await, 2, "one for each of the others");
    relay.cut();
    let left = Instant::now();
    while subscriptions().await != 1 {
        assert!(
            left.elapsed() < Duration::from_secs(5),
            "Ada still subscribes for Cy 5 s after he left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = async || {
        cy.wait_stats(&ada.id, "Cy's view of Ada", |_| true)
            .await
            .video
            .pattern_frames
    };
    // (What was on its way when the pause came may still arrive.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let then = seen().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = seen().await;
    assert!(later <= then + 2, "Cy still sees Ada: {then} -> {later}");
    keeps_seeing(&bob, &ada.id, "Bob keeps seeing Ada", 15).await;
    for p in [ada, bob, cy] {
        p.engine.shutdown().await;
    }
    server.shutdown(Duration::from_secs(2)).await;
}

/// Mallory is in the room but in nobody's call. Through an SFU a person's pictures come only
/// from the offers that person sends, to the people their call let in; Mallory tries the
/// rest: she hands Bob an offer shaped like Janus's as her own `sfu-offer`, and she sends Ada
/// answers, candidates and layer asks for subscriptions she guesses. Bob opens
/// nothing for her and shows nothing of hers; Ada sends Janus nothing of hers; their call goes
/// on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_sfu_signals_from_outside_the_call() {
    use futures_util::SinkExt;
    use serde_json::json;
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::Message;
    init_logs();
    let janus = confab_netlab::janus::Janus::start().expect("janus starts");
    let server = sfu_server(&janus).await;
    let small = || small_through_janus(false);
    let (ada, bob) = call_pair(&server, "forged", small(), small()).await;
    bob.wait_stats(&ada.id, "Bob sees Ada through the SFU", |s| {
        sees_pattern(s, 10)
    })
    .await;
    ada.wait_stats(&bob.id, "Ada sees Bob through the SFU", |s| {
        sees_pattern(s, 10)
    })
    .await;

    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let welcome = raw_welcome(&mut ws, "forged", "Mallory").await;
    let mallory = welcome["id"].as_str().unwrap().to_owned();
    // An offer as Janus makes them (Mallory cannot get one of Ada's media: her own VideoRoom
    // room holds only her).
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=VideoRoom\r\nt=0 0\r\n\
               a=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
               c=IN IP4 127.0.0.1\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
               a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
               a=fingerprint:sha-256 4D:49:54:4D:4D:49:54:4D:4D:49:54:4D:4D:49:54:4D:4D:49:54:4D:4D:49:54:4D:4D:49:54:4D:4D:49:54:4D\r\n\
               a=setup:actpass\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 127.0.0.1\r\n\
               a=mid:1\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n";
    let sub = 4242u64;
    let to = |to: &str, data: serde_json::Value| {
        Message::text(json!({"type": "signal", "to": to, "data": data}).to_string())
    };
    let candidate = json!({"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
                           "sdpMid": "0", "sdpMLineIndex": 0});
    ws.send(to(
        &bob.id,
        json!({"kind": "sfu-offer", "sub": sub, "sdp": sdp, "shares": ["1"]}),
    ))
    .await
    .unwrap();
    for guess in 1..40u64 {
        for data in [
            json!({"kind": "sfu-answer", "sub": guess, "sdp": "v=0\r\n"}),
            json!({"kind": "sfu-candidate", "sub": guess, "candidate": candidate}),
            json!({"kind": "sfu-layer", "sub": guess, "layer": "half"}),
        ] {
            ws.send(to(&ada.id, data)).await.unwrap();
        }
    }
    ws.send(to(
        &bob.id,
        json!({"kind": "sfu-offer", "sub": sub + 1, "sdp": sdp}),
    ))
    .await
    .unwrap();

    // The call goes on, and nothing of Mallory's is shown or linked.
    let s = keeps_seeing(&bob, &ada.id, "Bob keeps seeing Ada", 15).await;
    assert!(hears(&s, 440.0), "Ada's tone: {s:#?}");
    keeps_seeing(&ada, &bob.id, "Ada keeps seeing Bob", 15).await;
    for p in [&ada, &bob] {
        let stats = p.engine.stats().await.unwrap();
        assert!(
            stats.iter().all(|s| s.id != mallory),
            "nothing of Mallory's: {stats:#?}"
        );
        assert_eq!(
            p.engine.resources().await.unwrap().links,
            1,
            "one link each"
        );
        let snap = p.engine.snapshot().await.unwrap();
        assert!(snap.through_sfu, "{snap:?}");
    }
    for p in [ada, bob] {
        p.engine.shutdown().await;
    }
    server.shutdown(Duration::from_secs(2)).await;
}

/// The other side of `ex_member_keeps_watching`: Ada's network goes for longer than the
/// server waits. The server sees her connection close, and kicks her feed at the SFU while
/// she is still away. Back, she is a new member with a new feed, publishes anew, and Bob sees
/// her again: the call goes on (rule 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_away_longer_than_the_wait_publishes_anew() {
    use std::time::{Duration, Instant};
    init_logs();
    let janus = confab_netlab::janus::Janus::start().expect("janus starts");
    let server = sfu_server(&janus).await;
    let relay = confab_netlab::tcp::FreezingRelay::start(server.local_addr())
        .await
        .unwrap();
    let small = || small_through_janus(true);
    let (engine, events) =
        confab_engine::Engine::start(small(), std::sync::Arc::new(confab_engine::NullSink))
            .unwrap();
    let joined = engine
        .join(&relay.ws_url(), "flaky", "Ada", None)
        .await
        .expect("Ada joins through the relay");
    let mut ada = Peer {
        engine,
        events,
        id: joined.id.to_string(),
    };
    let bob = join(&server, "flaky", "Bob", small()).await;
    ada.wait_participants(1).await;
    ada.engine.call(None).await.unwrap();
    bob.wait_stats(&ada.id, "Bob sees Ada through the SFU", |s| {
        sees_pattern(s, 10)
    })
    .await;

    assert_eq!(rooms_with(&janus, &ada.id).await.len(), 1, "Ada publishes");
    relay.cut();
    // Her pictures from now on are numbered past this (the link Bob sees her on may carry
    // over to her new id, and its count with it).
    let last = bob
        .wait_stats(&ada.id, "Bob's view of Ada", |_| true)
        .await
        .video
        .last_pattern_frame
        .unwrap_or(0);
    let cut = Instant::now();
    loop {
        let rooms = rooms_with(&janus, &ada.id).await;
        if rooms.is_empty() {
            break;
        }
        assert!(
            cut.elapsed() < Duration::from_secs(5),
            "Ada's room stays at the SFU 5 s after her connection closed: {rooms:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay.restore();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = bob.engine.stats().await.unwrap();
        let back = stats.iter().find(|s| {
            s.name == "Ada"
                && s.id != ada.id
                && s.video.last_pattern_frame.is_some_and(|f| f > last + 15)
        });
        if back.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Bob does not see Ada again within 30 s: {stats:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for p in [ada, bob] {
        p.engine.shutdown().await;
    }
    server.shutdown(Duration::from_secs(2)).await;
}
