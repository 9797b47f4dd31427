//! Motion gating: between capture and recognition, a lane reads a frame only when something moved in its
//! region of interest lately, or a plate was seen lately, or nothing has been read for a while. An empty
//! lane then costs its decode and a thumbnail difference (well under a millisecond), not the detector and
//! reader on every frame.
//!
//! What counts as motion: the region is shrunk to a 160-pixel-wide grey thumbnail and compared with the
//! thumbnail of at least [`REFERENCE_AGE_MS`] before (so a car creeping towards the gate still differs);
//! the lane moved when more than `min_changed` of the thumbnail's pixels changed by more than
//! [`PIXEL_STEP`] grey levels. Changing light (clouds, headlights) counts as motion: that costs reads,
//! never a missed car. After motion or a plate the lane stays awake for `hold`; with nothing going on it
//! still reads one frame every `idle_read` (a car already standing there at start-up, a camera that
//! froze on a plate).

use chrono::{DateTime, Duration, Utc};
use opencv::core::{Mat, Rect, Size, ToInputArray};
use opencv::imgproc;
use opencv::prelude::*;

use crate::config::MotionConfig;

/// Thumbnail width the difference is taken on.
const THUMB_WIDTH: i32 = 160;
/// A thumbnail pixel changed when its grey level moved by more than this.
const PIXEL_STEP: f64 = 15.0;
/// The reference thumbnail is at least this old (a slow car differs over a few frames, not one).
pub const REFERENCE_AGE_MS: i64 = 200;

/// One lane's motion gate (its recognition thread owns it).
pub struct MotionGate {
    min_changed: f32,
    hold: Duration,
    idle_read: Duration,
    reference: Option<(Mat, DateTime<Utc>)>,
    awake_until: Option<DateTime<Utc>>,
    last_read: Option<DateTime<Utc>>,
}

impl MotionGate {
    pub fn new(cfg: &MotionConfig) -> Self {
        let ms = |d: std::time::Duration| Duration::milliseconds(d.as_millis().min(i64::MAX as u128) as i64);
        Self {
            min_changed: cfg.min_changed,
            hold: ms(cfg.hold),
            idle_read: ms(cfg.idle_read),
            reference: None,
            awake_until: None,
            last_read: None,
        }
    }

    /// Whether the frame captured `at` should be recognised. A frame that cannot be compared (an OpenCV
    /// error) is read: the gate saves work, it never hides a car.
    pub fn wants(&mut self, image: &Mat, roi: Option<Rect>, at: DateTime<Utc>) -> bool {
        let moved = self.moved(image, roi, at).unwrap_or_else(|e| {
            tracing::debug!(error = %e, "motion check failed; reading the frame");
            true
        });
        if moved {
            self.wake(at);
        }
        let awake = self.awake_until.is_some_and(|u| at <= u);
        let due = self.last_read.is_none_or(|t| at - t >= self.idle_read);
        let read = awake || due;
        if read {
            self.last_read = Some(at);
        }
        read
    }

    /// A plate was read in the frame captured `at`: keep reading (a car standing still at the barrier
    /// is still a car).
    pub fn plate_seen(&mut self, at: DateTime<Utc>) {
        self.wake(at);
    }

    fn wake(&mut self, at: DateTime<Utc>) {
        let until = at + self.hold;
        self.awake_until = Some(self.awake_until.map_or(until, |u| u.max(until)));
    }

    /// Compares the frame's thumbnail with the reference, and makes it the reference when that is old
    /// enough (or differs in size: the camera changed resolution).
    fn moved(&mut self, image: &Mat, roi: Option<Rect>, at: DateTime<Utc>) -> opencv::Result<bool> {
        let thumb = thumbnail(image, roi)?;
        let Some((reference, ref_at)) = &self.reference else {
            // The first frame: nothing to compare with (it is read anyway: nothing was read before it).
            self.reference = Some((thumb, at));
            return Ok(false);
        };
        if reference.size()? != thumb.size()? {
            self.reference = Some((thumb, at));
            return Ok(true);
        }
        let mut diff = Mat::default();
        opencv::core::absdiff(reference, &thumb, &mut diff)?;
        let mut changed = Mat::default();
        imgproc::threshold(&diff, &mut changed, PIXEL_STEP, 255.0, imgproc::THRESH_BINARY)?;
        let count = opencv::core::count_non_zero(&changed)?;
        let total = (thumb.rows() * thumb.cols()).max(1);
        let moved = count as f32 / total as f32 > self.min_changed;
        if (at - *ref_at).num_milliseconds() >= REFERENCE_AGE_MS || moved {
            self.reference = Some((thumb, at));
        }
        Ok(moved)
    }
}

/// The region as a small grey image: every 3rd-or-so pixel first (nearest neighbour, cheap on a 1080p
/// frame), then averaged down to the thumbnail (area), which also evens out sensor noise: about 0.7 ms
/// for a 1080p region on the 2-core dev box, where copying the region and area-resizing it took 4.8 ms.
fn thumbnail(image: &Mat, roi: Option<Rect>) -> opencv::Result<Mat> {
    match roi {
        Some(r) => shrink(&Mat::roi(image, r)?),
        None => shrink(image),
    }
}

