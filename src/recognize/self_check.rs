//! The reader's start-up check: before a lane trusts its reader, the reader must read a clean rendered
//! plate right. A model file can pass its sha256 check and still read nothing on a CPU whose integer
//! kernels misbehave: under qemu's `max` CPU (with SME), ONNX Runtime 1.31's int8 reader read no plate at
//! all, while the same files read right as a Cortex-A76 (cross/qemu-demo.sh). A lane whose reader fails
//! this check is given the manifest's `fallback` models (the float reader) and checked again; if those fail
//! too (or there are none), it reads no plate and raises the recognition alert, like a lane whose models are
//! missing, instead of silently opening for nobody.

use std::path::Path;

use super::{Manifest, OnnxPlateReader, PlateReader, ReaderOptions, RecognizeError};

/// The plate the check renders (the demo video's first resident, drawn the same way), cut or lengthened to
/// the plate lengths the lane reads ([`check_plate`]).
pub const CHECK_PLATE: &str = "HXP4729";
/// Characters added after [`CHECK_PLATE`] for a lane that reads only plates longer than it.
const LONGER: &str = "305";

/// The check's plate for a lane that reads plates of `min_len..=max_len` characters: [`CHECK_PLATE`] where
/// its 7 characters are allowed, else cut to `max_len` or lengthened to `min_len`.
pub fn check_plate(min_len: usize, max_len: usize) -> String {
    let len = CHECK_PLATE.len().clamp(min_len.max(1), max_len.max(min_len).max(1));
    CHECK_PLATE.chars().chain(LONGER.chars()).cycle().take(len).collect()
}

/// Where in its approach the check's car is: stopped at the gate, its plate about 190 px wide.
const CHECK_PROGRESS: f32 = 0.8;

/// Reads one rendered frame with `plate` ([`check_plate`]) on a car at the gate; Ok when the reader's best
/// read is that plate, an error naming what it read otherwise.
pub fn self_check(reader: &mut dyn PlateReader, plate: &str) -> Result<(), RecognizeError> {
    let frame = crate::demo::frame(Some((plate, CHECK_PROGRESS)), "", 1)
        .map_err(|e| RecognizeError::SelfCheck(format!("could not render the check plate: {e}")))?;
    let reads = reader.read(&frame, None)?;
    match reads.candidates.first() {
        Some(best) if best.text == plate => Ok(()),
        best => Err(RecognizeError::SelfCheck(format!(
            "the reader read {} from a clean rendered plate {plate}: its models or ONNX Runtime's kernels do \
             not work on this CPU (the manifest's `fallback = true` entries, such as the float reader \
             plate_reader.onnx, are tried where it lists them)",
            best.map_or("nothing".to_string(), |b| format!("{:?}", b.text))
        ))),
    }
}

/// A reader built from a manifest and checked at start ([`checked_reader`]).
pub struct CheckedReader {
    pub reader: OnnxPlateReader,
    /// The manifest the reader was built from: the one given, or its fallbacks.
    pub manifest: Manifest,
    /// Set when the fallbacks are in use: what failed and what reads instead (for the log).
    pub note: Option<String>,
}

/// Builds the reader `manifest` describes and runs [`self_check`] on it with `plate`. When the check fails
/// and the manifest lists `fallback` entries, the reader is built from those and checked instead, and the
/// note says so. The error is the first check's (with the fallback's failure appended) when none reads.
pub fn checked_reader(
    manifest: &Manifest,
    library: Option<&Path>,
    opts: &ReaderOptions,
    plate: &str,
) -> Result<CheckedReader, RecognizeError> {
    let build = |m: &Manifest| -> Result<OnnxPlateReader, RecognizeError> {
        let mut reader = OnnxPlateReader::new(m, library, opts.clone())?;
        self_check(&mut reader, plate)?;
        Ok(reader)
    };
    match (build(manifest), manifest.with_fallbacks()) {
        (Ok(reader), _) => Ok(CheckedReader {
            reader,
            manifest: manifest.clone(),
            note: None,
        }),
        (Err(RecognizeError::SelfCheck(first)), Some(fallback)) => match build(&fallback) {
            Ok(reader) => Ok(CheckedReader {
                reader,
                note: Some(format!(
                    "start-up check: {first}; the manifest's fallback models read the check plate right, so \
                     plates are read with {} instead of {} (slower)",
                    fallback.files(),
                    manifest.files()
                )),
                manifest: fallback,
            }),
            Err(again) => Err(RecognizeError::SelfCheck(format!(
                "{first}; the fallback models ({}) failed too: {}",
                fallback.files(),
                match again {
                    RecognizeError::SelfCheck(why) => why,
                    other => other.to_string(),
                }
            ))),
        },
        (Err(e), _) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recognize::FakeReader;

    #[test]
    fn a_reader_that_reads_the_check_plate_passes() {
        let mut r = FakeReader::new(vec![Some((CHECK_PLATE, 0.99))]);
        assert!(self_check(&mut r, CHECK_PLATE).is_ok());
    }

    #[test]
    fn a_reader_that_reads_nothing_or_another_plate_fails_and_says_what_it_read() {
        let mut r = FakeReader::new(vec![None]);
        let e = self_check(&mut r, CHECK_PLATE).expect_err("nothing read").to_string();
        assert!(e.contains("read nothing") && e.contains(CHECK_PLATE), "{e}");
        let mut r = FakeReader::new(vec![Some(("HXP4728", 0.99))]);
        let e = self_check(&mut r, CHECK_PLATE).expect_err("misread").to_string();
        assert!(e.contains("\"HXP4728\""), "{e}");
    }

    #[test]
    fn the_check_plate_fits_the_lengths_a_lane_reads() {
        assert_eq!(check_plate(4, 10), CHECK_PLATE);
        assert_eq!(check_plate(4, 6), "HXP472");
        assert_eq!(check_plate(9, 10), "HXP472930");
        assert_eq!(check_plate(7, 7), CHECK_PLATE);
    }
}
