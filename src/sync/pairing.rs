//! Which publish a PUBACK answers: protocol state apart from I/O (as rumqtt keeps its `MqttState`).
//!
//! `rumqttc` assigns packet ids as it writes publishes, in request order, and reports each as
//! `Outgoing::Publish(pkid)`; we pair it with the oldest request not yet written. When the next id is
//! still taken (the broker acknowledges out of order) it reports `Outgoing::AwaitAck` instead, holds that
//! publish, and reports `Outgoing::Publish` again once the id is free: the held request is then the one
//! written. [`Pairing`] is that bookkeeping alone (packets in, acknowledged tags out), so it is tested here
//! without a broker; `link.rs` feeds it the event loop's events.

use std::collections::{HashMap, VecDeque};

/// Requests in flight and their packet ids, for one connection.
#[derive(Debug)]
pub struct Pairing<T> {
    /// Requested, not yet written, oldest first.
    queued: VecDeque<T>,
    /// Taken off the queue when its packet id was still in use; written next.
    held: Option<T>,
    /// Written, waiting for the broker's PUBACK.
    in_flight: HashMap<u16, T>,
}

impl<T> Default for Pairing<T> {
    fn default() -> Self {
        Self {
            queued: VecDeque::new(),
            held: None,
            in_flight: HashMap::new(),
        }
    }
}

impl<T> Pairing<T> {
    /// A publish was handed to the client.
    pub fn requested(&mut self, tag: T) {
        self.queued.push_back(tag);
    }

    /// The client wrote a publish with packet id `pkid` (`Outgoing::Publish`). Id 0 is a QoS 0 publish:
    /// nothing will acknowledge it, so it is only taken off the queue.
    pub fn written(&mut self, pkid: u16) {
        let tag = self.held.take().or_else(|| self.queued.pop_front());
        if let (Some(tag), true) = (tag, pkid != 0) {
            self.in_flight.insert(pkid, tag);
        }
    }

    /// The next packet id is still in use (`Outgoing::AwaitAck`): the oldest request waits for it.
    pub fn held_back(&mut self) {
        if self.held.is_none() {
            self.held = self.queued.pop_front();
        }
    }

    /// The broker acknowledged `pkid` (`Incoming::PubAck`): the request it answers, once; `None` for an
    /// id not in flight (a duplicate or a stray acknowledgement).
    pub fn acked(&mut self, pkid: u16) -> Option<T> {
        self.in_flight.remove(&pkid)
    }

    /// Nothing requested is left unanswered.
    pub fn is_settled(&self) -> bool {
        self.queued.is_empty() && self.held.is_none() && self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_in_order_answer_the_requests_in_order() {
        let mut p = Pairing::default();
        for t in ["a", "b", "c"] {
            p.requested(t);
        }
        p.written(1);
        p.written(2);
        p.written(3);
        assert_eq!(p.acked(1), Some("a"));
        assert_eq!(p.acked(2), Some("b"));
        assert!(!p.is_settled());
        assert_eq!(p.acked(3), Some("c"));
        assert!(p.is_settled());
    }

    #[test]
    fn out_of_order_acknowledgements_still_find_their_request() {
        let mut p = Pairing::default();
        for t in ["a", "b", "c"] {
            p.requested(t);
        }
        p.written(7);
        p.written(8);
        p.written(9);
        assert_eq!(p.acked(9), Some("c"));
        assert_eq!(p.acked(7), Some("a"));
        assert_eq!(p.acked(8), Some("b"));
    }

    #[test]
    fn a_request_held_for_a_busy_id_is_the_one_written_next() {
        let mut p = Pairing::default();
        p.requested("a");
        p.requested("b");
        p.requested("c");
        p.written(1); // a
        p.held_back(); // b waits: id 2 still taken
        p.held_back(); // reported again while it waits: still b, c stays queued
        assert_eq!(p.acked(1), Some("a"));
        p.written(2); // b, now written
        p.written(3); // c
        assert_eq!(p.acked(3), Some("c"));
        assert_eq!(p.acked(2), Some("b"));
        assert!(p.is_settled());
    }

    #[test]
    fn duplicate_stray_and_qos0_packets_change_nothing_they_should_not() {
        let mut p = Pairing::default();
        p.requested("status");
        p.written(0); // QoS 0: nothing to wait for
        assert!(p.is_settled());
        p.requested("a");
        p.written(5);
        assert_eq!(p.acked(6), None, "a stray acknowledgement");
        assert_eq!(p.acked(5), Some("a"));
        assert_eq!(p.acked(5), None, "a duplicate acknowledgement");
        // the broker reuses id 5 for the next publish
        p.requested("b");
        p.written(5);
        assert_eq!(p.acked(5), Some("b"));
        // a publish written with nothing requested (not ours) is ignored
        p.written(9);
        assert!(p.is_settled());
    }
}
