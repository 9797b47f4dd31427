//! `gatehouse audit verify|export`, and recording CLI actions in the audit log.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::Utc;

use super::AuditAction;
use crate::audit::{self, Action};
use crate::config::Config;

fn key_path(cfg: &Config) -> PathBuf {
    cfg.site.data_dir.join("audit-device.key")
}

/// Appends an operator action from the command line and signs a checkpoint of the new head.
pub fn record(cfg: &Config, action: &str, target: &str, after: Option<String>) -> anyhow::Result<()> {
    let mut conn = crate::db::open(&cfg.site.database_path())?;
    let a = Action {
        actor: crate::events::access_log::current_actor(),
        role: "operator".into(),
        source: Some("cli".into()),
        action: action.into(),
        target: Some(target.into()),
        after,
        ..Default::default()
    };
    audit::append(&mut conn, &a, Utc::now())?;
    let key = audit::device_key(&key_path(cfg))?;
    audit::checkpoint(&conn, &key, "device", Utc::now())?;
    Ok(())
}

pub fn audit_cmd(config: &Path, action: AuditAction) -> anyhow::Result<()> {
    let cfg = super::load_unlocked(config)?;
    let conn = crate::db::open(&cfg.site.database_path())?;
    match action {
        AuditAction::Verify => {
            let key = audit::device_key(&key_path(&cfg))?;
            let r = audit::verify(&conn, &key.verifying_key())?;
            match r.first_bad {
                None => println!(
                    "audit log OK: {} entries, {} signed checkpoint(s)",
                    r.entries, r.checkpoints
                ),
                Some((seq, why)) => anyhow::bail!("audit log is NOT intact: first bad sequence {seq}: {why}"),
            }
        }
        AuditAction::Export { out } => {
            let mut st = conn.prepare(
                "SELECT seq, at, actor, role, session, source, action, target, before, after, prev_hash, hash FROM audit_log ORDER BY seq",
            )?;
            let rows = st.query_map([], |r| {
                Ok(serde_json::json!({
                    "seq": r.get::<_, i64>(0)?,
                    "at": chrono::DateTime::from_timestamp_millis(r.get(1)?).map(|t| t.to_rfc3339()),
                    "actor": r.get::<_, String>(2)?, "role": r.get::<_, String>(3)?,
                    "session": r.get::<_, Option<String>>(4)?, "source": r.get::<_, Option<String>>(5)?,
                    "action": r.get::<_, String>(6)?, "target": r.get::<_, Option<String>>(7)?,
                    "before": r.get::<_, Option<String>>(8)?, "after": r.get::<_, Option<String>>(9)?,
                    "prev_hash": r.get::<_, String>(10)?, "hash": r.get::<_, String>(11)?,
                }))
            })?;
            let mut w: Box<dyn Write> = match &out {
                Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?),
                None => Box::new(std::io::stdout().lock()),
            };
            for row in rows {
                writeln!(w, "{}", row?)?;
            }
        }
    }
    Ok(())
}
