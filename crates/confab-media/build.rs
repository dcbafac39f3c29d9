//! Sets `cfg(vp8)` when VP8 (libvpx) is built in: the `vp8` feature is on (the default) and the
//! target is not Windows, which has no libvpx to link (the dependency is not even declared
//! there). One name for one fact, so the code says `#[cfg(vp8)]` rather than repeating the
//! condition; other crates ask `confab_media::video::AVAILABLE`.
//!
//! For Windows with MinGW-w64 (`cargo xtask cross`) it also links GCC's libssp: libopus
//! (opusic-sys, built by CMake) is hardened with the stack protector and `_FORTIFY_SOURCE`,
//! whose checks (`__stack_chk_fail`, `__memset_chk`) MinGW-w64 keeps in libssp, which nothing
//! else links. Statically, so there is no libssp-0.dll to ship; found where the C compiler
//! has it. (MSVC and the other systems have these in their C runtime.)

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vp8)");
    println!("cargo::rerun-if-changed=build.rs");
    let feature = std::env::var_os("CARGO_FEATURE_VP8").is_some();
    let windows = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    if feature && !windows {
        println!("cargo::rustc-cfg=vp8");
    }
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "gnu");
    // (`*-windows-gnullvm` is "gnu" too, with LLVM's runtime: not MinGW's GCC.)
    let llvm = std::env::var("CARGO_CFG_TARGET_ABI").is_ok_and(|abi| abi == "llvm");
    if windows && gnu && !llvm {
        link_libssp();
    }
}

/// The C compiler for the target, as the `cc` crate (and so opusic-sys's CMake) picks it.
fn c_compiler() -> String {
    let target = std::env::var("TARGET").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    for var in [
        format!("CC_{target}"),
        format!("CC_{}", target.replace('-', "_")),
        "TARGET_CC".to_owned(),
    ] {
        println!("cargo::rerun-if-env-changed={var}");
        if let Ok(cc) = std::env::var(&var) {
            return cc;
        }
    }
    format!("{arch}-w64-mingw32-gcc")
}

fn link_libssp() {
    let cc = c_compiler();
    // `ccache x86_64-w64-mingw32-gcc` and the like: the program, then its arguments.
    let mut words = cc.split_whitespace();
    let found = Command::new(words.next().unwrap_or("cc"))
        .args(words)
        .arg("-print-file-name=libssp.a")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        // Not found, the compiler prints the bare name back.
        .filter(|p| std::path::Path::new(p).is_absolute());
    let Some(path) = found else {
        // Newer MinGW-w64 (11 on) has these checks in its own C library, and some
        // toolchains ship no libssp: the link says so if they are really missing.
        println!(
            "cargo::warning={cc} has no libssp.a (GCC's stack-protector library, which \
             libopus needs with MinGW-w64 before 11); linking without it"
        );
        return;
    };
    let dir = std::path::Path::new(&path)
        .parent()
        .expect("an absolute file path has a folder");
    println!("cargo::rustc-link-search=native={}", dir.display());
    // Whole: rustc puts a crate's native libraries right after its own rlib, before
    // opusic-sys's, where a plain archive would be searched before anything needs it.
    println!("cargo::rustc-link-lib=static:+whole-archive,-bundle=ssp");
}
