//! The whole-pass benchmark (`gatehouse eval-passes`): the daemon decides on a pass, not on a photo.
//!
//! Each labelled end-to-end frame becomes a short approach: `frames` images of the car coming closer, the
//! last one the labelled frame itself. Everything is seeded by the image's name and `--seed`, so a run is
//! repeatable:
//! - scale: the frame is zoomed out about a point above the plate, from 0.5-0.7 of its size (seeded) at
//!   the first image to 1 at the last, so the plate grows and moves down the frame as it approaches;
//! - slight perspective: a horizontal keystone about the plate (the car still turning in), fading out;
//! - motion blur along the frame's vertical (the approach), 3 to 9 px long on a seeded 60% of the passes,
//!   shorter as the car slows;
//! - sensor noise (Gaussian, sigma 2 to 6) and JPEG artefacts (quality 50 to 85), both seeded.
//!
//! The images go through the real reader, every plate read of each into the real [`Tracker`] as one frame
//! (the daemon's defaults, timestamps at `fps` as `replay` gives them), and each voted read into the
//! daemon's decision stage ([`access::stage::decide_pass`]: the match, `min_reads`) against an allowlist of
//! every plate of the set (all residents). The pass's outcome is the last decision whose best read lies on
//! the labelled plate (its box carried through the approach's warp, IoU >= 0.3): right, wrong (a false
//! accept risk), or no decision; decisions elsewhere in the frame (the vehicle's text, a sign) are listed
//! beside it, and an opening for any of them counts as an opening for another entry. Also per pass: how
//! many images it took; whether the gate opened, and for whom.

use chrono::{DateTime, Utc};
use opencv::core::{Mat, Point, Rect, Scalar, Size, Vector, BORDER_REPLICATE, CV_8UC3};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use serde::Serialize;

use super::{EvalError, Sample};
use crate::access::{self, Action, Allowlist, Entry, Kind};
use crate::config::{AccessConfig, TrackConfig};
use crate::recognize::{PlateReader, RecognizeError};
use crate::track::{PlateRead, RecentOpens, TrackEvent, Tracker};

/// How the approaches are made.
#[derive(Debug, Clone, Copy)]
pub struct PassOptions {
    /// Images per approach (the last is the labelled frame).
    pub frames: usize,
    /// Camera frame rate the timestamps follow.
    pub fps: f64,
    pub seed: u64,
}

/// How one pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Correct,
    /// A plate other than the truth was decided: a false accept risk.
    Wrong,
    NoDecision,
}

#[derive(Debug, Clone, Serialize)]
pub struct PassResult {
    pub image: String,
    pub truth: String,
    pub decided: Option<String>,
    pub outcome: Outcome,
    /// Images seen when the decision came (1-based); `None` without a decision.
    pub frames_to_decision: Option<usize>,
    /// Decided while the car was still in view (not only when it left).
    pub early: bool,
    /// The access decisions on the voted reads: the gate first opened for this listed plate.
    pub opened_for: Option<String>,
    /// Some decision of the pass opened the gate for another entry of the list.
    pub opened_other: bool,
    /// Every plate the tracker decided at the labelled plate's place during the pass (more than one: the
    /// pass was split, or a denied misread was revised); the outcome is the last one's.
    pub decisions: Vec<String>,
    /// What the tracker decided elsewhere in the frame (the vehicle's text, a sign): each its own pass,
    /// through the same decision stage (an opening for one of them counts in `opened_other`).
    pub elsewhere: Vec<String>,
    /// Each image's plate reads, best first: `TEXT conf/plate width px` joined by ` + `, or `-` for none.
    pub reads: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    pub set: String,
    pub passes: usize,
    pub frames_per_pass: usize,
    pub correct: usize,
    pub wrong: usize,
    /// Of the `wrong` ones, those that differ from the truth only by look-alike characters
    /// ([`crate::plate::confusion_class`]: 1AMW240 decided IAMW240). The access decision matches them as the
    /// plate itself, so the gate does what it would for the truth; the event records the misread text.
    pub wrong_lookalike: usize,
    pub no_decision: usize,
    pub median_frames_to_decision: Option<f64>,
    /// The gate opened for the car's own entry.
    pub opened_right: usize,
    /// The gate opened for another entry of the list.
    pub opened_wrong: usize,
    /// Passes with more than one decision at the plate's place (split, or a denied misread revised).
    pub split: usize,
    /// Passes with a decision elsewhere in the frame (the vehicle's text, a sign).
    pub elsewhere: usize,
    pub threads: usize,
}

