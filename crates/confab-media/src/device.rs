//! Devices: cameras (nokhwa), microphones and speakers (cpal), and the built-in test devices
//! ("Test pattern" camera, "Test tone" microphone) that go through the very same pipeline.
//!
//! Every source runs on a thread of its own (cameras and cpal streams are not `Send` on every
//! platform) and is stopped and joined when its handle drops.

use crate::frame::{now_us, AudioFrame, VideoFrame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::{pattern, tone::Tone, MediaError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Id of the built-in test camera.
pub const TEST_PATTERN: &str = "test";
/// Id of the built-in test microphone.
pub const TEST_TONE: &str = "tone";
/// Frequency of the test tone when none is given.
pub const DEFAULT_TONE_HZ: f64 = 440.0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Stable id to select it with (`test`, `tone`, `camera:0`, `mic:NAME`, `speaker:NAME`).
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
        Ok(cams) => out.cameras.extend(cams.iter().map(|c| Device {
            id: format!("camera:{}", c.index()),
            name: c.human_name(),
        })),
        Err(e) => tracing::debug!("no camera list: {e}"),
    }
    use cpal::traits::{DeviceTrait, HostTrait};
    let host = cpal::default_host();
    if let Ok(devs) = host.input_devices() {
        for d in devs {
            if let (Ok(name), Ok(_)) = (d.name(), d.default_input_config()) {
                out.microphones.push(Device {
                    id: format!("mic:{name}"),
                    name,
                });
            }
        }
    }
    if let Ok(devs) = host.output_devices() {
        for d in devs {
            if let (Ok(name), Ok(_)) = (d.name(), d.default_output_config()) {
                out.speakers.push(Device {
                    id: format!("speaker:{name}"),
                    name,
                });
            }
        }
    }
    out
}

/// Which camera.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoSourceSpec {
    TestPattern,
    /// A camera by id (`camera:N`), name, or the first one.
    Camera(Option<String>),
    None,
}

impl std::str::FromStr for VideoSourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "test" | "pattern" => Ok(VideoSourceSpec::TestPattern),
            "none" | "off" => Ok(VideoSourceSpec::None),
            "camera" => Ok(VideoSourceSpec::Camera(None)),
            other => match other.strip_prefix("camera:") {
                Some(rest) if !rest.is_empty() => Ok(VideoSourceSpec::Camera(Some(other.into()))),
                _ if !other.is_empty() => Ok(VideoSourceSpec::Camera(Some(other.into()))),
                _ => Err("expected test, none, camera or camera:N".into()),
            },
        }
    }
}

/// Which microphone.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSourceSpec {
    Tone(f64),
    Mic(Option<String>),
    None,
}

