//! The real app in a real X server: Xvfb, WebKitWebDriver, a real signaling server and
//! confab-peer processes.
#![allow(dead_code)]

use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use confab_bench::procs::Killed as Proc;
use confab_bench::procs::Xvfb;

/// GUI and browser tests take turns: on a 2-core machine, several WebKit or Chromium
/// instances at once starve each other (WebKit then reports the page as hung).
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>")
        .to_owned()
}

pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let p = bin_dir().join(name);
    if !p.exists() {
        bail!(
            "{} is missing: build the binaries first (`cargo xtask test` does)",
            p.display()
        );
    }
    Ok(p)
}

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("confab-ui-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn artifacts() -> PathBuf {
    let d = bin_dir().parent().expect("target").join("artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An X server of our own (its display number chosen by Xvfb: see [`Xvfb`]).
pub struct Display {
    pub name: String,
    _x: Xvfb,
}

pub fn xvfb() -> Result<Display> {
    let x = Xvfb::start(1280, 800)?;
    Ok(Display {
        name: x.display.clone(),
        _x: x,
    })
}

/// An X server of our own with a window manager (openbox): windows to share are listed from
/// its client list, as on any desktop.
pub fn xvfb_with_window_manager() -> Result<Display> {
    let x = Xvfb::start(1280, 800)?.with_window_manager()?;
    Ok(Display {
        name: x.display.clone(),
        _x: x,
    })
}

/// What the X server shows in a rectangle of the screen, RGBA (the root window read back:
/// whatever any program painted there, the app's native video surface included).
#[cfg(target_os = "linux")]
pub fn screen_rgba(display: &Display, x: i16, y: i16, w: u16, h: u16) -> Result<Vec<u8>> {
    use xcb::x;
    let (conn, n) = xcb::Connection::connect(Some(&display.name))?;
    let root = conn
        .get_setup()
        .roots()
        .nth(n as usize)
        .context("the display has no screen")?
        .root();
    let image = conn.wait_for_reply(conn.send_request(&x::GetImage {
        format: x::ImageFormat::ZPixmap,
        drawable: x::Drawable::Window(root),
        x,
        y,
        width: w,
        height: h,
        plane_mask: u32::MAX,
    }))?;
    let data = image.data();
    let px = usize::from(w) * usize::from(h);
    ensure!(
        image.depth() == 24 && data.len() >= px * 4,
        "a 24-bit screen read as 4 bytes a pixel: depth {}, {} bytes",
        image.depth(),
        data.len()
    );
    Ok(data[..px * 4]
        .chunks_exact(4)
        .flat_map(|p| [p[2], p[1], p[0], 255])
        .collect())
}

/// Writes RGBA pixels to the artifacts folder as a PPM picture (a format any viewer opens).
pub fn write_ppm(name: &str, rgba: &[u8], w: usize, h: usize) -> Result<()> {
    let pixels = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]);
    let ppm: Vec<u8> = format!("P6 {w} {h} 255\n")
        .into_bytes()
        .into_iter()
        .chain(pixels)
        .collect();
    std::fs::write(artifacts().join(name), ppm)?;
    Ok(())
}

/// Environment for WebKit under Xvfb.
pub fn gui_env(cmd: &mut Command, display: &Display) {
    cmd.env("DISPLAY", &display.name)
        .env("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
        .env("WEBKIT_DISABLE_DMABUF_RENDERER", "1")
        .env("GDK_BACKEND", "x11")
        .env("NO_AT_BRIDGE", "1")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("XDG_SESSION_TYPE");
}

pub struct Peer {
    pub proc: Proc,
    pub stats: PathBuf,
}

/// A confab-peer that waits in `room`, answering calls, live stats every half second.
pub fn peer(
    url: &str,
    room: &str,
    name: &str,
    hz: u32,
    extra: &[&str],
    dir: &Path,
) -> Result<Peer> {
    peer_on("127.0.0.1", url, room, name, hz, extra, dir)
}

/// The same, gathering ICE candidates on `bind`.
pub fn peer_on(
    bind: &str,
    url: &str,
    room: &str,
    name: &str,
    hz: u32,
    extra: &[&str],
    dir: &Path,
) -> Result<Peer> {
    let stats = dir.join(format!("{name}.json"));
    let child = Command::new(workspace_bin("confab-peer")?)
        .args([
            "--server",
            url,
            "--room",
            room,
            "--name",
            name,
            "--bind",
            bind,
            "--auto-accept",
        ])
        .args([
            "--size",
            "640x480",
            "--audio",
            &format!("tone:{hz}"),
            "--stats-every",
            "0.5",
            "--stats-json",
        ])
        .arg(&stats)
        .args(extra)
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Peer {
        proc: Proc(child),
        stats,
    })
}

