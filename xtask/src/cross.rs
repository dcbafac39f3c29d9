//! `cargo xtask cross`: the Windows build, made from Linux with the `x86_64-pc-windows-gnu`
//! Rust target and MinGW-w64. It proves the code is cfg-clean for Windows (clippy over every
//! crate and target, warnings as errors) and, with `--build` / `--installer`, makes
//! `confab.exe`, `confab-signal.exe`, `confab-peer.exe` and an NSIS installer. With `--wine`
//! it runs the Windows confab-signal and confab-peer under Wine in a call with the Linux
//! confab-peer (`crates/confab-peer/tests/wine.rs`), and with `--installer` too it installs
//! with the installer under Wine, checks what it put where and uninstalls. Wine is not
//! Windows: the app's window (WebView2), real devices and the MSVC build only run on Windows
//! itself (the CI workflow's `windows-latest` job).
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
  File "WebView2Loader.dll"
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
  Delete "$INSTDIR\WebView2Loader.dll"
  Delete "$INSTDIR\icon.ico"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  Delete "$SMPROGRAMS\Confab.lnk"
  DeleteRegKey HKCU "Software\Classes\confab"
  DeleteRegKey HKCU "${UNINST}"
SectionEnd
"#;

/// The programs the build makes.
const EXES: [&str; 3] = ["confab.exe", "confab-signal.exe", "confab-peer.exe"];

/// What the installer ships beside the programs: WebView2's loader, which a MinGW build of
/// the app loads as a DLL (an MSVC build links it in).
const SHIPPED_DLLS: [&str; 1] = ["WebView2Loader.dll"];

/// DLLs every Windows 10 and 11 has (and `api-ms-win-*` API sets): the programs may import
/// these and what is shipped, nothing else.
const SYSTEM_DLLS: &[&str] = &[
    "advapi32.dll",
    "bcrypt.dll",
    "bcryptprimitives.dll",
    "combase.dll",
    "comctl32.dll",
    "comdlg32.dll",
    "crypt32.dll",
    "d3d11.dll",
    "dwmapi.dll",
    "dxgi.dll",
    "gdi32.dll",
    "imm32.dll",
    "iphlpapi.dll",
    "kernel32.dll",
    "ktmw32.dll",
    "mf.dll",
    "mfplat.dll",
    "mfreadwrite.dll",
    "msvcrt.dll",
    "ntdll.dll",
    "ole32.dll",
    "oleaut32.dll",
    "propsys.dll",
    "psapi.dll",
    "rpcrt4.dll",
    "secur32.dll",
    "setupapi.dll",
    "shell32.dll",
    "shlwapi.dll",
    "user32.dll",
    "userenv.dll",
    "uxtheme.dll",
    "version.dll",
    "winmm.dll",
    "ws2_32.dll",
];

