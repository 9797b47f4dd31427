//! The real [`PlateReader`], run by ONNX Runtime. Three arrangements ([`Pipeline`]), chosen by the manifest:
//! - plate detector + whole-plate recogniser (`plate-ctc`): each plate box, with a margin, is read in one
//!   pass; the plates of a frame go through the recogniser as one batch;
//! - plate detector + text detector + line recogniser (`ctc`): text lines inside each plate, then read;
//! - text detector + line recogniser: text lines anywhere in the frame, ranked by how plate-like they read.
//!
//! The candidates of a frame are ordered by [`super::select`]'s ranking (a pure, tested function).
//!
//! Buffers are reused across frames.

use std::path::Path;
use std::time::Instant;

use ndarray::ArrayView;
use opencv::core::{Mat, Rect, Size};
use opencv::imgproc;
use opencv::prelude::*;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};

use super::ctc::{self, ClassKind};
use super::detect::{self, InputQuant, Layout, MapBox};
use super::manifest::{Manifest, ModelKind, ModelSpec, Role};
use super::plate_detect;
use super::select::{self, plate_score};
use super::two_line;
use super::{FrameReads, PlateCandidate, PlateReader, RecognizeError, StageTimings};

pub use crate::config::{
    DEFAULT_MAX_PLATES, DEFAULT_MAX_PLATE_LEN, DEFAULT_MIN_PLATE_LEN, DEFAULT_TWO_LINE_MAX_ASPECT,
};

/// Spare detector boxes per frame ([`ReaderOptions::spare_plates`]).
pub const DEFAULT_SPARE_PLATES: usize = 1;

/// Reader settings taken from `[recognize]`.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    pub threads: usize,
    pub min_plate_len: usize,
    pub max_plate_len: usize,
    pub detector_max_side: u32,
    /// Most text boxes recognised per frame (largest first).
    pub max_boxes: usize,
    /// Most plates read per frame (two-stage models).
    pub max_plates: usize,
    /// Further detector boxes held back for a frame where one of the `max_plates` reads no plate (a sign, a
    /// brake light): they are read in a second batch, until `max_plates` plates are read.
    pub spare_plates: usize,
    /// Alternatives kept per candidate (top-N).
    pub top_n: usize,
    /// Regional format prior applied to every read.
    pub prior: super::prior::FormatPrior,
    /// Plates whose box is at most this wide for its height are also read as two rows (0: never).
    pub two_line_max_aspect: f32,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            min_plate_len: DEFAULT_MIN_PLATE_LEN,
            max_plate_len: DEFAULT_MAX_PLATE_LEN,
            detector_max_side: 960,
            max_boxes: 8,
            max_plates: DEFAULT_MAX_PLATES,
            spare_plates: DEFAULT_SPARE_PLATES,
            top_n: 5,
            prior: Default::default(),
            two_line_max_aspect: DEFAULT_TWO_LINE_MAX_ASPECT,
        }
    }
}

/// The whole-plate detector (`center-box`); it may take 8-bit input.
struct PlateDetector {
    session: Session,
    spec: ModelSpec,
    quant: Option<InputQuant>,
}

/// The text-line detector (`db-text`).
struct TextDetector {
    session: Session,
    spec: ModelSpec,
}

/// Which models find what the recogniser reads. (One per reader, so the variants' sizes do not matter.)
#[allow(clippy::large_enum_variant)]
enum Pipeline {
    /// Plates, each read whole by a `plate-ctc` recogniser.
    Plates(PlateDetector),
    /// Plates, then the text lines inside each, read by a `ctc` line recogniser.
    PlateLines(PlateDetector, TextDetector),
    /// Text lines anywhere in the frame, read by a `ctc` line recogniser.
    Lines(TextDetector),
}

impl Pipeline {
    fn plate_detector(&mut self) -> Option<&mut PlateDetector> {
        match self {
            Pipeline::Plates(p) | Pipeline::PlateLines(p, _) => Some(p),
            Pipeline::Lines(_) => None,
        }
    }

    fn text_detector(&mut self) -> Option<&mut TextDetector> {
        match self {
            Pipeline::PlateLines(_, t) | Pipeline::Lines(t) => Some(t),
            Pipeline::Plates(_) => None,
        }
    }
}

/// One plate cut out of a frame for reading.
struct PlateCrop {
    /// The plate with a margin around it (the detector's box can clip the first or last character).
    image: Mat,
    /// The plate's box in frame pixels.
    bbox: Rect,
    /// The plate detector's score (1 for a crop given whole).
    detector_score: f32,
    /// The plate's box inside `image`.
    inner: Rect,
}

pub struct OnnxPlateReader {
    pipeline: Pipeline,
    /// Looks on a frame where the plate detector's boxes read no clear plate (`tilted-plate-detector`).
    tilted: Option<PlateDetector>,
    rec: Session,
    rec_spec: ModelSpec,
    kinds: Vec<ClassKind>,
    plate_classes: Vec<usize>,
    opts: ReaderOptions,
    det_buf: Vec<f32>,
    det_buf_u8: Vec<u8>,
    rec_buf: Vec<f32>,
    crop_buf: Vec<f32>,
}

fn ort_err<E: std::fmt::Display>(e: E) -> RecognizeError {
    RecognizeError::Inference(e.to_string())
}

