//! Device ids: the one grammar for naming a camera, microphone or speaker, wherever an id comes
//! from (the settings file, the window over IPC, the command lines of `confab` and
//! `confab-peer`, the device listing).
//!
//! ```text
//! id      = ""                       the system's default device
//!         | "camera" | "mic" | "speaker"   the default device of that kind
//!         | "none" | "off"           no device
//!         | "test" | "pattern"       the built-in test pattern camera
//!         | "tone" | "tone:" HZ      the built-in test tone microphone (20-8000 Hz, default 440)
//!         | "voice"                  a test microphone speaking (synthetic speech, looped)
//!         | "echo" | "echo:" MS      a test microphone hearing only this computer's own speaker
//!                                    through a simulated room, MS ms later (0-500, default 100)
//!         | "camera:" DIGITS         a camera by its index in the listing
//!         | "camera:" NAME           a camera by name (or by a non-numeric system index)
//!         | "mic:" NAME              a microphone by name
//!         | "speaker:" NAME          a speaker by name
//!         | NAME                     a device of whichever kind is asked for, by name
//! ```
//!
//! A NAME is what the system calls the device (ALSA names such as `sysdefault:CARD=PCH` are
//! fine: only the four prefixes above are special). Ids are at most [`MAX_ID_LEN`] bytes, have
//! no control characters, and a name is never blank. [`DeviceId`]'s `Display` writes the
//! canonical form (`pattern` → `test`, `off` → `none`, `tone:440` → `tone`), which parses back
//! to the same id. Anything else is a [`DeviceIdError`] in words, never a panic: ids come from
//! files and IPC.
//!
//! What to share has a grammar of its own ([`share_source`]): `test` (the test pattern, as a
//! synthetic screen), `screen` (the primary screen), `screen:ID` or `window:ID` (a screen or a
//! window by the number the system gives it, as [`crate::device::screen::sources`] lists them),
//! or `portal` (whatever the person picks in the desktop's own picker: Wayland's way).
//!
//! An id names a kind of device or fits any kind; [`DeviceId::camera`],
//! [`DeviceId::microphone`] and [`DeviceId::speaker`] turn it into what to open, refusing an
//! id of another kind (`tone` as a camera).

use std::fmt;
use std::str::FromStr;

/// Id of the built-in test camera.
pub const TEST_PATTERN: &str = "test";
/// Id of the built-in test microphone.
pub const TEST_TONE: &str = "tone";
/// Frequency of the test tone when none is given.
pub const DEFAULT_TONE_HZ: f64 = 440.0;
/// The test tone's frequency range, Hz.
pub const TONE_HZ: std::ops::RangeInclusive<f64> = 20.0..=8000.0;
/// Id of the test microphone that speaks.
pub const TEST_VOICE: &str = "voice";
/// Id of the echo-path test microphone.
pub const TEST_ECHO: &str = "echo";
/// The echo-path microphone's delay when none is given (ms), and the range allowed.
pub const DEFAULT_ECHO_MS: u32 = 100;
pub const ECHO_MS: std::ops::RangeInclusive<u32> = 0..=500;
/// The longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 512;

/// The three kinds of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    Camera,
    Microphone,
    Speaker,
}

impl DeviceKind {
    /// The word that, alone, means this kind's default device, and with a colon, starts an id of
    /// this kind.
    fn word(self) -> &'static str {
        match self {
            DeviceKind::Camera => "camera",
            DeviceKind::Microphone => "mic",
            DeviceKind::Speaker => "speaker",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Camera => "camera",
            DeviceKind::Microphone => "microphone",
            DeviceKind::Speaker => "speaker",
        })
    }
}

/// Why a device id is not one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("a device id is at most {MAX_ID_LEN} bytes, this one has {0}")]
    TooLong(usize),
    #[error("a device id cannot contain control characters")]
    ControlCharacter,
    #[error("`tone:{0}`: the tone frequency must be a number of Hz, e.g. tone:440")]
    ToneNotANumber(String),
    #[error("a tone of {0} Hz is outside 20-8000 Hz")]
    ToneOutOfRange(f64),
    #[error("`echo:{0}`: the echo's delay must be a whole number of milliseconds, 0-500")]
    BadEchoDelay(String),
    #[error("`{0}` needs a device name after the colon")]
    MissingName(String),
    #[error("a device name cannot be blank")]
    BlankName,
    #[error("camera index {0} is too large")]
    IndexTooLarge(String),
    #[error("`{0}` is not something to share: test, screen, screen:ID or window:ID")]
    NotAShare(String),
    #[error("`{id}` names a {is}, not a {wanted}")]
    WrongKind {
        id: String,
        is: DeviceKind,
        wanted: DeviceKind,
    },
}

