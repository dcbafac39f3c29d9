//! What the benchmarks print and write: one serde struct per table row, the tables themselves,
//! and the JSON files under `target/bench/` (`signal.json`, `call.json`, `app.json`,
//! `vs-browser.json`, `audio.json`). A figure that could not be taken is `None`: `-` in a table, `null` in
//! JSON.

use crate::reports::{per_min, LoadgenSummary, PeerReport, SetupPhases};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FiguresError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding {what} as JSON: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
}

/// Writes `value` as pretty JSON to `dir/name` (creating `dir`); returns the file's path.
pub fn write_json<T: Serialize>(
    dir: &Path,
    name: &'static str,
    value: &T,
) -> Result<PathBuf, FiguresError> {
    let path = dir.join(name);
    let json = serde_json::to_string_pretty(value)
        .map_err(|source| FiguresError::Encode { what: name, source })?;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, json + "\n"))
        .map_err(|source| FiguresError::Write {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

/// `v` with one decimal, `-` when there is no figure.
pub fn fmt1(v: Option<f64>) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) => format!("{v:.1}"),
        None => "-".into(),
    }
}

fn fmt0(v: Option<f64>) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) => format!("{v:.0}"),
        None => "-".into(),
    }
}

/// `a / b` when both are there and the quotient is a number.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?).filter(|r| r.is_finite())
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{r:.2}"),
        None => "-".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// bench signal

/// One rate of `bench signal`: the generator's summary and the server's own figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalRow {
    /// Total messages per second asked of the generator.
    pub rate: f64,
    /// Signaling nodes (more than one: sharing rooms through Redis, the generator's clients
    /// spread over them). Server CPU and peak RSS are all the nodes' (and Redis's).
    pub nodes: usize,
    pub connections_wanted: u64,
    pub connections_held: u64,
    pub connect_failures: u64,
    pub relayed_per_second: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub errors: u64,
    /// The server's CPU seconds over the relay phase.
    pub server_cpu_s: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    /// The generator's own CPU seconds over the relay phase (near one per second = the
    /// generator's limit, not the server's).
    pub generator_cpu_s: f64,
    pub duration_s: f64,
    pub payload_bytes: usize,
}

impl SignalRow {
    pub fn new(
        rate: f64,
        payload_bytes: usize,
        nodes: usize,
        s: &LoadgenSummary,
        server_cpu_s: Option<f64>,
        server_peak_rss_mib: Option<f64>,
    ) -> Self {
        SignalRow {
            rate,
            nodes,
            connections_wanted: s.connections_wanted,
            connections_held: s.connections_held,
            connect_failures: s.connect_failures,
            relayed_per_second: s.relayed_per_second,
            latency_ms_p50: s.latency_ms_p50,
            latency_ms_p99: s.latency_ms_p99,
            latency_ms_max: s.latency_ms_max,
            errors: s.errors,
            server_cpu_s,
            server_peak_rss_mib,
            generator_cpu_s: s.generator_cpu_seconds,
            duration_s: s.duration_seconds,
            payload_bytes,
        }
    }
}

pub fn signal_table(rows: &[SignalRow]) -> String {
    let mut t = format!(
        "{:>9} {:>5} {:>8} {:>10} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9}\n",
        "rate/s",
        "nodes",
        "held",
        "relayed/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "server CPU",
        "peak MiB",
        "gen CPU"
    );
    for r in rows {
        let _ = writeln!(
            t,
            "{:>9} {:>5} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>9.1} {:>9} s {:>9} {:>7.1} s",
            r.rate,
            r.nodes,
            r.connections_held,
            r.relayed_per_second,
            r.latency_ms_p50,
            r.latency_ms_p99,
            r.latency_ms_max,
            fmt1(r.server_cpu_s),
            fmt1(r.server_peak_rss_mib),
            r.generator_cpu_s,
        );
    }
    t
}

// ---------------------------------------------------------------------------------------------
// bench call

/// One side of a `bench call` run: what this peer received and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallSide {
    /// From the answer to the first picture decoded from the other side.
    pub answer_to_first_frame_ms: Option<f64>,
    /// Capture (other side) -> decoded (this side).
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    /// Frames per second decoded from the other side.
    pub fps: Option<f64>,
    pub frames_decoded: Option<u64>,
    /// This peer process's CPU seconds per minute of call.
    pub cpu_s_per_min: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

impl CallSide {
    pub fn new(r: &PeerReport) -> Self {
        let remote = r.remote();
        CallSide {
            answer_to_first_frame_ms: remote.and_then(|p| p.answer_to_first_frame_ms),
            latency_ms_p50: remote.and_then(|p| p.video.latency_ms_p50),
            latency_ms_p95: remote.and_then(|p| p.video.latency_ms_p95),
            fps: remote.and_then(|p| p.video.fps),
            frames_decoded: remote.map(|p| p.video.frames_decoded),
            cpu_s_per_min: r.cpu_s_per_min(),
            peak_rss_mib: r.peak_rss_mb,
        }
    }
}

/// One size and codec of `bench call`: A calls, B answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRow {
    /// `WIDTHxHEIGHT`.
    pub size: String,
    /// `h264` or `vp8`.
    pub codec: String,
    pub duration_s: f64,
    /// A's join -> first picture from B.
    pub setup_ms: Option<f64>,
    /// A (the caller): the answer arrives -> first picture decoded from B.
    pub answer_to_first_frame_ms: Option<f64>,
    /// Where A's answer -> first frame went: ICE, connection, received, assembled and decoded
    /// are A's, encoded and sent are B's (from B's own answer, sent a moment before A heard it).
    pub setup_phases: SetupPhases,
    /// A: what it decoded from B, and its own cost.
    pub caller: CallSide,
    /// B: what it decoded from A, and its own cost.
    pub answerer: CallSide,
}

impl CallRow {
    pub fn new(size: &str, codec: &str, duration_s: f64, a: &PeerReport, b: &PeerReport) -> Self {
        let caller = CallSide::new(a);
        let mut setup_phases = a
            .remote()
            .map(|p| p.setup_phases.clone())
            .unwrap_or_default();
        let b_out = b
            .remote()
            .map(|p| p.setup_phases.clone())
            .unwrap_or_default();
        setup_phases.first_encoded_ms = b_out.first_encoded_ms;
        setup_phases.first_sent_ms = b_out.first_sent_ms;
        CallRow {
            setup_phases,
            size: size.to_owned(),
            codec: codec.to_owned(),
            duration_s,
            setup_ms: a.setup_ms,
            answer_to_first_frame_ms: caller.answer_to_first_frame_ms,
            caller,
            answerer: CallSide::new(b),
        }
    }
}