impl OnnxPlateReader {
    /// Loads the manifest's models (checksums verified) on the given ONNX Runtime library.
    pub fn new(manifest: &Manifest, library: Option<&Path>, opts: ReaderOptions) -> Result<Self, RecognizeError> {
        let env = super::runtime::environment(library)?;
        let rec_spec = manifest.model(Role::Recognizer)?.clone();
        let det_spec = match rec_spec.kind {
            ModelKind::Ctc => {
                let spec = manifest.model(Role::Detector)?.clone();
                if spec.kind != ModelKind::DbText {
                    return Err(RecognizeError::Manifest("detector must be kind db-text".into()));
                }
                Some(spec)
            }
            ModelKind::PlateCtc => {
                if manifest.optional(Role::PlateDetector).is_none() {
                    return Err(RecognizeError::Manifest(
                        "a plate-ctc recognizer reads whole plates: the manifest needs a plate-detector".into(),
                    ));
                }
                if rec_spec.input.height == 0 || rec_spec.input.width == 0 {
                    return Err(RecognizeError::Manifest(
                        "a plate-ctc recognizer needs input.height and input.width".into(),
                    ));
                }
                None
            }
            _ => {
                return Err(RecognizeError::Manifest(
                    "recognizer must be kind ctc or plate-ctc".into(),
                ))
            }
        };
        let session = |spec: &ModelSpec| -> Result<Session, RecognizeError> {
            let bytes = manifest.read_verified(spec)?;
            let mut builder = Session::builder(&env)
                .map_err(ort_err)?
                .with_intra_threads(opts.threads.max(1))
                .map_err(ort_err)?
                .with_inter_threads(1)
                .map_err(ort_err)?;
            if spec.keep_nchw {
                builder = builder.with_disabled_optimizers("NhwcTransformer").map_err(ort_err)?;
            }
            builder
                .commit_from_memory(&bytes)
                .map_err(ort_err)
                .and_then(|s| input_channels_match(s, spec))
        };
        let center_box = |role: Role| -> Result<Option<PlateDetector>, RecognizeError> {
            match manifest.optional(role) {
                Some(spec) if spec.kind == ModelKind::CenterBox => {
                    let s = session(spec)?;
                    let quant = input_quant(&s, spec, true)?;
                    Ok(Some(PlateDetector {
                        session: s,
                        spec: spec.clone(),
                        quant,
                    }))
                }
                Some(_) => Err(RecognizeError::Manifest(format!(
                    "{} must be kind center-box",
                    role.name()
                ))),
                None => Ok(None),
            }
        };
        let plate = center_box(Role::PlateDetector)?;
        let tilted = center_box(Role::TiltedPlateDetector)?;
        let text = match det_spec {
            Some(spec) => {
                let s = session(&spec)?;
                input_quant(&s, &spec, false)?;
                Some(TextDetector { session: s, spec })
            }
            None => None,
        };
        let pipeline = match (plate, text) {
            (Some(p), None) => Pipeline::Plates(p),
            (Some(p), Some(t)) => Pipeline::PlateLines(p, t),
            (None, Some(t)) => Pipeline::Lines(t),
            (None, None) => {
                return Err(RecognizeError::Manifest(
                    "the manifest needs a plate-detector, a db-text detector, or both".into(),
                ))
            }
        };
        let rec = session(&rec_spec)?;
        input_quant(&rec, &rec_spec, false)?;
        let labels = charset(&rec, &rec_spec)?;
        let kinds = ctc::class_kinds(&labels);
        let plate_classes = (0..kinds.len())
            .filter(|&i| matches!(kinds[i], ClassKind::Plate(_)))
            .collect();
        Ok(Self {
            pipeline,
            tilted,
            rec,
            rec_spec,
            kinds,
            plate_classes,
            opts,
            det_buf: Vec::new(),
            det_buf_u8: Vec::new(),
            rec_buf: Vec::new(),
            crop_buf: Vec::new(),
        })
    }

    /// Text lines in `image`, seen at the detector input size `lb`, largest first.
    fn text_boxes(&mut self, image: &Mat, lb: detect::Letterbox) -> Result<Vec<Rect>, RecognizeError> {
        let Some(TextDetector {
            session: det,
            spec: det_spec,
        }) = self.pipeline.text_detector()
        else {
            return Ok(Vec::new());
        };
        let layout = Layout::of(det_spec, Size::new(lb.width, lb.height));
        detect::to_chw(image, layout, &mut self.det_buf)?;
        let shape = [1usize, 3, lb.height as usize, lb.width as usize];
        let input = TensorRef::from_array_view(ArrayView::from_shape(shape, &self.det_buf[..]).map_err(ort_err)?)
            .map_err(ort_err)?;
        let outputs = det.run(ort::inputs![input]).map_err(ort_err)?;
        let (out_shape, prob) = outputs[0].try_extract_tensor::<f32>().map_err(ort_err)?;
        let dims: Vec<i64> = out_shape.iter().copied().collect();
        let (h, w) = match dims.as_slice() {
            [.., h, w] => (*h as i32, *w as i32),
            _ => {
                return Err(RecognizeError::Inference(format!(
                    "unexpected detector output shape {dims:?}"
                )))
            }
        };
        let boxes: Vec<MapBox> = detect::boxes_from_map(
            prob,
            w,
            h,
            det_spec.threshold.unwrap_or(0.3),
            det_spec.box_threshold.unwrap_or(0.5),
            det_spec.unclip_ratio.unwrap_or(1.6),
        )?;
        let sx = image.cols() as f32 / w as f32;
        let sy = image.rows() as f32 / h as f32;
        let mut rects: Vec<Rect> = boxes
            .into_iter()
            .map(|b| {
                let r = b.rect;
                let x = (r.x as f32 * sx).floor() as i32;
                let y = (r.y as f32 * sy).floor() as i32;
                let x1 = (((r.x + r.width) as f32) * sx).ceil().min(image.cols() as f32) as i32;
                let y1 = (((r.y + r.height) as f32) * sy).ceil().min(image.rows() as f32) as i32;
                Rect::new(x, y, (x1 - x).max(1), (y1 - y).max(1))
            })
            .filter(|r| r.height >= 8 && r.width >= r.height)
            .collect();
        rects.sort_by_key(|r| std::cmp::Reverse(r.height * r.width));
        rects.truncate(self.opts.max_boxes);
        Ok(rects)
    }

