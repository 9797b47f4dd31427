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

impl Entry {
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
