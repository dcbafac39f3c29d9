//! What this computer has: listing cameras (nokhwa), microphones and speakers (cpal), the
//! built-in test devices first, each with a [`DeviceId`] that selects it again; and finding a
//! cpal device by name.

use super::id::{DeviceId, DeviceKind, TEST_PATTERN, TEST_TONE};
use crate::MediaError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The [`DeviceId`] that selects it (`test`, `tone`, `camera:0`, `mic:NAME`,
    /// `speaker:NAME`), as text.
    pub id: String,
    /// What people see.
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceList {
    pub cameras: Vec<Device>,
    pub microphones: Vec<Device>,
    pub speakers: Vec<Device>,
}

/// Keeps libasound quiet: by default it prints every failed probe (missing cards, absent
/// JACK/OSS plugins) to stderr, which on a machine without sound is a page of noise per
/// listing. Confab reports device problems itself, in words.
#[cfg(target_os = "linux")]
pub fn quiet_alsa() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::os::raw::{c_char, c_int};
        unsafe extern "C" fn silent(
            _: *const c_char,
            _: c_int,
            _: *const c_char,
            _: c_int,
            _: *const c_char,
        ) {
        }
        // SAFETY: libasound calls the handler with five fixed arguments followed by printf
        // varargs; on the Linux ABIs (x86-64 SysV, AAPCS64) a callee that declares only the
        // fixed arguments reads them from the same registers and ignores the rest.
        unsafe {
            let handler: unsafe extern "C" fn(
                *const c_char,
                c_int,
                *const c_char,
                c_int,
                *const c_char,
                ...
            ) = std::mem::transmute(
                silent
                    as unsafe extern "C" fn(
                        *const c_char,
                        c_int,
                        *const c_char,
                        c_int,
                        *const c_char,
                    ),
            );
            alsa_sys::snd_lib_error_set_handler(Some(handler));
        }
    });
}

#[cfg(not(target_os = "linux"))]
pub fn quiet_alsa() {}

/// A listed hardware device, unless its name cannot be written as an id (then it is left out,
/// since it could not be selected again).
fn hardware(kind: DeviceKind, key: &str, name: String) -> Option<Device> {
    match DeviceId::hardware(kind, key) {
        Ok(id) => Some(Device {
            id: id.to_string(),
            name,
        }),
        Err(e) => {
            tracing::debug!("{kind} {name:?} left out of the list: {e}");
            None
        }
    }
}

/// Lists what this computer has, the test devices first.
pub fn list() -> DeviceList {
    quiet_alsa();
    let mut out = DeviceList {
        cameras: vec![Device {
            id: TEST_PATTERN.into(),
            name: "Test pattern".into(),
        }],
        microphones: vec![Device {
            id: TEST_TONE.into(),
            name: "Test tone".into(),
        }],
        speakers: Vec::new(),
    };
    match nokhwa::query(nokhwa::utils::ApiBackend::Auto) {
        Ok(cams) => {
            out.cameras.extend(cams.iter().filter_map(|c| {
                hardware(DeviceKind::Camera, &c.index().to_string(), c.human_name())
            }))
        }
        Err(e) => tracing::debug!("no camera list: {e}"),
    }
    use cpal::traits::{DeviceTrait, HostTrait};
    let host = cpal::default_host();
    if let Ok(devs) = host.input_devices() {
        for d in devs {
            if let (Ok(name), Ok(_)) = (d.name(), d.default_input_config()) {
                out.microphones
                    .extend(hardware(DeviceKind::Microphone, &name, name.clone()));
            }
        }
    }
    if let Ok(devs) = host.output_devices() {
        for d in devs {
            if let (Ok(name), Ok(_)) = (d.name(), d.default_output_config()) {
                out.speakers
                    .extend(hardware(DeviceKind::Speaker, &name, name.clone()));
            }
        }
    }
    out
}

/// A microphone (`input`) or speaker by name, or the default one.
pub(super) fn find_cpal(input: bool, which: Option<&str>) -> Result<cpal::Device, MediaError> {
    use cpal::traits::{DeviceTrait, HostTrait};
    quiet_alsa();
    let host = cpal::default_host();
    let what = if input { "microphone" } else { "speaker" };
    match which {
        None => {
            let d = if input {
                host.default_input_device()
            } else {
                host.default_output_device()
            };
            d.ok_or_else(|| MediaError::Device(format!("no {what} found")))
        }
        Some(name) => {
            let mut devs = if input {
                host.input_devices()
            } else {
                host.output_devices()
            }
            .map_err(|e| MediaError::Device(format!("cannot list {what}s: {e}")))?;
            devs.find(|d| d.name().is_ok_and(|n| n == name))
                .ok_or_else(|| MediaError::Device(format!("no {what} called {name:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_has_the_test_devices_first() {
        let l = list();
        assert_eq!(
            l.cameras[0],
            Device {
                id: TEST_PATTERN.into(),
                name: "Test pattern".into()
            }
        );
        assert_eq!(
            l.microphones[0],
            Device {
                id: TEST_TONE.into(),
                name: "Test tone".into()
            }
        );
    }

    #[test]
    fn every_listed_id_selects_its_own_kind_again() {
        let l = list();
        for d in &l.cameras {
            let id: DeviceId = d.id.parse().expect("a listed camera id parses");
            assert_eq!(id.to_string(), d.id, "listed ids are canonical");
            id.camera().expect("a listed camera id selects a camera");
        }
        for d in &l.microphones {
            let id: DeviceId = d.id.parse().expect("a listed microphone id parses");
            assert_eq!(id.to_string(), d.id);
            id.microphone().expect("a listed microphone id selects one");
        }
        for d in &l.speakers {
            let id: DeviceId = d.id.parse().expect("a listed speaker id parses");
            assert_eq!(id.to_string(), d.id);
            id.speaker().expect("a listed speaker id selects one");
        }
        // Hardware ids name their kind, so none is taken for another.
        assert!(l.cameras[1..].iter().all(|d| d.id.starts_with("camera:")));
        assert!(l.microphones[1..].iter().all(|d| d.id.starts_with("mic:")));
        assert!(l.speakers.iter().all(|d| d.id.starts_with("speaker:")));
    }
}
