//! `confab-bench`: every benchmark of the project. Run through `cargo xtask bench
//! signal|call|network|room|app|vs-browser|audio`, which builds the release binaries and forwards its arguments
//! here. Each prints a table and writes the same figures as JSON to `target/bench/`; they never
//! fail on a number (this machine is shared and noisy), only when a program they run fails.

mod runs;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::Command;

#[derive(Parser)]
#[command(name = "confab-bench", about)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

/// Where the programs are and where the figures go.
#[derive(Args, Clone)]
pub struct Dirs {
    /// Where the release binaries are (default: next to this program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the JSON figures go (default: `bench` beside the binaries' folder, i.e.
    /// `target/bench`).
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

impl Dirs {
    pub fn bin(&self) -> Result<PathBuf> {
        match &self.bin_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(std::env::current_exe()?
                .parent()
                .context("this program's folder")?
                .to_owned()),
        }
    }

    pub fn out(&self) -> Result<PathBuf> {
        match &self.out_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(self
                .bin()?
                .parent()
                .context("the binaries' folder has no parent")?
                .join("bench")),
        }
    }
}

const SIGNAL_HELP: &str = "\
Starts the release confab-signal pinned to core 0 and confab-loadgen pinned to core 1.
The generator holds N connections in rooms of 2-8 peers and relays signal messages at each
total rate R (messages/s), then prints connections held, relayed messages/s, relay latency
p50/p99, the server's CPU seconds and peak RSS, and the generator's own CPU (a generator near
one full core means the figure is the generator's limit, not the server's).
With --nodes K (K > 1), each rate also runs on K nodes sharing rooms through a real
redis-server (started here, like the nodes, on core 0: the same CPU as one node), the
generator's clients spread round robin over the K nodes, so most signals cross nodes; the
table shows those figures beside the one-node ones (column `nodes`).
Defaults: N=10000, rates 10000,20000, 15 s each, 200-byte payload, 1 node.
Targets: 10,000 connections held; p99 under 20 ms at 20,000 messages/s.
Writes target/bench/signal.json (one object per rate and number of nodes).";

const NETWORK_HELP: &str = "\
Runs two confab-peer processes calling each other through a local confab-signal (release
builds, loopback), both impairing what their own sockets receive through the in-process
network lab (confab-peer --impair/--blackout), once per condition and codec: clean; 1, 5, 10,
20 % loss; 50, 150, 300 ms round trip; 5 % at 100 ms and 10 % at 50 ms; 1 Mbit/s and
300 kbit/s caps; a 5 s blackout. Prints what the answering peer received: decoded fps, the
share read back as the pattern, out-of-order pictures, freezes (> 300 ms) per 10 s and their
total, latency p50/p95, the caller's send rate, the round trip, audio concealed, and after
the blackout the time video took to come back beyond the blackout itself.
Targets (issue 10): >= 24 fps, <= 1 freeze per 10 s at 5 %/100 ms and 10 %/50 ms; settle at
or below a cap; video back within 2 s after a 5 s blackout.
Writes target/bench/network.json (one object per condition and codec).
With --kernel (root; iproute2, nftables, Chromium), instead: the conditions the kernel lab
makes for any program (clean; 5, 10 % loss; 1 Mbit/s and 300 kbit/s caps; a 5 s blackout),
each side of the call in a network namespace of its own joined by a veth link, first for two
confab-peers, then for two headless Chromium tabs running the web client (the first codec):
fps, freezes per 10 s and their total, latency p95, and Confab/Chromium ratios (the goal:
at least as smooth as Chromium). Writes target/bench/network-kernel.json.";

const CALL_HELP: &str = "\
Runs two confab-peer processes calling each other through a local confab-signal (release
builds, loopback), 30 fps test pattern and tone, once per size and codec, and prints per
configuration: setup (join -> first decoded frame) and answer -> first frame, capture ->
decoded latency p50/p95 (read from the pattern's timestamps), frames per second received,
CPU seconds per minute of call and peak RSS (per peer process); then where answer -> first
frame went: ICE connected, connection up (DTLS, SRTP), first picture encoded and sent (B),
received, assembled and decoded (A), in ms after the answer.
Targets: first frame < 150 ms after the answer (issue 14: <= 60 ms at 720p); 720p latency p50 < 15 ms; a 720p duplex
call under 40 % of one core (24 CPU s/min per peer).
Writes target/bench/call.json (one object per size and codec).";

const ROOM_HELP: &str = "\
Everyone in a room calls everyone, N = 4, 6 and 8 confab-peer processes (release builds, H.264,
test pattern and tone, 320x240 at 15 fps by default) through a local confab-signal, first in a
mesh (peer to peer), then through a real Janus VideoRoom (confab-signal --sfu, Janus started
here). Prints per room size and mode: CPU seconds per minute per peer process (mean and
highest), what each peer sends and receives (kbit/s), frames per second per pair, pairs
decoding of N x (N-1), and Janus's own CPU.
Targets: through the SFU, a peer's uplink stays one stream whatever N (the mesh's grows with
N-1) and its CPU grows only with the decodes.
Writes target/bench/room.json (one object per room size and mode).";