/// A parsed device id (see the module's grammar). Made only by parsing or by
/// [`DeviceId::hardware`], so that every value has a canonical text that parses back to it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceId(Form);

#[derive(Debug, Clone, PartialEq)]
enum Form {
    /// `""`, or the kind's own word.
    Default(Option<DeviceKind>),
    /// `none`, `off`.
    Off,
    /// `test`, `pattern`.
    TestPattern,
    /// `tone`, `tone:HZ` (always within [`TONE_HZ`]).
    TestTone(f64),
    /// `voice`.
    TestVoice,
    /// `echo`, `echo:MS` (always within [`ECHO_MS`]).
    TestEcho(u32),
    /// `camera:DIGITS`.
    CameraIndex(u32),
    /// `camera:NAME` (NAME not all digits), `mic:NAME`, `speaker:NAME`, or a bare NAME that is
    /// no keyword and starts with no prefix (kind `None`).
    Named(Option<DeviceKind>, String),
}

/// Which camera, once the id is known to name one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraRef {
    /// By its index in the listing (`camera:N`).
    Index(u32),
    /// By the name the system gives it, or by a system index that is not a number.
    Name(String),
}

/// A screen or a window to share, by the number the system gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScreenRef {
    /// A whole screen, or (`None`) the primary one.
    Screen(Option<u32>),
    /// One window.
    Window(u32),
    /// Whatever the person picks in the desktop's own picker (the desktop portal's ScreenCast,
    /// on Linux: see `device::portal`).
    Portal,
}

impl fmt::Display for ScreenRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScreenRef::Screen(None) => f.write_str("screen"),
            ScreenRef::Screen(Some(n)) => write!(f, "screen:{n}"),
            ScreenRef::Window(n) => write!(f, "window:{n}"),
            ScreenRef::Portal => f.write_str("portal"),
        }
    }
}

/// Which camera (or, for a share, which screen) to capture from.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoSourceSpec {
    TestPattern,
    /// A camera, or (`None`) the first one.
    Camera(Option<CameraRef>),
    /// A screen or window (only ever made by [`share_source`]: no device id names one).
    Screen(ScreenRef),
    None,
}

/// What a share id names (see the module's grammar): the test pattern or a screen or window.
/// Anything else is a worded error, never a panic: share ids come over IPC and command lines.
pub fn share_source(text: &str) -> Result<VideoSourceSpec, DeviceIdError> {
    check_text(text)?;
    let number = |digits: &str| {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u32>().ok())
            .flatten()
            .ok_or_else(|| DeviceIdError::NotAShare(text.into()))
    };
    match text.split_once(':') {
        None if text == TEST_PATTERN || text == "pattern" => Ok(VideoSourceSpec::TestPattern),
        None if text == "screen" => Ok(VideoSourceSpec::Screen(ScreenRef::Screen(None))),
        None if text == "portal" => Ok(VideoSourceSpec::Screen(ScreenRef::Portal)),
        Some(("screen", n)) => Ok(VideoSourceSpec::Screen(ScreenRef::Screen(Some(number(n)?)))),
        Some(("window", n)) => Ok(VideoSourceSpec::Screen(ScreenRef::Window(number(n)?))),
        _ => Err(DeviceIdError::NotAShare(text.into())),
    }
}

/// Which microphone to capture from.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSourceSpec {
    /// The test tone at this frequency (Hz).
    Tone(f64),
    /// Synthetic speech, looped (the test voice).
    Voice,
    /// What this computer's speaker plays, through a simulated room, this many ms later: a
    /// laptop without headphones, for echo tests. Needs the speaker's output: opened by the
    /// engine, which has it.
    Echo(u32),
    /// A microphone by name, or (`None`) the default one.
    Mic(Option<String>),
    None,
}

/// Where to play what is heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeakerSpec {
    /// A speaker by name, or (`None`) the default one.
    Speaker(Option<String>),
    /// Nowhere.
    None,
}