impl PassReport {
    pub fn table(&self) -> String {
        let pct = |n: usize| {
            if self.passes == 0 {
                "n/a".to_string()
            } else {
                format!("{:.1}%", n as f64 * 100.0 / self.passes as f64)
            }
        };
        format!(
            "set {set}: {p} passes of {f} images; decided right {c} ({cp}), wrong plate decided {w} ({wl} only by look-alikes), no decision {n}; \
             median images to the decision {m}; gate opened for the car's own entry {or} ({orp}), for another entry {ow}; \
             passes with several decisions {sp}, with a decision elsewhere in the frame (vehicle text, signs) {el} \
             ({th} thread(s))",
            set = self.set,
            p = self.passes,
            f = self.frames_per_pass,
            c = self.correct,
            cp = pct(self.correct),
            w = self.wrong,
            wl = self.wrong_lookalike,
            n = self.no_decision,
            m = self
                .median_frames_to_decision
                .map(|m| format!("{m:.1}"))
                .unwrap_or_else(|| "n/a".into()),
            or = self.opened_right,
            orp = pct(self.opened_right),
            ow = self.opened_wrong,
            sp = self.split,
            el = self.elsewhere,
            th = self.threads,
        )
    }
}

/// A small seeded generator (xorshift64*): the approaches must not depend on a library's random stream.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, name: &str) -> Self {
        use sha1::{Digest, Sha1};
        let h = Sha1::digest(format!("{seed}/{name}").as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[..8]);
        Self(u64::from_le_bytes(b) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn gaussian(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

type M3 = [[f64; 3]; 3];

fn mul(a: &M3, b: &M3) -> M3 {
    let mut o = [[0.0; 3]; 3];
    for (i, row) in o.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    o
}

fn translate(x: f64, y: f64) -> M3 {
    [[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]]
}

/// The approach's images of one labelled frame (the last is the frame itself, re-encoded like the rest),
/// and where the labelled plate is in each.
pub struct Approach {
    pub images: Vec<Mat>,
    pub plates: Vec<Rect>,
}

/// Where a homography puts a rectangle: the box around its four corners.
fn warp_rect(m: &M3, r: Rect) -> Rect {
    let corners = [
        (r.x, r.y),
        (r.x + r.width, r.y),
        (r.x, r.y + r.height),
        (r.x + r.width, r.y + r.height),
    ];
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for (x, y) in corners {
        let (x, y) = (x as f64, y as f64);
        let d = m[2][0] * x + m[2][1] * y + m[2][2];
        let (u, v) = (
            (m[0][0] * x + m[0][1] * y + m[0][2]) / d,
            (m[1][0] * x + m[1][1] * y + m[1][2]) / d,
        );
        (x0, y0, x1, y1) = (x0.min(u), y0.min(v), x1.max(u), y1.max(v));
    }
    Rect::new(
        x0.round() as i32,
        y0.round() as i32,
        (x1 - x0).round() as i32,
        (y1 - y0).round() as i32,
    )
}

pub fn approach(image: &Mat, plate: Rect, name: &str, opts: PassOptions) -> Result<Approach, EvalError> {
    let cv = |e: opencv::Error| EvalError::Recognize(RecognizeError::Image(e));
    let mut rng = Rng::new(opts.seed, name);
    let (w, h) = (image.cols() as f64, image.rows() as f64);
    let (pcx, pcy) = (
        plate.x as f64 + plate.width as f64 / 2.0,
        plate.y as f64 + plate.height as f64 / 2.0,
    );
    let s0 = rng.range(0.5, 0.7);
    // The car comes from further up the frame: zoom about a point above the plate.
    let anchor = (pcx + rng.range(-0.1, 0.1) * w, (pcy - rng.range(0.3, 0.6) * h).max(0.0));
    let keystone = rng.range(-0.6, 0.6) / w;
    let blur = if rng.unit() < 0.6 { rng.range(3.0, 9.0) } else { 0.0 };
    let sigma = rng.range(2.0, 6.0);
    let quality = rng.range(50.0, 85.0).round() as i32;
    let n = opts.frames.max(1);
    let mut out = Vec::with_capacity(n);
    let mut plates = Vec::with_capacity(n);
    for k in 0..n {
        let t = if n == 1 { 1.0 } else { k as f64 / (n - 1) as f64 };
        let s = s0 + (1.0 - s0) * t;
        let g = keystone * (1.0 - t);
        // about the plate: x' = x / (1 + g x), a slight turn of the car's rear
        let persp: M3 = mul(
            &translate(pcx, pcy),
            &mul(
                &[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [g, 0.0, 1.0]],
                &translate(-pcx, -pcy),
            ),
        );
        let zoom: M3 = mul(
            &translate(anchor.0, anchor.1),
            &mul(
                &[[s, 0.0, 0.0], [0.0, s, 0.0], [0.0, 0.0, 1.0]],
                &translate(-anchor.0, -anchor.1),
            ),
        );
        let hm = mul(&zoom, &persp);
        plates.push(warp_rect(&hm, plate));
        let m = Mat::from_slice_2d(&hm).map_err(cv)?;
        let mut warped = Mat::default();
        imgproc::warp_perspective(
            image,
            &mut warped,
            &m,
            Size::new(image.cols(), image.rows()),
            imgproc::INTER_LINEAR,
            BORDER_REPLICATE,
            Scalar::default(),
        )
        .map_err(cv)?;
        // motion blur, shorter as the car slows towards the gate
        let len = (blur * (1.0 - 0.6 * t)).round() as i32;
        let mut frame = if len >= 2 {
            let kernel = Mat::new_rows_cols_with_default(len, 1, opencv::core::CV_32F, Scalar::all(1.0 / len as f64))
                .map_err(cv)?;
            let mut b = Mat::default();
            imgproc::filter_2d(&warped, &mut b, -1, &kernel, Point::new(-1, -1), 0.0, BORDER_REPLICATE).map_err(cv)?;
            b
        } else {
            warped
        };
        if frame.typ() == CV_8UC3 {
            let noise: Vec<i16> = (0..4096).map(|_| (rng.gaussian() * sigma).round() as i16).collect();
            let mut at = (rng.next() % 4096) as usize;
            let step = 1 + (rng.next() % 4093) as usize;
            for v in frame.data_bytes_mut().map_err(cv)? {
                at = (at + step) % noise.len();
                *v = (*v as i16 + noise[at]).clamp(0, 255) as u8;
            }
        }
        let mut buf: Vector<u8> = Vector::new();
        let params: Vector<i32> = Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, quality]);
        imgcodecs::imencode(".jpg", &frame, &mut buf, &params).map_err(cv)?;
        out.push(imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR).map_err(cv)?);
    }
    Ok(Approach { images: out, plates })
}

