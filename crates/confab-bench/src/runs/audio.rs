//! `bench audio`: runs the release `confab-audio-bench` (confab-media's measurements of its
//! audio processing on built-in fixtures), prints the table and writes `audio.json`.

use super::write_figures;
use crate::Dirs;
use anyhow::{bail, Context, Result};
use confab_bench::figures::{audio_table, AudioRun};
use std::process::Command;

pub fn run(dirs: &Dirs) -> Result<()> {
    let program = dirs.bin()?.join("confab-audio-bench");
    let out = Command::new(&program)
        .output()
        .with_context(|| format!("starting {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "confab-audio-bench failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let run: AudioRun = serde_json::from_str(line)
        .with_context(|| format!("reading confab-audio-bench's figures: {line:?}"))?;
    print!("{}", audio_table(&run));
    write_figures(&dirs.out()?, "audio.json", &run)
}
