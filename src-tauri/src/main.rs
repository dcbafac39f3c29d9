//! `confab`, the desktop app: a Tauri window over the call engine.
//!
//! `confab [--server URL] [--room R] [--name N] [--call] [--camera ID] [--mic ID] [--speaker ID]
//!  [confab://join?server=…&room=…]` (device ids: `confab_media::device::id`)

#![cfg_attr(
    all(not(debug_assertions), target_os = "windows"),
    windows_subsystem = "windows"
)]

mod app;
mod frames;
mod host;
mod identity;
mod invite;
mod ipc;
mod settings;
mod stream;
mod surface;

use app::{AppState, Launch};
use clap::Parser;
use confab_engine::{Engine, EngineConfig, RtcSettings};
use confab_media::device::VideoFormat;
use settings::Store;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tauri::{Manager, RunEvent};

/// Confab: video calls that just work.
#[derive(Debug, Parser)]
#[command(
    name = "confab",
    version,
    about = "Confab: video calls that just work."
)]
struct Cli {
    /// Signaling server to join (ws://HOST:PORT/ws or HOST:PORT).
    #[arg(long)]
    server: Option<String>,
    /// Room to join at start.
    #[arg(long)]
    room: Option<String>,
    /// Your name.
    #[arg(long)]
    name: Option<String>,
    /// Call everyone in the room once joined.
    #[arg(long)]
    call: bool,
    /// Camera: `test` (the built-in test pattern), `none`, `camera:N`, or a camera's name.
    #[arg(long, value_parser = app::camera_arg)]
    camera: Option<String>,
    /// Microphone: `tone` (the built-in test tone), `tone:HZ`, `none`, or a microphone's name.
    #[arg(long, value_parser = app::mic_arg)]
    mic: Option<String>,
    /// Speaker: `none`, or a speaker's name.
    #[arg(long, value_parser = app::speaker_arg)]
    speaker: Option<String>,
    /// Keep settings here instead of the platform's config folder.
    #[arg(long)]
    config_dir: Option<PathBuf>,
    /// Allow more than one Confab at a time (tests, demos on one machine).
    #[arg(long)]
    multi_instance: bool,
    /// Send pictures to the window over the app's own channel instead of loopback streams
    /// (slower; for a system where the video tiles stay empty).
    #[arg(long)]
    video_channel: bool,
    /// Do not paint the call's video under the window's page on Linux (pictures then go to the
    /// page as streams; for a system where the window shows old pictures or black tiles).
    #[arg(long)]
    no_native_video: bool,
    /// Gather ICE candidates on this address only (e.g. 127.0.0.1).
    #[arg(long, hide = true)]
    bind: Option<String>,
    /// Write figures (frames drawn per tile and second, capture -> on-screen latency) to this
    /// file every second.
    #[arg(long, hide = true)]
    stats_json: Option<PathBuf>,
    /// Camera picture size, WIDTHxHEIGHT (benchmarks compare sizes).
    #[arg(long, hide = true, default_value = "1280x720", value_parser = confab_media::device::parse_size)]
    size: (usize, usize),
    /// An invite link: confab://join?server=…&room=…
    link: Option<String>,
}

fn main() {
    let started = Instant::now();
    surface::paint_on_the_cpu_without_a_gpu();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| confab_engine::DEFAULT_LOG_FILTER.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();

    let mut builder = tauri::Builder::default();
    if !cli.multi_instance {
        // A second launch (e.g. an invite link clicked) hands its arguments to this one.
        builder = builder.plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            if let Some(w) = app.get_webview_window("main") {
                let _ = w.unminimize();
                let _ = w.set_focus();
            }
            for arg in argv.iter().skip(1) {
                if arg.starts_with("confab:") {
                    open_link(app, arg);
                }
            }
        }));
    }
    builder = builder.plugin(tauri_plugin_deep_link::init());

    let cli = Arc::new(cli);
    let setup_cli = cli.clone();
    let app = builder
        .invoke_handler(tauri::generate_handler![
            app::get_state,
            app::get_launch,
            app::join_room,
            app::leave_room,
            app::call,
            app::accept_call,
            app::decline_call,
            app::hang_up,
            app::set_mic_enabled,
            app::set_camera_enabled,
            app::set_preview,
            app::set_admit_all,
            app::list_devices,
            app::select_devices,
            app::get_settings,
            app::save_settings,
            app::get_ice_servers,
            app::set_ice_servers,
            app::host_lan_room,
            app::stop_hosting,
            app::get_hosting,
            app::open_video,
            app::frame_ack,
            app::tile_size,
            app::tile_way,
            app::place_tile,
            app::video_colors,
            app::send_chat,
            app::get_chat,
            app::open_url,
            app::get_stats,
            app::get_audio_processing,
            app::list_shareable,
            app::share,
            app::check_microphone,
        ])
        .setup(move |app| {
            setup(app, &setup_cli, started)?;
            Ok(())
        })
        .build(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("confab: cannot start: {e}");
            std::process::exit(1);
        });

    app.run(move |handle, event| {
        if let RunEvent::Exit = event {
            if let Some(state) = handle.try_state::<AppState>() {
                state.frames.stop();
                let _ = state.stop.send(true);
                let tasks: Vec<_> = state
                    .tasks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .drain(..)
                    .collect();
                tauri::async_runtime::block_on(async {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(8), state.engine.shutdown()).await;
                    state.host.stop().await;
                    // The event forwarder ends with the engine; the others on `stop`.
                    for t in tasks {
                        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
                    }
                });
            }
            // Open streams end; the server's thread is joined.
            if let Some(s) = handle.try_state::<VideoServerState>() {
                drop(s.0.lock().unwrap_or_else(|p| p.into_inner()).take());
            }
            if let Some(t) = handle.try_state::<FramesThread>() {
                if let Some(t) = t.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = t.join();
                }
            }
        }
    });
}