    fn recognize(&mut self, image: &Mat, rects: &[Rect]) -> Result<Vec<ctc::Decoded>, RecognizeError> {
        let items: Vec<(&Mat, Rect)> = rects.iter().map(|r| (image, *r)).collect();
        self.recognize_items(&items)
    }

    /// Recognises text lines given as (image, rectangle) pairs, in one batch.
    fn recognize_items(&mut self, items: &[(&Mat, Rect)]) -> Result<Vec<ctc::Decoded>, RecognizeError> {
        let h = self.rec_spec.input.height.max(8) as i32;
        let max_w = self.rec_spec.input.max_width.max(h as u32) as i32;
        let width = |r: &Rect| ((h as f32 * r.width as f32 / r.height.max(1) as f32).ceil() as i32).clamp(h / 2, max_w);
        // Batches of similar widths, so short lines are not padded to the longest one.
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| width(&items[i].1));
        let mut out: Vec<Option<ctc::Decoded>> = vec![None; items.len()];
        let mut start = 0;
        while start < order.len() {
            let w0 = width(&items[order[start]].1);
            let mut end = start + 1;
            while end < order.len() && width(&items[order[end]].1) * 4 <= w0 * 5 {
                end += 1;
            }
            let group: Vec<(&Mat, Rect)> = order[start..end].iter().map(|&i| items[i]).collect();
            for (k, d) in order[start..end].iter().zip(self.recognize_batch(&group, h, max_w)?) {
                out[*k] = Some(d);
            }
            start = end;
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn recognize_batch(
        &mut self,
        items: &[(&Mat, Rect)],
        h: i32,
        max_w: i32,
    ) -> Result<Vec<ctc::Decoded>, RecognizeError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let rects: Vec<Rect> = items.iter().map(|(_, r)| *r).collect();
        // A whole-plate reader takes every plate at its fixed size; a line reader keeps the aspect ratio.
        let fixed = (self.rec_spec.kind == ModelKind::PlateCtc).then_some(max_w);
        let widths: Vec<i32> = rects
            .iter()
            .map(|r| {
                fixed.unwrap_or_else(|| {
                    ((h as f32 * r.width as f32 / r.height.max(1) as f32).ceil() as i32).clamp(h / 2, max_w)
                })
            })
            .collect();
        let batch_w = widths.iter().copied().max().unwrap_or(max_w);
        let per = (3 * h * batch_w) as usize;
        self.rec_buf.clear();
        self.rec_buf.resize(per * rects.len(), 0.0);
        for (i, ((image, r), &w)) in items.iter().zip(&widths).enumerate() {
            let mut crop = Mat::roi(*image, *r)?.try_clone()?;
            if fixed.is_some() {
                crop = detect::shrink_smoothly(crop, Size::new(w, h))?;
            }
            detect::to_chw(&crop, Layout::of(&self.rec_spec, Size::new(w, h)), &mut self.crop_buf)?;
            // copy the w-wide planes into the batch_w-wide slot (right side stays 0 = padding)
            let dst = &mut self.rec_buf[i * per..(i + 1) * per];
            for c in 0..3usize {
                for y in 0..h as usize {
                    let s = c * (h * w) as usize + y * w as usize;
                    let d = c * (h * batch_w) as usize + y * batch_w as usize;
                    dst[d..d + w as usize].copy_from_slice(&self.crop_buf[s..s + w as usize]);
                }
            }
        }
        let shape = [rects.len(), 3, h as usize, batch_w as usize];
        let input = TensorRef::from_array_view(ArrayView::from_shape(shape, &self.rec_buf[..]).map_err(ort_err)?)
            .map_err(ort_err)?;
        let outputs = self.rec.run(ort::inputs![input]).map_err(ort_err)?;
        let (out_shape, probs) = outputs[0].try_extract_tensor::<f32>().map_err(ort_err)?;
        let dims: Vec<i64> = out_shape.iter().copied().collect();
        let (b, t, c) = match dims.as_slice() {
            [b, t, c] => (*b as usize, *t as usize, *c as usize),
            _ => {
                return Err(RecognizeError::Inference(format!(
                    "unexpected recognizer output shape {dims:?}"
                )))
            }
        };
        if c != self.kinds.len() {
            return Err(RecognizeError::Manifest(format!(
                "recognizer has {c} classes but its charset has {}; fix the manifest's charset",
                self.kinds.len()
            )));
        }
        Ok((0..b)
            .map(|i| {
                let mut d = ctc::decode(
                    &probs[i * t * c..(i + 1) * t * c],
                    t,
                    c,
                    &self.kinds,
                    &self.plate_classes,
                    0.25,
                );
                self.opts.prior.apply(&mut d.chars);
                d
            })
            .collect())
    }
}

