//! An allowlist entry: who a plate belongs to and when it may enter.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::schedule::Schedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Resident,
    Visitor,
    Vendor,
    Blocked,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Resident => "resident",
            Kind::Visitor => "visitor",
            Kind::Vendor => "vendor",
            Kind::Blocked => "blocked",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "resident" => Ok(Kind::Resident),
            "visitor" => Ok(Kind::Visitor),
            "vendor" => Ok(Kind::Vendor),
            "blocked" => Ok(Kind::Blocked),
            other => Err(format!(
                "unknown kind {other:?} (use resident, visitor, vendor or blocked)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub plate: String,
    pub kind: Kind,
    /// Host resident (for visitors and vendors) or the resident's own name.
    pub host: Option<String>,
    pub unit: Option<String>,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub schedule: Option<Schedule>,
    /// The resident opted out of logging: the gate opens, nothing identifying is stored.
    pub do_not_log: bool,
    pub note: Option<String>,
}

/// Longest host (resident's name), in characters.
pub const MAX_HOST_CHARS: usize = 100;
/// Longest unit (house, flat), in characters.
pub const MAX_UNIT_CHARS: usize = 32;
/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 500;

/// Checks one free-text field of an entry: at most `max` characters, one line, no control characters.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), String> {
    let n = value.chars().count();
    if n > max {
        return Err(format!("{field} is {n} characters long; at most {max} are allowed"));
    }
    if value
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(format!(
            "{field} has a line break or control character; use one line of text"
        ));
    }
    Ok(())
}

impl Entry {
    /// Checks what every way into the allowlist must (CSV import, cloud envelopes, the panel's entry form,
    /// `gatehouse allowlist add`; the store checks again before writing): a plate (A-Z0-9, at most 10) or
    /// a sealed id, and bounded one-line `host`, `unit` and `note`. The schedule is bounded when parsed.
    /// The error names the field, never an opted-out entry's plate.
    pub fn validate(&self) -> Result<(), String> {
        super::seal::validate_listed(&self.plate).map_err(|e| {
            if self.do_not_log {
                "not a plate or sealed id".to_string()
            } else {
                e
            }
        })?;
        for (field, value, max) in [
            ("host", &self.host, MAX_HOST_CHARS),
            ("unit", &self.unit, MAX_UNIT_CHARS),
            ("note", &self.note, MAX_NOTE_CHARS),
        ] {
            if let Some(v) = value {
                check_text(field, v, max)?;
            }
        }
        Ok(())
    }

    pub fn new(plate: &str, kind: Kind) -> Self {
        Self {
            plate: plate.to_string(),
            kind,
            host: None,
            unit: None,
            valid_from: None,
            valid_until: None,
            schedule: None,
            do_not_log: false,
            note: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_bounded() {
        let ok = Entry {
            host: Some("Ana Diaz".into()),
            unit: Some("12B".into()),
            note: Some("plumber, Tuesdays".into()),
            ..Entry::new("HXP4729", Kind::Resident)
        };
        assert_eq!(ok.validate(), Ok(()));
        let huge = Entry {
            host: Some("x".repeat(10 * 1024 * 1024)),
            ..ok.clone()
        };
        assert!(huge.validate().expect_err("10 MB host").contains("host"));
        for bad in [
            Entry {
                unit: Some("u".repeat(MAX_UNIT_CHARS + 1)),
                ..ok.clone()
            },
            Entry {
                note: Some("n".repeat(MAX_NOTE_CHARS + 1)),
                ..ok.clone()
            },
            Entry {
                host: Some("Ana\nDiaz".into()),
                ..ok.clone()
            },
            Entry::new("HXP 4729", Kind::Resident),
            Entry::new("ABCDEFGHIJK", Kind::Resident),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let sealed_bad = Entry {
            do_not_log: true,
            ..Entry::new("SECRET 1", Kind::Resident)
        };
        assert!(
            !sealed_bad.validate().expect_err("bad").contains("SECRET"),
            "never shows an opted-out plate"
        );
    }
}
