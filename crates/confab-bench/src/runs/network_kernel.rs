//! `bench network --kernel`: the conditions a kernel lab makes for any program — random loss,
//! a rate cap, a blackout (no delay: this kernel has no netem) — for two confab-peers, then for
//! two headless Chromium tabs running the web client, the same call through the same lab: each
//! side in a network namespace of its own, joined by one veth link
//! (`confab_netlab::kernel::KernelLab::pair`), confab-signal beside the caller. What B received
//! of A, side by side, and Confab/Chromium ratios. Chromium runs without WebDriver (no port to
//! reach across namespaces): the page joins and calls from its URL (`--test-hooks`), and
//! prints its report to the console after the run (`report=SECS`), which Chromium's
//! `--enable-logging=stderr` shows.

use super::write_figures;
use crate::Dirs;
use anyhow::{bail, Context, Result};
use confab_bench::figures::{fmt1, ratio};
use confab_bench::reports::{BrowserPeer, PeerReport};
use confab_netlab::kernel::{KernelLab, LabProcess, Netns, NftRule, Pair, Traffic};
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A condition the kernel lab makes, alike in both directions: loss of what arrives in each
/// namespace (UDP: the media; signaling is spared), a cap on what leaves each one (tbf, a
/// 200 ms queue as the in-process lab's), and a blackout (`AT:FOR` seconds after the call
/// starts).
pub struct KernelCondition {
    pub name: &'static str,
    pub loss: Option<f64>,
    pub cap_bps: Option<u64>,
    pub blackout: Option<(f64, f64)>,
}

const CAP_QUEUE_MS: u32 = 200;

pub const KERNEL_CONDITIONS: &[KernelCondition] = &[
    KernelCondition {
        name: "clean",
        loss: None,
        cap_bps: None,
        blackout: None,
    },
    KernelCondition {
        name: "loss 5 %",
        loss: Some(0.05),
        cap_bps: None,
        blackout: None,
    },
    KernelCondition {
        name: "loss 10 %",
        loss: Some(0.10),
        cap_bps: None,
        blackout: None,
    },
    KernelCondition {
        name: "cap 1 Mbit/s",
        loss: None,
        cap_bps: Some(1_000_000),
        blackout: None,
    },
    KernelCondition {
        name: "cap 300 kbit/s",
        loss: None,
        cap_bps: Some(300_000),
        blackout: None,
    },
    KernelCondition {
        name: "blackout 5 s",
        loss: None,
        cap_bps: None,
        blackout: Some((8.0, 5.0)),
    },
];

/// What B received of A: pictures per second, freezes, latency.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Received {
    pub frames: u64,
    pub fps: f64,
    pub freezes_per_10s: f64,
    pub freeze_ms_total: f64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
}

impl Received {
    /// From B's confab-peer report: counted from its first picture on.
    fn of_peer(b: &PeerReport) -> Received {
        let v = b.remote().map(|p| p.video.clone()).unwrap_or_default();
        let secs = (b.duration_seconds - b.setup_ms.unwrap_or(0.0) / 1000.0).max(1.0);
        Received {
            frames: v.frames_decoded,
            fps: v.frames_decoded as f64 / secs,
            freezes_per_10s: v.freezes as f64 * 10.0 / secs,
            freeze_ms_total: v.freeze_ms_total,
            latency_ms_p50: v.latency_ms_p50,
            latency_ms_p95: v.latency_ms_p95,
        }
    }

    /// From B's page: counted from its first frame to its report (as confab-peer's run to its
    /// end: a stall at the end counts against both).
    fn of_browser(b: &BrowserPeer) -> Received {
        let secs = (b.watched_ms / 1000.0).max(1.0);
        Received {
            frames: b.frames,
            fps: b.frames as f64 / secs,
            freezes_per_10s: b.freezes as f64 * 10.0 / secs,
            freeze_ms_total: b.freeze_ms_total,
            latency_ms_p50: b.latency_ms_p50,
            latency_ms_p95: b.latency_ms_p95,
        }
    }
}

/// One condition: Confab's call and Chromium's (none if Chromium could not run).
#[derive(Debug, Clone, Serialize)]
pub struct KernelRow {
    pub condition: String,
    pub codec: String,
    pub size: String,
    pub duration_s: f64,
    pub confab: Received,
    pub chromium: Option<Received>,
    /// Confab / Chromium: fps (above 1 is Confab ahead), freeze time and latency p95 (below
    /// 1 is Confab ahead). The freeze ratio is 1 when neither froze, none when only Confab
    /// did.
    pub fps_ratio: Option<f64>,
    pub freeze_ms_ratio: Option<f64>,
    pub latency_p95_ratio: Option<f64>,
}

