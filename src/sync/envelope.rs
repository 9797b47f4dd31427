//! The signed allowlist envelope (JSON). The signature (ed25519) covers a canonical header: purpose tag,
//! kind, audience, version, base version, issued, expires, key id and the body's sha256; the body travels
//! as a string so its hash is exact. See docs/protocol.md.

use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keys::TrustedKeys;
use super::SyncError;
use crate::access::seal;
use crate::access::{Entry, Kind, Schedule};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Largest envelope accepted (before chunking, which the MQTT link adds).
pub const MAX_ENVELOPE_BYTES: usize = 32 * 1024 * 1024;
/// How far in the future `issued` may lie (the cloud's and the device's clocks differ a little).
pub const ISSUED_SKEW: chrono::Duration = chrono::Duration::minutes(10);
/// The longest an envelope may still be valid when it arrives (`expires - now`), in days.
pub const MAX_LIFETIME_DAYS: i64 = 31;

/// Checks a signed message's time window: issued no later than `now + ISSUED_SKEW`, not expired, and
/// valid for at most `max_left` from now. `what` names the message in errors.
pub(super) fn check_window(
    what: &str,
    issued: DateTime<Utc>,
    expires: DateTime<Utc>,
    expires_text: &str,
    now: DateTime<Utc>,
    max_left: chrono::Duration,
) -> Result<(), SyncError> {
    if issued > now + ISSUED_SKEW {
        return Err(SyncError::Lifetime(format!(
            "{what} issued at {} is in the future (this device's clock says {}; at most {} min ahead is \
             accepted): check the signer's and this device's clocks",
            issued.to_rfc3339(),
            now.to_rfc3339(),
            ISSUED_SKEW.num_minutes()
        )));
    }
    if now >= expires {
        return Err(SyncError::Expired(expires_text.to_string()));
    }
    if expires - now > max_left {
        return Err(SyncError::Lifetime(format!(
            "{what} is valid until {}, more than {} h from now: sign it with a shorter expiry",
            expires.to_rfc3339(),
            max_left.num_hours()
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvelopeKind {
    Snapshot,
    Delta,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub format: u32,
    pub kind: EnvelopeKind,
    /// `site/device`, or `site/*` for every device of a site.
    pub audience: String,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_version: Option<u64>,
    pub issued: String,
    pub expires: String,
    pub key_id: String,
    pub body_sha256: String,
    /// JSON of [`ListBody`], as a string.
    pub body: String,
    /// base64 ed25519 signature of [`Envelope::signed_message`].
    pub signature: String,
}

/// One entry on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireEntry {
    pub plate: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default)]
    pub do_not_log: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase", tag = "type")]
pub enum ListBody {
    Snapshot {
        entries: Vec<WireEntry>,
    },
    Delta {
        upsert: Vec<WireEntry>,
        remove: Vec<String>,
    },
}

/// A verified envelope, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub kind: EnvelopeKind,
    pub version: u64,
    /// Deltas: the version they apply to (checked again inside the apply transaction).
    pub base_version: Option<u64>,
    pub body_sha256: String,
    /// When the cloud signed it: the applied list's age counts from here.
    pub issued: DateTime<Utc>,
    pub upsert: Vec<Entry>,
    pub remove: Vec<String>,
}

impl From<&Entry> for WireEntry {
    fn from(e: &Entry) -> Self {
        Self {
            plate: e.plate.clone(),
            kind: e.kind.as_str().into(),
            host: e.host.clone(),
            unit: e.unit.clone(),
            valid_from: e.valid_from.map(|t| t.to_rfc3339()),
            valid_until: e.valid_until.map(|t| t.to_rfc3339()),
            schedule: e.schedule.as_ref().map(|s| s.as_str().to_string()),
            do_not_log: e.do_not_log,
            note: e.note.clone(),
        }
    }
}

pub(super) fn time(s: &str, what: &str) -> Result<DateTime<Utc>, SyncError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| SyncError::Malformed(format!("{what} {s:?}: {e}")))
}