pub fn call_table(rows: &[CallRow]) -> String {
    let mut t = format!(
        "{:>9} {:>5} {:>9} {:>10} {:>14} {:>14} {:>9} {:>11} {:>9}\n",
        "size",
        "codec",
        "setup ms",
        "answer->1st",
        "A<-B p50/p95",
        "B<-A p50/p95",
        "fps A/B",
        "CPU s/min",
        "RSS MiB"
    );
    for r in rows {
        let lat = |s: &CallSide| format!("{}/{}", fmt1(s.latency_ms_p50), fmt1(s.latency_ms_p95));
        let pair = |a: String, b: String| format!("{a:>4}/{b:<4}");
        let (a, b) = (&r.caller, &r.answerer);
        let _ = writeln!(
            t,
            "{:>9} {:>5} {:>9} {:>10} ms {:>14} {:>14} {} {:>5}/{:<5} {}",
            r.size,
            r.codec,
            fmt0(r.setup_ms),
            fmt0(r.answer_to_first_frame_ms),
            lat(a),
            lat(b),
            pair(fmt0(a.fps), fmt0(b.fps)),
            fmt1(a.cpu_s_per_min),
            fmt1(b.cpu_s_per_min),
            pair(fmt0(a.peak_rss_mib), fmt0(b.peak_rss_mib)),
        );
    }
    t
}

/// Where each run's answer -> first frame went: one line per size and codec.
pub fn phases_table(rows: &[CallRow]) -> String {
    let mut t = format!(
        "{:>9} {:>5} {:>7} {:>9} {:>9} {:>7} {:>9} {:>9} {:>8}\n",
        "size", "codec", "ICE", "connected", "encoded", "sent", "received", "assembled", "decoded"
    );
    for r in rows {
        let p = &r.setup_phases;
        let _ = writeln!(
            t,
            "{:>9} {:>5} {:>7} {:>9} {:>9} {:>7} {:>9} {:>9} {:>8}",
            r.size,
            r.codec,
            fmt0(p.ice_connected_ms),
            fmt0(p.connected_ms),
            fmt0(p.first_encoded_ms),
            fmt0(p.first_sent_ms),
            fmt0(p.first_received_ms),
            fmt0(p.first_assembled_ms),
            fmt0(p.first_decoded_ms),
        );
    }
    t
}

// ---------------------------------------------------------------------------------------------
// bench app

/// The desktop app in a call with a confab-peer, measured on the app's side (`bench app` at
/// 720p, `bench vs-browser` at each size).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppCall {
    /// The call's video size.
    pub size: String,
    /// Seconds over which CPU and frames were measured.
    pub measured_s: f64,
    /// The app's whole process tree idle in the room (joined, no call), % of one core.
    pub idle_cpu_pct_of_core: Option<f64>,
    /// PSS of the app and its helpers (WebKit), idle in the room.
    pub idle_pss_mib: f64,
    /// Peak PSS during the call.
    pub call_peak_pss_mib: f64,
    /// The app's whole process tree, CPU seconds per minute of call.
    pub cpu_s_per_min: Option<f64>,
    /// Per process name in the tree (confab, WebKitWebProcess, ...), % of one core.
    pub cpu_pct_of_core_by_process: BTreeMap<String, f64>,
    /// The same CPU by what it is spent on (`procs::APP_PARTS`), seconds per minute of call.
    pub cpu_s_per_min_by_part: BTreeMap<String, f64>,
    /// Frames drawn per second, per tile kind (`local`, `remote`), averaged over the run.
    pub drawn_fps: BTreeMap<String, f64>,
    /// Capture (the peer's test pattern) -> drawn in the app's remote tile, read back from the
    /// drawn picture by the window.
    pub onscreen_latency_ms_p50: Option<f64>,
    pub onscreen_latency_ms_p95: Option<f64>,
    /// Whether WebKit painted the page on the CPU (`WEBKIT_SKIA_ENABLE_CPU_RENDERING` in its web
    /// process: the app asks for it without a GPU), as read from the running web process;
    /// `None` when that could not be read.
    #[serde(default)]
    pub cpu_painting: Option<bool>,
}

/// `bench app`: three launches, then the app in a 720p call with a confab-peer (one object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRun {
    /// Launch -> the app logs "window ready", for each launch (the first on a fresh config and
    /// cache folder).
    pub launches_ms: Vec<f64>,
    /// The slowest of them (the target holds every time).
    pub window_ready_ms: f64,
    /// The call as the app makes it: on Linux, pictures painted by its native video surface
    /// under the page (WebKit compositing).
    #[serde(flatten)]
    pub call: AppCall,
    /// The same call with WebKit's compositing off: no native surface, each tile's `<img>`
    /// loads an MJPEG stream (the fallback).
    pub streams: Option<AppCall>,
}

/// Min, median and max of a list (`None` when empty).
pub fn min_median_max(v: &[f64]) -> Option<(f64, f64, f64)> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    Some((*s.first()?, s[s.len() / 2], *s.last()?))
}

pub fn app_table(r: &AppRun) -> String {
    let mut t = String::new();
    if let Some((min, med, max)) = min_median_max(&r.launches_ms) {
        let _ = writeln!(
            t,
            "  window ready after launch    {min:>5.0} / {med:.0} / {max:.0} ms (min/median/max of {}, first on a fresh config; target < 1000)",
            r.launches_ms.len()
        );
    }
    t += &app_call_lines(&r.call);
    if let Some(s) = &r.streams {
        let _ = writeln!(
            t,
            "  the same with WebKit's compositing off (no native surface: pictures as streams):"
        );
        t += &app_call_lines(s);
    }
    t
}