impl SpeakerSpec {
    /// The engine's form: `None` plays nowhere, `Some(None)` on the default speaker.
    pub fn into_option(self) -> Option<Option<String>> {
        match self {
            SpeakerSpec::Speaker(which) => Some(which),
            SpeakerSpec::None => None,
        }
    }
}

fn check_name(name: &str) -> Result<(), DeviceIdError> {
    if name.trim().is_empty() {
        return Err(DeviceIdError::BlankName);
    }
    Ok(())
}

fn check_text(s: &str) -> Result<(), DeviceIdError> {
    if s.len() > MAX_ID_LEN {
        return Err(DeviceIdError::TooLong(s.len()));
    }
    if s.chars().any(char::is_control) {
        return Err(DeviceIdError::ControlCharacter);
    }
    Ok(())
}

fn parse_hz(text: &str) -> Result<f64, DeviceIdError> {
    let hz: f64 = text
        .parse()
        .ok()
        .filter(|hz: &f64| hz.is_finite())
        .ok_or_else(|| DeviceIdError::ToneNotANumber(text.into()))?;
    if !TONE_HZ.contains(&hz) {
        return Err(DeviceIdError::ToneOutOfRange(hz));
    }
    Ok(hz)
}

fn camera_by(text: &str) -> Result<Form, DeviceIdError> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Form::CameraIndex)
            .map_err(|_| DeviceIdError::IndexTooLarge(text.into()));
    }
    check_name(text)?;
    Ok(Form::Named(Some(DeviceKind::Camera), text.into()))
}

impl DeviceId {
    /// The system's default device (`""`).
    pub const DEFAULT: DeviceId = DeviceId(Form::Default(None));

    /// A hardware device by kind and the name the system gives it (a camera's system index
    /// too); how the listing makes its ids. Refuses names no id can carry.
    pub fn hardware(kind: DeviceKind, name: &str) -> Result<Self, DeviceIdError> {
        check_text(name)?;
        if kind == DeviceKind::Camera {
            return camera_by(name).map(DeviceId);
        }
        check_name(name)?;
        Ok(DeviceId(Form::Named(Some(kind), name.into())))
    }

    /// What this id says of its kind (`None`: it fits any kind).
    pub fn kind(&self) -> Option<DeviceKind> {
        match &self.0 {
            Form::Default(kind) | Form::Named(kind, _) => *kind,
            Form::Off => None,
            Form::TestPattern | Form::CameraIndex(_) => Some(DeviceKind::Camera),
            Form::TestTone(_) | Form::TestVoice | Form::TestEcho(_) => Some(DeviceKind::Microphone),
        }
    }

    fn wrong(&self, is: DeviceKind, wanted: DeviceKind) -> DeviceIdError {
        DeviceIdError::WrongKind {
            id: self.to_string(),
            is,
            wanted,
        }
    }

    /// The camera this id selects.
    pub fn camera(&self) -> Result<VideoSourceSpec, DeviceIdError> {
        use DeviceKind::Camera;
        match &self.0 {
            Form::Default(None | Some(Camera)) => Ok(VideoSourceSpec::Camera(None)),
            Form::Off => Ok(VideoSourceSpec::None),
            Form::TestPattern => Ok(VideoSourceSpec::TestPattern),
            Form::CameraIndex(n) => Ok(VideoSourceSpec::Camera(Some(CameraRef::Index(*n)))),
            Form::Named(None | Some(Camera), name) => {
                Ok(VideoSourceSpec::Camera(Some(CameraRef::Name(name.clone()))))
            }
            Form::Default(Some(is)) | Form::Named(Some(is), _) => Err(self.wrong(*is, Camera)),
            Form::TestTone(_) | Form::TestVoice | Form::TestEcho(_) => {
                Err(self.wrong(DeviceKind::Microphone, Camera))
            }
        }
    }

    /// The microphone this id selects.
    pub fn microphone(&self) -> Result<AudioSourceSpec, DeviceIdError> {
        use DeviceKind::Microphone;
        match &self.0 {
            Form::Default(None | Some(Microphone)) => Ok(AudioSourceSpec::Mic(None)),
            Form::Off => Ok(AudioSourceSpec::None),
            Form::TestTone(hz) => Ok(AudioSourceSpec::Tone(*hz)),
            Form::TestVoice => Ok(AudioSourceSpec::Voice),
            Form::TestEcho(ms) => Ok(AudioSourceSpec::Echo(*ms)),
            Form::Named(None | Some(Microphone), name) => {
                Ok(AudioSourceSpec::Mic(Some(name.clone())))
            }
            Form::Default(Some(is)) | Form::Named(Some(is), _) => Err(self.wrong(*is, Microphone)),
            Form::TestPattern | Form::CameraIndex(_) => {
                Err(self.wrong(DeviceKind::Camera, Microphone))
            }
        }
    }