/// A candidate from a decoded read: its text, per-character reads, weakest confidence and top-N.
/// The model's declared input channels (when fixed) against what the manifest's layout feeds it.
fn input_channels_match(session: Session, spec: &ModelSpec) -> Result<Session, RecognizeError> {
    let b = i64::from(spec.input.block());
    let want = 3 * b * b;
    let got = session
        .inputs()
        .first()
        .and_then(|i| i.dtype().tensor_shape())
        .and_then(|shape| shape.get(1).copied());
    match got {
        Some(c) if c > 0 && c != want => {
            // 3 channels: plain pixels; 3*k*k: k x k blocks (models/train/space_to_depth.py writes k = 2).
            let k = (1..=4).find(|k| 3 * k * k == c);
            let fix = match k {
                Some(1) => "remove input.space_to_depth".to_string(),
                Some(k) => format!("set input.space_to_depth = {k}"),
                None => "check that the file is the model this entry describes".to_string(),
            };
            Err(RecognizeError::Manifest(format!(
                "model {}: takes {c} input channels but the manifest feeds it {want}; {fix}",
                spec.file
            )))
        }
        _ => Ok(session),
    }
}

/// Metadata keys of an 8-bit-input model (written by models/train/uint8_input.py).
const INPUT_SCALE_KEY: &str = "gatehouse.input_scale";
const INPUT_ZERO_POINT_KEY: &str = "gatehouse.input_zero_point";

/// A frame none of whose plate reads has all its characters at least this sure asks the tilted-plate
/// detector to look too: the tracker's bar for a clear read (`track::WEAK_READ`). Not tuned: at 0.8, with
/// every tilted box read, 9 more of the 993 validation plates read, but 4 more US whole passes were decided
/// wrong (docs/recognition.md).
const TILTED_LOOK_BELOW: f32 = 0.5;

/// A tilted-plate box overlapping one of the plate detector's boxes by more than this is the same plate,
/// not read again.
const SAME_PLATE_IOU: f32 = 0.5;

/// Each plate box with a margin (the detector's box can clip the first or last character), cut out of
/// `view`.
fn plate_crops(view: &Mat, plates: &[(Rect, f32)]) -> Result<Vec<PlateCrop>, RecognizeError> {
    let mut crops: Vec<PlateCrop> = Vec::with_capacity(plates.len());
    for (r, score) in plates {
        let mx = r.width / 10;
        let my = r.height / 4;
        let ex = Rect::new(r.x - mx, r.y - my, r.width + 2 * mx, r.height + 2 * my)
            & Rect::new(0, 0, view.cols(), view.rows());
        crops.push(PlateCrop {
            image: Mat::roi(view, ex)?.try_clone()?,
            bbox: *r,
            detector_score: *score,
            inner: Rect::new(r.x - ex.x, r.y - ex.y, r.width, r.height),
        });
    }
    Ok(crops)
}

/// A `center-box` detector's main pass: the frame's longest side (`max_side`, 640 when unset) and the
/// scores its best box and the further ones need.
fn main_pass(spec: &ModelSpec) -> (u32, plate_detect::Thresholds) {
    let side = if spec.input.max_side > 0 {
        spec.input.max_side
    } else {
        640
    };
    let first = spec.threshold.unwrap_or(0.3);
    let next = spec.next_threshold.unwrap_or(first);
    (side, plate_detect::Thresholds { first, next })
}

/// Detector boxes as rectangles clipped to `view`, with their scores.
fn in_view(boxes: &[plate_detect::PlateBox], view: &Mat) -> Vec<(Rect, f32)> {
    boxes
        .iter()
        .filter_map(|b| b.to_rect(1.0, 1.0, view.cols(), view.rows()).map(|r| (r, b.score)))
        .collect()
}

