//! The processor's tests: settings, pass-through, recovery from a panic, and the measured
//! quality (echo, double talk, noise) on the fixtures of `audio_fixtures`.

use super::*;
use crate::audio_fixtures::*;

#[test]
fn the_default_settings_are_all_on_and_round_trip_through_json() {
    let s = ProcessingSettings::default();
    assert!(s.echo_cancellation && s.noise_suppression && s.auto_gain);
    let json = serde_json::to_string(&s).unwrap();
    let back: ProcessingSettings = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    // Missing fields take the defaults (settings files from older versions).
    let partial: ProcessingSettings = serde_json::from_str(r#"{"auto_gain":false}"#).unwrap();
    assert!(partial.echo_cancellation && !partial.auto_gain);
}

#[test]
fn all_off_passes_frames_through_untouched() {
    let mut p = Processor::new(ProcessingSettings::OFF);
    let x = speech(VOICE_B, 1.0);
    let out = run(&mut p, &x, &x);
    let q: Vec<f32> = x[..out.len()]
        .iter()
        .map(|&s| to_frame(&[s])[0] as f32 / 32768.0)
        .collect();
    assert_eq!(out, q);
}

#[test]
fn a_delay_beyond_500_ms_is_capped_and_said() {
    let mut p = Processor::default();
    assert_eq!(
        p.set_delay_ms(900),
        Err(ProcessingError::DelayTooLong { ms: 900 })
    );
    assert_eq!(p.stats().delay_ms, MAX_DELAY_MS);
    assert_eq!(p.set_delay_ms(80), Ok(()));
}

#[test]
fn echo_is_cancelled_with_a_60_ms_path() {
    let f = echo_run(
        ProcessingSettings::default(),
        EchoPath::new(60.0),
        None,
        12.0,
    );
    println!("echo 60 ms: {f:?}");
    assert!(f.median >= 30.0, "{f:?}");
    assert!(f.p10 >= 20.0, "{f:?}");
    assert!(f.convergence.is_some_and(|t| t <= 2.0), "{f:?}");
}

#[test]
fn echo_is_cancelled_with_a_200_ms_path() {
    let f = echo_run(
        ProcessingSettings::default(),
        EchoPath::new(200.0),
        None,
        12.0,
    );
    println!("echo 200 ms: {f:?}");
    assert!(f.median >= 30.0, "{f:?}");
    assert!(f.p10 >= 20.0, "{f:?}");
    assert!(f.convergence.is_some_and(|t| t <= 2.0), "{f:?}");
}

/// A laptop: the speaker a few centimetres from the microphone, the direct sound 10 dB above
/// the room's reverberation.
#[test]
fn echo_is_cancelled_with_a_laptop_like_direct_path() {
    let mut path = EchoPath::new(60.0);
    path.drr_db = 10.0;
    let f = echo_run(ProcessingSettings::default(), path, None, 12.0);
    println!("echo 60 ms, direct-to-reverberant +10 dB: {f:?}");
    assert!(f.median >= 30.0, "{f:?}");
    assert!(f.p10 >= 20.0, "{f:?}");
    assert!(f.convergence.is_some_and(|t| t <= 2.0), "{f:?}");
}

#[test]
fn echo_is_cancelled_again_after_the_echo_path_changes() {
    let f = path_change_run(&speech(VOICE_A, 16.0), ProcessingSettings::default());
    println!("echo path change at 8 s: {f:?}");
    assert!(f.reconvergence.is_some_and(|t| t <= 2.0), "{f:?}");
    assert!(f.median >= 30.0, "{f:?}");
}

#[test]
fn echo_through_a_soft_clipping_loudspeaker_is_cancelled_too() {
    let mut path = EchoPath::new(60.0);
    path.soft_clip = true;
    let f = echo_run(ProcessingSettings::default(), path, None, 12.0);
    println!("echo 60 ms, soft-clipping loudspeaker: {f:?}");
    assert!(f.median >= 30.0, "{f:?}");
    assert!(f.p10 >= 20.0, "{f:?}");
}

#[test]
fn the_processor_recovers_from_a_panic_and_cancels_echo_again() {
    let far = speech(VOICE_A, 12.0);
    let path = EchoPath::new(60.0);
    let echo = path.apply(&far);
    let mut p = Processor::default();
    p.set_delay_ms(60).unwrap();
    // The failure strikes at 4 s, once the echo canceller has converged.
    let at = 4 * 50;
    let mut before = None;
    let out = run_with(&mut p, &far, &echo, |i, p| {
        if i == at {
            before = Some(p.stats());
            p.inject_panic();
        }
    });
    let s = p.stats();
    assert_eq!(before.map(|b| b.panics), Some(0));
    assert_eq!((s.panics, s.resets), (1, 1), "{s:?}");
    // The render half that panicked was dropped; every capture frame still came out.
    assert_eq!(out.len(), echo.len() / FRAME_SAMPLES * FRAME_SAMPLES);
    let w = erle_windows(&echo, &out);
    let reconv = convergence_time(&w, 4.0, 15.0);
    let after: Vec<f32> = w
        .iter()
        .filter(|(t, _)| *t >= 7.0)
        .map(|(_, e)| *e)
        .collect();
    let median = quantile(&after, 0.5);
    println!("after an injected panic at 4 s: reconverged in {reconv:?} s, ERLE median {median:.1} dB from 7 s");
    assert!(reconv.is_some_and(|t| t <= 2.0), "{reconv:?}");
    assert!(median >= 30.0, "{median}");
}

#[test]
fn a_panic_in_capture_passes_the_frame_through_unprocessed() {
    let mut p = Processor::default();
    let x = speech(VOICE_B, 0.5);
    run(&mut p, &[], &x);
    let frame = to_frame(&x[..FRAME_SAMPLES]);
    let mut f = frame;
    p.inject_panic();
    p.capture(&mut f);
    // The first half panicked (unchanged); the rebuilt processor took the second.
    assert_eq!(f[..FRAME_SAMPLES / 2], frame[..FRAME_SAMPLES / 2]);
    let s = p.stats();
    assert_eq!((s.panics, s.resets, s.passed_through), (1, 1, 1));
}

/// On the built-in synthetic voices (the issue's own fixtures, espeak-ng's speech, are in
/// `echo_and_double_talk_with_espeak_speech`). The issue asks 10 dB. Echo cancellation alone
/// keeps it (10.7 dB); with noise suppression and gain control on too the near end fares worse
/// (7.6 dB). Noise suppression costs 1.1 dB (9.6 dB with echo cancellation); gain control most
/// of the rest, by following the near end's level less closely than without a far end. The
/// thresholds are what is met, so a regression shows; the figures are printed.
#[test]
fn near_end_speech_survives_double_talk() {
    let only = |echo_cancellation, noise_suppression, auto_gain| ProcessingSettings {
        echo_cancellation,
        noise_suppression,
        auto_gain,
    };
    let all = double_talk(ProcessingSettings::default());
    let aec = double_talk(only(true, false, false));
    let aec_ns = double_talk(only(true, true, false));
    println!(
        "double talk, near end segmental SNR: all on {all:?}; echo cancellation only {aec:?}; echo cancellation and noise suppression {aec_ns:?}"
    );
    assert!(all.vs_solo >= 7.0, "{all:?}");
    assert!(aec.vs_solo >= 10.0, "{aec:?}");
    assert!(aec_ns.vs_solo >= 9.0, "{aec_ns:?}");
}

#[test]
fn noise_is_suppressed_and_speech_kept() {
    let n = noise_run(ProcessingSettings::default());
    println!(
        "noise: SNR {:.1} dB in, {:.1} dB out (gain {:.1} dB); speech level {:.1} -> {:.1} dBFS",
        n.snr_in,
        n.snr_out,
        n.snr_out - n.snr_in,
        n.speech_in,
        n.speech_out
    );
    assert!((n.snr_in - 10.0).abs() < 2.0, "{n:?}");
    assert!(n.snr_out - n.snr_in >= 10.0, "{n:?}");
    assert!(n.speech_out >= n.speech_in - 6.0, "{n:?}");
}

/// The issue's own fixtures: espeak-ng's speech in two voices (apt `espeak-ng`, which `cargo
/// xtask test` installs). Without espeak-ng the test says so and passes, unless
/// `CONFAB_TEST_PACKAGES=installed` (set by `cargo xtask test`) says it must be there.
#[test]
fn echo_and_double_talk_with_espeak_speech() {
    let Some(talkers) = Talkers::espeak() else {
        assert!(
            !test_packages_installed(),
            "espeak-ng is not installed, and `cargo xtask test` installs it"
        );
        println!("espeak-ng is not installed: the espeak measurements are skipped");
        return;
    };
    let settings = ProcessingSettings::default();
    let far = talkers.far(12.0);
    let w = echo_windows(&far, settings, EchoPath::new(60.0));
    let steady: Vec<f32> = w
        .iter()
        .filter(|(t, _)| *t >= 3.0)
        .map(|(_, e)| *e)
        .collect();
    let (median, p10) = (quantile(&steady, 0.5), quantile(&steady, 0.1));
    let conv = convergence_time(&w, w.first().map_or(0.0, |w| w.0), 15.0);
    let change = path_change_run(&talkers.far(16.0), settings);
    let near = talkers.near_after(3.0, 12.0);
    let dt = |s: ProcessingSettings| double_talk_of(s, &far, &near);
    let (dt_all, dt_aec) = (
        dt(settings),
        dt(ProcessingSettings {
            echo_cancellation: true,
            ..ProcessingSettings::OFF
        }),
    );
    println!(
        "espeak-ng speech, 60 ms: ERLE median {median:.1} dB, p10 {p10:.1} dB, converged in {conv:?} s; after the path changes {change:?}; double talk all on {dt_all:?}, echo cancellation only {dt_aec:?}"
    );
    assert!(median >= 30.0 && p10 >= 20.0, "{median} {p10}");
    assert!(conv.is_some_and(|t| t <= 2.0), "{conv:?}");
    // 1.6 s (2.4 s before `patches/sonora-aec3`: AEC3 kept the old delay until the new one
    // outnumbered it in its histogram of 250 reports).
    assert!(change.reconvergence.is_some_and(|t| t <= 2.0), "{change:?}");
    assert!(change.median >= 30.0, "{change:?}");
    assert!(
        dt_all.vs_solo >= 10.0 && dt_aec.vs_solo >= 10.0,
        "{dt_all:?} {dt_aec:?}"
    );
}

/// Whether the test run promises the Debian test packages (`cargo xtask test` does).
fn test_packages_installed() -> bool {
    std::env::var("CONFAB_TEST_PACKAGES").is_ok_and(|v| v == "installed")
}

/// Writes the double-talk signals as 16 kHz WAV files for scoring outside (PESQ: see
/// `crates/confab-media/tools/pesq_double_talk.py`), into `$CONFAB_AUDIO_OUT` (default: the
/// system's temporary folder): the near end alone (`ref`), unprocessed with the echo (`mic`),
/// and for everything on and echo cancellation only the double-talk output (`dt_*`) and the
/// same processing of the near end alone (`alone_*`, the far end still rendered) and with a silent
/// far end (`solo_*`). Synthetic voices, and espeak-ng's when
/// installed.
#[test]
#[ignore]
fn write_double_talk_wavs() {
    let dir = std::env::var_os("CONFAB_AUDIO_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let secs = 12.0;
    let sets = [Some(Talkers::synthetic()), Talkers::espeak()];
    for talkers in sets.iter().flatten() {
        // The set's name in the file names without a hyphen (the PESQ script splits on them).
        let name = talkers.name.replace('-', "");
        let far = &talkers.far(secs)[..];
        let near = talkers.near_after(3.0, secs);
        let n = far.len();
        let echo = EchoPath::new(60.0).apply(far);
        let mic = mix(&near, &echo);
        let from = 3 * FS;
        let write = |what: &str, x: &[f32]| {
            let path = dir.join(format!("confab-dt-{name}-{what}.wav"));
            std::fs::write(&path, wav_bytes(16_000, &resampled(&x[from..], 16_000))).unwrap();
            println!("{}", path.display());
        };
        write("ref", &near);
        write("mic", &mic);
        for (label, s) in [
            ("all", ProcessingSettings::default()),
            (
                "aec",
                ProcessingSettings {
                    echo_cancellation: true,
                    ..ProcessingSettings::OFF
                },
            ),
        ] {
            let mut p = Processor::new(s);
            p.set_delay_ms(60).unwrap();
            write(&format!("dt_{label}"), &run(&mut p, far, &mic));
            let mut q = Processor::new(s);
            q.set_delay_ms(60).unwrap();
            write(&format!("alone_{label}"), &run(&mut q, far, &near));
            let mut r = Processor::new(s);
            write(&format!("solo_{label}"), &run(&mut r, &vec![0.0; n], &near));
        }
    }
}