impl WireEntry {
    fn to_entry(&self) -> Result<Entry, SyncError> {
        // An error names the entry, but never an opted-out plate's text (errors are logged).
        let shown = if self.do_not_log && !seal::is_sealed(&self.plate) {
            "(opted-out entry)"
        } else {
            self.plate.as_str()
        };
        let bad = |m: String| SyncError::Body(format!("entry {shown:?}: {m}"));
        seal::validate_listed(&self.plate).map_err(|e| {
            bad(if self.do_not_log {
                "not a plate or sealed id".into()
            } else {
                e
            })
        })?;
        let kind: Kind = self.kind.parse().map_err(bad)?;
        if self.do_not_log && kind == Kind::Blocked {
            return Err(bad("a blocked plate cannot be do_not_log".into()));
        }
        if seal::is_sealed(&self.plate) && !self.do_not_log {
            return Err(bad("a sealed id is only for a do_not_log entry".into()));
        }
        let t = |v: &Option<String>, w: &str| -> Result<Option<DateTime<Utc>>, SyncError> {
            v.as_deref()
                .map(|s| time(s, w).map_err(|e| bad(e.to_string())))
                .transpose()
        };
        let entry = Entry {
            plate: self.plate.clone(),
            kind,
            host: self.host.clone(),
            unit: self.unit.clone(),
            valid_from: t(&self.valid_from, "valid_from")?,
            valid_until: t(&self.valid_until, "valid_until")?,
            schedule: self.schedule.as_deref().map(Schedule::parse).transpose().map_err(bad)?,
            do_not_log: self.do_not_log,
            note: self.note.clone(),
        };
        entry.validate().map_err(bad)?;
        Ok(entry)
    }
}

impl Envelope {
    /// The exact bytes the signature covers.
    pub fn signed_message(&self) -> String {
        format!(
            "gatehouse-allowlist/1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            match self.kind {
                EnvelopeKind::Snapshot => "snapshot",
                EnvelopeKind::Delta => "delta",
            },
            self.audience,
            self.version,
            self.base_version.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
            self.issued,
            self.expires,
            self.key_id,
            self.body_sha256
        )
    }

    /// Builds and signs an envelope (what the cloud does; `gatehouse allowlist sign`).
    #[allow(clippy::too_many_arguments)]
    pub fn make(
        body: &ListBody,
        audience: &str,
        version: u64,
        base_version: Option<u64>,
        issued: DateTime<Utc>,
        expires: DateTime<Utc>,
        key_id: &str,
        key: &SigningKey,
    ) -> Result<Self, SyncError> {
        let kind = match body {
            ListBody::Snapshot { .. } => EnvelopeKind::Snapshot,
            ListBody::Delta { .. } => EnvelopeKind::Delta,
        };
        check_header_field("audience", audience)?;
        check_header_field("key_id", key_id)?;
        let body = serde_json::to_string(body).map_err(|e| SyncError::Body(e.to_string()))?;
        let mut env = Envelope {
            format: 1,
            kind,
            audience: audience.to_string(),
            version,
            base_version,
            issued: issued.to_rfc3339(),
            expires: expires.to_rfc3339(),
            key_id: key_id.to_string(),
            body_sha256: hex::encode(Sha256::digest(body.as_bytes())),
            body,
            signature: String::new(),
        };
        env.signature = B64.encode(key.sign(env.signed_message().as_bytes()).to_bytes());
        Ok(env)
    }
}

/// Header fields are joined with newlines for signing: a newline inside one would make it ambiguous.
pub(super) fn check_header_field(name: &str, v: &str) -> Result<(), SyncError> {
    if v.is_empty() || v.len() > 200 || v.chars().any(|c| c.is_control()) {
        return Err(SyncError::Malformed(format!(
            "{name} must be 1-200 printable characters"
        )));
    }
    Ok(())
}

/// Does the envelope's audience include this device (`site/device`)?
pub(super) fn audience_matches(envelope: &str, device: &str) -> bool {
    envelope == device
        || envelope
            .strip_suffix("/*")
            .is_some_and(|site| device.split_once('/').is_some_and(|(s, _)| s == site))
}

