//! The allowlist on disk (SQLite) and its CSV form for installers.
//! CSV columns: plate,kind,host,unit,valid_from,valid_until,schedule,do_not_log,note (RFC 3339 times).

use std::collections::HashMap;
use std::io::{Read, Write};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::entry::{Entry, Kind};
use super::schedule::Schedule;
use super::seal::{self, PlateKey};
use super::AccessError;
use crate::plate;

fn ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

fn from_ms(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(DateTime::from_timestamp_millis)
}

/// Loads every entry (for the in-memory snapshot).
pub fn load_all(conn: &Connection) -> Result<Vec<Entry>, AccessError> {
    select(conn, "", [])
}

/// One entry by its plate, stored plain or sealed.
pub fn get(conn: &Connection, plate_text: &str, key: &PlateKey) -> Result<Option<Entry>, AccessError> {
    Ok(select(conn, "WHERE plate IN (?1, ?2)", [plate_text, &key.seal(plate_text)])?.pop())
}

/// Entries of one kind.
pub fn of_kind(conn: &Connection, kind: Kind) -> Result<Vec<Entry>, AccessError> {
    select(conn, "WHERE kind = ?1", [kind.as_str()])
}

fn select<P: rusqlite::Params>(conn: &Connection, filter: &str, params: P) -> Result<Vec<Entry>, AccessError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT plate, kind, host, unit, valid_from, valid_until, schedule, do_not_log, note FROM allowlist {filter} ORDER BY plate"
    ))?;
    let rows = stmt.query_map(params, |r| {
        Ok(StoredRow {
            plate: r.get(0)?,
            kind: r.get(1)?,
            host: r.get(2)?,
            unit: r.get(3)?,
            valid_from: r.get(4)?,
            valid_until: r.get(5)?,
            schedule: r.get(6)?,
            do_not_log: r.get(7)?,
            note: r.get(8)?,
        })
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?.into_entry()?);
    }
    Ok(out)
}

/// An entry as the database stores it (times in Unix milliseconds, schedule as text); also the row format
/// of the last-good snapshot file ([`super::snapshot`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct StoredRow {
    pub plate: String,
    pub kind: String,
    pub host: Option<String>,
    pub unit: Option<String>,
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
    pub schedule: Option<String>,
    pub do_not_log: bool,
    pub note: Option<String>,
}

impl StoredRow {
    pub fn of(e: &Entry) -> Self {
        Self {
            plate: e.plate.clone(),
            kind: e.kind.as_str().to_string(),
            host: e.host.clone(),
            unit: e.unit.clone(),
            valid_from: ms(e.valid_from),
            valid_until: ms(e.valid_until),
            schedule: e.schedule.as_ref().map(|s| s.as_str().to_string()),
            do_not_log: e.do_not_log,
            note: e.note.clone(),
        }
    }

    /// Checks the row as the store does and makes it an entry.
    pub fn into_entry(self) -> Result<Entry, AccessError> {
        let plate = self.plate;
        seal::validate_listed(&plate)
            .map_err(|e| AccessError::Invalid(format!("stored entry: {e}; fix it with gatehouse allowlist")))?;
        let kind: Kind = self
            .kind
            .parse()
            .map_err(|e: String| AccessError::Invalid(format!("{plate}: {e}")))?;
        let schedule = match self.schedule {
            Some(s) => Some(Schedule::parse(&s).map_err(|e| AccessError::Invalid(format!("{plate}: schedule: {e}")))?),
            None => None,
        };
        Ok(Entry {
            plate,
            kind,
            host: self.host,
            unit: self.unit,
            valid_from: from_ms(self.valid_from),
            valid_until: from_ms(self.valid_until),
            schedule,
            do_not_log: self.do_not_log,
            note: self.note,
        })
    }
}

/// The applied list version (0 when the list was only edited locally).
pub fn version(conn: &Connection) -> Result<u64, AccessError> {
    let v = crate::db::meta_get(conn, crate::db::MetaKey::AllowlistVersion)?;
    match v {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| {
            AccessError::Invalid(format!("stored allowlist_version {v:?} is corrupt; re-sync a snapshot"))
        }),
    }
}

