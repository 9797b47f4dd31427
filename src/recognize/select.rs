//! Which text in a frame is the plate: a plate-likeness score over the recogniser's reads.
//! (The general text detector also finds state names, slogans, dealer frames and timestamps.)

use super::ctc::Decoded;

/// Plate-likeness of a decoded read, 0 when it cannot be a plate.
/// `height_ratio` is the box height relative to the tallest text box in the frame.
pub fn plate_score(d: &Decoded, min_len: usize, max_len: usize, height_ratio: f32) -> f32 {
    let n = d.chars.len();
    if n < min_len || n > max_len {
        return 0.0;
    }
    let mean = d.chars.iter().map(|c| c.conf).sum::<f32>() / n as f32;
    let digits = d.chars.iter().filter(|c| c.ch.is_ascii_digit()).count();
    let mut score = mean;
    if digits == 0 {
        score *= 0.4; // words: state names, slogans
    }
    if d.others * 4 > n {
        score *= 0.5; // timestamps, phone numbers with separators
    }
    score * (0.6 + 0.4 * height_ratio.clamp(0.0, 1.0))
}

/// How much the plate detector's score counts: half the rank rests on it, half on the read alone, so a
/// clean read of a box the detector was unsure of (a dim or distant plate) can still win.
fn detector_weight(detector_score: f32) -> f32 {
    0.5 + 0.5 * detector_score.clamp(0.0, 1.0)
}

/// Rank of a whole-plate read: its plate-likeness ([`plate_score`]), its least sure character and the
/// detector's score. Of two plates in a frame the one read cleanly comes first (a distant or cut-off plate
/// has an unsure character); a read that cannot be a plate (likeness 0) ranks 0.
pub fn rank_plate(likeness: f32, least_sure: f32, detector_score: f32) -> f32 {
    likeness.max(0.0) * least_sure.clamp(0.0, 1.0) * detector_weight(detector_score)
}

/// Rank of a text line read inside a plate box (line recognisers): its plate-likeness and the detector's score.
pub fn rank_line(likeness: f32, detector_score: f32) -> f32 {
    likeness.max(0.0) * detector_weight(detector_score)
}

/// Orders a frame's candidates best first (by rank; equal ranks keep their order).
pub fn best_first(candidates: &mut [super::PlateCandidate]) {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
}

/// Reads a frame's detector boxes (best first): the first `max` in one batch, then, when fewer than `max`
/// of them read a plate (a brake light, a logo or a sign can outscore a plate), as many of the spare boxes
/// behind them as are missing, in a second batch. `read` returns the plates a batch of boxes read.
pub fn read_with_spares<B, P, E>(
    mut boxes: Vec<B>,
    max: usize,
    mut read: impl FnMut(Vec<B>) -> Result<Vec<P>, E>,
) -> Result<Vec<P>, E> {
    let spares = boxes.split_off(boxes.len().min(max));
    let mut plates = read(boxes)?;
    let short = max.saturating_sub(plates.len());
    if short > 0 && !spares.is_empty() {
        plates.extend(read(spares.into_iter().take(short).collect())?);
    }
    Ok(plates)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Boxes named by what they read: "" reads no plate.
    fn reads<'a>(
        batches: &'a mut Vec<Vec<&'static str>>,
    ) -> impl FnMut(Vec<&'static str>) -> Result<Vec<&'static str>, ()> + 'a {
        |boxes: Vec<&'static str>| {
            batches.push(boxes.clone());
            Ok(boxes.into_iter().filter(|b| !b.is_empty()).collect())
        }
    }

    #[test]
    fn a_box_that_reads_no_plate_gives_its_place_to_the_next() {
        let mut batches = Vec::new();
        let plates = read_with_spares(vec!["", "SIGN1", "1AMW240", "LATER"], 2, reads(&mut batches)).unwrap();
        assert_eq!(plates, ["SIGN1", "1AMW240"]);
        assert_eq!(
            batches,
            [vec!["", "SIGN1"], vec!["1AMW240"]],
            "one spare read, in a second batch"
        );
    }

    #[test]
    fn spares_are_not_read_when_every_box_read_a_plate_or_there_are_none() {
        let mut batches = Vec::new();
        let plates = read_with_spares(vec!["ABC123", "XYZ789", "SPARE"], 2, reads(&mut batches)).unwrap();
        assert_eq!(plates, ["ABC123", "XYZ789"]);
        assert_eq!(batches.len(), 1, "no second batch: {batches:?}");
        let mut batches = Vec::new();
        let plates = read_with_spares(vec!["", ""], 2, reads(&mut batches)).unwrap();
        assert!(plates.is_empty());
        assert_eq!(batches.len(), 1, "no spares, no second batch");
        let mut batches = Vec::new();
        let plates = read_with_spares(vec!["", "", "", "P1", "P2"], 2, reads(&mut batches)).unwrap();
        assert_eq!(plates, ["P1"], "the spares fill the missing places only");
        assert_eq!(batches, [vec!["", ""], vec!["", "P1"]]);
    }
    use crate::recognize::CharRead;

    fn dec(text: &str, others: usize) -> Decoded {
        Decoded {
            chars: text
                .chars()
                .map(|ch| CharRead {
                    ch,
                    conf: 0.9,
                    alt: None,
                })
                .collect(),
            others,
        }
    }

    #[test]
    fn plates_beat_words_and_timestamps() {
        let plate = plate_score(&dec("7ABC123", 0), 4, 8, 1.0);
        let word = plate_score(&dec("TEXAS", 0), 4, 8, 1.0);
        let time = plate_score(&dec("120000", 2), 4, 8, 1.0);
        assert!(plate > word && plate > time);
        assert_eq!(plate_score(&dec("CALIFORNIA", 0), 4, 8, 1.0), 0.0);
        assert_eq!(plate_score(&dec("AB", 0), 4, 8, 1.0), 0.0);
    }

    #[test]
    fn a_clean_read_outranks_an_unsure_one_and_the_detector_breaks_ties() {
        // two plates read equally plate-like: the one with no unsure character comes first
        assert!(rank_plate(0.9, 0.95, 0.6) > rank_plate(0.9, 0.5, 0.6));
        // the same read: the box the detector is surer of comes first
        assert!(rank_plate(0.9, 0.9, 0.8) > rank_plate(0.9, 0.9, 0.4));
        // but the detector alone does not carry an unsure read past a clean one
        assert!(rank_plate(0.9, 0.95, 0.3) > rank_plate(0.9, 0.6, 1.0));
        // not a plate at all: rank 0, whatever the detector says
        assert_eq!(rank_plate(0.0, 1.0, 1.0), 0.0);
        assert_eq!(rank_line(0.0, 1.0), 0.0);
        // out-of-range inputs are clamped, never above a perfect read
        assert!(rank_plate(1.0, 2.0, 3.0) <= 1.0);
        assert!(rank_line(0.8, 0.9) > rank_line(0.8, 0.1));
    }

    #[test]
    fn candidates_are_ordered_best_first_and_ties_keep_their_order() {
        use crate::recognize::FakeReader;
        let mut c = vec![
            FakeReader::candidate("AAA111", 0.5),
            FakeReader::candidate("BBB222", 0.9),
            FakeReader::candidate("CCC333", 0.5),
        ];
        best_first(&mut c);
        let order: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(order, ["BBB222", "AAA111", "CCC333"]);
    }
}
