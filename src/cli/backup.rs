//! `gatehouse backup`, `backup-key` and `restore` (see [`crate::backup`]).

use std::path::Path;

use anyhow::Context;
use chrono::Utc;

use crate::backup::{self, seal, BackupError, Contents};
use crate::config::Config;

fn site_of(cfg: &Config) -> (String, Option<String>) {
    (cfg.site.name.clone(), cfg.sync.as_ref().map(|s| s.device.clone()))
}

fn shown(site: &str, device: Option<&str>) -> String {
    match device {
        Some(d) => format!("{site} (device {d})"),
        None => site.to_string(),
    }
}

pub fn backup(config: &Path, recipient: &Path, out: &Path, with_events: bool) -> anyhow::Result<()> {
    let cfg = super::load_unlocked(config)?;
    let to = seal::read_key(recipient)?;
    let mut conn = crate::db::open(&cfg.site.database_path())?;
    let (schema_version, tables) = backup::dump(&mut conn, with_events)?;
    let (site, device) = site_of(&cfg);
    let contents = Contents {
        format: 1,
        made_at: Utc::now(),
        version: crate::VERSION.to_string(),
        site,
        device,
        config: std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?,
        plate_key: backup::read_text(&cfg.plate_key_path())?.map(|t| t.trim().to_string()),
        audit_key: backup::read_text(&cfg.site.data_dir.join("audit-device.key"))?.map(|t| t.trim().to_string()),
        schema_version,
        with_events,
        tables,
    };
    let json = serde_json::to_vec(&contents)?;
    backup::write_file(out, &seal::encrypt(&to, &json)?)?;
    super::audit::record(&cfg, "backup.make", &out.display().to_string(), Some(contents.counts()))?;
    println!(
        "backup of {} written to {} ({} bytes, encrypted to {}): {}",
        shown(&contents.site, contents.device.as_deref()),
        out.display(),
        json.len(),
        recipient.display(),
        contents.counts()
    );
    Ok(())
}

pub fn backup_key(dir: &Path, id: &str) -> anyhow::Result<()> {
    let (k, p) = seal::write_pair(dir, id)?;
    println!(
        "private key {} (keep it off the box: whoever holds it can read every backup)\npublic key  {} (give it to `gatehouse backup --recipient`)",
        k.display(),
        p.display()
    );
    Ok(())
}

pub fn restore(config: &Path, from: &Path, key: &Path, other_site: bool) -> anyhow::Result<()> {
    let cfg = super::load_unlocked(config)?;
    let private = seal::read_key(key)?;
    let sealed = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    let contents: Contents = serde_json::from_slice(&seal::decrypt(&private, &sealed)?)
        .map_err(|e| BackupError::Invalid(format!("the backup's contents do not parse: {e}")))?;
    let (site, device) = site_of(&cfg);
    if (contents.site.as_str(), contents.device.as_deref()) != (site.as_str(), device.as_deref()) && !other_site {
        return Err(BackupError::OtherSite {
            backup: shown(&contents.site, contents.device.as_deref()),
            here: shown(&site, device.as_deref()),
        }
        .into());
    }
    let db_path = cfg.site.database_path();
    let mut conn = crate::db::open(&db_path)?;
    if let Some(what) = backup::holds_a_site(&conn)? {
        return Err(BackupError::NotFresh {
            path: cfg.site.data_dir.display().to_string(),
            what,
        }
        .into());
    }
    let rows = backup::load(&mut conn, &contents.tables)?;
    // The keys: the plate key seals opted-out plates in the restored allowlist, the audit key signed its
    // checkpoints. Sealed when this data folder is encrypted.
    let (plate_path, audit_path) = backup::key_paths(cfg.plate_key_path(), &cfg.site.data_dir);
    if let Some(k) = &contents.plate_key {
        crate::secrets::sealed::replace(&plate_path, format!("{k}\n").as_bytes())
            .with_context(|| format!("writing {}", plate_path.display()))?;
    }
    if let Some(k) = &contents.audit_key {
        crate::secrets::sealed::replace(&audit_path, format!("{k}\n").as_bytes())
            .with_context(|| format!("writing {}", audit_path.display()))?;
        let signing = crate::keyfile::parse_signing(k).map_err(|e| BackupError::Key(format!("audit key: {e}")))?;
        crate::keyfile::write_public(&audit_path.with_extension("pub"), &signing, true)?;
    }
    let audit_key = crate::audit::device_key(&audit_path)?;
    let report = crate::audit::verify(&conn, &audit_key.verifying_key())?;
    if let Some((seq, why)) = &report.first_bad {
        return Err(BackupError::Audit(format!("entry {seq}: {why}")).into());
    }
    drop(conn);
    super::audit::record(
        &cfg,
        "backup.restore",
        &from.display().to_string(),
        Some(format!(
            "backup of {} made {}",
            contents.site,
            contents.made_at.to_rfc3339()
        )),
    )?;
    let cfg_copy = config.with_extension("toml.from-backup");
    if contents.config != std::fs::read_to_string(config).unwrap_or_default() {
        crate::secret_file::replace(&cfg_copy, contents.config.as_bytes())?;
        println!(
            "the backup's config differs from {}: it is in {} to compare",
            config.display(),
            cfg_copy.display()
        );
    }
    println!(
        "restored {} rows of {} (made {}, version {}): {}; audit log OK: {} entries, {} signed checkpoint(s)",
        rows,
        shown(&contents.site, contents.device.as_deref()),
        contents.made_at.to_rfc3339(),
        contents.version,
        contents.counts(),
        report.entries,
        report.checkpoints
    );
    Ok(())
}