const APP_HELP: &str = "\
Launches the release desktop app under Xvfb (WebKit compositing off) three times (the first
on a fresh config and cache folder) and prints launch -> window ready min/median/max; then
starts it in a room, measures it idle, and has it call a confab-peer (720p, 30 fps): memory
idle and in the call (PSS of the whole process tree), CPU in the call per process and per part
(capture+encode, decode, frames to the window, the window's own work, the rest), frames drawn
per tile, and capture -> on screen latency p50/p95 (the window reads the peer's test pattern
back from the remote tile it drew).
Targets: window < 1 s every time; idle < 2 % of a core; < 300 MiB in a call; 30 fps drawn;
capture -> on screen p50 <= 20 ms.
Writes target/bench/app.json (one object).";

const VS_BROWSER_HELP: &str = "\
The same call twice through one local confab-signal, in a loopback-only network namespace:
two headless Chromium instances running the web client, then two confab-peers (H.264, 30 fps
test pattern and a 440 Hz tone, 1.5 Mbit/s); prints setup, latency, fps, CPU and memory of both process trees,
and Confab / Chromium ratios. Then the desktop app (under Xvfb, both tiles drawn) and one
Chromium tab in one call with each other, both measured over the same seconds (head to head,
2.5 Mbit/s each way, the app's cap: app/tab, goal <= 0.6); then the app in a call with a confab-peer at the same size: its CPU
beside one Chromium tab's, and where the app's CPU went (per process and per part).
Writes target/bench/vs-browser.json (one object per size).";

const AUDIO_HELP: &str = "\
Runs the release confab-audio-bench: confab-media's audio processing (sonora: echo
cancellation, noise suppression, gain control, high-pass) on fixtures: espeak-ng's speech in
two voices (the issue's fixtures; installed with the benchmark), with the same figures on
speech-like voices built in code from fixed seeds beside them, pink noise, and a room with
RT60 250 ms. It prints ERLE median and
10th percentile (60 and 200 ms echo paths, far end alone, after 3 s), convergence and
reconvergence after an echo path change, ERLE through a soft-clipping speaker, the near end's
segmental SNR in double talk, the SNR gain on speech in pink noise at 10 dB SNR, and the
processing time per 10 ms frame.
Targets: ERLE median >= 30 dB, p10 >= 20 dB; converged within 2 s; double talk >= 10 dB;
noise gain >= 10 dB.
Writes target/bench/audio.json (one object).";

#[derive(Subcommand)]
enum What {
    /// Signaling server load: connections held, relay rate and latency, server CPU and memory.
    #[command(
        long_about = SIGNAL_HELP,
        override_usage = "cargo xtask bench signal [--connections N] [--rates R1,R2,..] [--duration SECS] [--payload BYTES] [--nodes K]"
    )]
    Signal {
        /// Connections the generator holds.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Total relay rates to run, messages/s, comma-separated.
        #[arg(long, default_value = "10000,20000")]
        rates: String,
        /// Seconds of relaying per rate.
        #[arg(long, default_value_t = 15.0)]
        duration: f64,
        /// Bytes of payload per message.
        #[arg(long, default_value_t = 200)]
        payload: usize,
        /// Also run on this many nodes sharing rooms through Redis (1: one node only).
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// A call on impaired networks: loss, delay, caps, a blackout, per codec.
    #[command(
        long_about = NETWORK_HELP,
        override_usage = "cargo xtask bench network [--duration SECS] [--size WxH] [--codecs h264,vp8] [--only NAME] [--kernel]"
    )]
    Network {
        /// Seconds per run.
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// Video size.
        #[arg(long, default_value = "1280x720")]
        size: String,
        /// Video codecs, comma-separated.
        #[arg(long, default_value = "h264,vp8")]
        codecs: String,
        /// Only the conditions whose name contains this (e.g. `loss`, `cap`, `blackout`).
        #[arg(long)]
        only: Option<String>,
        /// The kernel lab instead, Confab beside Chromium (root).
        #[arg(long)]
        kernel: bool,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Two confab-peers in a call: first frame, latency, fps, CPU and memory per size and codec.
    #[command(
        long_about = CALL_HELP,
        override_usage = "cargo xtask bench call [--duration SECS] [--sizes 640x480,1280x720] [--codecs h264,vp8]"
    )]
    Call {
        /// Seconds per run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Video sizes, comma-separated.
        #[arg(long, default_value = "640x480,1280x720")]
        sizes: String,
        /// Video codecs, comma-separated.
        #[arg(long, default_value = "h264,vp8")]
        codecs: String,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Rooms of 4, 6 and 8 people, mesh vs SFU: CPU per peer, uplink and downlink, Janus CPU.
    #[command(
        long_about = ROOM_HELP,
        override_usage = "cargo xtask bench room [--duration SECS] [--people 4,6,8] [--size 320x240] [--fps 15]"
    )]
    Room {
        /// Seconds per run.
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// Room sizes, comma-separated.
        #[arg(long, default_value = "4,6,8")]
        people: String,
        /// Video size.
        #[arg(long, default_value = "320x240")]
        size: String,
        /// Frames per second.
        #[arg(long, default_value_t = 15)]
        fps: u32,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// The desktop app: time to window, memory idle and in a 720p call, CPU, frames drawn.
    #[command(long_about = APP_HELP, override_usage = "cargo xtask bench app [--duration SECS]")]
    App {
        /// Seconds of call measured.
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Audio processing quality and cost: ERLE, convergence, double talk, noise, CPU per frame.
    #[command(long_about = AUDIO_HELP, override_usage = "cargo xtask bench audio")]
    Audio {
        #[command(flatten)]
        dirs: Dirs,
    },
    /// call, network and network --kernel, briefly and small, checking their figures come
    /// (run by `cargo xtask test` on the debug binaries; not a measurement).
    Smoke {
        #[command(flatten)]
        dirs: Dirs,
    },
    /// The same call with Chromium <-> Chromium and confab-peer <-> confab-peer.
    #[command(
        long_about = VS_BROWSER_HELP,
        override_usage = "cargo xtask bench vs-browser [--duration SECS] [--sizes 640x480,1280x720]"
    )]
    VsBrowser {
        /// Seconds of call per contestant and size.
        #[arg(long, default_value_t = 15.0)]
        duration: f64,
        /// Video sizes, comma-separated.
        #[arg(long, default_value = "640x480,1280x720")]
        sizes: String,
        #[command(flatten)]
        dirs: Dirs,
    },
}

