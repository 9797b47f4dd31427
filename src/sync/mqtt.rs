//! The broker connection in either MQTT version behind one small face, so the link's logic is written
//! once. MQTT 5 (the default) gives the link what 3.1.1 cannot:
//! - the device's **maximum packet size** goes out in CONNECT, so the broker never sends a message the
//!   device would have to drop the connection for (with 3.1.1 such a message is redelivered on every
//!   reconnect of a persistent session, for ever);
//! - **reason codes** on PUBACK and SUBACK: a publish or subscription the broker's ACL refuses is named,
//!   instead of being dropped silently (or, with some brokers, answered in a form a 3.1.1 client cannot
//!   parse, which drops the connection);
//! - **message expiry** (heartbeats are not kept for a cloud consumer that is away) and a **session
//!   expiry** (how long the broker holds the device's session while it is offline).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::{Outgoing, TlsConfiguration, Transport};

use crate::config::MqttProtocol;

/// What a connection is made with.
pub struct Options {
    pub protocol: MqttProtocol,
    pub client_id: String,
    pub host: String,
    pub port: u16,
    pub tls: Arc<rustls::ClientConfig>,
    pub keep_alive: Duration,
    pub max_packet_bytes: usize,
    /// Publishes in flight, at most.
    pub inflight: u16,
    pub request_capacity: usize,
    pub will_topic: String,
    pub will_payload: Vec<u8>,
    pub session_expiry: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

/// What the link learns from the connection, in either version.
#[derive(Debug)]
pub enum LinkEvent {
    ConnAck {
        session_present: bool,
    },
    /// The answer to a subscription: for each filter, in order, `None` when granted or why not.
    SubAck {
        refused: Vec<Option<String>>,
    },
    Message {
        topic: String,
        payload: Vec<u8>,
    },
    /// The broker took (`refused: None`) or refused a QoS 1 publish.
    PubAck {
        pkid: u16,
        refused: Option<String>,
    },
    Outgoing(Outgoing),
    /// MQTT 5: the broker ended the session, with its reason.
    BrokerDisconnect(String),
    Other,
}

pub enum Client {
    V311(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

pub struct Connection {
    inner: Inner,
    /// Events the client had read when the connection failed, still to hand out before the error.
    leftover: std::collections::VecDeque<LinkEvent>,
    failed: Option<String>,
}

enum Inner {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

impl Connection {
    fn new(inner: Inner) -> Self {
        Self {
            inner,
            leftover: Default::default(),
            failed: None,
        }
    }
}

/// A client and its connection (nothing happens until the connection is polled).
pub fn connect(o: &Options) -> (Client, Connection) {
    let transport = Transport::tls_with_config(TlsConfiguration::Rustls(o.tls.clone()));
    let max = o.max_packet_bytes;
    match o.protocol {
        MqttProtocol::V311 => {
            let mut m = rumqttc::MqttOptions::new(o.client_id.clone(), o.host.clone(), o.port);
            m.set_transport(transport);
            m.set_keep_alive(o.keep_alive);
            // A persistent session: allowlist messages sent while the gate was offline wait at the broker.
            m.set_clean_session(false);
            m.set_max_packet_size(max, max);
            m.set_inflight(o.inflight);
            m.set_request_channel_capacity(o.request_capacity);
            m.set_last_will(rumqttc::LastWill::new(
                o.will_topic.clone(),
                o.will_payload.clone(),
                rumqttc::QoS::AtLeastOnce,
                true,
            ));
            let (c, l) = rumqttc::AsyncClient::new(m, o.request_capacity);
            (Client::V311(c), Connection::new(Inner::V311(Box::new(l))))
        }
        MqttProtocol::V5 => {
            let mut m = v5::MqttOptions::new(o.client_id.clone(), o.host.clone(), o.port);
            m.set_transport(transport);
            m.set_keep_alive(o.keep_alive);
            // A persistent session that outlives the connection by `session_expiry` (MQTT 5 ends a
            // session at disconnect unless told otherwise).
            m.set_clean_start(false);
            m.set_session_expiry_interval(Some(o.session_expiry.as_secs().min(u64::from(u32::MAX)) as u32));
            // Announced to the broker, which then never sends a larger message (and enforced on reads).
            m.set_max_packet_size(Some(u32::try_from(max).unwrap_or(u32::MAX)));
            m.set_outgoing_inflight_upper_limit(o.inflight);
            m.set_request_channel_capacity(o.request_capacity);
            m.set_last_will(p5::LastWill::new(
                o.will_topic.clone(),
                o.will_payload.clone(),
                v5::mqttbytes::QoS::AtLeastOnce,
                true,
                None,
            ));
            let (c, l) = v5::AsyncClient::new(m, o.request_capacity);
            (Client::V5(c), Connection::new(Inner::V5(Box::new(l))))
        }
    }
}

impl Client {
    /// Queues a publish without waiting; false when the request queue is full or closed. `expiry`: MQTT 5
    /// message expiry (ignored with 3.1.1).
    pub fn try_publish(
        &self,
        topic: String,
        qos: Qos,
        retain: bool,
        payload: Vec<u8>,
        expiry: Option<Duration>,
    ) -> bool {
        match self {
            Client::V311(c) => {
                let q = match qos {
                    Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
                    Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
                };
                c.try_publish(topic, q, retain, payload).is_ok()
            }
            Client::V5(c) => {
                let q = match qos {
                    Qos::AtMostOnce => v5::mqttbytes::QoS::AtMostOnce,
                    Qos::AtLeastOnce => v5::mqttbytes::QoS::AtLeastOnce,
                };
                match expiry {
                    Some(e) => {
                        let props = p5::PublishProperties {
                            message_expiry_interval: Some(e.as_secs().clamp(1, u64::from(u32::MAX)) as u32),
                            ..Default::default()
                        };
                        c.try_publish_with_properties(topic, q, retain, payload, props).is_ok()
                    }
                    None => c.try_publish(topic, q, retain, payload).is_ok(),
                }
            }
        }
    }

    /// Subscribes to each filter at QoS 1; false when the request could not be queued.
    pub fn try_subscribe_many(&self, filters: &[String]) -> bool {
        match self {
            Client::V311(c) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), rumqttc::QoS::AtLeastOnce)),
                )
                .is_ok(),
            Client::V5(c) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| p5::Filter::new(f.clone(), v5::mqttbytes::QoS::AtLeastOnce)),
                )
                .is_ok(),
        }
    }

    pub fn try_disconnect(&self) {
        let _ = match self {
            Client::V311(c) => c.try_disconnect().is_ok(),
            Client::V5(c) => c.try_disconnect().is_ok(),
        };
    }
}

