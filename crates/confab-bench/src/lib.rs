//! The benchmarks' library: what the measured programs report ([`reports`], read with serde),
//! what the benchmarks print and write to `target/bench/` ([`figures`]), and what benchmarks and
//! tests share for driving processes ([`procs`]) and browsers ([`chromium_session`]).

pub mod figures;
pub mod procs;
pub mod reports;

/// Flags for headless Chromium with fake devices, autoplay, and WebRTC on loopback (see the
/// field notes: without the background-networking flags it keeps dialling out; without the
/// mDNS feature off it hides host candidates).
pub fn chromium_args(profile: &std::path::Path) -> Vec<String> {
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// A WebDriver session with headless Chromium (flags above), through the chromedriver at
/// `driver_url`, with its profile in `profile`.
pub async fn chromium_session(
    driver_url: &str,
    profile: &std::path::Path,
) -> anyhow::Result<fantoccini::Client> {
    chromium_session_with(driver_url, chromium_args(profile)).await
}

/// The same with Chromium's flags given whole (`chromium_args`, changed).
pub async fn chromium_session_with(
    driver_url: &str,
    args: Vec<String>,
) -> anyhow::Result<fantoccini::Client> {
    // Two rustls crypto providers are linked (ring for our TLS, another through the WebDriver
    // client's HTTP stack): pick one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), serde_json::json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
    );
    Ok(fantoccini::ClientBuilder::rustls()?
        .capabilities(caps)
        .connect(driver_url)
        .await?)
}