/// One pass of a `center-box` detector with the frame's longest side at `side`: boxes in view pixels,
/// best first, at most `cap`.
fn center_boxes(
    det: &mut PlateDetector,
    view: &Mat,
    side: u32,
    th: plate_detect::Thresholds,
    cap: usize,
    det_buf: &mut Vec<f32>,
    det_buf_u8: &mut Vec<u8>,
) -> Result<Vec<plate_detect::PlateBox>, RecognizeError> {
    let PlateDetector { session, spec, quant } = det;
    let lb = detect::input_size(view.cols(), view.rows(), side, spec.input.multiple_of.max(32));
    let layout = Layout::of(spec, Size::new(lb.width, lb.height));
    let b = layout.block as usize;
    let shape = [1usize, 3 * b * b, lb.height as usize / b, lb.width as usize / b];
    let outputs = match *quant {
        // An 8-bit model (models/train/uint8_input.py) gets its integers directly: a quarter of the bytes to
        // write, and no QuantizeLinear pass over them in the model.
        Some(q) => {
            detect::to_chw_u8(view, layout, q, det_buf_u8)?;
            let array = ArrayView::from_shape(shape, &det_buf_u8[..]).map_err(ort_err)?;
            session.run(ort::inputs![TensorRef::from_array_view(array).map_err(ort_err)?])
        }
        None => {
            detect::to_chw(view, layout, det_buf)?;
            let array = ArrayView::from_shape(shape, &det_buf[..]).map_err(ort_err)?;
            session.run(ort::inputs![TensorRef::from_array_view(array).map_err(ort_err)?])
        }
    }
    .map_err(ort_err)?;
    let (out_shape, maps) = outputs[0].try_extract_tensor::<f32>().map_err(ort_err)?;
    let dims: Vec<i64> = out_shape.iter().copied().collect();
    let (h, w) = match dims.as_slice() {
        [1, 5, h, w] => (*h as usize, *w as usize),
        _ => {
            return Err(RecognizeError::Inference(format!(
                "unexpected plate detector output shape {dims:?}"
            )))
        }
    };
    let stride = lb.height as f32 / h as f32;
    Ok(plate_detect::decode(maps, h, w, stride, th, cap)
        .into_iter()
        .map(|b| b.scaled(1.0 / lb.scale_x, 1.0 / lb.scale_y))
        .collect())
}

/// How a model takes its input: floats (`None`), or 8-bit integers with the scale and zero point its
/// metadata carries (plate detectors only, `allow_u8`).
fn input_quant(session: &Session, spec: &ModelSpec, allow_u8: bool) -> Result<Option<InputQuant>, RecognizeError> {
    let ty = session.inputs().first().and_then(|i| i.dtype().tensor_type());
    match ty {
        None | Some(TensorElementType::Float32) => Ok(None),
        Some(TensorElementType::Uint8) if allow_u8 => {
            let meta = session.metadata().map_err(ort_err)?;
            let scale = meta
                .custom(INPUT_SCALE_KEY)
                .and_then(|s| s.trim().parse::<f32>().ok())
                .filter(|s| s.is_finite() && *s > 0.0);
            let zero_point = meta
                .custom(INPUT_ZERO_POINT_KEY)
                .and_then(|s| s.trim().parse::<u8>().ok());
            match (scale, zero_point) {
                (Some(scale), Some(zero_point)) => Ok(Some(InputQuant { scale, zero_point })),
                _ => Err(RecognizeError::Manifest(format!(
                    "model {}: takes 8-bit input but its metadata has no usable {INPUT_SCALE_KEY} and \
                     {INPUT_ZERO_POINT_KEY}; write it with models/train/uint8_input.py, or use the float-input model",
                    spec.file
                ))),
            }
        }
        Some(other) => Err(RecognizeError::Manifest(format!(
            "model {}: input type {other:?} is not supported here; this role takes float32{}",
            spec.file,
            if allow_u8 { " or uint8" } else { "" }
        ))),
    }
}

fn candidate(d: ctc::Decoded, bbox: Rect, score: f32, top_n: usize) -> PlateCandidate {
    PlateCandidate {
        alternatives: ctc::alternatives(&d.chars, top_n),
        text: d.chars.iter().map(|c| c.ch).collect(),
        confidence: d.chars.iter().map(|c| c.conf).fold(1.0f32, f32::min),
        chars: d.chars,
        bbox,
        score,
    }
}

/// Class labels: index 0 = blank, then the charset, then a space (PP-OCR convention).
fn charset(rec: &Session, spec: &ModelSpec) -> Result<Vec<String>, RecognizeError> {
    let raw = spec.charset.as_deref().unwrap_or("metadata:character");
    let list = match raw.strip_prefix("metadata:") {
        Some(key) => rec
            .metadata()
            .map_err(ort_err)?
            .custom(key)
            .ok_or_else(|| RecognizeError::Manifest(format!("recognizer metadata has no {key:?} entry")))?,
        None => raw.chars().map(|c| format!("{c}\n")).collect(),
    };
    let mut labels = vec!["blank".to_string()];
    labels.extend(list.lines().map(str::to_string));
    labels.push(" ".into());
    Ok(labels)
}

/// Joins text boxes that sit on the same line (a plate's characters are often split at a gap or a badge).
fn merge_lines(mut boxes: Vec<Rect>) -> Vec<Rect> {
    boxes.sort_by_key(|r| r.x);
    let mut out: Vec<Rect> = Vec::with_capacity(boxes.len());
    for b in boxes {
        let joined = out.iter_mut().find(|o| {
            let overlap = (o.y + o.height).min(b.y + b.height) - o.y.max(b.y);
            overlap * 2 > o.height.min(b.height)
        });
        match joined {
            Some(o) => *o |= b,
            None => out.push(b),
        }
    }
    out
}

/// Grows a text box to an estimate of the plate around it (characters fill ~85% of a plate's width and
/// about half its height).
fn plate_box(text: Rect, cols: i32, rows: i32) -> Rect {
    let cx = text.x as f32 + text.width as f32 / 2.0;
    let cy = text.y as f32 + text.height as f32 / 2.0;
    let w = text.width as f32 * 1.12;
    let h = text.height as f32 * 1.7;
    let x0 = (cx - w / 2.0).max(0.0) as i32;
    let y0 = (cy - h / 2.0).max(0.0) as i32;
    let x1 = ((cx + w / 2.0) as i32).min(cols);
    let y1 = ((cy + h / 2.0) as i32).min(rows);
    Rect::new(x0, y0, (x1 - x0).max(1), (y1 - y0).max(1))
}

