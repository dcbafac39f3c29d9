//! `confab-peer`: a headless Confab peer for tests, demos and benchmarks.
//!
//! It joins a room, optionally calls everyone, sends the built-in test devices (or a real
//! camera and microphone), runs for a while, hangs up cleanly and prints one JSON object with
//! what it received: the contract tests and tools rely on (see the README).

use anyhow::Context;
use clap::Parser;
use confab_engine::media_kit::device::{
    parse_size, AudioSourceSpec, SpeakerSpec, VideoFormat, VideoSourceSpec,
};
use confab_engine::media_kit::processing::{ProcessingSettings, ProcessingStats};
use confab_engine::media_kit::video::VideoCodec;
use confab_engine::{
    Engine, EngineConfig, EngineEvent, IceServer, NullSink, PeerStats, RtcSettings,
};
use confab_netlab::Impairment;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A headless Confab peer: joins a room, calls, sends test media, prints stats as JSON.
#[derive(Debug, Parser)]
#[command(name = "confab-peer", version, about)]
struct Args {
    /// Signaling server (ws://HOST:PORT/ws, or HOST:PORT). Repeat it for the nodes of one
    /// cluster: they are tried in order, and the peer moves to the next when its node dies.
    #[arg(long, required = true)]
    server: Vec<String>,
    /// Room to join.
    #[arg(long)]
    room: String,
    /// Name shown to the others.
    #[arg(long, default_value = "confab-peer")]
    name: String,
    /// Room password, if the room has one (or to set one when creating it).
    #[arg(long)]
    password: Option<String>,
    /// Call everyone in the room (waits for someone to join first).
    #[arg(long)]
    call: bool,
    /// Accept incoming calls without asking.
    #[arg(long)]
    auto_accept: bool,
    /// Video source, a device id: test (the test pattern), none, camera (the first one),
    /// camera:N, or a camera's name.
    #[arg(long, default_value = "test")]
    video: VideoSourceSpec,
    /// Share a screen next to the camera, on a track of its own: `test` (the test pattern at
    /// 1280x720, 5 fps: a synthetic screen whose frames read back like the camera's),
    /// `screen` (the primary screen), `screen:ID` or `window:ID` (as the app's picker lists
    /// them), or `portal` (on a Wayland desktop: whatever is picked in the desktop's own
    /// picker).
    #[arg(long, value_parser = parse_share)]
    share: Option<VideoSourceSpec>,
    /// Stop sharing this many seconds after the share started (once; the call goes on).
    #[arg(long, value_name = "SECS", requires = "share", value_parser = parse_secs)]
    share_for: Option<f64>,
    /// Audio source, a device id: tone or tone:HZ (the test tone), none, mic (the default
    /// one), or a microphone's name (mic:NAME).
    #[arg(long, default_value = "tone")]
    audio: AudioSourceSpec,
    /// Play what is heard: `--speaker` alone on the default speaker, or `--speaker ID` (a
    /// speaker's name, speaker:NAME, or none). Without it, what is heard is only analysed.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "ID")]
    speaker: Option<SpeakerSpec>,
    /// Video size WxH.
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    size: (usize, usize),
    /// Frames per second.
    #[arg(long, default_value_t = 30.0)]
    fps: f32,
    /// Preferred video codec.
    #[arg(long, default_value = "h264")]
    codec: VideoCodec,
    /// Starting video bitrate, kbit/s (adapted to the bandwidth estimate afterwards).
    #[arg(long, default_value_t = 1500)]
    bitrate: u32,
    /// Seconds to run after joining (default: until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
    /// Write the stats JSON here (`-` = stdout).
    #[arg(long)]
    stats_json: Option<String>,
    /// Also rewrite the stats file every SECS seconds while running (live figures).
    #[arg(long)]
    stats_every: Option<f64>,
    /// Local address to gather ICE candidates on (0.0.0.0 = every interface but loopback).
    #[arg(long, default_value = "0.0.0.0")]
    bind: String,
    /// STUN/TURN server, as one line of the app's Network box: "URL" or "URL USERNAME
    /// CREDENTIAL" (quote it; repeatable).
    #[arg(long = "ice-server", value_parser = parse_ice)]
    ice_servers: Vec<IceServer>,
    /// Resolve and announce multicast-DNS (.local) candidates.
    #[arg(long)]
    mdns: bool,
    /// Say TEXT in the call's chat once connected to someone (repeatable, in order).
    #[arg(long = "say")]
    say: Vec<String>,
    /// Send media only through a TURN relay (needs a TURN --ice-server); the selected pair
    /// is then relay on our side, and the stats say so.
    #[arg(long)]
    relay_only: bool,
    /// Impair this peer's network (what each of its UDP sockets receives), in-process through
    /// the network lab: `loss=5%,delay=50ms,jitter=5ms,rate=1mbit,queue=200ms,seed=N`
    /// (any of them). For tests, demos and `cargo xtask bench network`.
    #[arg(long, value_parser = parse_impairment)]
    impair: Option<Impairment>,
    /// A blackout (100 % loss) of FOR seconds starting AT seconds after joining: `AT:FOR`.
    #[arg(long, value_parser = parse_blackout)]
    blackout: Option<(f64, f64)>,
    /// Echo cancellation, noise suppression and gain on what is sent, as in the app (`on`).
    /// Off by default: the test tone is a clean, steady signal (noise suppression would take
    /// it for noise), and the peer's figures are about the network.
    // `Set`: a bool field would otherwise be a flag that takes no value.
    #[arg(
        long = "audio-processing",
        value_parser = parse_on_off,
        default_value = "off",
        action = clap::ArgAction::Set
    )]
    audio_processing: bool,
}