impl std::str::FromStr for AudioSourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tone" => Ok(AudioSourceSpec::Tone(DEFAULT_TONE_HZ)),
            "none" | "off" => Ok(AudioSourceSpec::None),
            "mic" => Ok(AudioSourceSpec::Mic(None)),
            other => {
                if let Some(hz) = other.strip_prefix("tone:") {
                    let hz: f64 = hz
                        .parse()
                        .map_err(|_| format!("bad tone frequency `{hz}`"))?;
                    if !(20.0..=8000.0).contains(&hz) {
                        return Err(format!("tone frequency {hz} Hz is outside 20-8000 Hz"));
                    }
                    Ok(AudioSourceSpec::Tone(hz))
                } else if other.is_empty() {
                    Err("expected tone[:HZ], none or mic".into())
                } else {
                    Ok(AudioSourceSpec::Mic(Some(
                        other.strip_prefix("mic:").unwrap_or(other).into(),
                    )))
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Video

/// The latest captured frame, for any number of consumers (encoders, local preview). A slow
/// consumer skips frames instead of queueing them.
#[derive(Default)]
pub struct FrameBus {
    slot: Mutex<(u64, Option<Arc<VideoFrame>>)>,
    cond: Condvar,
    closed: AtomicBool,
}

impl FrameBus {
    pub fn new() -> Arc<Self> {
        Arc::new(FrameBus::default())
    }

    pub fn publish(&self, frame: VideoFrame) {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        s.1 = Some(Arc::new(frame));
        self.cond.notify_all();
    }

    /// Waits for a frame newer than `seen` (updated), at most `timeout`.
    pub fn next(&self, seen: &mut u64, timeout: Duration) -> Option<Arc<VideoFrame>> {
        let deadline = Instant::now() + timeout;
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if s.0 > *seen {
                *seen = s.0;
                return s.1.clone();
            }
            if self.closed.load(Ordering::Relaxed) {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            s = self
                .cond
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Hands the newest frame out again, now (a new consumer need not wait for the next
    /// capture).
    pub fn nudge(&self) {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if s.1.is_some() {
            s.0 += 1;
            self.cond.notify_all();
        }
    }

    /// The newest frame without waiting.
    pub fn latest(&self) -> Option<Arc<VideoFrame>> {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Wakes every waiter for good.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.cond.notify_all();
    }
}

#[derive(Debug, Clone, Copy)]
pub struct VideoFormat {
    pub width: usize,
    pub height: usize,
    pub fps: f32,
}

/// A running video source. Stops (and joins its thread) when dropped.
pub struct VideoCapture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// What is capturing, in words (e.g. "Test pattern 640x480 @ 30 fps").
    pub description: String,
    pub format: VideoFormat,
}

impl VideoCapture {
    /// Starts a source publishing into `bus`. Fails with a worded error when the camera is
    /// missing or busy.
    pub fn start(
        spec: &VideoSourceSpec,
        want: VideoFormat,
        bus: Arc<FrameBus>,
    ) -> Result<Option<Self>, MediaError> {
        let stop = Arc::new(AtomicBool::new(false));
        match spec {
            VideoSourceSpec::None => Ok(None),
            VideoSourceSpec::TestPattern => {
                let (w, h) = (want.width & !1, want.height & !1);
                if w < pattern::MIN_WIDTH || h < pattern::MIN_HEIGHT || w > 3840 || h > 2160 {
                    return Err(MediaError::Device(format!(
                        "the test pattern needs a size between {}x{} and 3840x2160, not {}x{}",
                        pattern::MIN_WIDTH,
                        pattern::MIN_HEIGHT,
                        want.width,
                        want.height
                    )));
                }
                let fps = want.fps.clamp(1.0, 120.0);
                let s = stop.clone();
                let thread = std::thread::Builder::new()
                    .name("test-pattern".into())
                    .spawn(move || test_pattern_loop(w, h, fps, bus, s))
                    .map_err(|e| {
                        MediaError::Device(format!("cannot start the test pattern: {e}"))
                    })?;
                Ok(Some(VideoCapture {
                    stop,
                    thread: Some(thread),
                    description: format!("Test pattern {w}x{h} @ {fps} fps"),
                    format: VideoFormat {
                        width: w,
                        height: h,
                        fps,
                    },
                }))
            }
            VideoSourceSpec::Camera(which) => {
                let (ready_tx, ready_rx) = sync_channel(1);
                let s = stop.clone();
                let which = which.clone();
                let thread = std::thread::Builder::new()
                    .name("camera".into())
                    .spawn(move || camera::run(which, want, bus, s, ready_tx))
                    .map_err(|e| {
                        MediaError::Device(format!("cannot start the camera thread: {e}"))
                    })?;
                match ready_rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(Ok((description, format))) => Ok(Some(VideoCapture {
                        stop,
                        thread: Some(thread),
                        description,
                        format,
                    })),
                    Ok(Err(e)) => {
                        let _ = thread.join();
                        Err(e)
                    }
                    Err(_) => {
                        stop.store(true, Ordering::Relaxed);
                        Err(MediaError::Device(
                            "the camera did not start within 10 s".into(),
                        ))
                    }
                }
            }
        }
    }
}

impl Drop for VideoCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn test_pattern_loop(w: usize, h: usize, fps: f32, bus: Arc<FrameBus>, stop: Arc<AtomicBool>) {
    let period = Duration::from_secs_f64(1.0 / fps as f64);
    let start = Instant::now();
    let mut n: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = start + period.mul_f64(n as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let ts = now_us();
        bus.publish(pattern::frame(
            w,
            h,
            pattern::Stamp {
                frame: n,
                capture_us: ts as u32,
            },
            ts,
        ));
        n = n.wrapping_add(1);
    }
}

mod camera {
    use super::*;
    use nokhwa::pixel_format::RgbFormat;
    use nokhwa::utils::{
        CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    };
    use nokhwa::Camera;

    type Ready = SyncSender<Result<(String, VideoFormat), MediaError>>;

    fn worded(e: nokhwa::NokhwaError) -> MediaError {
        let text = e.to_string();
        if text.contains("os error 16") || text.to_lowercase().contains("busy") {
            MediaError::Device("the camera is busy (another program is using it)".into())
        } else if text.contains("os error 2") || text.contains("os error 19") {
            MediaError::Device("the camera is not connected".into())
        } else if text.contains("os error 13") {
            MediaError::Device("no permission to use the camera".into())
        } else {
            MediaError::Device(format!("camera error: {text}"))
        }
    }

    fn pick(which: &Option<String>) -> Result<(CameraIndex, String), MediaError> {
        let cams = nokhwa::query(nokhwa::utils::ApiBackend::Auto).map_err(worded)?;
        let found = match which {
            None => cams.first(),
            Some(w) => cams.iter().find(|c| {
                format!("camera:{}", c.index()) == *w
                    || c.human_name() == *w
                    || c.index().to_string() == *w
            }),
        };
        match found {
            Some(c) => Ok((c.index().clone(), c.human_name())),
            None if cams.is_empty() => Err(MediaError::Device("no camera found".into())),
            None => Err(MediaError::Device(format!(
                "no camera called {:?}",
                which.as_deref().unwrap_or("")
            ))),
        }
    }

    /// The listed format nearest to what was asked: YUYV or MJPEG, closest size, then fps.
    fn choose(formats: &[CameraFormat], want: VideoFormat) -> Option<CameraFormat> {
        formats
            .iter()
            .filter(|f| {
                matches!(
                    f.format(),
                    FrameFormat::YUYV | FrameFormat::MJPEG | FrameFormat::NV12
                )
            })
            .min_by_key(|f| {
                let dw = f.resolution().width() as i64 - want.width as i64;
                let dh = f.resolution().height() as i64 - want.height as i64;
                let dfps = (f.frame_rate() as i64 - want.fps as i64).abs();
                (
                    dw.abs() + dh.abs(),
                    dfps,
                    matches!(f.format(), FrameFormat::MJPEG) as i64,
                )
            })
            .copied()
    }

    fn open(
        which: Option<String>,
        want: VideoFormat,
    ) -> Result<(Camera, String, VideoFormat), MediaError> {
        let (index, name) = pick(&which)?;
        let mut cam = Camera::new(
            index,
            RequestedFormat::new::<RgbFormat>(RequestedFormatType::None),
        )
        .map_err(worded)?;
        let formats = cam.compatible_camera_formats().map_err(worded)?;
        let f = choose(&formats, want)
            .ok_or_else(|| MediaError::Device(format!("{name} offers no usable format")))?;
        cam.set_camera_requset(RequestedFormat::with_formats(
            RequestedFormatType::Exact(f),
            &[f.format()],
        ))
        .map_err(worded)?;
        cam.open_stream().map_err(worded)?;
        let fmt = VideoFormat {
            width: f.resolution().width() as usize & !1,
            height: f.resolution().height() as usize & !1,
            fps: f.frame_rate() as f32,
        };
        Ok((
            cam,
            format!("{name} {}x{} @ {} fps", fmt.width, fmt.height, fmt.fps),
            fmt,
        ))
    }

    pub fn run(
        which: Option<String>,
        want: VideoFormat,
        bus: Arc<FrameBus>,
        stop: Arc<AtomicBool>,
        ready: Ready,
    ) {
        let (mut cam, description, fmt) = match open(which, want) {
            Ok(x) => x,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok((description, fmt)));
        let mut failures = 0;
        while !stop.load(Ordering::Relaxed) {
            match cam.frame() {
                Ok(buf) => {
                    let res = buf.resolution();
                    let (w, h) = (res.width() as usize & !1, res.height() as usize & !1);
                    match crate::convert::to_i420(buf.source_frame_format(), buf.buffer(), w, h) {
                        Ok(mut f) => {
                            f.timestamp_us = now_us();
                            bus.publish(f);
                            failures = 0;
                        }
                        Err(e) => tracing::debug!("camera frame dropped: {e}"),
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!("{}", worded(e));
                    if failures > 30 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let _ = cam.stop_stream();
    }
}

// ---------------------------------------------------------------------------------------------
// Audio

/// A running audio source sending 20 ms frames into a bounded channel (full = dropped).
pub struct AudioCapture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub description: String,
}

impl AudioCapture {
    /// Starts a source. The receiver gets 48 kHz mono 20 ms frames.
    pub fn start(
        spec: &AudioSourceSpec,
    ) -> Result<(Option<Self>, Receiver<AudioFrame>), MediaError> {
        let (tx, rx) = sync_channel(25);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (thread, description) = match spec {
            AudioSourceSpec::None => return Ok((None, rx)),
            AudioSourceSpec::Tone(hz) => {
                let hz = *hz;
                let t = std::thread::Builder::new()
                    .name("test-tone".into())
                    .spawn(move || tone_loop(hz, tx, s))
                    .map_err(|e| MediaError::Device(format!("cannot start the test tone: {e}")))?;
                (t, format!("Test tone {hz} Hz"))
            }
            AudioSourceSpec::Mic(which) => {
                let (ready_tx, ready_rx) = sync_channel(1);
                let which = which.clone();
                let t = std::thread::Builder::new()
                    .name("microphone".into())
                    .spawn(move || cpal_io::mic(which, tx, s, ready_tx))
                    .map_err(|e| {
                        MediaError::Device(format!("cannot start the microphone thread: {e}"))
                    })?;
                match ready_rx.recv_timeout(Duration::from_secs(5)) {
                    Ok(Ok(d)) => (t, d),
                    Ok(Err(e)) => {
                        let _ = t.join();
                        return Err(e);
                    }
                    Err(_) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(MediaError::Device(
                            "the microphone did not start within 5 s".into(),
                        ));
                    }
                }
            }
        };
        Ok((
            Some(AudioCapture {
                stop,
                thread: Some(thread),
                description,
            }),
            rx,
        ))
    }
}

impl Drop for AudioCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tone_loop(hz: f64, tx: SyncSender<AudioFrame>, stop: Arc<AtomicBool>) {
    let mut tone = Tone::new(hz, 0.3);
    let period = Duration::from_millis(20);
    let start = Instant::now();
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let due = start + period * n;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if let Err(std::sync::mpsc::TrySendError::Disconnected(_)) = tx.try_send(tone.next_frame())
        {
            return;
        }
        n += 1;
    }
}

/// Where mixed audio goes: a speaker, or nowhere (a machine without a sound card).
pub struct AudioOut {
    inner: Option<cpal_io::Speaker>,
    pub description: String,
}

impl AudioOut {
    /// A null sink: frames are dropped.
    pub fn null() -> Self {
        AudioOut {
            inner: None,
            description: "No speaker".into(),
        }
    }

    /// The named speaker (or the default one).
    pub fn speaker(which: Option<String>) -> Result<Self, MediaError> {
        let (inner, description) = cpal_io::Speaker::open(which)?;
        Ok(AudioOut {
            inner: Some(inner),
            description,
        })
    }

    pub fn play(&self, frame: &AudioFrame) {
        if let Some(s) = &self.inner {
            s.push(frame);
        }
    }

    pub fn is_null(&self) -> bool {
        self.inner.is_none()
    }
}

mod cpal_io {
    use super::*;
    use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
    use std::collections::VecDeque;

    fn find(input: bool, which: &Option<String>) -> Result<cpal::Device, MediaError> {
        super::quiet_alsa();
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
                let name = name
                    .strip_prefix(if input { "mic:" } else { "speaker:" })
                    .unwrap_or(name);
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

    /// Converts interleaved f32 at any rate to 48 kHz mono 20 ms frames (linear interpolation;
    /// fine for speech from the usual 44.1/48 kHz devices).
    struct Framer {
        ratio: f64,
        pos: f64,
        prev: f32,
        out: Vec<i16>,
    }

    impl Framer {
        fn push(&mut self, mono: impl Iterator<Item = f32>, mut emit: impl FnMut(AudioFrame)) {
            for s in mono {
                while self.pos <= 1.0 {
                    let v = self.prev + (s - self.prev) * self.pos as f32;
                    self.out.push((v.clamp(-1.0, 1.0) * i16::MAX as f32) as i16);
                    if self.out.len() == FRAME_SAMPLES {
                        let mut f = [0i16; FRAME_SAMPLES];
                        f.copy_from_slice(&self.out);
                        self.out.clear();
                        emit(f);
                    }
                    self.pos += self.ratio;
                }
                self.pos -= 1.0;
                self.prev = s;
            }
        }
    }

    pub fn mic(
        which: Option<String>,
        tx: SyncSender<AudioFrame>,
        stop: Arc<AtomicBool>,
        ready: SyncSender<Result<String, MediaError>>,
    ) {
        let start = || -> Result<(cpal::Stream, String), MediaError> {
            let dev = find(true, &which)?;
            let name = dev.name().unwrap_or_else(|_| "microphone".into());
            let cfg = dev
                .default_input_config()
                .map_err(|e| MediaError::Device(format!("the microphone cannot be used: {e}")))?;
            let channels = cfg.channels() as usize;
            let rate = cfg.sample_rate().0;
            let mut framer = Framer {
                ratio: rate as f64 / SAMPLE_RATE as f64,
                pos: 0.0,
                prev: 0.0,
                out: Vec::with_capacity(FRAME_SAMPLES),
            };
            let config: cpal::StreamConfig = cfg.clone().into();
            let err = |e: cpal::StreamError| tracing::warn!("microphone: {e}");
            let stream = match cfg.sample_format() {
                cpal::SampleFormat::F32 => dev.build_input_stream(
                    &config,
                    move |data: &[f32], _: &cpal::InputCallbackInfo| {
                        let mono = data
                            .chunks(channels)
                            .map(|c| c.iter().sum::<f32>() / channels as f32);
                        framer.push(mono, |f| {
                            let _ = tx.try_send(f);
                        });
                    },
                    err,
                    None,
                ),
                cpal::SampleFormat::I16 => dev.build_input_stream(
                    &config,
                    move |data: &[i16], _: &cpal::InputCallbackInfo| {
                        let mono = data.chunks(channels).map(|c| {
                            c.iter().map(|&s| s as f32 / i16::MAX as f32).sum::<f32>()
                                / channels as f32
                        });
                        framer.push(mono, |f| {
                            let _ = tx.try_send(f);
                        });
                    },
                    err,
                    None,
                ),
                other => {
                    return Err(MediaError::Device(format!(
                        "unsupported microphone sample format {other:?}"
                    )))
                }
            }
            .map_err(|e| MediaError::Device(format!("the microphone cannot be opened: {e}")))?;
            stream
                .play()
                .map_err(|e| MediaError::Device(format!("the microphone cannot start: {e}")))?;
            Ok((stream, format!("{name} ({rate} Hz)")))
        };
        match start() {
            Ok((stream, description)) => {
                let _ = ready.send(Ok(description));
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                drop(stream);
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        }
    }

    /// A speaker fed through a small ring buffer; the device clock pulls.
    pub struct Speaker {
        ring: Arc<Mutex<VecDeque<f32>>>,
        rate_ratio: f64,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Speaker {
        pub fn open(which: Option<String>) -> Result<(Self, String), MediaError> {
            let ring = Arc::new(Mutex::new(VecDeque::<f32>::with_capacity(48_000)));
            let stop = Arc::new(AtomicBool::new(false));
            let (ready_tx, ready_rx) = sync_channel(1);
            let (r, s) = (ring.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name("speaker".into())
                .spawn(move || {
                    let start = || -> Result<(cpal::Stream, String, u32), MediaError> {
                        let dev = find(false, &which)?;
                        let name = dev.name().unwrap_or_else(|_| "speaker".into());
                        let cfg = dev.default_output_config().map_err(|e| {
                            MediaError::Device(format!("the speaker cannot be used: {e}"))
                        })?;
                        let channels = cfg.channels() as usize;
                        let rate = cfg.sample_rate().0;
                        let config: cpal::StreamConfig = cfg.clone().into();
                        let ring = r.clone();
                        let stream = dev
                            .build_output_stream(
                                &config,
                                move |out: &mut [f32], _: &cpal::OutputCallbackInfo| {
                                    let mut q = ring.lock().unwrap_or_else(|p| p.into_inner());
                                    for frame in out.chunks_mut(channels) {
                                        let v = q.pop_front().unwrap_or(0.0);
                                        frame.fill(v);
                                    }
                                },
                                |e| tracing::warn!("speaker: {e}"),
                                None,
                            )
                            .map_err(|e| {
                                MediaError::Device(format!("the speaker cannot be opened: {e}"))
                            })?;
                        stream.play().map_err(|e| {
                            MediaError::Device(format!("the speaker cannot start: {e}"))
                        })?;
                        Ok((stream, name, rate))
                    };
                    match start() {
                        Ok((stream, name, rate)) => {
                            let _ = ready_tx.send(Ok((name, rate)));
                            while !s.load(Ordering::Relaxed) {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            drop(stream);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                })
                .map_err(|e| MediaError::Device(format!("cannot start the speaker thread: {e}")))?;
            match ready_rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok((name, rate))) => Ok((
                    Speaker {
                        ring,
                        rate_ratio: rate as f64 / SAMPLE_RATE as f64,
                        stop,
                        thread: Some(thread),
                    },
                    name,
                )),
                Ok(Err(e)) => {
                    let _ = thread.join();
                    Err(e)
                }
                Err(_) => {
                    stop.store(true, Ordering::Relaxed);
                    Err(MediaError::Device(
                        "the speaker did not start within 5 s".into(),
                    ))
                }
            }
        }

        pub fn push(&self, frame: &AudioFrame) {
            let mut q = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            // Resample to the device rate (nearest sample; the device is usually 48 kHz).
            let n = (FRAME_SAMPLES as f64 * self.rate_ratio) as usize;
            for i in 0..n {
                let src = ((i as f64 / self.rate_ratio) as usize).min(FRAME_SAMPLES - 1);
                q.push_back(frame[src] as f32 / i16::MAX as f32);
            }
            // Never more than 200 ms behind.
            let max = (SAMPLE_RATE as f64 * self.rate_ratio * 0.2) as usize;
            while q.len() > max {
                q.pop_front();
            }
        }
    }

    impl Drop for Speaker {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
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
        // Whatever else exists has ids that select it again.
        assert!(l.cameras[1..].iter().all(|d| d.id.starts_with("camera:")));
        assert!(l.microphones[1..].iter().all(|d| d.id.starts_with("mic:")));
        assert!(l.speakers.iter().all(|d| d.id.starts_with("speaker:")));
    }

    #[test]
    fn specs_parse() {
        assert_eq!(
            "test".parse::<VideoSourceSpec>(),
            Ok(VideoSourceSpec::TestPattern)
        );
        assert_eq!("none".parse::<VideoSourceSpec>(), Ok(VideoSourceSpec::None));
        assert_eq!(
            "camera".parse::<VideoSourceSpec>(),
            Ok(VideoSourceSpec::Camera(None))
        );
        assert_eq!(
            "camera:2".parse::<VideoSourceSpec>(),
            Ok(VideoSourceSpec::Camera(Some("camera:2".into())))
        );
        assert_eq!(
            "tone".parse::<AudioSourceSpec>(),
            Ok(AudioSourceSpec::Tone(440.0))
        );
        assert_eq!(
            "tone:1000".parse::<AudioSourceSpec>(),
            Ok(AudioSourceSpec::Tone(1000.0))
        );
        assert!("tone:abc".parse::<AudioSourceSpec>().is_err());
        assert!("tone:5".parse::<AudioSourceSpec>().is_err());
        assert_eq!(
            "mic".parse::<AudioSourceSpec>(),
            Ok(AudioSourceSpec::Mic(None))
        );
    }

    #[test]
    fn test_pattern_source_publishes_numbered_frames() {
        let bus = FrameBus::new();
        let cap = VideoCapture::start(
            &VideoSourceSpec::TestPattern,
            VideoFormat {
                width: 320,
                height: 240,
                fps: 50.0,
            },
            bus.clone(),
        )
        .unwrap()
        .unwrap();
        assert!(cap.description.contains("320x240"));
        let mut seen = 0;
        let mut numbers = Vec::new();
        for _ in 0..5 {
            let f = bus
                .next(&mut seen, Duration::from_secs(2))
                .expect("a frame");
            numbers.push(pattern::read(&f).unwrap().frame);
        }
        assert!(numbers.windows(2).all(|w| w[1] > w[0]), "{numbers:?}");
        drop(cap);
    }

    #[test]
    fn test_pattern_rejects_silly_sizes() {
        let bus = FrameBus::new();
        let e = VideoCapture::start(
            &VideoSourceSpec::TestPattern,
            VideoFormat {
                width: 10,
                height: 10,
                fps: 30.0,
            },
            bus,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("size"), "{e}");
    }

    #[test]
    fn test_tone_source_sends_the_tone_in_real_time() {
        let (cap, rx) = AudioCapture::start(&AudioSourceSpec::Tone(660.0)).unwrap();
        let started = Instant::now();
        let mut l = crate::tone::Listener::default();
        for _ in 0..25 {
            l.push(&rx.recv_timeout(Duration::from_secs(1)).unwrap());
        }
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "paced at 20 ms"
        );
        assert!((l.dominant_hz().unwrap() - 660.0).abs() < 2.0);
        drop(cap);
    }

    #[test]
    fn a_missing_camera_is_a_worded_error() {
        let bus = FrameBus::new();
        let err = VideoCapture::start(
            &VideoSourceSpec::Camera(Some("camera:does-not-exist".into())),
            VideoFormat {
                width: 640,
                height: 480,
                fps: 30.0,
            },
            bus,
        )
        .err()
        .expect("no such camera here");
        assert!(err.to_string().contains("camera"), "{err}");
    }
}
