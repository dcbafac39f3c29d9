//! confab-peer processes on a real (kernel) network: two homes behind a masquerading NAT that
//! reach each other only through a real coturn on the "internet" side, where confab-signal
//! runs too (`confab_netlab::kernel`). Then one home's line dies while it has another, then
//! the other home's: the call carries on over each new path without a new call; and when a
//! line drops for 10 s and comes back, the call comes back within seconds. Needs root, iproute2, nftables and
//! coturn (`cargo xtask test` installs them); says why when it skips.

mod common;

use confab_netlab::kernel::{KernelError, KernelLab, LabProcess, Netns, Traffic, TurnServer};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// confab-signal inside `ns`, listening on `ip`; its URL.
fn signal_in(ns: &Netns, ip: IpAddr) -> (LabProcess, String) {
    let mut cmd = ns.command(common::built("confab-signal"));
    cmd.args(["--listen", &format!("{ip}:0")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut p = ns.spawn(cmd).expect("confab-signal starts");
    let mut line = String::new();
    BufReader::new(p.child().stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("confab-signal says where it listens");
    let url = line.split_whitespace().last().expect("a URL").to_owned();
    (p, url)
}

/// A confab-peer in `ns` (gathering on every interface it has), sending a `size` test
/// pattern, with live stats at `stats`.
fn peer_in(ns: &Netns, size: &str, args: &[&str], stats: &Path) -> LabProcess {
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_confab-peer"));
    cmd.args(["--room", "home"])
        .args(["--size", size, "--duration", "60"])
        .args(["--stats-every", "0.5", "--stats-json"])
        .arg(stats)
        .args(args)
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(stats.with_extension("log")).map_or(Stdio::null(), Stdio::from),
        );
    ns.spawn(cmd).expect("confab-peer starts")
}

/// One test at a time: each runs four processes on a machine that may have two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A fresh folder for one test's stats and logs.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("confab-kernel-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes a passed test's folder, unless `CONFAB_KEEP_LAB` is set (to read the peers' logs:
/// run with `RUST_LOG`, which the peers inherit).
fn done_with(dir: PathBuf) {
    if std::env::var_os("CONFAB_KEEP_LAB").is_some() {
        eprintln!("kept {}", dir.display());
    } else {
        std::fs::remove_dir_all(dir).ok();
    }
}

fn read(stats: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(stats).ok()?).ok()
}

/// Waits until the live report about the other person satisfies `f`; why not, in words.
fn wait_for(
    stats: &Path,
    what: &str,
    secs: u64,
    f: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let last = read(stats);
        if let Some(p) = last.as_ref().map(|j| &j["peers"][0]) {
            if f(p) {
                return Ok(p.clone());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{what}: not within {secs} s; last report {last:#?}\nits log ends: {}",
                log_tail(stats)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The call's setup time as first reported to the peer with these stats: the same after a new
/// path means the same call.
fn setup_of(setups: &[(PathBuf, Value)], stats: &Path) -> Value {
    setups
        .iter()
        .find(|(p, _)| p == stats)
        .map(|(_, v)| v.clone())
        .expect("a peer of the test")
}

/// The end of a peer's log (its stderr, beside its stats).
fn log_tail(stats: &Path) -> String {
    let text = std::fs::read_to_string(stats.with_extension("log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn frames(p: &Value) -> u64 {
    p["video"]["pattern_frames"].as_u64().unwrap_or(0)
}

fn hears(p: &Value, hz: f64) -> bool {
    p["audio"]["tone_hz"]
        .as_f64()
        .is_some_and(|t| (t - hz).abs() < 5.0)
}

#[test]
fn homes_behind_a_nat_call_through_turn_and_survive_a_new_path() {
    let test = "homes_behind_a_nat_call_through_turn_and_survive_a_new_path";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(lab) = KernelLab::for_test(test) else {
        return;
    };
    let nat = lab.nat().expect("the NAT lab");
    let internet = IpAddr::V4(nat.internet_addr);
    let turn = match TurnServer::start(&nat.internet, internet, 3478, "confab", "s3cret") {
        Ok(t) => t,
        Err(e @ KernelError::Unavailable(_)) => {
            eprintln!("SKIPPED {test}: {e}");
            return;
        }
        Err(e) => panic!("coturn: {e}"),
    };
    let ice = format!("turn:{internet}:3478 confab s3cret");
    let must = |r: Result<Value, String>| {
        r.unwrap_or_else(|e| panic!("{e}\ncoturn's log ends:\n{}", turn.log_tail(30)))
    };
    let (_signal, url) = signal_in(&nat.internet, internet);
    let dir = scratch("nat");
    let (sa, sb) = (dir.join("a.json"), dir.join("b.json"));
    let common = ["--server", url.as_str(), "--ice-server", ice.as_str()];
    let _b = peer_in(
        &nat.home_b,
        "320x240",
        &[
            &common[..],
            &["--name", "Bea", "--auto-accept", "--audio", "tone:880"],
        ]
        .concat(),
        &sb,
    );
    std::thread::sleep(Duration::from_millis(500));
    let _a = peer_in(
        &nat.home_a,
        "320x240",
        &[
            &common[..],
            &["--name", "Al", "--call", "--audio", "tone:440"],
        ]
        .concat(),
        &sa,
    );

    // Through the relay: the only way between the homes.
    let a = must(wait_for(&sa, "Al sees and hears Bea", 30, |p| {
        frames(p) >= 60 && hears(p, 880.0)
    }));
    let b = must(wait_for(&sb, "Bea sees and hears Al", 15, |p| {
        frames(p) >= 60 && hears(p, 440.0)
    }));
    for p in [&a, &b] {
        let n = &p["network"];
        assert!(
            n["local_candidate"] == "relay" || n["remote_candidate"] == "relay",
            "the selected pair goes through the relay: {n:#}; coturn: {}",
            turn.log_tail(20)
        );
        assert_eq!(p["video"]["frames_out_of_order"], 0, "{p:#}");
    }
    // DTLS over TURN: three flights through the relay, each a millisecond here. webrtc's
    // driver once held every packet for a relayed pair until its next timer tick (~200 ms),
    // and rtc-dtls its first flight: 1.4-1.6 s (patches/webrtc, patches/rtc-dtls).
    for p in [&a, &b] {
        let phases = &p["setup_phases"];
        let dtls = phases["connected_ms"].as_f64().unwrap_or(f64::MAX)
            - phases["ice_connected_ms"].as_f64().unwrap_or(0.0);
        assert!(
            dtls < 300.0,
            "DTLS through the relay took {dtls} ms: {phases:#}"
        );
    }
    let setups = [
        (sa.clone(), read(&sa).unwrap()["setup_ms"].clone()),
        (sb.clone(), read(&sb).unwrap()["setup_ms"].clone()),
    ];

    // Al's home gets a second line (another interface through the same NAT), then the first
    // one dies: his relay allocation, his candidates and his signaling connection with it.
    // Al made the first offer. Then the same happens to Bea, who answered it.
    let homes = [
        (&nat.home_a, "Al", &sa, &sb, "10.0.3", 880.0, 440.0),
        (&nat.home_b, "Bea", &sb, &sa, "10.0.4", 440.0, 880.0),
    ];
    for (home, who, mine, theirs, net, i_hear, they_hear) in homes {
        lab.link(
            home,
            "eth1",
            &format!("{net}.2/24"),
            &nat.nat,
            &format!("lan-{}2", who.to_lowercase()),
            &format!("{net}.1/24"),
        )
        .expect("a second path");
        home.run(
            "ip",
            [
                "route",
                "add",
                "default",
                "via",
                &format!("{net}.1"),
                "metric",
                "100",
            ],
        )
        .expect("its route");
        let before = frames(&wait_for(mine, "the count", 5, |_| true).unwrap());
        let theirs_before = frames(&wait_for(theirs, "the count", 5, |_| true).unwrap());
        let cut = Instant::now();
        home.set_link("eth0", false).expect("the first path dies");
        let back = must(wait_for(
            mine,
            &format!("pictures back at {who} over the new path"),
            60,
            |p| frames(p) > before + 10 && hears(p, i_hear),
        ));
        let took = cut.elapsed();
        eprintln!("{who}: media back over the new path {took:?} after the first one died");
        // ~2 s here, of which ~0.5 s is the 10 pictures counted. Within a second the engine
        // sees that the system would now reach the server, and the relay, from another
        // address: it connects to the server again at once and restarts ICE (whichever side
        // made the first offer) as soon as it has rejoined. Without that watch it took ~9.4 s
        // (ICE calls the path broken after 4-5 s, then the signaling connection is checked).
        assert!(took < Duration::from_secs(8), "{who}: {took:?}");
        must(wait_for(
            theirs,
            &format!("{who}'s pictures back on the other side"),
            15,
            |p| frames(p) > theirs_before + 10 && hears(p, they_hear),
        ));
        let j = read(mine).unwrap();
        assert_eq!(
            j["setup_ms"],
            setup_of(&setups, mine),
            "the same call: {j:#}"
        );
        assert_eq!(back["video"]["frames_out_of_order"], 0, "{back:#}");
    }

    // Al's only line goes away for 10 s (a Wi-Fi that drops), then comes back. Meanwhile his
    // client's attempts to reach the server fail at once and it waits longer and longer
    // between them (8 s by the end); it watches the way to the server while it waits, and
    // tries again as soon as there is one. The call, broken for 10 s, comes back whole.
    let before = frames(&wait_for(&sa, "the count", 5, |_| true).unwrap());
    nat.home_a.set_link("eth1", false).expect("the line drops");
    std::thread::sleep(Duration::from_secs(10));
    nat.home_a.set_link("eth1", true).expect("the line is back");
    let restored = Instant::now();
    nat.home_a
        .run("ip", ["route", "add", "default", "via", "10.0.3.1"])
        .expect("its route again");
    let back = must(wait_for(
        &sa,
        "pictures back at Al after the outage",
        30,
        |p| frames(p) > before + 10 && hears(p, 880.0),
    ));
    let took = restored.elapsed();
    eprintln!("Al: media back {took:?} after his line came back");
    // Without the watch the next attempt came only at the end of an 8 s wait.
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(back["video"]["frames_out_of_order"], 0, "{back:#}");
    assert_eq!(read(&sa).unwrap()["setup_ms"], setup_of(&setups, &sa));
    done_with(dir);
}

fn concealed_ms(p: &Value) -> f64 {
    p["audio"]["concealed_ms"].as_f64().unwrap_or(0.0)
}

/// Two confab-peers on one line that the kernel makes bad in turn: 5 % random loss both
/// ways, then a 300 kbit/s cap each way, then 5 s of nothing at all. Through each the call
/// goes on: pictures in order and moving, the tone heard; after the blackout, pictures are
/// back within seconds. The same conditions as the in-process lab's tests, on real sockets
/// and the kernel's own queues (tbf tail drop, nftables loss).
#[test]
fn a_call_over_a_real_bad_line_loss_a_cap_and_a_blackout() {
    let test = "a_call_over_a_real_bad_line_loss_a_cap_and_a_blackout";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(lab) = KernelLab::for_test(test) else {
        return;
    };
    let pair = lab.pair().expect("two hosts on one line");
    let (_signal, url) = signal_in(&pair.a, IpAddr::V4(pair.a_addr));
    let dir = scratch("bad-line");
    let (sa, sb) = (dir.join("a.json"), dir.join("b.json"));
    let _b = peer_in(
        &pair.b,
        "1280x720",
        &[
            "--server",
            &url,
            "--name",
            "Bea",
            "--auto-accept",
            "--audio",
            "tone:880",
        ],
        &sb,
    );
    std::thread::sleep(Duration::from_millis(500));
    let _a = peer_in(
        &pair.a,
        "1280x720",
        &[
            "--server", &url, "--name", "Al", "--call", "--audio", "tone:440",
        ],
        &sa,
    );
    let must = |r: Result<Value, String>| r.unwrap_or_else(|e| panic!("{e}"));
    must(wait_for(&sa, "Al sees and hears Bea", 30, |p| {
        frames(p) >= 30 && hears(p, 880.0)
    }));

    // 5 % of the packets lost each way (media only: TCP signaling is spared), for 8 s.
    let loss = [
        pair.a.random_loss(0.05, Traffic::Udp).expect("loss at a"),
        pair.b.random_loss(0.05, Traffic::Udp).expect("loss at b"),
    ];
    let start = must(wait_for(&sa, "the count", 5, |_| true));
    std::thread::sleep(Duration::from_secs(8));
    let end = must(wait_for(&sa, "the count", 5, |_| true));
    let moved = frames(&end) - frames(&start);
    eprintln!(
        "5 % loss: {moved} pictures in 8 s, {} freezes, {:.0} ms of audio concealed",
        end["video"]["freezes"].as_u64().unwrap_or(0)
            - start["video"]["freezes"].as_u64().unwrap_or(0),
        concealed_ms(&end) - concealed_ms(&start)
    );
    assert!(
        moved >= 80,
        "at least 10 fps under loss: {moved} in 8 s; {end:#}"
    );
    assert!(hears(&end, 880.0), "{end:#}");
    assert_eq!(end["video"]["frames_out_of_order"], 0, "{end:#}");
    // Either way: a packet its retransmission brought back counts as received (as in the
    // browsers' stats), so one direction's reading can come out under 1 % (0.9 once).
    let seen = ["loss_pct", "send_loss_pct"]
        .map(|k| end["network"][k].as_f64().unwrap_or(0.0))
        .into_iter()
        .fold(0.0, f64::max);
    assert!(seen > 1.0, "the loss is seen: {end:#}");
    for rule in loss {
        rule.remove().expect("the loss ends");
    }

    // A 300 kbit/s line each way with a 200 ms queue: the estimate comes under it, the
    // pictures keep moving and the tone stays whole.
    for ns in [&pair.a, &pair.b] {
        ns.rate_cap("eth0", 300_000, 200).expect("a cap");
    }
    std::thread::sleep(Duration::from_secs(6));
    let start = must(wait_for(&sa, "the count", 5, |_| true));
    std::thread::sleep(Duration::from_secs(6));
    let end = must(wait_for(&sa, "the count", 5, |_| true));
    let moved = frames(&end) - frames(&start);
    let concealed = concealed_ms(&end) - concealed_ms(&start);
    let sent = must(wait_for(&sb, "Bea's view", 5, |_| true));
    eprintln!(
        "300 kbit/s: {moved} pictures in 6 s, {concealed:.0} ms of audio concealed, Bea sends {:.0} kbit/s, estimates {:?}",
        sent["network"]["send_kbps"].as_f64().unwrap_or(0.0),
        sent["network"]["estimate_kbps"]
    );
    assert!(
        moved >= 60,
        "at least 10 fps at 300 kbit/s: {moved} in 6 s; {end:#}"
    );
    assert!(
        concealed < 600.0,
        "clean audio: {concealed} ms of 6 s concealed; {end:#}"
    );
    assert!(hears(&end, 880.0), "{end:#}");
    assert!(
        sent["network"]["send_kbps"].as_f64().unwrap_or(f64::MAX) <= 310.0,
        "Bea sends within the line: {sent:#}"
    );
    assert_eq!(end["video"]["frames_out_of_order"], 0, "{end:#}");
    for ns in [&pair.a, &pair.b] {
        ns.clear_rate_cap("eth0").expect("the cap lifted");
    }

    // 5 s of nothing at all (signaling too), then the line is back.
    let before = frames(&must(wait_for(&sa, "the count", 5, |_| true)));
    let dark = [
        pair.a.blackout(Traffic::All).expect("dark at a"),
        pair.b.blackout(Traffic::All).expect("dark at b"),
    ];
    std::thread::sleep(Duration::from_secs(5));
    for rule in dark {
        rule.remove().expect("the line is back");
    }
    let lit = Instant::now();
    let back = must(wait_for(
        &sa,
        "pictures and tone back after the blackout",
        20,
        |p| frames(p) > before + 5 && hears(p, 880.0),
    ));
    let took = lit.elapsed();
    eprintln!("5 s blackout: pictures back {took:?} after the line");
    // The issue asks 2 s; this run's budget allows for a busy machine.
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(back["video"]["frames_out_of_order"], 0, "{back:#}");
    done_with(dir);
}
