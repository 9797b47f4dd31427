//! `check-config`'s look at the data folder: the database passes a full integrity check (an empty or
//! foreign file is refused), the last-good allowlist reads back, the database reserve is in place.

use crate::config::Config;

/// Prints what it finds; fails when the database is empty, foreign or damaged.
pub fn check_storage(cfg: &Config) -> anyhow::Result<()> {
    let path = cfg.site.database_path();
    if !path.exists() {
        println!("database {}: none yet (made at the first start)", path.display());
        return Ok(());
    }
    crate::db::check_file(&path)?;
    let clear = crate::secrets::installed().is_some() && crate::db::starts_in_clear(&path)?;
    let conn = if clear {
        println!(
            "database {}: in clear; it is encrypted at the next start (stop other tools using it first)",
            path.display()
        );
        rusqlite::Connection::open(&path).map_err(|source| crate::db::DbError::Open {
            path: path.display().to_string(),
            source,
        })?
    } else {
        crate::db::connect(&path)?
    };
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    crate::db::check_integrity(&conn, &path, true)?;
    println!("database {}: integrity check ok", path.display());
    let last_good = crate::access::snapshot::path_for(&path);
    match crate::access::snapshot::read(&last_good) {
        Ok(l) => println!(
            "last-good allowlist {}: {} entries, version {}",
            last_good.display(),
            l.entries.len(),
            l.version
        ),
        Err(_) if !last_good.exists() => println!(
            "last-good allowlist {}: none yet (saved at the next start)",
            last_good.display()
        ),
        Err(e) => println!("warning: {e} (it is saved again at the next start)"),
    }
    let reserve = crate::events::storage::Reserve::new(&cfg.site.data_dir, cfg.site.db_reserve_bytes);
    if !reserve.present() {
        println!(
            "warning: database reserve {} is missing (released on a full disk, or not made yet): free space on {}",
            reserve.path().display(),
            cfg.site.data_dir.display()
        );
    }
    Ok(())
}
