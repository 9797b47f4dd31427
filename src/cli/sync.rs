//! `gatehouse sync status`: what an installer checks at the gate. Reads the local database only, so it
//! works while the daemon runs and while the cloud is unreachable.

use std::path::Path;

use crate::db::MetaKey;
use crate::events::outbox;

pub fn status(config: &Path, json: bool) -> anyhow::Result<()> {
    let cfg = super::load_unlocked(config)?;
    let conn = crate::db::open(&cfg.site.database_path())?;
    let meta = |k: MetaKey| -> Option<String> { crate::db::meta_get(&conn, k).ok().flatten() };
    let parse = |v: Option<String>| v.and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
    let version = crate::access::store::version(&conn)?;
    let entries: i64 = conn.query_row("SELECT count(*) FROM allowlist", [], |r| r.get(0))?;
    let backlog = outbox::backlog(&conn)?;
    let link = parse(meta(MetaKey::SyncLink));
    let rejection = parse(meta(MetaKey::SyncLastRejection));
    let sync = cfg.sync.as_ref();
    let v = serde_json::json!({
        "device": sync.map(|s| s.device.clone()),
        "broker": sync.and_then(|s| s.mqtt.as_ref()).map(|m| format!("{}:{}", m.host, m.port)),
        "link": link,
        "allowlist_version": version,
        "allowlist_sha256": meta(MetaKey::AllowlistSha256),
        "allowlist_entries": entries,
        "last_rejection": rejection,
        "outbox_pending": backlog.pending,
        "outbox_oldest": backlog.oldest.map(|t| t.to_rfc3339()),
        "last_uploaded": backlog.last_uploaded.map(|t| t.to_rfc3339()),
    });
    if json {
        println!("{v}");
        return Ok(());
    }
    let s = |k: &str| match &v[k] {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match sync {
        None => println!("cloud sync: not configured (no [sync] section)"),
        Some(sc) if sc.mqtt.is_none() => println!("cloud sync: device {}, no [sync.mqtt] link", sc.device),
        Some(sc) => println!("cloud sync: device {} via {}", sc.device, s("broker")),
    }
    match &link {
        Some(l) => println!(
            "link:       {} since {} (as last recorded by the daemon)",
            l["state"].as_str().unwrap_or("?"),
            l["since"].as_str().unwrap_or("?")
        ),
        None => println!("link:       never connected"),
    }
    println!(
        "allowlist:  version {} ({} entries), sha256 {}",
        version,
        entries,
        s("allowlist_sha256")
    );
    if let Some(r) = &rejection {
        println!(
            "rejected:   {} at {}",
            r["reason"].as_str().unwrap_or("?"),
            r["at"].as_str().unwrap_or("?")
        );
    }
    println!(
        "outbox:     {} event(s) waiting, oldest {}, last upload {}",
        backlog.pending,
        s("outbox_oldest"),
        s("last_uploaded")
    );
    Ok(())
}
