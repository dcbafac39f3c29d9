//! A laptop without headphones, end to end: two confab-peer processes in a call; Al talks (the
//! test voice: synthetic speech), Bea's "microphone" hears nothing but her own speaker — what
//! she receives of Al — through a simulated room (the `echo:100` test microphone: 100 ms, RT60
//! 250 ms, -10 dB). Whatever Al then hears from Bea is his own voice coming back. With Bea's
//! echo cancellation on it must be below -30 dB of his voice; with it off, the same path sends
//! it back loud (so the path is real and the measure can see it).

mod common;

use common::signal_server;
use confab_media::audio_fixtures::{rms_of, speech, FS, VOICE_A};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peer(url: &str, room: &str, name: &str, extra: &[&str], stats: &Path) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_confab-peer"))
            .args(["--server", url, "--room", room, "--name", name])
            .args(["--bind", "127.0.0.1", "--video", "none", "--duration", "30"])
            .args(["--stats-every", "0.25", "--stats-json"])
            .arg(stats)
            .args(extra)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("confab-peer starts"),
    )
}

/// What Al hears from Bea from `wait` after he first hears her (the echo canceller
/// converging) for `measure`: its level over that time (RMS, from the half-second levels read
/// every 0.25 s), and its loudest half second.
fn returned(stats: &Path, wait: Duration, measure: Duration) -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut heard_since: Option<Instant> = None;
    let (mut loudest, mut power, mut n) = (0.0f64, 0.0f64, 0u32);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        let Some(j) = std::fs::read_to_string(stats)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        else {
            continue;
        };
        let audio = &j["peers"][0]["audio"];
        if audio["packets"].as_u64().unwrap_or(0) == 0 {
            continue;
        }
        let since = *heard_since.get_or_insert_with(Instant::now);
        let t = since.elapsed();
        if t >= wait {
            let level = audio["level"].as_f64().unwrap_or(0.0);
            loudest = loudest.max(level);
            power += level * level;
            n += 1;
        }
        if t >= wait + measure {
            return ((power / f64::from(n)).sqrt(), loudest);
        }
    }
    panic!("Al did not hear Bea long enough: {}", stats.display());
}

#[test]
fn a_laptop_without_headphones_does_not_send_your_voice_back() {
    let (mut server, url) = signal_server(&[]);
    let dir = std::env::temp_dir().join(format!("confab-echo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Al's voice: the level of the speech the test voice plays (RMS over its 20 s, pauses
    // included, as the returned level is over 8 s), and its loudest half second.
    let voice = speech(VOICE_A, 20.0);
    let voice_db = 20.0 * f64::from(rms_of(&voice)).log10();
    let voice_loudest_db = 20.0
        * voice
            .chunks_exact(FS / 2)
            .map(|w| f64::from(rms_of(w)))
            .fold(0.0, f64::max)
            .log10();
    // One room after the other (two calls at once on two cores would measure the machine):
    // Bea cancelling echo, then not (a shorter look: it only has to show the path is real).
    let db = |x: f64| 20.0 * x.max(1e-9).log10();
    let mut back = Vec::new();
    for (processing, wait, measure) in [("on", 6, 8), ("off", 3, 3)] {
        let room = format!("echo-{processing}");
        let al_stats: PathBuf = dir.join(format!("al-{processing}.json"));
        let _bea = peer(
            &url,
            &room,
            "Bea",
            &[
                "--auto-accept",
                "--audio",
                "echo:100",
                "--audio-processing",
                processing,
            ],
            &dir.join(format!("bea-{processing}.json")),
        );
        std::thread::sleep(Duration::from_millis(300));
        let _al = peer(
            &url,
            &room,
            "Al",
            &["--call", "--audio", "voice", "--audio-processing", "off"],
            &al_stats,
        );
        let (level, loudest) = returned(
            &al_stats,
            Duration::from_secs(wait),
            Duration::from_secs(measure),
        );
        back.push((
            processing,
            db(level) - voice_db,
            db(loudest) - voice_loudest_db,
        ));
    }
    let _ = server.kill();
    let _ = server.wait();
    eprintln!(
        "Al's own voice back from Bea, relative to his voice (processing, over the time \
         measured, loudest 0.5 s against his loudest): {back:?} (dB)"
    );
    let (on, off) = (back[0].1, back[1].1);
    assert!(
        on < -30.0,
        "with echo cancellation Al hears himself at {on:.1} dB (must be below -30 dB)"
    );
    assert!(
        off > -20.0,
        "without it the echo path sends his voice back loud ({off:.1} dB): the measure sees it"
    );
    std::fs::remove_dir_all(dir).ok();
}
