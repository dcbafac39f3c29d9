//! Installers. On Debian/Ubuntu: a .deb assembled with `dpkg-deb` from the built binaries, the
//! icons and a desktop entry that registers `confab://` links (no tool download needed, so it
//! works offline). Windows and macOS installers come from `cargo tauri build` (see README).

use crate::{cargo, root, status, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct Options {
    pub debug: bool,
    /// Build the binaries first (off when `cargo test` has just built them).
    pub build: bool,
    pub out: PathBuf,
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        debug: false,
        build: true,
        out: root().join("target/bundle"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--debug" => o.debug = true,
            "--out" => o.out = PathBuf::from(it.next().ok_or("--out needs a folder")?),
            other => {
                return Err(format!(
                    "unknown bundle option `{other}` (have --debug, --out DIR)"
                ))
            }
        }
    }
    Ok(o)
}

fn arch() -> Result<String> {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .map_err(|e| format!("dpkg is needed to build a .deb: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn copy(from: &Path, to: &Path) -> Result {
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::copy(from, to)
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))?;
    Ok(())
}

/// Builds the .deb; returns its path.
pub fn deb(o: &Options) -> Result<PathBuf> {
    if !cfg!(target_os = "linux") {
        return Err("`cargo xtask bundle` makes a .deb on Linux; on Windows and macOS run `cargo tauri build` (see README)".into());
    }
    crate::deps::ensure(crate::deps::BUILD)?;
    if o.build {
        let mut build = cargo();
        build.args(["build", "-p", "confab", "-p", "confab-signal"]);
        if !o.debug {
            build.args(["--release", "--features", "confab/custom-protocol"]);
        }
        status(build, "building the app")?;
    }
    let bin = root().join(if o.debug {
        "target/debug"
    } else {
        "target/release"
    });
    let arch = arch()?;
    let stage = o.out.join(format!("confab_{VERSION}_{arch}"));
    let _ = std::fs::remove_dir_all(&stage);
    copy(&bin.join("confab"), &stage.join("usr/bin/confab"))?;
    copy(
        &bin.join("confab-signal"),
        &stage.join("usr/bin/confab-signal"),
    )?;
    copy(
        &root().join("src-tauri/linux/confab.desktop"),
        &stage.join("usr/share/applications/confab.desktop"),
    )?;
    for (file, size) in [
        ("32x32.png", "32x32"),
        ("128x128.png", "128x128"),
        ("128x128@2x.png", "256x256"),
        ("icon.png", "512x512"),
    ] {
        copy(
            &root().join("icons").join(file),
            &stage.join(format!("usr/share/icons/hicolor/{size}/apps/confab.png")),
        )?;
    }
    let control = format!(
        "Package: confab\n\
         Version: {VERSION}\n\
         Architecture: {arch}\n\
         Maintainer: Confab <team@confab.invalid>\n\
         Depends: libwebkit2gtk-4.1-0, libgtk-3-0, libasound2, libvpx7 | libvpx9, libxcb1, libxcb-randr0, libgbm1, libegl1, libpipewire-0.3-0 | libpipewire-0.3-0t64\n\
         Section: net\n\
         Priority: optional\n\
         Homepage: https://confab.invalid\n\
         Description: Video calls that just work\n \
         Confab is a desktop video-call app: pick a room, see who is there, call.\n \
         Includes confab-signal, the signaling server, for hosting rooms.\n"
    );
    std::fs::create_dir_all(stage.join("DEBIAN")).map_err(|e| e.to_string())?;
    std::fs::write(stage.join("DEBIAN/control"), control).map_err(|e| e.to_string())?;
    let deb = o.out.join(format!("confab_{VERSION}_{arch}.deb"));
    let mut pack = Command::new("dpkg-deb");
    pack.args(["--build", "--root-owner-group"])
        .arg(&stage)
        .arg(&deb);
    status(pack, "packing the .deb")?;
    Ok(deb)
}

/// Unpacks the .deb into a scratch root and checks what an install would put in place.
pub fn verify(deb: &Path) -> Result {
    let scratch = std::env::temp_dir().join(format!("confab-deb-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let mut x = Command::new("dpkg-deb");
    x.arg("-x").arg(deb).arg(&scratch);
    status(x, "unpacking the .deb into a scratch root")?;
    let must = [
        "usr/bin/confab",
        "usr/bin/confab-signal",
        "usr/share/applications/confab.desktop",
        "usr/share/icons/hicolor/32x32/apps/confab.png",
        "usr/share/icons/hicolor/128x128/apps/confab.png",
        "usr/share/icons/hicolor/256x256/apps/confab.png",
        "usr/share/icons/hicolor/512x512/apps/confab.png",
    ];
    for m in must {
        let p = scratch.join(m);
        let meta = std::fs::metadata(&p).map_err(|_| format!("the .deb lacks {m}"))?;
        if meta.len() == 0 {
            return Err(format!("{m} is empty in the .deb"));
        }
        #[cfg(unix)]
        if m.starts_with("usr/bin/") {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o111 == 0 {
                return Err(format!("{m} is not executable"));
            }
        }
    }
    let desktop = std::fs::read_to_string(scratch.join("usr/share/applications/confab.desktop"))
        .map_err(|e| e.to_string())?;
    if !desktop.contains("Exec=confab %u") || !desktop.contains("x-scheme-handler/confab") {
        return Err("the desktop entry does not hand confab:// links to the app".into());
    }
    let info = Command::new("dpkg-deb")
        .arg("-I")
        .arg(deb)
        .output()
        .map_err(|e| e.to_string())?;
    let info = String::from_utf8_lossy(&info.stdout);
    if !info.contains("Package: confab") || !info.contains("libwebkit2gtk-4.1-0") {
        return Err(format!("unexpected package metadata:\n{info}"));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!(
        "xtask: {} holds the app, the server, the icons and the link handler",
        deb.display()
    );
    Ok(())
}
