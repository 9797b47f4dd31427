//! How old the applied allowlist is, counted from when the cloud signed the newest envelope applied, and
//! whether it is older than `[sync] allowlist_max_age_hours`.
//!
//! The device cannot tell a quiet week from a broker that withholds updates (a revoked resident would
//! still open the gate), so the cloud sends a fresh envelope (an empty delta will do) more often than the
//! maximum age, and past it the device raises an alert: the panel's system page, the heartbeat and the
//! `gatehouse_allowlist_stale` metric. It keeps deciding on the last list it has: a gate that stopped
//! opening for residents because the cloud went quiet would fail everyone to protect against one
//! revocation, and the alert puts a person on it instead (docs/protocol.md, "Allowlist age").

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::access::Allowlist;

/// The applied list's age, for status pages, the heartbeat and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Freshness {
    pub version: u64,
    /// When the cloud signed the newest envelope applied (`None`: nothing applied from the cloud).
    pub issued: Option<String>,
    pub age_s: Option<i64>,
    /// The configured maximum age (`None`: no alert configured).
    pub max_age_s: Option<i64>,
    /// Older than the maximum age: an alert.
    pub stale: bool,
}

/// The age of `list` at `now` against `max_age`.
pub fn freshness(list: &Allowlist, now: DateTime<Utc>, max_age: Option<chrono::Duration>) -> Freshness {
    let age = list.issued.map(|t| (now - t).max(chrono::Duration::zero()));
    Freshness {
        version: list.version,
        issued: list.issued.map(|t| t.to_rfc3339()),
        age_s: age.map(|a| a.num_seconds()),
        max_age_s: max_age.map(|m| m.num_seconds()),
        stale: matches!((age, max_age), (Some(a), Some(m)) if a > m),
    }
}

impl Freshness {
    /// The alert text when the list is stale.
    pub fn alert(&self) -> Option<String> {
        if !self.stale {
            return None;
        }
        Some(format!(
            "allowlist version {} was signed {} h ago, more than the {} h allowed ([sync] allowlist_max_age_hours): \
             updates from the cloud are not arriving (check the cloud link and the broker); the gate keeps \
             deciding on this list",
            self.version,
            self.age_s.unwrap_or_default() / 3600,
            self.max_age_s.unwrap_or_default() / 3600
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_older_than_its_maximum_age_is_stale() {
        let now = Utc::now();
        let mut list = Allowlist::new(vec![], 7);
        let max = Some(chrono::Duration::hours(168));
        let local = freshness(&list, now, max);
        assert!(!local.stale && local.age_s.is_none(), "a local-only list has no age");
        list.issued = Some(now - chrono::Duration::hours(100));
        let fresh = freshness(&list, now, max);
        assert_eq!((fresh.stale, fresh.age_s), (false, Some(100 * 3600)));
        assert_eq!(fresh.alert(), None);
        list.issued = Some(now - chrono::Duration::hours(200));
        let old = freshness(&list, now, max);
        assert!(old.stale);
        assert!(old.alert().expect("alert").contains("200 h ago"), "{:?}", old.alert());
        assert!(!freshness(&list, now, None).stale, "no maximum: no alert");
    }
}
