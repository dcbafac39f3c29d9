//! The processes a run starts ([`Killed`], [`Xvfb`]) and measuring process trees through
//! /proc: an app and its WebKit helpers, a browser and its renderers.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills (and reaps) a child process when dropped.
pub struct Killed(pub Child);

impl Killed {
    /// Asks the process to end (SIGTERM: a confab-peer hangs up and leaves the room) and
    /// waits up to `within` for it; true if it ended.
    pub fn stop(&mut self, within: std::time::Duration) -> bool {
        let pid = self.0.id().to_string();
        let asked = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = std::time::Instant::now() + within;
        while asked && std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A virtual X server of our own (Xvfb), stopped on drop. Xvfb picks a free display number
/// itself (`-displayfd`: the first whose socket it can bind; binding is atomic), so tests
/// starting at the same moment (the threads of one test binary share a process id) never meet
/// on one display, and leftovers of killed runs are no obstacle. It listens on Linux's
/// abstract socket only (`-nolisten unix`), which clients try first: `-displayfd` turns lock
/// files off, and inside a network namespace of a test's own (abstract sockets are per
/// namespace) it would take `:0` and replace the desktop's `/tmp/.X11-unix/X0` file.
pub struct Xvfb {
    /// The window manager, if asked for: dropped first, before its X server.
    _wm: Option<Killed>,
    _x: Killed,
    /// `:N`, for `DISPLAY`.
    pub display: String,
}

impl Xvfb {
    /// Starts one with a `width` x `height` screen of 24-bit color, accepting connections
    /// when this returns.
    pub fn start(width: u32, height: u32) -> anyhow::Result<Xvfb> {
        use anyhow::Context;
        use std::io::BufRead;
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0"])
            .arg(format!("{width}x{height}x24"))
            .args(["-nolisten", "tcp", "-nolisten", "unix"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("Xvfb (package xvfb) must be installed: `cargo xtask test` does")?;
        let out = child.stdout.take();
        let x = Killed(child);
        // Xvfb writes its number once it accepts connections, or exits (end of file). The
        // reader ends either way: on a timeout the kill below closes the pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(out) = out {
                let _ = std::io::BufReader::new(out).read_line(&mut line);
            }
            let _ = tx.send(line);
        });
        let said = rx.recv_timeout(Duration::from_secs(30));
        let number = said
            .as_deref()
            .ok()
            .and_then(|line| line.trim().parse::<u32>().ok());
        match number {
            Some(n) => {
                let _ = reader.join();
                Ok(Xvfb {
                    _wm: None,
                    _x: x,
                    display: format!(":{n}"),
                })
            }
            None => {
                drop(x);
                let _ = reader.join();
                match said {
                    Ok(_) => anyhow::bail!("Xvfb ended without taking a display"),
                    Err(_) => anyhow::bail!("Xvfb took no display within 30 s"),
                }
            }
        }
    }
}

impl Xvfb {
    /// The same server with a window manager (openbox), as a desktop has one: windows to
    /// share are listed from its client list.
    pub fn with_window_manager(mut self) -> anyhow::Result<Xvfb> {
        use anyhow::Context;
        let child = Command::new("openbox")
            .arg("--sm-disable")
            .env("DISPLAY", &self.display)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("openbox (package openbox) must be installed: `cargo xtask test` does")?;
        self._wm = Some(Killed(child));
        Ok(self)
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
        *out.entry(comm(p)).or_insert(0.0) += cpu_seconds(p).unwrap_or(0.0);
    }
    out
}

/// A process's name (`/proc/<pid>/comm`: at most 15 bytes of it), empty if it is gone.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The first process of `pid`'s tree named `name` (its `comm`, at most 15 bytes of the name).
pub fn find_in_tree(pid: u32, name: &str) -> Option<u32> {
    tree(pid).into_iter().find(|&p| comm(p) == name)
}

/// The value of `var` in the environment `pid` started with (`/proc/<pid>/environ`).
pub fn env_of(pid: u32, var: &str) -> Option<String> {
    let all = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    all.split(|&b| b == 0).find_map(|kv| {
        let kv = std::str::from_utf8(kv).ok()?;
        kv.strip_prefix(var)?.strip_prefix('=').map(str::to_owned)
    })
}

/// User + system CPU seconds of one thread, and its name, from a `/proc/.../stat` line.
fn stat_name_and_cpu(stat: &str) -> Option<(String, f64)> {
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let cpu = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0;
    Some((name.to_owned(), cpu))
}

/// CPU seconds per thread name of one process (`video-send`, `ui-frames`, `tokio-runtime-w`...).
pub fn thread_cpu_by_name(pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in dir.flatten() {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        if let Some((name, cpu)) = stat_name_and_cpu(&stat) {
            *out.entry(name).or_insert(0.0) += cpu;
        }
    }
    out
}

/// The parts of the desktop app's work, for `bench vs-browser`: which thread (or helper
/// process) does what. Thread names are the ones the engine, the media crate and the app give
/// their threads.
pub const APP_PARTS: [&str; 5] = [
    "capture+encode",
    "decode",
    "frames to the window",
    "the window's own work",
    "network, audio, the rest",
];

/// Which of [`APP_PARTS`] a thread of the app process belongs to (`main` is the process's own
/// name: its first thread runs the window's event loop).
pub fn app_part_of_thread(thread: &str, main: &str) -> &'static str {
    match thread {
        "video-send" | "camera" | "test-pattern" | "share-send" => APP_PARTS[0],
        "video-decode" => APP_PARTS[1],
        "ui-frames" | "ui-stream" => APP_PARTS[2],
        t if t == main => APP_PARTS[3],
        _ => APP_PARTS[4],
    }
}

