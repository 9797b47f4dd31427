//! The live lane view's feed: the decision path publishes each event here (a short mutex push, never a
//! wait on the panel); the panel reads what is newer than what a browser has seen. The last 100 events
//! and their crops are kept in memory, so a guard sees a crop before the event writer has stored it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::events::GateEvent;

const KEEP: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct LiveEvent {
    pub seq: u64,
    pub id: String,
    pub lane: String,
    pub at: DateTime<Utc>,
    /// `None` for an opted-out resident: the panel shows that someone entered, not who.
    pub plate: Option<String>,
    pub confidence: f32,
    pub action: String,
    pub alert: bool,
    pub reason: String,
    pub kind: Option<String>,
    pub host: Option<String>,
    pub unit: Option<String>,
    pub guard_action: Option<String>,
    #[serde(skip)]
    pub crop: Option<Arc<Vec<u8>>>,
}

impl LiveEvent {
    pub fn from_event(e: &GateEvent) -> Self {
        let opted_out = e.opted_out();
        let m = e.decision.matched.as_ref().filter(|_| !opted_out);
        Self {
            seq: 0,
            id: e.id.to_string(),
            lane: e.lane.to_string(),
            at: e.at,
            plate: (!opted_out && !e.plate.is_empty()).then(|| e.plate.clone()),
            confidence: e.confidence,
            action: format!("{:?}", e.decision.action).to_lowercase(),
            alert: e.decision.alert,
            reason: if opted_out {
                "opted-out resident".into()
            } else {
                e.decision.reason.to_string()
            },
            kind: m.map(|m| m.kind.to_string()),
            host: m.and_then(|m| m.host.clone()),
            unit: m.and_then(|m| m.unit.clone()),
            guard_action: e.guard_action.clone(),
            crop: (!opted_out && !e.crop_jpeg.is_empty()).then(|| Arc::new(e.crop_jpeg.clone())),
        }
    }
}

#[derive(Debug, Default)]
struct Ring {
    next: u64,
    events: VecDeque<LiveEvent>,
}

/// Cheap to clone; one per daemon.
#[derive(Debug, Clone, Default)]
pub struct LiveHub(Arc<Mutex<Ring>>);

impl LiveHub {
    pub fn publish(&self, mut e: LiveEvent) {
        let mut r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        r.next += 1;
        e.seq = r.next;
        if r.events.len() == KEEP {
            r.events.pop_front();
        }
        r.events.push_back(e);
    }

    /// Events newer than `after`, oldest first, at most `limit` (the newest ones).
    pub fn since(&self, after: u64, limit: usize) -> Vec<LiveEvent> {
        let r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let newer: Vec<LiveEvent> = r.events.iter().filter(|e| e.seq > after).cloned().collect();
        let skip = newer.len().saturating_sub(limit);
        newer.into_iter().skip(skip).collect()
    }

    pub fn get(&self, id: &str) -> Option<LiveEvent> {
        let r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        r.events.iter().rev().find(|e| e.id == id).cloned()
    }
}
