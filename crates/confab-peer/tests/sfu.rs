//! A room's call through an SFU: a real Janus (VideoRoom over WebSocket), a real
//! `confab-signal --sfu`, and eight `confab-peer` processes in one call. Everyone decodes
//! everyone's test pattern (frame numbers in order, still moving), and hears each of the others
//! in their own voice: each peer sends its own tone, so a feed handed to the wrong person shows.

mod common;

use common::{signal_server, Proc};
use confab_netlab::janus::Janus;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PEERS: u32 = 8;

/// A `confab-signal` whose rooms' calls go through `janus`.
fn with_janus(janus: &Janus, extra: &[&str]) -> (Child, String) {
    let args: Vec<String> = janus.signal_args().into_iter().collect();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    signal_server(&args)
}

fn tone_of(i: u32) -> u32 {
    300 + 60 * i
}

fn peer(server: &str, i: u32, stats: &Path) -> Proc {
    peer_in(server, "all-hands", i, &["--call"], stats)
}

fn peer_in(server: &str, room: &str, i: u32, extra: &[&str], stats: &Path) -> Proc {
    let mut c = Command::new(env!("CARGO_BIN_EXE_confab-peer"));
    c.args(["--server", server, "--room", room])
        .args(["--name", &format!("p{i}")])
        .args(["--audio", &format!("tone:{}", tone_of(i))])
        // Small pictures: eight peers, each decoding seven, on a 2-core machine.
        .args(["--size", "320x240", "--fps", "10", "--codec", "h264"])
        .args(["--auto-accept", "--duration", "60"])
        .args(extra)
        .args(["--stats-every", "0.5", "--stats-json"])
        .arg(stats)
        .stderr(Stdio::null());
    Proc(c.spawn().expect("confab-peer starts"))
}

fn report(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Pattern frames decoded from each of the others, by name; `None` until all seven show.
fn decoded(r: &Value) -> Option<Vec<(String, u64)>> {
    let peers = r["peers"].as_array()?;
    let v: Vec<(String, u64)> = peers
        .iter()
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_owned(),
                p["video"]["pattern_frames"].as_u64()?,
            ))
        })
        .collect();
    (v.len() == PEERS as usize - 1).then_some(v)
}

