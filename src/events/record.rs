//! The event record as the pipeline produces it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::access::Decision;
use crate::recognize::CharRead;

#[derive(Debug, Clone)]
pub struct GateEvent {
    pub id: Uuid,
    pub lane: Arc<str>,
    pub at: DateTime<Utc>,
    pub first_seen: DateTime<Utc>,
    pub plate: String,
    pub confidence: f32,
    pub chars: Vec<CharRead>,
    pub alternatives: Vec<(String, f32)>,
    pub reads: usize,
    pub decision: Decision,
    pub crop_jpeg: Vec<u8>,
    /// What a guard did about it (overrides), if anything.
    pub guard_action: Option<String>,
    /// What happened to the gate command of an opening decision (queued, or why it failed).
    pub gate_result: Option<String>,
}

impl GateEvent {
    /// A new event with a time-ordered UUIDv7 id.
    pub fn new_id(at: DateTime<Utc>) -> Uuid {
        let secs = at.timestamp().max(0) as u64;
        let nanos = at.timestamp_subsec_nanos();
        Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos))
    }

    /// An event about the gate with no vehicle read (an exit button, a gate alert, an opening seen by the
    /// position contact): no plate, no crop.
    pub fn without_plate(
        lane: std::sync::Arc<str>,
        first_seen: DateTime<Utc>,
        at: DateTime<Utc>,
        decision: crate::access::Decision,
        gate_result: String,
    ) -> Self {
        Self {
            id: Self::new_id(at),
            lane,
            at,
            first_seen,
            plate: String::new(),
            confidence: 0.0,
            chars: Vec::new(),
            alternatives: Vec::new(),
            reads: 0,
            decision,
            crop_jpeg: Vec::new(),
            guard_action: None,
            gate_result: Some(gate_result),
        }
    }

    /// Whether this pass is an opted-out entry entering normally. Denials and alerts are always recorded.
    pub fn opted_out(&self) -> bool {
        self.decision.action == crate::access::Action::Open
            && self.decision.matched.as_ref().is_some_and(|m| m.do_not_log)
    }
}
