//! Privacy by law: the per-state rules file (`config/retention/us-states.toml`) and the effective
//! retention = min(property setting, state cap, product ceiling), separately for reads and images, with
//! the reason for each. A state that prohibits private ALPR stops the daemon at start-up; a state marked
//! for counsel review needs a recorded acknowledgement in the config.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Permitted,
    Conditional,
    CounselReview,
    Prohibited,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateRule {
    pub status: Status,
    #[serde(default)]
    pub read_cap_days: Option<u32>,
    #[serde(default)]
    pub image_cap_days: Option<u32>,
    #[serde(default)]
    pub duties: Vec<String>,
    #[serde(default)]
    pub citations: Vec<String>,
    pub confidence: String,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub last_reviewed: String,
    pub product_ceiling_read_days: u32,
    pub product_ceiling_image_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub meta: Meta,
    pub states: BTreeMap<String, StateRule>,
}

impl Meta {
    /// Ceilings used when no rules file is loaded (non-US sites).
    pub fn builtin() -> Self {
        Self {
            last_reviewed: "built-in".into(),
            product_ceiling_read_days: 730,
            product_ceiling_image_days: 365,
        }
    }
}

impl Rules {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))
    }
}

/// One retention period and why it is what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub days: u32,
    pub why: String,
}

/// What a site may keep, and what it must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub state: Option<String>,
    pub reads: Period,
    pub images: Period,
    pub duties: Vec<String>,
    pub citations: Vec<String>,
}

impl fmt::Display for Effective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "retention of plate reads: {} days ({})",
            self.reads.days, self.reads.why
        )?;
        writeln!(
            f,
            "retention of plate images: {} days ({})",
            self.images.days, self.images.why
        )?;
        for d in &self.duties {
            writeln!(f, "duty: {d}")?;
        }
        for c in &self.citations {
            writeln!(f, "law: {c}")?;
        }
        Ok(())
    }
}

fn period(property: u32, cap: Option<u32>, ceiling: u32, state: &str, what: &str) -> Period {
    let mut days = property;
    let mut why = format!("property setting {property} days");
    if let Some(c) = cap.filter(|c| *c < days) {
        days = c;
        why = format!("{state} caps {what} at {c} days (property setting {property})");
    }
    if ceiling < days {
        days = ceiling;
        why = format!("product ceiling {ceiling} days (property setting {property})");
    }
    if cap.is_none() && !state.is_empty() && days == property {
        why.push_str(&format!("; {state} sets no cap for private operators"));
    }
    Period { days, why }
}

/// Effective retention for a site. `rule` is the site's state rule when a state is configured.
pub fn effective(
    meta: &Meta,
    state: Option<(&str, &StateRule)>,
    property_read_days: u32,
    property_image_days: u32,
) -> Effective {
    let (name, rule) = match state {
        Some((n, r)) => (n, Some(r)),
        None => ("", None),
    };
    Effective {
        state: state.map(|(n, _)| n.to_string()),
        reads: period(
            property_read_days,
            rule.and_then(|r| r.read_cap_days),
            meta.product_ceiling_read_days,
            name,
            "plate reads",
        ),
        images: period(
            property_image_days.min(property_read_days),
            rule.and_then(|r| r.image_cap_days.or(r.read_cap_days)),
            meta.product_ceiling_image_days,
            name,
            "plate images",
        ),
        duties: rule.map(|r| r.duties.clone()).unwrap_or_default(),
        citations: rule.map(|r| r.citations.clone()).unwrap_or_default(),
    }
}

/// The site's usage and privacy policy (markdown), for posting as California requires.
pub fn policy(site: &str, e: &Effective, contact: Option<&str>) -> String {
    let mut s = format!("# License plate recognition at {site}: usage and privacy policy\n\n");
    s.push_str("## Why\nThe entrance gate reads vehicle license plates to open for residents and authorised visitors and vendors, to keep blocked vehicles out, and to keep a record of who entered for the community's security.\n\n");
    s.push_str("## What is collected\nFor each vehicle at the gate: the plate text as read, a picture of the plate, the time, the lane, the gate decision and its reason, and the resident a visitor came to see. No faces and no biometrics are collected or processed.\n\n");
    s.push_str(&format!(
        "## How long it is kept\n- Plate reads: {} days ({}).\n- Plate pictures: {} days ({}).\nRecords are deleted automatically after that, except those under a documented legal hold.\n\n",
        e.reads.days, e.reads.why, e.images.days, e.images.why
    ));
    s.push_str("## Who can see it\nOnly authorised gate staff and the community's management, each query with a stated purpose that is logged (who, when, what, why). Records are not sold. They are disclosed only as the law allows or requires.\n\n");
    s.push_str("## Your choices\nResidents may ask not to be logged: the gate still opens for them, and their passes are not recorded. You may ask for a copy of the records held about your plate, or for their deletion (except records under legal hold).\n\n");
    if !e.duties.is_empty() || !e.citations.is_empty() {
        s.push_str("## Legal basis\n");
        for c in &e.citations {
            s.push_str(&format!("- {c}\n"));
        }
        s.push('\n');
    }
    s.push_str(&format!(
        "## Contact\n{}\n",
        contact.unwrap_or("The community management office.")
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/retention/us-states.toml")).expect("rules")
    }

    #[test]
    fn the_shipped_rules_cover_every_state_and_cite_every_restriction() {
        let r = rules();
        assert_eq!(r.states.len(), 51);
        for (name, s) in &r.states {
            if s.status != Status::Permitted || s.read_cap_days.is_some() || !s.duties.is_empty() {
                assert!(!s.citations.is_empty(), "{name} restricts without a citation");
            }
        }
        assert_eq!(r.states["ME"].status, Status::Prohibited);
        assert_eq!(r.states["NH"].status, Status::CounselReview);
    }

    #[test]
    fn the_policy_states_retention_and_contact() {
        let r = rules();
        let e = effective(&r.meta, Some(("CA", &r.states["CA"])), 180, 60);
        let p = policy("Oak Ridge", &e, Some("privacy@oakridge.example"));
        assert!(p.contains("Plate reads: 180 days") && p.contains("privacy@oakridge.example") && p.contains("1798.90"));
    }

    #[test]
    fn arkansas_caps_a_90_day_setting_to_60() {
        let r = rules();
        let e = effective(&r.meta, Some(("AR", &r.states["AR"])), 90, 60);
        assert_eq!(e.reads.days, 60);
        assert!(e.reads.why.contains("AR caps"), "{}", e.reads.why);
        assert_eq!(e.images.days, 60);
    }

    #[test]
    fn no_cap_means_the_property_setting_within_the_ceiling() {
        let r = rules();
        let tx = effective(&r.meta, Some(("TX", &r.states["TX"])), 365, 60);
        assert_eq!((tx.reads.days, tx.images.days), (365, 60));
        assert!(tx.reads.why.contains("no cap"));
        let long = effective(&r.meta, Some(("TX", &r.states["TX"])), 5000, 5000);
        assert_eq!(
            (long.reads.days, long.images.days),
            (730, 365),
            "the product ceiling applies"
        );
        let ca = effective(&r.meta, Some(("CA", &r.states["CA"])), 180, 60);
        assert!(ca.duties.iter().any(|d| d.contains("access log")));
    }
}