/// One call of `bench app`: idle, memory, CPU, frames drawn, on-screen latency.
fn app_call_lines(c: &AppCall) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "  CPU idle in the room         {:>7} % of one core (target < 2)",
        fmt1(c.idle_cpu_pct_of_core)
    );
    let _ = writeln!(
        t,
        "  memory idle (PSS, all procs) {:>7.0} MiB",
        c.idle_pss_mib
    );
    let _ = writeln!(
        t,
        "  memory in the call (peak)    {:>7.0} MiB     (target < 300)",
        c.call_peak_pss_mib
    );
    if let Some(cpu) = c.cpu_painting {
        let how = if cpu {
            "on the CPU"
        } else {
            "WebKit's default (GL)"
        };
        let _ = writeln!(t, "  the page painted             {how}");
    }
    t += &app_cpu_lines(c);
    for (tile, fps) in &c.drawn_fps {
        let _ = writeln!(
            t,
            "  frames drawn, {tile:<6} tile   {fps:>7.1} fps     (target 30)"
        );
    }
    let _ = writeln!(
        t,
        "  capture -> on screen p50/p95 {:>7} / {} ms (target p50 <= 20)",
        fmt1(c.onscreen_latency_ms_p50),
        fmt1(c.onscreen_latency_ms_p95)
    );
    t
}

/// The app's CPU in a call: the total, per process, per part.
fn app_cpu_lines(c: &AppCall) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "  CPU in the call              {:>7} s/min    ({} % of one core)",
        fmt1(c.cpu_s_per_min),
        fmt0(c.cpu_s_per_min.map(|c| c / 60.0 * 100.0))
    );
    for (name, pct) in &c.cpu_pct_of_core_by_process {
        let _ = writeln!(t, "      process {name:<20} {pct:>5.0} % of one core");
    }
    for (part, s) in &c.cpu_s_per_min_by_part {
        let _ = writeln!(t, "      part {part:<24} {s:>5.1} s/min");
    }
    t
}

/// Averages per-second drawn counts per tile kind: `local`, and every other tile as `remote`.
pub fn drawn_fps(samples: &[BTreeMap<String, f64>]) -> BTreeMap<String, f64> {
    let mut by_kind: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in samples {
        for (tile, n) in s {
            let kind = if tile == "local" { "local" } else { "remote" };
            by_kind.entry(kind.to_owned()).or_default().push(*n);
        }
    }
    by_kind
        .into_iter()
        .map(|(k, v)| (k, v.iter().sum::<f64>() / v.len().max(1) as f64))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// bench vs-browser

/// One side-by-side contestant: both ends of the call together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contestant {
    pub setup_ms: Option<f64>,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub fps: Option<f64>,
    /// Both ends' whole process trees, CPU seconds per minute of call.
    pub cpu_s_per_min: Option<f64>,
    /// Both ends' peak PSS together.
    pub peak_mib: Option<f64>,
}

/// One size of `bench vs-browser`. The per-side CPU figures of the Chromium and confab-peer
/// pairs are half of both ends' (each end is one tab or one process tree, in the same duplex
/// call); the app's is its own side of a call with a confab-peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VsBrowserRow {
    pub size: String,
    /// The desktop app (its whole process tree, both tiles drawn), CPU s/min.
    pub app_cpu_s_per_min: Option<f64>,
    /// One Chromium tab (one side of the Chromium <-> Chromium call), CPU s/min.
    pub chromium_tab_cpu_s_per_min: Option<f64>,
    /// app / Chromium tab (goal: at most 0.6).
    pub app_cpu_ratio: Option<f64>,
    /// One confab-peer (one side of the confab-peer <-> confab-peer call), CPU s/min.
    pub peer_cpu_s_per_min: Option<f64>,
    /// confab-peer / Chromium tab.
    pub peer_cpu_ratio: Option<f64>,
    pub chromium: Contestant,
    pub confab_peer: Contestant,
    /// The app's side in detail (CPU per process and part, frames drawn, on-screen latency);
    /// `null` when it could not run.
    pub app: Option<AppCall>,
    /// The app and one Chromium tab in one call with each other, over the same seconds;
    /// `null` when it could not run.
    pub head_to_head: Option<HeadToHead>,
}

/// The desktop app and one Chromium tab in one call with each other, both process trees
/// measured over the same seconds: the machine's load falls on both alike, so their ratio
/// moves less from run to run than one taken from calls minutes apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadToHead {
    pub measured_s: f64,
    pub app_cpu_s_per_min: Option<f64>,
    pub tab_cpu_s_per_min: Option<f64>,
    /// app / tab (goal: at most 0.6).
    pub app_cpu_ratio: Option<f64>,
    /// The tab's pictures the app drew a second (its remote tile).
    pub app_drawn_fps: Option<f64>,
    /// The app's pictures the tab presented a second.
    pub tab_fps: Option<f64>,
}

impl HeadToHead {
    pub fn new(
        measured_s: f64,
        app_cpu_s: f64,
        tab_cpu_s: f64,
        app_drawn_fps: Option<f64>,
        tab_fps: Option<f64>,
    ) -> Self {
        let (app, tab) = (
            per_min(app_cpu_s, measured_s),
            per_min(tab_cpu_s, measured_s),
        );
        HeadToHead {
            measured_s,
            app_cpu_s_per_min: app,
            tab_cpu_s_per_min: tab,
            app_cpu_ratio: ratio(app, tab),
            app_drawn_fps,
            tab_fps,
        }
    }
}

impl VsBrowserRow {
    pub fn new(
        size: &str,
        chromium: Contestant,
        confab_peer: Contestant,
        app: Option<AppCall>,
        head_to_head: Option<HeadToHead>,
    ) -> Self {
        let tab = chromium.cpu_s_per_min.map(|c| c / 2.0);
        let peer = confab_peer.cpu_s_per_min.map(|c| c / 2.0);
        let app_cpu = app.as_ref().and_then(|a| a.cpu_s_per_min);
        VsBrowserRow {
            size: size.to_owned(),
            app_cpu_s_per_min: app_cpu,
            chromium_tab_cpu_s_per_min: tab,
            app_cpu_ratio: ratio(app_cpu, tab),
            peer_cpu_s_per_min: peer,
            peer_cpu_ratio: ratio(peer, tab),
            chromium,
            confab_peer,
            app,
            head_to_head,
        }
    }
}

