//! `[privacy]`: retention by state, per-property caps, opt-outs.

use super::*;

pub(super) fn validate_privacy(p: RawPrivacy, base: &Path, issues: &mut Issues) -> PrivacyConfig {
    use crate::privacy::{effective, Meta, Rules, Status};
    for (key, v) in [
        ("privacy.retention_days_reads", p.retention_days_reads),
        ("privacy.retention_days_images", p.retention_days_images),
    ] {
        if v == 0 || v > 3650 {
            issues.push(key, format!("{v} days is out of range"), "use 1 to 3650 days");
        }
    }
    let ack = p.counsel_acknowledged.filter(|a| !a.trim().is_empty());
    let plate_key = p.plate_key.as_deref().map(|k| resolve(base, k));
    let mk = |effective| PrivacyConfig {
        effective,
        counsel_acknowledged: ack.clone(),
        contact: p.contact.clone(),
        plate_key: plate_key.clone(),
        count_opted_out: p.count_opted_out,
    };
    if let Some(k) = plate_key.as_deref().filter(|k| k.exists()) {
        // A sealed key (encryption at rest) is checked when it is opened at start.
        let parsed = std::fs::read(k).map_err(|e| e.to_string()).and_then(|b| {
            if crate::secrets::sealed::is_sealed(&b) {
                return Ok([0u8; 32]);
            }
            crate::keyfile::parse_hex32(&String::from_utf8_lossy(&b), "the plate key")
        });
        if let Err(e) = parsed {
            issues.push(
                "privacy.plate_key",
                format!("{}: {e}", k.display()),
                "restore the site's key file (the cloud holds a copy), or point plate_key at a new path to start a new key",
            );
        }
    }
    let Some(state) = p.state.map(|s| s.trim().to_ascii_uppercase()) else {
        return mk(effective(
            &Meta::builtin(),
            None,
            p.retention_days_reads,
            p.retention_days_images,
        ));
    };
    let rules_path = match &p.rules {
        Some(r) => resolve(base, r),
        None => [
            base.join("retention/us-states.toml"),
            PathBuf::from("/usr/share/gatehouse/retention/us-states.toml"),
        ]
        .into_iter()
        .find(|c| c.is_file())
        .unwrap_or_else(|| base.join("retention/us-states.toml")),
    };
    let rules = match Rules::load(&rules_path) {
        Ok(r) => r,
        Err(e) => {
            issues.push("privacy.rules", e, "point it at config/retention/us-states.toml");
            return mk(effective(
                &Meta::builtin(),
                None,
                p.retention_days_reads,
                p.retention_days_images,
            ));
        }
    };
    let Some(rule) = rules.states.get(&state) else {
        issues.push(
            "privacy.state",
            format!("unknown state {state:?}"),
            "use a two-letter US state code such as \"CA\" (or DC)",
        );
        return mk(effective(
            &rules.meta,
            None,
            p.retention_days_reads,
            p.retention_days_images,
        ));
    };
    let cite = rule.citations.join("; ");
    match rule.status {
        Status::Prohibited => issues.push(
            "privacy.state",
            format!("private ALPR operation is prohibited in {state} ({cite})"),
            "Gatehouse must not run at this site",
        ),
        Status::CounselReview if ack.is_none() => issues.push(
            "privacy.counsel_acknowledged",
            format!("{state} needs counsel review before operating ({cite})"),
            "record who reviewed it and when, e.g. counsel_acknowledged = \"2026-11-20, J. Doe, counsel\"",
        ),
        _ => {}
    }
    mk(effective(
        &rules.meta,
        Some((&state, rule)),
        p.retention_days_reads,
        p.retention_days_images,
    ))
}