    /// The speaker this id selects.
    pub fn speaker(&self) -> Result<SpeakerSpec, DeviceIdError> {
        use DeviceKind::Speaker;
        match &self.0 {
            Form::Default(None | Some(Speaker)) => Ok(SpeakerSpec::Speaker(None)),
            Form::Off => Ok(SpeakerSpec::None),
            Form::Named(None | Some(Speaker), name) => Ok(SpeakerSpec::Speaker(Some(name.clone()))),
            Form::Default(Some(is)) | Form::Named(Some(is), _) => Err(self.wrong(*is, Speaker)),
            Form::TestPattern | Form::CameraIndex(_) => {
                Err(self.wrong(DeviceKind::Camera, Speaker))
            }
            Form::TestTone(_) | Form::TestVoice | Form::TestEcho(_) => {
                Err(self.wrong(DeviceKind::Microphone, Speaker))
            }
        }
    }
}

impl FromStr for DeviceId {
    type Err = DeviceIdError;

    fn from_str(s: &str) -> Result<Self, DeviceIdError> {
        check_text(s)?;
        let form = match s {
            "" => Form::Default(None),
            "camera" => Form::Default(Some(DeviceKind::Camera)),
            "mic" => Form::Default(Some(DeviceKind::Microphone)),
            "speaker" => Form::Default(Some(DeviceKind::Speaker)),
            "none" | "off" => Form::Off,
            "test" | "pattern" => Form::TestPattern,
            "tone" => Form::TestTone(DEFAULT_TONE_HZ),
            "voice" => Form::TestVoice,
            "echo" => Form::TestEcho(DEFAULT_ECHO_MS),
            _ => {
                if let Some(hz) = s.strip_prefix("tone:") {
                    Form::TestTone(parse_hz(hz)?)
                } else if let Some(ms) = s.strip_prefix("echo:") {
                    Form::TestEcho(
                        (!ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()))
                            .then(|| ms.parse().ok())
                            .flatten()
                            .filter(|ms| ECHO_MS.contains(ms))
                            .ok_or_else(|| DeviceIdError::BadEchoDelay(ms.into()))?,
                    )
                } else if let Some(rest) = s.strip_prefix("camera:") {
                    if rest.is_empty() {
                        return Err(DeviceIdError::MissingName("camera:".into()));
                    }
                    camera_by(rest)?
                } else if let Some((kind, rest)) = [DeviceKind::Microphone, DeviceKind::Speaker]
                    .into_iter()
                    .find_map(|k| Some((k, s.strip_prefix(k.word())?.strip_prefix(':')?)))
                {
                    if rest.is_empty() {
                        return Err(DeviceIdError::MissingName(format!("{}:", kind.word())));
                    }
                    check_name(rest)?;
                    Form::Named(Some(kind), rest.into())
                } else {
                    check_name(s)?;
                    Form::Named(None, s.into())
                }
            }
        };
        Ok(DeviceId(form))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Form::Default(None) => Ok(()),
            Form::Default(Some(kind)) => f.write_str(kind.word()),
            Form::Off => f.write_str("none"),
            Form::TestPattern => f.write_str(TEST_PATTERN),
            Form::TestTone(hz) if *hz == DEFAULT_TONE_HZ => f.write_str(TEST_TONE),
            Form::TestTone(hz) => write!(f, "{TEST_TONE}:{hz}"),
            Form::TestVoice => f.write_str(TEST_VOICE),
            Form::TestEcho(ms) if *ms == DEFAULT_ECHO_MS => f.write_str(TEST_ECHO),
            Form::TestEcho(ms) => write!(f, "{TEST_ECHO}:{ms}"),
            Form::CameraIndex(n) => write!(f, "camera:{n}"),
            Form::Named(Some(kind), name) => write!(f, "{}:{name}", kind.word()),
            Form::Named(None, name) => f.write_str(name),
        }
    }
}

