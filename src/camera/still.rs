//! Live stills: what each lane's camera sees right now, for the guards' live page. A lane makes a small
//! JPEG of its newest frame (640 pixels wide, its region of interest outlined) at most twice a second and
//! only while someone is watching: the panel marks a lane watched on each request, and a lane nobody watched
//! for [`WATCH_WINDOW`] makes none. Stills live in memory only: never stored, logged or uploaded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opencv::core::{Mat, Rect, Scalar, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;

/// Width of a still in pixels (the frame's aspect kept).
pub const STILL_WIDTH: i32 = 640;
/// The most often a lane makes a still.
pub const STILL_INTERVAL: Duration = Duration::from_millis(450);
/// A lane keeps making stills this long after the last request for one.
pub const WATCH_WINDOW: Duration = Duration::from_secs(5);
/// A still older than this is not shown (the camera is down or the lane stopped).
pub const STILL_MAX_AGE: Duration = Duration::from_secs(3);

/// One still: the JPEG bytes and when it was made.
#[derive(Clone)]
pub struct Still {
    pub jpeg: Arc<Vec<u8>>,
    pub made: Instant,
}

#[derive(Default)]
struct State {
    latest: Option<Still>,
    watched_until: Option<Instant>,
}

/// One lane's still: written by its recognition thread, read by the panel.
#[derive(Default)]
pub struct LaneStill {
    state: Mutex<State>,
}

impl LaneStill {
    /// The panel asks: marks the lane watched and returns its still when it is fresh.
    pub fn watch(&self, now: Instant) -> Option<Still> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.watched_until = Some(now + WATCH_WINDOW);
        s.latest
            .clone()
            .filter(|still| now.saturating_duration_since(still.made) <= STILL_MAX_AGE)
    }

    /// Whether the lane should make a still now: someone watches and the last one is old enough.
    pub fn wanted(&self, now: Instant) -> bool {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.watched_until.is_some_and(|until| now < until)
            && s.latest
                .as_ref()
                .is_none_or(|still| now.saturating_duration_since(still.made) >= STILL_INTERVAL)
    }

    /// Makes a still of `image` (region outlined) when one is wanted; a failed encoding is logged and
    /// skipped (the guard sees the previous still age out).
    pub fn offer(&self, lane: &str, image: &Mat, roi: Option<Rect>, now: Instant) {
        if !self.wanted(now) {
            return;
        }
        match encode(image, roi) {
            Ok(jpeg) => {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                s.latest = Some(Still {
                    jpeg: Arc::new(jpeg),
                    made: now,
                });
            }
            Err(e) => tracing::warn!(lane, error = %e, "could not make the lane's live still"),
        }
    }
}

/// The stills of every lane, by lane name; cheap to clone.
#[derive(Clone, Default)]
pub struct Stills(Arc<BTreeMap<String, Arc<LaneStill>>>);

impl Stills {
    pub fn new<'a>(lanes: impl IntoIterator<Item = &'a str>) -> Self {
        Self(Arc::new(
            lanes
                .into_iter()
                .map(|l| (l.to_string(), Arc::new(LaneStill::default())))
                .collect(),
        ))
    }

    pub fn lane(&self, name: &str) -> Option<Arc<LaneStill>> {
        self.0.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// The frame shrunk to [`STILL_WIDTH`] (linear: a still is looked at, not measured), the region of interest
/// outlined in amber, as a JPEG of quality 70.
fn encode(image: &Mat, roi: Option<Rect>) -> opencv::Result<Vec<u8>> {
    let (w, h) = (image.cols(), image.rows());
    if w <= 0 || h <= 0 {
        return Err(opencv::Error::new(opencv::core::StsBadArg, "empty frame"));
    }
    let scale = f64::from(STILL_WIDTH.min(w)) / f64::from(w);
    let size = Size::new(
        (f64::from(w) * scale).round() as i32,
        ((f64::from(h) * scale).round() as i32).max(1),
    );
    let mut small = Mat::default();
    imgproc::resize(image, &mut small, size, 0.0, 0.0, imgproc::INTER_LINEAR)?;
    if let Some(r) = roi {
        let s = |v: i32| (f64::from(v) * scale).round() as i32;
        let outline = Rect::new(s(r.x), s(r.y), s(r.width).max(1), s(r.height).max(1));
        imgproc::rectangle(
            &mut small,
            outline,
            Scalar::new(0.0, 191.0, 255.0, 0.0),
            2,
            imgproc::LINE_8,
            0,
        )?;
    }
    let mut buf: Vector<u8> = Vector::new();
    let params: Vector<i32> = Vector::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, 70]);
    opencv::imgcodecs::imencode(".jpg", &small, &mut buf, &params)?;
    Ok(buf.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::CV_8UC3;

    fn frame() -> Mat {
        Mat::new_rows_cols_with_default(1080, 1920, CV_8UC3, Scalar::all(90.0)).expect("mat")
    }

    #[test]
    fn a_lane_nobody_watches_makes_no_still() {
        let still = LaneStill::default();
        let t0 = Instant::now();
        still.offer("entry", &frame(), None, t0);
        assert!(still.state.lock().expect("lock").latest.is_none());
        // Watched: the next frame makes one, 640 pixels wide, and the panel gets it.
        assert!(still.watch(t0).is_none());
        still.offer("entry", &frame(), Some(Rect::new(0, 200, 1920, 880)), t0);
        let got = still.watch(t0).expect("a still");
        let img = opencv::imgcodecs::imdecode(&Vector::<u8>::from_slice(&got.jpeg), opencv::imgcodecs::IMREAD_COLOR)
            .expect("decode");
        assert_eq!((img.cols(), img.rows()), (640, 360));
        // At most one per interval; none once nobody watched for the window.
        assert!(!still.wanted(t0 + STILL_INTERVAL / 2));
        assert!(still.wanted(t0 + STILL_INTERVAL));
        assert!(!still.wanted(t0 + WATCH_WINDOW + Duration::from_millis(1)));
    }

    #[test]
    fn a_stale_still_is_not_shown() {
        let still = LaneStill::default();
        let t0 = Instant::now();
        still.watch(t0);
        still.offer("entry", &frame(), None, t0);
        assert!(still.watch(t0 + STILL_MAX_AGE).is_some());
        assert!(still.watch(t0 + STILL_MAX_AGE + Duration::from_millis(1)).is_none());
    }

    #[test]
    fn stills_are_found_by_lane() {
        let s = Stills::new(["entry", "exit"]);
        assert!(s.lane("entry").is_some());
        assert!(s.lane("nope").is_none());
        assert_eq!(s.names().collect::<Vec<_>>(), ["entry", "exit"]);
    }
}
