//! `gatehouse allowlist ...`

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{AllowlistAction, KeysAction};
use crate::access::{store, Entry, Kind, Schedule};
use crate::plate;

fn time(v: Option<String>, what: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .with_context(|| format!("--{what} {s:?}: use RFC 3339, e.g. 2026-12-01T08:00:00Z"))
    })
    .transpose()
}

pub fn keys(action: KeysAction) -> anyhow::Result<()> {
    match action {
        KeysAction::Generate { dir, id } => {
            let key = crate::sync::keys::generate()?;
            let (private, public) = crate::sync::keys::write_pair(&dir, &id, &key)?;
            println!("private key: {} (keep it on the signing side only)", private.display());
            println!(
                "public key:  {} (give it to devices as trusted key {id:?})",
                public.display()
            );
        }
    }
    Ok(())
}

pub fn allowlist(config: &Path, action: AllowlistAction) -> anyhow::Result<()> {
    if let AllowlistAction::Sign {
        key,
        key_id,
        audience,
        version,
        base,
        expires_hours,
        csv,
        remove,
        plate_key,
    } = action
    {
        return sign(
            &key,
            &key_id,
            &audience,
            version,
            base,
            expires_hours,
            csv.as_deref(),
            remove,
            plate_key.as_deref(),
        );
    }
    let cfg = super::load_unlocked(config)?;
    let mut conn = crate::db::open(&cfg.site.database_path())?;
    let key = crate::access::PlateKey::load_or_create(&cfg.plate_key_path())?;
    match action {
        AllowlistAction::Import { csv } => {
            let f = std::fs::File::open(&csv).with_context(|| format!("cannot open {}", csv.display()))?;
            let entries = store::parse_csv(f)?;
            // Entries that replace one already listed (same normalised plate) are named, not silent.
            let mut replaced = Vec::new();
            for e in &entries {
                if store::get(&conn, &e.plate, &key)?.is_some() {
                    replaced.push(if e.do_not_log {
                        key.seal(&e.plate)
                    } else {
                        e.plate.clone()
                    });
                }
            }
            let n = store::upsert(&mut conn, &entries, Utc::now(), &key)?;
            if !replaced.is_empty() {
                let more = replaced.len().saturating_sub(10);
                eprintln!(
                    "{} entries replaced ones already listed: {}{}",
                    replaced.len(),
                    replaced[..replaced.len().min(10)].join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                );
            }
            super::audit::record(
                &cfg,
                "allowlist.import",
                &csv.display().to_string(),
                Some(format!("{n} entries")),
            )?;
            println!("imported {n} entries from {}", csv.display());
        }
        AllowlistAction::Export { out } => {
            let entries = store::load_all(&conn)?;
            match out {
                Some(p) => {
                    let f = std::fs::File::create(&p).with_context(|| format!("cannot write {}", p.display()))?;
                    store::write_csv(&entries, f)?;
                    eprintln!("exported {} entries to {}", entries.len(), p.display());
                }
                None => store::write_csv(&entries, std::io::stdout().lock())?,
            }
        }
        AllowlistAction::Add {
            plate: p,
            kind,
            host,
            unit,
            valid_from,
            valid_until,
            schedule,
            do_not_log,
            note,
        } => {
            let plate_text = plate::normalize(&p);
            plate::validate(&plate_text).map_err(anyhow::Error::msg)?;
            let kind: Kind = kind.parse().map_err(anyhow::Error::msg)?;
            let schedule = schedule
                .map(|s| Schedule::parse(&s))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let entry = Entry {
                plate: plate_text.clone(),
                kind,
                host,
                unit,
                valid_from: time(valid_from, "valid-from")?,
                valid_until: time(valid_until, "valid-until")?,
                schedule,
                do_not_log,
                note,
            };
            entry.validate().map_err(anyhow::Error::msg)?;
            let before = store::get(&conn, &plate_text, &key)?;
            store::upsert(&mut conn, &[entry], Utc::now(), &key)?;
            // An opted-out plate is named by its sealed id only, here as in the database.
            let shown = if do_not_log { key.seal(&plate_text) } else { plate_text };
            super::audit::record(&cfg, "allowlist.add", &shown, Some(kind.to_string()))?;
            println!(
                "{shown}: saved as {kind}{}{}",
                if do_not_log { " (opted out: stored sealed)" } else { "" },
                match before {
                    Some(b) => format!(", replacing the {} entry that was listed", b.kind),
                    None => String::new(),
                }
            );
        }
        AllowlistAction::Remove { plate: p } => {
            let plate_text = if crate::access::seal::is_sealed(p.trim()) {
                p.trim().to_string()
            } else {
                plate::normalize(&p)
            };
            if store::remove(&conn, &plate_text, &key)? {
                super::audit::record(&cfg, "allowlist.remove", &plate_text, None)?;
                println!("{plate_text}: removed");
            } else {
                anyhow::bail!("{plate_text} is not on the list");
            }
        }
        AllowlistAction::Sign { .. } => {} // handled before the config is loaded
        AllowlistAction::Apply {
            envelope,
            device,
            trust,
        } => {
            // The configured identity and trust store win: command-line values are only for a device with no
            // [sync] section (an installer's bench test), so a typed flag can never widen what is trusted.
            let mut keys = crate::sync::keys::TrustedKeys::default();
            let device = match &cfg.sync {
                Some(sync) => {
                    anyhow::ensure!(
                        device.as_deref().is_none_or(|d| d == sync.device) && trust.is_empty(),
                        "this device's identity and trusted keys come from [sync] in the config; drop --device/--trust"
                    );
                    for (id, path) in &sync.trusted_keys {
                        keys.add(id, crate::sync::keys::read_verifying(path)?);
                    }
                    sync.device.clone()
                }
                None => {
                    for t in &trust {
                        let (id, file) = t.split_once('=').context("--trust takes ID=FILE")?;
                        keys.add(id, crate::sync::keys::read_verifying(Path::new(file))?);
                    }
                    anyhow::ensure!(
                        !trust.is_empty(),
                        "no trusted key: configure [sync] or pass --trust ID=FILE"
                    );
                    device.context("no device identity: configure [sync] device or pass --device site/device")?
                }
            };
            let payload = std::fs::read(&envelope).with_context(|| format!("cannot read {}", envelope.display()))?;
            let applied = store::version(&conn)?;
            let v = crate::sync::envelope::verify(
                &payload,
                &keys,
                &device,
                applied,
                Utc::now(),
                crate::sync::envelope::MAX_ENVELOPE_BYTES,
            )?;
            let n = crate::sync::apply::apply(&mut conn, &v, Utc::now(), &key)?;
            super::audit::record(
                &cfg,
                "allowlist.apply",
                &envelope.display().to_string(),
                Some(format!("version {}", v.version)),
            )?;
            println!(
                "applied {:?} version {} (sha256 {}): {n} entries",
                v.kind, v.version, v.body_sha256
            );
        }
        AllowlistAction::List => {
            let entries = store::load_all(&conn)?;
            for e in &entries {
                println!(
                    "{:<10} {:<8} {:<20} {:<6} {}{}{}",
                    e.plate,
                    e.kind,
                    e.host.as_deref().unwrap_or("-"),
                    e.unit.as_deref().unwrap_or("-"),
                    e.valid_until
                        .map(|t| format!("until {} ", t.to_rfc3339()))
                        .unwrap_or_default(),
                    e.schedule
                        .as_ref()
                        .map(|s| format!("[{}] ", s.as_str()))
                        .unwrap_or_default(),
                    if e.do_not_log { "do-not-log" } else { "" }
                );
            }
            eprintln!("{} entries", entries.len());
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn sign(
    key: &Path,
    key_id: &str,
    audience: &str,
    version: u64,
    base: Option<u64>,
    expires_hours: i64,
    csv: Option<&Path>,
    remove: Vec<String>,
    plate_key: Option<&Path>,
) -> anyhow::Result<()> {
    use crate::sync::envelope::{Envelope, ListBody, WireEntry};
    let most = crate::sync::envelope::MAX_LIFETIME_DAYS * 24;
    anyhow::ensure!(
        (1..=most).contains(&expires_hours),
        "--expires-hours {expires_hours}: use 1 to {most} (devices refuse an envelope valid for longer)"
    );
    anyhow::ensure!(
        csv.is_some() || base.is_some(),
        "a snapshot replaces the whole list: give it --csv (an empty snapshot would remove every entry)"
    );
    let signing = crate::sync::keys::read_signing(key)?;
    let plate_key = plate_key
        .map(|p| crate::access::PlateKey::parse(&std::fs::read_to_string(p)?).map_err(anyhow::Error::msg))
        .transpose()
        .context("--plate-key")?;
    let entries: Vec<WireEntry> = match csv {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            let mut entries = store::parse_csv(f)?;
            for e in entries.iter_mut().filter(|e| e.do_not_log) {
                let k = plate_key.as_ref().context(
                    "the CSV has opted-out (do_not_log) entries: pass --plate-key with the site's key so they travel sealed",
                )?;
                e.plate = k.seal(&e.plate);
            }
            entries.iter().map(WireEntry::from).collect()
        }
        None => Vec::new(),
    };
    let body = match base {
        None => {
            anyhow::ensure!(remove.is_empty(), "--remove needs --base (a delta)");
            ListBody::Snapshot { entries }
        }
        Some(_) => ListBody::Delta {
            upsert: entries,
            remove: remove
                .iter()
                .map(|p| {
                    let p = p.trim();
                    if crate::access::seal::is_sealed(p) {
                        p.to_string()
                    } else {
                        plate::normalize(p)
                    }
                })
                .collect(),
        },
    };
    let now = Utc::now();
    let env = Envelope::make(
        &body,
        audience,
        version,
        base,
        now,
        now + chrono::Duration::hours(expires_hours),
        key_id,
        &signing,
    )?;
    println!("{}", serde_json::to_string(&env)?);
    Ok(())
}
