//! Failed-login lockout and login rate limiting, in memory, on the [`Clock`](crate::clock::Clock).
//!
//! After `max_failures` failures within the lock period, the pair (account, source address) is locked for
//! the lock period. Keyed on the pair, never on the account alone: someone guessing from the network
//! cannot lock the guards at the booth tablet out of their own accounts, and sessions already open (a
//! guard's shift) are never ended by a lockout. Each source is also limited to `per_minute` login posts,
//! which bounds guessing across many accounts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// Failures of one (account, source) pair: count, first failure, locked until.
type Failures = HashMap<(String, IpAddr), (u32, DateTime<Utc>, Option<DateTime<Utc>>)>;

#[derive(Debug)]
pub struct Lockout {
    max_failures: u32,
    period: Duration,
    per_minute: u32,
    failures: Mutex<Failures>,
    attempts: Mutex<HashMap<IpAddr, (DateTime<Utc>, u32)>>,
}

impl Lockout {
    pub fn new(max_failures: u32, period: Duration, per_minute: u32) -> Self {
        Self {
            max_failures,
            period,
            per_minute,
            failures: Mutex::default(),
            attempts: Mutex::default(),
        }
    }

    fn key(user: &str, source: IpAddr) -> (String, IpAddr) {
        (user.trim().to_lowercase(), source)
    }

    /// When the pair is locked, until when.
    pub fn locked_until(&self, user: &str, source: IpAddr, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&Self::key(user, source))
            .and_then(|(_, _, until)| *until)
            .filter(|u| *u > now)
    }

    /// Records a failure; returns the lock's end when this failure locked the pair.
    pub fn failure(&self, user: &str, source: IpAddr, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (_, first, until)| now - *first < self.period || until.is_some_and(|u| u > now));
        }
        let e = map.entry(Self::key(user, source)).or_insert((0, now, None));
        if now - e.1 >= self.period || e.2.is_some_and(|u| u <= now) {
            *e = (0, now, None);
        }
        e.0 += 1;
        if e.0 >= self.max_failures {
            let until = now + self.period;
            e.2 = Some(until);
            return Some(until);
        }
        None
    }

    pub fn success(&self, user: &str, source: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&Self::key(user, source));
    }

    /// Counts a login post from a source; false when the source is over its rate.
    pub fn allow_attempt(&self, source: IpAddr, now: DateTime<Utc>) -> bool {
        let mut map = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (start, _)| now - *start < Duration::minutes(1));
        }
        let e = map.entry(source).or_insert((now, 0));
        if now - e.0 >= Duration::minutes(1) {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_pair_for_the_period_only() {
        let l = Lockout::new(5, Duration::minutes(15), 100);
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("t");
        let (booth, attacker): (IpAddr, IpAddr) = ("10.0.0.5".parse().expect("ip"), "10.9.9.9".parse().expect("ip"));
        for i in 0..4 {
            assert_eq!(l.failure("ann", attacker, t0 + Duration::seconds(i)), None);
        }
        assert!(l.failure("Ann", attacker, t0 + Duration::seconds(5)).is_some());
        assert!(l.locked_until("ann", attacker, t0 + Duration::minutes(14)).is_some());
        assert!(
            l.locked_until("ann", booth, t0 + Duration::minutes(1)).is_none(),
            "other source unaffected"
        );
        assert!(
            l.locked_until("ann", attacker, t0 + Duration::minutes(16)).is_none(),
            "released"
        );
        assert_eq!(
            l.failure("ann", attacker, t0 + Duration::minutes(16)),
            None,
            "count restarts"
        );
    }

    #[test]
    fn rate_limit_per_source_per_minute() {
        let l = Lockout::new(5, Duration::minutes(15), 3);
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("t");
        let ip: IpAddr = "10.0.0.5".parse().expect("ip");
        assert!((0..3).all(|_| l.allow_attempt(ip, t0)));
        assert!(!l.allow_attempt(ip, t0));
        assert!(l.allow_attempt(ip, t0 + Duration::seconds(61)));
    }
}
