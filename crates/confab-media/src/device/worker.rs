//! The one way a device thread starts and stops.
//!
//! Cameras and cpal streams are not `Send` on every platform, so each device lives on a thread
//! of its own: the thread opens the device, says whether that worked (the ready signal), then
//! runs it until told to stop. The caller waits for the ready signal at most a timeout, so a
//! hanging driver cannot hang the caller. A [`Worker`] stops and joins its thread when dropped.

use crate::MediaError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running device thread: told to stop and joined when dropped.
pub(super) struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Runs `body` on a thread named after `what` (e.g. "test pattern" → `test-pattern`), with
    /// the stop flag it must watch. For sources that cannot fail once the thread runs.
    pub(super) fn spawn(
        what: &str,
        body: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> Result<Self, MediaError> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name(what.replace(' ', "-"))
            .spawn(move || body(&s))
            .map_err(|e| MediaError::Device(format!("cannot start the {what} thread: {e}")))?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }

    /// Opens a device on a thread of its own and keeps it running there.
    ///
    /// On the new thread, `open` opens the device; its `Ok((device, info))` is the ready
    /// signal, after which `run` gets the device and the stop flag and runs until the flag is
    /// set (it may also end early, e.g. when the device goes away). This call waits for the
    /// ready signal at most `timeout` and answers `info`, or `open`'s error (the thread joined),
    /// or a worded timeout. After a timeout the thread is told to stop and left to finish on
    /// its own: a driver stuck in `open` cannot be interrupted.
    pub(super) fn start<D: 'static, T: Send + 'static>(
        what: &str,
        timeout: Duration,
        open: impl FnOnce() -> Result<(D, T), MediaError> + Send + 'static,
        run: impl FnOnce(D, &AtomicBool) + Send + 'static,
    ) -> Result<(Self, T), MediaError> {
        let (ready_tx, ready_rx) = sync_channel(1);
        let mut worker = Worker::spawn(what, move |stop| match open() {
            Ok((device, info)) => {
                let _ = ready_tx.send(Ok(info));
                run(device, stop);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })?;
        match ready_rx.recv_timeout(timeout) {
            Ok(Ok(info)) => Ok((worker, info)),
            Ok(Err(e)) => {
                worker.join();
                Err(e)
            }
            Err(RecvTimeoutError::Disconnected) => {
                worker.join();
                Err(MediaError::Device(format!(
                    "the {what} thread ended before the {what} was ready"
                )))
            }
            Err(RecvTimeoutError::Timeout) => {
                worker.stop.store(true, Ordering::Relaxed);
                // Detached: dropping the handle leaves the thread to end by itself.
                worker.thread = None;
                let within = if timeout.subsec_nanos() == 0 {
                    format!("{} s", timeout.as_secs())
                } else {
                    format!("{} ms", timeout.as_millis())
                };
                Err(MediaError::Device(format!(
                    "the {what} did not start within {within}"
                )))
            }
        }
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.join();
    }
}

/// Calls `tick` every 20 ms (an audio frame's time, on a steady clock that does not drift)
/// until `stop` is set or `tick` says no: the pace of every built-in audio source.
pub(super) fn paced(stop: &AtomicBool, mut tick: impl FnMut() -> bool) {
    let period = Duration::from_millis(20);
    let start = std::time::Instant::now();
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let due = start + period * n;
        let now = std::time::Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if !tick() {
            return;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Instant;

    #[test]
    fn a_started_device_runs_until_its_worker_drops() {
        let (events_tx, events) = channel();
        let tx = events_tx.clone();
        let (worker, info) = Worker::start(
            "probe",
            Duration::from_secs(5),
            move || Ok((tx, "probe ready".to_string())),
            |tx, stop| {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let _ = tx.send("stopped");
            },
        )
        .unwrap();
        assert_eq!(info, "probe ready");
        assert!(events.try_recv().is_err(), "still running");
        drop(worker);
        // Dropping joined the thread, so its last word is already there.
        assert_eq!(events.try_recv(), Ok("stopped"));
    }

    #[test]
    fn a_device_that_fails_to_open_answers_its_error() {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let err = Worker::start::<(), ()>(
            "probe",
            Duration::from_secs(5),
            || Err(MediaError::Device("the probe is busy".into())),
            move |_, _| r.store(true, Ordering::Relaxed),
        )
        .err()
        .unwrap();
        assert_eq!(err, MediaError::Device("the probe is busy".into()));
        assert!(!ran.load(Ordering::Relaxed));
    }

    #[test]
    fn a_device_that_hangs_is_a_worded_timeout() {
        let (release_tx, release) = channel::<()>();
        let started = Instant::now();
        let err = Worker::start::<(), ()>(
            "probe",
            Duration::from_millis(200),
            move || {
                // A driver stuck until the test lets it go.
                let _ = release.recv();
                Err(MediaError::Device("gave up".into()))
            },
            |_, _| {},
        )
        .err()
        .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(
            err,
            MediaError::Device("the probe did not start within 200 ms".into())
        );
        drop(release_tx);
    }

    #[test]
    fn a_device_thread_that_panics_is_a_worded_error() {
        let err = Worker::start::<(), ()>(
            "probe",
            Duration::from_secs(5),
            || panic!("driver bug"),
            |_, _| {},
        )
        .err()
        .unwrap();
        assert_eq!(
            err,
            MediaError::Device("the probe thread ended before the probe was ready".into())
        );
    }
}
