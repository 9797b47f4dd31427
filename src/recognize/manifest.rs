//! The model manifest (`models/manifest.toml`): which file plays which role, its checksum, input geometry,
//! normalisation, charset and provenance. Swapping a model is a manifest change, not a code change.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::RecognizeError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Every entry as listed; [`Manifest::model`] picks, per role, the first one this CPU can run as measured.
    #[serde(rename = "model")]
    pub models: Vec<ModelSpec>,
    #[serde(skip)]
    pub dir: PathBuf,
    /// The CPU the models are chosen for (the host's, from [`Cpu::host`], unless a test sets another).
    #[serde(skip, default = "Cpu::host")]
    pub cpu: Cpu,
    /// Use the `fallback` entries in place of their roles' first choices ([`Manifest::with_fallbacks`]).
    #[serde(skip)]
    pub use_fallbacks: bool,
}

/// What a model needs of the CPU to give the figures it was measured with (`needs` in the manifest). An
/// entry whose need this CPU lacks is passed over for the next entry of the same role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CpuNeed {
    /// 8-bit products summed without saturating: x86-64 with AVX-512 VNNI or AVX-VNNI, or any aarch64.
    /// Without VNNI, ONNX Runtime's x86-64 kernels multiply unsigned by signed 8-bit values with an
    /// instruction (`vpmaddubsw`) that saturates pairs of products at 16 bits, and a model quantized with
    /// signed weights then computes something else: the shipped int8 detector read 25 of the 29 US
    /// validation frames under `qemu-x86_64 -cpu Haswell` against 28 natively (docs/recognition.md).
    /// ARM's kernels widen instead (a Cortex-A72 without dot products reads as natively).
    #[serde(rename = "exact-int8")]
    ExactInt8,
}

/// What this machine's CPU offers the models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    /// See [`CpuNeed::ExactInt8`].
    pub exact_int8: bool,
}

impl Cpu {
    /// The CPU this process runs on.
    pub fn host() -> Self {
        #[cfg(target_arch = "x86_64")]
        let exact_int8 =
            std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni");
        #[cfg(target_arch = "aarch64")]
        let exact_int8 = true;
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let exact_int8 = false;
        Cpu { exact_int8 }
    }

