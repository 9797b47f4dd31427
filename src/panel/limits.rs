//! The panel's hard limits: what one client, or all of them together, can make the box spend.
//!
//! - Sources are keyed by address, IPv6 by its /64 ([`source_key`]): one host owns a whole /64, so
//!   rotating addresses inside it buys nothing.
//! - Password hashing (Argon2id, 19 MiB each) runs under a global permit count ([`Hashing`]): at most
//!   [`HASH_PERMITS`] at once, others wait up to [`HASH_WAIT`] and then get "busy" (429); one source
//!   has at most [`HASH_PER_SOURCE`] in flight. One of the permits is kept for trusted sources (a right
//!   password came from there within [`TRUSTED_FOR`]), so the booth tablet is not queued behind a flood
//!   of wrong guesses from addresses no one has logged in from.
//! - Connections: at most [`MAX_CONNECTIONS`] in all and [`CONNECTIONS_PER_SOURCE`] per source
//!   ([`Connections`]); the handshake, the request head and each whole request are timed.
//! - Request bodies: at most [`MAX_BODY`] bytes on every route.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

/// Argon2 hashes at once, for the whole panel (each holds 19 MiB while it runs).
pub const HASH_PERMITS: usize = 2;
/// How long a login waits for a hashing permit before it is told the panel is busy.
pub const HASH_WAIT: Duration = Duration::from_secs(3);
/// Hashes one source may have running or waiting.
pub const HASH_PER_SOURCE: usize = 2;
/// Connections open at once, all sources together.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections open at once from one source (address, or IPv6 /64).
pub const CONNECTIONS_PER_SOURCE: usize = 16;
/// Time to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to send a request head (also the idle time allowed between requests on a kept-alive connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole request once its head is in: reading the body and answering.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest request body any route takes (the panel's forms are a few hundred bytes).
pub const MAX_BODY: usize = 16 * 1024;
/// How long a source stays trusted after a right password came from it.
pub const TRUSTED_FOR: chrono::Duration = chrono::Duration::days(14);
/// Failed or refused logins itemised in the audit log per minute; the rest are counted in one row.
pub const FAILURE_AUDITS_PER_MINUTE: u32 = 60;
/// Entries kept by each in-memory table keyed by client input (lockout, rate, second-factor counts).
pub const MAX_TRACKED: usize = 4096;

/// The key a source is counted under: IPv4 (and IPv4-mapped IPv6) as is, IPv6 by its /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Why a hash could not run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// This source already has its share running.
    Source,
    /// Every permit stayed taken for [`HASH_WAIT`].
    Panel,
}

/// The global bound on password hashing, and each source's share of it.
#[derive(Debug, Clone)]
pub struct Hashing {
    /// Permits any source may take.
    permits: Arc<Semaphore>,
    /// Permits only trusted sources may take.
    clean: Arc<Semaphore>,
    wait: Duration,
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// Hashes running now, and the most ever running at once.
    running: Arc<(AtomicUsize, AtomicUsize)>,
}

impl Default for Hashing {
    fn default() -> Self {
        Self::new(HASH_PERMITS, HASH_WAIT)
    }
}

/// A source's place in the hashing queue; gives it back when dropped.
struct SourceSlot {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    key: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

impl Hashing {
    /// `permits` in all; with two or more, one of them is kept for trusted sources.
    pub fn new(permits: usize, wait: Duration) -> Self {
        let clean = usize::from(permits >= 2);
        Self {
            permits: Arc::new(Semaphore::new(permits.max(1) - clean)),
            clean: Arc::new(Semaphore::new(clean)),
            wait,
            per_source: Arc::default(),
            running: Arc::default(),
        }
    }

    /// The most hashes that ever ran at once (tests, the abuse benchmark).
    pub fn peak(&self) -> usize {
        self.running.1.load(Ordering::SeqCst)
    }

    /// Hashes running or waiting now, all sources together (tests and metrics).
    pub fn in_flight(&self) -> usize {
        let m = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        m.values().sum()
    }

