//! `gatehouse recognize` and `gatehouse eval`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use opencv::core::{Point, Scalar, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;
use serde_json::json;

use super::{default_manifest, ModelArgs};
use crate::eval::passes::{evaluate_passes, Outcome, PassOptions};
use crate::eval::{evaluate, load_set, select, Split};
use crate::recognize::prior::FormatPrior;
use crate::recognize::{Manifest, OnnxPlateReader, PlateReader, ReaderOptions, RecognizeError};

/// A reader made for one worker.
type Made = Result<Box<dyn PlateReader>, RecognizeError>;

/// Makes readers of the models a lane on this CPU would read with; `models` names them (fingerprint).
struct Factory<F> {
    make: F,
    models: String,
    /// The manifest after the start-up check, to reuse for further sets ([`reader_factory_from`]).
    checked: Manifest,
}

fn reader_factory(
    models: &ModelArgs,
    top_n: usize,
    default_region: &str,
) -> anyhow::Result<Factory<impl Fn() -> Made + Sync>> {
    reader_factory_from(models, top_n, default_region, None)
}

/// [`reader_factory`], with `checked`: a manifest that already passed the start-up check (the check and its
/// notes are not repeated).
fn reader_factory_from(
    models: &ModelArgs,
    top_n: usize,
    default_region: &str,
    checked: Option<Manifest>,
) -> anyhow::Result<Factory<impl Fn() -> Made + Sync>> {
    let region = models.region.clone().unwrap_or_else(|| default_region.to_string());
    let prior =
        FormatPrior::region(&region).with_context(|| format!("unknown region {region:?}: use us, br, eu or none"))?;
    let lib = models.onnxruntime.clone();
    let side = models.detector_max_side;
    let two_line_max_aspect = models.two_line_max_aspect;
    let max_plates = models.max_plates;
    let spare_plates = models.spare_plates;
    let (min_plate_len, max_plate_len) = (models.min_plate_len, models.max_plate_len);
    anyhow::ensure!(
        min_plate_len <= max_plate_len,
        "--min-plate-len {min_plate_len} is above --max-plate-len {max_plate_len}"
    );
    let opts = ReaderOptions {
        threads: 1,
        detector_max_side: side,
        two_line_max_aspect,
        max_plates,
        spare_plates,
        min_plate_len,
        max_plate_len,
        top_n,
        prior,
        ..Default::default()
    };
    // The daemon's start-up check, once: the figures are those of the models a lane on this CPU would read
    // with (the manifest's fallbacks where the first choice misreads the check plate). A check that fails
    // with nothing to fall back on is reported and the given models are measured anyway.
    let manifest = match checked {
        Some(m) => m,
        None => checked_manifest(models, lib.as_deref(), &opts)?,
    };
    // What the figures were measured with (the models this CPU uses), for the report.
    let used = manifest.fingerprint();
    let checked = manifest.clone();
    let make = move || {
        OnnxPlateReader::new(&manifest, lib.as_deref(), opts.clone()).map(|r| Box::new(r) as Box<dyn PlateReader>)
    };
    Ok(Factory {
        make,
        models: used,
        checked,
    })
}

/// Loads `--models` (or the default manifest) and runs the daemon's start-up check on it.
fn checked_manifest(models: &ModelArgs, lib: Option<&Path>, opts: &ReaderOptions) -> anyhow::Result<Manifest> {
    let path = models.models.clone().unwrap_or_else(default_manifest);
    let manifest =
        Manifest::load(&path).with_context(|| "use --models to point at models/manifest.toml".to_string())?;
    for note in manifest.passed_over() {
        eprintln!("{note}");
    }
    let plate = crate::recognize::check_plate(opts.min_plate_len, opts.max_plate_len);
    Ok(match crate::recognize::checked_reader(&manifest, lib, opts, &plate) {
        Ok(checked) => {
            if let Some(note) = &checked.note {
                eprintln!("{note}");
            }
            checked.manifest
        }
        Err(RecognizeError::SelfCheck(why)) => {
            eprintln!("warning: start-up check: {why}; measuring these models anyway");
            manifest
        }
        Err(e) => return Err(e.into()),
    })
}

/// The set's folder name (us, eu, br) picks the regional prior unless --region says otherwise; any other
/// folder gets none.
fn folder_region(dir: &Path) -> String {
    let folder = dir
        .file_name()
        .map(|f| f.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if FormatPrior::region(&folder).is_some() {
        folder
    } else {
        "none".to_string()
    }
}

/// How a report names the set and the part of it evaluated.
fn set_label(dir: &Path, split: Split) -> String {
    match split {
        Split::All => dir.display().to_string(),
        Split::Val => format!("{} (validation split)", dir.display()),
        Split::Train => format!("{} (training split)", dir.display()),
    }
}

fn images_in(input: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(input)
        .with_context(|| format!("cannot read {}", input.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png" | "bmp" | "webp"))
        })
        .collect();
    v.sort();
    Ok(v)
}

fn bar(n: usize, quiet: bool) -> ProgressBar {
    if quiet || n < 2 {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} images, {elapsed} elapsed, eta {eta}") {
        pb.set_style(style);
    }
    pb
}

