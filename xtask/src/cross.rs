//! `cargo xtask cross`: the Windows build, made from Linux with the `x86_64-pc-windows-gnu`
//! Rust target and MinGW-w64. It proves the code is cfg-clean for Windows (clippy over every
//! crate and target, warnings as errors) and, with `--build` / `--installer`, makes
//! `confab.exe`, `confab-signal.exe` and an NSIS installer. Nothing here runs them: that
//! takes Windows (the CI workflow's `windows-latest` job, which builds with MSVC).
//! Output goes to `<target dir>/cross`, apart from the Linux build's.

use crate::{cargo, deps, root, status, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "x86_64-pc-windows-gnu";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The installer script. Per-user install (no administrator), like Tauri's NSIS default: the
/// two programs, a Start-menu entry, `confab://` links, and an entry in "Apps" to remove it.
/// WebView2 is not bundled: Windows 10 and 11 ship it (the workflow's Tauri installer also
/// bootstraps it).
const NSIS_SCRIPT: &str = r#"Unicode true
SetCompressor /SOLID lzma
Name "Confab"
OutFile "confab_@VERSION@_x64-setup.exe"
InstallDir "$LOCALAPPDATA\Programs\Confab"
RequestExecutionLevel user
Icon "icon.ico"
UninstallIcon "icon.ico"
!define UNINST "Software\Microsoft\Windows\CurrentVersion\Uninstall\Confab"
Page directory
Page instfiles
UninstPage uninstConfirm
UninstPage instfiles
Section "Confab"
  SetOutPath "$INSTDIR"
  File "confab.exe"
  File "confab-signal.exe"
  File "icon.ico"
  WriteUninstaller "$INSTDIR\uninstall.exe"
  CreateShortCut "$SMPROGRAMS\Confab.lnk" "$INSTDIR\confab.exe" "" "$INSTDIR\icon.ico"
  WriteRegStr HKCU "Software\Classes\confab" "" "URL:Confab"
  WriteRegStr HKCU "Software\Classes\confab" "URL Protocol" ""
  WriteRegStr HKCU "Software\Classes\confab\DefaultIcon" "" "$INSTDIR\icon.ico"
  WriteRegStr HKCU "Software\Classes\confab\shell\open\command" "" '"$INSTDIR\confab.exe" "%1"'
  WriteRegStr HKCU "${UNINST}" "DisplayName" "Confab"
  WriteRegStr HKCU "${UNINST}" "DisplayVersion" "@VERSION@"
  WriteRegStr HKCU "${UNINST}" "DisplayIcon" "$INSTDIR\icon.ico"
  WriteRegStr HKCU "${UNINST}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINST}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegDWORD HKCU "${UNINST}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINST}" "NoRepair" 1
SectionEnd
Section "Uninstall"
  Delete "$INSTDIR\confab.exe"
  Delete "$INSTDIR\confab-signal.exe"
  Delete "$INSTDIR\icon.ico"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  Delete "$SMPROGRAMS\Confab.lnk"
  DeleteRegKey HKCU "Software\Classes\confab"
  DeleteRegKey HKCU "${UNINST}"
SectionEnd
"#;

struct Options {
    build: bool,
    installer: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        build: false,
        installer: false,
    };
    for a in args {
        match a.as_str() {
            "--build" => o.build = true,
            "--installer" => {
                o.build = true;
                o.installer = true;
            }
            other => {
                return Err(format!(
                    "unknown cross option `{other}` (have --build, --installer)"
                ))
            }
        }
    }
    Ok(o)
}

/// `<target dir>/cross`: `$CARGO_TARGET_DIR` if set, else the workspace's `target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("cross")
}

fn rust_target_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l == TARGET)
        })
}

/// Why the cross build cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("it is made from Linux (on Windows, build natively)".into());
    }
    if !rust_target_installed() {
        return Some(format!(
            "the Rust target {TARGET} is not installed (`rustup target add {TARGET}`, then \
             `cargo xtask cross`)"
        ));
    }
    None
}

/// What `cargo xtask test` runs: the Windows check where the Rust target is installed; where
/// it is not, a plain line saying the Windows build went unchecked.
pub fn from_test() -> Result {
    // The whole workspace checked for another target is a second cold build (long on 2 cores,
    // and not yet seen green end to end): asked for, not assumed.
    if std::env::var_os("CONFAB_CROSS").is_none_or(|v| v != "1") {
        eprintln!(
            "xtask: NOT checking the Windows build: set CONFAB_CROSS=1 (or run `cargo xtask cross`)"
        );
        return Ok(());
    }
    match unavailable() {
        Some(why) => {
            eprintln!("xtask: NOT checking the Windows build: {why}");
            Ok(())
        }
        None => {
            deps::ensure(deps::CROSS)?;
            check()
        }
    }
}

pub fn main(args: &[String]) -> Result {
    let o = parse(args)?;
    if !cfg!(target_os = "linux") {
        return Err(
            "`cargo xtask cross` builds for Windows from Linux; on Windows build \
                    natively (see README, Platforms)"
                .into(),
        );
    }
    if !rust_target_installed() {
        let mut add = Command::new("rustup");
        add.args(["target", "add", TARGET]);
        status(add, &format!("rustup target add {TARGET}"))?;
    }
    deps::ensure(deps::BUILD)?;
    deps::ensure(deps::CROSS)?;
    check()?;
    if o.build {
        let out = build()?;
        if o.installer {
            let exe = installer(&out)?;
            println!("{}", exe.display());
        }
    }
    Ok(())
}

