//! Accuracy and speed on a labelled image set (the format of `openalpr-bench`):
//! `labels.tsv` (end-to-end frames: `IMAGE X Y W H PLATE`) or `labels.csv` (crops: `IMAGE,STATE,PLATE`).
//! Scoring follows the dataset README: exact top-1 after normalisation, top-N, detection recall at
//! IoU >= 0.4, and milliseconds per frame from decoded image to plate text.

pub mod passes;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use opencv::core::Rect;
use opencv::imgcodecs;
use opencv::prelude::*;
use serde::Serialize;

use crate::plate;
use crate::recognize::{iou, PlateReader, RecognizeError};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}: no labels.tsv or labels.csv here (see the dataset README for the format)")]
    NoLabels(String),
    #[error("{path} line {line}: {reason}")]
    BadLabel { path: String, line: usize, reason: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Recognize(#[from] RecognizeError),
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub image: PathBuf,
    pub plate: String,
    pub bbox: Option<Rect>,
}

/// Which part of a set to evaluate: the project's own train/validation split of the benchmark
/// (`models/train/split.py`: validation when the first 8 hex digits of sha1("<set>/<image>") are divisible
/// by 5). Figures for models trained on the benchmark are reported on `Val` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    All,
    Train,
    Val,
}

pub fn is_val(set: &str, image: &str) -> bool {
    use sha1::{Digest, Sha1};
    let h = Sha1::digest(format!("{set}/{image}").as_bytes());
    let first = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    first % 5 == 0
}

/// Keeps the samples of one split; the set name is the folder's name (`us`, `eu`, `br`).
pub fn select(dir: &Path, samples: Vec<Sample>, split: Split) -> Vec<Sample> {
    let set = dir
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    samples
        .into_iter()
        .filter(|s| {
            let name = s
                .image
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default();
            match split {
                Split::All => true,
                Split::Val => is_val(&set, &name),
                Split::Train => !is_val(&set, &name),
            }
        })
        .collect()
}

/// Reads the labels of a set folder.
pub fn load_set(dir: &Path) -> Result<Vec<Sample>, EvalError> {
    let tsv = dir.join("labels.tsv");
    let csv = dir.join("labels.csv");
    let (path, is_tsv) = if tsv.is_file() {
        (tsv, true)
    } else if csv.is_file() {
        (csv, false)
    } else {
        return Err(EvalError::NoLabels(dir.display().to_string()));
    };
    let text = std::fs::read_to_string(&path).map_err(|source| EvalError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| EvalError::BadLabel {
            path: path.display().to_string(),
            line: i + 1,
            reason: reason.into(),
        };
        if is_tsv {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 6 {
                return Err(bad("expected IMAGE X Y WIDTH HEIGHT PLATE, tab-separated"));
            }
            let n = |s: &str| s.trim().parse::<i32>().map_err(|_| bad("box values must be integers"));
            out.push(Sample {
                image: dir.join(f[0]),
                plate: plate::normalize(f[5]),
                bbox: Some(Rect::new(n(f[1])?, n(f[2])?, n(f[3])?, n(f[4])?)),
            });
        } else {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < 3 {
                return Err(bad("expected IMAGE,STATE,PLATE"));
            }
            if i == 0 && f[0].eq_ignore_ascii_case("image") {
                continue;
            }
            out.push(Sample {
                image: dir.join(f[0]),
                plate: plate::normalize(f[2]),
                bbox: None,
            });
        }
    }
    Ok(out)
}

/// The folders under `root` (itself included, at most 4 levels down) that hold a labels file, sorted: a
/// tree of class sets such as `models/train/class_sets.py` writes (`scale/080px/us`, `light/ir/eu`, ...).
pub fn label_leaves(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        if dir.join("labels.tsv").is_file() || dir.join("labels.csv").is_file() {
            out.push(dir.to_path_buf());
        }
        if depth == 0 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut subs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        for s in subs {
            walk(&s, depth - 1, out);
        }
    }
    let mut out = Vec::new();
    walk(root, 4, &mut out);
    out
}

/// Figures of a group of leaves (a class across its region folders): frames, plates found, exact reads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassFigures {
    pub class: String,
    pub frames: usize,
    pub with_box: usize,
    pub found: usize,
    pub exact: usize,
}

impl ClassFigures {
    pub fn add(&mut self, results: &[SampleResult]) {
        self.frames += results.len();
        self.exact += results.iter().filter(|r| r.correct).count();
        for d in results.iter().filter_map(|r| r.detected) {
            self.with_box += 1;
            self.found += usize::from(d);
        }
    }

