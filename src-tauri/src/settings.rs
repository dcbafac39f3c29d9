//! Settings persisted as JSON in the platform's config folder. A missing file is the defaults;
//! a corrupt one is the defaults plus a notice (and the bad file is kept aside), never a crash.

use confab_engine::IceServer;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:8787/ws";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub name: String,
    pub server: String,
    pub room: String,
    /// Device ids from `list_devices` (`test`, `camera:0`, `tone`, `mic:NAME`, `speaker:NAME`);
    /// empty = the default device.
    pub camera: String,
    pub microphone: String,
    pub speaker: String,
    pub ice_servers: Vec<IceServer>,
    /// Send media only through a TURN relay (one of `ice_servers`): the others never learn
    /// this computer's addresses.
    pub relay_only: bool,
    /// Echo cancellation, noise suppression and automatic gain on the microphone (all on;
    /// people with headsets or studio microphones switch them off).
    pub audio_processing: confab_engine::media_kit::processing::ProcessingSettings,
    /// Servers used before, most recent first.
    pub recent_servers: Vec<String>,
    pub recent_rooms: Vec<String>,
    /// The certificate fingerprint each name showed last (a new one is pointed out).
    pub known_peers: std::collections::BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: String::new(),
            server: DEFAULT_SERVER.into(),
            room: String::new(),
            camera: String::new(),
            microphone: String::new(),
            speaker: String::new(),
            ice_servers: vec![IceServer {
                urls: vec!["stun:stun.l.google.com:19302".into()],
                username: String::new(),
                credential: String::new(),
            }],
            relay_only: false,
            audio_processing: Default::default(),
            recent_servers: Vec::new(),
            recent_rooms: Vec::new(),
            known_peers: Default::default(),
        }
    }
}

fn push_recent(list: &mut Vec<String>, item: &str) {
    if item.is_empty() {
        return;
    }
    list.retain(|s| s != item);
    list.insert(0, item.to_owned());
    list.truncate(8);
}

impl Settings {
    /// Remembers a successful join.
    pub fn remember_join(&mut self, server: &str, room: &str, name: &str) {
        self.server = server.into();
        self.room = room.into();
        self.name = name.into();
        push_recent(&mut self.recent_servers, server);
        push_recent(&mut self.recent_rooms, room);
    }

    /// Checks what the UI sends before it is stored.
    pub fn validate(&self) -> Result<(), String> {
        if !self.name.is_empty() {
            confab_protocol::validate_name(&self.name)?;
        }
        if !self.room.is_empty() {
            confab_protocol::validate_room(&self.room)?;
        }
        for s in &self.ice_servers {
            s.check().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Writes a file only its owner may read (Unix: mode 0600, also when it existed before).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> Self {
        Store {
            path: dir.join("settings.json"),
        }
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the settings; the string is a notice for the user when something was wrong.
    pub fn load(&self) -> (Settings, Option<String>) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return (Settings::default(), None)
            }
            Err(e) => {
                return (
                    Settings::default(),
                    Some(format!(
                        "Could not read your settings ({e}); using the defaults."
                    )),
                )
            }
        };
        let parsed = serde_json::from_str::<serde_json::Value>(&text).and_then(|v| {
            if v.is_object() {
                serde_json::from_value::<Settings>(v)
            } else {
                Err(serde::de::Error::custom("not a settings object"))
            }
        });
        match parsed {
            Ok(s) => match s.validate() {
                Ok(()) => (s, None),
                Err(e) => (
                    Settings::default(),
                    Some(format!(
                        "Your settings had a problem ({e}); using the defaults."
                    )),
                ),
            },
            Err(e) => {
                let aside = self.path.with_extension("json.bad");
                let _ = std::fs::rename(&self.path, &aside);
                (
                    Settings::default(),
                    Some(format!(
                        "Your settings file was damaged ({e}); using the defaults. The old file is at {}.",
                        aside.display()
                    )),
                )
            }
        }
    }

