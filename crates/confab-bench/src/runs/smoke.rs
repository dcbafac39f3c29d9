//! `confab-bench smoke`: a few benchmarks, briefly and small, on whatever binaries `--bin-dir`
//! names (`cargo xtask test` points it at the debug ones the tests built), so that a
//! benchmark's harness that no longer runs, or whose figures no longer come, fails the suite
//! rather than the next person who measures. It checks that the figures are there and make
//! sense (pictures arrived, the pattern read back), never how fast: speed is measured in
//! release, on a quiet machine.

use crate::Dirs;
use anyhow::{ensure, Context, Result};
use serde_json::Value;

/// Reads `name` from the figures folder: its rows.
fn rows(dirs: &Dirs, name: &str) -> Result<Vec<Value>> {
    let path = dirs.out()?.join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let rows = v.as_array().cloned().unwrap_or_default();
    ensure!(!rows.is_empty(), "{name} has no rows");
    Ok(rows)
}

fn number(row: &Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(row, |v, k| &v[*k])
        .as_f64()
        .unwrap_or(f64::NAN)
}

pub fn run(dirs: &Dirs) -> Result<()> {
    let (size, codec) = ("320x240".to_owned(), "vp8".to_owned());
    let (sizes, codecs) = (std::slice::from_ref(&size), std::slice::from_ref(&codec));
    super::call::run(3.0, sizes, codecs, dirs)?;
    for row in rows(dirs, "call.json")? {
        let fps = number(&row, &["answerer", "fps"]);
        ensure!(
            fps > 5.0,
            "bench call: B decoded {fps} pictures/s of A: {row}"
        );
    }
    super::network::run(4.0, &size, codecs, Some("loss 5"), dirs)?;
    for row in rows(dirs, "network.json")? {
        let (fps, pattern) = (number(&row, &["fps"]), number(&row, &["pattern_pct"]));
        ensure!(
            fps > 5.0 && pattern > 90.0,
            "bench network: {fps} pictures/s, {pattern} % of them the pattern: {row}"
        );
    }
    match confab_netlab::kernel::KernelLab::new() {
        Err(e) => println!("SKIPPED bench network --kernel: {e}"),
        Ok(lab) => {
            drop(lab);
            super::network_kernel::run(10.0, &size, &codec, Some("clean"), dirs)?;
            for row in rows(dirs, "network-kernel.json")? {
                let ours = number(&row, &["confab", "fps"]);
                let theirs = number(&row, &["chromium", "fps"]);
                ensure!(
                    ours > 5.0 && theirs > 5.0,
                    "bench network --kernel: Confab {ours}, Chromium {theirs} pictures/s: {row}"
                );
            }
        }
    }
    println!("bench smoke: call, network and network --kernel ran, and their figures came");
    Ok(())
}
