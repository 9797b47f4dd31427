//! The access decision: a voted read against the allowlist snapshot, at a given time. Pure and fast:
//! it never touches disk or network. Every decision carries its reason.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::allowlist::Allowlist;
use super::entry::{Entry, Kind};
use crate::config::AccessConfig;
use crate::recognize::CharRead;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Open,
    Deny,
    /// No vehicle decided: an alert about the gate itself (its position contact disagrees with the
    /// commands), recorded and uploaded like a pass.
    Alert,
    /// No vehicle decided: one finished opening of the gate as its position contact saw it (`first_seen`
    /// when it opened, `at` when it closed).
    Gate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// The plate is on the list and may enter now.
    Allowed {
        kind: Kind,
    },
    /// The read differs from a listed plate only by OCR confusions, and nothing else is close.
    AllowedConfusion {
        kind: Kind,
        listed: String,
        substitutions: usize,
    },
    Unknown,
    Blocked,
    /// The read could be a blocked plate misread: never opens.
    NearBlocked {
        listed: String,
    },
    /// Two or more listed plates fit the read, or the read is too weak to tell them apart.
    Ambiguous {
        candidates: Vec<String>,
    },
    NotYetValid,
    Expired,
    OutsideSchedule,
    LowConfidence {
        confidence: f32,
    },
    /// The vehicle left before enough frames agreed on its plate.
    TooFewReads {
        reads: usize,
    },
    /// Guards' overrides and lockdown.
    Lockdown,
    /// A guard commanded the gate from the panel.
    GuardOverride,
    /// An exit or guard push-button opened the gate (`[inputs.NAME]`, role exit_button).
    ExitButton,
    /// The gate's position contact disagrees with the commands: `gate_not_opened`, `gate_held_open` or
    /// `gate_forced_open` (see `gate::watch`).
    GateAlert {
        alert: &'static str,
    },
    /// One opening of the gate, from its position contact; `commanded` when a command explains it.
    GateCycle {
        commanded: bool,
    },
}

impl Reason {
    /// Stable short code for storage and the wire.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Allowed { .. } => "allowed",
            Reason::AllowedConfusion { .. } => "allowed_confusion",
            Reason::Unknown => "unknown",
            Reason::Blocked => "blocked",
            Reason::NearBlocked { .. } => "near_blocked",
            Reason::Ambiguous { .. } => "ambiguous",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Expired => "expired",
            Reason::OutsideSchedule => "outside_schedule",
            Reason::LowConfidence { .. } => "low_confidence",
            Reason::TooFewReads { .. } => "too_few_reads",
            Reason::Lockdown => "lockdown",
            Reason::GuardOverride => "guard_override",
            Reason::ExitButton => "exit_button",
            Reason::GateAlert { alert } => alert,
            Reason::GateCycle { .. } => "gate_cycle",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Allowed { kind } => write!(f, "listed {kind}"),
            Reason::AllowedConfusion {
                kind, substitutions, ..
            } => {
                write!(f, "listed {kind}, read with {substitutions} OCR confusion(s)")
            }
            Reason::Unknown => f.write_str("not on the list"),
            Reason::Blocked => f.write_str("blocked plate"),
            Reason::NearBlocked { .. } => f.write_str("could be a blocked plate misread"),
            Reason::Ambiguous { candidates } => write!(f, "ambiguous between {} listed plates", candidates.len()),
            Reason::NotYetValid => f.write_str("pass not yet valid"),
            Reason::Expired => f.write_str("pass expired"),
            Reason::OutsideSchedule => f.write_str("outside the pass's schedule"),
            Reason::LowConfidence { confidence } => write!(f, "read too uncertain ({confidence:.2})"),
            Reason::TooFewReads { reads } => write!(f, "only {reads} read(s) agreed before the vehicle left"),
            Reason::Lockdown => f.write_str("gate in lockdown"),
            Reason::GuardOverride => f.write_str("opened by a guard"),
            Reason::ExitButton => f.write_str("opened by an exit button"),
            Reason::GateCycle { commanded: true } => f.write_str("gate opened on command and closed"),
            Reason::GateCycle { commanded: false } => f.write_str("gate opened with no command and closed"),
            Reason::GateAlert { alert } => f.write_str(match *alert {
                "gate_not_opened" => "gate commanded but did not open",
                "gate_held_open" => "gate held open too long",
                "gate_forced_open" => "gate forced open: opened with no command",
                other => other,
            }),
        }
    }
}

