//! The real app window under Xvfb, driven through WebKitWebDriver, calling a real confab-peer
//! through a real signaling server.
//! Linux only: Xvfb, WebKitWebDriver and the X11 pattern window are Linux's (the README's
//! Platforms section says what the other systems' CI runs).
#![cfg(target_os = "linux")]

mod common;

use anyhow::{ensure, Result};
use common::*;
use confab_signal::{SignalConfig, SignalServer};
use fantoccini::key::Key;
use fantoccini::Locator;
use std::time::Duration;

async fn server() -> SignalServer {
    SignalServer::start(SignalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .expect("server")
}

async fn type_into(c: &fantoccini::Client, css: &str, text: &str) -> Result<()> {
    let el = c.find(Locator::Css(css)).await?;
    el.clear().await?;
    el.send_keys(text).await?;
    Ok(())
}

/// Joins `room` on the server at `url` as Ada and calls everyone there, once someone is.
async fn join_and_call_all(c: &fantoccini::Client, room: &str, url: &str) -> Result<()> {
    wait_js(
        c,
        "the join screen",
        20,
        "return document.getElementById('f-name')",
    )
    .await?;
    type_into(c, "#f-name", "Ada").await?;
    type_into(c, "#f-room", room).await?;
    type_into(c, "#f-server", url).await?;
    c.find(Locator::Css("#join-btn")).await?.click().await?;
    wait_js(
        c,
        "someone to call",
        15,
        "return !document.getElementById('call-all').disabled",
    )
    .await?;
    c.find(Locator::Css("#call-all")).await?.click().await?;
    Ok(())
}

/// A call about to start: a signaling server, Pat (a confab-peer with a 660 Hz tone, for 90 s)
/// waiting in `room`, and the app's session (its own config folder).
async fn pat_waits(
    driver: &Driver,
    room: &str,
) -> Result<(SignalServer, Peer, fantoccini::Client)> {
    let server = server().await;
    let dir = scratch(room);
    let peer = peer(
        &server.ws_url(),
        room,
        "Pat",
        660,
        &["--duration", "90"],
        &dir,
    )?;
    let c = session(driver, app_args(&dir.join("config"))).await?;
    Ok((server, peer, c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_call_see_the_pattern_mute_and_hang_up() -> Result<()> {
    let _turn = one_at_a_time().await;
    let display = xvfb()?;
    let driver = webdriver(&display)?;
    let server = server().await;
    let dir = scratch("call");
    let peer = peer(
        &server.ws_url(),
        "ui-room",
        "Pat",
        660,
        &[
            "--duration",
            "90",
            "--say",
            "hello from Pat, see https://example.org/x.",
        ],
        &dir,
    )?;
    let c = session(&driver, app_args(&dir.join("config"))).await?;
    let result = async {
        wait_js(&c, "the join screen", 20, "return !document.getElementById('join-screen').hidden && document.getElementById('f-name')").await?;
        // The microphone test: the meter moves while it records (the test tone), then it plays
        // back, and says the microphone works.
        wait_js(&c, "the microphone test starts", 10, "document.getElementById('mic-test').click(); return true").await?;
        wait_js(&c, "recording, the meter up", 10, "return document.getElementById('mic-test-status').textContent.startsWith('Recording') \
                 && parseInt(document.getElementById('mic-meter-fill').style.width) > 30").await?;
        wait_js(&c, "playing back", 10, "return document.getElementById('mic-test-status').textContent.startsWith('Playing back')").await?;
        wait_js(&c, "the microphone works", 10, "const s = document.getElementById('mic-test-status'); \
                 return s.dataset.result === 'heard' && s.textContent.includes('works') && !document.getElementById('mic-test').disabled").await?;
        type_into(&c, "#f-name", "Ada").await?;
        type_into(&c, "#f-room", "ui-room").await?;
        type_into(&c, "#f-server", &server.ws_url()).await?;
        c.find(Locator::Css("#join-btn")).await?.click().await?;
        wait_js(&c, "the room screen", 15, "return !document.getElementById('room-screen').hidden").await?;
        wait_js(&c, "the peer listed", 15, "return document.querySelectorAll('#people li').length === 1").await?;
        c.find(Locator::Css("#call-all")).await?.click().await?;

        // The remote tile shows the peer's test pattern, frame numbers going up.
        let script = "const t = document.querySelector('#grid .tile:not(.local)'); \
                      return t && window.confabReadTile(t.dataset.key);";
        let first = wait_js(&c, "the peer's pattern in its tile", 30, script).await?;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let later = wait_js(&c, "a later frame", 10, script).await?;
        ensure!(later["frame"].as_u64() > first["frame"].as_u64(), "frames advance: {first} then {later}");
        // ... as a stream its <img> loads from the app (not the fallback over the channel).
        let how = c
            .execute("return document.body.classList.contains('streams') \
                      && document.querySelector('#grid .tile:not(.local) img.video').src", vec![])
            .await?;
        ensure!(how.as_str().is_some_and(|s| s.starts_with("http://127.0.0.1:")), "a stream: {how}");
        // The self view shows our camera (at half size, so its blocks are not read).
        wait_js(&c, "our own picture in the local tile", 10, "return document.querySelector('#grid .tile.local.has-video')").await?;

        // The peer sees our pattern and hears our tone.
        peer.wait("the peer gets the app's media", 30, |p| {
            p["video"]["pattern_frames"].as_u64() > Some(30)
                && p["video"]["frames_out_of_order"] == 0
                && p["audio"]["tone_hz"].as_f64().is_some_and(|hz| (hz - 440.0).abs() < 5.0)
        })?;

        // The peer's tile shows the verification code, the same one confab-peer computed.
        let theirs = peer.wait("confab-peer's verification code", 20, |p| p["verification_code"].is_string())?;
        let shown = wait_js(&c, "the code on the tile", 20, "const e = document.querySelector('#grid .tile:not(.local) .code'); return e && !e.hidden && e.textContent.trim()").await?;
        ensure!(shown == theirs["verification_code"], "the app shows {shown}, confab-peer has {}", theirs["verification_code"]);

        let shot = c.screenshot().await?;
        std::fs::write(artifacts().join("ui-call.png"), shot)?;

        // F fills the window with the other person, still drawn; our own picture floats in a
        // corner; Esc goes back. ? lists the shortcuts.
        c.find(Locator::Css("body")).await?.send_keys("f").await?;
        wait_js(&c, "the peer fills the window", 5, "const g = document.getElementById('grid'); \
                 const t = g.querySelector('.tile.main:not(.local)'); \
                 return g.dataset.mode === 'focus' && t && t.getBoundingClientRect().width >= window.innerWidth - 2").await?;
        let seen = wait_js(&c, "the pattern in the full-window tile", 10, script).await?;
        let newer = format!("const t = document.querySelector('#grid .tile.main:not(.local)'); \
                             const r = t && window.confabReadTile(t.dataset.key); return r && r.frame > {} && r", seen["frame"]);
        wait_js(&c, "newer frames drawn full-window", 10, &newer).await?;
        wait_js(&c, "our own picture floats", 5, "return document.querySelector('#grid .tile.local.floating:not([hidden])')").await?;
        std::fs::write(artifacts().join("ui-call-focus.png"), c.screenshot().await?)?;
        c.find(Locator::Css("body")).await?.send_keys(&char::from(Key::Escape).to_string()).await?;
        wait_js(&c, "back to the grid", 5, "return document.getElementById('grid').dataset.mode === 'grid'").await?;
        c.find(Locator::Css("body")).await?.send_keys("?").await?;
        wait_js(&c, "the shortcuts listed", 5, "const d = document.getElementById('help'); \
                 return d.open && d.textContent.includes('Hang up') && d.querySelectorAll('kbd').length >= 8").await?;
        c.find(Locator::Css("#help-close")).await?.click().await?;
        wait_js(&c, "the shortcuts closed", 5, "return !document.getElementById('help').open").await?;

        // Chat: Pat's line waits as unread; T opens the chat, where it shows with its link;
        // what we type reaches Pat over the call, not through the server.
        wait_js(&c, "an unread chat line", 30, "const b = document.getElementById('chat-unread'); return !b.hidden && b.textContent === '1'").await?;
        c.find(Locator::Css("body")).await?.send_keys("t").await?;
        wait_js(&c, "Pat's line in the chat", 5, "const l = document.querySelector('#chat:not([hidden]) #chat-lines li'); \
                 return l && l.textContent.includes('hello from Pat') && l.querySelector('a') && l.querySelector('a').textContent === 'https://example.org/x' \
                 && document.getElementById('chat-unread').hidden").await?;
        c.find(Locator::Css("#chat-input")).await?.send_keys(&format!("hi Pat{}", char::from(Key::Enter))).await?;
        wait_js(&c, "our line in the chat", 5, "const l = document.querySelector('#chat-lines li.mine'); return l && l.textContent.includes('hi Pat')").await?;
        peer.wait_report("Pat gets our line", 15, |j| {
            j["chat"].as_array().is_some_and(|c| c.iter().any(|l| l["text"] == "hi Pat" && l["name"] == "Ada"))
        })?;
        std::fs::write(artifacts().join("ui-call-chat.png"), c.screenshot().await?)?;
        // (A toast may cover the Close button: the click goes to the button itself.)
        wait_js(&c, "the chat closed", 5, "document.getElementById('chat-close').click(); \
                 document.activeElement && document.activeElement.blur(); return document.getElementById('chat').hidden").await?;

        // I shows the connection details: Pat's frame rate with a sparkline drawn from the
        // last seconds, the codec and the picture size; I again hides them.
        c.find(Locator::Css("body")).await?.send_keys("i").await?;
        wait_js(&c, "the connection details", 10, "const sec = document.querySelector('#stats:not([hidden]) #stats-people section:not([data-peer=\"me\"])'); \
                 if (!sec) return null; const t = sec.textContent; \
                 const line = sec.querySelector('polyline'); \
                 return t.includes('fps') && t.includes('640×480') && t.includes('Round trip') && t.includes('Path') \
                 && line && line.getAttribute('points').split(' ').length >= 2").await?;
        // Above the people, what runs on our own microphone (the defaults: all three).
        wait_js(&c, "our microphone's processing", 5, "const sec = document.querySelector('#stats-people section[data-peer=\"me\"]'); \
                 return sec && sec.textContent.includes('echo cancellation, noise suppression, automatic gain')").await?;
        // The dot on Pat's tile judges pictures and the link together, and says so.
        wait_js(&c, "the quality dot", 10, "const q = document.querySelector('#grid .tile:not(.local) .quality'); \
                 return q && q.dataset.q === 'good' && q.title.includes('frames per second') && q.title.includes('ms round trip') && q.title").await?;
        std::fs::write(artifacts().join("ui-call-stats.png"), c.screenshot().await?)?;
        c.find(Locator::Css("body")).await?.send_keys("i").await?;
        wait_js(&c, "the details closed", 5, "return document.getElementById('stats').hidden").await?;

        // M mutes: the peer hears silence.
        c.find(Locator::Css("body")).await?.send_keys("m").await?;
        wait_js(&c, "the mic button shows muted", 5, "return document.getElementById('btn-mic').getAttribute('aria-pressed') === 'true'").await?;
        peer.wait("the peer hears silence", 15, |p| p["audio"]["level"].as_f64().is_some_and(|l| l < 0.005))?;

        // Ctrl+D hangs up: back to the room screen, not in a call.
        c.find(Locator::Css("body")).await?.send_keys(&format!("{}d", char::from(Key::Control))).await?;
        wait_js(&c, "back to the room screen", 10, "return !document.getElementById('idle').hidden && document.querySelectorAll('#grid .tile').length === 0").await?;
        Ok(())
    }
    .await;
    let result = finish(c, &driver, result, Some("ui-call-failure.png")).await;
    drop(peer);
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_server_shows_its_error_in_words() -> Result<()> {
    let _turn = one_at_a_time().await;
    let display = xvfb()?;
    let driver = webdriver(&display)?;
    let dir = scratch("bad");
    let c = session(&driver, app_args(&dir.join("config"))).await?;
    let result = async {
        wait_js(&c, "the join screen", 20, "return document.getElementById('f-name')").await?;
        type_into(&c, "#f-name", "Ada").await?;
        type_into(&c, "#f-room", "r").await?;
        type_into(&c, "#f-server", "ws://127.0.0.1:1/ws").await?;
        c.find(Locator::Css("#join-btn")).await?.click().await?;
        let text = wait_js(&c, "the error", 20, "const e = document.getElementById('join-error'); return !e.hidden && e.textContent").await?;
        ensure!(text.as_str().unwrap_or("").contains("Cannot reach the server"), "{text}");
        // An unencrypted server outside the private networks: asked first, nothing sent yet.
        type_into(&c, "#f-server", "ws://203.0.113.7:8787/ws").await?;
        c.find(Locator::Css("#join-btn")).await?.click().await?;
        let text = wait_js(&c, "the ws:// warning", 10, "const e = document.getElementById('join-error'); return e.textContent.includes('not encrypted') && e.textContent").await?;
        ensure!(text.as_str().unwrap_or("").contains("wss://"), "{text}");
        wait_js(&c, "the second-press button", 5, "return document.querySelector('#join-btn .label').textContent === 'Join anyway'").await?;
        type_into(&c, "#f-server", "ws://127.0.0.1:1/ws").await?;
        // A room name with a space is refused before anything is sent.
        type_into(&c, "#f-room", "a b").await?;
        c.find(Locator::Css("#join-btn")).await?.click().await?;
        let text = wait_js(&c, "the room error", 5, "const e = document.getElementById('join-error'); return e.textContent.includes('room name') && e.textContent").await?;
        ensure!(text.as_str().unwrap_or("").contains("letters, digits"), "{text}");
        // Network settings: a TURN server without credentials is refused in words; a good
        // list is saved to the settings file.
        c.find(Locator::Css("#net-details summary")).await?.click().await?;
        type_into(&c, "#f-ice", "turn:turn.example.org:3478").await?;
        c.find(Locator::Css("#save-ice")).await?.click().await?;
        wait_js(&c, "the TURN error", 5, "return document.getElementById('join-error').textContent.includes('username')").await?;
        // Two lines: WebDriver types a line break as the Return key (U+E006).
        type_into(&c, "#f-ice", "stun:stun.example.org:3478\u{E006}turn:turn.example.org:3478 alice s3cret").await?;
        c.find(Locator::Css("#save-ice")).await?.click().await?;
        let file = dir.join("config").join("settings.json");
        let mut saved = String::new();
        for _ in 0..50 {
            saved = std::fs::read_to_string(&file).unwrap_or_default();
            if saved.contains("turn.example.org") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let shown = c
            .execute("return document.getElementById('join-error').textContent", vec![])
            .await?;
        ensure!(
            saved.contains("turn.example.org") && saved.contains("alice"),
            "settings file: {saved:?}; the form says {shown}"
        );
        Ok(())
    }
    .await;
    finish(c, &driver, result, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_on_this_computer() -> Result<()> {
    let _turn = one_at_a_time().await;
    let display = xvfb()?;
    let driver = webdriver(&display)?;
    let dir = scratch("host");
    let c = session(&driver, app_args(&dir.join("config"))).await?;
    let result = async {
        wait_js(&c, "the join screen", 20, "return document.getElementById('f-name')").await?;
        type_into(&c, "#f-name", "Host").await?;
        type_into(&c, "#f-room", "lan-party").await?;
        c.find(Locator::Css("#host-btn")).await?.click().await?;
        wait_js(&c, "the room screen", 20, "return !document.getElementById('room-screen').hidden").await?;
        let address = wait_js(&c, "the invite address", 10, "const i = document.getElementById('invite'); return !i.hidden && document.getElementById('invite-address').textContent").await?;
        let address = address.as_str().unwrap_or_default().to_owned();
        ensure!(address.contains(':'), "an IP:port to share: {address}");
        // Another Confab (here confab-peer) joins through the address the invite shows...
        let port = address.rsplit(':').next().unwrap_or_default().to_owned();
        let guest = peer(&format!("127.0.0.1:{port}"), "lan-party", "Guest", 550, &["--duration", "30"], &dir)?;
        wait_js(&c, "the guest in the room", 20, "return [...document.querySelectorAll('#people li')].some(li => li.textContent.includes('Guest'))").await?;
        // ...and the hosted server serves the web client too.
        let page = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap_or(0)))?;
            s.write_all(b"GET /?room=lan-party HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok::<_, std::io::Error>(out)
        })
        .await??;
        ensure!(page.starts_with("HTTP/1.1 200") && page.contains("client.js"), "{page}");
        // Hosting shows in the bar, with a Stop button that ends it: back to the join screen,
        // the indicator gone, and nothing listens on the port any more.
        let shown = wait_js(&c, "the hosting indicator", 10, "const h = document.getElementById('hosting'); return !h.hidden && h.textContent").await?;
        ensure!(shown.as_str().unwrap_or("").contains(&address), "{shown}");
        c.find(Locator::Css("#stop-hosting")).await?.click().await?;
        wait_js(&c, "the join screen after Stop", 20, "return !document.getElementById('join-screen').hidden && document.getElementById('hosting').hidden").await?;
        let port: u16 = address.rsplit(':').next().unwrap_or_default().parse()?;
        let mut closed = false;
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        ensure!(closed, "the hosted server still listens on {port} after Stop");
        // Hosting with no room name picks one nobody guesses (80 bits).
        c.find(Locator::Css("#f-room")).await?.clear().await?;
        c.find(Locator::Css("#host-btn")).await?.click().await?;
        let room = wait_js(&c, "a hosted random room", 20, "const w = document.getElementById('where'); return !w.hidden && w.querySelector('strong') && w.querySelector('strong').textContent").await?;
        let room = room.as_str().unwrap_or_default();
        ensure!(room.starts_with("confab-") && room.len() == 23, "{room}");
        drop(guest);
        Ok(())
    }
    .await;
    finish(c, &driver, result, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_screen_is_shown_large_beside_the_face() -> Result<()> {
    let _turn = one_at_a_time().await;
    let display = xvfb()?;
    let driver = webdriver(&display)?;
    let server = server().await;
    let dir = scratch("share");
    // Pat shares the test screen (the pattern at 1280x720, 5 fps) on a track of its own.
    let peer = peer(
        &server.ws_url(),
        "share",
        "Pat",
        660,
        &["--duration", "60", "--share", "test"],
        &dir,
    )?;
    let c = session(&driver, app_args(&dir.join("config"))).await?;
    let result = async {
        join_and_call_all(&c, "share", &server.ws_url()).await?;
        // The screen is the large tile, named for its owner, and shows the pattern Pat sends;
        // Pat's face is there too, in the strip.
        let read = wait_js(&c, "Pat's screen on the stage", 30, "const t = document.querySelector('#grid .tile.main'); \
                 return t && t.dataset.key.startsWith('share:') && t.querySelector('.name').textContent === \"Pat's screen\" \
                 && window.confabReadTile(t.dataset.key)").await?;
        ensure!(read["frame"].is_u64(), "the shared picture reads back: {read}");
        wait_js(&c, "Pat's face beside it", 15, "const t = [...document.querySelectorAll('#grid .tile:not(.local):not(.main)')].find(t => !t.dataset.key.startsWith('share:')); \
                 return t && window.confabReadTile(t.dataset.key)").await?;
        std::fs::write(artifacts().join("ui-call-share.png"), c.screenshot().await?)?;
        Ok(())
    }
    .await;
    let result = finish(c, &driver, result, Some("ui-share-failure.png")).await;
    drop(peer);
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_a_window_from_the_picker_and_the_other_side_reads_it() -> Result<()> {
    use confab_engine::media_kit::device::pattern_window::PatternWindow;
    let _turn = one_at_a_time().await;
    let display = xvfb_with_window_manager()?;
    // A window painted with the numbered test pattern, 10 times a second: what Ada shares.
    let title = "Confab pattern window";
    let window = PatternWindow::open(Some(&display.name), title, (40, 40), (640, 480), 10.0)?;
    let driver = webdriver(&display)?;
    let (server, peer, c) = pat_waits(&driver, "share-window").await?;
    let card = format!("[...document.querySelectorAll('.share-card')].find(c => c.querySelector('.share-name').textContent === '{title}')");
    let result = async {
        join_and_call_all(&c, "share-window", &server.ws_url()).await?;
        wait_js(&c, "the share button in the call", 30, "const b = document.getElementById('btn-share'); return !b.hidden && b").await?;

        // The picker: the screen and the pattern window, each with its picture (the window's
        // is the pattern at half size, read back from the image the picker shows).
        c.find(Locator::Css("#btn-share")).await?.click().await?;
        let read_thumb = format!("const c = {card}; const img = c && c.querySelector('img'); \
             if (!img || !img.complete || !img.naturalWidth) return null; \
             const cv = document.createElement('canvas'); cv.width = img.naturalWidth; cv.height = img.naturalHeight; \
             const x = cv.getContext('2d'); x.drawImage(img, 0, 0); \
             return window.ConfabPattern.readCanvas(x, cv.width, cv.height)");
        let thumb = wait_js(&c, "the pattern window's picture in the picker", 20, &read_thumb).await?;
        ensure!(thumb["frame"].is_u64(), "the thumbnail reads back: {thumb}");
        wait_js(&c, "a whole screen offered too", 5, "const s = document.querySelector('#share-screens .share-card'); \
                 return s && !document.getElementById('share-screens-title').hidden && s.textContent.includes('1280 × 800')").await?;
        std::fs::write(artifacts().join("ui-share-picker.png"), c.screenshot().await?)?;
        wait_js(&c, "the window chosen", 5, &format!("const c = {card}; c.click(); return c.getAttribute('aria-selected') === 'true'")).await?;
        c.find(Locator::Css("#share-go")).await?.click().await?;

        // Sharing: the bar says what, and Pat decodes the window's pattern, moving.
        wait_js(&c, "the share bar", 15, &format!("const b = document.getElementById('share-bar'); \
                 return !b.hidden && b.textContent.includes('{title}') && document.getElementById('btn-share').getAttribute('aria-pressed') === 'true'")).await?;
        let first = peer.wait("Pat reads the shared window", 30, |p| {
            p["share"]["pattern_frames"].as_u64() > Some(5) && p["share"]["width"] == 640 && p["share"]["height"] == 480
        })?;
        let later = peer.wait("the shared window moves on", 15, |p| {
            p["share"]["last_pattern_frame"].as_u64() > first["share"]["last_pattern_frame"].as_u64().map(|n| n + 10)
        })?;
        ensure!(later["share"]["frames_out_of_order"] == 0, "in order: {}", later["share"]);
        ensure!(later["video"]["pattern_frames"].as_u64() > Some(10), "the camera goes on beside it: {}", later["video"]);
        // The bar previews what the others see (a picture a second): the window's pattern.
        let preview = wait_js(&c, "the share bar's preview of the window", 10, "const p = document.getElementById('share-preview'); \
                 return p.classList.contains('has-video') && window.confabReadTile('local-share')").await?;
        ensure!(preview["frame"].is_u64(), "the preview reads back: {preview}");
        std::fs::write(artifacts().join("ui-share-sharing.png"), c.screenshot().await?)?;

        // E stops sharing; Pat gets no more of it.
        c.find(Locator::Css("body")).await?.send_keys("e").await?;
        wait_js(&c, "the share bar gone", 10, "return document.getElementById('share-bar').hidden \
                 && document.getElementById('btn-share').getAttribute('aria-pressed') === 'false'").await?;
        wait_js(&c, "the preview emptied", 10, "return !document.getElementById('share-preview').classList.contains('has-video')").await?;
        let stopped = peer.wait("Pat's share count settles", 10, |_| true)?["share"]["pattern_frames"].as_u64();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = peer.wait("Pat's figures", 10, |_| true)?["share"]["pattern_frames"].as_u64();
        ensure!(after <= stopped.map(|n| n + 5), "no more shared pictures after stopping: {stopped:?} then {after:?}");

        // Shared again, then the window closes: sharing stops by itself, and says why.
        c.find(Locator::Css("body")).await?.send_keys("e").await?;
        wait_js(&c, "the picker again", 20, &format!("const c = {card}; return c && document.getElementById('share-picker').open && c")).await?;
        wait_js(&c, "shared again", 5, &format!("{card}.click(); document.getElementById('share-go').click(); return true")).await?;
        wait_js(&c, "the share bar again", 15, "return !document.getElementById('share-bar').hidden").await?;
        drop(window);
        wait_js(&c, "sharing stopped with the window, in words", 15, "return document.getElementById('share-bar').hidden \
                 && [...document.querySelectorAll('.toast')].some(t => t.textContent.includes('Sharing stopped'))").await?;
        Ok(())
    }
    .await;
    let result = finish(c, &driver, result, Some("ui-share-window-failure.png")).await;
    drop(peer);
    result
}

/// Where WebKit composites, the call's pictures are painted by the app's native video surface
/// under a transparent page: read back from the screen itself (the page has no picture),
/// frame numbers going up; the page's own background beside the tile; filling the window
/// shows the picture full size with nothing of the page over it; nothing is painted there
/// after hanging up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_is_painted_on_a_native_surface_under_the_page() -> Result<()> {
    use confab_engine::media_kit::pattern;
    let _turn = one_at_a_time().await;
    let display = xvfb()?;
    // WebKit composites (with software GL here), so the page can be transparent.
    let driver = webdriver_with(
        &display,
        &[
            ("WEBKIT_DISABLE_COMPOSITING_MODE", "0"),
            ("WEBKIT_DISABLE_DMABUF_RENDERER", "0"),
        ],
    )?;
    let (server, peer, c) = pat_waits(&driver, "native").await?;
    let tile = "const t = document.querySelector('#grid .tile:not(.local)');";
    // The peer's picture (640x480) as the surface fits it in the tile, on the screen.
    let picture_on_screen = || async {
        let r = c
            .execute(
                &format!(
                    "{tile} if (!t) return null; const b = t.getBoundingClientRect(); \
                     return [b.left + window.screenX, b.top + window.screenY, b.width, b.height]"
                ),
                vec![],
            )
            .await?;
        let v: Vec<f64> = serde_json::from_value(r)?;
        ensure!(
            v.len() == 4 && v[2] >= 100.0 && v[3] >= 100.0,
            "the tile's place: {v:?}"
        );
        let scale = (v[2] / 640.0).min(v[3] / 480.0);
        let (w, h) = ((640.0 * scale).floor(), (480.0 * scale).floor());
        let (x, y) = (v[0] + (v[2] - w) / 2.0, v[1] + (v[3] - h) / 2.0);
        let rgba = screen_rgba(
            &display,
            x.round() as i16,
            y.round() as i16,
            w as u16,
            h as u16,
        )?;
        // Where: the tile's top left, then the picture's.
        Ok::<_, anyhow::Error>((rgba, w as usize, h as usize, [v[0], v[1], x, y]))
    };
    let result = async {
        join_and_call_all(&c, "native", &server.ws_url()).await?;
        wait_js(
            &c,
            "the peer's tile painted natively",
            30,
            &format!(
                "{tile} return t && document.documentElement.classList.contains('native-video') \
                 && t.classList.contains('native') && window.confabReadTile(t.dataset.key) === 'native'"
            ),
        )
        .await?;
        // The pattern on the screen, frame numbers going up.
        let read = || async {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let (rgba, w, h, at) = picture_on_screen().await?;
                if let Some(stamp) = pattern::read_rgba(&rgba, w, h) {
                    return Ok::<_, anyhow::Error>((stamp, w, h, at));
                }
                if std::time::Instant::now() > deadline {
                    // What was read, and the whole screen, for a look at the failure.
                    write_ppm("ui-native-tile.ppm", &rgba, w, h)?;
                    let all = screen_rgba(&display, 0, 0, 1280, 800)?;
                    write_ppm("ui-native-screen.ppm", &all, 1280, 800)?;
                    anyhow::bail!("no pattern on the screen where the peer's tile is ({w}x{h})");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let (first, w, h, at) = read().await?;
        let screen = screen_rgba(&display, 0, 0, 1280, 800)?;
        write_ppm("ui-native-call.ppm", &screen, 1280, 800)?;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (later, ..) = read().await?;
        ensure!(
            later.frame > first.frame,
            "frames advance on the screen: {first:?} then {later:?}"
        );
        // The page is transparent only down to the tiles: beside the tile, its background
        // (painted by the surface under it) is the page's own color.
        let color = |var: &str| {
            let script = format!(
                "const x = document.createElement('canvas').getContext('2d'); \
                 x.fillStyle = getComputedStyle(document.documentElement).getPropertyValue('{var}').trim(); \
                 return x.fillStyle"
            );
            let c = &c;
            async move {
                let v = c.execute(&script, vec![]).await?;
                Ok::<_, anyhow::Error>(v.as_str().unwrap_or_default().to_owned())
            }
        };
        let hex = |p: &[u8]| format!("#{:02x}{:02x}{:02x}", p[0], p[1], p[2]);
        let beside = screen_rgba(&display, (at[0] - 6.0) as i16, (at[1] + 40.0) as i16, 1, 1)?;
        let page = color("--bg").await?;
        ensure!(hex(&beside) == page, "beside the tile: {beside:?}, the page's background is {page}");
        // F fills the window with the peer: the picture full size (its stamp under the page's
        // "Back to the call" button now, so it is seen growing and moving instead), and
        // nothing of the page left over it: the header's corner shows the tile's color.
        c.find(Locator::Css("body")).await?.send_keys("f").await?;
        wait_js(&c, "the peer fills the window", 5, "return document.getElementById('grid').dataset.mode === 'focus'").await?;
        let tile_color = color("--tile").await?;
        let origin: Vec<f64> = serde_json::from_value(
            c.execute("return [window.screenX, window.screenY]", vec![]).await?,
        )?;
        let pixel = |x: f64, y: f64| {
            screen_rgba(&display, x.round() as i16, y.round() as i16, 1, 1).map(|p| hex(&p))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (bigger, fh, fat) = loop {
            let (rgba, fw, fh, fat) = picture_on_screen().await?;
            if fw > w && pixel(origin[0] + 4.0, origin[1] + 4.0)? == tile_color {
                break (rgba, fh, fat);
            }
            ensure!(std::time::Instant::now() < deadline, "the picture did not fill the window ({fw} wide)");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // Painted where the page says and that large: the picture starts where the tile's
        // color (the letterbox beside it) ends.
        let mid = fat[3] + fh as f64 / 2.0;
        ensure!(fat[2] - fat[0] > 8.0, "a letterbox beside the picture: {fat:?}");
        let (outside, inside) = (pixel(fat[2] - 4.0, mid)?, pixel(fat[2] + 4.0, mid)?);
        ensure!(
            outside == tile_color && inside != tile_color && inside != page,
            "at the picture's left edge: {outside} then {inside} (a tile is {tile_color})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (moved, ..) = picture_on_screen().await?;
        ensure!(bigger != moved, "the full-size picture moves on");
        c.find(Locator::Css("body")).await?.send_keys(&char::from(Key::Escape).to_string()).await?;
        wait_js(&c, "back to the grid", 5, "return document.getElementById('grid').dataset.mode === 'grid'").await?;
        peer.wait("the peer gets the app's video", 30, |p| {
            p["video"]["pattern_frames"].as_u64() > Some(30)
        })?;
        // Hung up: the surface paints nothing there any more (not the picture, not the tile):
        // the page's background where the tile was.
        c.find(Locator::Css("#btn-hangup")).await?.click().await?;
        wait_js(&c, "the tile gone", 15, &format!("{tile} return !t")).await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let rgba = screen_rgba(&display, at[2] as i16, at[3] as i16, w as u16, h as u16)?;
            let where_it_was = pixel(at[0] + 20.0, at[1] + 20.0)?;
            if pattern::read_rgba(&rgba, w, h).is_none() && where_it_was == page {
                break;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "after hanging up, where the tile was: {where_it_was} (the page is {page})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }
    .await;
    finish(c, &driver, result, Some("ui-native-failed.png")).await
}

/// On a Wayland desktop whose portal can cast, Share goes through the desktop's own picker
/// (here `confab-testdesk`'s stand-in portal and screen, over a real bus and a real PipeWire;
/// the app is told it is on Wayland). The app's dialog says the desktop is asking, closes when
/// the desktop answers, and the bar says what is shared; Pat decodes the desktop's screen (the
/// numbered pattern, 640x360) moving on. E stops it and the portal session closes. A picker
/// still open when the app's dialog is closed is given up (its session closed, no error); a
/// picker the person cancels just closes the dialog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_through_the_desktops_own_picker_on_wayland() -> Result<()> {
    use confab_engine::media_kit::{convert, device::portal::NODE_NAME, pattern};
    use confab_testdesk::{Desktop, Pictures};
    let _turn = one_at_a_time().await;
    let display = xvfb()?;
    let (w, h) = (640, 360);
    let numbered = move |n: u64| {
        let stamp = pattern::Stamp {
            frame: n as u32,
            capture_us: 0,
        };
        convert::to_rgba(&pattern::frame(w, h, stamp, 0))
    };
    let desk = Desktop::start("ui", Pictures::from_rgba(w, h, 10, numbered), NODE_NAME)?;
    let driver = webdriver_with(
        &display,
        &[
            ("XDG_SESSION_TYPE", "wayland"),
            ("DBUS_SESSION_BUS_ADDRESS", &desk.bus_address),
        ],
    )?;
    let (server, peer, c) = pat_waits(&driver, "share-portal").await?;
    let quiet =
        "![...document.querySelectorAll('.toast')].some(t => t.classList.contains('error'))";
    let result = async {
        join_and_call_all(&c, "share-portal", &server.ws_url()).await?;
        wait_js(
            &c,
            "the share button in the call",
            30,
            "const b = document.getElementById('btn-share'); return !b.hidden && b",
        )
        .await?;

        // Share: the desktop's picker answers at once here; the bar says what is shared.
        c.find(Locator::Css("#btn-share")).await?.click().await?;
        wait_js(
            &c,
            "the share bar",
            20,
            "const b = document.getElementById('share-bar'); \
                 return !b.hidden && b.textContent.includes('the chosen screen') \
                 && !document.getElementById('share-picker').open",
        )
        .await?;
        ensure!(
            desk.pickers() == 1,
            "the desktop's picker was shown once: {}",
            desk.pickers()
        );
        let first = peer.wait("Pat reads the desktop's screen", 30, |p| {
            p["share"]["pattern_frames"].as_u64() > Some(5)
                && p["share"]["width"] == w
                && p["share"]["height"] == h
        })?;
        let later = peer.wait("the desktop's screen moves on", 15, |p| {
            p["share"]["last_pattern_frame"].as_u64()
                > first["share"]["last_pattern_frame"]
                    .as_u64()
                    .map(|n| n + 10)
        })?;
        ensure!(
            later["share"]["frames_out_of_order"] == 0,
            "in order: {}",
            later["share"]
        );
        std::fs::write(
            artifacts().join("ui-share-portal.png"),
            c.screenshot().await?,
        )?;

        // E stops it: the portal session closes.
        c.find(Locator::Css("body")).await?.send_keys("e").await?;
        wait_js(
            &c,
            "the share bar gone",
            10,
            "return document.getElementById('share-bar').hidden",
        )
        .await?;
        for _ in 0..50 {
            if desk.sessions().1 == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(
            desk.sessions() == (1, 1),
            "the session closed on stop: {:?}",
            desk.sessions()
        );

        // The desktop's picker left open: the app's dialog says so; closing it gives the
        // desktop's picker up, without an error.
        desk.hold_next();
        c.find(Locator::Css("body")).await?.send_keys("e").await?;
        wait_js(
            &c,
            "the dialog says the desktop asks",
            20,
            "const d = document.getElementById('share-picker'); \
                 const s = document.getElementById('share-status'); \
                 return d.open && !s.hidden && s.textContent.includes('your desktop') \
                 && document.getElementById('share-go').hidden",
        )
        .await?;
        for _ in 0..100 {
            if desk.pickers() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(desk.pickers() == 2, "the desktop's picker shown again");
        std::fs::write(
            artifacts().join("ui-share-portal-asking.png"),
            c.screenshot().await?,
        )?;
        c.find(Locator::Css("#share-cancel")).await?.click().await?;
        for _ in 0..50 {
            if desk.sessions().1 == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(
            desk.sessions() == (2, 2),
            "the open picker given up: {:?}",
            desk.sessions()
        );
        // The given-up share's answer reaches the window just after the session closes: a
        // moment for an error toast to show, were there one.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        wait_js(
            &c,
            "no share and no error",
            5,
            &format!("return document.getElementById('share-bar').hidden && {quiet}"),
        )
        .await?;

        // The person cancels the desktop's picker: the dialog just closes.
        desk.cancel_next();
        c.find(Locator::Css("body")).await?.send_keys("e").await?;
        for _ in 0..100 {
            if desk.pickers() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(
            desk.pickers() == 3,
            "the desktop's picker shown a third time"
        );
        wait_js(
            &c,
            "the dialog closed after the cancel",
            20,
            &format!(
                "const d = document.getElementById('share-picker'); \
                 return !d.open && document.getElementById('share-bar').hidden && {quiet}"
            ),
        )
        .await?;
        ensure!(
            !desk.casting() && desk.sessions().1 == 3,
            "cancelled: {:?}",
            desk.sessions()
        );
        Ok(())
    }
    .await;
    let result = finish(c, &driver, result, Some("ui-share-portal-failure.png")).await;
    drop(peer);
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_people_in_one_call_are_all_seen() -> Result<()> {
    let _turn = one_at_a_time().await;
    let display = xvfb()?;
    let driver = webdriver(&display)?;
    let server = server().await;
    let dir = scratch("four");
    // Three confab-peers (at 15 fps, so four engines fit on two cores) and the app.
    let mut peers = Vec::new();
    for (n, name) in ["Pat", "Quin", "Ray"].iter().enumerate() {
        let hz = 500 + 100 * n as u32;
        let extra = ["--duration", "60", "--fps", "15"];
        peers.push(peer(&server.ws_url(), "four", name, hz, &extra, &dir)?);
    }
    let c = session(&driver, app_args(&dir.join("config"))).await?;
    let result = async {
        wait_js(&c, "the join screen", 20, "return document.getElementById('f-name')").await?;
        type_into(&c, "#f-name", "Ada").await?;
        type_into(&c, "#f-room", "four").await?;
        type_into(&c, "#f-server", &server.ws_url()).await?;
        c.find(Locator::Css("#join-btn")).await?.click().await?;
        wait_js(&c, "three people listed", 20, "return document.querySelectorAll('#people li').length === 3").await?;
        c.find(Locator::Css("#call-all")).await?.click().await?;
        // From three others on, one person takes the stage and the rest sit in the strip;
        // every one of the three shows their own pattern.
        let seen = wait_js(&c, "all three people's pictures", 45, "const g = document.getElementById('grid'); \
                 const ts = [...g.querySelectorAll('.tile:not(.local)')]; \
                 const read = ts.map(t => window.confabReadTile(t.dataset.key)); \
                 return g.dataset.mode === 'stage' && ts.length === 3 && read.every(r => r) \
                 && g.querySelectorAll('.tile.main:not(.local)').length === 1 && ts.map(t => t.querySelector('.name').textContent).sort().join()").await?;
        ensure!(seen == "Pat,Quin,Ray", "the three by name: {seen}");
        std::fs::write(artifacts().join("ui-call-four.png"), c.screenshot().await?)?;
        // Four tiles, four streams. With more tiles than the window can stream (WebKit opens
        // 6 connections to a host; here the test's limit of 1), one of the others' tiles keeps
        // its stream and the rest, our self view too, take their pictures over the channel,
        // drawn on their canvas: all three are still seen, and the self view gets pictures
        // again (drawn: `has-video` comes back). Back under the limit, every tile streams.
        let streams = "return document.body.classList.contains('streams') \
                       && [...document.querySelectorAll('#grid .tile img.video')].filter(i => i.src).length";
        ensure!(c.execute(streams, vec![]).await? == 4, "four streams");
        c.execute("window.confabSetMaxStreams(1)", vec![]).await?;
        let mixed = wait_js(&c, "one stream, the rest over the channel", 15, "const ts = [...document.querySelectorAll('#grid .tile:not(.local)')]; \
                 const on = ts.filter(t => t.classList.contains('streamed') && t.querySelector('img.video').getAttribute('src')); \
                 const off = ts.filter(t => !t.classList.contains('streamed') && !t.querySelector('img.video').getAttribute('src')); \
                 const local = document.querySelector('#grid .tile.local'); \
                 return document.body.classList.contains('streams') && on.length === 1 && off.length === 2 \
                 && !local.classList.contains('streamed') && local.classList.contains('has-video') \
                 && [...off, local].every(t => getComputedStyle(t.querySelector('canvas')).display !== 'none') \
                 && ts.every(t => window.confabReadTile(t.dataset.key)) && on.length").await?;
        ensure!(mixed == 1, "one tile streams: {mixed}");
        c.execute("window.confabSetMaxStreams(6)", vec![]).await?;
        wait_js(&c, "four streams again", 15, "const ts = [...document.querySelectorAll('#grid .tile')]; \
                 return ts.length === 4 && ts.every(t => t.classList.contains('streamed') && t.querySelector('img.video').getAttribute('src')) \
                 && [...document.querySelectorAll('#grid .tile:not(.local)')].every(t => window.confabReadTile(t.dataset.key))").await?;
        // And each of them gets Ada's picture and tone.
        for p in &peers {
            p.wait_report("the app's media at each peer", 30, |j| {
                j["peers"].as_array().is_some_and(|ps| {
                    ps.iter().any(|s| {
                        s["name"] == "Ada"
                            && s["video"]["pattern_frames"].as_u64() > Some(20)
                            && s["audio"]["tone_hz"].as_f64().is_some_and(|hz| (hz - 440.0).abs() < 5.0)
                    })
                })
            })?;
        }
        Ok(())
    }
    .await;
    let result = finish(c, &driver, result, Some("ui-four-failure.png")).await;
    drop(peers);
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_in_a_small_window() -> Result<()> {
    let _turn = one_at_a_time().await;
    let display = xvfb()?;
    let driver = webdriver(&display)?;
    let server = server().await;
    let dir = scratch("small");
    let peer = peer(
        &server.ws_url(),
        "small",
        "Pat",
        660,
        &["--duration", "60"],
        &dir,
    )?;
    let c = session(&driver, app_args(&dir.join("config"))).await?;
    let result = async {
        c.set_window_size(400, 680).await?;
        wait_js(&c, "the join screen", 20, "return document.getElementById('f-name')").await?;
        // Everything on the join screen can be reached without sideways scrolling.
        let overflow = c.execute("return document.documentElement.scrollWidth - window.innerWidth", vec![]).await?;
        ensure!(overflow.as_i64() <= Some(0), "the join screen is wider than the window by {overflow} px");
        // A card taller than the window scrolls from its top: the first field can be reached.
        let top = c.execute("return document.getElementById('f-name').getBoundingClientRect().top \
                             - document.getElementById('join-screen').getBoundingClientRect().top", vec![]).await?;
        ensure!(top.as_f64() > Some(0.0), "the name field is cut off above the join screen ({top} px)");
        type_into(&c, "#f-name", "Ada").await?;
        type_into(&c, "#f-room", "small").await?;
        type_into(&c, "#f-server", &server.ws_url()).await?;
        c.find(Locator::Css("#join-btn")).await?.click().await?;
        wait_js(&c, "the room screen", 15, "return !document.getElementById('room-screen').hidden").await?;
        wait_js(&c, "someone to call", 15, "return !document.getElementById('call-all').disabled").await?;
        c.find(Locator::Css("#call-all")).await?.click().await?;
        wait_js(&c, "the peer's tile", 30, "const t = document.querySelector('#grid .tile:not(.local)'); return t && window.confabReadTile(t.dataset.key)").await?;
        // In the call: the tiles fit side by side or stacked, and the controls are on screen.
        let fits = c
            .execute(
                "const w = window.innerWidth, h = window.innerHeight; \
                 const tiles = [...document.querySelectorAll('#grid .tile')].every(t => t.getBoundingClientRect().right <= w + 1); \
                 const b = document.getElementById('btn-hangup').getBoundingClientRect(); \
                 return tiles && b.right <= w && b.bottom <= h && b.width > 0;",
                vec![],
            )
            .await?;
        ensure!(fits == true, "the call does not fit a 400x680 window");
        std::fs::write(artifacts().join("ui-small-window.png"), c.screenshot().await?)?;

        // The pictures came as streams; one that fails (here: an address nothing answers)
        // sends the window back to pictures over the channel, and the peer is seen again.
        let streamed = c
            .execute(
                "const t = document.querySelector('#grid .tile:not(.local)'); \
                 return document.body.classList.contains('streams') && t.querySelector('img.video').src",
                vec![],
            )
            .await?;
        ensure!(
            streamed.as_str().is_some_and(|s| s.starts_with("http://127.0.0.1:")),
            "the peer's tile loads a stream: {streamed}"
        );
        c.execute(
            "document.querySelector('#grid .tile:not(.local) img.video').src = 'http://127.0.0.1:9/video'",
            vec![],
        )
        .await?;
        wait_js(&c, "the window back on the channel", 10, "return !document.body.classList.contains('streams')").await?;
        let seen = wait_js(&c, "the peer's pattern over the channel", 15, "const t = document.querySelector('#grid .tile:not(.local)'); \
                 return t && !t.querySelector('img.video').getAttribute('src') && window.confabReadTile(t.dataset.key)").await?;
        ensure!(seen["frame"].is_u64(), "{seen}");
        Ok(())
    }
    .await;
    let result = finish(c, &driver, result, None).await;
    drop(peer);
    result
}
