//! The Windows build in a real call: `confab-signal.exe` and `confab-peer.exe`, cross-built
//! here (MinGW-w64), run under Wine and call the Linux confab-peer through the Windows signal
//! server; each side reads the other's picture and tone back, the Windows side shares a
//! screen, and both chat.
//!
//! Wine is not Windows (its own Winsock and no camera or sound devices; the test devices are
//! the same pipeline), but the programs are the Windows ones: the PE files a Windows user gets,
//! through the Windows code paths of tokio, webrtc-rs, openh264 and Opus. `cargo xtask cross
//! --wine` builds them, sets `CONFAB_WINDOWS_BIN` and runs this test (ignored otherwise).

mod common;

use common::Proc;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The reports' folder, removed when the test ends, passed or not.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("confab-wine-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits for a peer to finish its call (10 s) and write its report; fails if it does not
/// within a deadline, or ends with an error.
fn finishes(p: &mut Proc, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match p.0.try_wait().expect("the process can be waited for") {
            Some(status) => {
                assert!(status.success(), "the {who} peer failed ({status})");
                return;
            }
            None if Instant::now() > deadline => panic!("the {who} peer did not finish in 90 s"),
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The folder with the Windows programs.
fn windows_bin() -> PathBuf {
    let dir = std::env::var_os("CONFAB_WINDOWS_BIN")
        .map(PathBuf::from)
        .expect(
            "CONFAB_WINDOWS_BIN: the folder with confab-peer.exe and confab-signal.exe \
         (`cargo xtask cross --wine` builds them and sets it)",
        );
    for exe in ["confab-peer.exe", "confab-signal.exe"] {
        assert!(
            dir.join(exe).is_file(),
            "{} is missing",
            dir.join(exe).display()
        );
    }
    dir
}

/// `program` under Wine.
fn wine(program: &Path) -> Command {
    let mut c = Command::new("wine");
    c.arg(program);
    c
}

/// The peer's arguments for this call (both builds take the same).
fn peer_args(c: &mut Command, url: &str, name: &str, stats: &Path, extra: &[&str]) {
    c.args(["--server", url, "--room", "wine", "--name", name])
        .args([
            "--bind",
            "127.0.0.1",
            "--size",
            "320x240",
            "--duration",
            "10",
        ])
        .arg("--stats-json")
        .arg(stats)
        .args(extra)
        .stderr(Stdio::inherit());
}

fn read(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", p.display()))
}

#[test]
#[ignore = "needs Wine and the Windows build: `cargo xtask cross --wine` runs it"]
fn a_windows_peer_under_wine_calls_a_linux_peer() {
    let bin = windows_bin();
    // The Windows signaling server (as a LAN host's would be), on a free port it prints.
    let mut server = wine(&bin.join("confab-signal.exe"));
    server
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut server = Proc(
        server
            .spawn()
            .expect("wine runs (cargo xtask cross --wine installs it)"),
    );
    // Read on a thread: a Wine that stalls fails the test instead of hanging it.
    let out = server.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the Windows confab-signal printed its URL within 60 s");
    let url = line
        .split_whitespace()
        .last()
        .filter(|u| u.starts_with("ws://"))
        .unwrap_or_else(|| panic!("the Windows confab-signal printed no URL: {line:?}"))
        .to_owned();

    let dir = TempDir::new();
    let (s_linux, s_windows) = (dir.0.join("linux.json"), dir.0.join("windows.json"));
    // Lin (Linux) waits and answers; Win (Windows, under Wine) calls, each with its own tone.
    // Both prefer VP8, which the Windows build does not have: it offers H.264 alone, and
    // the Linux side answers with it.
    let mut linux = Command::new(env!("CARGO_BIN_EXE_confab-peer"));
    peer_args(
        &mut linux,
        &url,
        "Lin",
        &s_linux,
        &[
            "--auto-accept",
            "--audio",
            "tone:880",
            "--codec",
            "vp8",
            "--say",
            "Hello from Linux",
        ],
    );
    let mut linux = Proc(linux.spawn().expect("confab-peer starts"));
    std::thread::sleep(Duration::from_millis(300));
    let mut windows = wine(&bin.join("confab-peer.exe"));
    peer_args(
        &mut windows,
        &url,
        "Win",
        &s_windows,
        &[
            "--call",
            "--audio",
            "tone:440",
            "--codec",
            "vp8",
            "--say",
            "Hello from Windows <b>&</b>",
            "--share",
            "test",
        ],
    );
    let mut windows = Proc(windows.spawn().expect("wine runs confab-peer.exe"));
    finishes(&mut windows, "Windows");
    finishes(&mut linux, "Linux");
    drop(server);

    let (jl, jw) = (read(&s_linux), read(&s_windows));
    assert_eq!(jl["os"], "linux", "{jl:#}");
    assert_eq!(jw["os"], "windows", "{jw:#}");
    for (j, other, hz) in [(&jl, "Win", 440.0), (&jw, "Lin", 880.0)] {
        let p = &j["peers"][0];
        assert_eq!(p["name"], other, "{j:#}");
        let v = &p["video"];
        // The Windows build has H.264 only (no libvpx there): both sides send it, though
        // both would rather have VP8.
        assert_eq!(v["codec"], "h264", "{j:#}");
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(320), Some(240)),
            "{j:#}"
        );
        // Pictures whose numbered pattern read back, every one of them, in order.
        assert!(v["pattern_frames"].as_u64().unwrap() >= 60, "{j:#}");
        assert_eq!(v["pattern_frames"], v["frames_decoded"], "{j:#}");
        assert_eq!(v["frames_out_of_order"], 0, "{j:#}");
        let a = &p["audio"];
        assert!(
            (a["tone_hz"].as_f64().unwrap() - hz).abs() < 5.0,
            "{other}'s tone: {j:#}"
        );
        assert!(a["packets"].as_u64().unwrap() > 100, "{j:#}");
    }
    // The Windows peer shares a (synthetic) screen on a track of its own, added by
    // renegotiation: the Linux side decodes it and reads its pattern back.
    let share = &jl["peers"][0]["share"];
    assert!(share["pattern_frames"].as_u64().unwrap() >= 10, "{jl:#}");
    assert_eq!(share["frames_out_of_order"], 0, "{jl:#}");
    // Chat over the link's data channel (SCTP over DTLS), each way, text as sent.
    for (j, from, text) in [
        (&jl, "Win", "Hello from Windows <b>&</b>"),
        (&jw, "Lin", "Hello from Linux"),
    ] {
        assert!(
            j["chat"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == from && c["text"] == text),
            "{from}'s line: {j:#}"
        );
    }
    // Both ends show the same verification code (the DTLS fingerprints they saw).
    let code = &jl["peers"][0]["verification_code"];
    assert!(code.is_string(), "{jl:#}");
    assert_eq!(code, &jw["peers"][0]["verification_code"]);
}
