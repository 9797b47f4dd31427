//! `gatehouse events ...`

use std::path::Path;

use chrono::Utc;

use super::EventsAction;
use crate::events::{access_log, dsar, list_recent, retention};
use crate::plate;

pub fn events(config: &Path, action: EventsAction) -> anyhow::Result<()> {
    let cfg = super::load_unlocked(config)?;
    let mut conn = crate::db::open(&cfg.site.database_path())?;
    let actor = access_log::current_actor();
    match action {
        EventsAction::AccessLog { limit } => {
            for (at, who, what, query, purpose) in access_log::entries(&conn, limit)? {
                println!(
                    "{} {who:<12} {what:<12} {query:<24} purpose: {purpose}",
                    at.format("%Y-%m-%d %H:%M:%S")
                );
            }
        }
        EventsAction::Hold {
            event,
            plate: p,
            reason,
        } => {
            anyhow::ensure!(event.is_some() || p.is_some(), "name --event ID or --plate PLATE");
            // An opted-out resident's plate is held, logged and audited by its sealed id, never its text.
            let p = match p.map(|p| plate::normalize(&p)) {
                Some(p) => Some(access_log::plate_as_logged(
                    &conn,
                    &p,
                    &crate::access::PlateKey::load_or_create(&cfg.plate_key_path())?,
                )?),
                None => None,
            };
            retention::hold(&conn, event.as_deref(), p.as_deref(), &reason, Utc::now())?;
            access_log::record(
                &conn,
                &actor,
                "legal-hold",
                &format!("{event:?} {p:?}"),
                &reason,
                Utc::now(),
            )?;
            super::audit::record(&cfg, "legal_hold.add", &format!("{event:?} {p:?}"), Some(reason))?;
            println!("legal hold recorded");
        }
        EventsAction::DsarExport { plate: p, out, purpose } => {
            let p = plate::normalize(&p);
            let key = crate::access::PlateKey::load_or_create(&cfg.plate_key_path())?;
            let shown = access_log::plate_as_logged(&conn, &p, &key)?;
            access_log::record(&conn, &actor, "dsar-export", &shown, &purpose, Utc::now())?;
            let (n, crops) = dsar::export(&conn, &p, &key.seal(&p), &out)?;
            super::audit::record(&cfg, "dsar.export", &shown, Some(purpose.clone()))?;
            println!("exported {n} event(s) and {crops} crop(s) for {p} to {}", out.display());
        }
        EventsAction::DsarDelete { plate: p, purpose } => {
            let p = plate::normalize(&p);
            let shown = access_log::plate_as_logged(
                &conn,
                &p,
                &crate::access::PlateKey::load_or_create(&cfg.plate_key_path())?,
            )?;
            access_log::record(&conn, &actor, "dsar-delete", &shown, &purpose, Utc::now())?;
            let (deleted, kept) = dsar::delete(&mut conn, &p)?;
            super::audit::record(
                &cfg,
                "dsar.delete",
                &shown,
                Some(format!("{deleted} deleted, {kept} held; {purpose}")),
            )?;
            println!("deleted {deleted} event(s) for {p}; {kept} kept under legal hold");
        }
        EventsAction::List { limit, json, purpose } => {
            access_log::record(
                &conn,
                &actor,
                "events-list",
                &format!("last {limit}"),
                &purpose,
                Utc::now(),
            )?;
            let list = list_recent(&conn, limit)?;
            for e in &list {
                if json {
                    println!("{}", serde_json::to_string(e)?);
                } else {
                    println!(
                        "{} {:<8} {:<9} {:<5} {:<17} {}{}",
                        e.at.format("%Y-%m-%d %H:%M:%S"),
                        e.lane,
                        e.plate.as_deref().unwrap_or("-"),
                        e.action,
                        e.reason_code,
                        e.host.as_deref().map(|h| format!("host {h} ")).unwrap_or_default(),
                        if e.alert { "ALERT" } else { "" }
                    );
                }
            }
        }
    }
    Ok(())
}
