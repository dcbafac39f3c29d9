//! The kernel lab with real processes in real namespaces: a tbf cap and nft loss measured
//! with UDP between two namespaces, and two homes behind a masquerading NAT that reach each
//! other only through coturn. Needs root; each test says why when it skips.

use anyhow::{bail, ensure, Context, Result};
use confab_netlab::kernel::{KernelLab, LabProcess, Netns, Traffic, TurnServer};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdout, Stdio};

const PROBE: &str = env!("CARGO_BIN_EXE_netlab-probe");

/// A probe process in a namespace, with its JSON lines.
struct Probe {
    proc: LabProcess,
    lines: BufReader<ChildStdout>,
}

impl Probe {
    fn start(ns: &Netns, args: &[&str]) -> Result<Self> {
        let mut cmd = ns.command(PROBE);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut proc = ns.spawn(cmd)?;
        let out = proc.child().stdout.take().context("probe stdout")?;
        Ok(Probe {
            proc,
            lines: BufReader::new(out),
        })
    }

    /// The next JSON line (the probes bound every wait of theirs, so this ends).
    fn next(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self.lines.read_line(&mut line)?;
        ensure!(n > 0, "the probe ended without answering");
        let v: Value = serde_json::from_str(&line).with_context(|| format!("line {line:?}"))?;
        if let Some(e) = v.get("error") {
            bail!("probe error: {e}");
        }
        Ok(v)
    }

    fn send(&mut self, v: &Value) -> Result<()> {
        let stdin = self.proc.child().stdin.as_mut().context("probe stdin")?;
        writeln!(stdin, "{v}")?;
        stdin.flush()?;
        Ok(())
    }
}

/// Runs a probe to completion; its one JSON line.
fn probe_once(ns: &Netns, args: &[&str]) -> Result<Value> {
    let mut p = Probe::start(ns, args)?;
    p.next()
}