/// CPU seconds per part of the app's work: its threads by [`app_part_of_thread`], and every
/// other process in its tree (WebKit's web and network processes) as the window's own work.
pub fn app_cpu_by_part(pid: u32) -> BTreeMap<String, f64> {
    let main = comm(pid);
    let mut out: BTreeMap<String, f64> = APP_PARTS.iter().map(|p| (p.to_string(), 0.0)).collect();
    for (thread, cpu) in thread_cpu_by_name(pid) {
        *out.entry(app_part_of_thread(&thread, &main).into())
            .or_default() += cpu;
    }
    for p in tree(pid).into_iter().filter(|p| *p != pid) {
        *out.entry(APP_PARTS[3].into()).or_default() += cpu_seconds(p).unwrap_or(0.0);
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

    #[test]
    fn reads_what_a_process_of_the_tree_was_started_with() {
        let me = std::process::id();
        let kid = Killed(
            std::process::Command::new("sleep")
                .arg("5")
                .env("CONFAB_BENCH_PROBE", "a=b")
                .spawn()
                .unwrap(),
        );
        // Until the child is through exec, it has the test's name, and for a moment after its
        // name changes its environment is not readable yet (the bench reads a web process that
        // has run for seconds). Its own tree: another test here runs a `sleep` of its own.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let (found, value) = loop {
            let found = find_in_tree(kid.0.id(), "sleep");
            let value = found.and_then(|p| env_of(p, "CONFAB_BENCH_PROBE"));
            if value.is_some() || std::time::Instant::now() > deadline {
                break (found, value);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(found, Some(kid.0.id()));
        assert_eq!(value.as_deref(), Some("a=b"));
        let found = kid.0.id();
        // A prefix of a name is not the name; an absent process or variable is `None`.
        assert_eq!(env_of(found, "CONFAB_BENCH"), None);
        assert_eq!(find_in_tree(me, "no-such-process"), None);
        assert_eq!(env_of(u32::MAX, "PATH"), None);
    }

    #[test]
    fn reads_threads_by_name_and_sorts_the_apps_work_into_parts() {
        let me = std::process::id();
        let spin = std::thread::Builder::new()
            .name("video-decode".into())
            .spawn(|| {
                let t = std::time::Instant::now();
                let mut x = 0u64;
                while t.elapsed() < std::time::Duration::from_millis(300) {
                    x = x.wrapping_mul(31).wrapping_add(1);
                }
                std::hint::black_box(x);
                // Still alive while the parent reads it.
                std::thread::sleep(std::time::Duration::from_millis(500));
            })
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
        let threads = thread_cpu_by_name(me);
        assert!(
            threads.get("video-decode").is_some_and(|c| *c >= 0.1),
            "{threads:?}"
        );
        let parts = app_cpu_by_part(me);
        assert_eq!(parts.len(), APP_PARTS.len(), "{parts:?}");
        assert!(parts["decode"] >= 0.1, "{parts:?}");
        spin.join().unwrap();
        // A name in parentheses may hold spaces and parentheses itself.
        let (name, cpu) =
            stat_name_and_cpu("7 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0").unwrap();
        assert_eq!((name.as_str(), cpu), ("a (b) c", 2.0));
        assert_eq!(
            app_part_of_thread("confab", "confab"),
            "the window's own work"
        );
        assert_eq!(
            app_part_of_thread("ui-frames", "confab"),
            "frames to the window"
        );
        assert_eq!(
            app_part_of_thread("tokio-runtime-w", "confab"),
            "network, audio, the rest"
        );
    }
}