impl FromStr for VideoSourceSpec {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<Self, DeviceIdError> {
        s.parse::<DeviceId>()?.camera()
    }
}

impl FromStr for AudioSourceSpec {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<Self, DeviceIdError> {
        s.parse::<DeviceId>()?.microphone()
    }
}

impl FromStr for SpeakerSpec {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<Self, DeviceIdError> {
        s.parse::<DeviceId>()?.speaker()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn share_ids_name_the_pattern_a_screen_or_a_window() {
        let ok: &[(&str, VideoSourceSpec, &str)] = &[
            ("test", VideoSourceSpec::TestPattern, "test"),
            ("pattern", VideoSourceSpec::TestPattern, "test"),
            (
                "screen",
                VideoSourceSpec::Screen(ScreenRef::Screen(None)),
                "screen",
            ),
            (
                "screen:0",
                VideoSourceSpec::Screen(ScreenRef::Screen(Some(0))),
                "screen:0",
            ),
            (
                "window:4194317",
                VideoSourceSpec::Screen(ScreenRef::Window(4194317)),
                "window:4194317",
            ),
            (
                "portal",
                VideoSourceSpec::Screen(ScreenRef::Portal),
                "portal",
            ),
        ];
        for (text, want, canonical) in ok {
            let got = share_source(text).unwrap_or_else(|e| panic!("`{text}`: {e}"));
            assert_eq!(&got, want, "{text}");
            if let VideoSourceSpec::Screen(r) = got {
                assert_eq!(r.to_string(), *canonical);
                assert_eq!(share_source(canonical), Ok(VideoSourceSpec::Screen(r)));
            }
        }
        for bad in [
            "",
            "camera",
            "camera:0",
            "tone",
            "none",
            "screen:",
            "screen:-1",
            "screen:x",
            "window:",
            "window:1.5",
            "window:99999999999",
            "window:+3",
            "Screen",
            "windows:1",
            "portal:1",
            "Portal",
        ] {
            assert_eq!(
                share_source(bad),
                Err(DeviceIdError::NotAShare(bad.into())),
                "{bad:?}"
            );
        }
        assert_eq!(
            share_source("screen\n"),
            Err(DeviceIdError::ControlCharacter)
        );
        assert_eq!(
            share_source(&"w".repeat(MAX_ID_LEN + 1)),
            Err(DeviceIdError::TooLong(MAX_ID_LEN + 1))
        );
        // No device id names a screen: a camera setting cannot open one.
        assert!(!matches!(
            "screen".parse::<VideoSourceSpec>(),
            Ok(VideoSourceSpec::Screen(_))
        ));
    }

    fn id(s: &str) -> DeviceId {
        s.parse()
            .unwrap_or_else(|e| panic!("`{s}` should parse: {e}"))
    }

