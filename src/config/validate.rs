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
            logging: LoggingConfig { plates: logging.plates },
            metrics,
            sync,
            panel,
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

/// Longest `[sync] allowlist_max_age_hours` (a year).
const MAX_ALLOWLIST_AGE_HOURS: u32 = 8760;

fn validate_sync(s: RawSync, base: &Path, issues: &mut Issues) -> Option<SyncConfig> {
    let device = match s.device {
        Some(d)
            if d.split_once('/')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'))
                && d.chars().all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c)) =>
        {
            d
        }
        Some(d) => {
            issues.push(
                "sync.device",
                format!("{d:?} is not a device id"),
                "use site/device (letters, digits, - and _), e.g. \"oakridge/gate-1\"",
            );
            return None;
        }
        None => {
            issues.push(
                "sync.device",
                "missing",
                "name this device, e.g. device = \"oakridge/gate-1\"",
            );
            return None;
        }
    };
    if s.trusted_keys.is_empty() {
        issues.push(
            "sync.trusted_keys",
            "no trusted key",
            "add the cloud's public key: trusted_keys = { \"cloud-2026a\" = \"keys/cloud-2026a.pub\" }",
        );
    }
    let mut keys = Vec::new();
    for (id, p) in s.trusted_keys {
        let path = resolve(base, &p);
        if let Err(e) = crate::keyfile::read_verifying(&path) {
            issues.push(
                format!("sync.trusted_keys.{id}"),
                e.to_string(),
                "point it at a public key made by `gatehouse keys generate`",
            );
        }
        keys.push((id, path));
    }
    if s.allowlist_max_age_hours > MAX_ALLOWLIST_AGE_HOURS {
        issues.push(
            "sync.allowlist_max_age_hours",
            format!("{} hours is out of range", s.allowlist_max_age_hours),
            format!(
                "use 1 to {MAX_ALLOWLIST_AGE_HOURS} hours (longer than the cloud's keep-alive envelope interval), or 0 for no alert"
            ),
        );
    }
    let mqtt = s.mqtt.and_then(|m| validate_mqtt(m, base, issues));
    Some(SyncConfig {
        device,
        trusted_keys: keys,
        mqtt,
        allowlist_max_age: (s.allowlist_max_age_hours > 0)
            .then(|| chrono::Duration::hours(i64::from(s.allowlist_max_age_hours))),
    })
}

fn validate_mqtt(m: RawMqtt, base: &Path, issues: &mut Issues) -> Option<MqttConfig> {
    let before = issues.0.len();
    let addr = m.broker.strip_prefix("mqtts://").and_then(|rest| {
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok()?),
            None => (rest, 8883),
        };
        (!host.is_empty() && !host.contains('/') && port != 0).then(|| (host.to_string(), port))
    });
    if addr.is_none() {
        issues.push(
            "sync.mqtt.broker",
            format!("{:?} is not an mqtts:// address", m.broker),
            "use mqtts://HOST:PORT, e.g. \"mqtts://mqtt.example.com:8883\" (TLS is required)",
        );
    }
    let mut files = Vec::new();
    for (key, p, what) in [
        (
            "sync.mqtt.ca",
            &m.ca,
            "the CA certificate (PEM) that signed the broker's certificate",
        ),
        ("sync.mqtt.cert", &m.cert, "this device's client certificate (PEM)"),
        ("sync.mqtt.key", &m.key, "this device's private key (PEM)"),
    ] {
        let path = resolve(base, p);
        if let Err(e) = std::fs::metadata(&path) {
            issues.push(key, format!("{}: {e}", path.display()), format!("point it at {what}"));
        }
        files.push(path);
    }
    if m.topic_prefix.is_empty()
        || m.topic_prefix.starts_with('/')
        || m.topic_prefix.ends_with('/')
        || m.topic_prefix.contains(['+', '#'])
    {
        issues.push(
            "sync.mqtt.topic_prefix",
            format!("{:?} is not a topic prefix", m.topic_prefix),
            "use topic levels without wildcards or leading/trailing '/', e.g. \"gatehouse\"",
        );
    }
    if !(5..=600).contains(&m.keep_alive_s) {
        issues.push(
            "sync.mqtt.keep_alive_s",
            format!("{} is out of range", m.keep_alive_s),
            "use 5 to 600 seconds",
        );
    }
    if !(5..=3600).contains(&m.heartbeat_s) {
        issues.push(
            "sync.mqtt.heartbeat_s",
            format!("{} is out of range", m.heartbeat_s),
            "use 5 to 3600 seconds",
        );
    }
    if !(1..=1000).contains(&m.window) {
        issues.push(
            "sync.mqtt.window",
            format!("{} is out of range", m.window),
            "use 1 to 1000 events in flight",
        );
    }
    if !(64..=65536).contains(&m.max_packet_kb) {
        issues.push(
            "sync.mqtt.max_packet_kb",
            format!("{} is out of range", m.max_packet_kb),
            "use 64 to 65536 KiB (allowlist chunks must fit)",
        );
    }
    if issues.0.len() > before {
        return None;
    }
    let (host, port) = addr?;
    let [ca, cert, key]: [PathBuf; 3] = files.try_into().ok()?;
    Some(MqttConfig {
        host,
        port,
        ca,
        cert,
        key,
        topic_prefix: m.topic_prefix,
        keep_alive: Duration::from_secs(m.keep_alive_s),
        heartbeat: Duration::from_secs(m.heartbeat_s),
        window: m.window,
        max_packet_bytes: m.max_packet_kb * 1024,
    })
}

