//! `[sync]` and `[sync.mqtt]`: the device, trusted keys, the allowlist's age limit and the broker.

use super::*;

/// Longest `[sync] allowlist_max_age_hours` (a year).
const MAX_ALLOWLIST_AGE_HOURS: u32 = 8760;

pub(super) fn validate_sync(s: RawSync, base: &Path, issues: &mut Issues) -> Option<SyncConfig> {
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

pub(super) fn validate_mqtt(m: RawMqtt, base: &Path, issues: &mut Issues) -> Option<MqttConfig> {
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
    let protocol = match m.protocol.as_str() {
        "5" | "5.0" => MqttProtocol::V5,
        "3.1.1" | "4" => MqttProtocol::V311,
        other => {
            issues.push(
                "sync.mqtt.protocol",
                format!("{other:?} is not an MQTT version this device speaks"),
                "use \"5\" (default) or \"3.1.1\" for a broker without MQTT 5",
            );
            MqttProtocol::V5
        }
    };
    if !(1..=8760).contains(&m.session_expiry_h) {
        issues.push(
            "sync.mqtt.session_expiry_h",
            format!("{} is out of range", m.session_expiry_h),
            "use 1 to 8760 hours (how long the broker keeps messages for an offline device)",
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
        protocol,
        session_expiry: Duration::from_secs(u64::from(m.session_expiry_h) * 3600),
    })
}
