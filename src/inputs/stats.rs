//! What the inputs and the gate watch count, for the metrics endpoint: the gates' positions, vehicles on
//! the loops, alerts by relay and kind, and exit-button openings.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct InputStats {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default, Clone)]
pub struct Inner {
    /// relay -> gate open (from its position contact)
    pub gate_open: BTreeMap<String, bool>,
    /// lane -> vehicle on the loop
    pub present: BTreeMap<String, bool>,
    /// (relay, alert kind) -> count
    pub alerts: BTreeMap<(String, String), u64>,
    /// relay -> openings asked for by exit buttons
    pub button_opens: BTreeMap<String, u64>,
}

impl InputStats {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn gate_open(&self, relay: &str, open: bool) {
        self.with(|i| {
            i.gate_open.insert(relay.to_string(), open);
        });
    }

    pub fn present(&self, lane: &str, present: bool) {
        self.with(|i| {
            i.present.insert(lane.to_string(), present);
        });
    }

    pub fn alert(&self, relay: &str, kind: &str) {
        self.with(|i| *i.alerts.entry((relay.to_string(), kind.to_string())).or_default() += 1);
    }

    pub fn button_open(&self, relay: &str) {
        self.with(|i| *i.button_opens.entry(relay.to_string()).or_default() += 1);
    }

    /// A copy of everything, for one scrape.
    pub fn snapshot(&self) -> Inner {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