/// What the decision matched, copied out of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matched {
    pub plate: String,
    pub kind: Kind,
    pub host: Option<String>,
    pub unit: Option<String>,
    pub do_not_log: bool,
}

impl From<&Entry> for Matched {
    fn from(e: &Entry) -> Self {
        Self {
            plate: e.plate.clone(),
            kind: e.kind,
            host: e.host.clone(),
            unit: e.unit.clone(),
            do_not_log: e.do_not_log,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub action: Action,
    /// Guards should look (blocked or possibly blocked vehicle).
    pub alert: bool,
    pub reason: Reason,
    pub matched: Option<Matched>,
}

impl Decision {
    fn deny(reason: Reason, alert: bool, matched: Option<&Entry>) -> Self {
        Self {
            action: Action::Deny,
            alert,
            reason,
            matched: matched.map(Matched::from),
        }
    }
}

/// Decides on a voted read. `chars` carry per-character confidences (same length as `text`).
pub fn decide(
    text: &str,
    chars: &[CharRead],
    list: &Allowlist,
    cfg: &AccessConfig,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> Decision {
    let conf_at = |p: usize| chars.get(p).map(|c| c.conf).unwrap_or(0.0);
    let sure_at = |positions: &[usize]| positions.iter().all(|&p| conf_at(p) >= cfg.ambiguity_confidence);
    let exact = list.exact(text);
    let mut near = list.near(text);
    near.extend(list.near_sealed(text, chars, cfg.ambiguity_confidence, cfg.max_confusions));

    // 1. Blocked plates, exact or within any number of confusions, never open.
    if let Some(e) = exact.filter(|e| e.kind == Kind::Blocked) {
        return Decision::deny(Reason::Blocked, true, Some(e));
    }
    for n in near.iter().filter(|n| n.entry.kind == Kind::Blocked) {
        // Only a confident exact read of a different, listed plate clears a blocked look-alike.
        if !(exact.is_some() && sure_at(&n.positions)) {
            return Decision::deny(
                Reason::NearBlocked {
                    listed: n.entry.plate.clone(),
                },
                true,
                Some(n.entry),
            );
        }
    }

    // 2. The read must be trustworthy.
    let weakest = chars.iter().map(|c| c.conf).fold(1.0f32, f32::min);
    if chars.is_empty() || weakest < cfg.min_confidence {
        return Decision::deny(
            Reason::LowConfidence {
                confidence: if chars.is_empty() { 0.0 } else { weakest },
            },
            false,
            exact,
        );
    }

    // 3. Which entry, if any.
    // A confusion only counts where the OCR was unsure of the character, or its runner-up was the listed
    // one: a confident "8" is not read as a listed "B" (a stranger's A8C123 must not open for ABC123).
    let plausible = |n: &&crate::access::allowlist::Near<'_>| {
        n.positions.iter().all(|&p| {
            let listed = n.listed.chars().nth(p);
            let c = chars.get(p);
            conf_at(p) < cfg.ambiguity_confidence || c.and_then(|c| c.alt).map(|a| a.0) == listed
        })
    };
    let allowed_near: Vec<_> = near
        .iter()
        .filter(|n| n.entry.kind != Kind::Blocked && n.positions.len() <= cfg.max_confusions)
        .filter(plausible)
        .collect();
    let (entry, reason) = match exact {
        Some(e) => {
            let rivals: Vec<String> = near
                .iter()
                .filter(|n| !sure_at(&n.positions))
                .map(|n| n.entry.plate.clone())
                .collect();
            if !rivals.is_empty() {
                let mut candidates = vec![e.plate.clone()];
                candidates.extend(rivals);
                return Decision::deny(Reason::Ambiguous { candidates }, false, None);
            }
            (e, Reason::Allowed { kind: e.kind })
        }
        None => match allowed_near.as_slice() {
            [] => return Decision::deny(Reason::Unknown, false, None),
            [one] => (
                one.entry,
                Reason::AllowedConfusion {
                    kind: one.entry.kind,
                    listed: one.entry.plate.clone(),
                    substitutions: one.positions.len(),
                },
            ),
            many => {
                let candidates = many.iter().map(|n| n.entry.plate.clone()).collect();
                return Decision::deny(Reason::Ambiguous { candidates }, false, None);
            }
        },
    };

    // 4. When.
    if let Some(from) = entry.valid_from {
        if now < from {
            return Decision::deny(Reason::NotYetValid, false, Some(entry));
        }
    }
    if let Some(until) = entry.valid_until {
        if now >= until {
            return Decision::deny(Reason::Expired, false, Some(entry));
        }
    }
    if let Some(s) = &entry.schedule {
        if !s.allows(&now.with_timezone(&tz)) {
            return Decision::deny(Reason::OutsideSchedule, false, Some(entry));
        }
    }
    Decision {
        action: Action::Open,
        alert: false,
        reason,
        matched: Some(Matched::from(entry)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::schedule::Schedule;

    fn chars(text: &str, conf: f32) -> Vec<CharRead> {
        text.chars().map(|ch| CharRead { ch, conf, alt: None }).collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T15:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .expect("date") // Monday
    }

    fn list() -> Allowlist {
        let mut visitor = Entry::new("VIS777", Kind::Visitor);
        visitor.valid_until = Some(now() - chrono::Duration::hours(1));
        let mut vendor = Entry::new("VEN42X", Kind::Vendor);
        vendor.schedule = Schedule::parse("sat-sun 08:00-12:00").ok();
        let mut future = Entry::new("FUT555", Kind::Visitor);
        future.valid_from = Some(now() + chrono::Duration::days(1));
        Allowlist::new(
            vec![
                Entry::new("ABC123", Kind::Resident),
                Entry::new("BLK666", Kind::Blocked),
                Entry::new("XY1234", Kind::Resident),
                Entry::new("XYI234", Kind::Resident),
                Entry::new("8ABC12", Kind::Resident),
                Entry::new("BABC12", Kind::Blocked),
                visitor,
                vendor,
                future,
            ],
            1,
        )
    }

    fn d(text: &str, conf: f32) -> Decision {
        decide(
            text,
            &chars(text, conf),
            &list(),
            &AccessConfig::default(),
            now(),
            chrono_tz::UTC,
        )
    }

    #[test]
    fn listed_resident_opens_and_unknown_does_not() {
        assert_eq!(d("ABC123", 0.99).action, Action::Open);
        assert_eq!(d("ABC123", 0.99).reason, Reason::Allowed { kind: Kind::Resident });
        assert_eq!(d("QQQ999", 0.99).reason, Reason::Unknown);
    }

    #[test]
    fn a_single_unsure_confusion_opens_with_its_reason() {
        let dec = d("A8C123", 0.9);
        assert_eq!(dec.action, Action::Open);
        assert!(matches!(dec.reason, Reason::AllowedConfusion { substitutions: 1, .. }));
        assert_eq!(
            d("A8CI23", 0.9).action,
            Action::Deny,
            "two confusions exceed the default bound"
        );
    }

    #[test]
    fn a_confident_different_character_is_a_different_plate() {
        assert_eq!(d("A8C123", 0.99).reason, Reason::Unknown, "a sure 8 is not a listed B");
        let mut c = chars("A8C123", 0.99);
        c[1].alt = Some(('B', 0.01));
        let dec = decide("A8C123", &c, &list(), &AccessConfig::default(), now(), chrono_tz::UTC);
        assert_eq!(
            dec.action,
            Action::Open,
            "unless the runner-up reading is the listed character"
        );
    }

    #[test]
    fn blocked_and_its_look_alikes_never_open_and_alert() {
        let b = d("BLK666", 0.99);
        assert_eq!((b.action, b.alert, b.reason.code()), (Action::Deny, true, "blocked"));
        let nb = d("BLK66G", 0.99);
        assert_eq!(
            (nb.action, nb.alert, nb.reason.code()),
            (Action::Deny, true, "near_blocked")
        );
        let nb2 = d("8LK6GG", 0.99);
        assert_eq!(
            nb2.reason.code(),
            "near_blocked",
            "any number of confusions with a blocked plate"
        );
    }

    #[test]
    fn a_resident_next_to_a_blocked_look_alike_needs_a_confident_read() {
        assert_eq!(d("8ABC12", 0.99).action, Action::Open);
        let weak = d("8ABC12", 0.9);
        assert_eq!((weak.action, weak.reason.code()), (Action::Deny, "near_blocked"));
    }

    #[test]
    fn ambiguous_pairs_do_not_open() {
        assert_eq!(d("XYL234", 0.9).reason.code(), "ambiguous");
        assert_eq!(d("XYL234", 0.99).action, Action::Deny);
        assert_eq!(
            d("XY1234", 0.9).reason.code(),
            "ambiguous",
            "weak exact read with a look-alike listed"
        );
        assert_eq!(d("XY1234", 0.99).action, Action::Open);
    }

    #[test]
    fn time_windows_and_schedules() {
        assert_eq!(d("VIS777", 0.99).reason, Reason::Expired);
        assert_eq!(d("FUT555", 0.99).reason, Reason::NotYetValid);
        assert_eq!(d("VEN42X", 0.99).reason, Reason::OutsideSchedule);
    }

    #[test]
    fn opted_out_entries_kept_sealed_decide_like_plain_ones() {
        use crate::access::PlateKey;
        let key = PlateKey::from_bytes([4; 32]);
        let sealed = |p: &str| {
            let mut e = Entry::new(&key.seal(p), Kind::Resident);
            e.do_not_log = true;
            e
        };
        let entries = vec![sealed("ABC123"), sealed("XY1234"), Entry::new("XYI234", Kind::Resident)];
        let list = Allowlist::with_key(entries.clone(), 1, Some(key.clone()));
        let run = |text: &str, c: &[CharRead]| decide(text, c, &list, &AccessConfig::default(), now(), chrono_tz::UTC);
        let exact = run("ABC123", &chars("ABC123", 0.99));
        assert_eq!((exact.action, exact.reason.code()), (Action::Open, "allowed"));
        let m = exact.matched.expect("matched");
        assert!(
            m.do_not_log && m.plate == key.seal("ABC123"),
            "matched by its sealed id only"
        );
        let near = run("A8C123", &chars("A8C123", 0.9));
        assert_eq!(near.action, Action::Open, "an unsure confusion of a sealed plate");
        assert!(
            matches!(&near.reason, Reason::AllowedConfusion { substitutions: 1, listed, .. } if *listed == key.seal("ABC123"))
        );
        assert_eq!(
            run("A8C123", &chars("A8C123", 0.99)).reason,
            Reason::Unknown,
            "a sure 8 is not B"
        );
        let mut c = chars("A8C123", 0.99);
        c[1].alt = Some(('B', 0.01));
        assert_eq!(run("A8C123", &c).action, Action::Open, "unless B was the runner-up");
        assert_eq!(
            run("A8CI23", &chars("A8CI23", 0.9)).action,
            Action::Deny,
            "two confusions"
        );
        assert_eq!(run("XYL234", &chars("XYL234", 0.9)).reason.code(), "ambiguous");
        assert_eq!(run("XY1234", &chars("XY1234", 0.9)).reason.code(), "ambiguous");
        assert_eq!(run("XY1234", &chars("XY1234", 0.99)).action, Action::Open);
        let keyless = Allowlist::new(entries, 1);
        let d = decide(
            "ABC123",
            &chars("ABC123", 0.99),
            &keyless,
            &AccessConfig::default(),
            now(),
            chrono_tz::UTC,
        );
        assert_eq!(d.reason, Reason::Unknown, "sealed entries need the site's key");
    }

    #[test]
    fn low_confidence_denies_but_blocked_still_alerts() {
        assert_eq!(d("ABC123", 0.3).reason.code(), "low_confidence");
        assert_eq!(d("BLK666", 0.3).reason.code(), "blocked");
    }
}