fn validate_privacy(p: RawPrivacy, base: &Path, issues: &mut Issues) -> PrivacyConfig {
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
        let parsed = std::fs::read_to_string(k)
            .map_err(|e| e.to_string())
            .and_then(|t| crate::access::PlateKey::parse(&t));
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

fn validate_panel(p: RawPanel, base: &Path, issues: &mut Issues) -> Option<PanelConfig> {
    let listen = match p.listen.parse::<std::net::SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            issues.push(
                "panel.listen",
                format!("{:?} is not an address", p.listen),
                "use IP:PORT, e.g. \"0.0.0.0:8443\"",
            );
            None
        }
    };
    let (cert, key) = match (&p.cert, &p.key) {
        (Some(c), Some(k)) => {
            let (c, k) = (resolve(base, c), resolve(base, k));
            for (key, path) in [("panel.cert", &c), ("panel.key", &k)] {
                if !path.is_file() {
                    issues.push(
                        key,
                        format!("{} does not exist", path.display()),
                        "give the PEM file's path, or leave cert and key out for a self-signed certificate",
                    );
                }
            }
            (Some(c), Some(k))
        }
        (None, None) => (None, None),
        _ => {
            issues.push(
                "panel.cert",
                "cert and key must be given together",
                "set both panel.cert and panel.key, or neither (a self-signed certificate is made)",
            );
            (None, None)
        }
    };
    if p.hostnames.is_empty() || p.hostnames.iter().any(|h| h.trim().is_empty()) {
        issues.push(
            "panel.hostnames",
            "needs at least one non-empty name",
            "e.g. [\"gatehouse.local\"]",
        );
    }
    let mut range = |key: &str, v: u32, lo: u32, hi: u32, what: &str| {
        if !(lo..=hi).contains(&v) {
            issues.push(
                format!("panel.{key}"),
                format!("{v} is out of range"),
                format!("use {lo} to {hi} ({what})"),
            );
        }
    };
    range(
        "idle_minutes",
        p.idle_minutes,
        1,
        24 * 60,
        "minutes without use before a session ends",
    );
    range(
        "shift_hours",
        p.shift_hours,
        1,
        24,
        "hours after login when a session ends regardless",
    );
    range(
        "lockout_failures",
        p.lockout_failures,
        3,
        20,
        "failed logins before an account+device pair is locked",
    );
    range("lockout_minutes", p.lockout_minutes, 1, 24 * 60, "minutes a lock lasts");
    range(
        "login_per_minute",
        p.login_per_minute,
        5,
        600,
        "login attempts per device per minute",
    );
    range(
        "image_url_seconds",
        p.image_url_seconds,
        10,
        600,
        "seconds a plate image link works",
    );
    if p.idle_minutes > p.shift_hours * 60 {
        issues.push(
            "panel.idle_minutes",
            "is longer than the shift",
            "make idle_minutes at most shift_hours * 60",
        );
    }
    Some(PanelConfig {
        listen: listen?,
        cert,
        key,
        hostnames: p.hostnames,
        idle: chrono::Duration::minutes(p.idle_minutes as i64),
        absolute: chrono::Duration::hours(p.shift_hours as i64),
        lockout_failures: p.lockout_failures,
        lockout_period: Duration::from_secs(p.lockout_minutes as u64 * 60),
        login_per_minute: p.login_per_minute,
        image_url_ttl: Duration::from_secs(p.image_url_seconds as u64),
        totp_for_all_roles: p.totp_for_all_roles,
    })
}