impl KernelRow {
    fn new(
        c: &KernelCondition,
        codec: &str,
        size: &str,
        duration: f64,
        confab: Received,
        chromium: Option<Received>,
    ) -> KernelRow {
        let theirs = chromium.as_ref();
        // No freeze on either side is even; none on Chromium's side alone makes no ratio (the
        // totals stand beside it).
        let freeze_ratio = theirs.and_then(|t| match (confab.freeze_ms_total, t.freeze_ms_total) {
            (ours, theirs) if ours <= 0.0 && theirs <= 0.0 => Some(1.0),
            (ours, theirs) => ratio(Some(ours), Some(theirs)),
        });
        KernelRow {
            condition: c.name.into(),
            codec: codec.into(),
            size: size.into(),
            duration_s: duration,
            fps_ratio: theirs.and_then(|t| ratio(Some(confab.fps), Some(t.fps))),
            freeze_ms_ratio: freeze_ratio,
            latency_p95_ratio: theirs.and_then(|t| ratio(confab.latency_ms_p95, t.latency_ms_p95)),
            confab,
            chromium,
        }
    }
}

pub fn run(duration: f64, size: &str, codec: &str, only: Option<&str>, dirs: &Dirs) -> Result<()> {
    let bin = dirs.bin()?;
    let dir = std::env::temp_dir().join(format!("confab-bench-kernel-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let conditions: Vec<&KernelCondition> = KERNEL_CONDITIONS
        .iter()
        .filter(|c| only.is_none_or(|o| c.name.contains(o)))
        .collect();
    if conditions.is_empty() {
        bail!("no kernel-lab condition matches {only:?}");
    }
    let mut rows = Vec::new();
    for c in conditions {
        eprintln!("bench network --kernel: {} {codec}", c.name);
        let lab = KernelLab::new().context("the kernel lab (run as root)")?;
        let pair = lab.pair()?;
        // Chromium finds its local address from the way to the internet: give it one.
        pair.a
            .run("ip", ["route", "add", "default", "dev", "eth0"])?;
        pair.b
            .run("ip", ["route", "add", "default", "dev", "eth0"])?;
        let _impaired = impair(&pair, c)?;
        let (_signal, ws) = signal_in(&pair.a, &bin.join("confab-signal"))?;
        let call = Call {
            dir: &dir,
            pair: &pair,
            ws: &ws,
            c,
            size,
            codec,
            duration,
        };
        let confab = call
            .confab(&bin)
            .with_context(|| format!("the {} confab-peer call", c.name))?;
        let chromium = call
            .chromium()
            .map_err(|e| eprintln!("bench network --kernel: Chromium, {}: {e:#}", c.name))
            .ok();
        rows.push(KernelRow::new(c, codec, size, duration, confab, chromium));
    }
    std::fs::remove_dir_all(&dir).ok();
    println!();
    println!(
        "the kernel lab: confab-peer <-> confab-peer, then Chromium <-> Chromium (the web client), \
         {size} 30 fps test pattern, {codec}, {duration} s per run, each side in its own network \
         namespace, impaired alike; what B received of A"
    );
    print!("{}", table(&rows));
    println!(
        "ratio = Confab / Chromium: fps above 1, freeze time and p95 below 1 are Confab ahead \
         (issue 10: at least as smooth as Chromium). Latency: Confab capture -> decoded, \
         Chromium capture -> presented."
    );
    write_figures(&dirs.out()?, "network-kernel.json", &rows)
}

fn table(rows: &[KernelRow]) -> String {
    let mut out = format!(
        "{:<16} {:>13} {:>15} {:>17} {:>15} {:>7} {:>8} {:>7}\n",
        "condition",
        "fps C/Chr",
        "freeze/10s C/Chr",
        "freeze ms C/Chr",
        "p95 ms C/Chr",
        "fps x",
        "freeze x",
        "p95 x"
    );
    let fmt_ratio = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}"));
    for r in rows {
        let them = r.chromium.as_ref();
        let pair = |a: String, b: Option<String>| format!("{a}/{}", b.unwrap_or("-".into()));
        out.push_str(&format!(
            "{:<16} {:>13} {:>15} {:>17} {:>15} {:>7} {:>8} {:>7}\n",
            r.condition,
            pair(
                format!("{:.1}", r.confab.fps),
                them.map(|t| format!("{:.1}", t.fps))
            ),
            pair(
                format!("{:.1}", r.confab.freezes_per_10s),
                them.map(|t| format!("{:.1}", t.freezes_per_10s))
            ),
            pair(
                format!("{:.0}", r.confab.freeze_ms_total),
                them.map(|t| format!("{:.0}", t.freeze_ms_total))
            ),
            pair(
                fmt1(r.confab.latency_ms_p95),
                them.map(|t| fmt1(t.latency_ms_p95))
            ),
            fmt_ratio(r.fps_ratio),
            fmt_ratio(r.freeze_ms_ratio),
            fmt_ratio(r.latency_p95_ratio),
        ));
    }
    out
}

/// The rules and caps of `c` on both sides (the rules go when dropped; the caps with the lab).
fn impair(pair: &Pair, c: &KernelCondition) -> Result<Vec<NftRule>> {
    let mut rules = Vec::new();
    for ns in [&pair.a, &pair.b] {
        if let Some(f) = c.loss {
            rules.push(ns.random_loss(f, Traffic::Udp)?);
        }
        if let Some(bps) = c.cap_bps {
            ns.rate_cap("eth0", bps, CAP_QUEUE_MS)?;
        }
    }
    Ok(rules)
}

/// Runs `during` while `c`'s blackout (if any) comes `AT` seconds after `start` and lasts
/// `FOR`, on both sides (UDP).
fn with_blackout<T>(
    pair: &Pair,
    c: &KernelCondition,
    start: Instant,
    during: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let Some((at, len)) = c.blackout else {
        return during();
    };
    std::thread::scope(|s| {
        let dark = s.spawn(move || -> Result<()> {
            std::thread::sleep(
                (start + Duration::from_secs_f64(at)).saturating_duration_since(Instant::now()),
            );
            let rules = [
                pair.a.blackout(Traffic::Udp)?,
                pair.b.blackout(Traffic::Udp)?,
            ];
            std::thread::sleep(Duration::from_secs_f64(len));
            for r in rules {
                r.remove()?;
            }
            Ok(())
        });
        let got = during();
        dark.join()
            .map_err(|_| anyhow::anyhow!("the blackout thread panicked"))??;
        got
    })
}

/// confab-signal in `ns` on its link's address (the caller's side), with the web client's
/// test hooks; its WebSocket URL.
fn signal_in(ns: &Netns, program: &Path) -> Result<(LabProcess, String)> {
    let mut cmd = ns.command(program);
    cmd.args(["--listen", "10.0.0.1:0", "--test-hooks"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut p = ns.spawn(cmd)?;
    let url = super::signal_url(p.child())?;
    Ok((p, url))
}

/// One condition's call, made once by each contestant.
struct Call<'a> {
    /// Scratch space for reports and profiles.
    dir: &'a Path,
    pair: &'a Pair,
    /// confab-signal's WebSocket URL.
    ws: &'a str,
    c: &'a KernelCondition,
    size: &'a str,
    codec: &'a str,
    duration: f64,
}

impl Call<'_> {
    /// Two confab-peers (release builds in `bin`): B answers, A calls.
    fn confab(&self, bin: &Path) -> Result<Received> {
        let Call {
            dir,
            pair,
            ws,
            c,
            size,
            codec,
            duration,
        } = *self;
        let room = format!("kernel-confab-{codec}");
        let peer = |ns: &Netns, name: &str, addr: String, extra: &[&str], out: &Path| {
            let mut cmd = ns.command(bin.join("confab-peer"));
            cmd.args(["--server", ws, "--room", &room, "--name", name])
                .args(["--size", size, "--fps", "30", "--codec", codec])
                .args(["--bind", &addr])
                .args(["--duration", &duration.to_string(), "--stats-json"])
                .arg(out)
                .args(extra)
                .stdout(Stdio::null())
                .stderr(super::peer_log(name)?);
            anyhow::Ok(ns.spawn(cmd)?)
        };
        let (ja, jb) = (dir.join("a.json"), dir.join("b.json"));
        let b_args = ["--auto-accept", "--audio", "tone:660"];
        let mut b = peer(&pair.b, "B", pair.b_addr.to_string(), &b_args, &jb)?;
        std::thread::sleep(Duration::from_millis(500));
        let start = Instant::now();
        let a_args = ["--call", "--audio", "tone:440"];
        let mut a = peer(&pair.a, "A", pair.a_addr.to_string(), &a_args, &ja)?;
        let limit = Duration::from_secs_f64(duration + 60.0);
        let (sa, sb) = with_blackout(pair, c, start, || {
            Ok((a.wait_timeout(limit)?, b.wait_timeout(limit)?))
        })?;
        match (sa, sb) {
            (Some(sa), Some(sb)) if sa.success() && sb.success() => {}
            other => bail!("a peer failed or hung (A, B: {other:?})"),
        }
        Ok(Received::of_peer(&PeerReport::read(&jb)?))
    }
}

/// Chromium in `ns` on the web client's page; the lines it logs come to `lines`.
fn chromium_in(
    ns: &Netns,
    profile: &Path,
    url: &str,
    lines: std::sync::mpsc::Sender<String>,
) -> Result<LabProcess> {
    let mut cmd = ns.command("chromium");
    cmd.args(confab_bench::chromium_args(profile))
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut p = ns.spawn(cmd)?;
    let err = p.child().stderr.take().context("Chromium's stderr")?;
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
            if line.contains("CONFAB-REPORT") && lines.send(line).is_err() {
                break;
            }
        }
    });
    Ok(p)
}

