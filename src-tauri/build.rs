fn main() {
    // New or removed UI files must trigger a rebuild (edits already do).
    println!("cargo:rerun-if-changed=../ui");
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(
        tauri_build::AppManifest::new().commands(&[
            "get_state",
            "get_launch",
            "join_room",
            "leave_room",
            "call",
            "accept_call",
            "decline_call",
            "hang_up",
            "set_mic_enabled",
            "set_camera_enabled",
            "set_preview",
            "set_admit_all",
            "list_devices",
            "select_devices",
            "get_settings",
            "save_settings",
            "get_ice_servers",
            "set_ice_servers",
            "host_lan_room",
            "stop_hosting",
            "get_hosting",
            "open_video",
            "frame_ack",
            "tile_size",
            "send_chat",
            "get_chat",
            "open_url",
            "get_stats",
            "get_audio_processing",
        ]),
    ))
    .expect("tauri-build failed");
}
