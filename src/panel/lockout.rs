//! Failed-login lockout and login rate limiting, in memory, on the [`Clock`](crate::clock::Clock).
//!
//! After `max_failures` failures within the lock period, the pair (account, source) is locked for the
//! lock period. Keyed on the pair, never on the account alone: someone guessing from the network
//! cannot lock the guards at the booth tablet out of their own accounts, and sessions already open (a
//! guard's shift) are never ended by a lockout. Each source is also limited to `per_minute` login posts
//! (and re-authentications), which bounds guessing across many accounts. A source is an address, or an
//! IPv6 /64 ([`source_key`]).
//!
//! The second factor is counted apart, by account and by pending session, whatever the source: a
//! pending session ends after [`PENDING_MAX_FAILURES`] wrong codes, and an account whose pending
//! sessions gave `2 x max_failures` wrong codes within the period takes no code for the rest of it
//! (only someone who knows the password gets that far).
//!
//! Every table is bounded ([`MAX_TRACKED`] entries): past it, expired entries go first, then the
//! oldest.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use super::limits::{source_key, MAX_TRACKED, TRUSTED_FOR};

/// Wrong second-factor codes one pending login session may give before it is ended.
pub const PENDING_MAX_FAILURES: u32 = 3;

/// Failures of one key: count, first failure, locked until.
type Failures<K> = HashMap<K, (u32, DateTime<Utc>, Option<DateTime<Utc>>)>;

#[derive(Debug)]
pub struct Lockout {
    max_failures: u32,
    period: Duration,
    per_minute: u32,
    failures: Mutex<Failures<(String, IpAddr)>>,
    attempts: Mutex<HashMap<IpAddr, (DateTime<Utc>, u32)>>,
    /// Second-factor failures by account.
    second: Mutex<Failures<String>>,
    /// Second-factor failures by pending session id.
    pending: Mutex<HashMap<String, (u32, DateTime<Utc>)>>,
    /// Sources a right password came from, and when.
    trusted: Mutex<HashMap<IpAddr, DateTime<Utc>>>,
}

/// What a second-factor attempt, counted before its check, means if the code is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondFactorAttempt {
    /// The session has had its tries: end it.
    pub end_session: bool,
    /// The account's second factor closes until then.
    pub account_locked_until: Option<DateTime<Utc>>,
    /// The (account, source) pair locks until then.
    pub pair_locked_until: Option<DateTime<Utc>>,
}

/// Makes room for one more entry: drops what no longer counts, then the oldest by `age`.
fn make_room<K: Clone + Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    live: impl Fn(&V) -> bool,
    age: impl Fn(&V) -> DateTime<Utc>,
) {
    if map.len() < MAX_TRACKED {
        return;
    }
    map.retain(|_, v| live(v));
    while map.len() >= MAX_TRACKED {
        let Some(oldest) = map.iter().min_by_key(|(_, v)| age(v)).map(|(k, _)| k.clone()) else {
            break;
        };
        map.remove(&oldest);
    }
}

/// Counts one failure into `e` (restarting an expired count); returns the lock's end when it locks.
fn count_failure(
    e: &mut (u32, DateTime<Utc>, Option<DateTime<Utc>>),
    max: u32,
    period: Duration,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if now - e.1 >= period || e.2.is_some_and(|u| u <= now) {
        *e = (0, now, None);
    }
    e.0 += 1;
    if e.0 >= max && e.2.is_none() {
        let until = now + period;
        e.2 = Some(until);
        return Some(until);
    }
    None
}

impl Lockout {
    pub fn new(max_failures: u32, period: Duration, per_minute: u32) -> Self {
        Self {
            max_failures,
            period,
            per_minute,
            failures: Mutex::default(),
            attempts: Mutex::default(),
            second: Mutex::default(),
            pending: Mutex::default(),
            trusted: Mutex::default(),
        }
    }

    fn key(user: &str, source: IpAddr) -> (String, IpAddr) {
        (user.trim().to_lowercase(), source_key(source))
    }

