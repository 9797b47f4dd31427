//! The capture loop of one lane: open, read, pace, reconnect with back-off, hand frames on (newest wins).
//! Runs on its own OS thread because OpenCV reads block.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opencv::core::Rect;
use opencv::prelude::*;
use tokio_util::sync::CancellationToken;

use super::{Frame, FrameSource, Grab, LatestSlot};
use crate::clock::SharedClock;
use crate::config::{AtEnd, Roi};

/// A lane's region of interest, shared: the capture loop reads it for every frame, the installers' setup
/// page changes it while the lane runs.
#[derive(Debug, Clone, Default)]
pub struct LaneRoi(Arc<std::sync::RwLock<Option<Roi>>>);

impl LaneRoi {
    pub fn new(roi: Option<Roi>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(roi)))
    }

    pub fn get(&self) -> Option<Roi> {
        *self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, roi: Option<Roi>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = roi;
    }
}

#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub lane: Arc<str>,
    pub roi: LaneRoi,
    pub at_end: AtEnd,
    /// Files: pace reads at the declared frame rate.
    pub realtime: bool,
    /// Files: hand over every frame (wait for recognition instead of dropping) and stamp each with the
    /// video's own clock: a deterministic replay, however slow recognition is.
    pub replay: bool,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

/// Counters a lane exposes (shared with metrics and the watchdog).
#[derive(Debug, Default)]
pub struct CaptureStats {
    pub frames: AtomicU64,
    pub reconnects: AtomicU64,
    /// Frames recognition took but did not read: nothing moved in the lane (motion gating).
    pub still: AtomicU64,
    /// Moves while the lane is alive: bumped by recognition per frame, and by capture while it waits to
    /// reconnect a camera that is down. The watchdog reads it.
    pub progress: Arc<AtomicU64>,
}

/// Runs until the source ends (files with `at_end = stop`) or `cancel` fires; closes the slot on the way out.
pub fn run_capture(
    mut source: Box<dyn FrameSource>,
    slot: Arc<LatestSlot<Frame>>,
    opts: CaptureOptions,
    clock: SharedClock,
    stats: Arc<CaptureStats>,
    cancel: CancellationToken,
) {
    let mut backoff = opts.reconnect_min;
    let mut seq: u64 = 0;
    // Replay: frame times run on the video's clock from the moment the lane started.
    let replay_start = clock.now();
    let mut replay_at = chrono::Duration::zero();
    'outer: while !cancel.is_cancelled() {
        stats.progress.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = source.open() {
            tracing::warn!(lane = %opts.lane, error = %e, retry_in = ?backoff, "camera open failed");
            sleep_cancellable(backoff, &cancel, Some(&stats.progress));
            backoff = (backoff * 2).min(opts.reconnect_max);
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        tracing::info!(lane = %opts.lane, source = %source.describe(), "camera open");
        let replay = opts.replay && source.is_file();
        let frame_step = chrono::Duration::from_std(Duration::from_secs_f64(1.0 / source.fps().unwrap_or(10.0)))
            .unwrap_or(chrono::Duration::milliseconds(100));
        let period = match (opts.realtime && !replay && source.is_file(), source.fps()) {
            (true, Some(fps)) => Some(Duration::from_secs_f64(1.0 / fps)),
            (true, None) => Some(Duration::from_millis(100)),
            _ => None,
        };
        let started = Instant::now();
        let mut n: u32 = 0;
        while !cancel.is_cancelled() {
            match source.read() {
                Ok(Grab::Frame(image)) => {
                    backoff = opts.reconnect_min;
                    if let Some(p) = period {
                        let due = started + p * n;
                        let now = Instant::now();
                        if due > now {
                            sleep_cancellable(due - now, &cancel, None);
                        }
                    }
                    n = n.saturating_add(1);
                    seq += 1;
                    stats.frames.fetch_add(1, Ordering::Relaxed);
                    let roi = opts.roi.get().and_then(|r| roi_pixels(r, image.cols(), image.rows()));
                    let at = if replay {
                        replay_at += frame_step;
                        replay_start + replay_at
                    } else {
                        clock.now()
                    };
                    let frame = Frame {
                        lane: opts.lane.clone(),
                        seq,
                        at,
                        image,
                        roi,
                    };
                    if replay {
                        // Recognition feeds the watchdog per frame; a hung recogniser still starves it.
                        if slot.put_when_taken(frame, || cancel.is_cancelled()).is_err() {
                            break 'outer;
                        }
                    } else {
                        slot.put(frame);
                    }
                }
                Ok(Grab::End) => match opts.at_end {
                    AtEnd::Stop => {
                        tracing::info!(lane = %opts.lane, frames = seq, "video ended");
                        break 'outer;
                    }
                    AtEnd::Loop => continue 'outer,
                },
                Err(e) => {
                    tracing::warn!(lane = %opts.lane, error = %e, retry_in = ?backoff, "camera dropped; reconnecting");
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    sleep_cancellable(backoff, &cancel, Some(&stats.progress));
                    backoff = (backoff * 2).min(opts.reconnect_max);
                    continue 'outer;
                }
            }
        }
    }
    slot.close();
}