fn validate_site(s: RawSite, base: &Path, issues: &mut Issues) -> SiteConfig {
    let timezone = s.timezone.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
        issues.push(
            "site.timezone",
            format!("unknown time zone {:?}", s.timezone),
            "use an IANA name such as \"America/New_York\" or \"UTC\"",
        );
        chrono_tz::UTC
    });
    if s.name.trim().is_empty() {
        issues.push("site.name", "is empty", "name the site, e.g. \"Oak Ridge north gate\"");
    }
    if s.min_free_mb > 1_000_000 {
        issues.push(
            "site.min_free_mb",
            format!("{} MB is out of range", s.min_free_mb),
            "use 0 to 1000000 (MB kept free; default 256)",
        );
    }
    if s.db_reserve_mb > 4096 {
        issues.push(
            "site.db_reserve_mb",
            format!("{} MB is out of range", s.db_reserve_mb),
            "use 0 to 4096 (MB held back for the database, released when the disk fills; default 8)",
        );
    }
    SiteConfig {
        name: s.name,
        timezone,
        data_dir: resolve(base, &s.data_dir),
        min_free_bytes: s.min_free_mb.min(1_000_000) * 1024 * 1024,
        db_reserve_bytes: s.db_reserve_mb.min(4096) * 1024 * 1024,
    }
}

fn validate_recognize(r: RawRecognize, base: &Path, issues: &mut Issues) -> RecognizeConfig {
    let manifest = resolve(base, &r.manifest);
    if !manifest.is_file() {
        issues.push(
            "recognize.manifest",
            format!("{} does not exist", manifest.display()),
            "point it at models/manifest.toml (run scripts/setup.sh to fetch the models)",
        );
    }
    let onnxruntime = r.onnxruntime.as_deref().map(|p| resolve(base, p));
    if let Some(p) = &onnxruntime {
        if !p.is_file() {
            issues.push(
                "recognize.onnxruntime",
                format!("{} does not exist", p.display()),
                "point it at libonnxruntime.so (scripts/setup.sh puts it in vendor/onnxruntime/)",
            );
        }
    }
    if r.threads == 0 || r.threads > 64 {
        issues.push(
            "recognize.threads",
            format!("{} is out of range", r.threads),
            "use 1 to 64 (1 per lane is a good start on a small box)",
        );
    }
    if r.min_plate_len == 0 || r.min_plate_len > r.max_plate_len || r.max_plate_len > crate::plate::MAX_PLATE_LEN {
        issues.push(
            "recognize.min_plate_len",
            format!("plate lengths {}..={} are not usable", r.min_plate_len, r.max_plate_len),
            format!(
                "use 1 <= min_plate_len <= max_plate_len <= {}",
                crate::plate::MAX_PLATE_LEN
            ),
        );
    }
    if r.detector_max_side < 320 || r.detector_max_side > 4096 || r.detector_max_side % 32 != 0 {
        issues.push(
            "recognize.detector_max_side",
            format!("{} is not usable", r.detector_max_side),
            "use a multiple of 32 between 320 and 4096, e.g. 960",
        );
    }
    let mut prior = crate::recognize::prior::FormatPrior::region(&r.region).unwrap_or_else(|| {
        issues.push(
            "recognize.region",
            format!("unknown region {:?}", r.region),
            "use \"us\", \"br\", \"eu\" or \"none\"",
        );
        Default::default()
    });
    for (i, f) in r.formats.iter().enumerate() {
        if f.is_empty() || f.len() > crate::plate::MAX_PLATE_LEN || !f.chars().all(|c| matches!(c, 'L' | 'D' | '*')) {
            issues.push(
                format!("recognize.formats[{i}]"),
                format!("{f:?} is not a plate pattern"),
                "use L (letter), D (digit) and * (either), e.g. \"LLLDDDD\"",
            );
        }
    }
    if r.two_line_max_aspect != 0.0 && !(1.0..=3.0).contains(&r.two_line_max_aspect) {
        issues.push(
            "recognize.two_line_max_aspect",
            format!("{} is not usable", r.two_line_max_aspect),
            "use 0 (never read plates as two rows) or a width / height from 1 to 3, e.g. 1.8",
        );
    }
    if !(1..=8).contains(&r.max_plates) {
        issues.push(
            "recognize.max_plates",
            format!("{} plates per frame is not usable", r.max_plates),
            "use 1 to 8: 1 when the lane's view holds one vehicle at a time, 2 (the default) so a tailgater's \
             plate is read beside the first car's",
        );
    }
    prior.patterns.extend(r.formats.iter().cloned());
    RecognizeConfig {
        prior,
        manifest,
        onnxruntime,
        threads: r.threads,
        min_plate_len: r.min_plate_len,
        max_plate_len: r.max_plate_len,
        detector_max_side: r.detector_max_side,
        two_line_max_aspect: r.two_line_max_aspect,
        max_plates: r.max_plates,
    }
}