/// Runs every sample's approach through the reader, the tracker and the access decision.
pub fn evaluate_passes<F>(
    set: &str,
    samples: &[Sample],
    make_reader: F,
    threads: usize,
    opts: PassOptions,
    progress: &(dyn Fn() + Sync),
) -> Result<(PassReport, Vec<PassResult>), EvalError>
where
    F: Fn() -> Result<Box<dyn PlateReader>, RecognizeError> + Sync,
{
    let list = Allowlist::new(
        samples.iter().map(|s| Entry::new(&s.plate, Kind::Resident)).collect(),
        1,
    );
    let threads = threads.max(1);
    let results = super::over_samples(samples, make_reader, threads, progress, |reader, sample| {
        run_pass(reader, sample, &list, opts)
    })?;
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    let mut took: Vec<f64> = results
        .iter()
        .filter_map(|r| r.frames_to_decision.map(|f| f as f64))
        .collect();
    took.sort_by(|a, b| a.total_cmp(b));
    let median = (!took.is_empty()).then(|| {
        let m = took.len() / 2;
        if took.len().is_multiple_of(2) {
            (took[m - 1] + took[m]) / 2.0
        } else {
            took[m]
        }
    });
    let report = PassReport {
        set: set.to_string(),
        passes: results.len(),
        frames_per_pass: opts.frames,
        correct: count(Outcome::Correct),
        wrong: count(Outcome::Wrong),
        wrong_lookalike: results
            .iter()
            .filter(|r| r.outcome == Outcome::Wrong)
            .filter(|r| r.decided.as_deref().is_some_and(|d| lookalike(d, &r.truth)))
            .count(),
        no_decision: count(Outcome::NoDecision),
        median_frames_to_decision: median,
        opened_right: results
            .iter()
            .filter(|r| r.opened_for.as_deref() == Some(r.truth.as_str()))
            .count(),
        opened_wrong: results.iter().filter(|r| r.opened_other).count(),
        split: results.iter().filter(|r| r.decisions.len() > 1).count(),
        elsewhere: results.iter().filter(|r| !r.elsewhere.is_empty()).count(),
        threads,
    };
    Ok((report, results))
}