impl OnnxPlateReader {
    /// Plates in `view` (whole-plate detector), best first, in view pixels with their scores: the pass at
    /// the model's `max_side`, merged with the coarse pass (`coarse_max_side`) and the close pass
    /// (`close_max_side`) when the manifest asks for them.
    fn plate_boxes(&mut self, view: &Mat) -> Result<Vec<(Rect, f32)>, RecognizeError> {
        let Some(PlateDetector { spec, .. }) = self.pipeline.plate_detector() else {
            return Ok(Vec::new());
        };
        let (side, th) = main_pass(spec);
        let coarse_side = spec.input.coarse_max_side;
        let close_side = spec.input.close_max_side;
        let far_side = spec.input.far_max_side;
        let mut fine = self.detect_at(view, side, th)?;
        let long = view.cols().max(view.rows()) as u32;
        // Nothing at `max_side`: the car, if any, is still far off and its plate a few dozen pixels there.
        if far_side > side && fine.is_empty() {
            fine = self.detect_at(view, far_side, th)?;
        }
        let boxes = if coarse_side > 0 && coarse_side < long {
            let coarse = self.detect_at(view, coarse_side, th)?;
            let close = if close_side > 0 && close_side < coarse_side {
                self.detect_at(view, close_side, th)?
            } else {
                Vec::new()
            };
            plate_detect::merge_scales(fine, coarse, close, long as f32, th, self.box_cap())
        } else {
            fine
        };
        Ok(in_view(&boxes, view))
    }

    /// One plate detector pass with the frame's longest side at `side`: boxes in view pixels, best first.
    fn detect_at(
        &mut self,
        view: &Mat,
        side: u32,
        th: plate_detect::Thresholds,
    ) -> Result<Vec<plate_detect::PlateBox>, RecognizeError> {
        let cap = self.box_cap();
        let Some(det) = self.pipeline.plate_detector() else {
            return Ok(Vec::new());
        };
        center_boxes(det, view, side, th, cap, &mut self.det_buf, &mut self.det_buf_u8)
    }

    /// Detector boxes kept per frame: the plates to read and the spares behind them.
    fn box_cap(&self) -> usize {
        self.opts.max_plates + self.opts.spare_plates
    }

    /// Two-stage read: plates first, then text lines inside each plate, then the recogniser.
    fn read_plates(&mut self, view: &Mat) -> Result<(Vec<PlateCandidate>, StageTimings), RecognizeError> {
        let t0 = Instant::now();
        let plates = self.plate_boxes(view)?;
        let crops = plate_crops(view, &plates)?;
        let plate_ms = t0.elapsed().as_secs_f64() * 1e3;
        // A box that read no plate (a sign, a light, a logo) gives its place to a spare box behind it.
        let max = self.opts.max_plates;
        let mut timings = StageTimings::default();
        let mut candidates = self.read_crops(crops, max, &mut timings)?;
        timings.detect_ms += plate_ms;
        // No clear plate read: a plate turned or sloping more than the plate detector learnt (a camera
        // beside or above the lane) may lie where it found nothing, or under a box that cuts it wrongly.
        // The detector trained on tilted plates looks once more, and its boxes not on one of the plate
        // detector's are read too. Only then, because where the plate detector finds the plate its box reads better
        // (docs/recognition.md, "Camera pose").
        if self.tilted.is_some() && !candidates.iter().any(|c| c.confidence >= TILTED_LOOK_BELOW) {
            let t1 = Instant::now();
            let tilted: Vec<(Rect, f32)> = self
                .tilted_boxes(view)?
                .into_iter()
                .filter(|(r, _)| !plates.iter().any(|(p, _)| super::iou(*p, *r) > SAME_PLATE_IOU))
                .collect();
            let crops = plate_crops(view, &tilted)?;
            timings.detect_ms += t1.elapsed().as_secs_f64() * 1e3;
            if !crops.is_empty() {
                candidates.extend(self.read_crops(crops, max, &mut timings)?);
            }
        }
        select::best_first(&mut candidates);
        Ok((candidates, timings))
    }

    /// Reads plate crops, best first, `max` of them and spares for those that read no plate.
    fn read_crops(
        &mut self,
        mut crops: Vec<PlateCrop>,
        max: usize,
        timings: &mut StageTimings,
    ) -> Result<Vec<PlateCandidate>, RecognizeError> {
        if !matches!(self.pipeline, Pipeline::Plates(_)) {
            crops.truncate(max);
        }
        select::read_with_spares(crops, max, |batch| {
            let (plates, t) = self.read_plate_images(batch)?;
            timings.detect_ms += t.detect_ms;
            timings.recognize_ms += t.recognize_ms;
            Ok::<_, RecognizeError>(plates)
        })
    }

    /// The tilted-plate detector's boxes in `view` (none without one), best first, with their scores.
    fn tilted_boxes(&mut self, view: &Mat) -> Result<Vec<(Rect, f32)>, RecognizeError> {
        let cap = self.box_cap();
        let Some(det) = self.tilted.as_mut() else {
            return Ok(Vec::new());
        };
        let (side, th) = main_pass(&det.spec);
        let boxes = center_boxes(det, view, side, th, cap, &mut self.det_buf, &mut self.det_buf_u8)?;
        Ok(in_view(&boxes, view))
    }