fn shrink<M: MatTraitConst + ToInputArray>(region: &M) -> opencv::Result<Mat> {
    let w = region.cols().max(1);
    let h = region.rows().max(1);
    let size = |width: i32| Size::new(width, ((h as f32 * width as f32 / w as f32).round() as i32).max(1));
    let thumb = size(THUMB_WIDTH.min(w));
    let mut small = Mat::default();
    if w > 4 * THUMB_WIDTH {
        let mut sampled = Mat::default();
        imgproc::resize(
            region,
            &mut sampled,
            size(4 * THUMB_WIDTH),
            0.0,
            0.0,
            imgproc::INTER_NEAREST,
        )?;
        imgproc::resize(&sampled, &mut small, thumb, 0.0, 0.0, imgproc::INTER_AREA)?;
    } else {
        imgproc::resize(region, &mut small, thumb, 0.0, 0.0, imgproc::INTER_AREA)?;
    }
    if small.channels() == 1 {
        return Ok(small);
    }
    let mut grey = Mat::default();
    imgproc::cvt_color_def(&small, &mut grey, imgproc::COLOR_BGR2GRAY)?;
    Ok(grey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Scalar, CV_8UC3};

    fn cfg() -> MotionConfig {
        MotionConfig {
            min_changed: 0.002,
            hold: std::time::Duration::from_millis(1000),
            idle_read: std::time::Duration::from_millis(3000),
        }
    }

    /// A grey 640 x 360 frame with a white car-sized box at `x`.
    fn frame(x: i32) -> Mat {
        let mut m = Mat::new_rows_cols_with_default(360, 640, CV_8UC3, Scalar::all(90.0)).expect("mat");
        imgproc::rectangle(
            &mut m,
            Rect::new(x, 150, 300, 150),
            Scalar::all(240.0),
            -1,
            imgproc::LINE_8,
            0,
        )
        .expect("draw");
        m
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).expect("time")
    }

    /// Reads (true) for frames every 100 ms from `from` to `to`, the box at `x(ms)`.
    fn run(g: &mut MotionGate, from: i64, to: i64, x: impl Fn(i64) -> i32) -> Vec<bool> {
        (from..to)
            .step_by(100)
            .map(|t| g.wants(&frame(x(t)), None, at(t)))
            .collect()
    }

    #[test]
    fn a_still_lane_is_read_only_once_in_a_while() {
        let mut g = MotionGate::new(&cfg());
        let reads = run(&mut g, 0, 10_000, |_| 100);
        // The first frame, then the first one past each 3 s of nothing: 0, 3.0, 6.0, 9.0 s.
        let at_ms: Vec<i64> = reads
            .iter()
            .enumerate()
            .filter(|(_, r)| **r)
            .map(|(i, _)| i as i64 * 100)
            .collect();
        assert_eq!(at_ms, vec![0, 3000, 6000, 9000]);
    }

    #[test]
    fn motion_wakes_the_lane_and_it_stays_awake_for_the_hold() {
        let mut g = MotionGate::new(&cfg());
        assert!(
            run(&mut g, 0, 2000, |_| 100)[1..].iter().all(|r| !r),
            "still: nothing read after the first"
        );
        // The box moves 16 px per frame from 2.0 s to 3.0 s, then stops.
        let reads = run(&mut g, 2000, 5000, |t| {
            if t < 3000 {
                100 + ((t - 2000) / 100) as i32 * 16
            } else {
                260
            }
        });
        assert!(reads[1..10].iter().all(|r| *r), "moving: every frame read {reads:?}");
        // Awake until 1 s after the last motion (about 3.0 s), asleep after.
        assert!(reads[10..19].iter().all(|r| *r), "held: {reads:?}");
        assert!(reads[22..].iter().all(|r| !r), "asleep again: {reads:?}");
    }

    #[test]
    fn a_slow_car_still_counts_as_motion() {
        let mut g = MotionGate::new(&cfg());
        run(&mut g, 0, 1000, |_| 100);
        // 1 px per 100 ms: too little from one frame to the next, plain over the reference's 200 ms+.
        let reads = run(&mut g, 1000, 4000, |t| 100 + ((t - 1000) / 100) as i32);
        let read = reads.iter().filter(|r| **r).count();
        assert!(
            read >= 20,
            "a creeping car keeps the lane awake: {read} of {} {reads:?}",
            reads.len()
        );
    }

    #[test]
    fn a_plate_keeps_a_standing_car_read() {
        let mut g = MotionGate::new(&cfg());
        run(&mut g, 0, 500, |_| 100);
        // Still, not due: not read; a plate was seen in it (read by the idle rule, say).
        assert!(!g.wants(&frame(100), None, at(500)));
        g.plate_seen(at(500));
        for t in (600..3000).step_by(100) {
            assert!(
                g.wants(&frame(100), None, at(t)),
                "read at {t} ms: the plate keeps the lane awake"
            );
            g.plate_seen(at(t));
        }
        assert!(
            g.wants(&frame(100), None, at(3900)),
            "awake until a second after the last plate"
        );
        assert!(!g.wants(&frame(100), None, at(4000)), "asleep after");
    }

    #[test]
    fn only_the_region_of_interest_counts() {
        let mut g = MotionGate::new(&cfg());
        let roi = Some(Rect::new(0, 0, 640, 100));
        g.wants(&frame(100), roi, at(0));
        // The box (y 150-190) moves below the region: not motion.
        let reads: Vec<bool> = (1..20)
            .map(|i| g.wants(&frame(100 + i * 10), roi, at(i as i64 * 100)))
            .collect();
        assert!(reads.iter().all(|r| !r), "{reads:?}");
    }
}
