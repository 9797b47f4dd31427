//! The allowlist at start (the database, or the last-good snapshot when the database is unusable) and
//! the reloader that keeps the in-memory snapshot in step with the database.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::access::{self, SharedAllowlist};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::events;

/// The alert raised while the applied allowlist is older than `[sync] allowlist_max_age_hours`.
const ALERT_ALLOWLIST: &str = "allowlist";

/// The clock and `[sync] allowlist_max_age` the reloader warns by.
type AgeCheck = (SharedClock, Option<chrono::Duration>);

/// The allowlist at start: from the database when it opens and passes its quick check (it is then saved as
/// the last-good snapshot beside the database); otherwise (empty, foreign or damaged file, full disk) from
/// the last-good snapshot, with the `database` alert raised. Returns the list and whether the database was
/// usable. Fails only when neither is usable: then the gate cannot decide and says why.
pub(super) fn start_allowlist(
    cfg: &Config,
    key: &access::PlateKey,
    alerts: &crate::supervise::Alerts,
    clock: &SharedClock,
) -> anyhow::Result<(access::Allowlist, bool)> {
    let path = cfg.site.database_path();
    let last_good = access::snapshot::path_for(&path);
    let reserve = events::storage::Reserve::new(&cfg.site.data_dir, cfg.site.db_reserve_bytes);
    let existed = path.exists();
    let opened = match crate::db::open_checked(&path) {
        Err(e) if e.is_full() && reserve.release() => crate::db::open_checked(&path),
        other => other,
    };
    let loaded = opened
        .map_err(|e| e.to_string())
        .and_then(|conn| access::load_snapshot(&conn, key).map_err(|e| e.to_string()));
    let why = match loaded {
        Ok(list) if !existed && list.is_empty() && last_good.exists() => {
            // The database was missing (a new, empty one was just made) but a last-good list is there: it
            // goes into the new database rather than every resident being denied.
            match restore_last_good(&path, &last_good, key, clock) {
                Ok(restored) => return Ok((restored, true)),
                Err(e) => {
                    tracing::error!(error = %e, "could not restore the last-good allowlist into the new database");
                    format!(
                        "database {} was missing and a new one was made, but {e}",
                        path.display()
                    )
                }
            }
        }
        Ok(list) => {
            if list.is_empty() {
                tracing::warn!("allowlist loaded: it is empty, so every plate is denied until a list is applied");
            } else {
                tracing::info!(entries = list.len(), version = list.version, "allowlist loaded");
            }
            if let Err(e) = access::snapshot::write(&last_good, list.entries(), list.version, clock.now()) {
                tracing::warn!(error = %e, "could not save the last-good allowlist");
            }
            return Ok((list, true));
        }
        Err(why) => why,
    };
    match access::snapshot::read(&last_good) {
        Ok(last) => {
            let saved = last
                .written_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "at an unknown time".into());
            alerts.raise(
                crate::db::ALERT_DATABASE,
                format!(
                    "{why}. The gate decides on the last-good allowlist ({} entries, version {}, saved {saved}) \
                     from {}; events are held, not stored, until the database is usable again",
                    last.entries.len(),
                    last.version,
                    last_good.display()
                ),
            );
            Ok((
                access::Allowlist::with_key(last.entries, last.version, Some(key.clone())),
                false,
            ))
        }
        Err(e) => anyhow::bail!(
            "{why}; and there is no usable last-good allowlist to decide on instead ({e}). Fix the database \
             (or free space on {}) and start again",
            cfg.site.data_dir.display()
        ),
    }
}

/// Puts the last-good allowlist into a new database and loads it from there.
fn restore_last_good(
    path: &std::path::Path,
    last_good: &std::path::Path,
    key: &access::PlateKey,
    clock: &SharedClock,
) -> Result<access::Allowlist, access::AccessError> {
    let last = access::snapshot::read(last_good)?;
    let mut conn = crate::db::open(path)?;
    access::snapshot::restore_into(&mut conn, &last, key, clock.now())?;
    let list = access::load_snapshot(&conn, key)?;
    tracing::error!(
        path = %path.display(), entries = list.len(), version = list.version,
        "the database was missing: a new one was made and the last-good allowlist restored into it \
         (earlier events are only in a backup, if there is one)"
    );
    Ok(list)
}