/// Verifies a raw payload against the trusted keys, this device's audience, the applied version and the
/// time. Authenticity is checked before any field is trusted.
pub fn verify(
    payload: &[u8],
    keys: &TrustedKeys,
    device: &str,
    applied_version: u64,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Verified, SyncError> {
    if payload.len() > limit {
        return Err(SyncError::Oversized {
            size: payload.len(),
            limit,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|e| SyncError::Malformed(format!("not UTF-8: {e}")))?;
    let env: Envelope = serde_json::from_str(text).map_err(|e| SyncError::Malformed(e.to_string()))?;
    if env.format != 1 {
        return Err(SyncError::Malformed(format!(
            "format {} is not supported (1 is)",
            env.format
        )));
    }
    check_header_field("audience", &env.audience)?;
    check_header_field("key_id", &env.key_id)?;
    keys.verify(&env.key_id, &env.signature, env.signed_message().as_bytes())?;
    if hex::encode(Sha256::digest(env.body.as_bytes())) != env.body_sha256 {
        return Err(SyncError::BodyHash);
    }
    if !audience_matches(&env.audience, device) {
        return Err(SyncError::WrongAudience {
            expected: device.to_string(),
            got: env.audience,
        });
    }
    let expires = time(&env.expires, "expires")?;
    let issued = time(&env.issued, "issued")?;
    check_window(
        "the envelope",
        issued,
        expires,
        &env.expires,
        now,
        chrono::Duration::days(MAX_LIFETIME_DAYS),
    )?;
    if env.version <= applied_version {
        return Err(SyncError::NotNewer {
            got: env.version,
            applied: applied_version,
        });
    }
    let body: ListBody = serde_json::from_str(&env.body).map_err(|e| SyncError::Body(e.to_string()))?;
    let (upsert, remove) = match (env.kind, body) {
        (EnvelopeKind::Snapshot, ListBody::Snapshot { entries }) => {
            if env.base_version.is_some() {
                return Err(SyncError::Malformed("a snapshot has no base_version".into()));
            }
            (entries, Vec::new())
        }
        (EnvelopeKind::Delta, ListBody::Delta { upsert, remove }) => {
            let base = env
                .base_version
                .ok_or_else(|| SyncError::Malformed("a delta needs base_version".into()))?;
            if base != applied_version {
                return Err(SyncError::BaseMismatch {
                    base,
                    applied: applied_version,
                });
            }
            (upsert, remove)
        }
        _ => return Err(SyncError::Malformed("kind and body type differ".into())),
    };
    let upsert = upsert.iter().map(WireEntry::to_entry).collect::<Result<Vec<_>, _>>()?;
    // One entry per plate: a second would silently replace the first.
    let mut seen = std::collections::HashSet::with_capacity(upsert.len());
    for e in &upsert {
        if !seen.insert(e.plate.as_str()) {
            let shown = if e.do_not_log && !seal::is_sealed(&e.plate) {
                "(opted-out entry)"
            } else {
                e.plate.as_str()
            };
            return Err(SyncError::Body(format!(
                "entry {shown:?} is listed twice; send one entry per plate"
            )));
        }
    }
    for p in &remove {
        seal::validate_listed(p).map_err(|e| SyncError::Body(format!("remove: {e}")))?;
    }
    Ok(Verified {
        kind: env.kind,
        version: env.version,
        base_version: env.base_version,
        body_sha256: env.body_sha256,
        issued,
        upsert,
        remove,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::keys;

    struct Fixture {
        key: SigningKey,
        keys: TrustedKeys,
        now: DateTime<Utc>,
    }

    fn fixture() -> Fixture {
        let key = keys::generate().expect("key");
        let mut keys = TrustedKeys::default();
        keys.add("cloud-1", key.verifying_key());
        Fixture {
            key,
            keys,
            now: Utc::now(),
        }
    }

    fn snapshot(f: &Fixture, version: u64, audience: &str) -> Envelope {
        let body = ListBody::Snapshot {
            entries: vec![WireEntry::from(&Entry {
                host: Some("Ana".into()),
                ..Entry::new("ABC123", Kind::Resident)
            })],
        };
        Envelope::make(
            &body,
            audience,
            version,
            None,
            f.now,
            f.now + chrono::Duration::hours(1),
            "cloud-1",
            &f.key,
        )
        .expect("make")
    }

    fn check(f: &Fixture, env: &Envelope, applied: u64) -> Result<Verified, SyncError> {
        let bytes = serde_json::to_vec(env).expect("json");
        verify(&bytes, &f.keys, "oak/gate-1", applied, f.now, MAX_ENVELOPE_BYTES)
    }

    #[test]
    fn a_good_snapshot_verifies() {
        let f = fixture();
        let v = check(&f, &snapshot(&f, 5, "oak/gate-1"), 4).expect("verified");
        assert_eq!((v.version, v.upsert.len()), (5, 1));
        assert!(check(&f, &snapshot(&f, 5, "oak/*"), 4).is_ok(), "site-wide audience");
    }

    #[test]
    fn every_forgery_and_replay_is_rejected_with_its_reason() {
        let f = fixture();
        let good = snapshot(&f, 5, "oak/gate-1");
        assert_eq!(
            check(&f, &good, 5),
            Err(SyncError::NotNewer { got: 5, applied: 5 }),
            "replay"
        );
        let mut tampered = good.clone();
        tampered.body = tampered.body.replace("ABC123", "XYZ999");
        assert_eq!(check(&f, &tampered, 4), Err(SyncError::BodyHash));
        let mut resigned_header = good.clone();
        resigned_header.version = 9;
        assert!(matches!(
            check(&f, &resigned_header, 4),
            Err(SyncError::BadSignature(_))
        ));
        assert!(matches!(
            check(&f, &snapshot(&f, 5, "elm/gate-1"), 4),
            Err(SyncError::WrongAudience { .. })
        ));
        let expired = Envelope::make(
            &ListBody::Snapshot { entries: vec![] },
            "oak/gate-1",
            6,
            None,
            f.now - chrono::Duration::hours(2),
            f.now - chrono::Duration::hours(1),
            "cloud-1",
            &f.key,
        )
        .expect("make");
        assert!(matches!(check(&f, &expired, 4), Err(SyncError::Expired(_))));
        let stranger = keys::generate().expect("key");
        let mut unknown = snapshot(&f, 5, "oak/gate-1");
        unknown.key_id = "someone".into();
        unknown.signature = B64.encode(stranger.sign(unknown.signed_message().as_bytes()).to_bytes());
        assert_eq!(check(&f, &unknown, 4), Err(SyncError::UnknownKey("someone".into())));
        let mut by_stranger = snapshot(&f, 5, "oak/gate-1");
        by_stranger.signature = B64.encode(stranger.sign(by_stranger.signed_message().as_bytes()).to_bytes());
        assert!(matches!(check(&f, &by_stranger, 4), Err(SyncError::BadSignature(_))));
    }

    #[test]
    fn an_envelope_issued_in_the_future_or_valid_too_long_is_refused() {
        let f = fixture();
        let make = |issued, expires| {
            Envelope::make(
                &ListBody::Snapshot { entries: vec![] },
                "oak/gate-1",
                6,
                None,
                issued,
                expires,
                "cloud-1",
                &f.key,
            )
            .expect("make")
        };
        let h = chrono::Duration::hours;
        let future = make(f.now + h(30), f.now + h(31));
        assert!(
            matches!(check(&f, &future, 4), Err(SyncError::Lifetime(_))),
            "issued in the future"
        );
        let slight = make(f.now + chrono::Duration::minutes(5), f.now + h(1));
        assert!(check(&f, &slight, 4).is_ok(), "a few minutes of clock skew is fine");
        let forever = make(f.now, f.now + chrono::Duration::days(3650));
        assert!(
            matches!(check(&f, &forever, 4), Err(SyncError::Lifetime(_))),
            "no upper bound"
        );
        let month = make(f.now, f.now + chrono::Duration::days(MAX_LIFETIME_DAYS) - h(1));
        assert_eq!(
            check(&f, &month, 4).expect("within the cap").issued.timestamp(),
            f.now.timestamp()
        );
    }

    #[test]
    fn deltas_must_build_on_the_applied_version() {
        let f = fixture();
        let body = ListBody::Delta {
            upsert: vec![],
            remove: vec!["ABC123".into()],
        };
        let d = Envelope::make(
            &body,
            "oak/gate-1",
            7,
            Some(6),
            f.now,
            f.now + chrono::Duration::hours(1),
            "cloud-1",
            &f.key,
        )
        .expect("make");
        assert!(check(&f, &d, 6).is_ok());
        assert_eq!(check(&f, &d, 5), Err(SyncError::BaseMismatch { base: 6, applied: 5 }));
    }

    #[test]
    fn oversized_fields_and_duplicate_plates_are_rejected() {
        let f = fixture();
        let env = |entries: Vec<WireEntry>| {
            Envelope::make(
                &ListBody::Snapshot { entries },
                "oak/gate-1",
                5,
                None,
                f.now,
                f.now + chrono::Duration::hours(1),
                "cloud-1",
                &f.key,
            )
            .expect("make")
        };
        let ana = WireEntry::from(&Entry::new("ABC123", Kind::Resident));
        let huge = WireEntry {
            host: Some("x".repeat(1 << 20)),
            ..ana.clone()
        };
        let e = check(&f, &env(vec![huge]), 4);
        assert!(matches!(&e, Err(SyncError::Body(m)) if m.contains("host")), "{e:?}");
        let e = check(&f, &env(vec![ana.clone(), ana.clone()]), 4);
        assert!(matches!(&e, Err(SyncError::Body(m)) if m.contains("twice")), "{e:?}");
        let long_schedule = WireEntry {
            schedule: Some("mon 07:00-08:00; ".repeat(1000)),
            ..ana
        };
        assert!(matches!(
            check(&f, &env(vec![long_schedule]), 4),
            Err(SyncError::Body(_))
        ));
    }

    #[test]
    fn junk_is_rejected_not_panicked_on() {
        let f = fixture();
        for junk in [&b"{"[..], b"null", b"[]", b"\xff\xfe", b"{\"format\":1}", b""] {
            let r = verify(junk, &f.keys, "oak/gate-1", 0, f.now, MAX_ENVELOPE_BYTES);
            assert!(matches!(r, Err(SyncError::Malformed(_))), "{junk:?}: {r:?}");
        }
        let big = vec![b' '; 2048];
        assert!(matches!(
            verify(&big, &f.keys, "oak/gate-1", 0, f.now, 1024),
            Err(SyncError::Oversized { .. })
        ));
    }
}