    /// Reads plate images: whole, or their text lines.
    fn read_plate_images(
        &mut self,
        crops: Vec<PlateCrop>,
    ) -> Result<(Vec<PlateCandidate>, StageTimings), RecognizeError> {
        match self.pipeline {
            Pipeline::Plates(_) => self.read_whole(crops),
            Pipeline::PlateLines(..) | Pipeline::Lines(_) => self.read_lines(crops),
        }
    }

    /// Whole-plate recogniser: every plate image read in one batch at the model's fixed size.
    fn read_whole(&mut self, crops: Vec<PlateCrop>) -> Result<(Vec<PlateCandidate>, StageTimings), RecognizeError> {
        let t0 = Instant::now();
        let h = self.rec_spec.input.height as i32;
        let w = self.rec_spec.input.width as i32;
        // Every plate whole, in one batch.
        let items: Vec<(&Mat, Rect)> = crops
            .iter()
            .map(|c| (&c.image, Rect::new(0, 0, c.image.cols(), c.image.rows())))
            .collect();
        let decoded = self.recognize_batch(&items, h, w)?;
        // Then, in a second batch, the top and bottom rows of the nearly square plates whose whole read could
        // be one row of a two-row plate (a confident read of a full plate's length is not read again).
        let mut row_items: Vec<(&Mat, Rect)> = Vec::new();
        // Where each plate's top row sits in `rows`.
        let mut rows_at: Vec<Option<usize>> = Vec::with_capacity(crops.len());
        for (c, whole) in crops.iter().zip(&decoded) {
            let m = &c.image;
            let cut = two_line::halves(c.inner, m.cols(), m.rows(), self.opts.two_line_max_aspect)
                .filter(|_| two_line::maybe_one_row(whole) || two_line::square(c.inner));
            rows_at.push(cut.map(|(top, bottom)| {
                row_items.extend([(m, top), (m, bottom)]);
                row_items.len() - 2
            }));
        }
        let rows = if row_items.is_empty() {
            Vec::new()
        } else {
            self.recognize_batch(&row_items, h, w)?
        };
        let (min_len, max_len, top_n) = (self.opts.min_plate_len, self.opts.max_plate_len, self.opts.top_n);
        let mut candidates: Vec<PlateCandidate> = crops
            .iter()
            .zip(decoded)
            .zip(rows_at)
            .filter_map(|((crop, whole), at)| {
                let mut d = whole;
                let mut score = plate_score(&d, min_len, max_len, 1.0);
                if let Some((top, bottom)) = at.and_then(|i| rows.get(i).zip(rows.get(i + 1))) {
                    let joined = two_line::join(top, bottom);
                    let rows_score = plate_score(&joined, min_len, max_len, 1.0);
                    if two_line::prefer_rows(&d, score, top, bottom, rows_score) {
                        (d, score) = (joined, rows_score);
                    }
                }
                let least_sure = d.chars.iter().map(|c| c.conf).fold(1.0f32, f32::min);
                let rank = select::rank_plate(score, least_sure, crop.detector_score);
                (score > 0.0).then(|| candidate(d, crop.bbox, rank, top_n))
            })
            .collect();
        select::best_first(&mut candidates);
        let timings = StageTimings {
            detect_ms: 0.0,
            recognize_ms: t0.elapsed().as_secs_f64() * 1e3,
        };
        Ok((candidates, timings))
    }

    /// Line recogniser: text lines inside each plate image, scaled so the plate is about 96 px high, then
    /// the recogniser over the best lines of all crops in one batch.
    fn read_lines(&mut self, crops: Vec<PlateCrop>) -> Result<(Vec<PlateCandidate>, StageTimings), RecognizeError> {
        let t0 = Instant::now();
        // (crop index, rectangle in the crop, is the plate's middle band)
        let mut items: Vec<(usize, Rect, bool)> = Vec::new();
        for (i, PlateCrop { image: crop, inner, .. }) in crops.iter().enumerate() {
            let s = (96.0 / crop.rows().max(1) as f32).clamp(0.5, 4.0);
            let m = 32.0;
            let round = |v: f32| (((v / m).round() * m) as i32).clamp(32, 512);
            let lb = detect::Letterbox {
                width: round(crop.cols() as f32 * s),
                height: round(crop.rows() as f32 * s),
                scale_x: 0.0,
                scale_y: 0.0,
            };
            let mut lines = merge_lines(self.text_boxes(crop, lb)?);
            // The registration is the tallest text on a plate; state names and slogans are smaller.
            let tallest = lines.iter().map(|r| r.height).max().unwrap_or(0);
            lines.retain(|r| r.height * 10 >= tallest * 6);
            lines.sort_by_key(|r| std::cmp::Reverse(r.height));
            lines.truncate(1);
            items.extend(lines.into_iter().map(|l| (i, l, false)));
            // The plate's middle band, read whole: the registration sits there on most plates, and it
            // survives a text detector that splits or misses small characters.
            let band = Rect::new(
                inner.x - inner.width / 20,
                inner.y + inner.height * 18 / 100,
                inner.width + inner.width / 10,
                inner.height * 68 / 100,
            ) & Rect::new(0, 0, crop.cols(), crop.rows());
            if band.width >= 8 && band.height >= 4 {
                items.push((i, band, true));
            }
        }
        let t1 = Instant::now();
        let pairs: Vec<(&Mat, Rect)> = items.iter().map(|(i, r, _)| (&crops[*i].image, *r)).collect();
        let decoded = self.recognize_items(&pairs)?;
        let t2 = Instant::now();
        let mut best: Vec<Option<PlateCandidate>> = vec![None; crops.len()];
        for (i, (crop_idx, line, is_band)) in items.iter().enumerate() {
            let tallest = items
                .iter()
                .filter(|(c, _, band)| c == crop_idx && !band)
                .map(|(_, r, _)| r.height)
                .max()
                .unwrap_or(line.height)
                .max(1) as f32;
            let height_ratio = if *is_band { 1.0 } else { line.height as f32 / tallest };
            let d = &decoded[i];
            let line_score = plate_score(d, self.opts.min_plate_len, self.opts.max_plate_len, height_ratio);
            if line_score <= 0.0 {
                continue;
            }
            let crop = &crops[*crop_idx];
            let score = select::rank_line(line_score, crop.detector_score);
            if best[*crop_idx].as_ref().is_some_and(|b| b.score >= score) {
                continue;
            }
            best[*crop_idx] = Some(candidate(d.clone(), crop.bbox, score, self.opts.top_n));
        }
        let mut candidates: Vec<PlateCandidate> = best.into_iter().flatten().collect();
        select::best_first(&mut candidates);
        let timings = StageTimings {
            detect_ms: (t1 - t0).as_secs_f64() * 1e3,
            recognize_ms: (t2 - t1).as_secs_f64() * 1e3,
        };
        Ok((candidates, timings))
    }

