//! A peer given the nodes of a cluster (`--server` twice) moves to the next node when its node
//! is killed, and the call goes on: all as processes, with a real `redis-server` joining two
//! real `confab-signal` nodes; once with direct links, once through a real Janus.

mod common;

use common::{signal_server, Proc};
use confab_netlab::janus::Janus;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn redis() -> (Proc, String) {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs (cargo xtask test installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Proc(child), format!("redis://127.0.0.1:{port}"))
}

/// A confab-signal node of the cluster (its calls through `janus`, if given).
fn node(redis: &str, janus: Option<&Janus>) -> (Proc, String) {
    let mut args: Vec<String> = vec!["--redis".into(), redis.into()];
    if let Some(j) = janus {
        args.extend(j.signal_args());
        // Every node keys its members' VideoRoom rooms on the same secret.
        args.extend(["--sfu-above", "0", "--sfu-secret", "a-test-secret-of-16+"].map(String::from));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (child, url) = signal_server(&args);
    (Proc(child), url)
}

fn peer(servers: &[&str], name: &str, extra: &[&str], stats: &Path) -> Proc {
    let mut c = Command::new(env!("CARGO_BIN_EXE_confab-peer"));
    for s in servers {
        c.args(["--server", s]);
    }
    c.args(["--room", "failover", "--name", name])
        .args([
            "--size",
            "320x240",
            "--codec",
            "h264",
            "--stats-every",
            "0.2",
            "--stats-json",
        ])
        .arg(stats)
        .args(extra)
        .stderr(Stdio::inherit());
    Proc(c.spawn().expect("confab-peer starts"))
}

/// The peer's report as it rewrites it every second (a half-written one reads as `None`).
fn report(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The one remote peer in a report: its id and the frames decoded from it.
fn remote(r: &Value) -> Option<(String, u64)> {
    let p = r["peers"].as_array()?.first()?;
    Some((
        p["id"].as_str()?.to_owned(),
        p["video"]["frames_decoded"].as_u64()?,
    ))
}

fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_node_moves_its_people_to_the_next_and_the_call_goes_on() {
    killed_node(None);
}

/// The same through an SFU: Al's media keeps reaching Bea through Janus while Al moves.
#[test]
fn a_killed_node_moves_its_people_to_the_next_and_the_sfu_call_goes_on() {
    let janus = Janus::start().expect("janus starts (cargo xtask test installs it)");
    killed_node(Some(&janus));
}

fn killed_node(janus: Option<&Janus>) {
    let (_redis, redis_url) = redis();
    let (n1, url1) = node(&redis_url, janus);
    let (_n2, url2) = node(&redis_url, janus);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "confab-failover-{}-{}",
        std::process::id(),
        janus.is_some()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (sa, sb) = (dir.join("a.json"), dir.join("b.json"));
    // Bea on the second node; Al lists both, so joins the first.
    // Direct links on loopback; Janus leaves loopback addresses out of its candidates.
    let bind: &[&str] = if janus.is_some() {
        &[]
    } else {
        &["--bind", "127.0.0.1"]
    };
    let args = |more: &[&'static str]| [more, bind].concat();
    let mut b = peer(
        &[&url2],
        "Bea",
        &args(&["--auto-accept", "--duration", "25"]),
        &sb,
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut a = peer(
        &[&url1, &url2],
        "Al",
        &args(&["--call", "--duration", "20"]),
        &sa,
    );

    // The call runs across the two nodes.
    let a_id = wait_for("Al's first report", Duration::from_secs(20), || {
        report(&sa)?["id"].as_str().map(str::to_owned)
    });
    wait_for("Bea decodes Al", Duration::from_secs(20), || {
        remote(&report(&sb)?).filter(|(id, n)| *id == a_id && *n > 30)
    });

    // Al's node dies without a word.
    let mut n1 = n1;
    n1.0.kill().unwrap();
    let _ = n1.0.wait();
    let killed = Instant::now();
    let (_, at_kill) = remote(&report(&sb).unwrap()).unwrap();

    // Al rejoins through the second node: Bea's link to Al now carries Al's new id.
    let (new_id, _) = wait_for(
        "Al back in the room under a new id",
        Duration::from_secs(10),
        || remote(&report(&sb)?).filter(|(id, _)| *id != a_id),
    );
    let rejoin = killed.elapsed();
    assert!(rejoin < Duration::from_secs(3), "rejoined after {rejoin:?}");
    assert!(!new_id.is_empty());

    // Media never stopped: Bea kept decoding Al throughout (30 fps test pattern).
    // (A link replaced meanwhile would count from nothing again.)
    let (_, after) = remote(&report(&sb).unwrap()).unwrap();
    let secs = killed.elapsed().as_secs_f64();
    let since = after.saturating_sub(at_kill);
    eprintln!("{since} frames from Al in {secs:.1} s since the kill (rejoined after {rejoin:?})");
    assert!(
        since as f64 >= secs * 15.0,
        "{since} frames from Al in {secs:.1} s since the kill (of {after} on Bea's link for him)"
    );
    assert!(a.0.wait().unwrap().success());
    assert!(b.0.wait().unwrap().success());
    // Both ends of the call, to the end: no picture froze for long.
    for (path, who) in [(&sa, "Al"), (&sb, "Bea")] {
        let r = report(path).unwrap();
        let v = &r["peers"][0]["video"];
        eprintln!(
            "{who}: {} pattern frames, {} ms frozen",
            v["pattern_frames"], v["freeze_ms_total"]
        );
        assert!(v["pattern_frames"].as_u64().unwrap() > 300, "{who}: {r:#}");
        assert!(
            v["freeze_ms_total"].as_f64().unwrap() < 1000.0,
            "{who}: {r:#}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}
