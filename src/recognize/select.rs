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

#[cfg(test)]
mod tests {
    use super::*;
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
}