    #[test]
    fn every_accepted_form_means_what_the_grammar_says() {
        use DeviceKind::*;
        let table: &[(&str, Form, &str)] = &[
            ("", Form::Default(None), ""),
            ("camera", Form::Default(Some(Camera)), "camera"),
            ("mic", Form::Default(Some(Microphone)), "mic"),
            ("speaker", Form::Default(Some(Speaker)), "speaker"),
            ("none", Form::Off, "none"),
            ("off", Form::Off, "none"),
            ("test", Form::TestPattern, "test"),
            ("pattern", Form::TestPattern, "test"),
            ("tone", Form::TestTone(440.0), "tone"),
            ("tone:440", Form::TestTone(440.0), "tone"),
            ("tone:1000", Form::TestTone(1000.0), "tone:1000"),
            ("tone:660.5", Form::TestTone(660.5), "tone:660.5"),
            ("tone:20", Form::TestTone(20.0), "tone:20"),
            ("tone:8000", Form::TestTone(8000.0), "tone:8000"),
            ("voice", Form::TestVoice, "voice"),
            ("echo", Form::TestEcho(100), "echo"),
            ("echo:100", Form::TestEcho(100), "echo"),
            ("echo:0", Form::TestEcho(0), "echo:0"),
            ("echo:250", Form::TestEcho(250), "echo:250"),
            ("echo:500", Form::TestEcho(500), "echo:500"),
            ("camera:0", Form::CameraIndex(0), "camera:0"),
            ("camera:007", Form::CameraIndex(7), "camera:7"),
            (
                "camera:4294967295",
                Form::CameraIndex(u32::MAX),
                "camera:4294967295",
            ),
            (
                "camera:HD Webcam C920",
                Form::Named(Some(Camera), "HD Webcam C920".into()),
                "camera:HD Webcam C920",
            ),
            (
                "camera:test",
                Form::Named(Some(Camera), "test".into()),
                "camera:test",
            ),
            (
                "mic:USB Mic",
                Form::Named(Some(Microphone), "USB Mic".into()),
                "mic:USB Mic",
            ),
            (
                "mic:sysdefault:CARD=PCH",
                Form::Named(Some(Microphone), "sysdefault:CARD=PCH".into()),
                "mic:sysdefault:CARD=PCH",
            ),
            (
                "speaker:HDMI",
                Form::Named(Some(Speaker), "HDMI".into()),
                "speaker:HDMI",
            ),
            (
                "speaker:none",
                Form::Named(Some(Speaker), "none".into()),
                "speaker:none",
            ),
            ("USB Mic", Form::Named(None, "USB Mic".into()), "USB Mic"),
            ("2", Form::Named(None, "2".into()), "2"),
            (
                "front:CARD=PCH,DEV=0",
                Form::Named(None, "front:CARD=PCH,DEV=0".into()),
                "front:CARD=PCH,DEV=0",
            ),
            (
                "microphone",
                Form::Named(None, "microphone".into()),
                "microphone",
            ),
            ("Kamera Ü", Form::Named(None, "Kamera Ü".into()), "Kamera Ü"),
        ];
        for (text, form, canonical) in table {
            let parsed = id(text);
            assert_eq!(parsed.0, *form, "`{text}`");
            assert_eq!(parsed.to_string(), *canonical, "`{text}`");
            assert_eq!(id(canonical), parsed, "`{canonical}` parses back");
        }
    }

    #[test]
    fn ids_select_sources_of_their_own_kind() {
        let cam = |s: &str| id(s).camera().unwrap();
        assert_eq!(cam(""), VideoSourceSpec::Camera(None));
        assert_eq!(cam("camera"), VideoSourceSpec::Camera(None));
        assert_eq!(cam("test"), VideoSourceSpec::TestPattern);
        assert_eq!(cam("none"), VideoSourceSpec::None);
        assert_eq!(
            cam("camera:2"),
            VideoSourceSpec::Camera(Some(CameraRef::Index(2)))
        );
        assert_eq!(
            cam("camera:Front"),
            VideoSourceSpec::Camera(Some(CameraRef::Name("Front".into())))
        );
        assert_eq!(
            cam("Front"),
            VideoSourceSpec::Camera(Some(CameraRef::Name("Front".into())))
        );

        let mic = |s: &str| id(s).microphone().unwrap();
        assert_eq!(mic(""), AudioSourceSpec::Mic(None));
        assert_eq!(mic("mic"), AudioSourceSpec::Mic(None));
        assert_eq!(mic("tone"), AudioSourceSpec::Tone(DEFAULT_TONE_HZ));
        assert_eq!(mic("tone:1000"), AudioSourceSpec::Tone(1000.0));
        assert_eq!(mic("off"), AudioSourceSpec::None);
        assert_eq!(
            mic("mic:USB Mic"),
            AudioSourceSpec::Mic(Some("USB Mic".into()))
        );
        assert_eq!(mic("USB Mic"), AudioSourceSpec::Mic(Some("USB Mic".into())));

        let spk = |s: &str| id(s).speaker().unwrap();
        assert_eq!(spk(""), SpeakerSpec::Speaker(None));
        assert_eq!(spk("speaker"), SpeakerSpec::Speaker(None));
        assert_eq!(spk("none"), SpeakerSpec::None);
        assert_eq!(
            spk("speaker:HDMI"),
            SpeakerSpec::Speaker(Some("HDMI".into()))
        );
        assert_eq!(spk("HDMI"), SpeakerSpec::Speaker(Some("HDMI".into())));
        assert_eq!(spk("none").into_option(), None);
        assert_eq!(spk("").into_option(), Some(None));
        assert_eq!(spk("HDMI").into_option(), Some(Some("HDMI".into())));

        // The typed specs parse through the same grammar.
        assert_eq!(
            "camera:3".parse::<VideoSourceSpec>(),
            Ok(VideoSourceSpec::Camera(Some(CameraRef::Index(3))))
        );
        assert_eq!(
            "tone:880".parse::<AudioSourceSpec>(),
            Ok(AudioSourceSpec::Tone(880.0))
        );
        assert_eq!("off".parse::<SpeakerSpec>(), Ok(SpeakerSpec::None));
    }