/// `a` and `b` are the same plate once look-alike characters count as one.
fn lookalike(a: &str, b: &str) -> bool {
    crate::plate::canonical(a) == crate::plate::canonical(b)
}

fn run_pass(
    reader: &mut Box<dyn PlateReader>,
    sample: &Sample,
    list: &Allowlist,
    opts: PassOptions,
) -> Result<Option<PassResult>, EvalError> {
    let Some(plate) = sample.bbox else { return Ok(None) };
    let image = imgcodecs::imread(sample.image.as_os_str(), imgcodecs::IMREAD_COLOR)
        .map_err(|e| EvalError::Recognize(RecognizeError::Image(e)))?;
    if image.empty() {
        return Ok(None);
    }
    let name = sample
        .image
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let frames = approach(&image, plate, &name, opts)?;
    let cfg = TrackConfig::default();
    let pass_gap = cfg.pass_gap;
    // The daemon's decision stage with its default rules (the access defaults, `min_reads`).
    let access_cfg = AccessConfig::default();
    let rules = access::stage::Rules {
        access: &access_cfg,
        min_reads: cfg.min_reads,
        tz: chrono_tz::UTC,
    };
    let opens = RecentOpens::default();
    let mut tracker = Tracker::new(cfg, opens.clone());
    let lane: std::sync::Arc<str> = std::sync::Arc::from("eval");
    let start: DateTime<Utc> = DateTime::UNIX_EPOCH + chrono::Duration::days(20_000);
    let period = chrono::Duration::microseconds((1e6 / opts.fps.max(0.1)) as i64);
    // Every decision the tracker makes during the pass: the plate, the images seen by then, and the entry
    // the gate opened for. As in the daemon, an opening is recorded for the tracker at once.
    let mut decided: Vec<(Box<crate::track::VotedRead>, usize, Option<String>)> = Vec::new();
    let take = |events: Vec<TrackEvent>, seen: usize, decided: &mut Vec<(Box<_>, usize, Option<String>)>| {
        for e in events {
            if let TrackEvent::Decide(v) = e {
                let read = access::stage::PassRead {
                    text: &v.text,
                    chars: &v.chars,
                    reads: v.reads,
                };
                let d = access::stage::decide_pass(read, list, rules, v.decided_at, false);
                if v.quiet {
                    // As in the daemon: a passing read beside another pass is recorded only with an alert
                    // (the benchmark's list holds no blocked plates), and never opens.
                    continue;
                }
                let opened = (d.action == Action::Open).then(|| d.matched.map(|m| m.plate)).flatten();
                if opened.is_some() {
                    opens.record(&v.text, v.decided_at);
                }
                decided.push((v, seen, opened));
            }
        }
    };
    let mut at = start;
    let mut seen = Vec::with_capacity(frames.images.len());
    for (k, frame) in frames.images.iter().enumerate() {
        at = start + period * k as i32;
        let reads = reader.read(frame, None)?;
        seen.push(if reads.candidates.is_empty() {
            "-".to_string()
        } else {
            reads
                .candidates
                .iter()
                .map(|c| format!("{} {:.2}/{}px", c.text, c.confidence, c.bbox.width))
                .collect::<Vec<_>>()
                .join(" + ")
        });
        // As in the daemon: every plate read of the image, in one frame.
        let frame_reads: Vec<PlateRead> = reads
            .candidates
            .into_iter()
            .map(|candidate| PlateRead {
                lane: lane.clone(),
                at,
                frame_seq: k as u64,
                candidate,
                crop_jpeg: Vec::new(),
            })
            .collect();
        if !frame_reads.is_empty() {
            take(tracker.on_frame(frame_reads), k + 1, &mut decided);
        }
    }
    // The car has left: the lane goes quiet for longer than the pass gap.
    let gone = at + chrono::Duration::from_std(pass_gap).unwrap_or(chrono::Duration::MAX) + period;
    take(tracker.on_idle(gone), frames.images.len(), &mut decided);
    take(tracker.finish(), frames.images.len(), &mut decided);
    let opened_for = decided.iter().find_map(|(_, _, o)| o.clone());
    let opened_other = decided
        .iter()
        .any(|(_, _, o)| o.as_ref().is_some_and(|p| *p != sample.plate));
    // The plate's own decisions are those whose best read lies on the labelled plate; the others are of
    // something else in the frame (the vehicle's text, a sign), reported beside them.
    let on_plate = |v: &crate::track::VotedRead| {
        frames
            .plates
            .get(v.best_frame as usize)
            .is_some_and(|p| crate::recognize::iou(*p, v.best_bbox) >= 0.3)
    };
    let elsewhere: Vec<String> = decided
        .iter()
        .filter(|(v, _, _)| !on_plate(v))
        .map(|(v, _, _)| v.text.clone())
        .collect();
    // The decision standing at the end of the plate's pass (a denied misread may have been revised).
    let (text, outcome, took, early) = match decided.iter().rev().find(|(v, _, _)| on_plate(v)) {
        Some((v, seen, _)) => {
            let outcome = if v.text == sample.plate {
                Outcome::Correct
            } else {
                Outcome::Wrong
            };
            (Some(v.text.clone()), outcome, Some(*seen), v.early)
        }
        None => (None, Outcome::NoDecision, None, false),
    };
    Ok(Some(PassResult {
        image: name,
        truth: sample.plate.clone(),
        decided: text,
        outcome,
        frames_to_decision: took,
        early,
        opened_for,
        opened_other,
        decisions: decided
            .iter()
            .filter(|(v, _, _)| on_plate(v))
            .map(|(v, _, _)| v.text.clone())
            .collect(),
        elsewhere,
        reads: seen,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approach_is_seeded_grows_the_plate_and_ends_on_the_frame() {
        let mut img = Mat::new_rows_cols_with_default(360, 640, CV_8UC3, Scalar::all(90.0)).expect("mat");
        let plate = Rect::new(280, 250, 80, 30);
        imgproc::rectangle(&mut img, plate, Scalar::all(250.0), -1, imgproc::LINE_8, 0).expect("draw");
        let opts = PassOptions {
            frames: 6,
            fps: 10.0,
            seed: 1,
        };
        let a = approach(&img, plate, "x.jpg", opts).expect("approach");
        let b = approach(&img, plate, "x.jpg", opts).expect("approach");
        // the labelled plate's place in each image: growing, and the label itself in the last
        assert_eq!(a.plates.len(), 6);
        assert!(a.plates[0].width < a.plates[5].width, "{:?}", a.plates);
        assert_eq!(a.plates[5], plate);
        let (a, b) = (a.images, b.images);
        assert_eq!(a.len(), 6);
        let bytes = |m: &Mat| m.data_bytes().expect("bytes").to_vec();
        assert!(
            a.iter().zip(&b).all(|(x, y)| bytes(x) == bytes(y)),
            "the same seed, the same images"
        );
        let other = approach(&img, plate, "y.jpg", opts).expect("approach").images;
        assert_ne!(bytes(&a[0]), bytes(&other[0]), "another image name, another approach");
        // the bright plate covers more of the frame as the car comes closer
        let bright = |m: &Mat| m.data_bytes().expect("bytes").iter().filter(|v| **v > 200).count();
        assert!(bright(&a[0]) < bright(&a[5]), "{} {}", bright(&a[0]), bright(&a[5]));
        // the last image is the labelled frame (plus noise and JPEG): the plate where the label says
        let last = &a[5];
        let px = last.at_2d::<opencv::core::Vec3b>(265, 320).expect("pixel")[0];
        assert!(px > 200, "plate centre {px}");
    }

    #[test]
    fn a_wrong_plate_is_a_look_alike_only_when_every_difference_is_one() {
        assert!(lookalike("IAMW240", "1AMW240"));
        assert!(lookalike("SKSK9V", "SK5K9V"));
        assert!(lookalike("ACQM7V", "AC0M7V"));
        assert!(!lookalike("383JP", "383WJP"), "a dropped character");
        assert!(!lookalike("TWP222", "TNP222"), "N and W are not look-alikes");
    }
}