fn unit_interval(v: f32, path: &str, issues: &mut Issues) {
    if !(0.0..=1.0).contains(&v) {
        issues.push(
            path,
            format!("{v} is not between 0 and 1"),
            "use a fraction such as 0.9",
        );
    }
}

fn validate_track(t: RawTrack, issues: &mut Issues) -> TrackConfig {
    if !(100..=60_000).contains(&t.pass_gap_ms) {
        issues.push(
            "track.pass_gap_ms",
            format!("{} ms is out of range", t.pass_gap_ms),
            "use 100 to 60000 (1500 suits a gate lane)",
        );
    }
    if t.min_reads == 0 {
        issues.push("track.min_reads", "must be at least 1", "use 2 or 3");
    }
    unit_interval(t.early_confidence, "track.early_confidence", issues);
    if t.same_vehicle_s > 3600 {
        issues.push(
            "track.same_vehicle_s",
            format!("{} s is too long", t.same_vehicle_s),
            "use at most 3600 (20 suits a gate)",
        );
    }
    if !(200..=60_000).contains(&t.decide_after_ms) {
        issues.push(
            "track.decide_after_ms",
            format!("{} ms is out of range", t.decide_after_ms),
            "use 200 to 60000 (2500 suits a gate)",
        );
    }
    TrackConfig {
        pass_gap: Duration::from_millis(t.pass_gap_ms),
        min_reads: t.min_reads.max(1),
        early_confidence: t.early_confidence,
        same_vehicle: Duration::from_secs(t.same_vehicle_s),
        decide_after: Duration::from_millis(t.decide_after_ms),
    }
}

fn validate_access(a: RawAccess, issues: &mut Issues) -> AccessConfig {
    if a.max_confusions > 2 {
        issues.push(
            "access.max_confusions",
            format!("{} lets too many OCR confusions through", a.max_confusions),
            "use 0, 1 or 2",
        );
    }
    unit_interval(a.min_confidence, "access.min_confidence", issues);
    unit_interval(a.ambiguity_confidence, "access.ambiguity_confidence", issues);
    AccessConfig {
        max_confusions: a.max_confusions,
        min_confidence: a.min_confidence,
        ambiguity_confidence: a.ambiguity_confidence,
    }
}

