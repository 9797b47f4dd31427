//! Regional plate formats as priors: they settle O/0, I/1, B/8, S/5, Z/2, G/6 only where a region's
//! format decides them. `br`: LLL-DDDD and Mercosul LLL-DLDD. `us`, `eu` and `none`: no prior (US formats
//! vary by state and series; the reader, trained on US plates, tells O from 0 by context better than a
//! blanket rule: the US crops' labels have the letter O in 8 of 391 plates, all read right without a
//! prior, all wrong with "O is 0"). Custom patterns use L (letter), D (digit) and * (either). Access
//! decisions treat look-alikes as one class anyway (`plate::confusion_class`).

use serde::Deserialize;

use super::CharRead;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FormatPrior {
    /// Patterns such as "LLLDDDD"; a read of the same length is fitted to the pattern that needs the
    /// fewest swaps between look-alike letters and digits.
    #[serde(default)]
    pub patterns: Vec<String>,
}

/// A character the prior rewrote is never reported as more certain than this: the format, not the
/// image, chose it (access decisions treat it as an unsure character).
const REWRITTEN_CONF: f32 = 0.9;

fn to_letter(c: char) -> Option<char> {
    Some(match c {
        '0' => 'O',
        '1' => 'I',
        '2' => 'Z',
        '5' => 'S',
        '6' => 'G',
        '8' => 'B',
        c if c.is_ascii_uppercase() => c,
        _ => return None,
    })
}

fn to_digit(c: char) -> Option<char> {
    Some(match c {
        'O' | 'D' | 'Q' => '0',
        'I' | 'L' => '1',
        'Z' => '2',
        'S' => '5',
        'G' => '6',
        'B' => '8',
        c if c.is_ascii_digit() => c,
        _ => return None,
    })
}

impl FormatPrior {
    /// The prior of a named region (`us`, `br`, `eu`, `none`).
    pub fn region(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "br" => Some(Self {
                patterns: vec!["LLLDDDD".into(), "LLLDLDD".into()],
            }),
            "us" | "eu" | "none" => Some(Self::default()),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Applies the prior in place; a changed character keeps the original reading as its alternative.
    pub fn apply(&self, chars: &mut [CharRead]) {
        let mut best: Option<(usize, Vec<char>)> = None;
        for p in self.patterns.iter().filter(|p| p.len() == chars.len()) {
            let fitted: Option<Vec<char>> = p
                .chars()
                .zip(chars.iter())
                .map(|(k, c)| match k {
                    'L' => to_letter(c.ch),
                    'D' => to_digit(c.ch),
                    _ => Some(c.ch),
                })
                .collect();
            if let Some(f) = fitted {
                let swaps = f.iter().zip(chars.iter()).filter(|(a, c)| **a != c.ch).count();
                if best.as_ref().is_none_or(|(s, _)| swaps < *s) {
                    best = Some((swaps, f));
                }
            }
        }
        if let Some((_, fitted)) = best {
            for (c, f) in chars.iter_mut().zip(fitted) {
                if c.ch != f {
                    c.alt = Some((c.ch, c.conf));
                    c.ch = f;
                    c.conf = c.conf.min(REWRITTEN_CONF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<CharRead> {
        s.chars()
            .map(|ch| CharRead {
                ch,
                conf: 0.9,
                alt: None,
            })
            .collect()
    }

    fn text(c: &[CharRead]) -> String {
        c.iter().map(|c| c.ch).collect()
    }

    #[test]
    fn us_keeps_the_readers_o_and_0() {
        let mut c = chars("NOX218");
        FormatPrior::region("us").expect("us").apply(&mut c);
        assert_eq!(text(&c), "NOX218");
        assert!(c.iter().all(|c| c.alt.is_none()));
    }

    #[test]
    fn br_fits_letters_and_digits_to_the_format() {
        let p = FormatPrior::region("br").expect("br");
        let mut c = chars("A8C1234");
        p.apply(&mut c);
        assert_eq!(text(&c), "ABC1234");
        let mut m = chars("BRA2E19");
        p.apply(&mut m);
        assert_eq!(text(&m), "BRA2E19", "Mercosul format kept");
        let mut odd = chars("AB12");
        p.apply(&mut odd);
        assert_eq!(text(&odd), "AB12", "other lengths untouched");
    }
}
