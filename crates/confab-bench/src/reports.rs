//! What the measured programs report, read with serde.
//!
//! Each struct mirrors the JSON one program writes (the struct it serializes is named on each).
//! Only the fields the benchmarks use are listed; fields a program adds later are ignored, and a
//! figure a program could not take (`null`, or missing) reads as `None` and prints as `-`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `confab-peer --stats-json`: `Report` in `crates/confab-peer/src/main.rs`, one object.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PeerReport {
    #[serde(default)]
    pub room: String,
    #[serde(default)]
    pub name: String,
    /// From the join to the first decoded picture (the earliest over the peers).
    #[serde(default)]
    pub setup_ms: Option<f64>,
    /// Whole-process user + system CPU seconds, taken at exit.
    pub cpu_seconds: f64,
    /// Peak resident set, MiB.
    #[serde(default)]
    pub peak_rss_mb: Option<f64>,
    /// From the join to the report.
    pub duration_seconds: f64,
    /// One entry per remote peer (`PeerStats` in `crates/confab-engine/src/stats.rs`).
    #[serde(default)]
    pub peers: Vec<RemotePeer>,
    /// In a call through an SFU: what the peer sends to it.
    #[serde(default)]
    pub sfu: Option<Network>,
}

/// A link's rates (`NetworkStats`), kbit/s over the last seconds.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Network {
    #[serde(default)]
    pub send_kbps: f64,
    #[serde(default)]
    pub recv_kbps: f64,
    /// The selected candidate pair's round trip.
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// Lost packets this peer asked the sender for again (NACK), since its link began.
    #[serde(default)]
    pub nacked: u64,
}

/// What one peer received from one remote peer (`PeerStats`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RemotePeer {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub setup_ms: Option<f64>,
    /// From the answer (sent or received) to the first picture decoded from this peer.
    #[serde(default)]
    pub answer_to_first_frame_ms: Option<f64>,
    /// Where that time went (`SetupPhases` in `crates/confab-engine/src/stats.rs`).
    #[serde(default)]
    pub setup_phases: SetupPhases,
    #[serde(default)]
    pub video: RemoteVideo,
    #[serde(default)]
    pub audio: RemoteAudio,
    #[serde(default)]
    pub network: Network,
}

/// `AudioStats` in `crates/confab-engine/src/stats.rs`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RemoteAudio {
    /// Lost audio the decoder made up, ms.
    #[serde(default)]
    pub concealed_ms: f64,
    /// Lost packets rebuilt from the next packet's FEC.
    #[serde(default)]
    pub fec_recovered: u64,
    /// Packets received, and packets missing at their turn to play.
    #[serde(default)]
    pub packets: u64,
    #[serde(default)]
    pub lost: u64,
}

impl RemoteAudio {
    /// Of the 20 ms frames the sender sent, the share played from a packet or rebuilt from
    /// FEC (%; `None` before any packet).
    pub fn real_or_fec_pct(&self) -> Option<f64> {
        let frames = self.packets + self.lost;
        let not_rebuilt = self.lost.saturating_sub(self.fec_recovered);
        (frames > 0).then(|| 100.0 - not_rebuilt as f64 * 100.0 / frames as f64)
    }
}

/// A link's set-up phases, milliseconds after its own answer (`SetupPhases`): ICE and the
/// connection are the link's, `first_encoded`/`first_sent` this peer's pictures going out,
/// `first_received`/`assembled`/`decoded` the other side's pictures coming in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetupPhases {
    #[serde(default)]
    pub ice_connected_ms: Option<f64>,
    #[serde(default)]
    pub connected_ms: Option<f64>,
    #[serde(default)]
    pub first_encoded_ms: Option<f64>,
    #[serde(default)]
    pub first_sent_ms: Option<f64>,
    #[serde(default)]
    pub first_received_ms: Option<f64>,
    #[serde(default)]
    pub first_assembled_ms: Option<f64>,
    #[serde(default)]
    pub first_decoded_ms: Option<f64>,
}

