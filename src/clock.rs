//! The `Clock` seam: every "now" in the daemon comes from here, so expiry, schedules and retention can be
//! tested with a [`ManualClock`].

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A source of the current UTC time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// How far the wall clock is behind what this clock trusts, when it is (see [`TrustedClock`]).
    fn behind(&self) -> Option<Duration> {
        None
    }
}

/// A wall clock that never runs backwards: it follows `inner` forward, but when `inner` is set back (a
/// dead RTC battery booting in 2000, a wrong manual setting, a bad NTP answer) it goes on from the
/// latest time it trusted, advanced by the monotonic clock. The floor at start is the newest time the
/// site has recorded (events, audit), so a box that boots with its clock in the past does not make an
/// expired visitor pass valid again. Forward jumps are followed (a box without an RTC is corrected
/// forward by NTP after every power cut); retention then keeps events the cloud has not acknowledged
/// (`events::retention::purge`).
pub struct TrustedClock<C: Clock> {
    inner: C,
    latest: Mutex<(DateTime<Utc>, std::time::Instant)>,
    behind_ms: std::sync::atomic::AtomicI64,
}

/// How far behind the wall clock may be before it counts as set back (NTP steps of seconds do not).
const SET_BACK: Duration = Duration::seconds(60);

impl<C: Clock> TrustedClock<C> {
    pub fn new(inner: C, floor: Option<DateTime<Utc>>) -> Self {
        let wall = inner.now();
        let start = floor.map_or(wall, |f| f.max(wall));
        let c = Self {
            inner,
            latest: Mutex::new((start, std::time::Instant::now())),
            behind_ms: std::sync::atomic::AtomicI64::new(0),
        };
        let _ = c.now();
        c
    }
}

impl<C: Clock> Clock for TrustedClock<C> {
    fn now(&self) -> DateTime<Utc> {
        use std::sync::atomic::Ordering;
        let wall = self.inner.now();
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = Duration::from_std(latest.1.elapsed()).unwrap_or_else(|_| Duration::zero());
        let trusted = latest.0 + elapsed;
        if wall + SET_BACK >= trusted {
            if self.behind_ms.swap(0, Ordering::Relaxed) > 0 {
                tracing::info!("the wall clock is right again");
            }
            let now = wall.max(trusted);
            *latest = (now, std::time::Instant::now());
            return now;
        }
        let behind = (trusted - wall).num_milliseconds();
        if self.behind_ms.swap(behind, Ordering::Relaxed) == 0 {
            tracing::error!(
                behind_s = behind / 1000,
                trusted = %trusted.to_rfc3339(),
                "the wall clock is behind the newest time this site recorded: going on from that time, not the clock \
                 (set the clock right, and check the RTC battery and NTP; if the clock is right and the records were \
                 written by a clock set ahead, restart with GATEHOUSE_TRUST_WALL_CLOCK=1)"
            );
        }
        trusted
    }

    fn behind(&self) -> Option<Duration> {
        let ms = self.behind_ms.load(std::sync::atomic::Ordering::Relaxed);
        (ms > 0).then(|| Duration::milliseconds(ms))
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Shared handle used across the daemon.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_set_back_400_days_is_not_followed_and_one_set_forward_is() {
        let start = Utc::now();
        let wall = ManualClock::new(start);
        let clock = TrustedClock::new(wall.clone(), None);
        assert!(clock.now() >= start && clock.behind().is_none());
        wall.set(start - Duration::days(400));
        let t = clock.now();
        assert!(t >= start, "not followed back: {t}");
        assert!(clock.behind().is_some_and(|b| b > Duration::days(399)));
        // A few seconds of NTP stepping back is not a set-back clock.
        wall.set(start + Duration::days(1));
        assert_eq!(clock.now(), start + Duration::days(1), "forward is followed");
        assert!(clock.behind().is_none());
        wall.set(start + Duration::days(1) - Duration::seconds(5));
        assert!(clock.now() >= start + Duration::days(1) - Duration::seconds(5));
        assert!(clock.behind().is_none());
        // The floor at start: a box booting with its clock behind the newest record.
        let booted = TrustedClock::new(ManualClock::new(start - Duration::days(400)), Some(start));
        assert!(booted.now() >= start && booted.behind().is_some());
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .expect("valid date");
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::days(2));
        assert_eq!(clock.now(), start + Duration::days(2));
    }
}
