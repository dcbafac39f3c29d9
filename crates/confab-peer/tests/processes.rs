//! confab-peer against confab-peer through confab-signal, all three as processes, reading the
//! stats JSON each peer writes.

mod common;

use common::signal_server;
use confab_media::video::VideoCodec;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn peer(url: &str, name: &str, extra: &[&str], stats: &PathBuf) -> Child {
    Command::new(env!("CARGO_BIN_EXE_confab-peer"))
        .args([
            "--server",
            url,
            "--room",
            "procs",
            "--name",
            name,
            "--bind",
            "127.0.0.1",
        ])
        .args(["--size", "320x240", "--duration", "6", "--stats-json"])
        .arg(stats)
        .args(extra)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("confab-peer starts")
}

#[test]
fn two_peer_processes_call_through_the_server() {
    let (mut server, url) = signal_server(&[]);
    let dir = std::env::temp_dir().join(format!("confab-peer-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (sa, sb) = (dir.join("a.json"), dir.join("b.json"));
    let mut b = peer(&url, "Bea", &["--auto-accept", "--audio", "tone:880"], &sb);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut a = peer(
        &url,
        "Al",
        &["--call", "--audio", "tone:440", "--codec", "vp8"],
        &sa,
    );
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let _ = server.kill();
    let _ = server.wait();
    let read = |p: &PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (ja, jb) = (read(&sa), read(&sb));
    for (j, other, hz) in [(&ja, "Bea", 880.0), (&jb, "Al", 440.0)] {
        assert!(
            j["setup_ms"]
                .as_f64()
                .is_some_and(|ms| ms > 0.0 && ms < 5000.0),
            "{j:#}"
        );
        assert!(j["cpu_seconds"].as_f64().unwrap() > 0.0);
        assert!(j["peak_rss_mb"].as_f64().unwrap() > 1.0);
        let p = &j["peers"][0];
        assert_eq!(p["name"], other, "{j:#}");
        let v = &p["video"];
        // The caller prefers VP8; the answerer takes it. A build without VP8 (Windows) offers
        // and answers H.264 only.
        let expected = if confab_media::video::AVAILABLE.contains(&VideoCodec::Vp8) {
            "vp8"
        } else {
            "h264"
        };
        assert_eq!(v["codec"], expected, "{j:#}");
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(320), Some(240))
        );
        assert!(v["pattern_frames"].as_u64().unwrap() >= 60, "{j:#}");
        assert_eq!(v["frames_out_of_order"], 0);
        assert!(v["fps"].as_f64().unwrap() > 15.0, "{j:#}");
        assert!(v["latency_ms_p50"].as_f64().is_some());
        let a = &p["audio"];
        assert!((a["tone_hz"].as_f64().unwrap() - hz).abs() < 5.0, "{j:#}");
        assert!(a["packets"].as_u64().unwrap() > 100);
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_bad_server_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_confab-peer"))
        .args([
            "--server",
            "ws://127.0.0.1:1/ws",
            "--room",
            "r",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the server"), "{err}");
}