pub(super) struct ReloadCtx {
    pub(super) path: std::path::PathBuf,
    pub(super) list: SharedAllowlist,
    pub(super) key: access::PlateKey,
    pub(super) alerts: crate::supervise::Alerts,
    /// The database was usable at start (otherwise the list in use is the last-good snapshot).
    pub(super) db_ok: bool,
    /// When the applied list counts as stale (the `allowlist` alert).
    pub(super) age: AgeCheck,
}

/// Keeps the in-memory snapshot in step with the allowlist on disk: when another connection (the CLI,
/// the cloud sync) commits, the list is reloaded off the async runtime, swapped whole and saved as the
/// last-good snapshot. When the database was not usable at start, it is tried every 30 s (with a quick
/// check); once it is, its list replaces the last-good one unless it is empty (a new database: the
/// last-good list stays until a list is applied) and the `database` alert clears. It also raises the
/// `allowlist` alert while the applied list is older than its maximum age (logged once each way).
pub(super) fn reload_allowlist(ctx: ReloadCtx, cancel: CancellationToken) {
    let ReloadCtx {
        path,
        list,
        key,
        alerts,
        mut db_ok,
        age: (clock, max_age),
    } = ctx;
    let last_good = access::snapshot::path_for(&path);
    let Some(conn) = crate::db::open_when_usable(&path, db_ok, "allowlist reload", Duration::from_secs(30), &cancel)
    else {
        return;
    };
    let version = |c: &rusqlite::Connection| c.pragma_query_value(None, "data_version", |r| r.get::<_, i64>(0)).ok();
    // Not usable at start: load at once.
    let mut seen = if db_ok { version(&conn) } else { None };
    let mut stale = false;
    while !cancel.is_cancelled() {
        let fresh = crate::sync::freshness::freshness(&list.current(), clock.now(), max_age);
        if fresh.stale != stale {
            stale = fresh.stale;
            match fresh.alert() {
                Some(alert) => {
                    tracing::warn!("ALERT: {alert}");
                    alerts.raise(ALERT_ALLOWLIST, alert);
                }
                None => {
                    tracing::info!(version = fresh.version, "allowlist is fresh again");
                    alerts.clear(ALERT_ALLOWLIST);
                }
            }
        }
        let now = version(&conn);
        if now == seen {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        seen = now;
        match access::load_snapshot(&conn, &key) {
            Ok(snapshot) if !db_ok && snapshot.is_empty() && !list.current().is_empty() => {
                tracing::warn!(
                    "the database is usable again but its allowlist is empty; keeping the last-good list until one is applied"
                );
            }
            Ok(snapshot) => {
                if !db_ok {
                    db_ok = true;
                    alerts.clear(crate::db::ALERT_DATABASE);
                }
                let current = list.current();
                // A keep-alive envelope changes no entry, only the version and issue time.
                if snapshot.entries() != current.entries()
                    || snapshot.version != current.version
                    || snapshot.issued != current.issued
                {
                    tracing::info!(
                        entries = snapshot.len(),
                        "allowlist changed on disk; new snapshot in use"
                    );
                    if let Err(e) =
                        access::snapshot::write(&last_good, snapshot.entries(), snapshot.version, chrono::Utc::now())
                    {
                        tracing::warn!(error = %e, "could not save the last-good allowlist");
                    }
                    list.replace(snapshot);
                }
            }
            Err(e) => tracing::error!(error = %e, "allowlist on disk is invalid; keeping the previous snapshot"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{store, Entry, Kind};
    use crate::clock::SystemClock;
    use std::sync::Arc;

    #[test]
    fn allowlist_edits_on_disk_reach_the_running_snapshot() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("g.db");
        let mut conn = crate::db::open(&path).expect("db");
        let key = access::PlateKey::from_bytes([3; 32]);
        let list = SharedAllowlist::new(access::load_snapshot(&conn, &key).expect("load"));
        let cancel = CancellationToken::new();
        let t = {
            let ctx = ReloadCtx {
                path: path.clone(),
                list: list.clone(),
                key: key.clone(),
                alerts: crate::supervise::Alerts::default(),
                db_ok: true,
                age: (Arc::new(SystemClock), None),
            };
            let c = cancel.clone();
            std::thread::spawn(move || reload_allowlist(ctx, c))
        };
        std::thread::sleep(Duration::from_millis(100));
        store::upsert(
            &mut conn,
            &[Entry::new("BLK666", Kind::Blocked)],
            chrono::Utc::now(),
            &key,
        )
        .expect("upsert");
        let start = std::time::Instant::now();
        while list.current().exact("BLK666").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the new entry never reached the snapshot"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cancel.cancel();
        t.join().expect("join");
    }
}