/// Region of interest in pixels, clipped to the frame; `None` if it is empty.
pub fn roi_pixels(r: Roi, cols: i32, rows: i32) -> Option<Rect> {
    let x = (r.x * cols as f32).round() as i32;
    let y = (r.y * rows as f32).round() as i32;
    let w = ((r.width * cols as f32).round() as i32).min(cols - x);
    let h = ((r.height * rows as f32).round() as i32).min(rows - y);
    (w > 0 && h > 0 && x >= 0 && y >= 0).then(|| Rect::new(x, y, w, h))
}

fn sleep_cancellable(d: Duration, cancel: &CancellationToken, alive: Option<&AtomicU64>) {
    let end = Instant::now() + d;
    while !cancel.is_cancelled() {
        if let Some(a) = alive {
            a.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::{FakeSource, FakeStep};
    use crate::clock::SystemClock;
    use opencv::core::{Mat, Scalar, CV_8UC3};

    fn mat() -> Mat {
        Mat::new_rows_cols_with_default(4, 4, CV_8UC3, Scalar::all(0.0)).expect("mat")
    }

    fn opts() -> CaptureOptions {
        CaptureOptions {
            lane: "t".into(),
            roi: LaneRoi::default(),
            at_end: AtEnd::Stop,
            realtime: false,
            replay: false,
            reconnect_min: Duration::from_millis(1),
            reconnect_max: Duration::from_millis(4),
        }
    }

    #[test]
    fn reconnects_after_failures_and_drops_then_ends() {
        let src = FakeSource::new(vec![
            FakeStep::Frame(mat()),
            FakeStep::Drop,
            FakeStep::Frame(mat()),
            FakeStep::End,
        ])
        .failing_first_opens(2);
        let opens = src.opens.clone();
        let slot = Arc::new(LatestSlot::new());
        let stats = Arc::new(CaptureStats::default());
        run_capture(
            Box::new(src),
            slot.clone(),
            opts(),
            Arc::new(SystemClock),
            stats.clone(),
            CancellationToken::new(),
        );
        assert_eq!(
            *opens.lock().expect("lock"),
            4,
            "2 failed opens, 1 good, 1 after the drop"
        );
        assert_eq!(stats.frames.load(Ordering::Relaxed), 2);
        assert_eq!(stats.reconnects.load(Ordering::Relaxed), 3);
        // Nobody consumed: the first frame was replaced by the second (one drop), and the slot is closed.
        assert_eq!(slot.dropped(), 1);
        assert!(matches!(slot.take_timeout(Duration::ZERO), Ok(Some(f)) if f.seq == 2));
        assert!(slot.take_timeout(Duration::ZERO).is_err());
    }

    #[test]
    fn replay_hands_over_every_frame_on_the_videos_clock() {
        let steps = (0..5).map(|_| FakeStep::Frame(mat())).chain([FakeStep::End]).collect();
        let slot: Arc<LatestSlot<Frame>> = Arc::new(LatestSlot::new());
        let consumer = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                let mut times = Vec::new();
                while let Ok(f) = slot.take_timeout(Duration::from_secs(5)) {
                    if let Some(f) = f {
                        times.push(f.at);
                        std::thread::sleep(Duration::from_millis(30)); // slower than the video
                    }
                }
                times
            })
        };
        let mut o = opts();
        o.replay = true;
        o.realtime = true;
        let clock = crate::clock::ManualClock::new(chrono::DateTime::UNIX_EPOCH);
        run_capture(
            Box::new(FakeSource::new(steps).with_fps(25.0)),
            slot.clone(),
            o,
            Arc::new(clock),
            Arc::new(CaptureStats::default()),
            CancellationToken::new(),
        );
        let times = consumer.join().expect("consumer");
        assert_eq!(slot.dropped(), 0, "no frame dropped however slow recognition is");
        let ms: Vec<i64> = times.iter().map(|t| t.timestamp_millis()).collect();
        assert_eq!(ms, vec![40, 80, 120, 160, 200], "frame n is stamped n / fps");
    }

    #[test]
    fn roi_is_clipped_to_the_frame() {
        let r = Roi {
            x: 0.5,
            y: 0.25,
            width: 0.5,
            height: 0.75,
        };
        assert_eq!(roi_pixels(r, 640, 480), Some(Rect::new(320, 120, 320, 360)));
    }
}
