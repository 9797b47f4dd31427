//! Stage 2: plate reads. A [`PlateReader`] finds plates in a frame and reads them, with per-character
//! confidences and top-N alternatives. The real reader runs ONNX models described by the [`manifest`]
//! through ONNX Runtime; it is called from blocking threads, never from the async runtime.

pub mod ctc;
pub mod detect;
mod fake;
pub mod manifest;
mod onnx;
pub mod plate_detect;
pub mod runtime;
pub mod select;
mod self_check;
pub mod two_line;
mod unavailable;

use opencv::core::{Mat, Rect};

pub use crate::plate::{prior, CharRead};
pub use fake::FakeReader;
pub use manifest::Manifest;
pub use onnx::{
    OnnxPlateReader, ReaderOptions, DEFAULT_MAX_PLATES, DEFAULT_MAX_PLATE_LEN, DEFAULT_MIN_PLATE_LEN,
    DEFAULT_SPARE_PLATES, DEFAULT_TWO_LINE_MAX_ASPECT,
};
pub use self_check::{check_plate, checked_reader, self_check, CheckedReader, CHECK_PLATE};
pub use unavailable::UnavailableReader;

/// A plate found and read in one frame.
#[derive(Debug, Clone)]
pub struct PlateCandidate {
    /// Normalised text (A-Z0-9).
    pub text: String,
    pub chars: Vec<CharRead>,
    /// Weakest character's confidence.
    pub confidence: f32,
    /// Plate box in frame pixels.
    pub bbox: Rect,
    /// How plate-like the candidate is (ranking only).
    pub score: f32,
    /// Ranked alternative texts (first = `text`).
    pub alternatives: Vec<(String, f32)>,
}

/// Per-stage timings of one frame, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimings {
    pub detect_ms: f64,
    pub recognize_ms: f64,
}

/// Everything read in one frame, best candidate first.
#[derive(Debug, Clone, Default)]
pub struct FrameReads {
    pub candidates: Vec<PlateCandidate>,
    pub timings: StageTimings,
}

#[derive(Debug, thiserror::Error)]
pub enum RecognizeError {
    #[error("model manifest: {0}")]
    Manifest(String),
    #[error("ONNX Runtime library: {0}")]
    Runtime(String),
    #[error("inference: {0}")]
    Inference(String),
    #[error("image: {0}")]
    Image(#[from] opencv::Error),
    #[error("start-up check: {0}")]
    SelfCheck(String),
}

/// Intersection over union of two boxes (0 when they do not overlap).
pub fn iou(a: Rect, b: Rect) -> f32 {
    let i = a & b;
    let inter = (i.width.max(0) * i.height.max(0)) as f32;
    let union = (a.width * a.height + b.width * b.height) as f32 - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Finds and reads plates: the seam between the pipeline and the models.
pub trait PlateReader: Send {
    /// Reads the plates in `image`, looking only inside `roi` when given.
    fn read(&mut self, image: &Mat, roi: Option<Rect>) -> Result<FrameReads, RecognizeError>;

    /// Reads an image that is already one plate (a tight crop). By default, like a frame.
    fn read_crop(&mut self, image: &Mat) -> Result<FrameReads, RecognizeError> {
        self.read(image, None)
    }
}

impl<T: PlateReader + ?Sized> PlateReader for Box<T> {
    fn read(&mut self, image: &Mat, roi: Option<Rect>) -> Result<FrameReads, RecognizeError> {
        (**self).read(image, roi)
    }

    fn read_crop(&mut self, image: &Mat) -> Result<FrameReads, RecognizeError> {
        (**self).read_crop(image)
    }
}
