//! The house's first invariant, checked: the pure cores (the call rules here, the room logic in
//! confab-rooms, and the protocol they share) depend on nothing that does I/O — no tokio, no
//! sockets, no WebRTC, no clock crate. Time is an argument. A new dependency must be added to
//! the list below on purpose.

fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            if let Some(name) = line.split(['=', '.', ' ']).next() {
                out.push(name.trim().to_owned());
            }
        }
    }
    out
}

#[test]
fn pure_cores_depend_on_nothing_that_does_io() {
    const ALLOWED: &[&str] = &[
        "confab-protocol",
        "serde",
        "serde_json",
        "thiserror",
        "sha2",
        "rand",
        "subtle",
        "hex",
        "unicode-normalization",
    ];
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for name in ["confab-call", "confab-rooms", "confab-protocol"] {
        let manifest = std::fs::read_to_string(crates.join(name).join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let deps = dependencies(&manifest);
        assert!(
            !deps.is_empty() || name == "confab-protocol",
            "{name}: no dependencies read"
        );
        for d in deps {
            assert!(
                ALLOWED.contains(&d.as_str()),
                "{name} depends on `{d}`: the pure cores must not do I/O (see ARCHITECTURE.md)"
            );
        }
    }
}