/// Per side: one Chromium tab, one confab-peer, the desktop app; and where the app's CPU went.
pub fn vs_browser_sides_table(rows: &[VsBrowserRow]) -> String {
    let mut t = format!(
        "{:>9} {:>16} {:>16} {:>16} {:>10} {:>10}\n",
        "size", "Chromium tab", "confab-peer", "desktop app", "app/tab", "peer/tab"
    );
    for r in rows {
        let _ = writeln!(
            t,
            "{:>9} {:>10} s/min {:>10} s/min {:>10} s/min {:>10} {:>10}",
            r.size,
            fmt1(r.chromium_tab_cpu_s_per_min),
            fmt1(r.peer_cpu_s_per_min),
            fmt1(r.app_cpu_s_per_min),
            fmt_ratio(r.app_cpu_ratio),
            fmt_ratio(r.peer_cpu_ratio),
        );
    }
    for r in rows {
        if let Some(h) = &r.head_to_head {
            let _ = writeln!(
                t,
                "{:>9} head to head (the app and a tab in one call, the same {:.0} s): app {} s/min, tab {} s/min, app/tab {}; fps {} / {}",
                r.size,
                h.measured_s,
                fmt1(h.app_cpu_s_per_min),
                fmt1(h.tab_cpu_s_per_min),
                fmt_ratio(h.app_cpu_ratio),
                fmt1(h.app_drawn_fps),
                fmt1(h.tab_fps),
            );
        }
    }
    for r in rows {
        if let Some(a) = &r.app {
            let _ = writeln!(t, "the desktop app at {}:", r.size);
            t += &app_cpu_lines(a);
            let _ = writeln!(
                t,
                "  drawn remote {} fps, capture -> on screen p50/p95 {} / {} ms",
                fmt1(a.drawn_fps.get("remote").copied()),
                fmt1(a.onscreen_latency_ms_p50),
                fmt1(a.onscreen_latency_ms_p95)
            );
        }
    }
    t
}

pub fn vs_browser_table(rows: &[VsBrowserRow]) -> String {
    let line = |size: &str, who: &str, c: [String; 6]| {
        format!(
            "{:>9} {:<8} {:>9} {:>9} {:>9} {:>7} {:>10} {:>9}\n",
            size, who, c[0], c[1], c[2], c[3], c[4], c[5]
        )
    };
    let mut t = line(
        "size",
        "who",
        [
            "setup ms",
            "p50 ms",
            "p95 ms",
            "fps",
            "CPU s/min",
            "peak MiB",
        ]
        .map(String::from),
    );
    for r in rows {
        let (c, f) = (&r.chromium, &r.confab_peer);
        for (who, x) in [("chromium", c), ("confab", f)] {
            t += &line(
                &r.size,
                who,
                [
                    fmt1(x.setup_ms),
                    fmt1(x.latency_ms_p50),
                    fmt1(x.latency_ms_p95),
                    fmt1(x.fps),
                    fmt1(x.cpu_s_per_min),
                    fmt1(x.peak_mib),
                ],
            );
        }
        let q = |a, b| fmt_ratio(ratio(a, b));
        t += &line(
            &r.size,
            "ratio",
            [
                q(f.setup_ms, c.setup_ms),
                q(f.latency_ms_p50, c.latency_ms_p50),
                q(f.latency_ms_p95, c.latency_ms_p95),
                q(f.fps, c.fps),
                q(f.cpu_s_per_min, c.cpu_s_per_min),
                q(f.peak_mib, c.peak_mib),
            ],
        );
    }
    t
}

// ---------------------------------------------------------------------------------------------
// bench audio

/// `bench audio`: what `confab-audio-bench` measured on the built-in fixtures (one object). The
/// issue's keys first; the rest are the figures beside them. Fields the program adds later are
/// ignored. With espeak-ng installed the figures are on its speech (`talkers`), and the
/// built-in synthetic voices' figures come beside them (`synthetic`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioRun {
    pub erle_median_db: Option<f64>,
    pub erle_p10_db: Option<f64>,
    pub convergence_s: Option<f64>,
    pub double_talk_db: Option<f64>,
    pub noise_gain_db: Option<f64>,
    pub cpu_us_per_frame: Option<f64>,
    #[serde(default)]
    pub talkers: Option<String>,
    #[serde(default)]
    pub reconvergence_s: Option<f64>,
    #[serde(default)]
    pub soft_clip_erle_median_db: Option<f64>,
    #[serde(default)]
    pub soft_clip_erle_p10_db: Option<f64>,
    #[serde(default)]
    pub double_talk_echo_only_db: Option<f64>,
    #[serde(default)]
    pub double_talk_unprocessed_db: Option<f64>,
    #[serde(default)]
    pub noise_speech_change_db: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<Box<AudioRun>>,
}

