//! Who is who: this installation's DTLS certificate (one per installation, kept beside the
//! settings, readable by its owner only), and the certificate each known name showed before, so
//! that a new one is pointed out (the verification code alone changes every call).

use std::collections::BTreeMap;
use std::path::Path;

/// Loads this installation's certificate, or makes and keeps one.
pub fn load_or_create(dir: &Path) -> Result<String, String> {
    let path = dir.join("identity.pem");
    match std::fs::read_to_string(&path) {
        Ok(pem) if pem.contains("PRIVATE") && pem.contains("BEGIN CERTIFICATE") => return Ok(pem),
        Ok(_) => tracing::warn!("{} is not a certificate; making a new one", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let pem = confab_engine::link::new_certificate_pem().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    crate::settings::write_private(&path, pem.as_bytes())
        .map_err(|e| format!("cannot keep {}: {e}", path.display()))?;
    Ok(pem)
}

/// What a name's certificate says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never seen this name before (now remembered).
    First,
    Same,
    /// This name showed another certificate before: another device, or someone in the middle.
    Changed,
}

/// Names and the certificate fingerprint each showed last (bounded).
pub fn note(known: &mut BTreeMap<String, String>, name: &str, fingerprint: &str) -> Seen {
    const MAX: usize = 256;
    let seen = match known.get(name) {
        None => Seen::First,
        Some(fp) if fp == fingerprint => return Seen::Same,
        Some(_) => Seen::Changed,
    };
    if known.len() >= MAX && !known.contains_key(name) {
        if let Some(first) = known.keys().next().cloned() {
            known.remove(&first);
        }
    }
    known.insert(name.to_owned(), fingerprint.to_owned());
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_name_with_a_new_certificate_is_pointed_out() {
        let mut k = BTreeMap::new();
        assert_eq!(note(&mut k, "Ada", "sha-256 aa"), Seen::First);
        assert_eq!(note(&mut k, "Ada", "sha-256 aa"), Seen::Same);
        assert_eq!(note(&mut k, "Ada", "sha-256 bb"), Seen::Changed);
        assert_eq!(note(&mut k, "Ada", "sha-256 bb"), Seen::Same, "told once");
        for i in 0..300 {
            note(&mut k, &format!("n{i}"), "x");
        }
        assert!(k.len() <= 256);
    }

    #[cfg(unix)]
    #[test]
    fn the_certificate_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("confab-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let a = load_or_create(&d).unwrap();
        let b = load_or_create(&d).unwrap();
        assert_eq!(a, b, "the same certificate every time");
        let mode = std::fs::metadata(d.join("identity.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(d).ok();
    }
}
