//! Cameras, through nokhwa: picking one, choosing its format, and capturing into the frame
//! bus on a device thread.

use super::worker::Worker;
use super::{CameraRef, FrameBus, VideoFormat};
use crate::frame::now_us;
use crate::MediaError;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType};
use nokhwa::Camera;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a camera may take to open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a camera (`None`: the first one) on a thread of its own, publishing into `bus`.
/// Answers what is capturing, in words, and the format it captures in.
pub(super) fn start(
    which: Option<CameraRef>,
    want: VideoFormat,
    bus: Arc<FrameBus>,
) -> Result<(Worker, (String, VideoFormat)), MediaError> {
    Worker::start(
        "camera",
        OPEN_TIMEOUT,
        move || open(which.as_ref(), want).map(|(cam, description, fmt)| (cam, (description, fmt))),
        move |cam, stop| run(cam, &bus, stop),
    )
}

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

fn pick(which: Option<&CameraRef>) -> Result<(CameraIndex, String), MediaError> {
    let cams = nokhwa::query(nokhwa::utils::ApiBackend::Auto).map_err(worded)?;
    let found = match which {
        None => cams.first(),
        Some(CameraRef::Index(n)) => cams
            .iter()
            .find(|c| c.index().as_index().is_ok_and(|i| i == *n)),
        // A name, or a system index that is not a number (or a bare number, as `camera:N`).
        Some(CameraRef::Name(name)) => cams
            .iter()
            .find(|c| c.human_name() == *name || c.index().to_string() == *name),
    };
    match found {
        Some(c) => Ok((c.index().clone(), c.human_name())),
        None if cams.is_empty() => Err(MediaError::Device("no camera found".into())),
        None => Err(MediaError::Device(match which {
            Some(CameraRef::Index(n)) => format!("no camera number {n}"),
            Some(CameraRef::Name(name)) => format!("no camera called {name:?}"),
            None => "no camera found".into(),
        })),
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
    which: Option<&CameraRef>,
    want: VideoFormat,
) -> Result<(Camera, String, VideoFormat), MediaError> {
    let (index, name) = pick(which)?;
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

/// Captures until told to stop, or until the camera has failed 30 times in a row.
fn run(mut cam: Camera, bus: &FrameBus, stop: &AtomicBool) {
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