    pub fn row(&self) -> String {
        let pct = |n: usize, d: usize| {
            if d == 0 {
                "n/a".to_string()
            } else {
                format!("{:.1}% ({n}/{d})", n as f64 * 100.0 / d as f64)
            }
        };
        format!(
            "| {} | {} | {} | {} |",
            self.class,
            self.frames,
            pct(self.found, self.with_box),
            pct(self.exact, self.frames)
        )
    }
}

/// What happened on one image.
#[derive(Debug, Clone, Serialize)]
pub struct SampleResult {
    pub image: String,
    pub truth: String,
    pub read: Option<String>,
    pub correct: bool,
    pub in_top_n: bool,
    pub detected: Option<bool>,
    pub ms: f64,
    /// Where the best read was found (frame pixels), for the failure sheet.
    #[serde(skip)]
    pub read_box: Option<Rect>,
    #[serde(skip)]
    pub path: PathBuf,
    #[serde(skip)]
    pub truth_box: Option<Rect>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub set: String,
    pub frames: usize,
    pub exact_top1: f64,
    pub top_n: f64,
    pub n: usize,
    /// None for crop sets (no boxes to compare with).
    pub detection_recall: Option<f64>,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub threads: usize,
    pub unreadable_images: usize,
    /// Exact top-1 over the samples whose label is a whole plate ([`FULL_PLATE_CHARS`] characters or
    /// more), and how many those are: a crop labelled "0" or "248" is part of a plate or a sticker.
    pub full_plate_exact_top1: f64,
    pub full_plate_labels: usize,
}