fn validate_relay(name: String, r: RawRelay, base: &Path, issues: &mut Issues) -> Option<RelayConfig> {
    let path = format!("relays.{name}");
    let kind = match r.kind.as_str() {
        "gpio" => match (&r.chip, r.line) {
            (Some(chip), Some(line)) => Some(RelayKind::Gpio {
                chip: PathBuf::from(chip),
                line,
            }),
            _ => {
                issues.push(
                    format!("{path}.chip"),
                    "a gpio relay needs chip and line",
                    "add chip = \"/dev/gpiochip0\" and line = <offset>",
                );
                None
            }
        },
        "simulated" => Some(RelayKind::Simulated {
            log: r.log.as_deref().map(|p| resolve(base, p)),
        }),
        other => {
            issues.push(
                format!("{path}.kind"),
                format!("unknown relay kind {other:?}"),
                "use \"gpio\" or \"simulated\"",
            );
            None
        }
    };
    let safe_state = match r.safe_state.as_str() {
        "closed" => SafeState::Closed,
        "open" => SafeState::Open,
        other => {
            issues.push(
                format!("{path}.safe_state"),
                format!("unknown safe state {other:?}"),
                "use \"closed\" (line released) or \"open\" (fail-open sites)",
            );
            SafeState::Closed
        }
    };
    if !(50..=10_000).contains(&r.pulse_ms) {
        issues.push(
            format!("{path}.pulse_ms"),
            format!("{} ms is out of range", r.pulse_ms),
            "use 50 to 10000 (most gate operators want 500-1000)",
        );
    }
    if r.max_hold_s == 0 || r.max_hold_s > 86_400 {
        issues.push(
            format!("{path}.max_hold_s"),
            format!("{} s is out of range", r.max_hold_s),
            "use 1 to 86400",
        );
    }
    if r.cooldown_ms > 600_000 {
        issues.push(
            format!("{path}.cooldown_ms"),
            format!("{} ms is too long", r.cooldown_ms),
            "use at most 600000",
        );
    }
    Some(RelayConfig {
        name,
        kind: kind?,
        active_low: r.active_low,
        pulse: Duration::from_millis(r.pulse_ms),
        cooldown: Duration::from_millis(r.cooldown_ms),
        max_hold: Duration::from_secs(r.max_hold_s),
        safe_state,
    })
}

/// Parses a lane source string.
pub fn parse_source(s: &str, base: &Path) -> Result<SourceSpec, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("source is empty".into());
    }
    if let Some(rest) = s.strip_prefix("v4l2:") {
        return Ok(SourceSpec::Device(PathBuf::from(rest)));
    }
    if s.starts_with("/dev/video") {
        return Ok(SourceSpec::Device(PathBuf::from(s)));
    }
    if let Some((scheme, _)) = s.split_once("://") {
        return match scheme {
            "rtsp" | "rtsps" | "http" | "https" => Ok(SourceSpec::Url(s.to_string())),
            other => Err(format!("unsupported scheme {other:?}")),
        };
    }
    let p = s.strip_prefix("file:").unwrap_or(s);
    Ok(SourceSpec::File(resolve(base, p)))
}