    /// One-stage read: text lines anywhere in the frame, ranked by how plate-like they read.
    fn read_text(&mut self, view: &Mat) -> Result<(Vec<PlateCandidate>, StageTimings), RecognizeError> {
        let t0 = Instant::now();
        let lb = detect::input_size(
            view.cols(),
            view.rows(),
            self.opts.detector_max_side,
            self.pipeline
                .text_detector()
                .map_or(32, |t| t.spec.input.multiple_of.max(32)),
        );
        let rects = self.text_boxes(view, lb)?;
        let t1 = Instant::now();
        let decoded = self.recognize(view, &rects)?;
        let t2 = Instant::now();
        let tallest = rects.iter().map(|r| r.height).max().unwrap_or(1) as f32;
        let mut candidates: Vec<PlateCandidate> = rects
            .iter()
            .zip(decoded)
            .filter_map(|(r, d)| {
                let score = plate_score(
                    &d,
                    self.opts.min_plate_len,
                    self.opts.max_plate_len,
                    r.height as f32 / tallest,
                );
                if score <= 0.0 {
                    return None;
                }
                Some(candidate(
                    d,
                    plate_box(*r, view.cols(), view.rows()),
                    score,
                    self.opts.top_n,
                ))
            })
            .collect();
        select::best_first(&mut candidates);
        let timings = StageTimings {
            detect_ms: (t1 - t0).as_secs_f64() * 1e3,
            recognize_ms: (t2 - t1).as_secs_f64() * 1e3,
        };
        Ok((candidates, timings))
    }
}

impl PlateReader for OnnxPlateReader {
    fn read(&mut self, image: &Mat, roi: Option<Rect>) -> Result<FrameReads, RecognizeError> {
        // The whole frame is read in place (no copy); a region of interest is copied out once.
        let region;
        let (view, offset) = match roi {
            Some(r) => {
                region = Mat::roi(image, r)?.try_clone()?;
                (&region, (r.x, r.y))
            }
            None => (image, (0, 0)),
        };
        let bgr;
        let view = if view.channels() == 1 {
            let mut m = Mat::default();
            imgproc::cvt_color_def(view, &mut m, imgproc::COLOR_GRAY2BGR)?;
            bgr = m;
            &bgr
        } else {
            view
        };
        let (mut candidates, timings) = match self.pipeline {
            Pipeline::Plates(_) | Pipeline::PlateLines(..) => self.read_plates(view)?,
            Pipeline::Lines(_) => self.read_text(view)?,
        };
        for c in &mut candidates {
            c.bbox.x += offset.0;
            c.bbox.y += offset.1;
        }
        Ok(FrameReads { candidates, timings })
    }

    fn read_crop(&mut self, image: &Mat) -> Result<FrameReads, RecognizeError> {
        if let Pipeline::Lines(_) = self.pipeline {
            return self.read(image, None);
        }
        let full = Rect::new(0, 0, image.cols(), image.rows());
        let crop = PlateCrop {
            image: image.try_clone()?,
            bbox: full,
            detector_score: 1.0,
            inner: full,
        };
        let (candidates, timings) = self.read_plate_images(vec![crop])?;
        Ok(FrameReads { candidates, timings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_on_one_line_merge_and_lines_stay_apart() {
        let merged = merge_lines(vec![
            Rect::new(50, 10, 40, 20),
            Rect::new(0, 12, 40, 18),
            Rect::new(5, 40, 80, 10),
        ]);
        assert_eq!(merged, vec![Rect::new(0, 10, 90, 20), Rect::new(5, 40, 80, 10)]);
    }
}
