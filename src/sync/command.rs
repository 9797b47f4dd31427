//! Signed commands from the cloud: data subject requests (DSAR export and delete) for one plate. Like the
//! allowlist envelope, a command is signed (ed25519) by a trusted cloud key over a canonical header; it
//! names its audience, carries a stated purpose and who asked, expires, and runs at most once (its id
//! is recorded). See docs/protocol.md, "DSAR commands".

use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

use super::envelope::{audience_matches, check_header_field, check_window, time};
use super::keys::TrustedKeys;
use super::SyncError;
use crate::plate;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Largest command accepted.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;
/// A command is valid for at most this long after it was issued.
pub const MAX_LIFETIME_HOURS: i64 = 72;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandAction {
    DsarExport,
    DsarDelete,
}

impl CommandAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandAction::DsarExport => "dsar_export",
            CommandAction::DsarDelete => "dsar_delete",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    pub format: u32,
    /// Unique per command (a UUID); a command id runs once.
    pub id: String,
    pub action: CommandAction,
    /// `site/device`, or `site/*`.
    pub audience: String,
    /// The plate the request is about (A-Z0-9).
    pub plate: String,
    /// Why (recorded in the access log, as California requires for every query).
    pub purpose: String,
    /// Who at the cloud asked (recorded as the actor).
    pub requested_by: String,
    pub issued: String,
    pub expires: String,
    pub key_id: String,
    /// base64 ed25519 signature of [`Command::signed_message`].
    pub signature: String,
}

impl Command {
    /// The exact bytes the signature covers.
    pub fn signed_message(&self) -> String {
        format!(
            "gatehouse-command/1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.action.as_str(),
            self.id,
            self.audience,
            self.plate,
            self.purpose,
            self.requested_by,
            self.issued,
            self.expires,
            self.key_id
        )
    }

    /// Builds and signs a command (what the cloud does; also `gatehouse dsar sign`).
    #[allow(clippy::too_many_arguments)]
    pub fn make(
        action: CommandAction,
        id: &str,
        audience: &str,
        plate_text: &str,
        purpose: &str,
        requested_by: &str,
        issued: DateTime<Utc>,
        expires: DateTime<Utc>,
        key_id: &str,
        key: &SigningKey,
    ) -> Result<Self, SyncError> {
        let mut c = Command {
            format: 1,
            id: id.into(),
            action,
            audience: audience.into(),
            plate: plate_text.into(),
            purpose: purpose.into(),
            requested_by: requested_by.into(),
            issued: issued.to_rfc3339(),
            expires: expires.to_rfc3339(),
            key_id: key_id.into(),
            signature: String::new(),
        };
        c.check_fields()?;
        c.signature = B64.encode(key.sign(c.signed_message().as_bytes()).to_bytes());
        Ok(c)
    }

    fn check_fields(&self) -> Result<(), SyncError> {
        for (name, v) in [
            ("id", &self.id),
            ("audience", &self.audience),
            ("plate", &self.plate),
            ("purpose", &self.purpose),
            ("requested_by", &self.requested_by),
            ("key_id", &self.key_id),
        ] {
            check_header_field(name, v)?;
        }
        plate::validate(&self.plate).map_err(SyncError::Body)
    }
}

/// Verifies a raw command: size, form, trusted signature, audience, time window. Whether it already ran
/// is the caller's check (it needs the database).
pub fn verify(payload: &[u8], keys: &TrustedKeys, device: &str, now: DateTime<Utc>) -> Result<Command, SyncError> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(SyncError::Oversized {
            size: payload.len(),
            limit: MAX_COMMAND_BYTES,
        });
    }
    let c: Command = serde_json::from_slice(payload).map_err(|e| SyncError::Malformed(e.to_string()))?;
    if c.format != 1 {
        return Err(SyncError::Malformed(format!(
            "command format {} is not supported (1 is)",
            c.format
        )));
    }
    // Fields are checked before the signature so no newline can shift the signed header.
    c.check_fields()?;
    keys.verify(&c.key_id, &c.signature, c.signed_message().as_bytes())?;
    if !audience_matches(&c.audience, device) {
        return Err(SyncError::WrongAudience {
            expected: device.to_string(),
            got: c.audience,
        });
    }
    let issued = time(&c.issued, "issued")?;
    let expires = time(&c.expires, "expires")?;
    let window = chrono::Duration::hours(MAX_LIFETIME_HOURS);
    if expires - issued > window {
        return Err(SyncError::Malformed(format!(
            "a command may live at most {MAX_LIFETIME_HOURS} hours"
        )));
    }
    // ... counted from now, too: `issued` may not lie in the future (beyond a little clock skew).
    check_window("the command", issued, expires, &c.expires, now, window)?;
    Ok(c)
}