/// `VideoStats` in `crates/confab-engine/src/stats.rs`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RemoteVideo {
    #[serde(default)]
    pub codec: Option<String>,
    #[serde(default)]
    pub frames_decoded: u64,
    #[serde(default)]
    pub fps: Option<f64>,
    /// Capture -> decoded, read from the test pattern's timestamps.
    #[serde(default)]
    pub latency_ms_p50: Option<f64>,
    #[serde(default)]
    pub latency_ms_p95: Option<f64>,
    /// Pictures that read back as the test pattern, and those out of order.
    #[serde(default)]
    pub pattern_frames: u64,
    #[serde(default)]
    pub frames_out_of_order: u64,
    /// Gaps of more than 300 ms between two decoded pictures, and their total.
    #[serde(default)]
    pub freezes: u64,
    #[serde(default)]
    pub freeze_ms_total: f64,
}

impl PeerReport {
    /// Reads the report a confab-peer wrote with `--stats-json PATH`.
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("confab-peer's report {}", path.display()))
    }

    /// The first remote peer: in a two-peer call, the other side.
    pub fn remote(&self) -> Option<&RemotePeer> {
        self.peers.first()
    }

    /// CPU seconds per minute of the run.
    pub fn cpu_s_per_min(&self) -> Option<f64> {
        per_min(self.cpu_seconds, self.duration_seconds)
    }

    /// Everything the peer sends, kbit/s: to each peer in a mesh, or to the SFU (plus the
    /// receiver reports on each subscriber link).
    pub fn uplink_kbps(&self) -> f64 {
        let links: f64 = self.peers.iter().map(|p| p.network.send_kbps).sum();
        links + self.sfu.as_ref().map_or(0.0, |s| s.send_kbps)
    }

    /// Everything the peer receives, kbit/s.
    pub fn downlink_kbps(&self) -> f64 {
        let links: f64 = self.peers.iter().map(|p| p.network.recv_kbps).sum();
        links + self.sfu.as_ref().map_or(0.0, |s| s.recv_kbps)
    }
}

/// `a` per minute of `secs`, when that is a number.
pub fn per_min(a: f64, secs: f64) -> Option<f64> {
    Some(a / secs * 60.0).filter(|v| v.is_finite())
}

/// The last stdout line of `confab-loadgen`: `Summary` in `crates/confab-loadgen/src/main.rs`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LoadgenSummary {
    #[serde(default)]
    pub connections_wanted: u64,
    pub connections_held: u64,
    #[serde(default)]
    pub connect_failures: u64,
    #[serde(default)]
    pub connections_dropped: u64,
    #[serde(default)]
    pub duration_seconds: f64,
    #[serde(default)]
    pub messages_relayed: u64,
    pub relayed_per_second: f64,
    #[serde(default)]
    pub errors: u64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// The generator's own CPU over the relay phase.
    pub generator_cpu_seconds: f64,
}

/// One entry of the web client's `window.confabWeb.report()` (`report` in
/// `crates/confab-signal/web/measure.js`): what one browser read from one remote peer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct BrowserPeer {
    #[serde(default)]
    pub name: Option<String>,
    /// The call's phase with this peer (`connected`, ...).
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub frames: u64,
    #[serde(default)]
    pub setup_ms: Option<f64>,
    /// Capture -> presented (requestVideoFrameCallback).
    #[serde(default)]
    pub latency_ms_p50: Option<f64>,
    #[serde(default)]
    pub latency_ms_p95: Option<f64>,
    #[serde(default)]
    pub fps: Option<f64>,
    #[serde(default)]
    pub codec: Option<String>,
    /// Gaps of more than 300 ms between two presented frames, and their total (as
    /// confab-peer counts its decoded pictures).
    #[serde(default)]
    pub freezes: u64,
    #[serde(default)]
    pub freeze_ms_total: f64,
    /// From the first frame to the report.
    #[serde(default)]
    pub watched_ms: f64,
}

impl BrowserPeer {
    /// The reports in a Chromium console line `... "CONFAB-REPORT [...]", source: ...` (what
    /// the web client prints with `report=SECS` in its URL, and Chromium's
    /// `--enable-logging=stderr` shows); `None` for any other line.
    pub fn from_console(line: &str) -> Option<Vec<BrowserPeer>> {
        let start = line.find("CONFAB-REPORT ")? + "CONFAB-REPORT ".len();
        let end = line.rfind("\", source:")?;
        serde_json::from_str(line.get(start..end)?).ok()
    }
}

