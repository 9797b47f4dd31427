//! `gatehouse events ...`

use std::path::Path;

use super::EventsAction;
use crate::events::list_recent;

pub fn events(config: &Path, action: EventsAction) -> anyhow::Result<()> {
    let cfg = crate::config::load(config)?;
    let conn = crate::db::open(&cfg.site.database_path())?;
    match action {
        EventsAction::List { limit, json } => {
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