/// What a command did: the result reported to the cloud, and for an export its bundle (JSON bytes).
#[derive(Debug)]
pub struct Outcome {
    pub result: serde_json::Value,
    pub export: Option<Vec<u8>>,
}

fn db<E: std::fmt::Display>(e: E) -> SyncError {
    SyncError::Db(e.to_string())
}

/// Runs a verified command once: the access log (with its purpose) first, then the export or delete
/// (legal holds respected), then the signed audit log; the command id is recorded last, so a command
/// cut short by a power cut runs again when redelivered (both actions are safe to repeat).
pub fn execute(
    conn: &mut rusqlite::Connection,
    c: &Command,
    key: &crate::access::PlateKey,
    data_dir: &std::path::Path,
    now: DateTime<Utc>,
) -> Result<Outcome, SyncError> {
    use crate::events::{access_log, dsar};
    use rusqlite::OptionalExtension;
    let ran = conn
        .query_row("SELECT 1 FROM commands WHERE id = ?1", [&c.id], |_| Ok(()))
        .optional()
        .map_err(db)?;
    if ran.is_some() {
        return Err(SyncError::AlreadyRan(c.id.clone()));
    }
    let actor = format!("cloud:{}", c.requested_by);
    // An opted-out resident's plate is logged by its sealed id only.
    let shown = access_log::plate_as_logged(conn, &c.plate, key).map_err(db)?;
    let (logged, audited) = match c.action {
        CommandAction::DsarExport => ("dsar-export", "dsar.export"),
        CommandAction::DsarDelete => ("dsar-delete", "dsar.delete"),
    };
    access_log::record(conn, &actor, logged, &shown, &c.purpose, now).map_err(db)?;
    let (result, export) = match c.action {
        CommandAction::DsarExport => {
            use sha2::Digest;
            // A folder named by a hash of the id: the id is the cloud's text, never a path.
            let dir = data_dir.join(format!(
                "dsar-export-{}",
                &hex::encode(sha2::Sha256::digest(c.id.as_bytes()))[..16]
            ));
            let exported = dsar::export(conn, &c.plate, &key.seal(&c.plate), &dir)
                .map_err(db)
                .and_then(|(events, crops)| bundle(c, &dir).map(|b| (events, crops, b)));
            let _ = std::fs::remove_dir_all(&dir);
            let (events, crops, b) = exported?;
            (serde_json::json!({"events": events, "crops": crops}), Some(b))
        }
        CommandAction::DsarDelete => {
            let (deleted, kept) = dsar::delete(conn, &c.plate).map_err(db)?;
            (serde_json::json!({"deleted": deleted, "kept_on_hold": kept}), None)
        }
    };
    let a = crate::audit::Action {
        actor,
        role: "cloud".into(),
        source: Some(format!("cloud link, key {}", c.key_id)),
        action: audited.into(),
        target: Some(shown),
        after: Some(format!("{result}; purpose: {}", c.purpose)),
        ..Default::default()
    };
    crate::audit::append(conn, &a, now).map_err(db)?;
    let audit_key = crate::audit::device_key(&data_dir.join("audit-device.key")).map_err(db)?;
    crate::audit::checkpoint(conn, &audit_key, "device", now).map_err(db)?;
    conn.execute(
        "INSERT INTO commands (id, action, received_at, outcome) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![c.id, c.action.as_str(), now.timestamp_millis(), result.to_string()],
    )
    .map_err(db)?;
    Ok(Outcome { result, export })
}