#[test]
fn eight_people_in_one_call_through_janus_see_and_hear_each_other() {
    let janus = Janus::start().expect("janus starts (cargo xtask test installs it)");
    let (signal, url) = with_janus(&janus, &[]);
    let _signal = Proc(signal);
    let dir: PathBuf = std::env::temp_dir().join(format!("confab-sfu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stats: Vec<PathBuf> = (1..=PEERS)
        .map(|i| dir.join(format!("p{i}.json")))
        .collect();
    let _peers: Vec<Proc> = (1..=PEERS)
        .map(|i| peer(&url, i, &stats[i as usize - 1]))
        .collect();

    // Everyone receives the seven others' pictures.
    let deadline = Instant::now() + Duration::from_secs(40);
    let ready = |min: u64| {
        stats.iter().all(|s| {
            report(s)
                .and_then(|r| decoded(&r))
                .is_some_and(|d| d.iter().all(|(_, n)| *n >= min))
        })
    };
    while !ready(20) {
        assert!(
            Instant::now() < deadline,
            "not everyone decodes everyone within 40 s: {:#?}\njanus: {}",
            stats.iter().map(|s| report(s)).collect::<Vec<_>>(),
            janus.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before: Vec<Vec<(String, u64)>> = stats
        .iter()
        .map(|s| decoded(&report(s).unwrap()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(5));

    for (i, s) in stats.iter().enumerate() {
        let me = format!("p{}", i + 1);
        let r = report(s).unwrap();
        let peers = r["peers"].as_array().unwrap();
        let mut names: Vec<&str> = peers.iter().filter_map(|p| p["name"].as_str()).collect();
        names.sort_unstable();
        let mut want: Vec<String> = (1..=PEERS)
            .map(|j| format!("p{j}"))
            .filter(|n| *n != me)
            .collect();
        want.sort_unstable();
        assert_eq!(
            names, want,
            "{me} is in a call with the seven others: {r:#}"
        );
        for p in peers {
            let name = p["name"].as_str().unwrap();
            let v = &p["video"];
            // The pictures are the sender's pattern, in order, and still moving.
            assert_eq!(v["frames_out_of_order"], 0, "{me} from {name}: {v:#}");
            // A frame can be lost under this machine's load (eight peers and Janus on two
            // cores): a decode error or two, recovered from by a keyframe, is allowed.
            assert!(
                v["decode_errors"].as_u64().unwrap() <= 2,
                "{me} from {name}: {v:#}"
            );
            let was = before[i].iter().find(|(n, _)| n == name).unwrap().1;
            let now = v["pattern_frames"].as_u64().unwrap();
            assert!(
                now >= was + 15,
                "{me} from {name}: {was} → {now} frames in 5 s at 10 fps: {p:#}"
            );
            // Through an SFU there is no end-to-end link to verify.
            assert!(p["verification_code"].is_null(), "{me} from {name}");
        }
    }
    // Each hears each of the others in their own voice: the tone that person sends, never
    // another's (a feed handed to the wrong person). A reading can catch a moment of silence
    // on this loaded machine (the jitter buffer refilling), so each pair gets a few seconds.
    for (i, s) in stats.iter().enumerate() {
        let me = format!("p{}", i + 1);
        for j in (1..=PEERS).filter(|j| *j as usize != i + 1) {
            let name = format!("p{j}");
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let r = report(s).unwrap();
                let p = r["peers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == name.as_str())
                    .cloned()
                    .unwrap();
                let hz = p["audio"]["tone_hz"].as_f64();
                let near = |hz: f64, k: u32| (hz - tone_of(k) as f64).abs() < 15.0;
                if let Some(hz) = hz {
                    if near(hz, j) {
                        break;
                    }
                    // Another person's voice is a feed handed to the wrong person; a reading
                    // between voices is a moment of a refilling jitter buffer (read again).
                    let other = (1..=PEERS).find(|k| *k != j && near(hz, *k));
                    assert!(
                        other.is_none(),
                        "{me} hears {name} in p{}'s voice ({hz} Hz): {p:#}",
                        other.unwrap_or_default()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "{me} does not hear {name} at {} Hz within 5 s (last {hz:?}): {p:#}",
                    tone_of(j)
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Waits up to 30 s for `f`; the peers' reports say why when it does not come.
fn wait_until(stats: &[PathBuf], what: &str, f: &dyn Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} within 30 s: {:#?}",
            stats.iter().map(|s| report(s)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The frames decoded from `name` in a report, if it lists them.
fn frames_from(r: &Value, name: &str) -> Option<u64> {
    r["peers"].as_array()?.iter().find(|p| p["name"] == name)?["video"]["pattern_frames"].as_u64()
}

/// A call of two runs peer to peer; a third person joins the room, which makes it larger than
/// the server's `--sfu-above 2`: the call moves to the SFU, everyone receives everyone through
/// it (a shared screen included), and the first two never stop seeing each other for long.
/// When the third leaves, the two call directly again, with their verification code.
#[test]
fn a_call_moves_to_the_sfu_when_the_room_grows_past_the_threshold() {
    let janus = Janus::start().expect("janus starts (cargo xtask test installs it)");
    let (signal, url) = with_janus(&janus, &["--sfu-above", "2"]);
    let _signal = Proc(signal);
    let dir: PathBuf = std::env::temp_dir().join(format!("confab-sfu-grow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stats: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("p{i}.json"))).collect();
    // p1 also shares a (test) screen, on a track of its own.
    let _p1 = peer_in(&url, "grows", 1, &["--call", "--share", "test"], &stats[0]);
    let _p2 = peer_in(&url, "grows", 2, &[], &stats[1]);
    let wait = |what: &str, f: &dyn Fn() -> bool| wait_until(&stats, what, f);
    // Two people: peer to peer, with a verification code and nothing sent to the SFU.
    wait("p2 sees p1, directly", &|| {
        report(&stats[1]).is_some_and(|r| {
            frames_from(&r, "p1").is_some_and(|n| n > 20)
                && r["peers"][0]["verification_code"].is_string()
                && r["sfu"].is_null()
        })
    });
    let p3 = peer_in(&url, "grows", 3, &["--call"], &stats[2]);
    // Three people in a room for two: everyone moves to the SFU.
    wait("everyone receives everyone through the SFU", &|| {
        stats.iter().all(|s| {
            report(s).is_some_and(|r| {
                r["sfu"].is_object()
                    && r["peers"].as_array().is_some_and(|ps| {
                        ps.len() == 2
                            && ps.iter().all(|p| {
                                p["verification_code"].is_null()
                                    && p["video"]["pattern_frames"].as_u64() > Some(20)
                            })
                    })
            })
        })
    });
    // p1's camera and shared screen stay apart through Janus (which renames every track): p3,
    // who only ever received p1 through the SFU, gets both, each at its own size.
    wait("p3 gets p1's shared screen through the SFU", &|| {
        report(&stats[2]).is_some_and(|r| {
            r["peers"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["name"] == "p1"
                        && p["share"]["pattern_frames"].as_u64() > Some(5)
                        && p["share"]["width"] == 1280
                        && p["video"]["width"] == 320
                })
            })
        })
    });
    // ...and p1 and p2 still see each other, moving, in order.
    let before = frames_from(&report(&stats[1]).unwrap(), "p1").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let r = report(&stats[1]).unwrap();
    let after = frames_from(&r, "p1").unwrap();
    assert!(
        after >= before + 15,
        "p2 from p1: {before} → {after} in 3 s: {r:#}"
    );
    for s in &stats {
        let r = report(s).unwrap();
        for p in r["peers"].as_array().unwrap() {
            assert_eq!(p["video"]["frames_out_of_order"], 0, "{r:#}");
        }
        assert!(
            r["sfu"]["send_kbps"].as_f64().unwrap() > 20.0,
            "media goes to the SFU: {r:#}"
        );
    }

    // The third hangs up and leaves (SIGTERM): a room of two again, and after 5 s the call
    // goes back to a direct link (its verification code shows again), where the two keep
    // seeing each other, in order.
    let mut p3 = p3;
    let pid = p3.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while p3.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "p3 ends on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pairs = [(&stats[0], "p2"), (&stats[1], "p1")];
    // The direct link's entry for `of` (through the SFU there is no code).
    let direct = |r: &Value, of: &str| -> Option<Value> {
        let ps = r["peers"].as_array()?;
        ps.iter()
            .find(|p| p["name"] == of && p["verification_code"].is_string())
            .cloned()
    };
    wait_until(&stats[..2], "p1 and p2 call directly again", &|| {
        pairs.iter().all(|(s, of)| {
            report(s).is_some_and(|r| {
                r["sfu"].is_null()
                    && direct(&r, of)
                        .is_some_and(|p| p["video"]["pattern_frames"].as_u64() > Some(0))
            })
        })
    });
    let frames = |s: &PathBuf, of: &str| {
        let r = report(s).unwrap();
        direct(&r, of).unwrap()["video"]["pattern_frames"]
            .as_u64()
            .unwrap()
    };
    let before: Vec<u64> = pairs.iter().map(|(s, of)| frames(s, of)).collect();
    std::thread::sleep(Duration::from_secs(2));
    for ((s, of), before) in pairs.iter().zip(before) {
        let after = frames(s, of);
        assert!(
            after >= before + 10,
            "{of}, directly: {before} → {after} in 2 s"
        );
    }
    let (a, b) = (report(&stats[0]).unwrap(), report(&stats[1]).unwrap());
    let code = |r: &Value, of: &str| direct(r, of).unwrap()["verification_code"].clone();
    assert_eq!(code(&a, "p2"), code(&b, "p1"), "one code on both sides");
    for r in [&a, &b] {
        for p in r["peers"].as_array().unwrap() {
            assert_eq!(p["video"]["frames_out_of_order"], 0, "{r:#}");
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

/// The room's SFU cannot be reached: the call does not hang in "connecting"; each person is
/// told why in words, and the call ends.
#[test]
fn an_unreachable_sfu_is_said_in_words() {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let sfu = format!("janus+ws://127.0.0.1:{port}");
    let (signal, url) = signal_server(&["--sfu", &sfu, "--sfu-above", "0"]);
    let _signal = Proc(signal);
    let run = |name: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_confab-peer"))
            .args(["--server", &url, "--room", "no-sfu", "--name", name])
            .args(["--size", "320x240", "--fps", "10", "--duration", "6"])
            .args(["--auto-accept"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("confab-peer starts")
    };
    let a = run("a", &["--call"]);
    let b = run("b", &[]);
    for p in [a, b] {
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "cannot reach the media server at ws://127.0.0.1:{port}"
            )),
            "{err}"
        );
    }
}

/// A call through the SFU outlives a restart of the signaling server: both people come back
/// under new ids, publish again under them (a feed is taken only under its publisher's id), and
/// see each other again through Janus.
#[test]
fn a_call_through_the_sfu_carries_over_a_signaling_restart() {
    let janus = Janus::start().expect("janus starts (cargo xtask test installs it)");
    let extra = ["--sfu-above", "0", "--sfu-secret", "a-test-secret-of-16+"];
    let (signal, url) = with_janus(&janus, &extra);
    let mut signal = Proc(signal);
    let dir: PathBuf =
        std::env::temp_dir().join(format!("confab-sfu-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stats: Vec<PathBuf> = (1..=2).map(|i| dir.join(format!("p{i}.json"))).collect();
    let _p1 = peer_in(&url, "restart", 1, &["--call"], &stats[0]);
    let _p2 = peer_in(&url, "restart", 2, &[], &stats[1]);
    // Pictures numbered past `min` (the sender's count): a link that carries over to the new
    // id keeps what it saw before.
    let sees = |s: &Path, name: &str, id_not: Option<&str>, min: u64| {
        report(s).is_some_and(|r| {
            r["sfu"].is_object()
                && r["peers"].as_array().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        p["name"] == name
                            && id_not.is_none_or(|old| p["id"] != old)
                            && p["video"]["last_pattern_frame"].as_u64() > Some(min)
                    })
                })
        })
    };
    let wait = |what: &str, f: &dyn Fn() -> bool| wait_until(&stats, what, f);
    wait("both see each other through Janus", &|| {
        sees(&stats[0], "p2", None, 20) && sees(&stats[1], "p1", None, 20)
    });
    let seen = |s: &Path| {
        let r = report(s).unwrap();
        let p = &r["peers"][0];
        let last = p["video"]["last_pattern_frame"].as_u64().unwrap_or(0);
        (p["id"].as_str().unwrap().to_owned(), last)
    };
    let (old_p1, p1_last) = seen(&stats[1]);
    let (old_p2, p2_last) = seen(&stats[0]);
    // The server goes away and comes back on the same address.
    let _ = signal.0.kill();
    let _ = signal.0.wait();
    let listen = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_owned();
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(|p| p.parent()).unwrap();
    let restarted = Command::new(bin.join("confab-signal"))
        .args(["--listen", &listen])
        .args(janus.signal_args())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _signal = Proc(restarted);
    wait("both see each other again, under their new ids", &|| {
        sees(&stats[0], "p2", Some(&old_p2), p2_last + 20)
            && sees(&stats[1], "p1", Some(&old_p1), p1_last + 20)
    });
    std::fs::remove_dir_all(dir).ok();
}

/// Chat rides direct links; a call through the SFU has none. Saying something there is refused
/// in words (not dropped without a trace).
#[test]
fn chat_in_a_call_through_the_sfu_is_refused_in_words() {
    let janus = Janus::start().expect("janus starts (cargo xtask test installs it)");
    let (signal, url) = with_janus(&janus, &["--sfu-above", "0"]);
    let _signal = Proc(signal);
    let run = |name: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_confab-peer"))
            .args(["--server", &url, "--room", "sfu-chat", "--name", name])
            .args(["--size", "320x240", "--fps", "10", "--duration", "8"])
            .args(["--auto-accept"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("confab-peer starts")
    };
    let a = run("a", &["--call", "--say", "hello"]);
    let b = run("b", &[]);
    let out = a.wait_with_output().unwrap();
    let _ = b.wait_with_output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "could not say \"hello\": no chat in this call: it goes through the media server"
        ),
        "{err}"
    );
}
