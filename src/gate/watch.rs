//! The gate watch: what the gate did with what the relay asked, from its position contact. Pure: the
//! relay's transitions, the contact's changes and clock ticks in; alerts and finished openings out.
//!
//! - **not opened**: the relay was energised and the gate did not open within `open_within` (a jammed
//!   gate, a cut wire, an operator without power);
//! - **held open**: the gate stayed open longer than `held_open` after the relay let go (a car parked in
//!   the way, a broken closer); a guard's "hold open" is not counted while the relay holds;
//! - **forced open**: the gate opened with no relay command in the `open_within` before (pushed open,
//!   opened by hand or by another controller).
//!
//! Each opening that closes again is reported as an [`Opening`]: when it opened, when it closed, and
//! whether a command explained it.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateAlertKind {
    NotOpened,
    HeldOpen,
    ForcedOpen,
}

impl GateAlertKind {
    /// Stable short code (metrics label, event reason, alert name).
    pub fn code(self) -> &'static str {
        match self {
            GateAlertKind::NotOpened => "gate_not_opened",
            GateAlertKind::HeldOpen => "gate_held_open",
            GateAlertKind::ForcedOpen => "gate_forced_open",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            GateAlertKind::NotOpened => "commanded but did not open",
            GateAlertKind::HeldOpen => "held open too long",
            GateAlertKind::ForcedOpen => "forced open: opened with no command",
        }
    }
}

/// One finished opening, as the contact saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Opening {
    pub opened_at: DateTime<Utc>,
    pub closed_at: DateTime<Utc>,
    /// A relay command explains it (false: it was a forced opening).
    pub commanded: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WatchNotice {
    /// A new alert (raise it).
    Alert {
        kind: GateAlertKind,
        at: DateTime<Utc>,
    },
    /// An alert's condition is over (clear it).
    Cleared {
        kind: GateAlertKind,
    },
    /// The gate opened on command, this long after it.
    Opened {
        after: Duration,
    },
    Closed(Opening),
}

#[derive(Debug, Clone)]
pub struct GateWatch {
    open_within: Duration,
    held_open: Duration,
    /// The last time the relay was energised, while an opening is still expected from it.
    awaiting: Option<DateTime<Utc>>,
    /// The last energising, kept to explain an opening that comes late.
    last_command: Option<DateTime<Utc>>,
    relay_on: bool,
    relay_off_at: Option<DateTime<Utc>>,
    /// Since when the gate is open, and whether a command explained it.
    open: Option<(DateTime<Utc>, bool)>,
    held_alerted: bool,
    not_opened_raised: bool,
}

impl GateWatch {
    pub fn new(open_within: std::time::Duration, held_open: std::time::Duration) -> Self {
        let d = |s: std::time::Duration| Duration::from_std(s).unwrap_or(Duration::MAX);
        Self {
            open_within: d(open_within),
            held_open: d(held_open),
            awaiting: None,
            last_command: None,
            relay_on: false,
            relay_off_at: None,
            open: None,
            held_alerted: false,
            not_opened_raised: false,
        }
    }

    /// The relay was energised (`true`) or let go.
    pub fn relay(&mut self, on: bool, at: DateTime<Utc>) -> Vec<WatchNotice> {
        if on && !self.relay_on {
            self.last_command = Some(at);
            if self.open.is_none() {
                self.awaiting = Some(at);
            }
        }
        if !on && self.relay_on {
            self.relay_off_at = Some(at);
        }
        self.relay_on = on;
        Vec::new()
    }

    /// The contact's level at start-up: a baseline, not a change (an open gate then is not "forced").
    pub fn initial(&mut self, open: bool, at: DateTime<Utc>) {
        self.open = open.then_some((at, true));
    }

    /// The position contact changed.
    pub fn position(&mut self, open: bool, at: DateTime<Utc>) -> Vec<WatchNotice> {
        let mut out = Vec::new();
        match (open, self.open) {
            (true, None) => {
                let commanded = self.relay_on || self.last_command.is_some_and(|c| at - c <= self.open_within);
                if commanded {
                    if let Some(c) = self.last_command {
                        out.push(WatchNotice::Opened { after: at - c });
                    }
                    if self.not_opened_raised {
                        self.not_opened_raised = false;
                        out.push(WatchNotice::Cleared {
                            kind: GateAlertKind::NotOpened,
                        });
                    }
                } else {
                    out.push(WatchNotice::Alert {
                        kind: GateAlertKind::ForcedOpen,
                        at,
                    });
                }
                self.awaiting = None;
                self.held_alerted = false;
                self.open = Some((at, commanded));
            }
            (false, Some((opened_at, commanded))) => {
                out.push(WatchNotice::Closed(Opening {
                    opened_at,
                    closed_at: at,
                    commanded,
                }));
                if !commanded {
                    out.push(WatchNotice::Cleared {
                        kind: GateAlertKind::ForcedOpen,
                    });
                }
                if self.held_alerted {
                    out.push(WatchNotice::Cleared {
                        kind: GateAlertKind::HeldOpen,
                    });
                }
                self.held_alerted = false;
                self.open = None;
            }
            _ => {}
        }
        out
    }