impl Peer {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(&self.stats).ok()?).ok()
    }

    /// Waits until `f` holds for the whole report (not only its first peer).
    pub fn wait_report(
        &self,
        what: &str,
        secs: u64,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            match self.json() {
                Some(j) if f(&j) => return Ok(j),
                Some(j) if Instant::now() > deadline => {
                    bail!("{what}: not within {secs} s; the peer reports {j:#}")
                }
                None if Instant::now() > deadline => {
                    bail!("{what}: the peer wrote no stats within {secs} s")
                }
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// Waits until the peer's live stats about the one other person in its call satisfy `f`.
    /// For a call with more people, [`Peer::wait_report`] (this fails rather than pick one).
    pub fn wait(
        &self,
        what: &str,
        secs: u64,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(j) = self.json() {
                let peers = j["peers"].as_array().map_or(&[][..], |a| a.as_slice());
                ensure!(
                    peers.len() <= 1,
                    "{what}: `wait` reads a call with one other person; this one has {} \
                     (use `wait_report`)",
                    peers.len()
                );
                if let Some(p) = peers.first() {
                    if f(p) {
                        return Ok(p.clone());
                    }
                }
                if Instant::now() > deadline {
                    bail!("{what}: not within {secs} s; the peer reports {j:#}");
                }
            } else if Instant::now() > deadline {
                bail!("{what}: the peer wrote no stats within {secs} s");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// WebKitWebDriver on a free port.
pub struct Driver {
    pub url: String,
    /// The driver's and the app's stderr.
    pub log: PathBuf,
    _proc: Proc,
}

impl Driver {
    /// The end of the app's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("ALSA lib"))
            .collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

pub fn webdriver(display: &Display) -> Result<Driver> {
    webdriver_with(display, &[])
}

/// [`webdriver`], with more environment for the app it starts (after the GUI's own).
pub fn webdriver_with(display: &Display, env: &[(&str, &str)]) -> Result<Driver> {
    let port = free_port();
    let log = std::env::temp_dir().join(format!(
        "confab-webdriver-{}-{port}.log",
        std::process::id()
    ));
    let mut cmd = Command::new("WebKitWebDriver");
    cmd.arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    cmd.env("TAURI_WEBVIEW_AUTOMATION", "true");
    gui_env(&mut cmd, display);
    cmd.envs(env.iter().copied());
    let p = Proc(
        cmd.spawn()
            .context("WebKitWebDriver (package webkit2gtk-driver) must be installed")?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Driver {
                url: format!("http://127.0.0.1:{port}"),
                log,
                _proc: p,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("WebKitWebDriver did not start")
}

/// The app's arguments for a test: its own config folder, the test devices, loopback ICE.
pub fn app_args(config: &Path) -> Vec<String> {
    [
        "--multi-instance",
        "--camera",
        "test",
        "--mic",
        "tone",
        "--speaker",
        "none",
        "--bind",
        "127.0.0.1",
        "--config-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([config.display().to_string()])
    .collect()
}

pub async fn session(driver: &Driver, args: Vec<String>) -> Result<fantoccini::Client> {
    // Two rustls crypto providers are linked (ring for our TLS, another through the WebDriver
    // client's HTTP stack): pick one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "webkitgtk:browserOptions".into(),
        serde_json::json!({ "binary": env!("CARGO_BIN_EXE_confab"), "args": args }),
    );
    let client = fantoccini::ClientBuilder::rustls()?
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .context("a WebDriver session with the app")?;
    Ok(client)
}

/// Ends a UI test's session: on failure the app's log and, if named, a screenshot; then the
/// session is closed. Each WebDriver step has a deadline: a driver that stops answering fails
/// the test rather than hanging the suite (CI has 90 minutes for everything).
pub async fn finish(
    c: fantoccini::Client,
    driver: &Driver,
    result: Result<()>,
    failure_shot: Option<&str>,
) -> Result<()> {
    const STEP: Duration = Duration::from_secs(15);
    if result.is_err() {
        eprintln!("the app's log:\n{}", driver.log_tail());
        if let Some(name) = failure_shot {
            match tokio::time::timeout(STEP, c.screenshot()).await {
                Ok(Ok(shot)) => {
                    let _ = std::fs::write(artifacts().join(name), shot);
                }
                Ok(Err(e)) => eprintln!("no screenshot: {e}"),
                Err(_) => eprintln!("no screenshot: the WebDriver did not answer in {STEP:?}"),
            }
        }
    }
    close_session(c).await;
    result
}

/// Closes a WebDriver session, giving up after 15 s (the processes around it are killed when
/// dropped).
/// A Chromium session of its own for `body`, closed afterwards whatever `body` made of it.
pub async fn with_browser(body: impl AsyncFnOnce(&fantoccini::Client) -> Result<()>) -> Result<()> {
    with_browser_flags(|flags| flags, body).await
}

/// The same with Chromium's flags (`confab_bench::chromium_args`) changed by `flags`.
pub async fn with_browser_flags(
    flags: impl FnOnce(Vec<String>) -> Vec<String>,
    body: impl AsyncFnOnce(&fantoccini::Client) -> Result<()>,
) -> Result<()> {
    let chrome = chromedriver()?;
    let args = flags(confab_bench::chromium_args(&chrome.profile));
    let c = confab_bench::chromium_session_with(&chrome.url, args).await?;
    let result = body(&c).await;
    close_session(c).await;
    result
}

pub async fn close_session(c: fantoccini::Client) {
    const STEP: Duration = Duration::from_secs(15);
    if tokio::time::timeout(STEP, c.close()).await.is_err() {
        eprintln!("the WebDriver session did not close in {STEP:?}");
    }
}

/// Polls a script until it returns something truthy; returns that value.
pub async fn wait_js(
    c: &fantoccini::Client,
    what: &str,
    secs: u64,
    script: &str,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = c.execute(script, vec![]).await?;
        let truthy = !(v.is_null() || v == false || v == "" || v == 0);
        if truthy {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {secs} s (last: {v})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Browser interop

/// Runs the named test again inside a network namespace that has only loopback (so Chromium
/// cannot pair a LAN address with our 127.0.0.1). Returns true in the inner run.
pub fn in_loopback_netns(test: &str) -> bool {
    in_netns(test, "ip link set lo up")
}

/// The address [`in_lan_netns`] gives its one network.
pub const LAN_ADDRESS: &str = "10.77.0.1";

/// Runs the named test again inside a network namespace with loopback and one private
/// network (`LAN_ADDRESS`, a veth pair, the default route): for a server such as Janus that
/// gathers its ICE candidates only on a network that is not loopback.
pub fn in_lan_netns(test: &str) -> bool {
    in_netns(
        test,
        "ip link set lo up && ip link add v0 type veth peer name v1 && \
         ip addr add 10.77.0.1/24 dev v0 && ip link set v1 up && ip link set v0 up && \
         ip route add default dev v0",
    )
}

fn in_netns(test: &str, setup: &str) -> bool {
    if std::env::var_os("CONFAB_IN_NETNS").is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new("unshare")
        .args([
            "-n",
            "--",
            "sh",
            "-c",
            &format!("{setup} && exec \"$0\" \"$@\""),
        ])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("CONFAB_IN_NETNS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("unshare (util-linux) and ip (iproute2) are needed for browser tests");
    let out = String::from_utf8_lossy(&status.stdout);
    let err = String::from_utf8_lossy(&status.stderr);
    print!("{out}");
    eprint!("{err}");
    // The inner test's own error (an `Error:` and what follows, up to its backtrace) goes
    // into this panic's message: a CI excerpt that keeps only the failure then still says why.
    let why: String = err
        .find("Error: ")
        .map(|at| {
            let rest = &err[at..];
            let body = &rest[..rest.find("Stack backtrace:").unwrap_or(rest.len())];
            body.trim_end().chars().take(4000).collect()
        })
        .unwrap_or_default();
    assert!(
        status.status.success(),
        "{test} failed inside its network namespace\n{why}"
    );
    // A renamed test would run nothing and pass: exactly this one test must have run.
    assert!(
        out.contains("running 1 test") && out.contains("1 passed"),
        "the inner run of {test} did not run exactly that test:\n{out}"
    );
    false
}

pub struct Chrome {
    pub url: String,
    _proc: Proc,
    profile: PathBuf,
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

pub fn chromedriver() -> Result<Chrome> {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("chromedriver (package chromium-driver) must be installed")?;
    let p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let profile =
                std::env::temp_dir().join(format!("confab-chrome-{}-{port}", std::process::id()));
            return Ok(Chrome {
                url: format!("http://127.0.0.1:{port}"),
                _proc: p,
                profile,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("chromedriver did not start")
}

/// The web client's report of what it received, per peer.
pub async fn web_report(c: &fantoccini::Client) -> Result<Vec<serde_json::Value>> {
    let v = c
        .execute("return await window.confabWeb.report();", vec![])
        .await?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

pub async fn wait_web(
    c: &fantoccini::Client,
    what: &str,
    secs: u64,
    f: impl Fn(&[serde_json::Value]) -> bool,
) -> Result<Vec<serde_json::Value>> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = web_report(c).await?;
        if f(&r) {
            return Ok(r);
        }
        if Instant::now() > deadline {
            let trace = c
                .execute("return (window.confabWeb.trace || []).join('\\n');", vec![])
                .await
                .unwrap_or_default();
            bail!(
                "{what}: not within {secs} s; the browser reports {}\nits call-flow trace:\n{}",
                serde_json::to_string_pretty(&r)?,
                trace.as_str().unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