/// Splits a comma-separated list, refusing empty entries.
fn list(s: &str, what: &str) -> Result<Vec<String>> {
    let v: Vec<String> = s.split(',').map(|p| p.trim().to_owned()).collect();
    if v.iter().any(String::is_empty) {
        bail!("empty entry in the {what} list `{s}`");
    }
    Ok(v)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.what {
        What::Signal {
            connections,
            rates,
            duration,
            payload,
            nodes,
            dirs,
        } => {
            let rates = list(&rates, "rates")?
                .iter()
                .map(|r| r.parse().with_context(|| format!("bad rate `{r}`")))
                .collect::<Result<Vec<f64>>>()?;
            let load = runs::signal::Load {
                connections,
                duration,
                payload,
            };
            runs::signal::run(&load, &rates, nodes, &dirs)
        }
        What::Call {
            duration,
            sizes,
            codecs,
            dirs,
        } => runs::call::run(
            duration,
            &list(&sizes, "sizes")?,
            &list(&codecs, "codecs")?,
            &dirs,
        ),
        What::Network {
            duration,
            size,
            codecs,
            only,
            kernel,
            dirs,
        } => {
            let codecs = list(&codecs, "codecs")?;
            if kernel {
                runs::network_kernel::run(duration, &size, &codecs[0], only.as_deref(), &dirs)
            } else {
                runs::network::run(duration, &size, &codecs, only.as_deref(), &dirs)
            }
        }
        What::Room {
            duration,
            people,
            size,
            fps,
            dirs,
        } => {
            let people = list(&people, "people")?
                .iter()
                .map(|n| match n.parse::<usize>() {
                    Ok(n) if (2..=8).contains(&n) => Ok(n),
                    _ => bail!("room sizes are 2 to 8 (the server's room capacity), not `{n}`"),
                })
                .collect::<Result<Vec<usize>>>()?;
            runs::room::run(duration, &people, &size, fps, &dirs)
        }
        What::App { duration, dirs } => runs::app::run(duration, &dirs),
        What::Audio { dirs } => runs::audio::run(&dirs),
        What::Smoke { dirs } => runs::smoke::run(&dirs),
        What::VsBrowser {
            duration,
            sizes,
            dirs,
        } => {
            if std::env::var_os("CONFAB_IN_NETNS").is_none() {
                // Chromium in a loopback-only namespace, so both calls use the same path.
                let status = Command::new("unshare")
                    .args([
                        "-n",
                        "--",
                        "sh",
                        "-c",
                        "ip link set lo up && exec \"$0\" \"$@\"",
                    ])
                    .arg(std::env::current_exe()?)
                    .args(std::env::args().skip(1))
                    .env("CONFAB_IN_NETNS", "1")
                    .status()
                    .context("unshare (util-linux) and ip (iproute2)")?;
                if !status.success() {
                    bail!("the benchmark failed inside its network namespace");
                }
                return Ok(());
            }
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(runs::vs_browser::run(
                duration,
                &list(&sizes, "sizes")?,
                &dirs,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn todays_xtask_command_lines_still_parse() {
        let cli = Cli::try_parse_from([
            "confab-bench",
            "call",
            "--duration",
            "3",
            "--sizes",
            "640x480",
            "--codecs",
            "vp8",
            "--bin-dir",
            "/t/release",
        ])
        .unwrap();
        let What::Call {
            duration,
            sizes,
            codecs,
            dirs,
        } = cli.what
        else {
            panic!("not call")
        };
        assert_eq!(
            (duration, sizes.as_str(), codecs.as_str()),
            (3.0, "640x480", "vp8")
        );
        assert_eq!(dirs.out().unwrap(), PathBuf::from("/t/bench"));
        let cli = Cli::try_parse_from([
            "confab-bench",
            "signal",
            "--connections",
            "200",
            "--rates",
            "1000,2000",
            "--payload",
            "64",
            "--nodes",
            "3",
            "--out-dir",
            "/x",
        ])
        .unwrap();
        let What::Signal {
            connections,
            rates,
            payload,
            duration,
            nodes,
            dirs,
        } = cli.what
        else {
            panic!("not signal")
        };
        assert_eq!(
            (connections, rates.as_str(), payload, nodes),
            (200, "1000,2000", 64, 3)
        );
        assert_eq!(duration, 15.0);
        assert_eq!(dirs.out().unwrap(), PathBuf::from("/x"));
        assert!(Cli::try_parse_from(["confab-bench", "app", "--duration", "5"]).is_ok());
        assert!(Cli::try_parse_from(["confab-bench", "room", "--people", "4,8"]).is_ok());
        assert!(Cli::try_parse_from(["confab-bench", "vs-browser", "--sizes", "1280x720"]).is_ok());
        assert!(Cli::try_parse_from(["confab-bench", "audio", "--bin-dir", "/t/release"]).is_ok());
        assert!(Cli::try_parse_from(["confab-bench", "call", "--duration"]).is_err());
        assert!(Cli::try_parse_from(["confab-bench", "network", "--only", "cap"]).is_ok());
        assert!(Cli::try_parse_from(["confab-bench", "lan-party"]).is_err());
    }

    #[test]
    fn long_help_keeps_the_targets_and_names_the_json_file() {
        let mut cmd = Cli::command();
        for (name, file, target) in [
            ("signal", "signal.json", "p99 under 20 ms"),
            ("call", "call.json", "first frame < 150 ms"),
            ("network", "network.json", "video back within 2 s"),
            ("room", "room.json", "uplink stays one stream"),
            ("app", "app.json", "window < 1 s"),
            ("vs-browser", "vs-browser.json", "Confab / Chromium"),
            ("audio", "audio.json", "ERLE median >= 30 dB"),
        ] {
            let help = cmd
                .find_subcommand_mut(name)
                .unwrap()
                .render_long_help()
                .to_string();
            assert!(help.contains(file), "{name}: {help}");
            assert!(help.contains(target), "{name}: {help}");
            assert!(
                help.contains(&format!("cargo xtask bench {name}")),
                "{help}"
            );
        }
        cmd.debug_assert();
    }

    #[test]
    fn lists_refuse_empty_entries() {
        assert_eq!(list("h264, vp8", "codecs").unwrap(), ["h264", "vp8"]);
        let e = list("640x480,,1280x720", "sizes").unwrap_err();
        assert!(e.to_string().contains("sizes"), "{e}");
    }
}
