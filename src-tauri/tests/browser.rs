//! Browser interop: the web client in real headless Chromium, against confab-peer, the engine
//! and the desktop app, in a loopback-only network namespace.

mod common;

use anyhow::{ensure, Result};
use common::*;
use confab_signal::{SignalConfig, SignalServer};
use serde_json::Value;
use std::process::{Command, Stdio};

/// A server whose web client obeys the test URL parameters (join=1, call=1, source=test…).
async fn server() -> Result<SignalServer> {
    Ok(SignalServer::start(SignalConfig {
        listen: "127.0.0.1:0".parse()?,
        test_hooks: true,
        ..Default::default()
    })
    .await?)
}

/// The same, with the real Janus `janus` as the rooms' SFU above `above` people.
async fn sfu_server(janus: &confab_netlab::janus::Janus, above: u32) -> Result<SignalServer> {
    Ok(SignalServer::start(sfu_config(janus, above, "127.0.0.1:0".parse()?)).await?)
}

fn sfu_config(
    janus: &confab_netlab::janus::Janus,
    above: u32,
    listen: std::net::SocketAddr,
) -> SignalConfig {
    SignalConfig {
        listen,
        test_hooks: true,
        limits: confab_signal::RoomLimits {
            sfu: Some(janus.sfu("a-test-secret-of-16+", above)),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A signaling server again on the address a stopped one had (retrying while the old socket
/// lets go).
async fn start_again(listen: std::net::SocketAddr, config: SignalConfig) -> Result<SignalServer> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => return Ok(SignalServer::start_on(l, config)?),
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("rebinding {listen}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What confab-peer reads of the browser's 640x480 test camera: that picture, or the same at a
/// smaller size (Chromium scales a camera down on its own while its bandwidth estimate is low
/// or the machine is busy), never the 1280x720 screen.
fn is_the_browsers_camera(video: &Value) -> bool {
    let (w, h) = (video["width"].as_u64(), video["height"].as_u64());
    matches!((w, h), (Some(w), Some(h)) if w > 0 && w <= 640 && (w * 3).abs_diff(h * 4) <= 8)
}

fn web_url(server: &SignalServer, query: &str) -> String {
    format!("http://{}/?{query}", server.local_addr())
}

fn tone_is(v: &Value, hz: f64) -> bool {
    v["audio"]["tone_hz"]
        .as_f64()
        .is_some_and(|h| (h - hz).abs() < 6.0)
}

/// What the browser says (`say=`, with a right-to-left override at the end), as cleaned.
const HELLO_PAT: &str = "hello Pat \u{1F469}\u{200D}\u{1F4BB}";

async fn browser_and_peer(codec: &str) -> Result<()> {
    let server = server().await?;
    let dir = scratch(&format!("browser-{codec}"));
    let peer = peer(
        &server.ws_url(),
        "web",
        "Pat",
        660,
        &[
            "--duration",
            "90",
            "--codec",
            codec,
            "--say",
            "hello browser",
            "--share",
            "test",
        ],
        &dir,
    )?;
    let result = with_browser(async |c| {
        c.goto(&web_url(
            &server,
            &format!("room=web&name=Web&join=1&call=1&source=test&tone=440&codec={codec}&say=hello%20Pat%20%F0%9F%91%A9%E2%80%8D%F0%9F%92%BB%E2%80%AE&share=test"),
        ))
        .await?;
        // confab-peer decodes the browser's canvas pattern, in order, and hears its tone.
        let seen = peer.wait("confab-peer gets the browser's media", 45, |p| {
            p["video"]["pattern_frames"].as_u64() > Some(45) && tone_is(p, 440.0)
        })?;
        ensure!(seen["video"]["frames_out_of_order"] == 0, "{seen:#}");
        ensure!(
            seen["video"]["codec"] == codec,
            "negotiated {codec}: {seen:#}"
        );
        // The browser decodes ours: getStats counts frames, no freezes, and its pattern reader
        // reads our frame numbers in order.
        let r = wait_web(c, "the browser gets confab-peer's video", 45, |r| {
            r.first().is_some_and(|p| {
                p["pattern_frames"].as_u64() > Some(45) && p["framesDecoded"].as_u64() > Some(45)
            })
        })
        .await?;
        let p = &r[0];
        ensure!(p["frames_out_of_order"] == 0, "{p:#}");
        ensure!(p["freezeCount"] == 0, "no freezes: {p:#}");
        ensure!(
            p["codec"]
                .as_str()
                .unwrap_or("")
                .eq_ignore_ascii_case(&format!("video/{codec}")),
            "{p:#}"
        );
        ensure!(p["width"] == 640 && p["height"] == 480, "{p:#}");
        // confab-peer shares a (test) screen on a track of its own: the browser made room for
        // it in its offer and shows it in a tile of its own, apart from the camera.
        let r = wait_web(c, "the browser shows confab-peer's shared screen", 30, |r| {
            r.first().is_some_and(|p| {
                p["share"]["shown"] == true && p["share"]["pattern_frames"].as_u64() > Some(10)
            })
        })
        .await?;
        let share = &r[0]["share"];
        ensure!(share["frames_out_of_order"] == 0, "{share:#}");
        ensure!(share["stage"] == true, "the screen takes the stage: {share:#}");
        std::fs::write(
            artifacts().join(format!("web-call-share-{codec}.png")),
            c.screenshot().await?,
        )?;
        ensure!(
            share["width"] == 1280 && share["height"] == 720,
            "the screen at its own size: {share:#}"
        );
        ensure!(r[0]["width"] == 640, "the camera's tile still the camera: {:#}", r[0]);
        // And the browser shares its own (test) screen the same way: confab-peer tells it
        // from the camera by its place in the browser's offer and reads it back.
        let theirs = peer.wait("confab-peer reads the browser's screen", 30, |p| {
            p["share"]["pattern_frames"].as_u64() > Some(10)
        })?;
        let share = &theirs["share"];
        ensure!(share["frames_out_of_order"] == 0, "{share:#}");
        ensure!(
            share["width"] == 1280 && share["height"] == 720,
            "the browser's screen at its size: {share:#}"
        );
        ensure!(
            is_the_browsers_camera(&theirs["video"]),
            "the browser's camera still the camera: {theirs:#}"
        );
        ensure!(
            p["audioPackets"].as_u64() > Some(50),
            "the browser receives audio: {p:#}"
        );
        // Both read the same verification code (the browser made the offer and committed).
        let theirs = peer.wait("confab-peer's verification code", 20, |p| {
            p["verification_code"].is_string()
        })?;
        let code = &theirs["verification_code"];
        ensure!(
            p["verification_code"] == *code,
            "the browser reads {}, confab-peer {code}",
            p["verification_code"]
        );
        // Chat both ways over the link's data channel (the browser created it too). The
        // browser's line had a right-to-left override after the emoji: the web client's chat
        // rule (the shared table's) took that out and kept the joiner inside 👩‍💻.
        wait_web(c, "the browser gets confab-peer's chat line", 20, |r| {
            r.first().is_some_and(|p| {
                p["chat"].as_array().is_some_and(|c| c.iter().any(|t| t == "hello browser"))
            })
        })
        .await?;
        peer.wait_report("confab-peer gets the browser's chat line", 20, |j| {
            j["chat"].as_array().is_some_and(|c| {
                c.iter().any(|l| l["text"] == HELLO_PAT && l["name"] == "Web")
            })
        })?;
        Ok(())
    })
    .await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_calls_confab_peer_h264() -> Result<()> {
    let _turn = one_at_a_time().await;
    if !in_loopback_netns("browser_calls_confab_peer_h264") {
        return Ok(());
    }
    browser_and_peer("h264").await
}

/// The web client and confab-peer in a room whose calls go through a real Janus: each
/// publishes to Janus and receives the other from it (no direct link, no verification code),
/// and each decodes the other's pattern in order and hears the other's tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_and_confab_peer_through_janus() -> Result<()> {
    let _turn = one_at_a_time().await;
    if !in_lan_netns("browser_and_confab_peer_through_janus") {
        return Ok(());
    }
    let janus = confab_netlab::janus::Janus::start()?;
    let server = sfu_server(&janus, 0).await?;
    let dir = scratch("browser-sfu");
    let peer = peer_on(
        LAN_ADDRESS,
        &server.ws_url(),
        "big",
        "Pat",
        660,
        &["--duration", "90", "--codec", "h264"],
        &dir,
    )?;
    let result = with_browser(async |c| {
        c.goto(&web_url(
            &server,
            "room=big&name=Web&join=1&call=1&source=test&tone=440&codec=h264&share=test",
        ))
        .await?;
        let seen = peer.wait(
            "confab-peer gets the browser's media through Janus",
            45,
            |p| p["video"]["pattern_frames"].as_u64() > Some(30) && tone_is(p, 440.0),
        )?;
        ensure!(seen["video"]["frames_out_of_order"] == 0, "{seen:#}");
        ensure!(seen["verification_code"].is_null(), "{seen:#}");
        // The browser's (test) screen goes to Janus on its own place, described as a screen:
        // confab-peer gets it apart from the camera.
        let screen = peer.wait(
            "confab-peer gets the browser's screen through Janus",
            30,
            |p| p["share"]["pattern_frames"].as_u64() > Some(10),
        )?;
        ensure!(screen["share"]["frames_out_of_order"] == 0, "{screen:#}");
        ensure!(
            screen["share"]["width"] == 1280 && is_the_browsers_camera(&screen["video"]),
            "{screen:#}"
        );
        peer.wait_report("confab-peer sends to Janus", 20, |j| {
            j["sfu"]["send_kbps"].as_f64() > Some(20.0)
        })?;
        let r = wait_web(
            c,
            "the browser gets confab-peer's video through Janus",
            45,
            |r| {
                r.first()
                    .is_some_and(|p| p["pattern_frames"].as_u64() > Some(30))
            },
        )
        .await?;
        let p = &r[0];
        ensure!(p["frames_out_of_order"] == 0, "{p:#}");
        ensure!(p["name"] == "Pat", "{p:#}");
        ensure!(
            p["audioPackets"].as_u64() > Some(50),
            "the browser receives audio: {p:#}"
        );
        // confab-peer's 640x480 camera goes to Janus in two layers; on a clear line the
        // browser's layer choice keeps the full one.
        ensure!(p["width"] == 640 && p["layer"] == "full", "{p:#}");
        // The browser's own 640x480 camera goes to Janus in two layers too, both encoding.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let sending = loop {
            let s = c
                .execute("return await window.confabWeb.publishing();", vec![])
                .await?;
            let layers = s.as_array().cloned().unwrap_or_default();
            let moving = |l: &serde_json::Value, w: u64| {
                l["width"].as_u64() == Some(w)
                    && l["framesEncoded"].as_u64() > Some(30)
                    && l["bytesSent"].as_u64() > Some(10_000)
            };
            if layers.len() == 2 && moving(&layers[0], 640) && moving(&layers[1], 320) {
                break layers;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "the browser publishes two layers: {s:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        };
        ensure!(
            sending[0]["rid"] == "f" && sending[1]["rid"] == "h",
            "{sending:?}"
        );
        // The signaling server restarts: both come back under new ids and publish again
        // under them (a new feed each), and each receives the other afresh through Janus.
        // Their pictures from now on are numbered past what each has seen so far (a link that
        // carries over to the new id keeps its count).
        let (web_was, pat_was) = (seen["id"].clone(), p["id"].clone());
        let r = wait_web(c, "the browser's view of Pat", 5, |r| r.len() == 1).await?;
        let pat_last = r[0]["last_frame"].as_u64().unwrap_or(0);
        let j = peer.wait_report("confab-peer's view of the browser", 5, |_| true)?;
        let web_last = j["peers"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["id"] == web_was))
            .and_then(|p| p["video"]["last_pattern_frame"].as_u64())
            .unwrap_or(0);
        let listen = server.local_addr();
        server.shutdown(std::time::Duration::from_secs(1)).await;
        let server = start_again(listen, sfu_config(&janus, 0, listen)).await?;
        wait_web(c, "the browser gets Pat again, under his new id", 45, |r| {
            r.len() == 1
                && r[0]["id"] != pat_was
                && r[0]["last_frame"].as_u64() > Some(pat_last + 20)
        })
        .await?;
        let new_link = |j: &Value| -> Option<Value> {
            let ps = j["peers"].as_array()?;
            ps.iter()
                .find(|p| {
                    p["id"] != web_was
                        && p["video"]["last_pattern_frame"].as_u64() > Some(web_last + 20)
                })
                .cloned()
        };
        let j = peer.wait_report("confab-peer gets the browser again", 45, |j| {
            new_link(j).is_some()
        })?;
        let again = new_link(&j).unwrap_or_default();
        ensure!(again["video"]["frames_out_of_order"] == 0, "{again:#}");
        server.shutdown(std::time::Duration::from_secs(1)).await;
        Ok(())
    })
    .await;
    drop(janus);
    result
}

/// The web client and two confab-peers in a room whose calls go through Janus above two
/// people: the browser and Pat call directly; Quinn joins and everyone moves to Janus; Quinn
/// leaves, and the browser and Pat call directly again: one verification code on both sides,
/// and each sees the other's pattern, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_moves_to_janus_and_back() -> Result<()> {
    let _turn = one_at_a_time().await;
    if !in_lan_netns("browser_moves_to_janus_and_back") {
        return Ok(());
    }
    let janus = confab_netlab::janus::Janus::start()?;
    let server = sfu_server(&janus, 2).await?;
    let dir = scratch("browser-sfu-back");
    let url = server.ws_url();
    let args = ["--duration", "120", "--codec", "h264"];
    let pat = peer_on(LAN_ADDRESS, &url, "trio", "Pat", 660, &args, &dir)?;
    // Pat's entry for the browser over a direct link (through Janus there is no code).
    let direct_web = |j: &Value| -> Option<Value> {
        let ps = j["peers"].as_array()?;
        ps.iter()
            .find(|p| p["name"] == "Web" && p["verification_code"].is_string())
            .cloned()
    };
    let result = with_browser(async |c| {
        c.goto(&web_url(
            &server,
            "room=trio&name=Web&join=1&call=1&source=test&tone=440&codec=h264",
        ))
        .await?;
        pat.wait_report("Pat sees the browser, directly", 45, |j| {
            j["sfu"].is_null()
                && direct_web(j).is_some_and(|p| p["video"]["pattern_frames"].as_u64() > Some(20))
        })?;
        let mut call = args.to_vec();
        call.push("--call");
        let quinn = peer_on(LAN_ADDRESS, &url, "trio", "Quinn", 550, &call, &dir)?;
        pat.wait_report("three people: everyone through Janus", 60, |j| {
            j["sfu"].is_object()
                && ["Web", "Quinn"].iter().all(|name| {
                    j["peers"].as_array().is_some_and(|ps| {
                        ps.iter().any(|p| {
                            p["name"] == *name
                                && p["verification_code"].is_null()
                                && p["video"]["pattern_frames"].as_u64() > Some(20)
                        })
                    })
                })
        })?;
        wait_web(c, "the browser receives both through Janus", 60, |r| {
            r.len() == 2
                && r.iter().all(|p| {
                    p["verification_code"].is_null() && p["pattern_frames"].as_u64() > Some(20)
                })
        })
        .await?;

        // Quinn hangs up and leaves (SIGTERM).
        let mut quinn = quinn;
        ensure!(
            quinn.proc.stop(std::time::Duration::from_secs(10)),
            "Quinn ends"
        );
        let r = wait_web(c, "the browser and Pat call directly again", 60, |r| {
            r.len() == 1
                && r[0]["name"] == "Pat"
                && r[0]["verification_code"].is_string()
                && r[0]["pattern_frames"].as_u64() > Some(20)
        })
        .await?;
        pat.wait_report("Pat and the browser call directly again", 60, |j| {
            j["sfu"].is_null()
                && direct_web(j).is_some_and(|p| p["video"]["pattern_frames"].as_u64() > Some(0))
        })?;
        // Nothing went to Quinn, who left: no link is opened to someone gone from the room.
        let trace = c
            .execute("return (window.confabWeb.trace || []).join('\\n');", vec![])
            .await?;
        let trace = trace.as_str().unwrap_or_default();
        ensure!(
            !trace.contains("unknown-peer"),
            "signals to someone gone:\n{trace}"
        );
        let ours = &r[0]["verification_code"];
        let theirs = direct_web(&pat.json().unwrap_or_default()).unwrap_or_default();
        ensure!(
            theirs["verification_code"] == *ours,
            "one code on both sides: {theirs:#} / {ours}"
        );
        ensure!(r[0]["frames_out_of_order"] == 0, "{:#}", r[0]);
        let before = theirs["video"]["pattern_frames"].as_u64().unwrap_or(0);
        let moving = pat.wait_report("Pat keeps seeing the browser, directly", 20, |j| {
            direct_web(j).is_some_and(|p| p["video"]["pattern_frames"].as_u64() > Some(before + 30))
        })?;
        let p = direct_web(&moving).unwrap_or_default();
        ensure!(p["video"]["frames_out_of_order"] == 0, "{p:#}");
        Ok(())
    })
    .await;
    drop(janus);
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_calls_confab_peer_vp8() -> Result<()> {
    let _turn = one_at_a_time().await;
    if !in_loopback_netns("browser_calls_confab_peer_vp8") {
        return Ok(());
    }
    browser_and_peer("vp8").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_leaves_and_rejoins() -> Result<()> {
    let _turn = one_at_a_time().await;
    if !in_loopback_netns("browser_leaves_and_rejoins") {
        return Ok(());
    }
    use confab_engine::{Engine, EngineConfig, EngineEvent, NullSink, RtcSettings};
    let server = server().await?;
    let config = EngineConfig {
        video: confab_media::device::VideoSourceSpec::TestPattern,
        audio: confab_media::device::AudioSourceSpec::Tone(660.0),
        speaker: None,
        rtc: RtcSettings {
            udp_addrs: vec!["127.0.0.1:0".into()],
            mdns: false,
            ice_servers: vec![],
            ..EngineConfig::default().rtc
        },
        auto_accept: true,
        ..EngineConfig::default()
    };
    let (engine, mut events) = Engine::start(config, std::sync::Arc::new(NullSink))?;
    engine.join(&server.ws_url(), "leave", "Eng", None).await?;
    async fn people(
        events: &mut tokio::sync::mpsc::Receiver<EngineEvent>,
        n: usize,
        what: &str,
    ) -> Result<confab_engine::Snapshot> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(EngineEvent::State(s))) if s.participants.len() == n => return Ok(s),
                Ok(Some(_)) => continue,
                _ => anyhow::bail!("{what}: the engine never saw {n} others"),
            }
        }
    }
    let result = with_browser(async |c| {
        c.goto(&web_url(
            &server,
            "room=leave&name=Web&join=1&call=1&source=test",
        ))
        .await?;
        let s = people(&mut events, 1, "the browser joins").await?;
        ensure!(s.participants[0].name == "Web");
        wait_web(c, "the call runs", 30, |r| {
            r.first()
                .is_some_and(|p| p["pattern_frames"].as_u64() > Some(10))
        })
        .await?;
        // Closing the tab: the others see the browser leave.
        c.goto("about:blank").await?;
        people(&mut events, 0, "the browser leaves").await?;
        // And it comes back.
        c.goto(&web_url(&server, "room=leave&name=Web&join=1&source=test"))
            .await?;
        let s = people(&mut events, 1, "the browser rejoins").await?;
        ensure!(s.participants[0].name == "Web");
        Ok(())
    })
    .await;
    engine.shutdown().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_desktop_app_and_peer_in_one_call() -> Result<()> {
    let _turn = one_at_a_time().await;
    if !in_loopback_netns("browser_desktop_app_and_peer_in_one_call") {
        return Ok(());
    }
    app_browser_and_peer(None).await
}

/// The same three through a real Janus (a room whose calls always go through it): the
/// desktop app, the web client and confab-peer join the same SFU room, each publishing once
/// and receiving the two others from Janus, with no direct link between any two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_desktop_app_and_peer_through_janus() -> Result<()> {
    let _turn = one_at_a_time().await;
    if !in_lan_netns("browser_desktop_app_and_peer_through_janus") {
        return Ok(());
    }
    let janus = confab_netlab::janus::Janus::start()?;
    app_browser_and_peer(Some(&janus)).await
}

/// The desktop app, the web client and confab-peer in one call (through `janus` if given):
/// confab-peer and the browser each decode both others' patterns, in order, and confab-peer
/// hears both tones.
async fn app_browser_and_peer(janus: Option<&confab_netlab::janus::Janus>) -> Result<()> {
    let display = xvfb()?;
    let (server, bind) = match janus {
        Some(janus) => (sfu_server(janus, 0).await?, LAN_ADDRESS),
        None => (server().await?, "127.0.0.1"),
    };
    let dir = scratch(if janus.is_some() {
        "three-sfu"
    } else {
        "three"
    });
    let peer = peer_on(
        bind,
        &server.ws_url(),
        "three",
        "Pat",
        660,
        &["--duration", "120"],
        &dir,
    )?;
    let result = with_browser(async |c| {
        c.goto(&web_url(
            &server,
            "room=three&name=Web&join=1&accept=1&source=test&tone=550",
        ))
        .await?;
        wait_web(c, "the browser is in the room", 20, |r| !r.is_empty()).await?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_confab"));
        cmd.args([
            "--server",
            &server.ws_url(),
            "--room",
            "three",
            "--name",
            "App",
            "--call",
        ])
        .args(app_args(&dir.join("config")).into_iter().map(|a| {
            if a == "127.0.0.1" {
                bind.to_string()
            } else {
                a
            }
        }))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        gui_env(&mut cmd, &display);
        let _app = Proc(cmd.spawn()?);
        // confab-peer gets both the app and the browser.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let j = peer.json().unwrap_or_default();
            let peers = j["peers"].as_array().cloned().unwrap_or_default();
            let got = |name: &str, hz: f64| {
                peers.iter().any(|p| {
                    p["name"] == name
                        && p["video"]["pattern_frames"].as_u64() > Some(20)
                        && p["video"]["frames_out_of_order"] == 0
                        && tone_is(p, hz)
                })
            };
            if got("App", 440.0) && got("Web", 550.0) {
                break;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "confab-peer did not get both: {j:#}"
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        // The browser gets both the app and confab-peer.
        let r = wait_web(c, "the browser gets both", 60, |r| {
            r.len() == 2
                && r.iter().all(|p| {
                    p["pattern_frames"].as_u64() > Some(20) && p["frames_out_of_order"] == 0
                })
        })
        .await?;
        if janus.is_some() {
            // Through Janus: no direct link for anyone to verify (the browser's two, the app's
            // two through confab-peer's and the browser's views), and confab-peer publishes
            // there.
            ensure!(
                r.iter().all(|p| p["verification_code"].is_null()),
                "the browser has no direct link: {r:#?}"
            );
            let j = peer.wait_report("confab-peer sends to Janus", 20, |j| {
                j["sfu"]["send_kbps"].as_f64() > Some(20.0)
            })?;
            let peers = j["peers"].as_array().cloned().unwrap_or_default();
            ensure!(
                peers.iter().all(|p| p["verification_code"].is_null()),
                "no direct link: {j:#}"
            );
        }
        Ok(())
    })
    .await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_keeps_its_call_through_a_server_restart() -> Result<()> {
    let _turn = one_at_a_time().await;
    if !in_loopback_netns("browser_keeps_its_call_through_a_server_restart") {
        return Ok(());
    }
    // The first server on an already bound listener (no bind-drop-rebind race); the restart
    // takes the same port again, retrying while the old socket lets go.
    let first = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let listen = first.local_addr()?;
    let config = || SignalConfig {
        listen,
        test_hooks: true,
        ..Default::default()
    };
    let server = SignalServer::start_on(first, config())?;
    let dir = scratch("restart");
    let peer = peer(
        &server.ws_url(),
        "up",
        "Pat",
        660,
        &["--duration", "90"],
        &dir,
    )?;
    let result = with_browser(async |c| {
        c.goto(&web_url(
            &server,
            "room=up&name=Web&join=1&call=1&source=test",
        ))
        .await?;
        let before = wait_web(c, "the call runs", 30, |r| {
            r.first()
                .is_some_and(|p| p["pattern_frames"].as_u64() > Some(20))
        })
        .await?;
        let old_id = before[0]["id"].clone();
        server.shutdown(std::time::Duration::from_secs(2)).await;
        // Media flows peer to peer while the server is down.
        let frames = before[0]["frames"].as_u64().unwrap_or(0);
        wait_web(c, "frames keep coming without the server", 20, |r| {
            r.first()
                .is_some_and(|p| p["frames"].as_u64() > Some(frames + 30))
        })
        .await?;
        let server = start_again(listen, config()).await?;
        // Both rejoin under new ids; the browser carries its call over to the peer's new id.
        let after = wait_web(c, "the call carried over to the new id", 30, |r| {
            r.len() == 1 && r[0]["id"] != old_id && r[0]["phase"] == "connected"
        })
        .await?;
        let n = after[0]["pattern_frames"].as_u64().unwrap_or(0);
        wait_web(c, "and the pictures still come", 15, |r| {
            r.first()
                .is_some_and(|p| p["pattern_frames"].as_u64() > Some(n + 30))
        })
        .await?;
        server.shutdown(std::time::Duration::from_secs(1)).await;
        Ok(())
    })
    .await;
    drop(peer);
    result
}

/// The web client shares a real screen: `getDisplayMedia` as people get it (no test hook),
/// the screen being another tab of the browser that shows a test pattern over its whole page
/// (Chromium picks that tab by its title, where people would pick it in its picker).
/// confab-peer reads the pattern back from the shared screen, in order, at the tab's size;
/// the browser's camera stays the camera. Sharing stops with the same button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_shares_a_real_tab() -> Result<()> {
    let _turn = one_at_a_time().await;
    if !in_loopback_netns("browser_shares_a_real_tab") {
        return Ok(());
    }
    let server = server().await?;
    let dir = scratch("real-tab");
    let peer = peer(
        &server.ws_url(),
        "tab",
        "Pat",
        660,
        &["--duration", "120"],
        &dir,
    )?;
    // Without the fake picker (it hands out a made-up screen), with the tab chosen by title.
    let flags = |flags: Vec<String>| {
        flags
            .into_iter()
            .filter(|f| f != "--use-fake-ui-for-media-stream")
            .chain(["--auto-select-tab-capture-source-by-title=Pattern tab".to_string()])
            .collect()
    };
    let result = with_browser_flags(flags, async |c| {
        let call = c.window().await?;
        // The tab to share: the web client's page (for its pattern painter) under a pattern
        // over the whole page, 10 pictures a second, at the page's size, numbered from a
        // million (the call's own pictures are numbered from 0).
        let tab = c.new_window(true).await?;
        c.switch_to_window(tab.handle).await?;
        c.goto(&web_url(&server, "")).await?;
        let size = c
            .execute(
                r#"document.title = 'Pattern tab';
                const c = document.createElement('canvas');
                c.width = innerWidth; c.height = innerHeight;
                c.style.cssText = 'position:fixed;left:0;top:0;z-index:2147483647;width:' + innerWidth + 'px;height:' + innerHeight + 'px';
                document.body.appendChild(c);
                const ctx = c.getContext('2d');
                let n = 1000000;
                const paint = () => window.ConfabPattern.paint(ctx, c.width, c.height, n++,
                    Number(BigInt.asUintN(32, BigInt(window.ConfabPattern.nowUs()))));
                paint();
                setInterval(paint, 100);
                return [c.width, c.height];"#,
                vec![],
            )
            .await?;
        let (w, h) = (size[0].as_u64(), size[1].as_u64());
        c.switch_to_window(call).await?;
        c.goto(&web_url(&server, "room=tab&name=Web&join=1&call=1&source=test"))
            .await?;
        peer.wait("confab-peer gets the browser's camera", 30, |p| {
            p["video"]["pattern_frames"].as_u64() > Some(10)
        })?;
        // The share button, clicked as a person would (WebDriver's click is real input: a
        // user gesture, which getDisplayMedia asks for).
        let button = fantoccini::Locator::Id("btn-share");
        c.find(button).await?.click().await?;
        let surface = wait_js(
            c,
            "the browser shares a tab",
            15,
            "const s = window.confabWeb.screen; return s && s.getVideoTracks()[0].getSettings().displaySurface;",
        )
        .await?;
        ensure!(surface == "browser", "a tab, not a made-up screen: {surface}");
        let theirs = peer.wait("confab-peer reads the pattern on the shared tab", 30, |p| {
            p["share"]["pattern_frames"].as_u64() > Some(10)
        })?;
        let share = &theirs["share"];
        ensure!(share["frames_out_of_order"] == 0, "{share:#}");
        ensure!(
            share["last_pattern_frame"].as_u64() > Some(1_000_000),
            "the pattern tab's pictures, not another's: {share:#}"
        );
        // At the tab's size, as drawn: its width, and its page's height less the bar that
        // Chromium puts over a tab being shared (57 pixels here).
        let (w, h) = (w.unwrap_or(0), h.unwrap_or(0));
        let tall = share["height"].as_u64().unwrap_or(0);
        ensure!(
            share["width"].as_u64() == Some(w) && (h.saturating_sub(100)..=h).contains(&tall),
            "the tab at its size ({w}x{h}): {share:#}"
        );
        ensure!(
            is_the_browsers_camera(&theirs["video"]),
            "the browser's camera still the camera: {theirs:#}"
        );
        // The same button stops it.
        c.find(button).await?.click().await?;
        wait_js(
            c,
            "the browser stops sharing",
            10,
            "return !window.confabWeb.screen && document.getElementById('btn-share').getAttribute('aria-pressed') === 'false';",
        )
        .await?;
        Ok(())
    })
    .await;
    drop(peer);
    result
}

/// confab-peer stops sharing its screen while the call goes on: the share track stays (silent),
/// so the web client takes the tile down when pictures stop coming, and the faces go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_takes_a_stopped_share_down() -> Result<()> {
    let _turn = one_at_a_time().await;
    if !in_loopback_netns("browser_takes_a_stopped_share_down") {
        return Ok(());
    }
    let server = server().await?;
    let dir = scratch("share-stops");
    let peer = peer(
        &server.ws_url(),
        "stops",
        "Pat",
        660,
        &["--duration", "60", "--share", "test", "--share-for", "6"],
        &dir,
    )?;
    let result = with_browser(async |c| {
        c.goto(&web_url(
            &server,
            "room=stops&name=Web&join=1&call=1&source=test",
        ))
        .await?;
        wait_web(c, "the browser shows the shared screen", 20, |r| {
            r.first().is_some_and(|p| {
                p["share"]["shown"] == true && p["share"]["pattern_frames"].as_u64() > Some(5)
            })
        })
        .await?;
        let shown = std::time::Instant::now();
        let r = wait_web(c, "the screen is taken down once it stops", 15, |r| {
            r.first().is_some_and(|p| p["share"]["shown"] == false)
        })
        .await?;
        eprintln!(
            "taken down {:.1} s after it was first seen",
            shown.elapsed().as_secs_f64()
        );
        let faces = r[0]["pattern_frames"].as_u64().unwrap_or(0);
        wait_web(c, "and the camera's pictures still come", 10, |r| {
            r.first()
                .is_some_and(|p| p["pattern_frames"].as_u64() > Some(faces + 30))
        })
        .await?;
        Ok(())
    })
    .await;
    drop(peer);
    result
}

/// The browser's path to the server dies without a word (a network change: the connection
/// stays open, nothing passes) in a full room of two. A browser cannot see WebSocket pings:
/// the web client notices the silence by its own `ping`, connects again, and presents its
/// rejoin token, so the server frees the dead connection's seat at once and the call carries
/// over; without the token the room would stay full until the server's idle timeout (60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_notices_a_silently_dead_connection_and_gets_its_seat_back() -> Result<()> {
    let _turn = one_at_a_time().await;
    if !in_loopback_netns("browser_notices_a_silently_dead_connection_and_gets_its_seat_back") {
        return Ok(());
    }
    let server = SignalServer::start(SignalConfig {
        listen: "127.0.0.1:0".parse()?,
        test_hooks: true,
        limits: confab_signal::RoomLimits {
            room_capacity: 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let relay = confab_netlab::tcp::FreezingRelay::start(server.local_addr()).await?;
    let dir = scratch("silent-path");
    let peer = peer(
        &server.ws_url(),
        "full",
        "Pat",
        660,
        &["--duration", "90"],
        &dir,
    )?;
    let result = with_browser(async |c| {
        c.goto(&format!(
            "http://{}/?room=full&name=Web&join=1&call=1&source=test",
            relay.addr()
        ))
        .await?;
        wait_web(c, "the call runs", 30, |r| {
            r.first()
                .is_some_and(|p| p["pattern_frames"].as_u64() > Some(20))
        })
        .await?;
        let web_id = |j: &Value| j["peers"][0]["id"].as_str().map(str::to_owned);
        let old = web_id(&peer.wait_report("Pat sees the browser", 10, |j| web_id(j).is_some())?)
            .unwrap_or_default();
        relay.freeze();
        let frozen = std::time::Instant::now();
        // Quiet for 15 s, then a ping unanswered for 5 s: then a new connection, whose rejoin
        // frees the seat at once.
        let after = peer.wait_report("the browser is back under a new id", 40, |j| {
            j["peers"].as_array().is_some_and(|p| p.len() == 1)
                && web_id(j).is_some_and(|id| id != old)
        })?;
        eprintln!(
            "back {:.1} s after the path died: {}",
            frozen.elapsed().as_secs_f64(),
            web_id(&after).unwrap_or_default()
        );
        let n = wait_web(c, "the call carried over", 15, |r| {
            r.len() == 1 && r[0]["phase"] == "connected"
        })
        .await?[0]["pattern_frames"]
            .as_u64()
            .unwrap_or(0);
        wait_web(c, "and the pictures still come", 15, |r| {
            r.first()
                .is_some_and(|p| p["pattern_frames"].as_u64() > Some(n + 30))
        })
        .await?;
        Ok(())
    })
    .await;
    drop(peer);
    drop(relay);
    server.shutdown(std::time::Duration::from_secs(1)).await;
    result
}

/// A link to the web client may come from anyone: without the server's test hooks, its URL
/// never joins, calls, accepts or turns on the camera — the person presses Join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_alone_never_joins_or_calls() -> Result<()> {
    let _turn = one_at_a_time().await;
    if !in_loopback_netns("a_link_alone_never_joins_or_calls") {
        return Ok(());
    }
    let server = SignalServer::start(SignalConfig {
        listen: "127.0.0.1:0".parse()?,
        ..Default::default()
    })
    .await?;
    let result = with_browser(async |c| {
        c.goto(&web_url(
            &server,
            "room=lured&name=Victim&join=1&call=1&accept=1&source=test&password=hunter2",
        ))
        .await?;
        // The form is filled in (room, name), and stays there: nobody joined.
        // Once the page has asked the server what it allows, a URL that could act would have.
        let ready = wait_js(c, "the page configured", 10, "return window.confabWeb.configured === true && document.getElementById('f-room').value === 'lured' && document.getElementById('f-name').value === 'Victim'").await?;
        ensure!(ready == true, "{ready}");
        let state = c
            .execute(
                "return {joinScreen: !document.getElementById('join-screen').hidden, password: document.getElementById('f-password').value, stream: !!window.confabWeb.stream};",
                vec![],
            )
            .await?;
        ensure!(state["joinScreen"] == true, "still on the join screen: {state}");
        ensure!(state["password"] == "", "no password from the URL: {state}");
        ensure!(state["stream"] == false, "no camera or microphone opened: {state}");
        let (connections, rooms) = server.counts();
        ensure!(rooms == 0, "nobody joined a room ({connections} connections, {rooms} rooms)");
        Ok(())
    })
    .await;
    server.shutdown(std::time::Duration::from_secs(1)).await;
    result
}