impl Connection {
    /// The next event; an error ends the connection (not cancel-safe: run it in a task of its own). What
    /// the client read in the same batch as the failure (a PUBACK refusing a publish, say, when the broker
    /// then closes the connection) is handed out before the error, not lost with it.
    pub async fn poll(&mut self) -> Result<LinkEvent, String> {
        if let Some(ev) = self.leftover.pop_front() {
            return Ok(ev);
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let res = match &mut self.inner {
            Inner::V311(l) => l.poll().await.map(from_v311).map_err(|e| {
                self.leftover.extend(l.state.events.drain(..).map(from_v311));
                e.to_string()
            }),
            Inner::V5(l) => l.poll().await.map(from_v5).map_err(|e| {
                self.leftover.extend(l.state.events.drain(..).map(from_v5));
                e.to_string()
            }),
        };
        match res {
            Err(e) if !self.leftover.is_empty() => {
                self.failed = Some(e);
                Ok(self.leftover.pop_front().unwrap_or(LinkEvent::Other))
            }
            other => other,
        }
    }
}

fn from_v311(ev: rumqttc::Event) -> LinkEvent {
    use rumqttc::{Event, Packet};
    match ev {
        Event::Incoming(Packet::ConnAck(a)) => LinkEvent::ConnAck {
            session_present: a.session_present,
        },
        Event::Incoming(Packet::SubAck(a)) => LinkEvent::SubAck {
            refused: a
                .return_codes
                .iter()
                .map(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure).then(|| "refused".to_string()))
                .collect(),
        },
        Event::Incoming(Packet::Publish(p)) => LinkEvent::Message {
            topic: p.topic,
            payload: p.payload.to_vec(),
        },
        // 3.1.1 has no way to say no: a PUBACK is an acceptance.
        Event::Incoming(Packet::PubAck(a)) => LinkEvent::PubAck {
            pkid: a.pkid,
            refused: None,
        },
        Event::Outgoing(o) => LinkEvent::Outgoing(o),
        _ => LinkEvent::Other,
    }
}

fn from_v5(ev: v5::Event) -> LinkEvent {
    use p5::Packet;
    match ev {
        v5::Event::Incoming(Packet::ConnAck(a)) => LinkEvent::ConnAck {
            session_present: a.session_present,
        },
        v5::Event::Incoming(Packet::SubAck(a)) => LinkEvent::SubAck {
            refused: a
                .return_codes
                .iter()
                .map(|c| match c {
                    p5::SubscribeReasonCode::Success(_) => None,
                    other => Some(format!("{other:?}")),
                })
                .collect(),
        },
        v5::Event::Incoming(Packet::Publish(p)) => LinkEvent::Message {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload.to_vec(),
        },
        v5::Event::Incoming(Packet::PubAck(a)) => LinkEvent::PubAck {
            pkid: a.pkid,
            refused: puback_refusal(a.reason),
        },
        v5::Event::Incoming(Packet::Disconnect(d)) => LinkEvent::BrokerDisconnect(format!("{:?}", d.reason_code)),
        v5::Event::Outgoing(o) => LinkEvent::Outgoing(o),
        _ => LinkEvent::Other,
    }
}

/// A PUBACK's reason code as a refusal (`None`: the broker took the message; "no matching subscribers"
/// is still taken: nobody listens right now).
fn puback_refusal(r: p5::PubAckReason) -> Option<String> {
    match r {
        p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers => None,
        other => Some(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_puback_refuses_only_with_a_failure_code() {
        assert_eq!(puback_refusal(p5::PubAckReason::Success), None);
        assert_eq!(puback_refusal(p5::PubAckReason::NoMatchingSubscribers), None);
        assert_eq!(
            puback_refusal(p5::PubAckReason::NotAuthorized).as_deref(),
            Some("NotAuthorized")
        );
        assert_eq!(
            puback_refusal(p5::PubAckReason::QuotaExceeded).as_deref(),
            Some("QuotaExceeded")
        );
    }

    #[test]
    fn suback_failures_are_named_per_filter() {
        let ev = v5::Event::Incoming(p5::Packet::SubAck(p5::SubAck {
            pkid: 1,
            return_codes: vec![
                p5::SubscribeReasonCode::Success(v5::mqttbytes::QoS::AtLeastOnce),
                p5::SubscribeReasonCode::NotAuthorized,
            ],
            properties: None,
        }));
        match from_v5(ev) {
            LinkEvent::SubAck { refused } => assert_eq!(refused, vec![None, Some("NotAuthorized".to_string())]),
            other => panic!("{other:?}"),
        }
    }
}
