//! CTC decoding restricted to plate characters (A-Z, 0-9), with per-character confidence, the best
//! alternative per character, and ranked alternative texts.

/// What a recogniser class means for plates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassKind {
    Blank,
    /// A plate character (upper-cased).
    Plate(char),
    /// Anything else (separators, other scripts): emitted characters are dropped but counted.
    Other,
}

/// Maps recogniser class labels to plate meanings.
pub fn class_kinds(labels: &[String]) -> Vec<ClassKind> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                return ClassKind::Blank;
            }
            let mut chars = l.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii_alphanumeric() => ClassKind::Plate(c.to_ascii_uppercase()),
                _ => ClassKind::Other,
            }
        })
        .collect()
}

/// Result of decoding one sequence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub chars: Vec<super::CharRead>,
    /// Emitted non-plate characters (separators, other scripts).
    pub others: usize,
}

/// Greedy CTC over `t` steps of `c` class probabilities. `plate_classes` lists the indices of plate classes.
/// A step whose best class is not a plate character still yields the best plate class when that class is
/// at least `rescue` likely (a letter read as a look-alike symbol).
pub fn decode(probs: &[f32], t: usize, c: usize, kinds: &[ClassKind], plate_classes: &[usize], rescue: f32) -> Decoded {
    let mut out = Decoded::default();
    let mut prev: usize = 0;
    for step in 0..t {
        let row = &probs[step * c..(step + 1) * c];
        let (best, best_p) = argmax(row);
        if best == 0 || best == prev {
            // blank, or the same class continuing: keep the higher confidence
            if best != 0 && best == prev {
                if let Some(last) = out.chars.last_mut() {
                    if matches!(kinds.get(best), Some(ClassKind::Plate(_))) && best_p > last.conf {
                        last.conf = best_p;
                    }
                }
            }
            prev = best;
            continue;
        }
        prev = best;
        // Best and second-best plate classes at this step.
        let (mut p1, mut p1v, mut p2, mut p2v) = (usize::MAX, -1.0f32, usize::MAX, -1.0f32);
        for &k in plate_classes {
            let v = row[k];
            if v > p1v {
                (p2, p2v) = (p1, p1v);
                (p1, p1v) = (k, v);
            } else if v > p2v {
                (p2, p2v) = (k, v);
            }
        }
        let ch_of = |k: usize| match kinds.get(k) {
            Some(ClassKind::Plate(ch)) => Some(*ch),
            _ => None,
        };
        match kinds.get(best) {
            Some(ClassKind::Plate(ch)) => {
                let alt_idx = if p1 == best { p2 } else { p1 };
                let alt_p = if p1 == best { p2v } else { p1v };
                let alt = ch_of(alt_idx).filter(|a| a != ch).map(|a| (a, alt_p));
                out.chars.push(super::CharRead {
                    ch: *ch,
                    conf: best_p,
                    alt,
                });
            }
            _ if p1v >= rescue => {
                if let Some(ch) = ch_of(p1) {
                    let alt = ch_of(p2).map(|a| (a, p2v));
                    out.chars.push(super::CharRead { ch, conf: p1v, alt });
                }
            }
            _ => out.others += 1,
        }
    }
    out
}

fn argmax(row: &[f32]) -> (usize, f32) {
    let mut best = 0;
    let mut bv = f32::MIN;
    for (i, &v) in row.iter().enumerate() {
        if v > bv {
            bv = v;
            best = i;
        }
    }
    (best, bv)
}

/// Ranked alternative texts: the read itself, then single swaps at the least certain characters.
pub fn alternatives(chars: &[super::CharRead], n: usize) -> Vec<(String, f32)> {
    let text: String = chars.iter().map(|c| c.ch).collect();
    let base: f32 = chars.iter().map(|c| c.conf.max(1e-6).ln()).sum();
    let mut out = vec![(text, base.exp())];
    let mut swaps: Vec<(usize, char, f32)> = chars
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            c.alt
                .map(|(a, p)| (i, a, base - c.conf.max(1e-6).ln() + p.max(1e-6).ln()))
        })
        .collect();
    swaps.sort_by(|a, b| b.2.total_cmp(&a.2));
    for (i, a, score) in swaps.into_iter().take(n.saturating_sub(1)) {
        let t: String = chars
            .iter()
            .enumerate()
            .map(|(j, c)| if j == i { a } else { c.ch })
            .collect();
        out.push((t, score.exp()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> Vec<ClassKind> {
        class_kinds(&["blank", "A", "b", "1", "-", "0", "O"].map(String::from))
    }

    fn step(c: usize, hot: usize, p: f32, second: Option<(usize, f32)>) -> Vec<f32> {
        let mut row = vec![(1.0 - p) / c as f32; c];
        row[hot] = p;
        if let Some((k, v)) = second {
            row[k] = v;
        }
        row
    }

    #[test]
    fn collapses_repeats_and_blanks_and_drops_separators() {
        let k = kinds();
        let plate: Vec<usize> = (0..k.len()).filter(|&i| matches!(k[i], ClassKind::Plate(_))).collect();
        let steps = [
            step(7, 1, 0.9, None),
            step(7, 1, 0.95, None),
            step(7, 0, 0.9, None),
            step(7, 1, 0.8, None),
            step(7, 4, 0.9, None),
            step(7, 2, 0.7, None),
            step(7, 3, 0.6, Some((5, 0.3))),
        ];
        let probs: Vec<f32> = steps.concat();
        let d = decode(&probs, steps.len(), 7, &k, &plate, 0.5);
        let text: String = d.chars.iter().map(|c| c.ch).collect();
        assert_eq!(text, "AAB1");
        assert_eq!(d.others, 1);
        assert!(
            (d.chars[0].conf - 0.95).abs() < 1e-6,
            "repeat keeps the higher confidence"
        );
        assert_eq!(d.chars[3].alt.map(|a| a.0), Some('0'));
    }

    #[test]
    fn alternatives_swap_the_weakest_character_first() {
        let chars = vec![
            crate::recognize::CharRead {
                ch: 'A',
                conf: 0.99,
                alt: Some(('4', 0.01)),
            },
            crate::recognize::CharRead {
                ch: '0',
                conf: 0.55,
                alt: Some(('O', 0.44)),
            },
        ];
        let alts = alternatives(&chars, 3);
        assert_eq!(alts[0].0, "A0");
        assert_eq!(alts[1].0, "AO");
        assert_eq!(alts.len(), 3);
    }
}