    pub fn has(&self, need: CpuNeed) -> bool {
        match need {
            CpuNeed::ExactInt8 => self.exact_int8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Finds whole plates in a frame (optional; without it the text detector scans the whole frame).
    #[serde(rename = "plate-detector")]
    PlateDetector,
    /// Finds plates turned or sloping in the frame (trained on tilted plates), run only on frames where the
    /// plate detector found none at any of its passes (optional).
    #[serde(rename = "tilted-plate-detector")]
    TiltedPlateDetector,
    /// Finds text lines (in the frame, or inside a plate when a plate detector is present).
    Detector,
    Recognizer,
}

impl Role {
    /// The role as the manifest spells it.
    pub fn name(self) -> &'static str {
        match self {
            Role::PlateDetector => "plate-detector",
            Role::TiltedPlateDetector => "tilted-plate-detector",
            Role::Detector => "detector",
            Role::Recognizer => "recognizer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Differentiable-binarisation text map (PP-OCR detector): 1x1xHxW probabilities.
    DbText,
    /// CTC sequence recogniser for text lines found by the text detector: BxTxC probabilities, class 0 = blank.
    Ctc,
    /// CTC recogniser that reads a whole plate (the plate detector's box with a margin) at a fixed input
    /// size: BxTxC probabilities, class 0 = blank. No text detector runs with it.
    PlateCtc,
    /// Centre-point box detector: 1x5x(H/s)x(W/s) = [centre heat map, log w, log h, dx, dy] at a stride s
    /// read from the output size (the shipped detector: 8).
    CenterBox,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    #[default]
    Bgr,
    Rgb,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(default)]
    pub color: ColorOrder,
    /// Fixed input height (recogniser) or 0 for dynamic.
    #[serde(default)]
    pub height: u32,
    /// Maximum input width (line recogniser) or 0 for dynamic.
    #[serde(default)]
    pub max_width: u32,
    /// Fixed input width (whole-plate recogniser).
    #[serde(default)]
    pub width: u32,
    /// Dynamic sides must be a multiple of this.
    #[serde(default = "one")]
    pub multiple_of: u32,
    /// Longest side the model works at (detectors); 0 = the caller decides.
    #[serde(default)]
    pub max_side: u32,
    /// Plate detector: a second, coarse pass over the frame at this longest side (0 = none). Plates that
    /// fill a large part of the frame (a car stopped close to the camera) are bigger than the detector saw
    /// in training at `max_side`; at the coarse side they are ordinary plates. Both passes' boxes are merged.
    #[serde(default)]
    pub coarse_max_side: u32,
    /// Plate detector: a third pass at this (smaller) longest side for plates that fill half the frame or
    /// more (0 = none); below `coarse_max_side`, which it needs. Its boxes count from [`CLOSE_FROM`] of the
    /// frame's long side up.
    ///
    /// [`CLOSE_FROM`]: super::plate_detect::CLOSE_FROM
    #[serde(default)]
    pub close_max_side: u32,
    /// Plate detector: a pass at this (larger) longest side for distant plates (0 = none), run only when
    /// the pass at `max_side` found no plate at all. At `max_side` a plate 80 px wide in a 1280 px frame
    /// is 40 px, and can score under the threshold; at 800 it is 50. Only then, because where the pass at
    /// `max_side` does find the plate its box reads better (the reader was trained on crops cut like it),
    /// and running the far pass on every frame with no wide plate cost 1.43x the detector's time on the
    /// speed frames. Its boxes stand in for the `max_side` pass's in the merge with the other passes.
    #[serde(default)]
    pub far_max_side: u32,
    /// Per-image contrast stretch: the 1st..99th luminance percentile is mapped onto 0..255 with at most
    /// this gain (dim, low-contrast night plates then look like the daylight ones); 0 or 1 = off.
    #[serde(default)]
    pub auto_contrast: f32,
    /// The model takes the image as `b` x `b` pixel blocks ([N, 3*b*b, H/b, W/b], ONNX SpaceToDepth channel
    /// order; see models/train/space_to_depth.py); 0 or 1 = plain [N, 3, H, W]. Plate detectors only.
    #[serde(default)]
    pub space_to_depth: u32,
}

impl InputSpec {
    /// Side of the pixel blocks the model reads (1 = plain pixels).
    pub fn block(&self) -> u32 {
        self.space_to_depth.max(1)
    }
}

fn one() -> u32 {
    1
}

/// `(pixel / scale - mean) / std`, per channel in the model's colour order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub role: Role,
    pub kind: ModelKind,
    pub file: String,
    pub sha256: String,
    pub input: InputSpec,
    pub normalize: Normalize,
    /// Recogniser classes: `metadata:KEY` (newline-separated list in the model's metadata) or an inline string.
    #[serde(default)]
    pub charset: Option<String>,
    /// Detector: probability threshold for text pixels.
    #[serde(default)]
    pub threshold: Option<f32>,
    /// Plate detector: the score the second and further plates of a frame need (default: `threshold`).
    #[serde(default)]
    pub next_threshold: Option<f32>,
    /// Detector: minimum mean probability inside a box.
    #[serde(default)]
    pub box_threshold: Option<f32>,
    /// Detector: how far boxes grow around the shrunk text kernel.
    #[serde(default)]
    pub unclip_ratio: Option<f32>,
    /// What the model needs of the CPU; where the CPU lacks it, the next entry of the same role is used
    /// (which must exist, without `needs`).
    #[serde(default)]
    pub needs: Option<CpuNeed>,
    /// Used only when a lane's start-up check fails with the entries chosen first (one per role, after
    /// them, without `needs`): a model that reads wrong on this CPU although its file is intact. Under qemu's
    /// SME emulation the int8 reader read nothing while the float reader read right.
    #[serde(default)]
    pub fallback: bool,
    /// Keep ONNX Runtime from moving this model's 8-bit convolutions to channels-last (NHWC) layout. The
    /// plate detector is faster without it on x86-64: in NHWC its nearest-neighbour upsampling takes a slow
    /// generic path and the layout changes add transposes (see models/train/README.md).
    #[serde(default)]
    pub keep_nchw: bool,
    pub license: String,
    pub produced_by: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub metrics: Option<String>,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, RecognizeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RecognizeError::Manifest(format!("cannot read {}: {e}", path.display())))?;
        let mut m: Manifest = toml::from_str(&text)
            .map_err(|e| RecognizeError::Manifest(format!("{}: {}", path.display(), e.message())))?;
        m.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        m.validate()
            .map_err(|e| RecognizeError::Manifest(format!("{}: {e}", path.display())))?;
        Ok(m)
    }

    /// Values serde cannot check, named by model file and key.
    fn validate(&self) -> Result<(), String> {
        for spec in &self.models {
            let gain = spec.input.auto_contrast;
            if !(gain == 0.0 || (1.0..=64.0).contains(&gain)) {
                return Err(format!(
                    "model {}: input.auto_contrast = {gain} is out of range; use 0 (off) or a gain from 1 to 64 \
                     (8 suits plates)",
                    spec.file
                ));
            }
            for (key, v) in [("threshold", spec.threshold), ("next_threshold", spec.next_threshold)] {
                if let Some(v) = v.filter(|v| !(*v > 0.0 && *v <= 1.0)) {
                    return Err(format!(
                        "model {}: {key} = {v} is out of range; use a score above 0 and at most 1",
                        spec.file
                    ));
                }
            }
            let coarse = spec.input.coarse_max_side;
            if coarse > 0 && (spec.role != Role::PlateDetector || coarse < 64 || coarse >= spec.input.max_side.max(64))
            {
                return Err(format!(
                    "model {}: input.coarse_max_side = {coarse} is not usable; it is for the plate-detector only, \
                     at least 64 and below input.max_side = {} (0 = no coarse pass; 224 suits a 640 detector)",
                    spec.file, spec.input.max_side
                ));
            }
            let close = spec.input.close_max_side;
            if close > 0 && coarse == 0 {
                return Err(format!(
                    "model {}: input.close_max_side = {close} needs a coarse pass; set input.coarse_max_side \
                     (224 suits a 640 detector) or remove close_max_side",
                    spec.file
                ));
            }
            if close > 0 && (close < 64 || close >= coarse) {
                return Err(format!(
                    "model {}: input.close_max_side = {close} is not usable; it must be at least 64 and below \
                     input.coarse_max_side = {coarse} (0 = no close pass; 128 suits a 224 coarse pass)",
                    spec.file
                ));
            }
            let far = spec.input.far_max_side;
            if far > 0 && (spec.role != Role::PlateDetector || far <= spec.input.max_side || far > 4096) {
                return Err(format!(
                    "model {}: input.far_max_side = {far} is not usable; it is for the plate-detector only, \
                     above input.max_side = {} and at most 4096 (0 = no far pass; 800 suits a 640 detector)",
                    spec.file, spec.input.max_side
                ));
            }
            let b = spec.input.space_to_depth;
            if b > 1 {
                if !matches!(spec.role, Role::PlateDetector | Role::TiltedPlateDetector) || b > 4 {
                    return Err(format!(
                        "model {}: input.space_to_depth = {b} is not supported; it is for the plate detectors \
                         only, with blocks of 2 to 4 pixels (0 = off)",
                        spec.file
                    ));
                }
                if spec.input.multiple_of % b != 0 {
                    return Err(format!(
                        "model {}: input.multiple_of = {} must be a multiple of input.space_to_depth = {b}",
                        spec.file, spec.input.multiple_of
                    ));
                }
            }
        }
        let has = |role: Role| self.models.iter().any(|m| m.role == role);
        if has(Role::TiltedPlateDetector) && !has(Role::PlateDetector) {
            return Err(
                "a tilted-plate-detector looks only where the plate-detector read no clear plate; add a \
                 plate-detector entry or remove the tilted-plate-detector"
                    .into(),
            );
        }
        // Per role: entries with `needs` first, then exactly one without, so every CPU gets a model; then at
        // most one `fallback`.
        for (i, spec) in self.models.iter().enumerate() {
            let same = |m: &&ModelSpec| m.role == spec.role;
            let later = self.models[i + 1..].iter().filter(same).filter(|m| !m.fallback);
            if spec.fallback {
                let first = !self.models[..i].iter().filter(same).any(|m| !m.fallback);
                let twice = self.models[..i].iter().filter(same).any(|m| m.fallback);
                if first || twice || spec.needs.is_some() || later.clone().next().is_some() {
                    return Err(format!(
                        "model {}: a fallback comes after the {} entries it stands in for, without `needs`, and \
                         one per role",
                        spec.file,
                        spec.role.name()
                    ));
                }
                continue;
            }
            let earlier = self.models[..i].iter().filter(same).filter(|m| !m.fallback);
            if let Some(m) = earlier.clone().find(|m| spec.needs.is_some() && m.needs == spec.needs) {
                return Err(format!(
                    "model {} can never be used: the {} entry before it ({}) needs the same of the CPU; remove \
                     one of them",
                    spec.file,
                    spec.role.name(),
                    m.file
                ));
            }
            match spec.needs {
                Some(_) if later.clone().all(|m| m.needs.is_some()) => {
                    return Err(format!(
                        "model {}: it has `needs`, so a CPU without it needs another {} entry after it; add one \
                         without `needs` (e.g. the float model) or remove `needs`",
                        spec.file,
                        spec.role.name()
                    ))
                }
                None => {
                    if let Some(m) = later.clone().next() {
                        return Err(format!(
                            "model {} can never be used: the {} entry before it ({}) has no `needs`; remove one \
                             of them (or mark it `fallback = true`)",
                            m.file,
                            spec.role.name(),
                            spec.file
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The entries passed over on this CPU, each with the reason and the entry used instead (for the log).
    pub fn passed_over(&self) -> Vec<String> {
        self.models
            .iter()
            .filter_map(|m| {
                let need = m.needs.filter(|n| !self.cpu.has(*n))?;
                let used = self.optional(m.role).map_or("none", |u| u.file.as_str());
                Some(match need {
                    CpuNeed::ExactInt8 => format!(
                        "{} {} is not used: this CPU does not sum 8-bit products exactly (x86-64 without VNNI: \
                         ONNX Runtime's sums saturate there and the model reads worse); using {used}",
                        m.role.name(),
                        m.file
                    ),
                })
            })
            .collect()
    }

    /// The entries this CPU uses: per role, the first whose `needs` it meets; with [`Self::with_fallbacks`],
    /// the role's `fallback` entry instead where it has one.
    pub fn chosen(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models.iter().enumerate().filter_map(|(i, m)| {
            let has_fallback = self.models.iter().any(|e| e.role == m.role && e.fallback);
            if self.use_fallbacks && has_fallback {
                return m.fallback.then_some(m);
            }
            let usable = |m: &ModelSpec| !m.fallback && m.needs.is_none_or(|n| self.cpu.has(n));
            let first = usable(m) && !self.models[..i].iter().any(|e| e.role == m.role && usable(e));
            first.then_some(m)
        })
    }

    /// The manifest with each role's `fallback` entry in place of its first choice, when it lists any
    /// (`None` when it lists none).
    pub fn with_fallbacks(&self) -> Option<Manifest> {
        self.models.iter().any(|m| m.fallback).then(|| Manifest {
            use_fallbacks: true,
            ..self.clone()
        })
    }

    /// The files of the entries in use, for the log (`plate_detector.int8.onnx, plate_reader.int8.onnx`).
    pub fn files(&self) -> String {
        self.chosen().map(|m| m.file.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The model for a role, if the manifest has one.
    pub fn optional(&self, role: Role) -> Option<&ModelSpec> {
        self.chosen().find(|m| m.role == role)
    }

    pub fn model(&self, role: Role) -> Result<&ModelSpec, RecognizeError> {
        self.optional(role)
            .ok_or_else(|| RecognizeError::Manifest(format!("no model with role {role:?} in the manifest")))
    }

    pub fn path_of(&self, spec: &ModelSpec) -> PathBuf {
        self.dir.join(&spec.file)
    }

    /// Reads a model file and checks its sha256 against the manifest.
    pub fn read_verified(&self, spec: &ModelSpec) -> Result<Vec<u8>, RecognizeError> {
        let path = self.path_of(spec);
        let bytes = std::fs::read(&path).map_err(|e| {
            RecognizeError::Manifest(format!(
                "cannot read model {}: {e} (run scripts/setup.sh)",
                path.display()
            ))
        })?;
        let got = hex::encode(Sha256::digest(&bytes));
        if !got.eq_ignore_ascii_case(&spec.sha256) {
            return Err(RecognizeError::Manifest(format!(
                "model {} has sha256 {got}, the manifest says {}; re-run scripts/setup.sh or fix the manifest",
                path.display(),
                spec.sha256
            )));
        }
        Ok(bytes)
    }

    /// Reads every model the manifest lists and checks its sha256, as `run` does before loading them
    /// (`check-config` calls it so a model `run` would refuse is not reported as OK).
    pub fn verify_files(&self) -> Result<(), RecognizeError> {
        for spec in &self.models {
            self.read_verified(spec)?;
        }
        Ok(())
    }

    /// Short identity for `--version` and logs: role=first 12 hex of sha256, for the models this CPU uses.
    pub fn fingerprint(&self) -> String {
        self.chosen()
            .map(|m| format!("{}={}", m.role.name(), m.sha256.chars().take(12).collect::<String>()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_plate_reader_entry_parses_with_its_fixed_size_and_inline_charset() {
        let m: Manifest = toml::from_str(
            r#"
[[model]]
role = "recognizer"
kind = "plate-ctc"
file = "plate_reader.onnx"
sha256 = "00"
input = { color = "bgr", height = 48, width = 160 }
normalize = { scale = 255.0, mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }
charset = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
license = "Apache-2.0"
produced_by = "test"
"#,
        )
        .expect("parses");
        let rec = m.model(Role::Recognizer).expect("recognizer");
        assert_eq!(rec.kind, ModelKind::PlateCtc);
        assert_eq!((rec.input.height, rec.input.width), (48, 160));
        assert!(m.optional(Role::Detector).is_none());
        let bad = toml::from_str::<Manifest>(
            r#"
[[model]]
role = "recognizer"
kind = "plate-ctc"
file = "x.onnx"
sha256 = "00"
input = { height = 48, widht = 160 }
normalize = { scale = 255.0, mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }
license = "x"
produced_by = "x"
"#,
        );
        assert!(bad.is_err_and(|e| e.to_string().contains("widht")));
    }

    #[test]
    fn an_out_of_range_contrast_gain_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("manifest.toml");
        let entry = |gain: &str| {
            format!(
                r#"
[[model]]
role = "recognizer"
kind = "plate-ctc"
file = "r.onnx"
sha256 = "00"
input = {{ height = 48, width = 160, auto_contrast = {gain} }}
normalize = {{ scale = 255.0, mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}
license = "x"
produced_by = "x"
"#
            )
        };
        std::fs::write(&path, entry("8.0")).expect("write");
        assert_eq!(Manifest::load(&path).expect("loads").models[0].input.auto_contrast, 8.0);
        for bad in ["-1.0", "0.5", "nan", "1000.0"] {
            std::fs::write(&path, entry(bad)).expect("write");
            let err = Manifest::load(&path).expect_err(bad).to_string();
            assert!(err.contains("input.auto_contrast") && err.contains("r.onnx"), "{err}");
        }
    }

    #[test]
    fn pixel_blocks_are_for_the_plate_detector_and_must_fit_its_sides() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("manifest.toml");
        let entry = |role: &str, input: &str| center_box_entry(role, "d.onnx", input);
        std::fs::write(&path, entry("plate-detector", "multiple_of = 32, space_to_depth = 2")).expect("write");
        let m = Manifest::load(&path).expect("loads");
        assert_eq!(m.models[0].input.block(), 2);
        std::fs::write(&path, entry("plate-detector", "multiple_of = 32")).expect("write");
        let m = Manifest::load(&path).expect("loads");
        assert_eq!(m.models[0].input.block(), 1, "off by default");
        assert!(!m.models[0].keep_nchw, "ONNX Runtime's layout choice by default");
        // The shipped manifest: its detector reads 2x2 blocks and keeps NCHW (models/train/README.md).
        let mut shipped = Manifest::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/manifest.toml"))
            .expect("shipped manifest loads");
        shipped.cpu = Cpu { exact_int8: true };
        let det = shipped.model(Role::PlateDetector).expect("plate detector");
        assert!(det.input.block() == 2 && det.keep_nchw);
        assert!(
            det.next_threshold > det.threshold,
            "further plates need more than the best one"
        );
        let bad = entry("plate-detector", "multiple_of = 32").replace("license", "next_threshold = 1.5\nlicense");
        std::fs::write(&path, bad).expect("write");
        let err = Manifest::load(&path).expect_err("1.5").to_string();
        assert!(err.contains("next_threshold = 1.5") && err.contains("d.onnx"), "{err}");
        for (role, input) in [
            ("detector", "multiple_of = 32, space_to_depth = 2"),
            ("plate-detector", "multiple_of = 32, space_to_depth = 8"),
            ("plate-detector", "multiple_of = 3, space_to_depth = 2"),
        ] {
            std::fs::write(&path, entry(role, input)).expect("write");
            let err = Manifest::load(&path).expect_err(input).to_string();
            assert!(err.contains("input.space_to_depth") && err.contains("d.onnx"), "{err}");
        }
    }

    #[test]
    fn a_tilted_plate_detector_needs_a_plate_detector_and_takes_one_pass() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("manifest.toml");
        let entry = center_box_entry;
        let plate = entry("plate-detector", "p.onnx", "max_side = 640, multiple_of = 32");
        let tilted = entry(
            "tilted-plate-detector",
            "t.onnx",
            "max_side = 640, multiple_of = 32, space_to_depth = 2",
        );
        std::fs::write(&path, plate.clone() + &tilted).expect("write");
        let m = Manifest::load(&path).expect("loads");
        let t = m.model(Role::TiltedPlateDetector).expect("tilted");
        assert_eq!((t.file.as_str(), t.input.block()), ("t.onnx", 2));
        assert_eq!(m.model(Role::PlateDetector).expect("plate").file, "p.onnx");
        // alone it would never run
        std::fs::write(&path, &tilted).expect("write");
        let err = Manifest::load(&path).expect_err("alone").to_string();
        assert!(
            err.contains("tilted-plate-detector") && err.contains("add a plate-detector"),
            "{err}"
        );
        // one pass at max_side: the coarse, close and far passes are the plate detector's
        for input in [
            "max_side = 640, coarse_max_side = 224",
            "max_side = 640, far_max_side = 800",
        ] {
            std::fs::write(&path, plate.clone() + &entry("tilted-plate-detector", "t.onnx", input)).expect("write");
            let err = Manifest::load(&path).expect_err(input).to_string();
            assert!(err.contains("t.onnx") && err.contains("plate-detector only"), "{err}");
        }
    }

    #[test]
    fn a_coarse_pass_is_for_the_plate_detector_below_its_side() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("manifest.toml");
        let entry = |role: &str, input: &str| center_box_entry(role, "d.onnx", input);
        std::fs::write(&path, entry("plate-detector", "max_side = 640, coarse_max_side = 224")).expect("write");
        assert_eq!(
            Manifest::load(&path).expect("loads").models[0].input.coarse_max_side,
            224
        );
        for (role, input) in [
            ("plate-detector", "max_side = 640, coarse_max_side = 640"),
            ("plate-detector", "max_side = 640, coarse_max_side = 32"),
            ("detector", "max_side = 640, coarse_max_side = 224"),
        ] {
            std::fs::write(&path, entry(role, input)).expect("write");
            let err = Manifest::load(&path).expect_err(input).to_string();
            assert!(err.contains("input.coarse_max_side") && err.contains("d.onnx"), "{err}");
        }
        std::fs::write(
            &path,
            entry(
                "plate-detector",
                "max_side = 640, coarse_max_side = 224, close_max_side = 128",
            ),
        )
        .expect("write");
        assert_eq!(
            Manifest::load(&path).expect("loads").models[0].input.close_max_side,
            128
        );
        for input in [
            "max_side = 640, close_max_side = 128",
            "max_side = 640, coarse_max_side = 224, close_max_side = 224",
            "max_side = 640, coarse_max_side = 224, close_max_side = 48",
        ] {
            std::fs::write(&path, entry("plate-detector", input)).expect("write");
            let err = Manifest::load(&path).expect_err(input).to_string();
            assert!(err.contains("input.close_max_side") && err.contains("d.onnx"), "{err}");
        }
        std::fs::write(&path, entry("plate-detector", "max_side = 640, far_max_side = 800")).expect("write");
        assert_eq!(Manifest::load(&path).expect("loads").models[0].input.far_max_side, 800);
        for (role, input) in [
            ("plate-detector", "max_side = 640, far_max_side = 640"),
            ("plate-detector", "max_side = 640, far_max_side = 320"),
            ("plate-detector", "max_side = 640, far_max_side = 8192"),
            ("detector", "max_side = 640, far_max_side = 800"),
        ] {
            std::fs::write(&path, entry(role, input)).expect("write");
            let err = Manifest::load(&path).expect_err(input).to_string();
            assert!(err.contains("input.far_max_side") && err.contains("d.onnx"), "{err}");
        }
        let mut shipped = Manifest::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/manifest.toml"))
            .expect("shipped manifest loads");
        shipped.cpu = Cpu { exact_int8: true };
        let det = shipped.model(Role::PlateDetector).expect("plate detector");
        assert!(det.input.coarse_max_side > 0, "the shipped detector finds close-ups");
        assert!(
            det.input.far_max_side > det.input.max_side,
            "and looks again for distant plates"
        );
    }

    /// A `center-box` entry of `role` for `file` with the given `input` keys.
    fn center_box_entry(role: &str, file: &str, input: &str) -> String {
        format!(
            r#"
[[model]]
role = "{role}"
kind = "center-box"
file = "{file}"
sha256 = "00"
input = {{ {input} }}
normalize = {{ scale = 255.0, mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}
license = "x"
produced_by = "x"
"#
        )
    }

    fn detector_entry(file: &str, needs: &str) -> String {
        format!(
            r#"
[[model]]
role = "plate-detector"
kind = "center-box"
file = "{file}"
sha256 = "{file}00"
{needs}
input = {{ multiple_of = 32 }}
normalize = {{ scale = 255.0, mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}
license = "x"
produced_by = "x"
"#
        )
    }

    #[test]
    fn an_int8_model_is_passed_over_on_a_cpu_whose_8_bit_sums_saturate() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("manifest.toml");
        let text = detector_entry("q.onnx", "needs = \"exact-int8\"") + &detector_entry("f.onnx", "");
        std::fs::write(&path, text).expect("write");
        let mut m = Manifest::load(&path).expect("loads");
        m.cpu = Cpu { exact_int8: true };
        assert_eq!(m.model(Role::PlateDetector).expect("detector").file, "q.onnx");
        assert!(m.passed_over().is_empty());
        assert_eq!(m.fingerprint(), "plate-detector=q.onnx00");
        m.cpu = Cpu { exact_int8: false };
        assert_eq!(m.model(Role::PlateDetector).expect("detector").file, "f.onnx");
        assert_eq!(m.fingerprint(), "plate-detector=f.onnx00");
        let notes = m.passed_over();
        assert!(
            notes.len() == 1 && notes[0].contains("q.onnx") && notes[0].contains("VNNI") && notes[0].contains("f.onnx"),
            "{notes:?}"
        );
    }

    #[test]
    fn a_cpu_need_without_a_fallback_or_an_entry_never_used_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("manifest.toml");
        std::fs::write(&path, detector_entry("q.onnx", "needs = \"exact-int8\"")).expect("write");
        let err = Manifest::load(&path).expect_err("no fallback").to_string();
        assert!(err.contains("q.onnx") && err.contains("without `needs`"), "{err}");
        std::fs::write(
            &path,
            detector_entry("f.onnx", "") + &detector_entry("q.onnx", "needs = \"exact-int8\""),
        )
        .expect("write");
        let err = Manifest::load(&path).expect_err("unreachable").to_string();
        assert!(
            err.contains("q.onnx can never be used") && err.contains("f.onnx"),
            "{err}"
        );
        std::fs::write(
            &path,
            detector_entry("q.onnx", "needs = \"vnni\"") + &detector_entry("f.onnx", ""),
        )
        .expect("write");
        let err = Manifest::load(&path).expect_err("unknown need").to_string();
        assert!(err.contains("exact-int8"), "{err}");
        let needs = "needs = \"exact-int8\"";
        std::fs::write(
            &path,
            detector_entry("q.onnx", needs) + &detector_entry("r.onnx", needs) + &detector_entry("f.onnx", ""),
        )
        .expect("write");
        let err = Manifest::load(&path)
            .expect_err("the second can never be used")
            .to_string();
        assert!(
            err.contains("r.onnx can never be used") && err.contains("q.onnx"),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_manifest_has_a_detector_for_cpus_without_vnni_and_both_files_match() {
        let mut m = Manifest::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/manifest.toml"))
            .expect("shipped manifest loads");
        m.verify_files().expect("every listed file matches its sha256");
        m.cpu = Cpu { exact_int8: true };
        let int8 = m.model(Role::PlateDetector).expect("detector").clone();
        m.cpu = Cpu { exact_int8: false };
        let other = m.model(Role::PlateDetector).expect("detector").clone();
        assert_eq!(int8.needs, Some(CpuNeed::ExactInt8));
        assert!(other.needs.is_none() && other.file != int8.file, "{}", other.file);
        assert_eq!(
            (
                other.input.coarse_max_side,
                other.input.close_max_side,
                other.input.far_max_side
            ),
            (
                int8.input.coarse_max_side,
                int8.input.close_max_side,
                int8.input.far_max_side
            ),
            "the same passes on every CPU"
        );
        assert_eq!(
            m.model(Role::Recognizer).expect("reader").file,
            "plate_reader.int8.onnx"
        );
    }

    #[test]
    fn a_fallback_entry_stands_in_only_when_asked_and_follows_its_role() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("manifest.toml");
        let write = |entries: &[(&str, &str)]| {
            let text: String = entries.iter().map(|(f, extra)| detector_entry(f, extra)).collect();
            std::fs::write(&path, text).expect("write");
        };
        write(&[
            ("q.onnx", "needs = \"exact-int8\""),
            ("u.onnx", ""),
            ("f.onnx", "fallback = true"),
        ]);
        let mut m = Manifest::load(&path).expect("loads");
        m.cpu = Cpu { exact_int8: true };
        assert_eq!(m.files(), "q.onnx");
        assert_eq!(m.fingerprint(), "plate-detector=q.onnx00", "the fallback is not in use");
        let fb = m.with_fallbacks().expect("a manifest with a fallback");
        assert_eq!(fb.files(), "f.onnx");
        m.cpu = Cpu { exact_int8: false };
        assert_eq!(m.files(), "u.onnx");
        assert_eq!(m.with_fallbacks().expect("fallback").files(), "f.onnx");
        write(&[("u.onnx", "")]);
        assert!(Manifest::load(&path).expect("loads").with_fallbacks().is_none());
        for bad in [
            vec![("f.onnx", "fallback = true"), ("u.onnx", "")],
            vec![
                ("u.onnx", ""),
                ("f.onnx", "fallback = true"),
                ("g.onnx", "fallback = true"),
            ],
            vec![("u.onnx", ""), ("f.onnx", "fallback = true\nneeds = \"exact-int8\"")],
            vec![
                ("q.onnx", "needs = \"exact-int8\""),
                ("f.onnx", "fallback = true"),
                ("u.onnx", ""),
            ],
        ] {
            write(&bad);
            let err = Manifest::load(&path).expect_err("refused").to_string();
            assert!(err.contains("a fallback comes after"), "{err}");
        }
    }
}