    /// Time passes: the two alerts that need no change to fire.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<WatchNotice> {
        let mut out = Vec::new();
        if let Some(c) = self.awaiting {
            if self.open.is_none() && now - c > self.open_within {
                self.awaiting = None;
                self.not_opened_raised = true;
                out.push(WatchNotice::Alert {
                    kind: GateAlertKind::NotOpened,
                    at: now,
                });
            }
        }
        if let Some((since, _)) = self.open {
            // A guard's hold keeps the relay on: the clock starts when it lets go.
            let from = match self.relay_off_at {
                Some(off) if off > since => off,
                _ => since,
            };
            if !self.relay_on && !self.held_alerted && now - from > self.held_open {
                self.held_alerted = true;
                out.push(WatchNotice::Alert {
                    kind: GateAlertKind::HeldOpen,
                    at: now,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).expect("time")
    }

    fn watch() -> GateWatch {
        let mut w = GateWatch::new(Std::from_secs(5), Std::from_secs(60));
        w.initial(false, t(0));
        w
    }

    fn alerts(n: &[WatchNotice]) -> Vec<GateAlertKind> {
        n.iter()
            .filter_map(|n| match n {
                WatchNotice::Alert { kind, .. } => Some(*kind),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_commanded_opening_that_closes_raises_nothing() {
        let mut w = watch();
        w.relay(true, t(1000));
        w.relay(false, t(1800));
        let n = w.position(true, t(2500));
        assert_eq!(
            n,
            vec![WatchNotice::Opened {
                after: Duration::milliseconds(1500)
            }]
        );
        assert!(alerts(&w.tick(t(30_000))).is_empty());
        let n = w.position(false, t(40_000));
        assert_eq!(
            n,
            vec![WatchNotice::Closed(Opening {
                opened_at: t(2500),
                closed_at: t(40_000),
                commanded: true
            })]
        );
        assert!(alerts(&w.tick(t(200_000))).is_empty());
    }

    #[test]
    fn a_command_the_gate_ignores_raises_not_opened_once_and_the_next_opening_clears_it() {
        let mut w = watch();
        w.relay(true, t(1000));
        w.relay(false, t(1800));
        assert!(alerts(&w.tick(t(5_900))).is_empty(), "still within 5 s");
        assert_eq!(alerts(&w.tick(t(6_100))), vec![GateAlertKind::NotOpened]);
        assert!(alerts(&w.tick(t(9_000))).is_empty(), "once");
        w.relay(true, t(20_000));
        let n = w.position(true, t(21_000));
        assert!(n.contains(&WatchNotice::Cleared {
            kind: GateAlertKind::NotOpened
        }));
    }

    #[test]
    fn open_without_a_command_is_forced_and_cleared_when_it_closes() {
        let mut w = watch();
        let n = w.position(true, t(10_000));
        assert_eq!(alerts(&n), vec![GateAlertKind::ForcedOpen]);
        let n = w.position(false, t(15_000));
        assert!(n.contains(&WatchNotice::Cleared {
            kind: GateAlertKind::ForcedOpen
        }));
        // An opening long after the last command is forced too.
        w.relay(true, t(20_000));
        w.relay(false, t(20_800));
        w.position(true, t(21_000));
        w.position(false, t(40_000));
        assert_eq!(alerts(&w.position(true, t(60_000))), vec![GateAlertKind::ForcedOpen]);
    }

    #[test]
    fn held_open_counts_from_the_relay_letting_go() {
        let mut w = watch();
        // A guard holds the gate open for ten minutes: no alert while the relay holds.
        w.relay(true, t(0));
        w.position(true, t(2_000));
        assert!(alerts(&w.tick(t(600_000))).is_empty());
        w.relay(false, t(600_000));
        assert!(alerts(&w.tick(t(659_000))).is_empty());
        assert_eq!(alerts(&w.tick(t(661_000))), vec![GateAlertKind::HeldOpen]);
        assert!(alerts(&w.tick(t(700_000))).is_empty(), "once per opening");
        let n = w.position(false, t(710_000));
        assert!(n.contains(&WatchNotice::Cleared {
            kind: GateAlertKind::HeldOpen
        }));
    }

    #[test]
    fn a_gate_open_at_start_up_is_not_forced() {
        let mut w = GateWatch::new(Std::from_secs(5), Std::from_secs(60));
        w.initial(true, t(0));
        assert!(alerts(&w.tick(t(1_000))).is_empty());
        assert_eq!(alerts(&w.tick(t(61_000))), vec![GateAlertKind::HeldOpen]);
    }
}