/// A UDP sink in `ns` at `bind`: ready to receive when this returns.
fn sink(ns: &Netns, bind: &str) -> Result<Probe> {
    let mut p = Probe::start(ns, &["udp-sink", "--bind", bind, "--idle-ms", "700"])?;
    p.next().context("sink ready")?;
    Ok(p)
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

#[test]
fn tbf_cap_holds_a_udp_blast_to_the_rate() -> Result<()> {
    let Some(lab) = KernelLab::for_test("tbf_cap_holds_a_udp_blast_to_the_rate") else {
        return Ok(());
    };
    let pair = lab.pair()?;
    pair.a.rate_cap("eth0", 1_000_000, 100)?;
    let mut s = sink(&pair.b, "10.0.0.2:5000")?;
    // 3 Mbit/s for 2 s into a 1 Mbit/s cap.
    let sent = probe_once(
        &pair.a,
        &[
            "udp-blast",
            "--to",
            "10.0.0.2:5000",
            "--rate-bps",
            "3000000",
            "--size",
            "1000",
            "--count",
            "750",
        ],
    )?;
    let got = s.next()?;
    let rate = num(&got, "bytes") * 8.0 / num(&got, "span_s");
    eprintln!("tbf 1 Mbit/s: sent {sent}, received {got}, {rate:.0} bit/s of payload");
    assert!(
        rate <= 1_000_000.0,
        "{rate:.0} bit/s through a 1 Mbit/s cap"
    );
    assert!(rate >= 800_000.0, "only {rate:.0} bit/s");
    assert!(
        num(&got, "packets") < 400.0,
        "most of 750 must be dropped: {got}"
    );

    // Lifted: the same blast arrives whole.
    pair.a.clear_rate_cap("eth0")?;
    let mut s = sink(&pair.b, "10.0.0.2:5001")?;
    probe_once(
        &pair.a,
        &[
            "udp-blast",
            "--to",
            "10.0.0.2:5001",
            "--rate-bps",
            "3000000",
            "--size",
            "1000",
            "--count",
            "750",
        ],
    )?;
    let got = s.next()?;
    assert_eq!(num(&got, "distinct"), 750.0, "{got}");
    Ok(())
}

#[test]
fn nft_random_loss_and_blackout_are_measured() -> Result<()> {
    let Some(lab) = KernelLab::for_test("nft_random_loss_and_blackout_are_measured") else {
        return Ok(());
    };
    let pair = lab.pair()?;
    let blast = |port: &str| -> Result<Value> {
        let mut s = sink(&pair.b, &format!("10.0.0.2:{port}"))?;
        probe_once(
            &pair.a,
            &[
                "udp-blast",
                "--to",
                &format!("10.0.0.2:{port}"),
                "--rate-bps",
                "2000000",
                "--size",
                "200",
                "--count",
                "2000",
            ],
        )?;
        s.next()
    };

    let loss = pair.b.random_loss(0.10, Traffic::Udp)?;
    let got = blast("6000")?;
    let measured = 1.0 - num(&got, "distinct") / 2000.0;
    eprintln!("nft 10 % loss: measured {:.1} %", measured * 100.0);
    // Binomial σ ≈ 0.7 % at n = 2000.
    assert!((0.07..=0.13).contains(&measured), "measured {measured}");
    loss.remove()?;
    assert_eq!(
        num(&blast("6001")?, "distinct"),
        2000.0,
        "loss rule removed"
    );

    let dark = pair.b.blackout(Traffic::Udp)?;
    // Nothing arrives: the sink gives up after its idle time with zero packets... which it
    // only measures from the first packet, so bound it by max-secs instead.
    let mut s = Probe::start(
        &pair.b,
        &["udp-sink", "--bind", "10.0.0.2:6002", "--max-secs", "2"],
    )?;
    s.next()?;
    probe_once(
        &pair.a,
        &[
            "udp-blast",
            "--to",
            "10.0.0.2:6002",
            "--rate-bps",
            "2000000",
            "--size",
            "200",
            "--count",
            "500",
        ],
    )?;
    assert_eq!(num(&s.next()?, "packets"), 0.0, "blackout lets nothing in");
    drop(dark); // dropping the rule ends the blackout
    assert_eq!(num(&blast("6003")?, "distinct"), 2000.0, "blackout ended");
    Ok(())
}

#[test]
fn homes_behind_the_nat_meet_only_through_turn() -> Result<()> {
    let Some(lab) = KernelLab::for_test("homes_behind_the_nat_meet_only_through_turn") else {
        return Ok(());
    };
    let nat = lab.nat()?;
    let internet = nat.internet_addr.to_string();

    // Both homes reach the internet, seen there as the NAT's public address.
    let mut echo = Probe::start(
        &nat.internet,
        &[
            "udp-echo",
            "--bind",
            &format!("{internet}:7000"),
            "--max-secs",
            "30",
        ],
    )?;
    echo.next()?;
    for home in [&nat.home_a, &nat.home_b] {
        let r = probe_once(home, &["udp-ping", "--to", &format!("{internet}:7000")])?;
        assert!(num(&r, "replies") >= 4.0, "{} → internet: {r}", home.name());
        let seen = r["seen_as"].as_str().unwrap_or("");
        assert!(
            seen.starts_with(&format!("{}:", nat.public_addr)),
            "masqueraded as {seen}"
        );
    }
    // The homes cannot reach each other directly, nor the internet a home.
    let mut echo_b = Probe::start(
        &nat.home_b,
        &[
            "udp-echo",
            "--bind",
            &format!("{}:7000", nat.home_b_addr),
            "--max-secs",
            "30",
        ],
    )?;
    echo_b.next()?;
    let to_b = format!("{}:7000", nat.home_b_addr);
    let r = probe_once(&nat.home_a, &["udp-ping", "--to", &to_b, "--count", "3"])?;
    assert_eq!(
        num(&r, "replies"),
        0.0,
        "home-a reached home-b directly: {r}"
    );
    let r = probe_once(&nat.internet, &["udp-ping", "--to", &to_b, "--count", "3"])?;
    assert_eq!(num(&r, "replies"), 0.0, "the internet reached home-b: {r}");
    // Positive control: home-b's echo does answer on its own side.
    let r = probe_once(&nat.home_b, &["udp-ping", "--to", &to_b, "--count", "1"])?;
    assert_eq!(num(&r, "replies"), 1.0, "{r}");

    let t = std::time::Instant::now();
    let turn = TurnServer::start(
        &nat.internet,
        nat.internet_addr.into(),
        3478,
        "confab",
        "s3cret",
    )?;
    let url = turn.url();
    eprintln!("coturn listening after {:?}", t.elapsed());
    let t = std::time::Instant::now();

    // Wrong credentials: no relay candidate at all.
    let mut bad = Probe::start(
        &nat.home_a,
        &[
            "rtc",
            "--role",
            "offer",
            "--bind",
            &nat.home_a_addr.to_string(),
            "--turn",
            &url,
            "--user",
            "confab",
            "--pass",
            "wrong",
            "--relay-only",
            "--timeout-secs",
            "5",
        ],
    )?;
    let offer = bad.next()?;
    let sdp = offer["sdp"]["sdp"].as_str().unwrap_or("");
    assert!(
        !sdp.contains("typ relay"),
        "a relay with a wrong password:\n{sdp}"
    );
    drop(bad);
    eprintln!("offer with a wrong TURN password after {:?}", t.elapsed());
    let t = std::time::Instant::now();

    // Relay only, both behind the NAT: connected through coturn, data channel both ways.
    let rtc = |ns: &Netns, addr: &str, role: &str| {
        Probe::start(
            ns,
            &[
                "rtc",
                "--role",
                role,
                "--bind",
                addr,
                "--turn",
                &url,
                "--user",
                "confab",
                "--pass",
                "s3cret",
                "--relay-only",
            ],
        )
    };
    let mut a = rtc(&nat.home_a, &nat.home_a_addr.to_string(), "offer")?;
    let offer = a.next().context("offer")?;
    let sdp = offer["sdp"]["sdp"].as_str().unwrap_or("");
    assert!(
        sdp.contains("typ relay"),
        "no relay candidate:\n{sdp}\n{}",
        turn.log_tail(20)
    );
    assert!(
        !sdp.contains("typ host"),
        "relay-only offered a host candidate"
    );
    let mut b = rtc(&nat.home_b, &nat.home_b_addr.to_string(), "answer")?;
    b.send(&offer)?;
    let answer = b.next().context("answer")?;
    a.send(&answer)?;
    for (name, p, message) in [("home-a", &mut a, "pong"), ("home-b", &mut b, "ping")] {
        let c = p.next().with_context(|| format!("{name} connects"))?;
        eprintln!("{name} after {:?}: {c}", t.elapsed());
        assert_eq!(c["connected"], true, "{c}");
        // Each side's own end is its relay (the stats list no remote candidates): the pair
        // is relay ↔ relay.
        assert_eq!(c["local_type"], "relay", "{name}: {c}");
        assert!(
            c["remote_type"].is_null() || c["remote_type"] == "relay",
            "{name}: {c}"
        );
        let m = p.next().with_context(|| format!("{name} data channel"))?;
        eprintln!("{name}: {m}");
        assert_eq!(m["message"], message, "{name}: {m}");
    }
    Ok(())
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!("{name}: {cmdline}"));
            }
        }
    }
    found
}

