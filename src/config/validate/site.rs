//! `[site]`: the site's name, time zone, data folder and storage floors.

use super::*;

pub(super) fn validate_site(s: RawSite, base: &Path, issues: &mut Issues) -> SiteConfig {
    let timezone = s.timezone.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
        issues.push(
            "site.timezone",
            format!("unknown time zone {:?}", s.timezone),
            "use an IANA name such as \"America/New_York\" or \"UTC\"",
        );
        chrono_tz::UTC
    });
    if s.name.trim().is_empty() {
        issues.push("site.name", "is empty", "name the site, e.g. \"Oak Ridge north gate\"");
    }
    if s.min_free_mb > 1_000_000 {
        issues.push(
            "site.min_free_mb",
            format!("{} MB is out of range", s.min_free_mb),
            "use 0 to 1000000 (MB kept free; default 256)",
        );
    }
    if s.db_reserve_mb > 4096 {
        issues.push(
            "site.db_reserve_mb",
            format!("{} MB is out of range", s.db_reserve_mb),
            "use 0 to 4096 (MB held back for the database, released when the disk fills; default 8)",
        );
    }
    SiteConfig {
        name: s.name,
        timezone,
        data_dir: resolve(base, &s.data_dir),
        min_free_bytes: s.min_free_mb.min(1_000_000) * 1024 * 1024,
        db_reserve_bytes: s.db_reserve_mb.min(4096) * 1024 * 1024,
    }
}