struct Options {
    build: bool,
    installer: bool,
    wine: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        build: false,
        installer: false,
        wine: false,
    };
    for a in args {
        match a.as_str() {
            "--build" => o.build = true,
            "--installer" => {
                o.build = true;
                o.installer = true;
            }
            "--wine" => {
                o.build = true;
                o.wine = true;
            }
            other => {
                return Err(format!(
                    "unknown cross option `{other}` (have --build, --installer, --wine)"
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
    // Cargo lets RUSTFLAGS replace `.cargo/config.toml`'s target rustflags, which link the
    // C++ runtime statically: without them the link fails with C++ symbols missing.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            return Err(format!(
                "{var} is set: it would replace the MinGW link flags of .cargo/config.toml \
                 (the static C++ runtime); unset it for `cargo xtask cross`"
            ));
        }
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
        let setup = if o.installer {
            let exe = installer(&out)?;
            println!("{}", exe.display());
            Some(exe)
        } else {
            None
        };
        if o.wine {
            wine(&out)?;
            if let Some(setup) = setup {
                install_under_wine(&setup)?;
            }
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
        .args(["-p", "confab", "-p", "confab-signal", "-p", "confab-peer"])
        .args(["--features", "confab/custom-protocol"]);
    status(
        build,
        &format!("building confab.exe, confab-signal.exe and confab-peer.exe ({TARGET})"),
    )?;
    let out = target_dir().join(TARGET).join("release");
    for exe in EXES {
        let p = out.join(exe);
        if !p.is_file() {
            return Err(format!(
                "the build reported success but {} is missing",
                p.display()
            ));
        }
        eprintln!("xtask: built {}", p.display());
        check_imports(&p)?;
    }
    Ok(out)
}

/// The DLL names in `objdump -p` output (its import tables).
fn imported_dlls(objdump: &str) -> Vec<String> {
    objdump
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DLL Name:"))
        .map(|d| d.trim().to_owned())
        .collect()
}

/// The imports Windows does not have and the installer does not ship.
fn foreign_dlls(imports: &[String]) -> Vec<String> {
    let mut foreign: Vec<String> = imports
        .iter()
        .filter(|d| {
            let lower = d.to_ascii_lowercase();
            !lower.starts_with("api-ms-win-")
                && !SYSTEM_DLLS.contains(&lower.as_str())
                && !SHIPPED_DLLS.iter().any(|s| s.eq_ignore_ascii_case(d))
        })
        .cloned()
        .collect();
    foreign.sort();
    foreign.dedup();
    foreign
}

/// Fails if the program needs a DLL that a Windows without MinGW lacks (libstdc++-6.dll
/// was one: the program would not start).
fn check_imports(exe: &Path) -> Result {
    let out = Command::new("x86_64-w64-mingw32-objdump")
        .arg("-p")
        .arg(exe)
        .output()
        .map_err(|e| format!("x86_64-w64-mingw32-objdump (mingw-w64): {e}"))?;
    if !out.status.success() {
        return Err(format!("objdump -p {} failed", exe.display()));
    }
    let imports = imported_dlls(&String::from_utf8_lossy(&out.stdout));
    if imports.is_empty() {
        return Err(format!("{}: no imports read", exe.display()));
    }
    let foreign = foreign_dlls(&imports);
    if !foreign.is_empty() {
        return Err(format!(
            "{} needs {}, which Windows does not have and the installer does not ship",
            exe.display(),
            foreign.join(", ")
        ));
    }
    Ok(())
}

/// Wine 8 (Debian 12's) has no bcryptprimitives.dll, where Rust's standard library takes its
/// randomness from (`ProcessPrng`, since Rust 1.78; Wine 9 has it). This stand-in answers from
/// `RtlGenRandom`; it is built into the test's own Wine prefix only, never shipped.
const PROCESS_PRNG_C: &str = r#"#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
"#;

/// The one test `--wine` runs (ignored in a plain `cargo test`).
const WINE_TEST: &str = "a_windows_peer_under_wine_calls_a_linux_peer";

/// Wine's environment for `prefix`: its own prefix, quiet.
fn wine_env(c: &mut Command, prefix: &Path) {
    c.env("WINEPREFIX", prefix).env("WINEDEBUG", "-all");
    // No Wine Mono or Gecko: on a desktop, making a prefix would otherwise stop at a dialog
    // offering to install them.
    c.env("WINEDLLOVERRIDES", "mscoree,mshtml=");
}

/// A Wine prefix at `prefix`, made on first use: reporting Windows 10, with the
/// bcryptprimitives.dll stand-in where Wine lacks one.
fn wine_prefix(prefix: &Path) -> Result {
    if !prefix.join("system.reg").is_file() {
        let mut boot = Command::new("wineboot");
        boot.arg("--init");
        wine_env(&mut boot, prefix);
        status(boot, &format!("wineboot --init ({})", prefix.display()))?;
        let mut version = Command::new("wine");
        version.args(["reg", "add", r"HKCU\Software\Wine", "/v", "Version"]);
        version.args(["/d", "win10", "/f"]);
        wine_env(&mut version, prefix);
        status(version, "the Wine prefix reports Windows 10")?;
    }
    let prng = prefix.join("drive_c/windows/system32/bcryptprimitives.dll");
    if !prng.is_file() {
        let src = target_dir().join("bcryptprimitives.c");
        std::fs::write(&src, PROCESS_PRNG_C).map_err(|e| format!("{}: {e}", src.display()))?;
        let mut cc = Command::new("x86_64-w64-mingw32-gcc");
        cc.args(["-O2", "-shared", "-o"])
            .arg(&prng)
            .arg(&src)
            .arg("-ladvapi32");
        status(cc, "bcryptprimitives.dll for Wine 8 (ProcessPrng)")?;
    }
    Ok(())
}

/// Runs the Windows confab-signal.exe and confab-peer.exe (in `bin`) under Wine in a call with
/// the Linux confab-peer: `crates/confab-peer/tests/wine.rs`, in a Wine prefix of its own
/// (`<target dir>/cross/wineprefix`, made on first use, reporting Windows 10). Fails unless
/// exactly that one test ran and passed.
fn wine(bin: &Path) -> Result {
    deps::ensure(deps::WINE)?;
    let prefix = target_dir().join("wineprefix");
    wine_prefix(&prefix)?;
    let mut test = cargo();
    test.args(["test", "-p", "confab-peer", "--test", "wine", "--"])
        .args(["--ignored", "--exact", WINE_TEST, "--nocapture"])
        .env("CONFAB_WINDOWS_BIN", bin);
    wine_env(&mut test, &prefix);
    eprintln!("xtask: the Windows peer under Wine calls the Linux peer ({WINE_TEST})");
    let out = test
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo test (wine): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    if !out.status.success() {
        return Err(format!(
            "the Windows peer under Wine failed ({})",
            out.status
        ));
    }
    // A renamed test would run nothing and pass.
    if !(stdout.contains("running 1 test") && stdout.contains("1 passed")) {
        return Err(format!(
            "expected exactly one test ({WINE_TEST}) to run and pass"
        ));
    }
    Ok(())
}

/// The one folder under the prefix's user folders at `rest` (the Unix user names it).
fn in_user_folder(prefix: &Path, rest: &str) -> Option<PathBuf> {
    std::fs::read_dir(prefix.join("drive_c/users"))
        .ok()?
        .flatten()
        .map(|user| user.path().join(rest))
        .find(|p| p.exists())
}

/// Runs `program` (a Windows path or a file) under Wine in `prefix`, then waits for every
/// program of the prefix to end (an NSIS uninstaller starts a copy of itself and returns),
/// which also writes the prefix's registry to its files.
fn wine_run(prefix: &Path, program: &Path, args: &[&str], what: &str) -> Result {
    let mut c = Command::new("wine");
    c.arg(program).args(args);
    wine_env(&mut c, prefix);
    status(c, what)?;
    let mut wait = Command::new("wineserver");
    wait.arg("-w");
    wine_env(&mut wait, prefix);
    status(wait, "wineserver -w")
}

/// The registry entries the installer writes (as Wine's user.reg spells their keys) and
/// the lines under them that must be there.
const INSTALLED_KEYS: [(&str, &str); 2] = [
    (
        r"[Software\\Classes\\confab\\shell\\open\\command]",
        r#"Programs\\Confab\\confab.exe\" \"%1\""#,
    ),
    (
        r"[Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Confab]",
        r#""UninstallString"="\"C:\\users\\"#,
    ),
];

/// What the installer wrote under `key` in a user.reg (up to the next key), if the key is
/// there.
fn reg_section<'a>(user_reg: &'a str, key: &str) -> Option<&'a str> {
    let start = user_reg.find(key)? + key.len();
    let rest = &user_reg[start..];
    Some(&rest[..rest.find("\n[").unwrap_or(rest.len())])
}