/// A label this long or longer is a whole plate (US plates have 4 to 7 characters, vanity plates aside).
pub const FULL_PLATE_CHARS: usize = 4;

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs `work` over every sample on `threads` workers, each with its own reader from `make_reader`, and
/// returns the results that are `Some`, in sample order. `progress` ticks once per sample. The first error
/// (a reader that cannot be made, or from `work`) stops its worker and is returned.
pub(crate) fn over_samples<T, F, W>(
    samples: &[Sample],
    make_reader: F,
    threads: usize,
    progress: &(dyn Fn() + Sync),
    work: W,
) -> Result<Vec<T>, EvalError>
where
    T: Send,
    F: Fn() -> Result<Box<dyn PlateReader>, RecognizeError> + Sync,
    W: Fn(&mut Box<dyn PlateReader>, &Sample) -> Result<Option<T>, EvalError> + Sync,
{
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, T)>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<EvalError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let fail = |e: EvalError| {
                    first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                };
                let mut reader = match make_reader() {
                    Ok(r) => r,
                    Err(e) => return fail(e.into()),
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(sample) = samples.get(i) else { break };
                    let r = work(&mut reader, sample);
                    progress();
                    match r {
                        Ok(Some(r)) => results.lock().unwrap_or_else(|p| p.into_inner()).push((i, r)),
                        Ok(None) => {}
                        Err(e) => return fail(e),
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

/// Runs `threads` workers, each with its own reader, over the samples. `progress` is called per image.
pub fn evaluate<F>(
    set: &str,
    samples: &[Sample],
    make_reader: F,
    threads: usize,
    top_n: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<(EvalReport, Vec<SampleResult>), EvalError>
where
    F: Fn() -> Result<Box<dyn PlateReader>, RecognizeError> + Sync,
{
    let unreadable = AtomicUsize::new(0);
    let threads = threads.max(1);
    let results = over_samples(samples, make_reader, threads, progress, |reader, sample| {
        let r = run_one(reader, sample, top_n);
        if r.is_none() {
            unreadable.fetch_add(1, Ordering::Relaxed);
        }
        Ok(r)
    })?;
    let frames = results.len();
    let frac = |n: usize| if frames == 0 { 0.0 } else { n as f64 / frames as f64 };
    let mut ms: Vec<f64> = results.iter().map(|r| r.ms).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let with_box: Vec<bool> = results.iter().filter_map(|r| r.detected).collect();
    let full: Vec<&SampleResult> = results
        .iter()
        .filter(|r| r.truth.chars().count() >= FULL_PLATE_CHARS)
        .collect();
    let report = EvalReport {
        set: set.to_string(),
        frames,
        exact_top1: frac(results.iter().filter(|r| r.correct).count()),
        top_n: frac(results.iter().filter(|r| r.in_top_n).count()),
        n: top_n,
        detection_recall: (!with_box.is_empty())
            .then(|| with_box.iter().filter(|d| **d).count() as f64 / with_box.len() as f64),
        median_ms: percentile(&ms, 0.5),
        p90_ms: percentile(&ms, 0.9),
        threads,
        unreadable_images: unreadable.into_inner(),
        full_plate_exact_top1: if full.is_empty() {
            0.0
        } else {
            full.iter().filter(|r| r.correct).count() as f64 / full.len() as f64
        },
        full_plate_labels: full.len(),
    };
    Ok((report, results))
}

fn run_one(reader: &mut Box<dyn PlateReader>, s: &Sample, top_n: usize) -> Option<SampleResult> {
    let img = imgcodecs::imread(s.image.as_os_str(), imgcodecs::IMREAD_COLOR).ok()?;
    if img.empty() {
        return None;
    }
    let t0 = Instant::now();
    let reads = if s.bbox.is_some() {
        reader.read(&img, None)
    } else {
        reader.read_crop(&img)
    };
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let reads = reads.ok().unwrap_or_default();
    let best = reads.candidates.first();
    let read = best.map(|c| c.text.clone());
    let correct = read.as_deref() == Some(s.plate.as_str());
    let mut pool: Vec<&str> = Vec::new();
    if let Some(b) = best {
        pool.extend(b.alternatives.iter().map(|(t, _)| t.as_str()));
    }
    pool.extend(reads.candidates.iter().skip(1).map(|c| c.text.as_str()));
    let in_top_n = pool.iter().take(top_n).any(|t| *t == s.plate);
    let detected = s.bbox.map(|b| reads.candidates.iter().any(|c| iou(c.bbox, b) >= 0.4));
    Some(SampleResult {
        image: s
            .image
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default(),
        truth: s.plate.clone(),
        read,
        correct,
        in_top_n: in_top_n || correct,
        detected,
        ms,
        read_box: best.map(|b| b.bbox),
        path: s.image.clone(),
        truth_box: s.bbox,
    })
}

impl EvalReport {
    pub fn table(&self) -> String {
        let pct = |v: f64| format!("{:.1}%", v * 100.0);
        format!(
            "set {set}: frames {f}, exact top-1 {t1}{full}, top-{n} {tn}, detection recall {dr}, median {med:.1} ms, p90 {p90:.1} ms per frame ({th} thread(s){unr})",
            full = if self.full_plate_labels < self.frames {
                format!(
                    " ({} over the {} labels of {FULL_PLATE_CHARS}+ characters)",
                    pct(self.full_plate_exact_top1),
                    self.full_plate_labels
                )
            } else {
                String::new()
            },
            set = self.set,
            f = self.frames,
            t1 = pct(self.exact_top1),
            n = self.n,
            tn = pct(self.top_n),
            dr = self.detection_recall.map(pct).unwrap_or_else(|| "n/a (crops)".into()),
            med = self.median_ms,
            p90 = self.p90_ms,
            th = self.threads,
            unr = if self.unreadable_images > 0 { format!(", {} unreadable images skipped", self.unreadable_images) } else { String::new() },
        )
    }
}

/// Writes a contact sheet of misreads: for each, the plate region (the labelled box, else the box read,
/// else the whole image), with the truth and the read under it. Returns the files written.
pub fn failure_sheet(results: &[SampleResult], out_dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
    use opencv::core::{Mat, Point, Scalar, Size, CV_8UC3};
    use opencv::imgproc;
    const CELL_W: i32 = 240;
    const CELL_H: i32 = 150;
    const COLS: i32 = 5;
    const PER_SHEET: usize = 40;
    let io = |e: std::io::Error| EvalError::Io {
        path: out_dir.display().to_string(),
        source: e,
    };
    std::fs::create_dir_all(out_dir).map_err(io)?;
    let misses: Vec<&SampleResult> = results.iter().filter(|r| !r.correct).collect();
    let mut written = Vec::new();
    for (sheet_no, chunk) in misses.chunks(PER_SHEET).enumerate() {
        let rows = (chunk.len() as i32 + COLS - 1) / COLS;
        let cv = |e: opencv::Error| EvalError::Io {
            path: out_dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        };
        let mut sheet =
            Mat::new_rows_cols_with_default(rows * CELL_H, COLS * CELL_W, CV_8UC3, Scalar::all(255.0)).map_err(cv)?;
        for (i, r) in chunk.iter().enumerate() {
            let (cx, cy) = ((i as i32 % COLS) * CELL_W, (i as i32 / COLS) * CELL_H);
            let img = imgcodecs::imread(r.path.as_os_str(), imgcodecs::IMREAD_COLOR).map_err(cv)?;
            if img.empty() {
                continue;
            }
            let full = Rect::new(0, 0, img.cols(), img.rows());
            let region = r.truth_box.or(r.read_box).map(|b| {
                let (mx, my) = (b.width / 4, b.height / 2);
                Rect::new(b.x - mx, b.y - my, b.width + 2 * mx, b.height + 2 * my) & full
            });
            let region = region.filter(|b| b.width > 0 && b.height > 0).unwrap_or(full);
            let crop = Mat::roi(&img, region).map_err(cv)?.try_clone().map_err(cv)?;
            let scale = ((CELL_W - 8) as f64 / crop.cols() as f64).min((CELL_H - 48) as f64 / crop.rows() as f64);
            let size = Size::new(
                ((crop.cols() as f64 * scale) as i32).max(1),
                ((crop.rows() as f64 * scale) as i32).max(1),
            );
            let mut small = Mat::default();
            imgproc::resize(&crop, &mut small, size, 0.0, 0.0, imgproc::INTER_AREA).map_err(cv)?;
            let mut dst = Mat::roi_mut(&mut sheet, Rect::new(cx + 4, cy + 4, size.width, size.height)).map_err(cv)?;
            small.copy_to(&mut dst).map_err(cv)?;
            let font = imgproc::FONT_HERSHEY_SIMPLEX;
            let truth = format!("truth {}", r.truth);
            let read = format!("read  {}", r.read.as_deref().unwrap_or("-"));
            imgproc::put_text(
                &mut sheet,
                &truth,
                Point::new(cx + 4, cy + CELL_H - 26),
                font,
                0.5,
                Scalar::new(0.0, 120.0, 0.0, 0.0),
                1,
                imgproc::LINE_AA,
                false,
            )
            .map_err(cv)?;
            imgproc::put_text(
                &mut sheet,
                &read,
                Point::new(cx + 4, cy + CELL_H - 8),
                font,
                0.5,
                Scalar::new(0.0, 0.0, 200.0, 0.0),
                1,
                imgproc::LINE_AA,
                false,
            )
            .map_err(cv)?;
        }
        let path = out_dir.join(format!("failures-{:02}.png", sheet_no + 1));
        imgcodecs::imwrite(path.as_os_str(), &sheet, &opencv::core::Vector::new()).map_err(cv)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_matches_the_training_code() {
        // python3 -c 'import hashlib; h=hashlib.sha1(b"us/car3.jpg").hexdigest(); print(int(h[:8],16)%5)'
        let expect = |set: &str, img: &str| {
            use sha1::{Digest, Sha1};
            let h = hex::encode(Sha1::digest(format!("{set}/{img}").as_bytes()));
            u32::from_str_radix(&h[..8], 16).map(|v| v % 5 == 0).unwrap_or(false)
        };
        for img in ["car3.jpg", "eu1.jpg", "AYO9034.jpg", "wts-lg-000011.jpg"] {
            assert_eq!(is_val("us", img), expect("us", img));
        }
    }

    #[test]
    fn iou_and_percentiles() {
        assert!((iou(Rect::new(0, 0, 10, 10), Rect::new(0, 0, 10, 10)) - 1.0).abs() < 1e-6);
        assert!((iou(Rect::new(0, 0, 10, 10), Rect::new(5, 0, 10, 10)) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(iou(Rect::new(0, 0, 1, 1), Rect::new(5, 5, 1, 1)), 0.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
    }

    #[test]
    fn reads_both_label_formats() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("labels.tsv"), "a.jpg\t1\t2\t30\t15\tab-12c\n").expect("write");
        let s = load_set(dir.path()).expect("tsv");
        assert_eq!(s[0].plate, "AB12C");
        assert_eq!(s[0].bbox, Some(Rect::new(1, 2, 30, 15)));
        let dir2 = tempfile::tempdir().expect("tmp");
        std::fs::write(dir2.path().join("labels.csv"), "image,state,plate\nx.png,ca,7abc123\n").expect("write");
        let s = load_set(dir2.path()).expect("csv");
        assert_eq!((s[0].plate.as_str(), s[0].bbox), ("7ABC123", None));
        assert!(matches!(
            load_set(Path::new("/nonexistent")),
            Err(EvalError::NoLabels(_))
        ));
    }
}