    /// Entries held in all tables together (tests, metrics).
    pub fn tracked(&self) -> usize {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).len()
            + self.second.lock().unwrap_or_else(|p| p.into_inner()).len()
            + self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// When the pair is locked, until when.
    pub fn locked_until(&self, user: &str, source: IpAddr, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&Self::key(user, source))
            .and_then(|(_, _, until)| *until)
            .filter(|u| *u > now)
    }

    /// Whether a right password came from this source within [`TRUSTED_FOR`] (the booth tablet).
    pub fn trusted(&self, source: IpAddr, now: DateTime<Utc>) -> bool {
        let map = self.trusted.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&source_key(source)).is_some_and(|at| now - *at < TRUSTED_FOR)
    }

    /// A right password came from this source.
    pub fn trust(&self, source: IpAddr, now: DateTime<Utc>) {
        let mut map = self.trusted.lock().unwrap_or_else(|p| p.into_inner());
        let key = source_key(source);
        if !map.contains_key(&key) {
            make_room(&mut map, |at| now - *at < TRUSTED_FOR, |at| *at);
        }
        map.insert(key, now);
    }

    /// Checks the pair and counts this attempt as a failure *before* the password is checked, in one
    /// step: however many attempts run at once, no more than `max_failures` are ever checked. `Err` is
    /// the end of a lock already in force; `Ok(Some(until))` means this attempt's count locked the pair
    /// (if the password is wrong, this failure is the one that locks). A right password calls
    /// [`Lockout::undo`] or [`Lockout::success`].
    pub fn attempt(
        &self,
        user: &str,
        source: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, DateTime<Utc>> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let key = Self::key(user, source);
        if let Some(until) = map.get(&key).and_then(|e| e.2).filter(|u| *u > now) {
            return Err(until);
        }
        if !map.contains_key(&key) {
            let period = self.period;
            make_room(
                &mut map,
                |(_, first, until)| now - *first < period || until.is_some_and(|u| u > now),
                |(_, first, _)| *first,
            );
        }
        let e = map.entry(key).or_insert((0, now, None));
        Ok(count_failure(e, self.max_failures, self.period, now))
    }

    /// Takes back the count of an attempt whose password was right (a login that still owes its second
    /// factor, a right re-entered password).
    pub fn undo(&self, user: &str, source: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let key = Self::key(user, source);
        if let Some(e) = map.get_mut(&key) {
            e.0 = e.0.saturating_sub(1);
            if e.0 < self.max_failures {
                e.2 = None;
            }
            if e.0 == 0 {
                map.remove(&key);
            }
        }
    }

    pub fn success(&self, user: &str, source: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&Self::key(user, source));
    }

    /// Counts a login post from a source; false when the source is over its rate.
    pub fn allow_attempt(&self, source: IpAddr, now: DateTime<Utc>) -> bool {
        let mut map = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let key = source_key(source);
        if !map.contains_key(&key) {
            make_room(
                &mut map,
                |(start, _)| now - *start < Duration::minutes(1),
                |(start, _)| *start,
            );
        }
        let e = map.entry(key).or_insert((now, 0));
        if now - e.0 >= Duration::minutes(1) {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= self.per_minute
    }

    /// When the account takes no second-factor code, until when.
    pub fn second_factor_locked_until(&self, user: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let map = self.second.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&user.trim().to_lowercase())
            .and_then(|(_, _, until)| *until)
            .filter(|u| *u > now)
    }

    /// Checks and counts a second-factor code *before* it is checked, in one step per table, so that
    /// codes sent all at once cannot outrun the limits: `None` when the session has had its tries, the
    /// account's second factor is closed, or the (account, source) pair is locked; otherwise what this
    /// attempt's count means if the code is wrong. A right code calls [`Lockout::second_factor_success`]
    /// and [`Lockout::success`].
    pub fn second_factor_attempt(
        &self,
        user: &str,
        session: &str,
        source: IpAddr,
        now: DateTime<Utc>,
    ) -> Option<SecondFactorAttempt> {
        let period = self.period;
        let end_session = {
            let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if !map.contains_key(session) {
                make_room(&mut map, |(_, first)| now - *first < period, |(_, first)| *first);
            }
            let e = map.entry(session.to_string()).or_insert((0, now));
            if e.0 >= PENDING_MAX_FAILURES {
                return None;
            }
            e.0 += 1;
            e.0 >= PENDING_MAX_FAILURES
        };
        let account_locked_until = {
            let mut map = self.second.lock().unwrap_or_else(|p| p.into_inner());
            let key = user.trim().to_lowercase();
            if map.get(&key).and_then(|e| e.2).is_some_and(|u| u > now) {
                return None;
            }
            if !map.contains_key(&key) {
                make_room(
                    &mut map,
                    |(_, first, until)| now - *first < period || until.is_some_and(|u| u > now),
                    |(_, first, _)| *first,
                );
            }
            let e = map.entry(key).or_insert((0, now, None));
            count_failure(e, self.max_failures.saturating_mul(2), period, now)
        };
        let pair_locked_until = self.attempt(user, source, now).ok()?;
        Some(SecondFactorAttempt {
            end_session,
            account_locked_until,
            pair_locked_until,
        })
    }

    /// The second factor was given: its counts start again.
    pub fn second_factor_success(&self, user: &str, session: &str) {
        self.second
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&user.trim().to_lowercase());
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(session);
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
            assert_eq!(
                l.attempt("ann", attacker, t0 + Duration::seconds(i)).ok().flatten(),
                None
            );
        }
        assert!(l
            .attempt("Ann", attacker, t0 + Duration::seconds(5))
            .ok()
            .flatten()
            .is_some());
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
            l.attempt("ann", attacker, t0 + Duration::minutes(16)).ok().flatten(),
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

    #[test]
    fn attempts_are_counted_before_the_check_and_undone_when_right() {
        let l = Lockout::new(3, Duration::minutes(15), 100);
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("t");
        let ip: IpAddr = "10.0.0.5".parse().expect("ip");
        // Three attempts in flight at once: the third locks; a fourth is refused before any check.
        assert_eq!(l.attempt("ann", ip, t0), Ok(None));
        assert_eq!(l.attempt("ann", ip, t0), Ok(None));
        assert!(matches!(l.attempt("ann", ip, t0), Ok(Some(_))));
        assert!(l.attempt("ann", ip, t0).is_err());
        // The third was the right password: its count is taken back and the lock with it.
        l.undo("ann", ip);
        assert!(l.locked_until("ann", ip, t0).is_none());
        assert!(matches!(l.attempt("ann", ip, t0), Ok(Some(_))), "two wrong + this one");
    }

    #[test]
    fn second_factor_attempts_are_counted_before_the_check() {
        let l = Lockout::new(5, Duration::minutes(15), 100);
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("t");
        // Codes of one pending session sent all at once: three are let through, the rest refused.
        let through: Vec<_> = (0..10)
            .filter_map(|i| l.second_factor_attempt("ann", "s1", IpAddr::from([10, 0, 0, i]), t0))
            .collect();
        assert_eq!(through.len(), PENDING_MAX_FAILURES as usize);
        assert!(through.last().expect("last").end_session);
        // Other sessions of the account, other sources: ten counted codes in all close its second factor.
        for i in 3..10u8 {
            let r = l.second_factor_attempt("ann", &format!("s{i}"), IpAddr::from([10, 1, 0, i]), t0);
            assert!(r.is_some(), "attempt {i}");
        }
        assert!(l.second_factor_locked_until("ann", t0).is_some());
        assert!(l
            .second_factor_attempt("ann", "fresh", IpAddr::from([10, 9, 9, 9]), t0)
            .is_none());
    }

    #[test]
    fn ipv6_sources_in_one_64_share_a_lock() {
        let l = Lockout::new(3, Duration::minutes(15), 100);
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("t");
        for i in 1..=3u16 {
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 7, i, i, i, i]);
            let _ = l.attempt("ann", ip, t0);
        }
        let other_host_same_64 = IpAddr::from([0x2001, 0xdb8, 0, 7, 9, 9, 9, 9]);
        assert!(l.locked_until("ann", other_host_same_64, t0).is_some());
        assert!(l
            .locked_until("ann", IpAddr::from([0x2001, 0xdb8, 0, 8, 1, 1, 1, 1]), t0)
            .is_none());
    }

    #[test]
    fn tables_keyed_by_client_input_stay_bounded() {
        let l = Lockout::new(5, Duration::minutes(15), 100);
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("t");
        let ip: IpAddr = "10.0.0.5".parse().expect("ip");
        for i in 0..(MAX_TRACKED + 500) {
            let _ = l.attempt(&format!("user{i}"), ip, t0);
            let _ = l.second_factor_attempt(&format!("user{i}"), &format!("s{i}"), ip, t0);
            let _ = l.allow_attempt(IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]), t0);
        }
        assert!(l.tracked() <= 3 * MAX_TRACKED, "{} entries", l.tracked());
        assert!(l.attempts.lock().expect("lock").len() <= MAX_TRACKED);
    }
}