    #[test]
    fn an_id_of_another_kind_is_refused_in_words() {
        use DeviceKind::*;
        let cases: &[(&str, DeviceKind, DeviceKind, &str)] = &[
            (
                "tone",
                Camera,
                Microphone,
                "`tone` names a microphone, not a camera",
            ),
            (
                "tone:660",
                Speaker,
                Microphone,
                "`tone:660` names a microphone, not a speaker",
            ),
            (
                "test",
                Microphone,
                Camera,
                "`test` names a camera, not a microphone",
            ),
            (
                "pattern",
                Speaker,
                Camera,
                "`test` names a camera, not a speaker",
            ),
            (
                "camera:1",
                Microphone,
                Camera,
                "`camera:1` names a camera, not a microphone",
            ),
            (
                "mic:USB",
                Camera,
                Microphone,
                "`mic:USB` names a microphone, not a camera",
            ),
            (
                "speaker:HDMI",
                Microphone,
                Speaker,
                "`speaker:HDMI` names a speaker, not a microphone",
            ),
            (
                "mic",
                Speaker,
                Microphone,
                "`mic` names a microphone, not a speaker",
            ),
            (
                "camera",
                Speaker,
                Camera,
                "`camera` names a camera, not a speaker",
            ),
        ];
        for (text, wanted, is, words) in cases {
            let parsed = id(text);
            let err = match wanted {
                Camera => parsed.camera().err(),
                Microphone => parsed.microphone().err(),
                Speaker => parsed.speaker().err(),
            }
            .unwrap_or_else(|| panic!("`{text}` is no {wanted}"));
            assert_eq!(
                err,
                DeviceIdError::WrongKind {
                    id: parsed.to_string(),
                    is: *is,
                    wanted: *wanted
                }
            );
            assert_eq!(err.to_string(), *words);
        }
    }

    #[test]
    fn malformed_ids_are_refused_in_words() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        let cases: &[(&str, DeviceIdError, &str)] = &[
            (
                "echo:501",
                DeviceIdError::BadEchoDelay("501".into()),
                "`echo:501`: the echo's delay must be a whole number of milliseconds, 0-500",
            ),
            ("echo:-5", DeviceIdError::BadEchoDelay("-5".into()), "0-500"),
            ("echo:", DeviceIdError::BadEchoDelay("".into()), "0-500"),
            (
                "echo:99999999999999",
                DeviceIdError::BadEchoDelay("99999999999999".into()),
                "0-500",
            ),
            (
                "tone:abc",
                DeviceIdError::ToneNotANumber("abc".into()),
                "`tone:abc`: the tone frequency must be a number of Hz, e.g. tone:440",
            ),
            (
                "tone:NaN",
                DeviceIdError::ToneNotANumber("NaN".into()),
                "`tone:NaN`: the tone frequency must be a number",
            ),
            (
                "tone:inf",
                DeviceIdError::ToneNotANumber("inf".into()),
                "`tone:inf`: the tone frequency must be a number",
            ),
            (
                "tone:",
                DeviceIdError::ToneNotANumber("".into()),
                "`tone:`: the tone frequency must be a number",
            ),
            (
                "tone: 440",
                DeviceIdError::ToneNotANumber(" 440".into()),
                "must be a number",
            ),
            (
                "tone:5",
                DeviceIdError::ToneOutOfRange(5.0),
                "a tone of 5 Hz is outside 20-8000 Hz",
            ),
            (
                "tone:0",
                DeviceIdError::ToneOutOfRange(0.0),
                "outside 20-8000 Hz",
            ),
            (
                "tone:-440",
                DeviceIdError::ToneOutOfRange(-440.0),
                "outside",
            ),
            (
                "tone:8000.5",
                DeviceIdError::ToneOutOfRange(8000.5),
                "outside",
            ),
            (
                "camera:",
                DeviceIdError::MissingName("camera:".into()),
                "`camera:` needs a device name after the colon",
            ),
            (
                "mic:",
                DeviceIdError::MissingName("mic:".into()),
                "`mic:` needs",
            ),
            (
                "speaker:",
                DeviceIdError::MissingName("speaker:".into()),
                "after the colon",
            ),
            (
                "   ",
                DeviceIdError::BlankName,
                "a device name cannot be blank",
            ),
            ("mic: ", DeviceIdError::BlankName, "blank"),
            ("camera:  ", DeviceIdError::BlankName, "blank"),
            (
                "camera:4294967296",
                DeviceIdError::IndexTooLarge("4294967296".into()),
                "camera index 4294967296 is too large",
            ),
            (
                "mic:USB\nMic",
                DeviceIdError::ControlCharacter,
                "a device id cannot contain control characters",
            ),
            (
                "test\0",
                DeviceIdError::ControlCharacter,
                "control characters",
            ),
            (
                "\u{7f}",
                DeviceIdError::ControlCharacter,
                "control characters",
            ),
            (
                long.as_str(),
                DeviceIdError::TooLong(MAX_ID_LEN + 1),
                "a device id is at most 512 bytes, this one has 513",
            ),
        ];
        for (text, want, words) in cases {
            let err = match text.parse::<DeviceId>() {
                Ok(parsed) => panic!("`{text}` is no device id, yet parsed as {parsed:?}"),
                Err(e) => e,
            };
            assert_eq!(err, *want, "`{text}`");
            assert!(err.to_string().contains(words), "`{text}`: {err}");
            // The typed specs refuse it the same way.
            assert_eq!(text.parse::<VideoSourceSpec>().err(), Some(want.clone()));
            assert_eq!(text.parse::<SpeakerSpec>().err(), Some(want.clone()));
        }
    }