impl Call<'_> {
    /// Two Chromium tabs running the web client: B answers, A calls.
    fn chromium(&self) -> Result<Received> {
        let (dir, pair, duration) = (self.dir, self.pair, self.duration);
        let (size, codec) = (self.size, self.codec);
        let http = self
            .ws
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .map(|host| format!("http://{host}"))
            .context("confab-signal's URL")?;
        let room = format!("kernel-chromium-{codec}");
        let page = |name: &str, extra: &str| {
            format!(
                "{http}/?room={room}&name={name}&join=1&source=test&size={size}&codec={codec}\
                 &report={duration}{extra}"
            )
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let profile_b = dir.join("chromium-b");
        let b_page = chromium_in(&pair.b, &profile_b, &page("B", "&accept=1"), tx.clone())?;
        std::thread::sleep(Duration::from_millis(500));
        let start = Instant::now();
        let profile_a = dir.join("chromium-a");
        let a = chromium_in(&pair.a, &profile_a, &page("A", "&call=1"), tx)?;
        let limit = Duration::from_secs_f64(duration + 30.0);
        // Both pages report; B's is the one (what it received of A).
        let b = with_blackout(pair, self.c, start, || {
            let deadline = Instant::now() + limit;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = rx
                    .recv_timeout(left)
                    .context("no report from the Chromium pages")?;
                let Some(report) = BrowserPeer::from_console(&line) else {
                    continue;
                };
                if let Some(from_a) = report.iter().find(|p| p.name.as_deref() == Some("A")) {
                    if from_a.frames == 0 {
                        bail!(
                            "B's page showed nothing of A (its link: {})",
                            from_a.phase.as_deref().unwrap_or("none")
                        );
                    }
                    return Ok(from_a.clone());
                }
            }
        })?;
        // (Their renderers and helpers go with the lab, which kills whatever is left in its
        // namespaces.)
        drop((a, b_page));
        for p in [profile_a, profile_b] {
            std::fs::remove_dir_all(p).ok();
        }
        Ok(Received::of_browser(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_puts_confab_beside_chromium() {
        let confab = Received {
            frames: 580,
            fps: 29.0,
            freezes_per_10s: 0.5,
            freeze_ms_total: 400.0,
            latency_ms_p50: Some(20.0),
            latency_ms_p95: Some(40.0),
        };
        let chromium = Received {
            fps: 25.0,
            freeze_ms_total: 0.0,
            latency_ms_p95: Some(80.0),
            ..confab.clone()
        };
        let r = KernelRow::new(
            &KERNEL_CONDITIONS[1],
            "h264",
            "1280x720",
            20.0,
            confab.clone(),
            Some(chromium),
        );
        assert!((r.fps_ratio.unwrap() - 1.16).abs() < 1e-9, "{r:?}");
        assert_eq!(
            r.freeze_ms_ratio, None,
            "no freeze on Chromium's side: no ratio"
        );
        assert_eq!(r.latency_p95_ratio, Some(0.5));
        let t = table(&[r]);
        assert!(t.contains("loss 5 %") && t.contains("29.0/25.0"), "{t}");
        let alone = KernelRow::new(&KERNEL_CONDITIONS[0], "h264", "640x480", 20.0, confab, None);
        assert_eq!(alone.fps_ratio, None);
        assert!(table(&[alone]).contains("29.0/-"));
        // A browser's figures run from its first frame to its report.
        let b = BrowserPeer {
            frames: 300,
            freezes: 2,
            freeze_ms_total: 700.0,
            watched_ms: 12_000.0,
            ..Default::default()
        };
        let got = Received::of_browser(&b);
        assert!((got.fps - 25.0).abs() < 1e-9, "{got:?}");
        assert!(
            (got.freezes_per_10s - 2.0 * 10.0 / 12.0).abs() < 1e-9,
            "{got:?}"
        );
    }
}