pub fn recognize(input: &Path, annotate: Option<&Path>, json_out: bool, models: &ModelArgs) -> anyhow::Result<()> {
    let images = images_in(input)?;
    if images.is_empty() {
        anyhow::bail!("no images in {}", input.display());
    }
    let mut reader = (reader_factory(models, 5, "none")?.make)()?;
    if let Some(dir) = annotate {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let pb = bar(images.len(), false);
    for path in &images {
        pb.inc(1);
        let mut img = imgcodecs::imread(path.as_os_str(), imgcodecs::IMREAD_COLOR)?;
        if img.empty() {
            pb.suspend(|| eprintln!("{}: not a readable image; skipped", path.display()));
            continue;
        }
        let reads = reader.read(&img, None)?;
        let name = path.display().to_string();
        if json_out {
            let cands: Vec<_> = reads
                .candidates
                .iter()
                .map(|c| {
                    json!({
                        "text": c.text, "confidence": c.confidence,
                        "box": [c.bbox.x, c.bbox.y, c.bbox.width, c.bbox.height],
                        "chars": c.chars.iter().map(|ch| json!({"char": ch.ch.to_string(), "conf": ch.conf})).collect::<Vec<_>>(),
                        "alternatives": c.alternatives,
                    })
                })
                .collect();
            pb.suspend(|| {
                println!(
                    "{}",
                    json!({"image": name, "plates": cands, "detect_ms": reads.timings.detect_ms, "recognize_ms": reads.timings.recognize_ms})
                )
            });
        } else {
            let best = reads
                .candidates
                .first()
                .map(|c| format!("{} ({:.2})", c.text, c.confidence));
            pb.suspend(|| println!("{name}: {}", best.unwrap_or_else(|| "no plate".into())));
        }
        if let Some(dir) = annotate {
            for (i, c) in reads.candidates.iter().enumerate() {
                let color = if i == 0 {
                    Scalar::new(0.0, 220.0, 0.0, 0.0)
                } else {
                    Scalar::new(0.0, 160.0, 255.0, 0.0)
                };
                imgproc::rectangle(&mut img, c.bbox, color, 2, imgproc::LINE_8, 0)?;
                let label = format!("{} {:.2}", c.text, c.confidence);
                let org = Point::new(c.bbox.x, (c.bbox.y - 6).max(14));
                imgproc::put_text(
                    &mut img,
                    &label,
                    org,
                    imgproc::FONT_HERSHEY_SIMPLEX,
                    0.6,
                    color,
                    2,
                    imgproc::LINE_AA,
                    false,
                )?;
            }
            let out = dir.join(path.file_name().unwrap_or_default()).with_extension("jpg");
            imgcodecs::imwrite(out.as_os_str(), &img, &Vector::new())?;
        }
    }
    pb.finish_and_clear();
    Ok(())
}

pub fn eval(
    dir: &Path,
    json_out: bool,
    threads: usize,
    top_n: usize,
    split: Split,
    failures: Option<&Path>,
    models: &ModelArgs,
) -> anyhow::Result<()> {
    if !dir.join("labels.tsv").is_file() && !dir.join("labels.csv").is_file() {
        return eval_tree(dir, json_out, threads, top_n, split, models);
    }
    let samples = select(dir, load_set(dir)?, split);
    let region = folder_region(dir);
    let Factory { make, models: used, .. } = reader_factory(models, top_n, &region)?;
    let pb = bar(samples.len(), false);
    let tick = || pb.inc(1);
    let set = set_label(dir, split);
    let (report, results) = evaluate(&set, &samples, make, threads, top_n, &tick)?;
    pb.finish_and_clear();
    for r in results.iter().filter(|r| !r.correct) {
        println!(
            "miss {}: truth {} read {}",
            r.image,
            r.truth,
            r.read.as_deref().unwrap_or("-")
        );
    }
    if let Some(out) = failures {
        for f in crate::eval::failure_sheet(&results, out)? {
            println!("failures: {}", f.display());
        }
    }
    println!("models: {used}");
    println!("{}", report.table());
    if json_out {
        println!(
            "{}",
            json!({
                "set": report.set, "frames": report.frames, "exact_top1": report.exact_top1, "top_n": report.top_n,
                "n": report.n, "detection_recall": report.detection_recall, "median_ms": report.median_ms,
                "p90_ms": report.p90_ms, "threads": report.threads, "models": used
            })
        );
    }
    Ok(())
}

/// `gatehouse eval-passes`: the whole-pass benchmark on one labelled end-to-end set.
#[allow(clippy::too_many_arguments)]
pub fn eval_passes(
    dir: &Path,
    frames: usize,
    fps: f64,
    seed: u64,
    split: Split,
    threads: usize,
    json_out: bool,
    models: &ModelArgs,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        dir.join("labels.tsv").is_file(),
        "{}: eval-passes needs end-to-end frames with plate boxes (labels.tsv)",
        dir.display()
    );
    anyhow::ensure!((1..=100).contains(&frames), "--frames must be 1 to 100");
    anyhow::ensure!(fps > 0.0 && fps <= 120.0, "--fps must be above 0 and at most 120");
    let samples = select(dir, load_set(dir)?, split);
    let region = folder_region(dir);
    let Factory { make, models: used, .. } = reader_factory(models, 5, &region)?;
    let pb = bar(samples.len(), false);
    let tick = || pb.inc(1);
    let set = set_label(dir, split);
    let opts = PassOptions { frames, fps, seed };
    let (report, results) = evaluate_passes(&set, &samples, make, threads, opts, &tick)?;
    pb.finish_and_clear();
    for r in results
        .iter()
        .filter(|r| r.outcome != Outcome::Correct || r.decisions.len() > 1 || !r.elsewhere.is_empty())
    {
        println!(
            "{} {}: truth {} decided {} after {} image(s)",
            match r.outcome {
                Outcome::Wrong => "WRONG",
                Outcome::NoDecision => "none ",
                Outcome::Correct => "split",
            },
            r.image,
            r.truth,
            r.decided.as_deref().unwrap_or("-"),
            r.frames_to_decision
                .map(|f| f.to_string())
                .unwrap_or_else(|| "-".into())
        );
        println!("    reads: {}", r.reads.join(" | "));
        if r.decisions.len() > 1 {
            println!("    decisions: {}", r.decisions.join(", "));
        }
        if !r.elsewhere.is_empty() {
            println!("    decided elsewhere in the frame: {}", r.elsewhere.join(", "));
        }
    }
    println!("models: {used}");
    println!("{}", report.table());
    if json_out {
        println!("{}", json!({ "report": report, "passes": results, "models": used }));
    }
    Ok(())
}

