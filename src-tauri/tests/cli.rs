//! The app launched from the command line straight into a call with a confab-peer.

mod common;

use anyhow::Result;
use common::*;
use confab_signal::{SignalConfig, SignalServer};
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launched_with_call_sends_its_pattern_and_tone() -> Result<()> {
    let _turn = one_at_a_time().await;
    let display = xvfb()?;
    let server = SignalServer::start(SignalConfig {
        listen: "127.0.0.1:0".parse()?,
        ..Default::default()
    })
    .await?;
    let dir = scratch("cli");
    let peer = peer(
        &server.ws_url(),
        "cli-room",
        "Pat",
        660,
        &["--duration", "60"],
        &dir,
    )?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_confab"));
    cmd.args([
        "--server",
        &server.ws_url(),
        "--room",
        "cli-room",
        "--name",
        "App",
        "--call",
    ])
    .args(app_args(&dir.join("config")))
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    gui_env(&mut cmd, &display);
    let app = Proc(cmd.spawn()?);
    let seen = peer.wait("the peer receives the app's call", 60, |p| {
        p["name"] == "App"
            && p["video"]["pattern_frames"].as_u64() > Some(60)
            && p["audio"]["tone_hz"]
                .as_f64()
                .is_some_and(|hz| (hz - 440.0).abs() < 5.0)
    })?;
    anyhow::ensure!(seen["video"]["frames_out_of_order"] == 0, "{seen:#}");
    anyhow::ensure!(
        seen["video"]["width"] == 1280 && seen["video"]["height"] == 720,
        "the app sends 720p: {seen:#}"
    );
    drop(app);
    drop(peer);
    server.shutdown(std::time::Duration::from_secs(1)).await;
    Ok(())
}
