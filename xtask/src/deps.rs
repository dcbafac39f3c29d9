//! System packages: installed with apt-get on Debian/Ubuntu (sudo when not root); elsewhere,
//! printed with what to do.

use crate::Result;
use std::process::Command;

/// Needed to build and run (Debian package names): the C toolchain; cmake (libopus,
/// libjpeg-turbo); nasm (openh264's and libjpeg-turbo's fast paths); libclang (nokhwa's V4L
/// bindings); ALSA (cpal); libvpx (VP8); WebKitGTK 4.1 (the Tauri window); PipeWire, xcb's RandR and GBM (xcap: sharing a screen).
pub const BUILD: &[&str] = &[
    "pkg-config",
    "build-essential",
    "cmake",
    "nasm",
    "libclang-dev",
    "libasound2-dev",
    "libvpx-dev",
    "libwebkit2gtk-4.1-dev",
    "libpipewire-0.3-dev",
    "libspa-0.2-dev",
    "libxcb-randr0-dev",
    "libgbm-dev",
];

/// Needed by the tests and benchmarks, on top of [`BUILD`]: an X server and WebKit's
/// WebDriver for the UI tests, Chromium and its driver for browser interop, iproute2 for
/// network namespaces, veth and tbf caps, Node.js (with npm) for the JS lint and tests,
/// nftables for loss, blackouts and NAT in the kernel network lab, coturn (a real TURN
/// server) for calls through relays, redis-server for signaling nodes joined through Redis,
/// janus (its VideoRoom plugin is the SFU of rooms' calls through a media server),
/// espeak-ng (speech in two voices: the audio processing's echo and double-talk fixtures),
/// openbox (a window manager: windows to share are listed from the manager's client list, as
/// on any desktop), and sway, xwayland, x11-xserver-utils (xhost) and dbus-daemon (a Wayland
/// desktop: sharing through a wlroots compositor, with xcap's own session bus), and
/// pipewire-bin (the PipeWire daemon and `pw-link`: sharing through the desktop portal's
/// ScreenCast, whose video comes over PipeWire).
pub const TEST_EXTRA: &[&str] = &[
    "xvfb",
    "webkit2gtk-driver",
    "chromium",
    "chromium-driver",
    "iproute2",
    "nodejs",
    "nftables",
    "coturn",
    "redis-server",
    "janus",
    "espeak-ng",
    "openbox",
    "sway",
    "xwayland",
    "x11-xserver-utils",
    "dbus-daemon",
    "pipewire-bin",
];

/// The Windows cross build (`cargo xtask cross`), on top of [`BUILD`]: the MinGW-w64 C
/// toolchain (gcc, windres, the Windows import libraries) that the `x86_64-pc-windows-gnu`
/// Rust target links with and the -sys crates compile with, and NSIS (`makensis`) for the
/// installer.
pub const CROSS: &[&str] = &["mingw-w64", "nsis"];

/// Wine, to run the Windows programs `cargo xtask cross --wine` builds.
pub const WINE: &[&str] = &["wine", "wine64"];

/// 32-bit Wine, for the NSIS installer (a 32-bit program) under `--installer --wine`.
pub const WINE32: &[&str] = &["wine32:i386"];

/// Everything the tests need.
pub fn test_packages() -> Vec<&'static str> {
    BUILD.iter().chain(TEST_EXTRA).copied().collect()
}

fn is_debian_like() -> bool {
    let Ok(os) = std::fs::read_to_string("/etc/os-release") else {
        return false;
    };
    os.lines().any(|l| {
        (l.starts_with("ID=") || l.starts_with("ID_LIKE="))
            && (l.contains("debian") || l.contains("ubuntu"))
    }) && which("apt-get")
}

pub fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", pkg])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"ii"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs the packages that are missing.
/// Whether [`ensure`] installs packages here (Debian or Ubuntu): once it returned, they are
/// there.
pub fn installs_here() -> bool {
    cfg!(target_os = "linux") && is_debian_like()
}

pub fn ensure(packages: &[&str]) -> Result {
    if !installs_here() {
        eprintln!(
            "xtask: not a Debian/Ubuntu system, so nothing is installed automatically.\n\
             xtask: Confab needs the equivalents of these Debian packages: {}\n\
             xtask: macOS: Xcode command line tools, then `brew install cmake nasm pkg-config libvpx`.\n\
             xtask: Windows: Visual Studio Build Tools (C++), CMake, NASM, LLVM (libclang) and WebView2.",
            packages.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let sudo = !is_root();
    if sudo && !which("sudo") {
        return Err(format!(
            "these packages are missing and there is no sudo; as root run:\n  apt-get update && apt-get install -y {}",
            missing.join(" ")
        ));
    }
    // A system tool, as root.
    let as_root = |program: &str| {
        if sudo {
            let mut c = Command::new("sudo");
            c.arg(program);
            c
        } else {
            Command::new(program)
        }
    };
    let apt = |args: &[&str]| {
        let mut c = as_root("apt-get");
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    // A package of another architecture (`wine32:i386`) needs that architecture added first.
    for arch in missing
        .iter()
        .filter_map(|p| p.split_once(':').map(|(_, a)| a))
    {
        let known = Command::new("dpkg")
            .arg("--print-foreign-architectures")
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l == arch)
            });
        if !known {
            let mut add = as_root("dpkg");
            add.args(["--add-architecture", arch]);
            crate::status(add, &format!("dpkg --add-architecture {arch}"))?;
        }
    }
    crate::status(apt(&["update", "-q"]), "apt-get update")?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    crate::status(install, "apt-get install")
}