/// `gatehouse eval` on a folder of class sets (models/train/class_sets.py): every folder below with a
/// labels file is evaluated with its own name's region prior, then one table row per class (the leaf's
/// parent: `scale/080px`, `light/ir`), the regions summed, and a row per leaf.
fn eval_tree(
    dir: &Path,
    json_out: bool,
    threads: usize,
    top_n: usize,
    split: Split,
    models: &ModelArgs,
) -> anyhow::Result<()> {
    use crate::eval::{label_leaves, ClassFigures};
    let leaves = label_leaves(dir);
    if leaves.is_empty() {
        return Err(crate::eval::EvalError::NoLabels(format!("{} (nor in any folder below it)", dir.display())).into());
    }
    let mut classes: Vec<ClassFigures> = Vec::new();
    let mut rows: Vec<ClassFigures> = Vec::new();
    let mut checked = None;
    for leaf in &leaves {
        let rel = leaf.strip_prefix(dir).unwrap_or(leaf);
        let name = rel.display().to_string();
        let class = rel
            .parent()
            .map(|p| p.display().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| name.clone());
        let region = folder_region(leaf);
        let samples = select(leaf, load_set(leaf)?, split);
        // One start-up check for the whole tree.
        let factory = reader_factory_from(models, top_n, &region, checked.take())?;
        checked = Some(factory.checked);
        let make = factory.make;
        let (report, results) = evaluate(&name, &samples, make, threads, top_n, &|| {})?;
        for r in results.iter().filter(|r| !r.correct) {
            println!(
                "miss {name}/{}: truth {} read {}",
                r.image,
                r.truth,
                r.read.as_deref().unwrap_or("-")
            );
        }
        println!("{}", report.table());
        let mut row = ClassFigures {
            class: name,
            ..Default::default()
        };
        row.add(&results);
        rows.push(row);
        match classes.iter_mut().find(|c| c.class == class) {
            Some(c) => c.add(&results),
            None => {
                let mut c = ClassFigures {
                    class,
                    ..Default::default()
                };
                c.add(&results);
                classes.push(c);
            }
        }
    }
    println!("\n| class | frames | plate found (IoU >= 0.4) | exact top-1 |\n|---|---|---|---|");
    for c in &classes {
        println!("{}", c.row());
    }
    println!("\n| set | frames | plate found (IoU >= 0.4) | exact top-1 |\n|---|---|---|---|");
    for r in &rows {
        println!("{}", r.row());
    }
    println!("({threads} thread(s), split {split:?})");
    if json_out {
        println!("{}", json!({"classes": classes, "sets": rows, "threads": threads}));
    }
    Ok(())
}

