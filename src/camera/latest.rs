//! A one-place mailbox where the newest value wins: the frame path never blocks capture.

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
    fn consumer_wakes_when_a_value_arrives() {
        let slot = std::sync::Arc::new(LatestSlot::new());
        let s2 = slot.clone();
        let t = std::thread::spawn(move || s2.take_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        slot.put(7);
        assert_eq!(t.join().ok(), Some(Ok(Some(7))));
    }
}
