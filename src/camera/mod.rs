//! Stage 1: frames. A [`FrameSource`] (OpenCV for files, RTSP and V4L2; a fake for tests) is read by the
//! capture loop on its own thread, which reconnects with back-off and hands frames to recognition through
//! a [`LatestSlot`]: the newest frame wins, older unread frames are dropped and counted.

mod capture;
mod fake;
mod latest;
pub mod motion;
mod opencv_source;
pub mod setup;
pub mod still;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use opencv::core::{Mat, Rect};

pub use crate::config::redact_url;
pub use capture::{run_capture, CaptureOptions, CaptureStats, LaneRoi};
pub use fake::{FakeSource, FakeStep};
pub use latest::LatestSlot;
pub use motion::MotionGate;
pub use opencv_source::OpenCvSource;
pub use setup::{LaneSetup, Setups};
pub use still::{LaneStill, Stills};

/// One captured frame on its way to recognition.
pub struct Frame {
    pub lane: Arc<str>,
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub image: Mat,
    /// Region of interest in pixels, when the lane has one.
    pub roi: Option<Rect>,
}

#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("camera {source_name}: cannot open: {reason}")]
    Open { source_name: String, reason: String },
    #[error("camera {source_name}: read failed: {reason}")]
    Read { source_name: String, reason: String },
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// What a source returned for one read.
pub enum Grab {
    Frame(Mat),
    /// A file reached its end.
    End,
}

/// A camera or video: the seam between the daemon and capture hardware.
pub trait FrameSource: Send {
    /// Opens (or re-opens) the source.
    fn open(&mut self) -> Result<(), CameraError>;
    /// Reads the next frame; `Err` means the stream dropped and must be re-opened.
    fn read(&mut self) -> Result<Grab, CameraError>;
    /// Frames per second the source declares, if any.
    fn fps(&self) -> Option<f64>;
    /// True for files (they end; streams reconnect).
    fn is_file(&self) -> bool;
    fn describe(&self) -> String;
}