    #[test]
    fn hardware_ids_read_back_as_the_device_they_name() {
        for (kind, name, text) in [
            (DeviceKind::Camera, "0", "camera:0"),
            (
                DeviceKind::Camera,
                "Integrated Camera",
                "camera:Integrated Camera",
            ),
            (
                DeviceKind::Microphone,
                "sysdefault:CARD=PCH",
                "mic:sysdefault:CARD=PCH",
            ),
            (DeviceKind::Microphone, "test", "mic:test"),
            (DeviceKind::Speaker, "none", "speaker:none"),
        ] {
            let made = DeviceId::hardware(kind, name).unwrap();
            assert_eq!(made.to_string(), text);
            assert_eq!(id(text), made);
            assert_eq!(made.kind(), Some(kind));
        }
        assert_eq!(
            DeviceId::hardware(DeviceKind::Speaker, ""),
            Err(DeviceIdError::BlankName)
        );
        assert_eq!(
            DeviceId::hardware(DeviceKind::Microphone, "a\tb"),
            Err(DeviceIdError::ControlCharacter)
        );
        assert_eq!(DeviceId::DEFAULT, id(""));
    }

    /// Texts that look like ids: keywords, prefixes, numbers, separators, odd characters.
    fn id_like() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            Just("".to_string()),
            Just("camera".to_string()),
            Just("mic".to_string()),
            Just("speaker".to_string()),
            Just("tone".to_string()),
            Just("test".to_string()),
            Just("none".to_string()),
            Just(":".to_string()),
            Just(" ".to_string()),
            "[0-9]{1,12}",
            "[0-9]{1,4}\\.[0-9]{1,3}",
            "[a-zA-Z=, ]{1,8}",
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(part, 0..5).prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn every_id_round_trips_through_its_text(text in id_like()) {
            if let Ok(parsed) = text.parse::<DeviceId>() {
                let canonical = parsed.to_string();
                prop_assert_eq!(canonical.parse::<DeviceId>(), Ok(parsed.clone()));
                prop_assert_eq!(canonical.parse::<DeviceId>().unwrap().to_string(), canonical);
                // Whichever kind it is asked as, the answer is a spec or a worded error.
                for answer in [
                    parsed.camera().map(|_| ()),
                    parsed.microphone().map(|_| ()),
                    parsed.speaker().map(|_| ()),
                ] {
                    if let Err(e) = answer {
                        prop_assert!(!e.to_string().is_empty());
                    }
                }
            }
        }

        #[test]
        fn any_text_parses_or_is_refused_in_words(text in any::<String>()) {
            match text.parse::<DeviceId>() {
                Ok(parsed) => prop_assert_eq!(parsed.to_string().parse::<DeviceId>(), Ok(parsed)),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}