    /// Runs `f` (an Argon2 hash or verify) on the blocking pool once a permit is free; a `trusted`
    /// source may also take the permit kept for trusted sources.
    pub async fn run<T: Send + 'static>(
        &self,
        source: IpAddr,
        trusted: bool,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let key = source_key(source);
        let slot = {
            let mut m = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(key).or_insert(0);
            if *n >= HASH_PER_SOURCE {
                return Err(Busy::Source);
            }
            *n += 1;
            SourceSlot {
                map: self.per_source.clone(),
                key,
            }
        };
        let any = self.permits.clone().acquire_owned();
        let permit = if !trusted {
            tokio::time::timeout(self.wait, any).await
        } else {
            let clean = self.clean.clone().acquire_owned();
            tokio::time::timeout(self.wait, async {
                tokio::select! {
                    p = any => p,
                    p = clean => p,
                }
            })
            .await
        };
        let permit = match permit {
            Ok(Ok(p)) => p,
            _ => return Err(Busy::Panel),
        };
        let running = self.running.clone();
        let out = tokio::task::spawn_blocking(move || {
            let _held = (permit, slot);
            let now = running.0.fetch_add(1, Ordering::SeqCst) + 1;
            running.1.fetch_max(now, Ordering::SeqCst);
            let out = f();
            running.0.fetch_sub(1, Ordering::SeqCst);
            out
        })
        .await;
        out.map_err(|_| Busy::Panel)
    }
}

/// Open connections per source, with the per-source cap.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open connection; counted until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    key: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut m = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

impl Connections {
    /// A slot for a new connection from `peer`, or `None` when that source has its share open.
    pub fn admit(&self, peer: IpAddr, per_source: usize) -> Option<ConnectionSlot> {
        let key = source_key(peer);
        let mut m = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key).or_insert(0);
        if *n >= per_source {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            open: self.open.clone(),
            key,
        })
    }

    pub fn open_from(&self, peer: IpAddr) -> usize {
        let m = self.open.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&source_key(peer)).copied().unwrap_or(0)
    }
}

/// A client-supplied text shortened for a log line: at most 40 characters, control characters escaped
/// by the `Debug` formatting the caller uses.
pub fn for_log(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().nth(40).is_some() {
        out.push_str(&format!("... ({} bytes)", s.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_sources_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let v4: IpAddr = "10.0.0.5".parse().expect("ip");
        assert_eq!(source_key(v4), v4);
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().expect("ip");
        assert_eq!(source_key(mapped), v4, "IPv4-mapped counts as the IPv4 address");
    }

    #[test]
    fn connections_are_capped_per_source_and_given_back() {
        let c = Connections::default();
        let ip: IpAddr = "10.0.0.9".parse().expect("ip");
        let slots: Vec<_> = (0..3).map(|_| c.admit(ip, 3).expect("slot")).collect();
        assert!(c.admit(ip, 3).is_none(), "fourth refused");
        assert!(
            c.admit("10.0.0.10".parse().expect("ip"), 3).is_some(),
            "other source admitted"
        );
        drop(slots);
        assert_eq!(c.open_from(ip), 0);
        assert!(c.admit(ip, 3).is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_runs_at_most_the_permits_at_once() {
        let h = Hashing::new(2, Duration::from_secs(10));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..12u8 {
            let (h, running, peak) = (h.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let ip = IpAddr::from([10, 0, 1, i]);
                h.run(ip, i % 2 == 0, move || {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = running.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(now, SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    running.fetch_sub(1, SeqCst);
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("join"), Ok(()));
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(h.in_flight(), 0);
    }

    #[tokio::test]
    async fn one_source_gets_its_share_and_waiters_give_up() {
        let h = Hashing::new(1, Duration::from_millis(50));
        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let first = {
            let h = h.clone();
            tokio::spawn(async move { h.run(ip, false, move || rx.recv().is_ok()).await })
        };
        // Let the first take the only permit.
        while h.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The same source's second waits, then the panel is busy; its third is refused at once.
        let second = {
            let h = h.clone();
            tokio::spawn(async move { h.run(ip, false, || true).await })
        };
        while h.in_flight() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(h.run(ip, true, || true).await, Err(Busy::Source));
        assert_eq!(second.await.expect("join"), Err(Busy::Panel));
        tx.send(()).expect("send");
        assert_eq!(first.await.expect("join"), Ok(true));
    }

    #[tokio::test]
    async fn a_trusted_source_gets_the_kept_permit_while_strangers_wait() {
        let h = Hashing::new(2, Duration::from_millis(200));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let hog = {
            let h = h.clone();
            tokio::spawn(async move {
                h.run("10.0.0.1".parse().expect("ip"), false, move || rx.recv().is_ok())
                    .await
            })
        };
        while h.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The shared permit is taken: another stranger waits and gives up, a trusted source runs at once.
        assert_eq!(
            h.run("10.0.0.2".parse().expect("ip"), false, || 1).await,
            Err(Busy::Panel)
        );
        assert_eq!(h.run("10.0.0.3".parse().expect("ip"), true, || 2).await, Ok(2));
        tx.send(()).expect("send");
        assert_eq!(hog.await.expect("join"), Ok(true));
    }
}