struct FramesThread(Mutex<Option<std::thread::JoinHandle<()>>>);
struct VideoServerState(Mutex<Option<stream::VideoServer>>);

fn setup(
    app: &mut tauri::App,
    cli: &Cli,
    started: Instant,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = match &cli.config_dir {
        Some(d) => d.clone(),
        None => app.path().app_config_dir()?,
    };
    let store = Store::new(&dir);
    let (mut settings, notice) = store.load();
    let mut launch = Launch {
        measure: cli.stats_json.is_some(),
        ..Launch::default()
    };
    launch.notices.extend(notice);
    let certificate = match identity::load_or_create(&dir) {
        Ok(pem) => Some(pem),
        Err(e) => {
            launch.notices.push(format!(
                "Confab could not keep its certificate ({e}); verification codes still work, \
                 but a changed one cannot be pointed out."
            ));
            None
        }
    };

    // An invite link only fills in the join form: joining a server named by a link, with the
    // camera and microphone, is the user's decision (the link may come from anyone).
    let mut join_at_start = cli.room.is_some();
    if let Some(link) = &cli.link {
        match invite::parse(link) {
            Ok(inv) => {
                launch.notices.push(format!(
                    "You were invited to room {} on {}. Check the details, then press Join.",
                    inv.room, inv.server
                ));
                launch.server = Some(inv.server);
                launch.room = Some(inv.room);
                launch.name = inv.name;
            }
            Err(e) => launch
                .notices
                .push(format!("The invite link could not be used: {e}")),
        }
    }
    if cli.server.is_some() {
        launch.server = cli.server.clone();
    }
    if cli.room.is_some() {
        launch.room = cli.room.clone();
        join_at_start = true;
    }
    if cli.name.is_some() {
        launch.name = cli.name.clone();
    }
    launch.call |= cli.call;
    if let Some(c) = &cli.camera {
        settings.camera = c.clone();
    }
    if let Some(m) = &cli.mic {
        settings.microphone = m.clone();
    }
    if let Some(s) = &cli.speaker {
        settings.speaker = s.clone();
    }

    let frames = frames::UiFrames::new();
    let f = frames.clone();
    let frames_thread = std::thread::Builder::new()
        .name("ui-frames".into())
        .spawn(move || f.run())?;
    app.manage(FramesThread(Mutex::new(Some(frames_thread))));
    // The tiles' MJPEG streams; without them pictures go over the channel.
    let video_server = if cli.video_channel {
        None
    } else {
        stream::VideoServer::start(frames.clone())
            .map_err(|e| tracing::warn!("pictures go over the channel: no video server: {e}"))
            .ok()
    };
    let video_base = video_server.as_ref().map(|s| s.base().to_owned());
    app.manage(VideoServerState(Mutex::new(video_server)));

    let devices = app::device_specs(&settings, &mut launch.notices);
    let config = EngineConfig {
        video: devices.camera,
        audio: devices.microphone,
        speaker: devices.speaker,
        format: VideoFormat {
            width: cli.size.0,
            height: cli.size.1,
            fps: 30.0,
        },
        rtc: RtcSettings {
            ice_servers: settings.ice_servers.clone(),
            udp_addrs: vec![format!("{}:0", cli.bind.as_deref().unwrap_or("0.0.0.0"))],
            mdns: cli.bind.is_none(),
            preferred_codec: confab_media::video::VideoCodec::H264,
            start_bitrate: 1_200_000,
            max_bitrate: 2_500_000,
            runtime: None,
            certificate,
            relay_only: settings.relay_only,
            health: Default::default(),
        },
        auto_accept: false,
        audio_bitrate: 32_000,
        processing: settings.audio_processing,
        signaling_silence: confab_engine::signaling::SILENCE_LIMIT,
    };
    let sink = frames.clone();
    let (engine, events) = tauri::async_runtime::block_on(async { Engine::start(config, sink) })?;
    let handle = app.handle().clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = vec![
        tauri::async_runtime::spawn(app::forward_events(handle.clone(), events)),
        tauri::async_runtime::spawn(app::watch_devices(handle.clone(), stopped.clone())),
    ];

    if !cli.multi_instance {
        // Make confab:// links open this app (dev runs; installers register it themselves).
        #[cfg(target_os = "linux")]
        {
            use tauri_plugin_deep_link::DeepLinkExt;
            if let Err(e) = app.deep_link().register_all() {
                tracing::debug!("confab:// links not registered: {e}");
            }
        }
    }

    // The command line (someone at a terminal) joins, and calls, at once.
    let auto = (join_at_start && launch.room.is_some()).then(|| {
        (
            launch
                .server
                .clone()
                .unwrap_or_else(|| settings.server.clone()),
            launch.room.clone().unwrap_or_default(),
            launch.name.clone().unwrap_or_else(|| settings.name.clone()),
            launch.call,
        )
    });
    // The call's pictures painted under the page, where WebKit composites (Linux).
    let native = if surface::wanted() && !cli.video_channel && !cli.no_native_video {
        app.get_webview_window("main")
            .and_then(|w| surface::install(&w, &frames, cli.stats_json.is_some()))
    } else {
        None
    };
    app.manage(AppState {
        engine: engine.clone(),
        frames: frames.clone(),
        video_base,
        native,
        store,
        settings: Mutex::new(settings),
        launch: Mutex::new(launch),
        host: host::Host::default(),
        started,
        tasks: Mutex::new(Vec::new()),
        stop,
    });
    tracing::info!("started in {} ms", started.elapsed().as_millis());

    if let Some((server, room, name, call)) = auto {
        tasks.push(tauri::async_runtime::spawn(auto_join(
            handle.clone(),
            engine.clone(),
            server,
            room,
            name,
            call,
        )));
    }
    if let Some(path) = cli.stats_json.clone() {
        tasks.push(tauri::async_runtime::spawn(write_figures(
            path, frames, started, stopped,
        )));
    }
    if let Some(state) = app.try_state::<AppState>() {
        state
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tasks);
    }
    Ok(())
}