    /// Saves atomically (write a temporary file, then rename). The file holds TURN passwords:
    /// on Unix only its owner may read it (mode 0600).
    pub fn save(&self, s: &Settings) -> Result<(), String> {
        s.validate()?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(s).map_err(|e| e.to_string())?;
        write_private(&tmp, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| format!("cannot save {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("confab-settings-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[cfg(unix)]
    #[test]
    fn the_file_holding_turn_passwords_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("private");
        let store = Store::new(&d);
        let s = Settings {
            ice_servers: vec![IceServer::parse("turn:t.example.org:3478 ada s3cret").unwrap()],
            ..Settings::default()
        };
        store.save(&s).unwrap();
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        std::fs::remove_dir_all(d).ok();
    }

    #[test]
    fn missing_file_is_the_defaults_without_a_notice() {
        let store = Store::new(&dir("missing"));
        assert_eq!(store.load(), (Settings::default(), None));
    }

    #[test]
    fn save_then_load() {
        let d = dir("roundtrip");
        let store = Store::new(&d);
        let mut s = Settings::default();
        s.remember_join("ws://10.0.0.2:8787/ws", "team", "Ada");
        s.camera = "test".into();
        store.save(&s).unwrap();
        assert_eq!(store.load(), (s, None));
        std::fs::remove_dir_all(d).ok();
    }

    #[test]
    fn corrupt_file_gives_defaults_and_a_notice_and_is_kept_aside() {
        let d = dir("corrupt");
        std::fs::create_dir_all(&d).unwrap();
        let store = Store::new(&d);
        for junk in ["{not json", "[]", "\u{0}\u{1}", r#"{"name": 5}"#] {
            std::fs::write(store.path(), junk).unwrap();
            let (s, notice) = store.load();
            assert_eq!(s, Settings::default());
            assert!(notice.unwrap().contains("damaged"), "{junk}");
            assert!(d.join("settings.json.bad").exists());
        }
        // Invalid values (not syntax) are refused as a whole too.
        std::fs::write(store.path(), r#"{"room":"no spaces allowed"}"#).unwrap();
        let (s, notice) = store.load();
        assert_eq!(s, Settings::default());
        assert!(notice.unwrap().contains("problem"));
        std::fs::remove_dir_all(d).ok();
    }

    #[test]
    fn unknown_fields_and_missing_fields_are_fine() {
        let d = dir("partial");
        std::fs::create_dir_all(&d).unwrap();
        let store = Store::new(&d);
        std::fs::write(store.path(), r#"{"name":"Zoë","future_field":true}"#).unwrap();
        let (s, notice) = store.load();
        assert_eq!(notice, None);
        assert_eq!(s.name, "Zoë");
        assert_eq!(s.server, DEFAULT_SERVER);
        std::fs::remove_dir_all(d).ok();
    }

    #[test]
    fn saving_refuses_bad_values() {
        let store = Store::new(&dir("bad"));
        let s = Settings {
            ice_servers: vec![IceServer {
                urls: vec!["http://x".into()],
                username: String::new(),
                credential: String::new(),
            }],
            ..Settings::default()
        };
        assert!(store.save(&s).unwrap_err().contains("STUN"));
        let s = Settings {
            ice_servers: vec![IceServer {
                urls: vec!["turn:x:3478".into()],
                username: String::new(),
                credential: String::new(),
            }],
            ..Settings::default()
        };
        assert!(
            store.save(&s).unwrap_err().contains("username"),
            "TURN without credentials is refused here too"
        );
        let s = Settings {
            name: "a\nb".into(),
            ..Settings::default()
        };
        assert!(store.save(&s).is_err());
    }

    #[test]
    fn recent_lists_are_short_and_unique() {
        let mut s = Settings::default();
        for i in 0..12 {
            s.remember_join(&format!("ws://h{}:1/ws", i % 3), &format!("r{i}"), "A");
        }
        assert_eq!(s.recent_servers.len(), 3);
        assert_eq!(s.recent_servers[0], "ws://h2:1/ws");
        assert_eq!(s.recent_rooms.len(), 8);
    }
}
