//! Data subject requests for one plate: export everything held (event records, crops, allowlist entry,
//! legal holds) into a folder, or delete the plate's events and crops except those under legal hold.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};
use serde_json::json;

use super::EventError;

fn io(path: &Path) -> impl Fn(std::io::Error) -> EventError + '_ {
    move |source| EventError::Crop {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `out/records.json` and `out/crops/*.jpg`; returns (events, crops) exported. `sealed` is the
/// plate's sealed id (an opted-out resident's allowlist entry and matches are kept under it).
pub fn export(conn: &Connection, plate: &str, sealed: &str, out: &Path) -> Result<(usize, usize), EventError> {
    std::fs::create_dir_all(out.join("crops")).map_err(io(out))?;
    let mut st = conn.prepare(
        "SELECT id, lane, at, plate, confidence, action, reason_code, reason, matched_plate, kind, host, unit, crop_path
         FROM events WHERE plate = ?1 OR matched_plate IN (?1, ?2) ORDER BY at",
    )?;
    let mut events = Vec::new();
    let mut crops = 0;
    let rows = st.query_map([plate, sealed], |r| {
        Ok((
            r.get::<_, String>(0)?,
            json!({
                "id": r.get::<_, String>(0)?, "lane": r.get::<_, String>(1)?,
                "at": chrono::DateTime::from_timestamp_millis(r.get(2)?).map(|t| t.to_rfc3339()),
                "plate": r.get::<_, Option<String>>(3)?, "confidence": r.get::<_, Option<f64>>(4)?,
                "action": r.get::<_, String>(5)?, "reason_code": r.get::<_, String>(6)?, "reason": r.get::<_, String>(7)?,
                "matched_plate": r.get::<_, Option<String>>(8)?, "kind": r.get::<_, Option<String>>(9)?,
                "host": r.get::<_, Option<String>>(10)?, "unit": r.get::<_, Option<String>>(11)?,
            }),
            r.get::<_, Option<String>>(12)?,
        ))
    })?;
    for row in rows {
        let (id, mut record, crop) = row?;
        if let Some(c) = crop.map(PathBuf::from).filter(|c| c.is_file()) {
            let name = format!("{id}.jpg");
            // The export is for the person asking: crops go out opened (they are sealed in the data folder).
            let jpeg = crate::secrets::sealed::read(&c).map_err(io(&c))?;
            std::fs::write(out.join("crops").join(&name), jpeg).map_err(io(&c))?;
            record["crop"] = json!(format!("crops/{name}"));
            crops += 1;
        }
        events.push(record);
    }
    let entry: Option<serde_json::Value> = conn
        .query_row(
            "SELECT kind, host, unit, valid_from, valid_until, schedule, do_not_log, note FROM allowlist WHERE plate IN (?1, ?2)",
            [plate, sealed],
            |r| {
                Ok(json!({"kind": r.get::<_, String>(0)?, "host": r.get::<_, Option<String>>(1)?, "unit": r.get::<_, Option<String>>(2)?,
                    "valid_from": r.get::<_, Option<i64>>(3)?, "valid_until": r.get::<_, Option<i64>>(4)?,
                    "schedule": r.get::<_, Option<String>>(5)?, "do_not_log": r.get::<_, bool>(6)?, "note": r.get::<_, Option<String>>(7)?}))
            },
        )
        .ok();
    let mut hs = conn.prepare("SELECT event_id, reason, created_at FROM legal_holds WHERE plate = ?1 OR event_id IN (SELECT id FROM events WHERE plate = ?1)")?;
    let holds: Vec<serde_json::Value> = hs
        .query_map([plate], |r| Ok(json!({"event_id": r.get::<_, Option<String>>(0)?, "reason": r.get::<_, String>(1)?, "created_at": r.get::<_, i64>(2)?})))?
        .collect::<Result<_, _>>()?;
    let n = events.len();
    let doc = json!({"plate": plate, "events": events, "allowlist_entry": entry, "legal_holds": holds});
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    let path = out.join("records.json");
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok((n, crops))
}

/// Deletes the plate's events and crops, except those under legal hold; returns (deleted, kept on hold).
pub fn delete(conn: &mut Connection, plate: &str) -> Result<(usize, usize), EventError> {
    let held_clause = "EXISTS (SELECT 1 FROM legal_holds h WHERE h.event_id = events.id OR h.plate = events.plate)";
    let tx = conn.transaction()?;
    let crops: Vec<String> = {
        let mut st = tx.prepare(&format!(
            "SELECT crop_path FROM events WHERE plate = ?1 AND crop_path IS NOT NULL AND NOT {held_clause}"
        ))?;
        let r = st.query_map([plate], |r| r.get(0))?;
        r.collect::<Result<_, _>>()?
    };
    let deleted = tx.execute(
        &format!("DELETE FROM events WHERE plate = ?1 AND NOT {held_clause}"),
        params![plate],
    )?;
    let kept: i64 = tx.query_row("SELECT count(*) FROM events WHERE plate = ?1", [plate], |r| r.get(0))?;
    tx.commit()?;
    for c in crops {
        let _ = std::fs::remove_file(c);
    }
    Ok((deleted, kept as usize))
}