/// The table: one column of figures, or two (espeak-ng's speech, then the synthetic voices).
pub fn audio_table(r: &AudioRun) -> String {
    let runs: Vec<&AudioRun> = std::iter::once(r).chain(r.synthetic.as_deref()).collect();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "  {:<38} {}",
        "speech",
        runs.iter()
            .map(|r| format!("{:>9}", r.talkers.as_deref().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut row = |what: &str, v: &dyn Fn(&AudioRun) -> String, target: &str| {
        let cells: Vec<String> = runs.iter().map(|r| format!("{:>9}", v(r))).collect();
        let _ = writeln!(t, "  {what:<38} {}   {target}", cells.join(" "));
    };
    row(
        "ERLE median (dB)",
        &|r| fmt1(r.erle_median_db),
        "(target >= 30)",
    );
    row(
        "ERLE 10th percentile (dB)",
        &|r| fmt1(r.erle_p10_db),
        "(target >= 20)",
    );
    row(
        "converged, ERLE >= 15 dB (s)",
        &|r| fmt1(r.convergence_s),
        "(target <= 2)",
    );
    row(
        "reconverged after a path change (s)",
        &|r| fmt1(r.reconvergence_s),
        "(target <= 2)",
    );
    row(
        "soft-clipping speaker ERLE median/p10",
        &|r| {
            format!(
                "{}/{}",
                fmt1(r.soft_clip_erle_median_db),
                fmt1(r.soft_clip_erle_p10_db)
            )
        },
        "",
    );
    row(
        "double talk, near-end seg. SNR (dB)",
        &|r| fmt1(r.double_talk_db),
        "(target >= 10)",
    );
    row(
        "  the same, echo cancellation only",
        &|r| fmt1(r.double_talk_echo_only_db),
        "",
    );
    row(
        "  the microphone unprocessed",
        &|r| fmt1(r.double_talk_unprocessed_db),
        "",
    );
    row(
        "noise: SNR gain at 10 dB SNR (dB)",
        &|r| fmt1(r.noise_gain_db),
        "(target >= 10)",
    );
    row(
        "  speech level change (dB)",
        &|r| fmt1(r.noise_speech_change_db),
        "",
    );
    row(
        "CPU per 10 ms frame (us)",
        &|r| fmt0(r.cpu_us_per_frame),
        &format!(
            "({} % of one core)",
            fmt1(r.cpu_us_per_frame.map(|us| us / 100.0))
        ),
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn peer(json: &str) -> PeerReport {
        serde_json::from_str(json).unwrap()
    }

    fn a_and_b() -> (PeerReport, PeerReport) {
        let a = peer(include_str!("../testdata/peer-a.json"));
        let b = peer(
            r#"{"room":"r","name":"B","id":"2","setup_ms":300.0,"cpu_seconds":0.5,
                "peak_rss_mb":30.0,"duration_seconds":3.0,
                "peers":[{"id":"1","name":"A","setup_ms":300.0,"answer_to_first_frame_ms":90.0,
                          "setup_phases":{"ice_connected_ms":2.0,"connected_ms":8.0,
                                          "first_encoded_ms":21.5,"first_sent_ms":22.0,
                                          "first_received_ms":null,"first_assembled_ms":70.0,
                                          "first_decoded_ms":90.0},
                          "video":{"codec":"vp8","frames_decoded":75,"fps":29.5,
                                   "latency_ms_p50":4.0,"latency_ms_p95":6.0}}]}"#,
        );
        (a, b)
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn call_json_has_one_object_per_size_and_codec_with_the_printed_figures() {
        let (a, b) = a_and_b();
        let rows = vec![
            CallRow::new("640x480", "vp8", 3.0, &a, &b),
            CallRow::new("1280x720", "h264", 3.0, &a, &b),
        ];
        let dir =
            std::env::temp_dir().join(format!("confab-bench-test-call-{}", std::process::id()));
        let path = write_json(&dir, "call.json", &rows).unwrap();
        assert_eq!(path, dir.join("call.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let list = v.as_array().expect("a list");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["size"], "640x480");
        assert_eq!(list[0]["codec"], "vp8");
        assert_eq!(list[1]["size"], "1280x720");
        assert_eq!(list[1]["codec"], "h264");
        assert_eq!(
            keys(&list[0]),
            [
                "answer_to_first_frame_ms",
                "answerer",
                "caller",
                "codec",
                "duration_s",
                "setup_ms",
                "setup_phases",
                "size"
            ]
        );
        // A's own phases, and B's pictures going out from B's report.
        let phases = &list[0]["setup_phases"];
        assert_eq!(phases["ice_connected_ms"].as_f64(), Some(3.1));
        assert_eq!(phases["first_received_ms"].as_f64(), Some(40.2));
        assert_eq!(phases["first_decoded_ms"].as_f64(), Some(85.1));
        assert_eq!(phases["first_encoded_ms"].as_f64(), Some(21.5));
        assert_eq!(phases["first_sent_ms"].as_f64(), Some(22.0));
        let side_keys = [
            "answer_to_first_frame_ms",
            "cpu_s_per_min",
            "fps",
            "frames_decoded",
            "latency_ms_p50",
            "latency_ms_p95",
            "peak_rss_mib",
        ];
        assert_eq!(keys(&list[0]["caller"]), side_keys);
        assert_eq!(keys(&list[0]["answerer"]), side_keys);
        // The figures are the reports' own.
        let from_b = a.remote().unwrap();
        assert_eq!(
            list[0]["answer_to_first_frame_ms"].as_f64(),
            from_b.answer_to_first_frame_ms
        );
        assert_eq!(list[0]["setup_ms"].as_f64(), a.setup_ms);
        assert_eq!(
            list[0]["caller"]["latency_ms_p50"].as_f64(),
            from_b.video.latency_ms_p50
        );
        assert_eq!(list[0]["answerer"]["fps"].as_f64(), Some(29.5));
        assert_eq!(list[0]["answerer"]["cpu_s_per_min"].as_f64(), Some(10.0));
        assert_eq!(list[0]["answerer"]["frames_decoded"].as_u64(), Some(75));
        // And it reads back into the same rows.
        let back: Vec<CallRow> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rows);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn phases_table_prints_each_phase_of_each_run() {
        let (a, b) = a_and_b();
        let mut silent = b.clone();
        silent.peers.clear();
        let t = phases_table(&[
            CallRow::new("1280x720", "h264", 3.0, &a, &b),
            CallRow::new("640x480", "vp8", 3.0, &silent, &silent),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].contains("assembled"), "{t}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            ["1280x720", "h264", "3", "10", "22", "22", "40", "53", "85"]
        );
        assert_eq!(lines[2].matches(" -").count(), 7, "{t}");
    }

    #[test]
    fn call_table_prints_the_rows_figures_and_dashes_for_missing_ones() {
        let (a, b) = a_and_b();
        let mut silent = b.clone();
        silent.peers.clear();
        silent.setup_ms = None;
        let t = call_table(&[
            CallRow::new("640x480", "vp8", 3.0, &a, &b),
            CallRow::new("640x480", "h264", 3.0, &silent, &silent),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].contains("answer->1st"));
        let ans = format!(
            "{:.0} ms",
            a.remote().unwrap().answer_to_first_frame_ms.unwrap()
        );
        assert!(lines[1].contains(&ans), "{t}");
        assert!(lines[1].contains("4.0/6.0"), "{t}"); // B <- A
        assert!(lines[1].contains("10.0"), "{t}"); // B's CPU s/min
        assert!(lines[2].contains("- ms") && lines[2].contains("-/-"), "{t}");
    }

    #[test]
    fn vs_browser_json_has_per_side_figures_with_the_app_beside_the_tab() {
        let chromium = Contestant {
            setup_ms: Some(331.0),
            latency_ms_p50: Some(29.6),
            latency_ms_p95: Some(50.4),
            fps: Some(27.1),
            cpu_s_per_min: Some(50.0),
            peak_mib: Some(1672.0),
        };
        let confab = Contestant {
            setup_ms: Some(81.0),
            latency_ms_p50: Some(3.7),
            latency_ms_p95: None,
            fps: Some(30.0),
            cpu_s_per_min: Some(15.0),
            peak_mib: Some(41.0),
        };
        let app = app_call([("remote".to_owned(), 30.0)].into_iter().collect());
        // 8 and 16 CPU seconds in the same 32 s: 15 and 30 s/min.
        let h2h = HeadToHead::new(32.0, 8.0, 16.0, Some(29.5), Some(26.0));
        let rows = vec![
            VsBrowserRow::new(
                "640x480",
                chromium.clone(),
                confab.clone(),
                Some(app),
                Some(h2h),
            ),
            VsBrowserRow::new("1280x720", chromium, confab, None, None),
        ];
        let dir = std::env::temp_dir().join(format!("confab-bench-test-vs-{}", std::process::id()));
        let path = write_json(&dir, "vs-browser.json", &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let row = &v.as_array().expect("a list")[0];
        assert_eq!(
            keys(row),
            [
                "app",
                "app_cpu_ratio",
                "app_cpu_s_per_min",
                "chromium",
                "chromium_tab_cpu_s_per_min",
                "confab_peer",
                "head_to_head",
                "peer_cpu_ratio",
                "peer_cpu_s_per_min",
                "size"
            ]
        );
        assert_eq!(row["size"], "640x480");
        assert_eq!(row["chromium_tab_cpu_s_per_min"].as_f64(), Some(25.0));
        assert_eq!(row["peer_cpu_s_per_min"].as_f64(), Some(7.5));
        assert_eq!(row["peer_cpu_ratio"].as_f64(), Some(0.3));
        // The app's own side (51 s/min) against one tab (25 s/min).
        assert_eq!(row["app_cpu_s_per_min"].as_f64(), Some(51.0));
        assert_eq!(row["app_cpu_ratio"].as_f64(), Some(2.04));
        assert_eq!(
            row["app"]["cpu_s_per_min_by_part"]["decode"].as_f64(),
            Some(9.0)
        );
        let without = &v.as_array().unwrap()[1];
        assert!(without["app_cpu_s_per_min"].is_null() && without["app_cpu_ratio"].is_null());
        assert!(without["app"].is_null());
        assert!(without["head_to_head"].is_null());
        let h = &row["head_to_head"];
        assert_eq!(h["app_cpu_s_per_min"].as_f64(), Some(15.0));
        assert_eq!(h["tab_cpu_s_per_min"].as_f64(), Some(30.0));
        assert_eq!(h["app_cpu_ratio"].as_f64(), Some(0.5));
        assert_eq!(
            keys(h),
            [
                "app_cpu_ratio",
                "app_cpu_s_per_min",
                "app_drawn_fps",
                "measured_s",
                "tab_cpu_s_per_min",
                "tab_fps"
            ]
        );
        assert!(row["confab_peer"]["latency_ms_p95"].is_null());
        assert_eq!(row["chromium"]["peak_mib"].as_f64(), Some(1672.0));
        let back: Vec<VsBrowserRow> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rows);
        let t = vs_browser_table(&rows);
        let ratio_line = t.lines().find(|l| l.contains("ratio")).unwrap();
        assert!(
            ratio_line.contains("0.30") && ratio_line.contains("0.24"),
            "{t}"
        );
        let sides = vs_browser_sides_table(&rows);
        let first = sides.lines().nth(1).unwrap();
        assert!(
            first.contains("25.0 s/min") && first.contains("51.0 s/min"),
            "{sides}"
        );
        assert!(first.contains("2.04") && first.contains("0.30"), "{sides}");
        assert!(sides.contains("the desktop app at 640x480:") && sides.contains("part decode"));
        assert!(!sides.contains("the desktop app at 1280x720"), "{sides}");
        let head = sides.lines().find(|l| l.contains("head to head")).unwrap();
        assert!(
            head.contains("640x480")
                && head.contains("app 15.0 s/min, tab 30.0 s/min, app/tab 0.50")
                && head.contains("fps 29.5 / 26.0"),
            "{sides}"
        );
        assert_eq!(sides.matches("head to head").count(), 1, "{sides}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn signal_json_round_trips_with_the_servers_figures() {
        let s: LoadgenSummary =
            serde_json::from_str(include_str!("../testdata/loadgen-summary.json")).unwrap();
        let rows = vec![
            SignalRow::new(1000.0, 200, 1, &s, Some(0.8), None),
            SignalRow::new(1000.0, 200, 3, &s, Some(1.9), None),
        ];
        let dir =
            std::env::temp_dir().join(format!("confab-bench-test-signal-{}", std::process::id()));
        let path = write_json(&dir, "signal.json", &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let row = &v.as_array().expect("a list")[0];
        assert_eq!(
            keys(row),
            [
                "connect_failures",
                "connections_held",
                "connections_wanted",
                "duration_s",
                "errors",
                "generator_cpu_s",
                "latency_ms_max",
                "latency_ms_p50",
                "latency_ms_p99",
                "nodes",
                "payload_bytes",
                "rate",
                "relayed_per_second",
                "server_cpu_s",
                "server_peak_rss_mib"
            ]
        );
        assert_eq!(row["rate"].as_f64(), Some(1000.0));
        assert_eq!(row["connections_held"].as_u64(), Some(s.connections_held));
        assert_eq!(row["latency_ms_p99"].as_f64(), Some(s.latency_ms_p99));
        assert_eq!(row["server_cpu_s"].as_f64(), Some(0.8));
        assert!(row["server_peak_rss_mib"].is_null());
        assert_eq!(row["nodes"].as_u64(), Some(1));
        assert_eq!(v[1]["nodes"].as_u64(), Some(3));
        let back: Vec<SignalRow> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rows);
        let table = signal_table(&rows);
        assert!(table.lines().next().unwrap().contains("nodes"), "{table}");
        let three = table.lines().nth(2).unwrap();
        assert!(three.contains("1.9 s"), "{table}");
        assert_eq!(three.split_whitespace().nth(1), Some("3"), "{table}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn app_call(drawn: BTreeMap<String, f64>) -> AppCall {
        AppCall {
            size: "1280x720".into(),
            measured_s: 20.0,
            idle_cpu_pct_of_core: Some(1.5),
            idle_pss_mib: 226.0,
            call_peak_pss_mib: 287.0,
            cpu_s_per_min: crate::reports::per_min(17.0, 20.0),
            cpu_pct_of_core_by_process: [("confab".to_owned(), 51.0)].into_iter().collect(),
            cpu_s_per_min_by_part: [("decode".to_owned(), 9.0)].into_iter().collect(),
            drawn_fps: drawn,
            onscreen_latency_ms_p50: Some(12.5),
            onscreen_latency_ms_p95: Some(19.0),
            cpu_painting: Some(true),
        }
    }

    #[test]
    fn min_median_max_of_launches() {
        assert_eq!(min_median_max(&[]), None);
        assert_eq!(
            min_median_max(&[900.0, 300.0, 500.0]),
            Some((300.0, 500.0, 900.0))
        );
    }

    #[test]
    fn app_json_round_trips_and_averages_drawn_frames_per_tile_kind() {
        let samples: Vec<BTreeMap<String, f64>> = [
            r#"{"uptime_s":1,"drawn_per_second":{"local":30,"7":28}}"#,
            r#"{"uptime_s":2,"drawn_per_second":{"local":30,"7":30}}"#,
        ]
        .iter()
        .map(|j| {
            serde_json::from_str::<crate::reports::AppFigures>(j)
                .unwrap()
                .drawn_per_second
        })
        .collect();
        let drawn = drawn_fps(&samples);
        assert_eq!(drawn["local"], 30.0);
        assert_eq!(drawn["remote"], 29.0);
        let run = AppRun {
            launches_ms: vec![1890.0, 612.0, 640.0],
            window_ready_ms: 1890.0,
            call: app_call(drawn.clone()),
            streams: Some(app_call(drawn)),
        };
        let dir =
            std::env::temp_dir().join(format!("confab-bench-test-app-{}", std::process::id()));
        let path = write_json(&dir, "app.json", &run).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            keys(&v),
            [
                "call_peak_pss_mib",
                "cpu_painting",
                "cpu_pct_of_core_by_process",
                "cpu_s_per_min",
                "cpu_s_per_min_by_part",
                "drawn_fps",
                "idle_cpu_pct_of_core",
                "idle_pss_mib",
                "launches_ms",
                "measured_s",
                "onscreen_latency_ms_p50",
                "onscreen_latency_ms_p95",
                "size",
                "streams",
                "window_ready_ms"
            ]
        );
        assert_eq!(v["cpu_s_per_min"].as_f64(), Some(51.0));
        assert_eq!(v["cpu_painting"].as_bool(), Some(true));
        assert!(app_table(&run).contains("the page painted             on the CPU"));
        assert_eq!(v["drawn_fps"]["remote"].as_f64(), Some(29.0));
        assert_eq!(
            v["cpu_pct_of_core_by_process"]["confab"].as_f64(),
            Some(51.0)
        );
        assert_eq!(v["launches_ms"][0].as_f64(), Some(1890.0));
        let back: AppRun = serde_json::from_str(&text).unwrap();
        assert_eq!(back, run);
        let t = app_table(&run);
        assert!(
            t.contains("612 / 640 / 1890 ms") && t.contains("85 % of one core"),
            "{t}"
        );
        assert!(
            t.contains("12.5 / 19.0 ms") && t.contains("1.5 % of one core"),
            "{t}"
        );
        assert!(t.contains("part decode") && t.contains("9.0 s/min"), "{t}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writing_into_an_unwritable_place_is_a_worded_error() {
        let file =
            std::env::temp_dir().join(format!("confab-bench-test-file-{}", std::process::id()));
        std::fs::write(&file, "not a directory").unwrap();
        let e = write_json(&file, "call.json", &Vec::<CallRow>::new()).unwrap_err();
        assert!(e.to_string().starts_with("writing "), "{e}");
        assert!(e.to_string().contains("call.json"), "{e}");
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn audio_json_keeps_the_issues_keys_and_reads_what_the_program_prints() {
        let printed = r#"{"erle_median_db":46.2,"erle_p10_db":36.4,"convergence_s":0.1,
            "reconvergence_s":1.0,"soft_clip_erle_median_db":44.1,"soft_clip_erle_p10_db":24.4,
            "double_talk_db":4.8,"double_talk_echo_only_db":11.8,"noise_gain_db":12.7,
            "noise_speech_change_db":-0.5,"cpu_us_per_frame":470.5,"later_field":1}"#;
        let run: AudioRun = serde_json::from_str(printed).unwrap();
        let v = serde_json::to_value(&run).unwrap();
        for key in [
            "erle_median_db",
            "erle_p10_db",
            "convergence_s",
            "double_talk_db",
            "noise_gain_db",
            "cpu_us_per_frame",
        ] {
            assert!(v[key].is_number(), "{key}");
        }
        let t = audio_table(&run);
        assert!(t.contains("46.2") && t.contains("4.7 % of one core"), "{t}");
        assert!(v.get("synthetic").is_none(), "{v}");
        // espeak-ng's figures with the synthetic voices' beside them: two columns.
        let both = r#"{"talkers":"espeak-ng","erle_median_db":51.1,"erle_p10_db":41.1,
            "convergence_s":1.9,"double_talk_db":10.7,"noise_gain_db":12.0,"cpu_us_per_frame":450,
            "synthetic":{"talkers":"synthetic","erle_median_db":42.8,"erle_p10_db":33.5,
            "convergence_s":0.1,"double_talk_db":7.6,"noise_gain_db":12.6,"cpu_us_per_frame":450}}"#;
        let run: AudioRun = serde_json::from_str(both).unwrap();
        assert_eq!(
            serde_json::to_value(&run).unwrap()["synthetic"]["double_talk_db"],
            7.6
        );
        let t = audio_table(&run);
        let line = |what: &str| t.lines().find(|l| l.contains(what)).unwrap().to_string();
        assert!(
            line("speech").contains("espeak-ng") && line("speech").contains("synthetic"),
            "{t}"
        );
        let dt = line("double talk, near-end");
        assert!(dt.find("10.7").unwrap() < dt.find("7.6").unwrap(), "{t}");
        // A figure the program could not take is `-`.
        let none: AudioRun = serde_json::from_str(
            r#"{"erle_median_db":null,"erle_p10_db":1,"convergence_s":null,
                "double_talk_db":1,"noise_gain_db":1,"cpu_us_per_frame":null}"#,
        )
        .unwrap();
        assert!(
            audio_table(&none).contains("  -   "),
            "{}",
            audio_table(&none)
        );
    }
}

/// One room size and mode of `bench room`: everyone calls everyone, in a mesh or through Janus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomRow {
    pub people: usize,
    /// `mesh` or `sfu`.
    pub mode: String,
    /// `WIDTHxHEIGHT@FPS`.
    pub video: String,
    pub duration_s: f64,
    /// Per peer process: mean and highest CPU seconds per minute.
    pub cpu_s_per_min_mean: Option<f64>,
    pub cpu_s_per_min_max: Option<f64>,
    /// Per peer: mean of everything sent and received (kbit/s, last seconds of the call).
    pub uplink_kbps_mean: f64,
    pub downlink_kbps_mean: f64,
    /// Mean frames per second decoded per pair (sender, receiver).
    pub fps_per_pair_mean: Option<f64>,
    /// Pairs that decoded pictures, of people x (people - 1).
    pub pairs_decoding: usize,
    pub pairs: usize,
    /// Janus's CPU seconds per minute (the SFU runs only).
    pub janus_cpu_s_per_min: Option<f64>,
}

impl RoomRow {
    pub fn new(
        mode: &str,
        video: &str,
        duration_s: f64,
        reports: &[PeerReport],
        janus_cpu_s_per_min: Option<f64>,
    ) -> Self {
        let n = reports.len();
        let cpu: Vec<f64> = reports
            .iter()
            .filter_map(PeerReport::cpu_s_per_min)
            .collect();
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let fps: Vec<f64> = reports
            .iter()
            .flat_map(|r| r.peers.iter().filter_map(|p| p.video.fps))
            .collect();
        let up: Vec<f64> = reports.iter().map(PeerReport::uplink_kbps).collect();
        let down: Vec<f64> = reports.iter().map(PeerReport::downlink_kbps).collect();
        RoomRow {
            people: n,
            mode: mode.to_owned(),
            video: video.to_owned(),
            duration_s,
            cpu_s_per_min_mean: mean(&cpu),
            cpu_s_per_min_max: cpu.iter().copied().reduce(f64::max),
            uplink_kbps_mean: mean(&up).unwrap_or(0.0),
            downlink_kbps_mean: mean(&down).unwrap_or(0.0),
            fps_per_pair_mean: mean(&fps),
            pairs_decoding: reports
                .iter()
                .flat_map(|r| r.peers.iter())
                .filter(|p| p.video.frames_decoded > 0)
                .count(),
            pairs: n * n.saturating_sub(1),
            janus_cpu_s_per_min,
        }
    }
}

/// `bench room`'s table: one line per room size and mode.
pub fn room_table(rows: &[RoomRow]) -> String {
    let mut t = format!(
        "{:>6} {:>4} {:>16} {:>12} {:>11} {:>11} {:>9} {:>7} {:>11}\n",
        "people",
        "mode",
        "CPU s/min peer",
        "(max)",
        "uplink kb/s",
        "downlink",
        "fps/pair",
        "pairs",
        "Janus s/min"
    );
    for r in rows {
        let _ = writeln!(
            t,
            "{:>6} {:>4} {:>16} {:>12} {:>11.0} {:>11.0} {:>9} {:>3}/{:<3} {:>11}",
            r.people,
            r.mode,
            fmt1(r.cpu_s_per_min_mean),
            fmt1(r.cpu_s_per_min_max),
            r.uplink_kbps_mean,
            r.downlink_kbps_mean,
            fmt1(r.fps_per_pair_mean),
            r.pairs_decoding,
            r.pairs,
            fmt1(r.janus_cpu_s_per_min),
        );
    }
    t
}

#[cfg(test)]
mod room_tests {
    use super::*;
    use crate::reports::{Network, RemotePeer, RemoteVideo};

    fn peer(up: f64, to: usize, fps: f64, sfu: Option<f64>) -> PeerReport {
        PeerReport {
            cpu_seconds: 6.0,
            duration_seconds: 30.0,
            peers: (0..to)
                .map(|_| RemotePeer {
                    video: RemoteVideo {
                        frames_decoded: 10,
                        fps: Some(fps),
                        ..Default::default()
                    },
                    network: Network {
                        send_kbps: up,
                        recv_kbps: 100.0,
                        ..Default::default()
                    },
                    ..Default::default()
                })
                .collect(),
            sfu: sfu.map(|s| Network {
                send_kbps: s,
                recv_kbps: 1.0,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_room_row_sums_each_peers_links_and_its_sfu_uplink() {
        let mesh = RoomRow::new(
            "mesh",
            "320x240@15",
            30.0,
            &[
                peer(200.0, 2, 15.0, None),
                peer(200.0, 2, 13.0, None),
                peer(200.0, 2, 14.0, None),
            ],
            None,
        );
        assert_eq!((mesh.people, mesh.pairs, mesh.pairs_decoding), (3, 6, 6));
        assert_eq!(mesh.uplink_kbps_mean, 400.0);
        assert_eq!(mesh.downlink_kbps_mean, 200.0);
        assert_eq!(mesh.cpu_s_per_min_mean, Some(12.0));
        assert_eq!(mesh.fps_per_pair_mean, Some(14.0));
        let sfu = RoomRow::new(
            "sfu",
            "320x240@15",
            30.0,
            &[
                peer(2.0, 1, 15.0, Some(300.0)),
                peer(2.0, 1, 15.0, Some(300.0)),
            ],
            Some(9.0),
        );
        assert_eq!(sfu.uplink_kbps_mean, 302.0);
        assert_eq!(sfu.downlink_kbps_mean, 101.0);
        assert!(room_table(&[mesh, sfu]).contains("sfu"));
    }
}