fn parse_share(s: &str) -> Result<VideoSourceSpec, String> {
    confab_engine::media_kit::device::share_source(s).map_err(|e| e.to_string())
}

fn parse_impairment(s: &str) -> Result<Impairment, String> {
    s.parse()
        .map_err(|e: confab_netlab::ImpairmentSyntax| e.to_string())
}

/// Seconds, from 0 to an hour.
fn parse_secs(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && (0.0..=3600.0).contains(x))
        .ok_or(format!("`{v}` is not a number of seconds (0-3600)"))
}

fn parse_blackout(s: &str) -> Result<(f64, f64), String> {
    let (at, len) = s
        .split_once(':')
        .ok_or("expected AT:FOR in seconds, e.g. 10:5")?;
    Ok((parse_secs(at)?, parse_secs(len)?))
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{s}`: say on or off")),
    }
}

fn parse_ice(s: &str) -> Result<IceServer, String> {
    IceServer::parse(s).map_err(|e| e.to_string())
}

#[derive(Serialize)]
struct Report {
    /// The system this build is for (`linux`, `windows`, `macos`): which build ran.
    os: &'static str,
    room: String,
    name: String,
    id: String,
    setup_ms: Option<f64>,
    cpu_seconds: f64,
    peak_rss_mb: f64,
    duration_seconds: f64,
    peers: Vec<PeerStats>,
    /// In a call through an SFU: what we send to it (`peers` then hold what we receive).
    sfu: Option<confab_engine::stats::NetworkStats>,
    /// What the microphone's processing did (settings, the echo canceller's estimates).
    audio_processing: Option<ProcessingStats>,
    /// Chat lines received (and taken from a shared history), oldest first.
    chat: Vec<ChatEntry>,
}

#[derive(Serialize, Clone)]
struct ChatEntry {
    /// The sender's peer id (`null` for a line of a history shared by `shared_by`).
    from: Option<String>,
    name: String,
    text: String,
    /// Seconds since this peer started.
    at: f64,
    shared_by: Option<String>,
}

/// CPU seconds (user + system) and peak resident memory (MB) of this process so far.
fn usage() -> (f64, f64) {
    let cpu = cpu_time::ProcessTime::try_now().map_or(f64::NAN, |t| t.as_duration().as_secs_f64());
    (cpu, peak_rss_mb())
}

#[cfg(unix)]
fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage fills a struct we own.
    let rss = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u.ru_maxrss as f64
    };
    // Linux reports KiB, macOS bytes.
    if cfg!(target_os = "macos") {
        rss / 1048576.0
    } else {
        rss / 1024.0
    }
}

/// The peak working set.
#[cfg(windows)]
fn peak_rss_mb() -> f64 {
    use windows_sys::Win32::System::ProcessStatus::{
        GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
    };
    use windows_sys::Win32::System::Threading::GetCurrentProcess;
    // SAFETY: fills a struct we own; the current process's pseudo-handle needs no closing.
    unsafe {
        let mut m: PROCESS_MEMORY_COUNTERS = std::mem::zeroed();
        m.cb = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
        if GetProcessMemoryInfo(GetCurrentProcess(), &mut m, m.cb) != 0 {
            m.PeakWorkingSetSize as f64 / 1048576.0
        } else {
            f64::NAN
        }
    }
}

fn report(
    joined: &confab_engine::Joined,
    name: &str,
    started: Instant,
    peers: Vec<PeerStats>,
    sfu: Option<confab_engine::stats::NetworkStats>,
    audio_processing: Option<ProcessingStats>,
    chat: &[ChatEntry],
) -> Report {
    let (cpu_seconds, peak_rss_mb) = usage();
    Report {
        os: std::env::consts::OS,
        room: joined.room.clone(),
        name: name.to_owned(),
        id: joined.id.to_string(),
        setup_ms: peers.iter().filter_map(|p| p.setup_ms).reduce(f64::min),
        cpu_seconds,
        peak_rss_mb,
        duration_seconds: started.elapsed().as_secs_f64(),
        peers,
        sfu,
        audio_processing,
        chat: chat.to_vec(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| confab_engine::DEFAULT_LOG_FILTER.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // The network lab, when the network is impaired or blacked out.
    let lab = match (args.impair, args.blackout) {
        (None, None) => None,
        (impair, _) => Some(
            confab_netlab::NetLab::new(impair.unwrap_or_default())
                .context("starting the network lab")?,
        ),
    };
    let config = EngineConfig {
        video: args.video.clone(),
        audio: args.audio.clone(),
        speaker: args.speaker.clone().and_then(SpeakerSpec::into_option),
        format: VideoFormat {
            width: args.size.0,
            height: args.size.1,
            fps: args.fps,
        },
        rtc: RtcSettings {
            ice_servers: args.ice_servers.clone(),
            udp_addrs: vec![format!("{}:0", args.bind)],
            mdns: args.mdns,
            preferred_codec: args.codec,
            start_bitrate: args.bitrate * 1000,
            max_bitrate: (args.bitrate * 1000).max(2_500_000),
            runtime: lab.as_ref().map(|l| l.runtime()),
            certificate: None,
            relay_only: args.relay_only,
            health: Default::default(),
        },
        auto_accept: args.auto_accept,
        audio_bitrate: 32_000,
        processing: if args.audio_processing {
            ProcessingSettings::default()
        } else {
            ProcessingSettings::OFF
        },
        signaling_silence: confab_engine::signaling::SILENCE_LIMIT,
    };
    let (engine, mut events) =
        Engine::start(config, Arc::new(NullSink)).context("starting the engine")?;
    let started = Instant::now();
    let servers = args.server.join(", ");
    let joined = engine
        .join(&servers, &args.room, &args.name, args.password.as_deref())
        .await
        .with_context(|| format!("joining room {} at {servers}", args.room))?;
    eprintln!(
        "confab-peer: joined {} as {} ({})",
        joined.room, args.name, joined.id
    );

    let deadline = args
        .duration
        .map(|d| started + Duration::from_secs_f64(d.max(0.0)));
    if args.call {
        // Now if someone is there, otherwise as soon as someone arrives.
        engine.call_when_present().await.context("calling")?;
    }
    let sleep_until = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until);
    let stop = confab_signal::shutdown_signal();
    tokio::pin!(stop);
    let every = args
        .stats_every
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64);
    let mut live = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    live.tick().await;
    let mut chat: Vec<ChatEntry> = Vec::new();
    let mut to_say = args.say.clone();
    // When the share is to stop (`--share-for`), once it started; and whether it has.
    let (mut share_stop, mut share_stopped): (Option<Instant>, bool) = (None, false);
    // Whether this call's share was asked for: a state sent before the share began still says
    // it is not shared, and must not start it over.
    let mut share_asked = false;
    // The blackout's start and end, in turn.
    let mut blackout: Vec<(Instant, bool)> = args
        .blackout
        .map(|(at, len)| {
            let on = started + Duration::from_secs_f64(at);
            vec![(on + Duration::from_secs_f64(len), false), (on, true)]
        })
        .unwrap_or_default();
    loop {
        let next_blackout = blackout.last().map(|(t, _)| *t);
        tokio::select! {
            _ = &mut sleep_until => break,
            _ = tokio::time::sleep_until(share_stop.unwrap_or(started).into()), if share_stop.is_some() => {
                share_stop = None;
                share_stopped = true;
                match engine.share(None).await {
                    Ok(()) => eprintln!("confab-peer: stopped sharing"),
                    Err(e) => eprintln!("confab-peer: could not stop sharing: {e}"),
                }
            }
            _ = tokio::time::sleep_until(next_blackout.unwrap_or(started).into()), if next_blackout.is_some() => {
                if let (Some((_, on)), Some(lab)) = (blackout.pop(), lab.as_ref()) {
                    lab.set_blackout(on);
                    eprintln!("confab-peer: blackout {}", if on { "on" } else { "off" });
                }
            }
            _ = live.tick(), if every.is_some() => {
                if let Some(path) = args.stats_json.as_deref().filter(|p| *p != "-") {
                    let peers = engine.stats().await.unwrap_or_default();
                    let sfu = engine.sfu_network().await.ok().flatten();
                    let processing = engine.audio_processing().await.ok();
                    let report = report(&joined, &args.name, started, peers, sfu, processing, &chat);
                    let tmp = format!("{path}.tmp");
                    if std::fs::write(&tmp, serde_json::to_string_pretty(&report)?).is_ok() {
                        let _ = std::fs::rename(&tmp, path);
                    }
                }
            }
            _ = &mut stop => break,
            ev = events.recv() => match ev {
                Some(EngineEvent::State(s)) => {
                    let connected = s.participants.iter().any(|p| p.phase == confab_engine::call::Phase::Connected);
                    // Share once a call (it ends with the call; a capture that stops by itself,
                    // a closed window, is not started again).
                    share_asked &= s.in_call;
                    if let Some(spec) = args.share.as_ref().filter(|_| s.in_call && !share_asked && !share_stopped) {
                        match engine.share(Some(spec.clone())).await {
                            Ok(()) => {
                                share_asked = true;
                                eprintln!("confab-peer: sharing {spec:?}");
                                if let (Some(secs), None) = (args.share_for, share_stop) {
                                    share_stop = Some(Instant::now() + Duration::from_secs_f64(secs));
                                }
                            }
                            Err(e) => eprintln!("confab-peer: could not share: {e}"),
                        }
                    }
                    if connected && !to_say.is_empty() {
                        for text in std::mem::take(&mut to_say) {
                            if let Err(e) = engine.say(&text).await {
                                eprintln!("confab-peer: could not say {text:?}: {e}");
                            }
                        }
                    }
                }
                Some(EngineEvent::Chat(l)) => chat.push(ChatEntry {
                    from: l.from.map(|p| p.to_string()),
                    name: l.name,
                    text: l.text,
                    at: started.elapsed().as_secs_f64(),
                    shared_by: l.shared_by,
                }),
                Some(EngineEvent::Error { code, message }) => eprintln!("confab-peer: {code}: {message}"),
                Some(EngineEvent::Notice(n)) => eprintln!("confab-peer: {}", serde_json::to_string(&n).unwrap_or_default()),
                Some(EngineEvent::Levels { .. }) => {}
                None => break,
            }
        }
    }
    // Measure before hanging up: hang-up releases the receive pipelines.
    let peers = engine.stats().await.unwrap_or_default();
    let sfu = engine.sfu_network().await.ok().flatten();
    let processing = engine.audio_processing().await.ok();
    let mut report = report(&joined, &args.name, started, peers, sfu, processing, &chat);
    let _ = engine.hang_up().await;
    engine.shutdown().await;
    // Whole-process figures, taken after the shutdown so they cover everything.
    let (cpu_seconds, peak_rss_mb) = usage();
    report.cpu_seconds = cpu_seconds;
    report.peak_rss_mb = peak_rss_mb;
    let json = serde_json::to_string_pretty(&report)?;
    match args.stats_json.as_deref() {
        Some("-") => println!("{json}"),
        Some(path) => {
            std::fs::write(PathBuf::from(path), json).with_context(|| format!("writing {path}"))?
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = [
            "confab-peer",
            "--server",
            "ws://x/ws",
            "--room",
            "r",
            "--name",
            "n",
        ];
        Args::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn impairments_and_blackouts_are_read_or_refused_in_words() {
        let a = args(&["--impair", "loss=5%,delay=50ms", "--blackout", "10:5"]).unwrap();
        let i = a.impair.unwrap();
        assert_eq!((i.loss, i.delay_ms), (0.05, 50));
        assert_eq!(a.blackout, Some((10.0, 5.0)));
        for (bad, says) in [
            (["--impair", "loss=2"], "between 0 and 1"),
            (["--impair", "wifi"], "KEY=VALUE"),
            (["--blackout", "10"], "AT:FOR"),
            (["--blackout", "10:-1"], "not a number of seconds"),
        ] {
            let e = args(&bad).err().unwrap().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn audio_processing_takes_on_or_off() {
        assert!(!args(&[]).unwrap().audio_processing);
        assert!(
            args(&["--audio-processing", "on"])
                .unwrap()
                .audio_processing
        );
        assert!(
            !args(&["--audio-processing", "off"])
                .unwrap()
                .audio_processing
        );
        let e = args(&["--audio-processing", "maybe"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("on or off"), "{e}");
    }

    #[test]
    fn share_and_test_microphones_take_the_one_grammar() {
        use confab_engine::media_kit::device::ScreenRef;
        let a = args(&["--share", "window:42", "--audio", "echo:250"]).unwrap();
        assert_eq!(
            a.share,
            Some(VideoSourceSpec::Screen(ScreenRef::Window(42)))
        );
        assert_eq!(a.audio, AudioSourceSpec::Echo(250));
        assert_eq!(
            args(&["--audio", "voice"]).unwrap().audio,
            AudioSourceSpec::Voice
        );
        let e = args(&["--share", "camera:0"]).err().unwrap().to_string();
        assert!(e.contains("not something to share"), "{e}");
        let e = args(&["--audio", "echo:900"]).err().unwrap().to_string();
        assert!(e.contains("0-500"), "{e}");
        // How long to share: seconds, and only with something to share.
        assert_eq!(
            args(&["--share", "test", "--share-for", "4.5"])
                .unwrap()
                .share_for,
            Some(4.5)
        );
        for bad in ["NaN", "-1", "inf", "7200"] {
            let bad = &format!("--share-for={bad}");
            let e = args(&["--share", "test", bad]).err().unwrap().to_string();
            assert!(e.contains("not a number of seconds"), "{bad}: {e}");
        }
        assert!(
            args(&["--share-for", "4"]).is_err(),
            "nothing to stop sharing"
        );
    }
}
