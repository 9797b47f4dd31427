//! Raw TOML -> typed [`Config`], collecting every problem instead of stopping at the first.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::error::Issues;
use super::raw::*;
use super::*;

const SECTIONS: &[&str] = &[
    "site",
    "recognize",
    "track",
    "access",
    "relays",
    "lanes",
    "logging",
    "metrics",
    "privacy",
    "sync",
    "panel",
    "inputs",
    "secrets",
];

pub(super) fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
    let mut issues = Issues::default();
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            issues.push(
                "(file)",
                format!("not valid TOML: {}", e.message().trim()),
                where_in(text, e.span()),
            );
            return Err(ConfigError::Invalid(issues.0));
        }
    };
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            issues.push(
                key.clone(),
                "unknown section",
                format!("remove it, or use one of {}", SECTIONS.join(", ")),
            );
        }
    }

    let site: Option<RawSite> = section(&table, "site", &mut issues, true);
    let recognize: Option<RawRecognize> = section(&table, "recognize", &mut issues, false);
    let track: Option<RawTrack> = section(&table, "track", &mut issues, true);
    let access: Option<RawAccess> = section(&table, "access", &mut issues, true);
    let logging: Option<RawLogging> = section(&table, "logging", &mut issues, true);
    let metrics_raw: Option<RawMetrics> = section(&table, "metrics", &mut issues, true);
    let privacy_raw: Option<RawPrivacy> = section(&table, "privacy", &mut issues, true);
    let privacy = privacy_raw.map(|p| validate_privacy(p, base, &mut issues));
    let sync = match table.get("sync") {
        Some(v) => value::<RawSync>(v, "sync", &mut issues).and_then(|s| validate_sync(s, base, &mut issues)),
        None => None,
    };
    let panel = match table.get("panel") {
        Some(v) => value::<RawPanel>(v, "panel", &mut issues).and_then(|p| validate_panel(p, base, &mut issues)),
        None => None,
    };
    let metrics = metrics_raw
        .and_then(|m| m.listen)
        .and_then(|l| match l.parse::<std::net::SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                issues.push(
                    "metrics.listen",
                    format!("{l:?} is not an address"),
                    "use IP:PORT, e.g. \"127.0.0.1:9898\"",
                );
                None
            }
        });

    let mut relays_raw: Vec<(String, RawRelay)> = Vec::new();
    match table.get("relays") {
        Some(toml::Value::Table(t)) => {
            for (name, v) in t {
                if let Some(r) = value::<RawRelay>(v, &format!("relays.{name}"), &mut issues) {
                    relays_raw.push((name.clone(), r));
                }
            }
        }
        Some(_) => issues.push(
            "relays",
            "must be a table of relays",
            "write [relays.main] with kind = \"gpio\" or \"simulated\"",
        ),
        None => issues.push(
            "relays",
            "no relay configured",
            "add a [relays.main] table (kind = \"simulated\" to try without hardware)",
        ),
    }

    let mut lanes_raw: Vec<RawLane> = Vec::new();
    match table.get("lanes") {
        Some(toml::Value::Array(a)) if !a.is_empty() => {
            for (i, v) in a.iter().enumerate() {
                if let Some(l) = value::<RawLane>(v, &format!("lanes[{i}]"), &mut issues) {
                    lanes_raw.push(l);
                }
            }
        }
        Some(toml::Value::Array(_)) | None => issues.push(
            "lanes",
            "no lane configured",
            "add a [[lanes]] table with name, source and relay",
        ),
        Some(_) => issues.push("lanes", "must be an array of tables", "write each lane as [[lanes]]"),
    }

    let mut inputs_raw: Vec<(String, RawInput)> = Vec::new();
    match table.get("inputs") {
        Some(toml::Value::Table(t)) => {
            for (name, v) in t {
                if let Some(i) = value::<RawInput>(v, &format!("inputs.{name}"), &mut issues) {
                    inputs_raw.push((name.clone(), i));
                }
            }
        }
        Some(_) => issues.push(
            "inputs",
            "must be a table of inputs",
            "write [inputs.exit_button] with kind, role and relay or lane",
        ),
        None => {}
    }

    let site = site.map(|s| validate_site(s, base, &mut issues));
    let recognize = recognize.map(|r| validate_recognize(r, base, &mut issues));
    let track = track.map(|t| validate_track(t, &mut issues));
    let access = access.map(|a| validate_access(a, &mut issues));
    let relays: Vec<RelayConfig> = relays_raw
        .into_iter()
        .filter_map(|(name, r)| validate_relay(name, r, base, &mut issues))
        .collect();
    let relay_names: HashSet<&str> = relays.iter().map(|r| r.name.as_str()).collect();
    let mut lane_names = HashSet::new();
    let mut lanes = Vec::new();
    for (i, l) in lanes_raw.into_iter().enumerate() {
        let path = format!("lanes[{i}]");
        if !lane_names.insert(l.name.clone()) {
            issues.push(
                format!("{path}.name"),
                format!("lane name {:?} is used twice", l.name),
                "give every lane its own name",
            );
        }
        if !relay_names.contains(l.relay.as_str()) {
            issues.push(
                format!("{path}.relay"),
                format!("no relay named {:?}", l.relay),
                format!(
                    "define [relays.{}] or use one of: {}",
                    l.relay,
                    join_sorted(&relay_names)
                ),
            );
        }
        if let Some(lane) = validate_lane(l, &path, base, &mut issues) {
            lanes.push(lane);
        }
    }

    let secrets = match table.get("secrets") {
        Some(v) => value::<RawSecrets>(v, "secrets", &mut issues)
            .and_then(|s| validate_secrets(s, base, site.as_ref().map(|s| s.data_dir.as_path()), &mut issues)),
        None => None,
    };

    let lane_set: HashSet<&str> = lanes.iter().map(|l: &LaneConfig| l.name.as_str()).collect();
    let inputs = validate_inputs(inputs_raw, &lane_set, &relay_names, base, &mut issues);

    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues.0));
    }
    match (site, recognize, track, access, logging) {
        (Some(site), Some(recognize), Some(track), Some(access), Some(logging)) => Ok(Config {
            site,
            recognize,
            track,
            access,
            relays,
            lanes,
            inputs,
            logging: LoggingConfig { plates: logging.plates },
            metrics,
            sync,
            panel,
            secrets,
            privacy: privacy.unwrap_or_else(|| PrivacyConfig {
                effective: crate::privacy::effective(&crate::privacy::Meta::builtin(), None, 180, 60),
                counsel_acknowledged: None,
                contact: None,
                plate_key: None,
                count_opted_out: true,
            }),
        }),
        _ => Err(ConfigError::Invalid(vec![ConfigIssue {
            path: "(file)".into(),
            problem: "incomplete configuration".into(),
            fix: "see config/gatehouse.toml for a complete example".into(),
        }])),
    }
}

