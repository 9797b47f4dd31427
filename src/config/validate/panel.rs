//! `[panel]`: the guards' HTTPS panel (address, TLS, sessions, roles).

use super::*;

pub(super) fn validate_panel(p: RawPanel, base: &Path, issues: &mut Issues) -> Option<PanelConfig> {
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