/// The NSIS installer under Wine, as a person would use it on Windows (silently, `/S`): it
/// installs the programs, a Start-menu entry, `confab://` links and an "Apps" entry; the
/// installed server runs; the uninstaller takes all of it away again. In a fresh prefix of
/// its own (`<target dir>/cross/wineprefix-installer`). NSIS installers are 32-bit
/// programs: this needs 32-bit Wine.
fn install_under_wine(setup: &Path) -> Result {
    deps::ensure(deps::WINE32)?;
    let prefix = target_dir().join("wineprefix-installer");
    let _ = std::fs::remove_dir_all(&prefix);
    wine_prefix(&prefix)?;
    wine_run(&prefix, setup, &["/S"], "the installer under Wine (/S)")?;
    let dir = in_user_folder(&prefix, "AppData/Local/Programs/Confab")
        .ok_or("the installer put nothing in %LOCALAPPDATA%\\Programs\\Confab")?;
    for file in [
        "confab.exe",
        "confab-signal.exe",
        "WebView2Loader.dll",
        "icon.ico",
        "uninstall.exe",
    ] {
        if !dir.join(file).is_file() {
            return Err(format!("the installer did not install {file}"));
        }
    }
    let menu = "AppData/Roaming/Microsoft/Windows/Start Menu/Programs/Confab.lnk";
    if in_user_folder(&prefix, menu).is_none() {
        return Err("the installer made no Start-menu entry".into());
    }
    let user_reg = std::fs::read_to_string(prefix.join("user.reg")).map_err(|e| e.to_string())?;
    for (key, line) in INSTALLED_KEYS {
        match reg_section(&user_reg, key) {
            Some(section) if section.contains(line) => {}
            other => {
                return Err(format!(
                    "the installer's registry entry {key} lacks {line}: {other:?}"
                ))
            }
        }
    }
    // The installed server runs (every DLL it imports loads; it prints its help).
    let mut help = Command::new("wine");
    help.arg(dir.join("confab-signal.exe")).arg("--help");
    wine_env(&mut help, &prefix);
    let out = help.output().map_err(|e| format!("wine: {e}"))?;
    if !(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--listen")) {
        return Err("the installed confab-signal.exe did not run".into());
    }
    wine_run(
        &prefix,
        &dir.join("uninstall.exe"),
        &["/S"],
        "the uninstaller under Wine (/S)",
    )?;
    if dir.exists() || in_user_folder(&prefix, menu).is_some() {
        return Err("the uninstaller left the programs or the Start-menu entry behind".into());
    }
    let user_reg = std::fs::read_to_string(prefix.join("user.reg")).map_err(|e| e.to_string())?;
    if let Some((key, _)) = INSTALLED_KEYS.iter().find(|(k, _)| user_reg.contains(k)) {
        return Err(format!("the uninstaller left the registry entry {key}"));
    }
    eprintln!("xtask: installed, ran and uninstalled under Wine: all in place, then all gone");
    let _ = std::fs::remove_dir_all(&prefix);
    Ok(())
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
        // The release profile keeps line tables for profiling (confab.exe ~300 MB with them,
        // 43 MB without them and the symbol table): not for users.
        let mut strip = Command::new("x86_64-w64-mingw32-strip");
        strip.arg("--strip-all").arg(stage.join(exe));
        status(strip, &format!("x86_64-w64-mingw32-strip {exe}"))?;
    }
    for dll in SHIPPED_DLLS {
        copy(&bin.join(dll), &stage.join(dll))?;
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
        for file in [
            "confab.exe",
            "confab-signal.exe",
            "WebView2Loader.dll",
            "icon.ico",
        ] {
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
    fn a_program_needing_mingws_runtime_dlls_is_refused() {
        // What `objdump -p` printed for the first MinGW confab-peer.exe (abridged).
        let dump = "The Import Tables (interpreted .idata section contents)\n\
            \tDLL Name: KERNEL32.dll\n\tvma:  Hint/Ord Member-Name Bound-To\n\
            \tDLL Name: api-ms-win-core-synch-l1-2-0.dll\n\tDLL Name: bcryptprimitives.dll\n\
            \tDLL Name: libstdc++-6.dll\n\tDLL Name: mfplat.dll\n\tDLL Name: WS2_32.dll\n\
            \tDLL Name: WebView2Loader.dll\n";
        let imports = imported_dlls(dump);
        assert_eq!(imports.len(), 7, "{imports:?}");
        assert_eq!(foreign_dlls(&imports), ["libstdc++-6.dll"]);
        let fine: Vec<String> = ["USER32.dll", "api-ms-win-core-winrt-l1-1-0.dll"]
            .map(String::from)
            .to_vec();
        assert!(foreign_dlls(&fine).is_empty());
    }

    #[test]
    fn the_installers_registry_entries_are_read_from_wines_user_reg() {
        // As Wine 8 wrote them after `confab_0.1.0_x64-setup.exe /S` (abridged).
        let user_reg = r#"WINE REGISTRY Version 2

[Software\\Classes\\confab\\shell\\open\\command] 1796633912
#time=1dd862922d4c8c0
@="\"C:\\users\\root\\AppData\\Local\\Programs\\Confab\\confab.exe\" \"%1\""

[Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Confab] 1796633912
#time=1dd862922d52c70
"DisplayName"="Confab"
"UninstallString"="\"C:\\users\\root\\AppData\\Local\\Programs\\Confab\\uninstall.exe\""

[Software\\Wine] 1796633900
"Version"="win10"
"#;
        for (key, line) in INSTALLED_KEYS {
            let section = reg_section(user_reg, key).unwrap_or_else(|| panic!("{key}"));
            assert!(section.contains(line), "{key}: {section}");
            assert!(!section.contains("Version"), "{key} ran into the next key");
        }
        // A key written elsewhere (another program's command) is not ours.
        let other = user_reg.replace(r"Programs\\Confab\\confab.exe", r"Other\\x.exe");
        let (key, line) = INSTALLED_KEYS[0];
        assert!(!reg_section(&other, key).unwrap().contains(line));
        assert!(reg_section("", key).is_none());
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
