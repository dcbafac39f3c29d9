//! Measuring process trees through /proc: an app and its WebKit helpers, a browser and its
//! renderers.

use std::process::Child;

/// Kills (and reaps) a child process when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `pid` and every process below it.
pub fn tree(pid: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|p| Some((p, parent_of(p)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// User + system CPU seconds of one process.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}

/// CPU seconds per process name in a tree (e.g. confab, WebKitWebProcess).
pub fn tree_cpu_by_name(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for p in tree(pid) {
        let name = std::fs::read_to_string(format!("/proc/{p}/comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        *out.entry(name).or_insert(0.0) += cpu_seconds(p).unwrap_or(0.0);
    }
    out
}

/// Peak resident set (VmHWM) of one process, MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn tree_cpu_seconds(pid: u32) -> f64 {
    tree(pid).iter().filter_map(|p| cpu_seconds(*p)).sum()
}

/// Proportional set size of a process tree, MiB.
pub fn tree_pss_mib(pid: u32) -> f64 {
    tree(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .sum::<f64>()
        / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_process_tree() {
        let me = std::process::id();
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kid = Killed(child);
        let t = tree(me);
        assert!(t.contains(&me) && t.contains(&kid.0.id()), "{t:?}");
        assert!(tree_pss_mib(me) > 1.0);
        assert!(cpu_seconds(me).is_some());
        // This test process has touched at least a few MiB, and no more than its PSS allows.
        let hwm = peak_rss_mib(me).unwrap();
        assert!(hwm > 1.0 && hwm < 100_000.0, "{hwm}");
        assert_eq!(peak_rss_mib(u32::MAX), None);
    }
}
