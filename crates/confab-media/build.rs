//! Sets `cfg(vp8)` when VP8 (libvpx) is built in: the `vp8` feature is on (the default) and the
//! target is not Windows, which has no libvpx to link (the dependency is not even declared
//! there). One name for one fact, so the code says `#[cfg(vp8)]` rather than repeating the
//! condition; other crates ask `confab_media::video::AVAILABLE`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vp8)");
    println!("cargo::rerun-if-changed=build.rs");
    let feature = std::env::var_os("CARGO_FEATURE_VP8").is_some();
    let windows = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    if feature && !windows {
        println!("cargo::rustc-cfg=vp8");
    }
}