/// Whether process `pid` is gone (or a zombie nobody reaped: dead all the same).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

#[test]
fn a_panicking_test_leaves_no_namespace_or_process_behind() -> Result<()> {
    let Some(lab) = KernelLab::for_test("a_panicking_test_leaves_no_namespace_or_process_behind")
    else {
        return Ok(());
    };
    let prefix = lab.prefix().to_string();
    let stray = std::sync::Arc::new(std::sync::Mutex::new(0u32));
    let stray_pid = stray.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let nat = lab.nat().expect("nat");
        let _turn = TurnServer::start(&nat.internet, nat.internet_addr.into(), 3478, "u", "p")
            .expect("turn");
        let _rule = nat.home_a.blackout(Traffic::All).expect("rule");
        // A process the test lost track of: only the lab can stop it.
        let mut sleeper = nat.home_b.command("sleep");
        sleeper.arg("60");
        let p = nat.home_b.spawn(sleeper).expect("sleep");
        *stray_pid.lock().unwrap() = p.id();
        std::mem::forget(p);
        panic!("the test fails half-way");
    }));
    assert!(outcome.is_err(), "the closure panicked");
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with(&prefix)),
        "namespaces left behind:\n{left}"
    );
    let procs = processes_mentioning(&prefix);
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
    let pid = *stray.lock().unwrap();
    assert!(pid != 0 && dead(pid), "the lost process {pid} still runs");
    Ok(())
}
