//! Plate text: normalisation, the OCR confusion classes and the regional format priors shared by
//! recognition, tracking, access and the config. A low module: it imports nothing from the crate.

pub mod prior;

/// One character of a read.
#[derive(Debug, Clone, PartialEq)]
pub struct CharRead {
    pub ch: char,
    pub conf: f32,
    /// The best other A-Z0-9 reading of the same character, with its probability.
    pub alt: Option<(char, f32)>,
}

/// Upper-cases and keeps only A-Z and 0-9 (the scoring convention of the benchmark and of the allowlist).
pub fn normalize(text: &str) -> String {
    text.chars()
        .filter_map(|c| {
            let u = c.to_ascii_uppercase();
            u.is_ascii_alphanumeric().then_some(u)
        })
        .collect()
}

/// The representative of a character's OCR confusion class: 0/O/D/Q, 1/I/L, 8/B, 5/S, 2/Z, 6/G.
/// Characters outside every class are their own representative.
pub fn confusion_class(c: char) -> char {
    match c {
        '0' | 'O' | 'D' | 'Q' => '0',
        '1' | 'I' | 'L' => '1',
        '8' | 'B' => '8',
        '5' | 'S' => '5',
        '2' | 'Z' => '2',
        '6' | 'G' => '6',
        other => other,
    }
}

/// A plate with each character replaced by its [`confusion_class`]: two reads with the same canonical
/// form differ only by look-alikes (1AMW240 and IAMW240).
pub fn canonical(plate: &str) -> String {
    plate.chars().map(confusion_class).collect()
}

/// Longest plate the allowlist accepts (plates are packed into a `u64` key).
pub const MAX_PLATE_LEN: usize = 10;

/// Packs a normalised plate (A-Z0-9, at most [`MAX_PLATE_LEN`] chars) into a `u64`: base 37, 0 = end.
/// Returns `None` for an empty, too long or non-normalised plate.
pub fn pack(plate: &str) -> Option<u64> {
    pack_chars(plate.chars())
}

/// Packs the confusion-class form of a plate.
pub fn pack_canonical(plate: &str) -> Option<u64> {
    pack_chars(plate.chars().map(confusion_class))
}

fn pack_chars(chars: impl Iterator<Item = char>) -> Option<u64> {
    let mut key: u64 = 0;
    let mut len = 0;
    for c in chars {
        len += 1;
        if len > MAX_PLATE_LEN {
            return None;
        }
        let digit = match c {
            '0'..='9' => c as u64 - '0' as u64 + 1,
            'A'..='Z' => c as u64 - 'A' as u64 + 11,
            _ => return None,
        };
        key = key * 37 + digit;
    }
    (len > 0).then_some(key)
}

/// Checks a plate for the allowlist; the error says what is wrong.
pub fn validate(plate: &str) -> Result<(), String> {
    if plate.is_empty() {
        return Err("plate is empty".into());
    }
    if plate.len() > MAX_PLATE_LEN {
        return Err(format!("plate {plate:?} is longer than {MAX_PLATE_LEN} characters"));
    }
    if let Some(c) = plate.chars().find(|c| !(c.is_ascii_digit() || c.is_ascii_uppercase())) {
        return Err(format!("plate {plate:?} has {c:?}; use A-Z and 0-9 only"));
    }
    Ok(())
}

/// Redacts a plate for ordinary logs: keeps the first and last character.
pub fn redact(plate: &str) -> String {
    let n = plate.chars().count();
    if n <= 2 {
        return "*".repeat(n);
    }
    let first = plate.chars().next().unwrap_or('*');
    let last = plate.chars().last().unwrap_or('*');
    format!("{first}{}{last}", "*".repeat(n - 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_the_benchmark() {
        assert_eq!(normalize("ab-12 3c"), "AB123C");
        assert_eq!(normalize("·7ÄX"), "7X");
    }

    #[test]
    fn pack_is_injective_on_valid_plates() {
        assert_ne!(pack("A1"), pack("1A"));
        assert_ne!(pack("A"), pack("A0"));
        assert_eq!(pack(""), None);
        assert_eq!(pack("ABCDEFGHIJK"), None);
        assert!(pack("ZZZZZZZZZZ").is_some());
        assert_eq!(pack("ab"), None);
    }

    #[test]
    fn canonical_merges_confusions_only() {
        assert_eq!(pack_canonical("8OS1"), pack_canonical("B0SI"));
        assert_eq!(pack_canonical("D2G"), pack_canonical("QZ6"));
        assert_ne!(pack_canonical("ABC"), pack_canonical("ABE"));
    }

    #[test]
    fn redaction_hides_the_middle() {
        assert_eq!(redact("ABC123"), "A****3");
        assert_eq!(redact("AB"), "**");
    }
}