/// Joins (and calls) as the command line or invite link asked.
async fn auto_join(
    handle: tauri::AppHandle,
    engine: Engine,
    server: String,
    room: String,
    name: String,
    call: bool,
) {
    use tauri::Emitter;
    let name = if name.trim().is_empty() {
        "Confab user".to_owned()
    } else {
        name
    };
    if let Err(e) = engine.join(&server, &room, &name, None).await {
        let err = ipc::IpcError::from(e);
        let _ = handle.emit(
            "engine",
            &confab_engine::EngineEvent::Error {
                code: err.code,
                message: err.message,
            },
        );
        return;
    }
    if call {
        // Now if someone is there, otherwise as soon as someone arrives.
        if let Err(e) = engine.call_when_present().await {
            tracing::warn!("auto-call: {e}");
        }
    }
}

/// An invite link handed over by a second launch: the window decides (it may be in a call).
fn open_link(app: &tauri::AppHandle, link: &str) {
    use tauri::Emitter;
    match invite::parse(link) {
        Ok(inv) => {
            let _ = app.emit("invite", &inv);
        }
        Err(e) => {
            let _ = app.emit(
                "engine",
                &confab_engine::EngineEvent::Error {
                    code: confab_engine::ErrorCode::BadLink,
                    message: e,
                },
            );
        }
    }
}

async fn write_figures(
    path: PathBuf,
    frames: Arc<frames::UiFrames>,
    started: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let drawn = frames.take_drawn();
        let latency = frames.latency_percentiles();
        let json = serde_json::json!({
            "uptime_s": started.elapsed().as_secs_f64(),
            "drawn_per_second": drawn,
            "onscreen_latency_ms_p50": latency.map(|l| l.0),
            "onscreen_latency_ms_p95": latency.map(|l| l.1),
        });
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, json.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}

#[cfg(test)]
mod tests {
    /// The command list is written three times (the handler here, `build.rs` for the app
    /// manifest, and the window's capability); they must agree, or a command exists that the
    /// window may not call, or a permission grants one that does not exist.
    #[test]
    fn command_lists_agree() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).expect("readable");
        let main = read("src/main.rs");
        let start = main.find("generate_handler![").expect("handler list") + 18;
        let end = start + main[start..].find(']').expect("end of list");
        let mut handler: Vec<String> = main[start..end]
            .split(',')
            .map(|s| s.trim().trim_start_matches("app::").to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let build = read("build.rs");
        let start = build.find(".commands(&[").expect("manifest list") + 12;
        let end = start + build[start..].find(']').expect("end of list");
        let mut manifest: Vec<String> = build[start..end]
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let caps: serde_json::Value =
            serde_json::from_str(&read("capabilities/default.json")).expect("json");
        let mut allowed: Vec<String> = caps["permissions"]
            .as_array()
            .expect("permissions")
            .iter()
            .filter_map(|p| p.as_str())
            .filter_map(|p| p.strip_prefix("allow-"))
            .map(|p| p.replace('-', "_"))
            .collect();
        handler.sort();
        manifest.sort();
        allowed.sort();
        assert!(handler.len() >= 20, "{handler:?}");
        assert_eq!(handler, manifest, "main.rs vs build.rs");
        assert_eq!(handler, allowed, "main.rs vs capabilities/default.json");
    }
}