/// When the cloud signed the newest envelope applied (`None`: no envelope applied yet). A corrupt value
/// reads as `None` with a warning: it only feeds the age alert, never the decision.
pub fn issued(conn: &Connection) -> Result<Option<DateTime<Utc>>, AccessError> {
    let v = crate::db::meta_get(conn, crate::db::MetaKey::AllowlistIssued)?;
    Ok(v.and_then(|v| match DateTime::parse_from_rfc3339(&v) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            tracing::warn!(value = ?v, "stored allowlist_issued is corrupt; the list's age is unknown until the next envelope");
            None
        }
    }))
}

/// Inserts or replaces entries in one transaction (see [`upsert_in`]).
pub fn upsert(
    conn: &mut Connection,
    entries: &[Entry],
    now: DateTime<Utc>,
    key: &PlateKey,
) -> Result<usize, AccessError> {
    let tx = conn.transaction()?;
    upsert_in(&tx, entries, now, key)?;
    tx.commit()?;
    Ok(entries.len())
}

/// Inserts or replaces entries inside a caller's transaction. An opted-out (`do_not_log`) entry is stored
/// under its sealed id, never its text; a plate is listed once, so opting out (or back in) replaces the
/// other form.
pub fn upsert_in(
    tx: &rusqlite::Transaction<'_>,
    entries: &[Entry],
    now: DateTime<Utc>,
    key: &PlateKey,
) -> Result<(), AccessError> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO allowlist (plate, kind, host, unit, valid_from, valid_until, schedule, do_not_log, note, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut other_form = tx.prepare_cached("DELETE FROM allowlist WHERE plate = ?1")?;
    for e in entries {
        let sealed_in = seal::is_sealed(&e.plate);
        // What an error may show: never an opted-out plate's text.
        let shown = if e.do_not_log && !sealed_in {
            key.seal(&e.plate)
        } else {
            e.plate.clone()
        };
        e.validate()
            .map_err(|m| AccessError::Invalid(format!("{shown}: {m}")))?;
        if e.do_not_log && e.kind == Kind::Blocked {
            return Err(AccessError::Invalid(format!(
                "{shown}: a blocked plate cannot be do_not_log"
            )));
        }
        if sealed_in && !e.do_not_log {
            return Err(AccessError::Invalid(format!(
                "{shown}: a sealed id is only for a do_not_log entry"
            )));
        }
        let stored = if sealed_in {
            e.plate.clone()
        } else {
            let sealed = key.seal(&e.plate);
            other_form.execute([if e.do_not_log { &e.plate } else { &sealed }])?;
            if e.do_not_log {
                sealed
            } else {
                e.plate.clone()
            }
        };
        stmt.execute(params![
            stored,
            e.kind.as_str(),
            e.host,
            e.unit,
            ms(e.valid_from),
            ms(e.valid_until),
            e.schedule.as_ref().map(|s| s.as_str().to_string()),
            e.do_not_log,
            e.note,
            now.timestamp_millis()
        ])?;
    }
    Ok(())
}

/// Removes a plate's entry, plain or sealed (`plate_text` may also be a sealed id).
pub fn remove(conn: &Connection, plate_text: &str, key: &PlateKey) -> Result<bool, AccessError> {
    let sealed = if seal::is_sealed(plate_text) {
        plate_text.to_string()
    } else {
        key.seal(plate_text)
    };
    Ok(conn.execute("DELETE FROM allowlist WHERE plate IN (?1, ?2)", [plate_text, &sealed])? > 0)
}

const HEADER: [&str; 9] = [
    "plate",
    "kind",
    "host",
    "unit",
    "valid_from",
    "valid_until",
    "schedule",
    "do_not_log",
    "note",
];