fn validate_lane(l: RawLane, path: &str, base: &Path, issues: &mut Issues) -> Option<LaneConfig> {
    if l.name.trim().is_empty()
        || !l
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        issues.push(
            format!("{path}.name"),
            format!("{:?} is not a usable lane name", l.name),
            "use letters, digits, - and _ (e.g. \"entry\")",
        );
    }
    let source = match parse_source(&l.source, base) {
        Ok(s) => Some(s),
        Err(e) => {
            issues.push(
                format!("{path}.source"),
                e,
                "use a video file path, rtsp://host/stream, or /dev/videoN",
            );
            None
        }
    };
    let at_end = match l.at_end.as_str() {
        "stop" => AtEnd::Stop,
        "loop" => AtEnd::Loop,
        other => {
            issues.push(
                format!("{path}.at_end"),
                format!("unknown value {other:?}"),
                "use \"stop\" or \"loop\"",
            );
            AtEnd::Stop
        }
    };
    let roi = l.roi.map(|r| Roi {
        x: r.x,
        y: r.y,
        width: r.width,
        height: r.height,
    });
    if let Some(r) = roi {
        let ok = [r.x, r.y, r.width, r.height].iter().all(|v| (0.0..=1.0).contains(v))
            && r.width > 0.05
            && r.height > 0.05
            && r.x + r.width <= 1.0 + 1e-6
            && r.y + r.height <= 1.0 + 1e-6;
        if !ok {
            issues.push(
                format!("{path}.roi"),
                format!("{r:?} is not inside the frame"),
                "give x, y, width, height as fractions of the frame, with x + width <= 1 and y + height <= 1",
            );
        }
    }
    if l.reconnect_max_ms > 600_000 {
        issues.push(
            format!("{path}.reconnect_max_ms"),
            format!("{} ms is too long", l.reconnect_max_ms),
            "use at most 600000 (10 minutes)",
        );
    }
    if l.reconnect_min_ms == 0 || l.reconnect_min_ms > l.reconnect_max_ms {
        issues.push(
            format!("{path}.reconnect_min_ms"),
            "reconnect back-off bounds are inverted or zero",
            "use 0 < reconnect_min_ms <= reconnect_max_ms",
        );
    }
    if l.replay && !matches!(source, Some(SourceSpec::File(_))) {
        issues.push(
            format!("{path}.replay"),
            "replay is only for video files",
            "remove replay for a live camera (its frames are taken as they come)",
        );
    }
    Some(LaneConfig {
        name: l.name,
        source: source?,
        relay: l.relay,
        roi,
        at_end,
        realtime: l.realtime,
        replay: l.replay,
        reconnect_min: Duration::from_millis(l.reconnect_min_ms),
        reconnect_max: Duration::from_millis(l.reconnect_max_ms.max(l.reconnect_min_ms)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[site]
name = "test"
timezone = "America/Chicago"
data_dir = "data"
[recognize]
manifest = "Cargo.toml"
[relays.main]
kind = "simulated"
[[lanes]]
name = "entry"
source = "demo.avi"
relay = "main"
"#;

    fn base() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse(GOOD, &base()).expect("valid");
        assert_eq!(c.lanes.len(), 1);
        assert_eq!(c.lanes[0].source, SourceSpec::File(base().join("demo.avi")));
        assert_eq!(c.relays[0].safe_state, SafeState::Closed);
        assert_eq!(c.track.min_reads, 2);
        assert_eq!(c.site.data_dir, base().join("data"));
        assert!(
            c.lanes[0].reconnect_max <= Duration::from_secs(5),
            "a camera back from an outage is probed within 5 s"
        );
    }

    #[test]
    fn three_mistakes_are_reported_together_with_paths() {
        let bad = GOOD
            .replace("timezone = \"America/Chicago\"", "timezone = \"Mars/Olympus\"")
            .replace("relay = \"main\"", "relay = \"mian\"")
            .replace("kind = \"simulated\"", "kind = \"simulated\"\npulse_ms = 5");
        let err = parse(&bad, &base()).expect_err("invalid");
        let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths.len(), 3, "{err}");
        assert!(paths.contains(&"site.timezone"));
        assert!(paths.contains(&"lanes[0].relay"));
        assert!(paths.contains(&"relays.main.pulse_ms"));
        assert!(err.to_string().contains("fix:"));
    }

    #[test]
    fn the_allowlist_maximum_age_defaults_to_a_week_and_is_range_checked() {
        let sync = |extra: &str| {
            format!(
                "{GOOD}\n[sync]\ndevice = \"oak/gate-1\"\ntrusted_keys = {{ \"k\" = \"config/keys/cloud-2026a.pub\" }}\n{extra}"
            )
        };
        let c = parse(&sync(""), &base()).expect("valid");
        assert_eq!(
            c.sync.expect("sync").allowlist_max_age,
            Some(chrono::Duration::hours(168))
        );
        let off = parse(&sync("allowlist_max_age_hours = 0\n"), &base()).expect("valid");
        assert_eq!(off.sync.expect("sync").allowlist_max_age, None);
        let err = parse(&sync("allowlist_max_age_hours = 100000\n"), &base()).expect_err("invalid");
        assert_eq!(err.issues()[0].path, "sync.allowlist_max_age_hours", "{err}");
        assert!(err.issues()[0].fix.contains("0 for no alert"), "{err}");
    }

    #[test]
    fn the_database_reserve_is_bounded() {
        let c = parse(GOOD, &base()).expect("valid");
        assert_eq!(c.site.db_reserve_bytes, 8 * 1024 * 1024, "default 8 MB");
        let off = GOOD.replace("data_dir = \"data\"", "data_dir = \"data\"\ndb_reserve_mb = 0");
        assert_eq!(parse(&off, &base()).expect("valid").site.db_reserve_bytes, 0);
        let bad = GOOD.replace("data_dir = \"data\"", "data_dir = \"data\"\ndb_reserve_mb = 5000");
        let err = parse(&bad, &base()).expect_err("invalid");
        let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["site.db_reserve_mb"], "{err}");
        assert!(err.to_string().contains("use 0 to 4096"), "{err}");
    }

    #[test]
    fn mqtt_link_mistakes_name_their_keys() {
        let sync = format!(
            "{GOOD}\n[sync]\ndevice = \"oak/gate-1\"\ntrusted_keys = {{ \"k\" = \"config/keys/cloud-2026a.pub\" }}\n\
             [sync.mqtt]\nbroker = \"mqtt://plain:1883\"\nca = \"Cargo.toml\"\ncert = \"nope.pem\"\nkey = \"Cargo.toml\"\n\
             window = 0\n"
        );
        let err = parse(&sync, &base()).expect_err("invalid");
        let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            ["sync.mqtt.broker", "sync.mqtt.cert", "sync.mqtt.window"],
            "{err}"
        );
        assert!(err.to_string().contains("TLS is required"), "{err}");
        let good = sync
            .replace("mqtt://plain:1883", "mqtts://mqtt.example.com")
            .replace("nope.pem", "Cargo.toml")
            .replace("window = 0", "window = 50");
        let c = parse(&good, &base()).expect("valid");
        let s = c.sync.expect("sync");
        let m = s.mqtt.as_ref().expect("mqtt");
        assert_eq!((m.host.as_str(), m.port, m.window), ("mqtt.example.com", 8883, 50));
        assert_eq!(s.mqtt_id(), "oak.gate-1");
    }

    #[test]
    fn plates_per_frame_default_to_two_and_are_range_checked() {
        let c = parse(GOOD, &base()).expect("valid");
        assert_eq!(c.recognize.max_plates, 2);
        let one = GOOD.replace("manifest = \"Cargo.toml\"", "manifest = \"Cargo.toml\"\nmax_plates = 1");
        assert_eq!(parse(&one, &base()).expect("1 is fine").recognize.max_plates, 1);
        for bad in ["0", "9"] {
            let text = GOOD.replace(
                "manifest = \"Cargo.toml\"",
                &format!("manifest = \"Cargo.toml\"\nmax_plates = {bad}"),
            );
            let err = parse(&text, &base()).expect_err("invalid");
            assert_eq!(err.issues()[0].path, "recognize.max_plates", "{err}");
            assert!(err.to_string().contains("use 1 to 8"), "{err}");
        }
    }

    #[test]
    fn two_row_plate_setting_defaults_and_is_range_checked() {
        let c = parse(GOOD, &base()).expect("valid");
        assert_eq!(
            c.recognize.two_line_max_aspect,
            crate::recognize::DEFAULT_TWO_LINE_MAX_ASPECT
        );
        let off = GOOD.replace(
            "manifest = \"Cargo.toml\"",
            "manifest = \"Cargo.toml\"\ntwo_line_max_aspect = 0",
        );
        assert_eq!(
            parse(&off, &base()).expect("0 is off").recognize.two_line_max_aspect,
            0.0
        );
        let bad = GOOD.replace(
            "manifest = \"Cargo.toml\"",
            "manifest = \"Cargo.toml\"\ntwo_line_max_aspect = 0.5",
        );
        let err = parse(&bad, &base()).expect_err("invalid");
        assert_eq!(err.issues()[0].path, "recognize.two_line_max_aspect", "{err}");
        assert!(err.to_string().contains("e.g. 1.8"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let bad = GOOD.replace("source = \"demo.avi\"", "sorce = \"demo.avi\"");
        let err = parse(&bad, &base()).expect_err("invalid");
        let text = err.to_string();
        assert!(text.contains("lanes[0]"), "{text}");
        assert!(text.contains("sorce"), "{text}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("[site\nname=1", &base()).expect_err("invalid");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn sources_are_classified() {
        let b = Path::new("/etc/gatehouse");
        assert_eq!(
            parse_source("rtsp://cam/1", b),
            Ok(SourceSpec::Url("rtsp://cam/1".into()))
        );
        assert_eq!(
            parse_source("/dev/video2", b),
            Ok(SourceSpec::Device("/dev/video2".into()))
        );
        assert_eq!(
            parse_source("v4l2:/dev/video0", b),
            Ok(SourceSpec::Device("/dev/video0".into()))
        );
        assert_eq!(
            parse_source("file:a.mp4", b),
            Ok(SourceSpec::File("/etc/gatehouse/a.mp4".into()))
        );
        assert!(parse_source("ftp://x", b).is_err());
    }
}
