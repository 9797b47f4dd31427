//! Debouncing a contact: a level counts only once it has held for the debounce time. Relay contacts and
//! push-buttons bounce for a few milliseconds; a loop detector's output can chatter while a vehicle edges
//! over the loop's border. Pure: levels and instants in, accepted changes out.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Debouncer {
    hold: Duration,
    /// The accepted level (`None` until the first level has held).
    stable: Option<bool>,
    /// A level seen but not yet held long enough, and since when.
    pending: Option<(bool, Instant)>,
}

impl Debouncer {
    pub fn new(hold: Duration) -> Self {
        Self {
            hold,
            stable: None,
            pending: None,
        }
    }

    /// The accepted level.
    pub fn level(&self) -> Option<bool> {
        self.stable
    }

    /// Whether a change is waiting to have held long enough.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Feeds the line's level as read at `now`; returns the new accepted level when it changed (the first
    /// accepted level counts as a change).
    pub fn feed(&mut self, level: bool, now: Instant) -> Option<bool> {
        if Some(level) == self.stable {
            self.pending = None;
            return None;
        }
        match self.pending {
            Some((p, since)) if p == level => {
                if now.saturating_duration_since(since) >= self.hold {
                    self.stable = Some(level);
                    self.pending = None;
                    return Some(level);
                }
                None
            }
            _ => {
                self.pending = Some((level, now));
                if self.hold.is_zero() {
                    self.stable = Some(level);
                    self.pending = None;
                    return Some(level);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_bouncing_contact_changes_once() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(Duration::from_millis(50));
        assert_eq!(d.feed(false, at(t0, 0)), None);
        assert_eq!(d.feed(false, at(t0, 60)), Some(false), "the first level held");
        // Press with bounce: 1 0 1 0 1 within 10 ms, then held.
        for (ms, level) in [(100, true), (102, false), (104, true), (106, false), (110, true)] {
            assert_eq!(d.feed(level, at(t0, ms)), None);
        }
        assert_eq!(d.feed(true, at(t0, 140)), None, "held 30 ms only");
        assert_eq!(d.feed(true, at(t0, 160)), Some(true), "held 50 ms");
        assert_eq!(d.feed(true, at(t0, 300)), None, "no change, no event");
        assert_eq!(d.level(), Some(true));
    }

    #[test]
    fn a_glitch_shorter_than_the_hold_is_ignored() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(Duration::from_millis(50));
        d.feed(false, at(t0, 0));
        d.feed(false, at(t0, 50));
        assert_eq!(d.feed(true, at(t0, 100)), None);
        assert_eq!(d.feed(false, at(t0, 120)), None, "back to the stable level");
        assert_eq!(d.feed(true, at(t0, 200)), None, "a new glitch starts its own clock");
        assert_eq!(d.feed(true, at(t0, 240)), None);
        assert_eq!(d.level(), Some(false));
    }

    #[test]
    fn no_debounce_takes_every_change() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(Duration::ZERO);
        assert_eq!(d.feed(true, t0), Some(true));
        assert_eq!(d.feed(false, t0), Some(false));
    }
}
