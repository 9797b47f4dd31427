//! `[recognize]`, `[track]` and `[access]`: the reader, the pass tracker and the decision's thresholds.

use super::*;

pub(super) fn validate_recognize(r: RawRecognize, base: &Path, issues: &mut Issues) -> RecognizeConfig {
    let manifest = resolve(base, &r.manifest);
    if !manifest.is_file() {
        issues.push(
            "recognize.manifest",
            format!("{} does not exist", manifest.display()),
            "point it at models/manifest.toml (run scripts/setup.sh to fetch the models)",
        );
    }
    let onnxruntime = r.onnxruntime.as_deref().map(|p| resolve(base, p));
    if let Some(p) = &onnxruntime {
        if !p.is_file() {
            issues.push(
                "recognize.onnxruntime",
                format!("{} does not exist", p.display()),
                "point it at libonnxruntime.so (scripts/setup.sh puts it in vendor/onnxruntime/)",
            );
        }
    }
    if r.threads == 0 || r.threads > 64 {
        issues.push(
            "recognize.threads",
            format!("{} is out of range", r.threads),
            "use 1 to 64 (1 per lane is a good start on a small box)",
        );
    }
    if r.min_plate_len == 0 || r.min_plate_len > r.max_plate_len || r.max_plate_len > crate::plate::MAX_PLATE_LEN {
        issues.push(
            "recognize.min_plate_len",
            format!("plate lengths {}..={} are not usable", r.min_plate_len, r.max_plate_len),
            format!(
                "use 1 <= min_plate_len <= max_plate_len <= {}",
                crate::plate::MAX_PLATE_LEN
            ),
        );
    }
    if r.detector_max_side < 320 || r.detector_max_side > 4096 || !r.detector_max_side.is_multiple_of(32) {
        issues.push(
            "recognize.detector_max_side",
            format!("{} is not usable", r.detector_max_side),
            "use a multiple of 32 between 320 and 4096, e.g. 960",
        );
    }
    let mut prior = crate::plate::prior::FormatPrior::region(&r.region).unwrap_or_else(|| {
        issues.push(
            "recognize.region",
            format!("unknown region {:?}", r.region),
            "use \"us\", \"br\", \"eu\" or \"none\"",
        );
        Default::default()
    });
    for (i, f) in r.formats.iter().enumerate() {
        if f.is_empty() || f.len() > crate::plate::MAX_PLATE_LEN || !f.chars().all(|c| matches!(c, 'L' | 'D' | '*')) {
            issues.push(
                format!("recognize.formats[{i}]"),
                format!("{f:?} is not a plate pattern"),
                "use L (letter), D (digit) and * (either), e.g. \"LLLDDDD\"",
            );
        }
    }
    if r.two_line_max_aspect != 0.0 && !(1.0..=3.0).contains(&r.two_line_max_aspect) {
        issues.push(
            "recognize.two_line_max_aspect",
            format!("{} is not usable", r.two_line_max_aspect),
            "use 0 (never read plates as two rows) or a width / height from 1 to 3, e.g. 1.8",
        );
    }
    if !(1..=8).contains(&r.max_plates) {
        issues.push(
            "recognize.max_plates",
            format!("{} plates per frame is not usable", r.max_plates),
            "use 1 to 8: 1 when the lane's view holds one vehicle at a time, 2 (the default) so a tailgater's \
             plate is read beside the first car's",
        );
    }
    prior.patterns.extend(r.formats.iter().cloned());
    RecognizeConfig {
        prior,
        manifest,
        onnxruntime,
        threads: r.threads,
        min_plate_len: r.min_plate_len,
        max_plate_len: r.max_plate_len,
        detector_max_side: r.detector_max_side,
        two_line_max_aspect: r.two_line_max_aspect,
        max_plates: r.max_plates,
    }
}

fn unit_interval(v: f32, path: &str, issues: &mut Issues) {
    if !(0.0..=1.0).contains(&v) {
        issues.push(
            path,
            format!("{v} is not between 0 and 1"),
            "use a fraction such as 0.9",
        );
    }
}

pub(super) fn validate_track(t: RawTrack, issues: &mut Issues) -> TrackConfig {
    if !(100..=60_000).contains(&t.pass_gap_ms) {
        issues.push(
            "track.pass_gap_ms",
            format!("{} ms is out of range", t.pass_gap_ms),
            "use 100 to 60000 (1500 suits a gate lane)",
        );
    }
    if t.min_reads == 0 {
        issues.push("track.min_reads", "must be at least 1", "use 2 or 3");
    }
    unit_interval(t.early_confidence, "track.early_confidence", issues);
    if t.same_vehicle_s > 3600 {
        issues.push(
            "track.same_vehicle_s",
            format!("{} s is too long", t.same_vehicle_s),
            "use at most 3600 (20 suits a gate)",
        );
    }
    if !(200..=60_000).contains(&t.decide_after_ms) {
        issues.push(
            "track.decide_after_ms",
            format!("{} ms is out of range", t.decide_after_ms),
            "use 200 to 60000 (2500 suits a gate)",
        );
    }
    TrackConfig {
        pass_gap: Duration::from_millis(t.pass_gap_ms),
        min_reads: t.min_reads.max(1),
        early_confidence: t.early_confidence,
        same_vehicle: Duration::from_secs(t.same_vehicle_s),
        decide_after: Duration::from_millis(t.decide_after_ms),
    }
}

pub(super) fn validate_access(a: RawAccess, issues: &mut Issues) -> AccessConfig {
    if a.max_confusions > 2 {
        issues.push(
            "access.max_confusions",
            format!("{} lets too many OCR confusions through", a.max_confusions),
            "use 0, 1 or 2",
        );
    }
    unit_interval(a.min_confidence, "access.min_confidence", issues);
    unit_interval(a.ambiguity_confidence, "access.ambiguity_confidence", issues);
    AccessConfig {
        max_confusions: a.max_confusions,
        min_confidence: a.min_confidence,
        ambiguity_confidence: a.ambiguity_confidence,
    }
}