/// The export folder as one JSON document: the records and every crop (base64 JPEG).
fn bundle(c: &Command, dir: &std::path::Path) -> Result<Vec<u8>, SyncError> {
    let records: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("records.json")).map_err(db)?).map_err(db)?;
    let mut crops = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("crops")) {
        let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            crops.push(serde_json::json!({"name": name, "jpeg_base64": B64.encode(std::fs::read(&p).map_err(db)?)}));
        }
    }
    serde_json::to_vec(&serde_json::json!({
        "format": 1, "command_id": c.id, "plate": c.plate, "records": records, "crops": crops,
    }))
    .map_err(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (SigningKey, TrustedKeys) {
        let key = crate::sync::keys::generate().expect("key");
        let mut keys = TrustedKeys::default();
        keys.add("cloud-1", key.verifying_key());
        (key, keys)
    }

    fn cmd(key: &SigningKey, audience: &str, hours: i64) -> Command {
        let now = Utc::now();
        Command::make(
            CommandAction::DsarDelete,
            "0b6f5e7c-1",
            audience,
            "ABC123",
            "resident request #42",
            "privacy@hoa",
            now,
            now + chrono::Duration::hours(hours),
            "cloud-1",
            key,
        )
        .expect("make")
    }

    #[test]
    fn a_command_issued_in_the_future_is_refused() {
        let (key, keys) = setup();
        let now = Utc::now();
        let h = chrono::Duration::hours;
        let make = |issued, expires| {
            let c = Command::make(
                CommandAction::DsarExport,
                "id-1",
                "oak/*",
                "ABC123",
                "resident request",
                "privacy@hoa",
                issued,
                expires,
                "cloud-1",
                &key,
            )
            .expect("make");
            verify(&serde_json::to_vec(&c).expect("json"), &keys, "oak/gate-1", now)
        };
        // 72 h between issued and expires, but issued a month ahead: it would run for a month and three days.
        let e = make(now + h(24 * 30), now + h(24 * 30 + 72));
        assert!(matches!(e, Err(SyncError::Lifetime(_))), "{e:?}");
        assert!(
            make(now + chrono::Duration::minutes(2), now + h(2)).is_ok(),
            "small clock skew"
        );
    }

    #[test]
    fn a_signed_command_verifies_and_forgeries_do_not() {
        let (key, keys) = setup();
        let c = cmd(&key, "oak/*", 1);
        let raw = serde_json::to_vec(&c).expect("json");
        let v = verify(&raw, &keys, "oak/gate-1", Utc::now()).expect("verify");
        assert_eq!((v.action, v.plate.as_str()), (CommandAction::DsarDelete, "ABC123"));

        let mut changed = c.clone();
        changed.plate = "XYZ999".into();
        let e = verify(
            &serde_json::to_vec(&changed).expect("json"),
            &keys,
            "oak/gate-1",
            Utc::now(),
        );
        assert!(matches!(e, Err(SyncError::BadSignature(_))), "{e:?}");
        let e = verify(&raw, &keys, "elm/gate-1", Utc::now());
        assert!(matches!(e, Err(SyncError::WrongAudience { .. })), "{e:?}");
        let e = verify(&raw, &keys, "oak/gate-1", Utc::now() + chrono::Duration::hours(2));
        assert!(matches!(e, Err(SyncError::Expired(_))), "{e:?}");
        let long = serde_json::to_vec(&cmd(&key, "oak/*", 100)).expect("json");
        assert!(matches!(
            verify(&long, &keys, "oak/gate-1", Utc::now()),
            Err(SyncError::Malformed(_))
        ));
        let (other, _) = setup();
        let forged = serde_json::to_vec(&cmd(&other, "oak/*", 1)).expect("json");
        assert!(matches!(
            verify(&forged, &keys, "oak/gate-1", Utc::now()),
            Err(SyncError::BadSignature(_))
        ));
        assert!(matches!(
            verify(b"{not json", &keys, "oak/gate-1", Utc::now()),
            Err(SyncError::Malformed(_))
        ));
    }
}