/// `[secrets]`: exactly one source; a development key file outside the data folder it locks.
fn validate_secrets(
    s: RawSecrets,
    base: &Path,
    data_dir: Option<&Path>,
    issues: &mut Issues,
) -> Option<crate::secrets::MasterKeySource> {
    use crate::secrets::{MasterKeySource, DEFAULT_CREDENTIAL};
    match (s.credential, s.insecure_dev_key_file) {
        (Some(_), Some(_)) => {
            issues.push(
                "secrets",
                "both credential and insecure_dev_key_file are set",
                "keep credential on a gate box; insecure_dev_key_file is for development only",
            );
            None
        }
        (None, None) => {
            issues.push(
                "secrets",
                "no master key source",
                format!(
                    "add credential = \"{DEFAULT_CREDENTIAL}\" (or remove [secrets] to keep the data folder in clear)"
                ),
            );
            None
        }
        (Some(name), None) => {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !name.starts_with('.');
            if !ok {
                issues.push(
                    "secrets.credential",
                    format!("{name:?} is not a credential name"),
                    format!("use letters, digits, - _ . (the unit's LoadCredentialEncrypted= name, e.g. \"{DEFAULT_CREDENTIAL}\")"),
                );
                return None;
            }
            Some(MasterKeySource::Credential(name))
        }
        (None, Some(file)) => {
            let path = resolve(base, &file);
            if let Some(d) = data_dir {
                let inside = path.starts_with(d)
                    || path
                        .parent()
                        .and_then(|p| p.canonicalize().ok())
                        .zip(d.canonicalize().ok())
                        .is_some_and(|(p, d)| p.starts_with(d));
                if inside {
                    issues.push(
                        "secrets.insecure_dev_key_file",
                        format!("{} is inside the data folder it would lock", path.display()),
                        "put it outside [site] data_dir (a key beside the data protects nothing), or use credential",
                    );
                    return None;
                }
            }
            Some(MasterKeySource::InsecureDevFile(path))
        }
    }
}

fn join_sorted(names: &HashSet<&str>) -> String {
    let mut v: Vec<&str> = names.iter().copied().collect();
    v.sort_unstable();
    if v.is_empty() {
        "(none defined)".into()
    } else {
        v.join(", ")
    }
}

fn where_in(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("check line {line}")
        }
        None => "check the TOML syntax".into(),
    }
}

/// Deserialises one section; a missing optional section takes its defaults.
fn section<T: DeserializeOwned>(table: &toml::Table, key: &str, issues: &mut Issues, optional: bool) -> Option<T> {
    match table.get(key) {
        Some(v) => value(v, key, issues),
        None if optional => value(&toml::Value::Table(toml::Table::new()), key, issues),
        None => {
            issues.push(
                key,
                "section is missing",
                format!("add a [{key}] table (see config/gatehouse.toml)"),
            );
            None
        }
    }
}

fn value<T: DeserializeOwned>(v: &toml::Value, path: &str, issues: &mut Issues) -> Option<T> {
    match T::deserialize(v.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            let msg = e.message().trim().to_string();
            let fix = if msg.contains("unknown field") {
                "remove or rename the key; the expected keys are listed above".to_string()
            } else if msg.contains("missing field") {
                "add the key".to_string()
            } else {
                "correct the value's type".to_string()
            };
            issues.push(path, msg, fix);
            None
        }
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

mod inputs;
mod lanes;
mod panel;
mod privacy;
mod recognize;
mod site;
mod sync;
#[cfg(test)]
mod tests;

use inputs::validate_inputs;
use lanes::{validate_lane, validate_relay};
use panel::validate_panel;
use privacy::validate_privacy;
use recognize::{validate_access, validate_recognize, validate_track};
use site::validate_site;
use sync::validate_sync;