fn cross_cargo() -> Command {
    let mut c = cargo();
    c.env("CARGO_TARGET_DIR", target_dir());
    c
}

/// Clippy over every crate and target of the workspace for Windows, warnings as errors.
fn check() -> Result {
    let mut clippy = cross_cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--target",
        TARGET,
        "--",
        "-D",
        "warnings",
    ]);
    status(
        clippy,
        &format!("cargo clippy --target {TARGET} -D warnings"),
    )
}

/// Builds the release programs; returns the folder they are in.
fn build() -> Result<PathBuf> {
    let mut build = cross_cargo();
    build
        .args(["build", "--release", "--target", TARGET])
        .args(["-p", "confab", "-p", "confab-signal"])
        .args(["--features", "confab/custom-protocol"]);
    status(
        build,
        &format!("building confab.exe and confab-signal.exe ({TARGET})"),
    )?;
    let out = target_dir().join(TARGET).join("release");
    for exe in ["confab.exe", "confab-signal.exe"] {
        let p = out.join(exe);
        if !p.is_file() {
            return Err(format!(
                "the build reported success but {} is missing",
                p.display()
            ));
        }
        eprintln!("xtask: built {}", p.display());
    }
    Ok(out)
}

fn copy(from: &Path, to: &Path) -> Result {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

/// Packs the programs with `makensis`; returns the installer's path.
fn installer(bin: &Path) -> Result<PathBuf> {
    let stage = target_dir().join("installer");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage).map_err(|e| format!("{}: {e}", stage.display()))?;
    for exe in ["confab.exe", "confab-signal.exe"] {
        copy(&bin.join(exe), &stage.join(exe))?;
    }
    copy(&root().join("icons/icon.ico"), &stage.join("icon.ico"))?;
    let script = stage.join("confab.nsi");
    std::fs::write(&script, NSIS_SCRIPT.replace("@VERSION@", VERSION))
        .map_err(|e| format!("{}: {e}", script.display()))?;
    let mut nsis = Command::new("makensis");
    nsis.current_dir(&stage).args(["-V2", "-WX", "confab.nsi"]);
    status(nsis, "makensis (the Windows installer)")?;
    let exe = stage.join(format!("confab_{VERSION}_x64-setup.exe"));
    if !exe.is_file() {
        return Err(format!(
            "makensis reported success but {} is missing",
            exe.display()
        ));
    }
    Ok(exe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &str) -> String {
        std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_installer_script_ships_what_it_stages_and_removes_it_again() {
        let script = NSIS_SCRIPT.replace("@VERSION@", VERSION);
        assert!(script.contains(&format!("OutFile \"confab_{VERSION}_x64-setup.exe\"")));
        for file in ["confab.exe", "confab-signal.exe", "icon.ico"] {
            assert!(
                script.contains(&format!("File \"{file}\"")),
                "{file} not packed"
            );
            assert!(
                script.contains(&format!("Delete \"$INSTDIR\\{file}\"")),
                "{file} not removed on uninstall"
            );
        }
        // confab:// links open the app, and the uninstaller takes the registration away.
        assert!(script.contains(
            r#"Software\Classes\confab\shell\open\command" "" '"$INSTDIR\confab.exe" "%1"'"#
        ));
        assert!(script.contains(r#"DeleteRegKey HKCU "Software\Classes\confab""#));
        assert!(root().join("icons/icon.ico").is_file());
    }

    #[test]
    fn every_bundle_icon_exists_with_its_format() {
        let conf = read("src-tauri/tauri.conf.json");
        let start = conf
            .find("\"icon\": [")
            .expect("bundle.icon in tauri.conf.json");
        let list = &conf[start..start + conf[start..].find(']').unwrap()];
        let icons: Vec<&str> = list
            .split('"')
            .filter(|s| s.starts_with("../icons/"))
            .collect();
        // Windows (resource, .msi, NSIS) needs the .ico, the macOS .app the .icns.
        for needed in [
            "../icons/icon.ico",
            "../icons/icon.icns",
            "../icons/icon.png",
        ] {
            assert!(icons.contains(&needed), "{needed} missing from {icons:?}");
        }
        for icon in icons {
            let path = root().join("src-tauri").join(icon);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{icon}: {e}"));
            let magic: &[u8] = match icon.rsplit('.').next() {
                Some("png") => b"\x89PNG",
                Some("ico") => b"\0\0\x01\0",
                Some("icns") => b"icns",
                other => panic!("{icon}: unexpected icon type {other:?}"),
            };
            assert!(bytes.starts_with(magic), "{icon} is not what its name says");
        }
    }

    #[test]
    fn macos_is_told_why_confab_wants_the_camera_and_microphone() {
        let plist = read("src-tauri/Info.plist");
        for key in ["NSCameraUsageDescription", "NSMicrophoneUsageDescription"] {
            let at = plist
                .find(&format!("<key>{key}</key>"))
                .unwrap_or_else(|| panic!("{key} missing"));
            let rest = plist[at..].split_once("<string>").expect("a value").1;
            let text = rest.split_once("</string>").expect("closed").0;
            assert!(
                text.starts_with("Confab ") && text.len() > 20,
                "{key}: {text:?}"
            );
        }
    }
}
