//! The decision stage: everything that turns a voted read into open or deny, in the one place the daemon,
//! the benches and `gatehouse eval-passes` all call. The allowlist match ([`decide`]) first; then an
//! opening needs enough agreeing reads (`[track] min_reads`), and a gate in lockdown opens for no plate.

use chrono::{DateTime, Utc};

use super::{decide, Action, Allowlist, Decision, Reason};
use crate::config::AccessConfig;
use crate::recognize::CharRead;

/// The site's rules for the stage.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub access: &'a AccessConfig,
    /// Agreeing reads a pass needs before it may open the gate (`[track] min_reads`).
    pub min_reads: usize,
    /// The site's time zone (schedules).
    pub tz: chrono_tz::Tz,
}

/// A pass's voted read, as the stage sees it.
#[derive(Debug, Clone, Copy)]
pub struct PassRead<'a> {
    pub text: &'a str,
    pub chars: &'a [CharRead],
    /// Reads that agreed on the vote.
    pub reads: usize,
}

/// Decides one pass. `lockdown`: the lane's gate is locked down (a guard's action); it turns an opening
/// into a denial and leaves every other decision (a blocked plate's alert included) as it is.
pub fn decide_pass(read: PassRead, list: &Allowlist, rules: Rules, now: DateTime<Utc>, lockdown: bool) -> Decision {
    let d = decide(read.text, read.chars, list, rules.access, now, rules.tz);
    if d.action != Action::Open {
        return d;
    }
    let refuse = |reason: Reason| Decision {
        action: Action::Deny,
        alert: false,
        reason,
        matched: d.matched.clone(),
    };
    if read.reads < rules.min_reads {
        return refuse(Reason::TooFewReads { reads: read.reads });
    }
    if lockdown {
        return refuse(Reason::Lockdown);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Entry, Kind};

    fn chars(text: &str) -> Vec<CharRead> {
        text.chars()
            .map(|ch| CharRead {
                ch,
                conf: 0.99,
                alt: None,
            })
            .collect()
    }

    fn list() -> Allowlist {
        Allowlist::new(
            vec![
                Entry::new("ABC123", Kind::Resident),
                Entry::new("BAD666", Kind::Blocked),
            ],
            1,
        )
    }

    #[test]
    fn a_listed_plate_opens_with_enough_reads_and_not_with_one() {
        let cfg = AccessConfig::default();
        let rules = Rules {
            access: &cfg,
            min_reads: 2,
            tz: chrono_tz::UTC,
        };
        let c = chars("ABC123");
        let read = |reads| PassRead {
            text: "ABC123",
            chars: &c,
            reads,
        };
        let now = Utc::now();
        assert_eq!(decide_pass(read(2), &list(), rules, now, false).action, Action::Open);
        let d = decide_pass(read(1), &list(), rules, now, false);
        assert_eq!(d.action, Action::Deny);
        assert!(matches!(d.reason, Reason::TooFewReads { reads: 1 }), "{:?}", d.reason);
        assert!(d.matched.is_some(), "the event still names the entry it matched");
    }

    #[test]
    fn lockdown_turns_an_opening_into_a_denial_and_leaves_a_blocked_alert_alone() {
        let cfg = AccessConfig::default();
        let rules = Rules {
            access: &cfg,
            min_reads: 2,
            tz: chrono_tz::UTC,
        };
        let now = Utc::now();
        let c = chars("ABC123");
        let d = decide_pass(
            PassRead {
                text: "ABC123",
                chars: &c,
                reads: 3,
            },
            &list(),
            rules,
            now,
            true,
        );
        assert_eq!((d.action, d.alert), (Action::Deny, false));
        assert!(matches!(d.reason, Reason::Lockdown), "{:?}", d.reason);
        let b = chars("BAD666");
        let read = PassRead {
            text: "BAD666",
            chars: &b,
            reads: 3,
        };
        let plain = decide_pass(read, &list(), rules, now, false);
        let locked = decide_pass(read, &list(), rules, now, true);
        assert_eq!(plain.action, Action::Deny);
        assert!(
            plain.alert && locked.alert,
            "a blocked plate alerts the guards either way"
        );
        assert_eq!(format!("{:?}", plain.reason), format!("{:?}", locked.reason));
    }
}