fn opt(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn time(s: Option<&str>, line: u64, col: &str) -> Result<Option<DateTime<Utc>>, AccessError> {
    match opt(s) {
        None => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(&v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| {
                AccessError::Invalid(format!(
                    "line {line}: {col} {v:?}: {e} (use RFC 3339, e.g. 2026-12-01T08:00:00Z)"
                ))
            }),
    }
}

/// Parses CSV into entries; every bad line is reported with its number (all at once).
pub fn parse_csv<R: Read>(input: R) -> Result<Vec<Entry>, AccessError> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(input);
    let headers = rdr
        .headers()
        .map_err(|e| AccessError::Invalid(format!("CSV header: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let Some(plate_col) = col("plate") else {
        return Err(AccessError::Invalid(format!(
            "CSV needs a header line with at least: plate,kind (all columns: {})",
            HEADER.join(",")
        )));
    };
    let idx: Vec<Option<usize>> = HEADER.iter().map(|h| col(h)).collect();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    // Normalised plate -> the line that listed it and how it was written there.
    let mut listed: HashMap<String, (u64, String)> = HashMap::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{e}"));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.len() != headers.len() {
            problems.push(format!(
                "line {line}: {} fields, the header has {} ({}); give every column, empty where unknown",
                rec.len(),
                headers.len(),
                headers.iter().collect::<Vec<_>>().join(",")
            ));
            continue;
        }
        let get = |i: usize| idx[i].and_then(|c| rec.get(c));
        let result = (|| -> Result<Entry, AccessError> {
            let raw = rec.get(plate_col).unwrap_or("");
            if let Some(c) = raw
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == ' ' || *c == '-'))
            {
                return Err(AccessError::Invalid(format!(
                    "line {line}: plate {raw:?} has {c:?}; use A-Z, 0-9 (spaces and - are ignored)"
                )));
            }
            let plate_text = plate::normalize(raw);
            plate::validate(&plate_text).map_err(|e| AccessError::Invalid(format!("line {line}: {e}")))?;
            let kind: Kind = match (idx[1], get(1)) {
                (None, _) => Kind::Resident, // a plain list of plates: residents
                (Some(_), Some(k)) if !k.trim().is_empty() => k
                    .parse()
                    .map_err(|e| AccessError::Invalid(format!("line {line}: {e}")))?,
                (Some(_), _) => return Err(AccessError::Invalid(format!("line {line}: kind is missing"))),
            };
            let schedule = match opt(get(6)) {
                Some(s) => {
                    Some(Schedule::parse(&s).map_err(|e| AccessError::Invalid(format!("line {line}: schedule: {e}")))?)
                }
                None => None,
            };
            let do_not_log = match opt(get(7)).as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("0") | Some("false") | Some("no") => false,
                Some("1") | Some("true") | Some("yes") => true,
                Some(other) => {
                    return Err(AccessError::Invalid(format!(
                        "line {line}: do_not_log {other:?}: use true or false"
                    )))
                }
            };
            if do_not_log && kind == Kind::Blocked {
                return Err(AccessError::Invalid(format!(
                    "line {line}: a blocked plate cannot be do_not_log"
                )));
            }
            let entry = Entry {
                plate: plate_text,
                kind,
                host: opt(get(2)),
                unit: opt(get(3)),
                valid_from: time(get(4), line, "valid_from")?,
                valid_until: time(get(5), line, "valid_until")?,
                schedule,
                do_not_log,
                note: opt(get(8)),
            };
            entry
                .validate()
                .map_err(|e| AccessError::Invalid(format!("line {line}: {e}")))?;
            Ok(entry)
        })();
        match result {
            Ok(e) => {
                let raw = rec.get(plate_col).unwrap_or("").to_string();
                match listed.get(&e.plate) {
                    // "HXP 4729" and "HXP4729" are one plate: the second would silently replace the first.
                    Some((first, as_written)) => problems.push(format!(
                        "line {line}: plate {raw:?} is the same plate as {as_written:?} on line {first} \
                         (spaces and - are ignored); keep one of the two lines"
                    )),
                    None => {
                        listed.insert(e.plate.clone(), (line, raw));
                        out.push(e);
                    }
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        return Err(AccessError::Invalid(problems.join("\n")));
    }
    Ok(out)
}

pub fn write_csv<W: Write>(entries: &[Entry], out: W) -> Result<(), AccessError> {
    let mut w = csv::Writer::from_writer(out);
    let io = |e: csv::Error| AccessError::Invalid(e.to_string());
    w.write_record(HEADER).map_err(io)?;
    for e in entries {
        let t = |v: Option<DateTime<Utc>>| v.map(|t| t.to_rfc3339()).unwrap_or_default();
        w.write_record([
            e.plate.as_str(),
            e.kind.as_str(),
            e.host.as_deref().unwrap_or(""),
            e.unit.as_deref().unwrap_or(""),
            &t(e.valid_from),
            &t(e.valid_until),
            e.schedule.as_ref().map(|s| s.as_str()).unwrap_or(""),
            if e.do_not_log { "true" } else { "false" },
            e.note.as_deref().unwrap_or(""),
        ])
        .map_err(io)?;
    }
    w.flush().map_err(|e| AccessError::Invalid(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips_through_sqlite() {
        let csv_in = "plate,kind,host,unit,valid_from,valid_until,schedule,do_not_log,note\n\
                      abc-123,resident,Ana Diaz,12B,,,,false,\n\
                      VIS777,visitor,Ana Diaz,12B,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,mon-fri 08:00-18:00,no,plumber\n";
        let entries = parse_csv(csv_in.as_bytes()).expect("parse");
        assert_eq!(entries[0].plate, "ABC123");
        let dir = tempfile::tempdir().expect("tmp");
        let mut conn = crate::db::open(&dir.path().join("a.db")).expect("db");
        upsert(&mut conn, &entries, Utc::now(), &PlateKey::from_bytes([1; 32])).expect("upsert");
        let back = load_all(&conn).expect("load");
        assert_eq!(back, entries);
        let mut out = Vec::new();
        write_csv(&back, &mut out).expect("csv");
        assert_eq!(parse_csv(out.as_slice()).expect("reparse"), entries);
    }

    #[test]
    fn oversized_short_and_duplicate_rows_are_rejected_with_their_line_numbers() {
        let big = "x".repeat(10 * 1024 * 1024);
        let csv_in = format!(
            "plate,kind,host,unit,valid_from,valid_until,schedule,do_not_log,note\n\
             HXP4729,resident,Ana Diaz,12B,,,,false,\n\
             ABC123,resident,{big},1,,,,false,\n\
             XYZ999,visitor,Bo\n\
             HXP 4729,visitor,Someone Else,3,,,,false,\n\
             GOOD11,resident,Cy,4,,,,false,{}\n",
            "n".repeat(2000)
        );
        let err = parse_csv(csv_in.as_bytes()).expect_err("bad").to_string();
        assert!(
            err.len() < 10_000,
            "the error does not echo the huge value: {} bytes",
            err.len()
        );
        assert!(err.contains("line 3: host is 10485760 characters long"), "{err}");
        assert!(err.contains("line 4: 3 fields, the header has 9"), "{err}");
        assert!(
            err.contains("line 5: plate \"HXP 4729\" is the same plate as \"HXP4729\" on line 2"),
            "{err}"
        );
        assert!(err.contains("line 6: note"), "{err}");
        // A plain list of plates (one column) is still fine.
        assert_eq!(parse_csv("plate\nABC123\nXYZ999\n".as_bytes()).expect("plain").len(), 2);
    }

    #[test]
    fn the_store_refuses_unbounded_fields_whatever_the_way_in() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut conn = crate::db::open(&dir.path().join("a.db")).expect("db");
        let e = Entry {
            note: Some("x".repeat(1 << 20)),
            ..Entry::new("ABC123", Kind::Resident)
        };
        assert!(upsert(&mut conn, &[e], Utc::now(), &PlateKey::from_bytes([1; 32])).is_err());
        assert!(load_all(&conn).expect("load").is_empty());
    }

    #[test]
    fn every_bad_line_is_reported() {
        let csv_in = "plate,kind,valid_until\nABC123,residnet,\n,visitor,\nXYZ1,visitor,tomorrow\n";
        let err = parse_csv(csv_in.as_bytes()).expect_err("bad").to_string();
        assert!(
            err.contains("line 2") && err.contains("line 3") && err.contains("line 4"),
            "{err}"
        );
    }
}