/// The desktop app's `--stats-json` file, rewritten every second (`write_figures` in
/// `src-tauri/src/main.rs`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AppFigures {
    #[serde(default)]
    pub uptime_s: f64,
    /// Frames drawn in the last second, per tile (`local`, or a remote peer's id).
    #[serde(default)]
    pub drawn_per_second: BTreeMap<String, f64>,
    /// Capture -> drawn, over the last remote pictures (the window reads the pattern back).
    #[serde(default)]
    pub onscreen_latency_ms_p50: Option<f64>,
    #[serde(default)]
    pub onscreen_latency_ms_p95: Option<f64>,
}

impl AppFigures {
    /// The app's `--stats-json` file as it is now: the app rewrites it every second, and a
    /// half-written one reads as `None`.
    pub fn read(path: &std::path::Path) -> Option<AppFigures> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller's report in exactly the shape `confab-peer` writes (every field of `Report`,
    /// `PeerStats`, `VideoStats` and `AudioStats`, in their order), figures from a 640x480 VP8
    /// run (see testdata/README.md for where the samples come from).
    const PEER_A: &str = include_str!("../testdata/peer-a.json");

    /// The line Chromium wrote for a page's `console.log` (a report with its quotes as they
    /// are: Chromium does not escape them).
    #[test]
    fn reads_a_browser_report_from_chromiums_console() {
        let line = r#"[91:91:1204/220019.202705:INFO:CONSOLE:1] "CONFAB-REPORT [{"id":"x","name":"A","frames":300,"fps":29.5,"latency_ms_p50":41,"latency_ms_p95":80.5,"freezes":2,"freeze_ms_total":900.5,"setup_ms":812,"chat":[]}]", source: http://10.0.0.1:1/client.js (1260)"#;
        let r = BrowserPeer::from_console(line).expect("a report");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name.as_deref(), Some("A"));
        assert_eq!((r[0].frames, r[0].freezes), (300, 2));
        assert_eq!(r[0].freeze_ms_total, 900.5);
        assert_eq!(r[0].latency_ms_p95, Some(80.5));
        assert!(
            BrowserPeer::from_console("[1:1:INFO:CONSOLE:1] \"hello\", source: x (1)").is_none()
        );
        assert!(BrowserPeer::from_console("CONFAB-REPORT [{]\", source: x").is_none());
    }

    #[test]
    fn reads_a_confab_peer_report_in_its_written_shape() {
        let r: PeerReport = serde_json::from_str(PEER_A).unwrap();
        assert_eq!(r.name, "A");
        assert!(r.room.starts_with("bench-640x480-vp8"), "{}", r.room);
        assert!(r.cpu_seconds > 0.0 && r.duration_seconds > 2.5);
        assert!(r.peak_rss_mb.unwrap() > 1.0);
        let b = r.remote().expect("the other peer");
        assert_eq!(b.name, "B");
        assert_eq!(b.video.codec.as_deref(), Some("vp8"));
        assert!(b.video.frames_decoded > 10, "{:?}", b.video);
        assert!(b.video.fps.unwrap() > 1.0);
        let (p50, p95) = (
            b.video.latency_ms_p50.unwrap(),
            b.video.latency_ms_p95.unwrap(),
        );
        assert!(p50 > 0.0 && p95 >= p50, "{p50} {p95}");
        assert!(b.answer_to_first_frame_ms.unwrap() > 0.0);
        assert!(r.setup_ms.unwrap() >= b.answer_to_first_frame_ms.unwrap());
        let per_min = r.cpu_s_per_min().unwrap();
        assert!((per_min - r.cpu_seconds / r.duration_seconds * 60.0).abs() < 1e-9);
    }

    #[test]
    fn audio_played_or_rebuilt_counts_what_fec_did_not_rebuild() {
        let a = RemoteAudio {
            packets: 900,
            lost: 100,
            fec_recovered: 70,
            ..Default::default()
        };
        assert_eq!(a.real_or_fec_pct(), Some(97.0));
        assert_eq!(RemoteAudio::default().real_or_fec_pct(), None);
    }

    #[test]
    fn a_peer_that_saw_nobody_reads_as_missing_figures_not_an_error() {
        let r: PeerReport = serde_json::from_str(
            r#"{"room":"r","name":"A","id":"1","setup_ms":null,"cpu_seconds":0.4,
                "peak_rss_mb":20.5,"duration_seconds":3.0,"peers":[]}"#,
        )
        .unwrap();
        assert_eq!(r.setup_ms, None);
        assert!(r.remote().is_none());
        assert_eq!(r.cpu_s_per_min(), Some(8.0));
    }

    #[test]
    fn fields_added_later_are_ignored() {
        // Issue 10 adds rtt_ms, loss_pct, ... to the peer stats: the bench must keep reading.
        let r: PeerReport = serde_json::from_str(
            r#"{"cpu_seconds":1.0,"duration_seconds":2.0,"new_top":1,
                "peers":[{"name":"B","answer_to_first_frame_ms":70.5,"rtt_ms":0.2,
                          "video":{"fps":30.0,"latency_ms_p50":3.5,"latency_ms_p95":null,"freezes":0}}]}"#,
        )
        .unwrap();
        let b = r.remote().unwrap();
        assert_eq!(b.answer_to_first_frame_ms, Some(70.5));
        assert_eq!(b.video.latency_ms_p50, Some(3.5));
        assert_eq!(b.video.latency_ms_p95, None);
    }

    #[test]
    fn a_report_without_its_cpu_figure_is_an_error() {
        let e = serde_json::from_str::<PeerReport>(r#"{"duration_seconds":2.0}"#).unwrap_err();
        assert!(e.to_string().contains("cpu_seconds"), "{e}");
    }

    #[test]
    fn reads_a_loadgen_summary_in_its_written_shape() {
        let s: LoadgenSummary =
            serde_json::from_str(include_str!("../testdata/loadgen-summary.json")).unwrap();
        assert_eq!(s.connections_wanted, 200);
        assert_eq!(s.connections_held, 200);
        assert!(s.relayed_per_second > 100.0, "{s:?}");
        assert!(s.latency_ms_p50 > 0.0 && s.latency_ms_p99 >= s.latency_ms_p50);
        assert!(s.latency_ms_max >= s.latency_ms_p99);
        assert!(s.generator_cpu_seconds > 0.0);
    }

    #[test]
    fn reads_the_web_clients_report() {
        // The shape `report()` in measure.js returns (the keys it writes, in its order).
        let v: Vec<BrowserPeer> = serde_json::from_str(
            r#"[{"id":"2","name":"B","phase":"in_call","frames":410,"pattern_frames":409,
                 "frames_out_of_order":0,"frames_repeated":1,"last_frame":455,"width":640,
                 "height":480,"latency_ms_p50":29.6,"latency_ms_p95":50.4,"fps":27.1,
                 "setup_ms":331,"verification_code":"123 456","framesDecoded":420,
                 "freezeCount":0,"codec":"video/H264","audioPackets":0,"audioLevel":0}]"#,
        )
        .unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name.as_deref(), Some("B"));
        assert_eq!(v[0].setup_ms, Some(331.0));
        assert_eq!(v[0].latency_ms_p95, Some(50.4));
        assert_eq!(v[0].fps, Some(27.1));
        assert_eq!(v[0].codec.as_deref(), Some("video/H264"));
        // Before the first frame the client reports nulls.
        let v: Vec<BrowserPeer> = serde_json::from_str(
            r#"[{"name":"B","frames":0,"latency_ms_p50":null,"latency_ms_p95":null,"fps":0,"setup_ms":null}]"#,
        )
        .unwrap();
        assert_eq!((v[0].setup_ms, v[0].latency_ms_p50), (None, None));
    }

    #[test]
    fn reads_the_apps_figures_file() {
        // The shape `write_figures` in src-tauri writes: counts per tile in the last second.
        let f: AppFigures =
            serde_json::from_str(r#"{"uptime_s":12.5,"drawn_per_second":{"local":30,"7":29}}"#)
                .unwrap();
        assert_eq!(f.uptime_s, 12.5);
        assert_eq!(f.drawn_per_second["local"], 30.0);
        assert_eq!(f.drawn_per_second["7"], 29.0);
    }
}