/// Per-frame stage times of one reader (ms).
#[derive(Default)]
struct StageTimes {
    detect: Vec<f64>,
    recognize: Vec<f64>,
    total: Vec<f64>,
}

impl StageTimes {
    fn time(&mut self, reader: &mut Box<dyn PlateReader>, img: &Mat) -> anyhow::Result<()> {
        let t = std::time::Instant::now();
        let r = reader.read(img, None)?;
        self.total.push(t.elapsed().as_secs_f64() * 1e3);
        self.detect.push(r.timings.detect_ms);
        self.recognize.push(r.timings.recognize_ms);
        Ok(())
    }

    fn stages(&self) -> [(&'static str, &[f64]); 3] {
        [
            ("detect (plates; text lines if any)", &self.detect),
            ("recognize (CTC reader)", &self.recognize),
            ("decoded frame -> plate text", &self.total),
        ]
    }
}

/// (median, p90, mean) of `v`.
fn summary(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    (crate::eval::percentile(&v, 0.5), crate::eval::percentile(&v, 0.9), mean)
}

/// Per-stage timings over a folder of images (e.g. the benchmark's speed/ frames), one thread. With a
/// baseline manifest both readers run on every decoded frame, in alternating order, and the table adds
/// the baseline's medians and the ratio of the total times.
pub fn speed(dir: &Path, rounds: usize, baseline: Option<&Path>, models: &ModelArgs) -> anyhow::Result<()> {
    let images = images_in(dir)?;
    if images.is_empty() {
        anyhow::bail!("no images in {}", dir.display());
    }
    let mut reader = (reader_factory(models, 5, "none")?.make)()?;
    let mut base = match baseline {
        Some(path) => {
            let args = ModelArgs {
                models: Some(path.to_path_buf()),
                ..models.clone()
            };
            Some((reader_factory(&args, 5, "none").context("--baseline")?.make)()?)
        }
        None => None,
    };
    // Warm-up: the first run of a session allocates.
    if let Ok(img) = imgcodecs::imread(images[0].as_os_str(), imgcodecs::IMREAD_COLOR) {
        reader.read(&img, None)?;
        if let Some(b) = base.as_mut() {
            b.read(&img, None)?;
        }
    }
    let (mut decode, mut new, mut old) = (Vec::new(), StageTimes::default(), StageTimes::default());
    let mut turn = false;
    for _ in 0..rounds.max(1) {
        for p in &images {
            let t0 = std::time::Instant::now();
            let img = imgcodecs::imread(p.as_os_str(), imgcodecs::IMREAD_COLOR)?;
            if img.empty() {
                continue;
            }
            decode.push(t0.elapsed().as_secs_f64() * 1e3);
            match base.as_mut() {
                Some(b) => {
                    turn = !turn;
                    if turn {
                        new.time(&mut reader, &img)?;
                        old.time(b, &img)?;
                    } else {
                        old.time(b, &img)?;
                        new.time(&mut reader, &img)?;
                    }
                }
                None => new.time(&mut reader, &img)?,
            }
        }
    }
    println!(
        "{} frames x {} round(s), 1 thread (ms per frame)",
        images.len(),
        rounds.max(1)
    );
    let (d50, d90, dmean) = summary(&decode);
    if base.is_none() {
        println!("{:<34} {:>8} {:>8} {:>8}", "stage", "median", "p90", "mean");
        println!(
            "{:<34} {d50:>8.1} {d90:>8.1} {dmean:>8.1}",
            "decode (imread, not in eval)"
        );
        for (name, v) in new.stages() {
            let (m, p90, mean) = summary(v);
            println!("{name:<34} {m:>8.1} {p90:>8.1} {mean:>8.1}");
        }
        return Ok(());
    }
    println!(
        "{:<34} {:>8} {:>8} {:>9} {:>8}",
        "stage", "median", "p90", "baseline", "ratio"
    );
    println!("{:<34} {d50:>8.1} {d90:>8.1}", "decode (imread, not in eval)");
    for ((name, v), (_, b)) in new.stages().into_iter().zip(old.stages()) {
        let ((m, p90, mean), (bm, _, bmean)) = (summary(v), summary(b));
        // Total time over the same frames, each pair run back to back: load hits both alike.
        let ratio = if bmean > 0.0 { mean / bmean } else { f64::NAN };
        println!("{name:<34} {m:>8.1} {p90:>8.1} {bm:>9.1} {ratio:>8.2}");
    }
    println!("ratio: this manifest's total time over all frames / the baseline's (same frames, alternating order)");
    Ok(())
}
