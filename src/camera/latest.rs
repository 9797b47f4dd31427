//! A one-place mailbox where the newest value wins: the frame path never blocks capture (a replayed
//! video file, which has no live scene to fall behind, may wait instead: [`LatestSlot::put_when_taken`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

struct State<T> {
    value: Option<T>,
    closed: bool,
}

/// Newest-wins slot between a producer thread and a consumer thread. Replacing an unread value counts a drop.
pub struct LatestSlot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    /// Signalled when the consumer takes a value (for [`LatestSlot::put_when_taken`]).
    taken: Condvar,
    dropped: AtomicU64,
    delivered: AtomicU64,
}

impl<T> Default for LatestSlot<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                value: None,
                closed: false,
            }),
            ready: Condvar::new(),
            taken: Condvar::new(),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        }
    }
}

impl<T> LatestSlot<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts a value, replacing (and counting) an unread one. Never blocks for long.
    pub fn put(&self, value: T) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.value.replace(value).is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        drop(st);
        self.ready.notify_one();
    }

    /// Puts a value once the slot is empty (the consumer took the last one): no frame is dropped. Gives
    /// up and returns the value when `stop` says so (checked every 100 ms) or the slot is closed.
    pub fn put_when_taken(&self, value: T, stop: impl Fn() -> bool) -> Result<(), T> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while st.value.is_some() && !st.closed {
            if stop() {
                return Err(value);
            }
            st = self
                .taken
                .wait_timeout(st, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        if st.closed {
            return Err(value);
        }
        st.value = Some(value);
        drop(st);
        self.ready.notify_one();
        Ok(())
    }

    /// Waits up to `timeout` for a value. `Ok(None)` on timeout; `Err(())` once closed and empty.
    #[allow(clippy::result_unit_err)]
    pub fn take_timeout(&self, timeout: Duration) -> Result<Option<T>, ()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.value.is_none() && !st.closed {
            st = self
                .ready
                .wait_timeout_while(st, timeout, |s| s.value.is_none() && !s.closed)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        match st.value.take() {
            Some(v) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                drop(st);
                self.taken.notify_all();
                Ok(Some(v))
            }
            None if st.closed => Err(()),
            None => Ok(None),
        }
    }

    /// No more values will come; the consumer drains what is left and then sees the end.
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_all();
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_wins_and_drops_are_counted() {
        let slot = LatestSlot::new();
        slot.put(1);
        slot.put(2);
        slot.put(3);
        assert_eq!(slot.take_timeout(Duration::ZERO), Ok(Some(3)));
        assert_eq!(slot.dropped(), 2);
        assert_eq!(slot.take_timeout(Duration::from_millis(1)), Ok(None));
        slot.put(4);
        slot.close();
        assert_eq!(
            slot.take_timeout(Duration::ZERO),
            Ok(Some(4)),
            "values put before close are still delivered"
        );
        assert_eq!(slot.take_timeout(Duration::ZERO), Err(()));
    }

    #[test]
    fn a_replay_producer_waits_for_the_consumer_and_drops_nothing() {
        let slot = std::sync::Arc::new(LatestSlot::new());
        let s2 = slot.clone();
        let producer = std::thread::spawn(move || (0..50).all(|i| s2.put_when_taken(i, || false).is_ok()));
        let mut got = Vec::new();
        while got.len() < 50 {
            if let Ok(Some(v)) = slot.take_timeout(Duration::from_secs(5)) {
                got.push(v);
                std::thread::sleep(Duration::from_millis(1)); // a slow consumer
            }
        }
        assert_eq!(producer.join().ok(), Some(true));
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        assert_eq!(slot.dropped(), 0);
        // A stop request or a closed slot hands the value back instead of waiting forever.
        slot.put(99);
        assert_eq!(slot.put_when_taken(100, || true), Err(100));
        slot.close();
        assert_eq!(slot.put_when_taken(101, || false), Err(101));
    }

    #[test]
    fn consumer_wakes_when_a_value_arrives() {
        let slot = std::sync::Arc::new(LatestSlot::new());
        let s2 = slot.clone();
        let t = std::thread::spawn(move || s2.take_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        slot.put(7);
        assert_eq!(t.join().ok(), Some(Ok(Some(7))));
    }
}
