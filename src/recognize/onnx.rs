//! The real [`PlateReader`]: a text detector and a CTC recogniser run by ONNX Runtime.
//! Buffers are reused across frames; crops are recognised in one batch.

use std::path::Path;
use std::time::Instant;

use ndarray::ArrayView;
use opencv::core::{Mat, Rect, Size};
use opencv::imgproc;
use opencv::prelude::*;
use ort::session::Session;
use ort::value::TensorRef;

use super::ctc::{self, ClassKind};
use super::detect::{self, MapBox};
use super::manifest::{Manifest, ModelKind, ModelSpec, Role};
use super::select::plate_score;
use super::{FrameReads, PlateCandidate, PlateReader, RecognizeError, StageTimings};

/// Reader settings taken from `[recognize]`.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    pub threads: usize,
    pub min_plate_len: usize,
    pub max_plate_len: usize,
    pub detector_max_side: u32,
    /// Most text boxes recognised per frame (largest first).
    pub max_boxes: usize,
    /// Alternatives kept per candidate (top-N).
    pub top_n: usize,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            min_plate_len: 4,
            max_plate_len: 8,
            detector_max_side: 960,
            max_boxes: 8,
            top_n: 5,
        }
    }
}

pub struct OnnxPlateReader {
    det: Session,
    rec: Session,
    det_spec: ModelSpec,
    rec_spec: ModelSpec,
    kinds: Vec<ClassKind>,
    plate_classes: Vec<usize>,
    opts: ReaderOptions,
    det_buf: Vec<f32>,
    rec_buf: Vec<f32>,
    crop_buf: Vec<f32>,
}

fn ort_err<E: std::fmt::Display>(e: E) -> RecognizeError {
    RecognizeError::Inference(e.to_string())
}

impl OnnxPlateReader {
    /// Loads both models from the manifest (checksums verified) on the given ONNX Runtime library.
    pub fn new(manifest: &Manifest, library: Option<&Path>, opts: ReaderOptions) -> Result<Self, RecognizeError> {
        let env = super::runtime::environment(library)?;
        let det_spec = manifest.model(Role::Detector)?.clone();
        let rec_spec = manifest.model(Role::Recognizer)?.clone();
        if det_spec.kind != ModelKind::DbText || rec_spec.kind != ModelKind::Ctc {
            return Err(RecognizeError::Manifest(
                "detector must be kind db-text and recognizer kind ctc".into(),
            ));
        }
        let session = |spec: &ModelSpec| -> Result<Session, RecognizeError> {
            let bytes = manifest.read_verified(spec)?;
            Session::builder(&env)
                .map_err(ort_err)?
                .with_intra_threads(opts.threads.max(1))
                .map_err(ort_err)?
                .with_inter_threads(1)
                .map_err(ort_err)?
                .commit_from_memory(&bytes)
                .map_err(ort_err)
        };
        let det = session(&det_spec)?;
        let rec = session(&rec_spec)?;
        let labels = charset(&rec, &rec_spec)?;
        let kinds = ctc::class_kinds(&labels);
        let plate_classes = (0..kinds.len())
            .filter(|&i| matches!(kinds[i], ClassKind::Plate(_)))
            .collect();
        Ok(Self {
            det,
            rec,
            det_spec,
            rec_spec,
            kinds,
            plate_classes,
            opts,
            det_buf: Vec::new(),
            rec_buf: Vec::new(),
            crop_buf: Vec::new(),
        })
    }

    fn detect(&mut self, image: &Mat) -> Result<Vec<Rect>, RecognizeError> {
        let lb = detect::input_size(
            image.cols(),
            image.rows(),
            self.opts.detector_max_side,
            self.det_spec.input.multiple_of.max(32),
        );
        detect::to_chw(
            image,
            Size::new(lb.width, lb.height),
            self.det_spec.input.color,
            &self.det_spec.normalize,
            &mut self.det_buf,
        )?;
        let shape = [1usize, 3, lb.height as usize, lb.width as usize];
        let input = TensorRef::from_array_view(ArrayView::from_shape(shape, &self.det_buf[..]).map_err(ort_err)?)
            .map_err(ort_err)?;
        let outputs = self.det.run(ort::inputs![input]).map_err(ort_err)?;
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
            self.det_spec.threshold.unwrap_or(0.3),
            self.det_spec.box_threshold.unwrap_or(0.5),
            self.det_spec.unclip_ratio.unwrap_or(1.6),
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
        if rects.is_empty() {
            return Ok(Vec::new());
        }
        let h = self.rec_spec.input.height.max(8) as i32;
        let max_w = self.rec_spec.input.max_width.max(h as u32) as i32;
        let widths: Vec<i32> = rects
            .iter()
            .map(|r| ((h as f32 * r.width as f32 / r.height as f32).ceil() as i32).clamp(h / 2, max_w))
            .collect();
        let batch_w = widths.iter().copied().max().unwrap_or(max_w);
        let per = (3 * h * batch_w) as usize;
        self.rec_buf.clear();
        self.rec_buf.resize(per * rects.len(), 0.0);
        for (i, (r, &w)) in rects.iter().zip(&widths).enumerate() {
            let crop = Mat::roi(image, *r)?.try_clone()?;
            detect::to_chw(
                &crop,
                Size::new(w, h),
                self.rec_spec.input.color,
                &self.rec_spec.normalize,
                &mut self.crop_buf,
            )?;
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
                ctc::decode(
                    &probs[i * t * c..(i + 1) * t * c],
                    t,
                    c,
                    &self.kinds,
                    &self.plate_classes,
                    0.25,
                )
            })
            .collect())
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

impl PlateReader for OnnxPlateReader {
    fn read(&mut self, image: &Mat, roi: Option<Rect>) -> Result<FrameReads, RecognizeError> {
        let (view, offset) = match roi {
            Some(r) => (Mat::roi(image, r)?.try_clone()?, (r.x, r.y)),
            None => (image.try_clone()?, (0, 0)),
        };
        let view = if view.channels() == 1 {
            let mut bgr = Mat::default();
            imgproc::cvt_color_def(&view, &mut bgr, imgproc::COLOR_GRAY2BGR)?;
            bgr
        } else {
            view
        };
        let t0 = Instant::now();
        let rects = self.detect(&view)?;
        let t1 = Instant::now();
        let decoded = self.recognize(&view, &rects)?;
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
                let text: String = d.chars.iter().map(|c| c.ch).collect();
                let confidence = d.chars.iter().map(|c| c.conf).fold(1.0f32, f32::min);
                let mut bbox = plate_box(*r, view.cols(), view.rows());
                bbox.x += offset.0;
                bbox.y += offset.1;
                Some(PlateCandidate {
                    alternatives: ctc::alternatives(&d.chars, self.opts.top_n),
                    text,
                    chars: d.chars,
                    confidence,
                    bbox,
                    score,
                })
            })
            .collect();
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(FrameReads {
            candidates,
            timings: StageTimings {
                detect_ms: (t1 - t0).as_secs_f64() * 1e3,
                recognize_ms: (t2 - t1).as_secs_f64() * 1e3,
            },
        })
    }
}
