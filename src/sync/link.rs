//! The MQTT link to the cloud, on its own thread with its own small runtime, so nothing it does (TLS,
//! SQLite, applying a 100,000-entry list) can slow the decision path.
//!
//! One connection at a time. Each connection is a fresh `rumqttc` client and event loop; when it drops,
//! the link waits (exponential back-off with jitter) and starts over, and the outbox sends again whatever
//! was not acknowledged. While connected it:
//! - subscribes to its allowlist topics and verifies, applies and reports every envelope;
//! - publishes owed events at QoS 1 and marks each uploaded on its PUBACK;
//! - keeps a retained online/offline status (the last will says offline) and sends heartbeats.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rumqttc::Outgoing;
use rusqlite::Connection;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::chunk::Assembler;
use super::envelope::{self, MAX_ENVELOPE_BYTES};
use super::keys::TrustedKeys;
use super::mqtt::{self, Client, LinkEvent, Qos as QoS};
use super::pairing::Pairing;
use super::topics::Topics;
use super::SyncError;
use crate::access::{self, SharedAllowlist};
use crate::clock::SharedClock;
use crate::config::{MqttConfig, SyncConfig};
use crate::db::MetaKey;
use crate::events::outbox::{self, OutboxEvent, Uplink, UploadStats, Uploader};
use crate::events::EventError;

/// Health figures for the heartbeat, gathered by the daemon.
pub type HealthFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What the link shares with the rest of the daemon (metrics, status).
#[derive(Debug, Default)]
pub struct LinkStats {
    pub connected: AtomicBool,
    pub connects: AtomicU64,
    pub envelopes_applied: AtomicU64,
    pub envelopes_rejected: AtomicU64,
    /// Publishes the broker refused (MQTT 5 reason code), e.g. by its ACL.
    pub publishes_refused: AtomicU64,
    pub upload: UploadStats,
}

pub struct LinkCtx {
    pub sync: SyncConfig,
    pub mqtt: MqttConfig,
    pub db_path: PathBuf,
    pub allowlist: SharedAllowlist,
    pub clock: SharedClock,
    pub health: HealthFn,
    pub stats: Arc<LinkStats>,
    /// Effective retention of reads, in days (sent with each event as its delete-after time).
    pub keep_reads_days: u32,
    /// Seals opted-out entries the cloud sent in clear, and matches sealed ones.
    pub plate_key: crate::access::PlateKey,
}

/// Starts the link thread; it ends (status offline, acknowledgements committed) when `cancel` fires.
pub fn spawn(ctx: LinkCtx, cancel: CancellationToken) -> Result<std::thread::JoinHandle<()>, SyncError> {
    let tls = super::tls::client_config(&ctx.mqtt.ca, &ctx.mqtt.cert, &ctx.mqtt.key)?;
    let trusted = TrustedKeys::load(&ctx.sync.trusted_keys)?;
    let conn = crate::db::open(&ctx.db_path).map_err(|e| SyncError::Db(e.to_string()))?;
    std::thread::Builder::new()
        .name("cloud-link".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cloud link: no runtime; the link is off");
                    return;
                }
            };
            let mut link = Link::new(ctx, Arc::new(tls), trusted, conn);
            rt.block_on(link.run(cancel));
        })
        .map_err(|e| SyncError::Db(format!("cloud link thread: {e}")))
}

/// What a publish was, so its PUBACK can be traced back (and a refusal named by its topic).
#[derive(Debug, Clone)]
enum Tag {
    Event(String),
    Other(String),
}

/// A publish that is not an event (its topic is filled in when it is published).
fn other() -> Tag {
    Tag::Other(String::new())
}

/// The real [`Uplink`]: QoS 1 publishes on the current connection, PUBACKs traced back to event ids by
/// [`Pairing`] (the protocol state, tested on its own).
struct MqttUplink {
    client: Client,
    events_topic: String,
    connected: bool,
    pairing: Pairing<Tag>,
    acked: Vec<String>,
    /// Topics the broker refused a publish on lately: nothing is published there on this connection.
    held: std::collections::HashSet<String>,
}

impl MqttUplink {
    fn publish(&mut self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>, tag: Tag) -> bool {
        self.publish_expiring(topic, qos, retain, payload, tag, None)
    }

    /// A publish with an MQTT 5 message expiry (ignored with 3.1.1).
    fn publish_expiring(
        &mut self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        tag: Tag,
        expiry: Option<Duration>,
    ) -> bool {
        if self.held.contains(&topic) {
            return false;
        }
        let tag = match tag {
            Tag::Other(t) if t.is_empty() => Tag::Other(topic.clone()),
            t => t,
        };
        let ok = self.client.try_publish(topic, qos, retain, payload, expiry);
        if ok {
            self.pairing.requested(tag);
        }
        ok
    }

    /// Follows the publishes to their acknowledgements; returns the topic and reason of a publish the
    /// broker refused (MQTT 5). A refused event stays owed: it is not marked uploaded.
    fn on_event(&mut self, ev: &LinkEvent) -> Option<(String, String)> {
        match ev {
            LinkEvent::Outgoing(Outgoing::Publish(pkid)) => self.pairing.written(*pkid),
            LinkEvent::Outgoing(Outgoing::AwaitAck(_)) => self.pairing.held_back(),
            LinkEvent::PubAck { pkid, refused } => match (self.pairing.acked(*pkid), refused) {
                (Some(Tag::Event(id)), None) => self.acked.push(id),
                (Some(Tag::Event(_)), Some(why)) => {
                    self.held.insert(self.events_topic.clone());
                    return Some((self.events_topic.clone(), why.clone()));
                }
                (Some(Tag::Other(topic)), Some(why)) => {
                    self.held.insert(topic.clone());
                    return Some((topic, why.clone()));
                }
                _ => {}
            },
            _ => {}
        }
        None
    }
}

impl Uplink for MqttUplink {
    fn offer(&mut self, e: &OutboxEvent) -> Result<bool, EventError> {
        if !self.connected {
            return Ok(false);
        }
        let topic = self.events_topic.clone();
        Ok(self.publish(
            topic,
            QoS::AtLeastOnce,
            false,
            e.payload.clone(),
            Tag::Event(e.id.clone()),
        ))
    }

    fn take_acked(&mut self) -> Vec<String> {
        std::mem::take(&mut self.acked)
    }
}

/// The reported allowlist state (retained on `.../allowlist/state`).
#[derive(Debug, Clone, Serialize)]
struct ReportedState {
    device: String,
    applied_version: u64,
    body_sha256: Option<String>,
    entries: usize,
    /// The last delta did not fit the applied version (or nothing is applied yet): send a snapshot.
    need_snapshot: bool,
    last_rejection: Option<Rejection>,
    at: String,
}

#[derive(Debug, Clone, Serialize)]
struct Rejection {
    at: String,
    reason: String,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

struct Link {
    ctx: LinkCtx,
    tls: Arc<rustls::ClientConfig>,
    trusted: TrustedKeys,
    conn: Connection,
    topics: Topics,
    uploader: Uploader,
    assembler: Assembler,
    need_snapshot: bool,
    last_rejection: Option<Rejection>,
    started: std::time::Instant,
    /// The newest audit checkpoint sent this session (0: none yet; resent after each connect).
    audit_published: i64,
    /// The device's audit public key (base64), read once when the first checkpoint goes out.
    audit_public_key: Option<String>,
    /// Topics and reasons of refused publishes already logged.
    refusals: std::collections::HashSet<(String, String)>,
    /// Topics refused lately, and until when nothing is published there (see [`REFUSAL_HOLD`]).
    held: std::collections::HashMap<String, std::time::Instant>,
}

/// How long the link publishes nothing on a topic the broker refused. Some brokers also close the
/// connection after a refusal (Mosquitto 2.0.11 over TLS does): without the hold the device would
/// reconnect and be refused again in a loop. Events stay owed and go once the hold ends (or the daemon
/// restarts after the broker's ACL is fixed).
const REFUSAL_HOLD: Duration = Duration::from_secs(600);

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Link {
    fn new(ctx: LinkCtx, tls: Arc<rustls::ClientConfig>, trusted: TrustedKeys, conn: Connection) -> Self {
        let topics = Topics::new(&ctx.mqtt.topic_prefix, &ctx.sync.mqtt_id());
        let uploader = Uploader::new(&ctx.sync.device, ctx.mqtt.window as usize, ctx.keep_reads_days);
        Self {
            topics,
            uploader,
            assembler: Assembler::new(MAX_ENVELOPE_BYTES),
            need_snapshot: false,
            last_rejection: None,
            started: std::time::Instant::now(),
            audit_published: 0,
            audit_public_key: None,
            refusals: Default::default(),
            held: Default::default(),
            ctx,
            tls,
            trusted,
            conn,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.ctx.clock.now()
    }

    fn options(&self) -> mqtt::Options {
        let m = &self.ctx.mqtt;
        let will = serde_json::json!({ "state": "offline", "reason": "connection lost" });
        mqtt::Options {
            protocol: m.protocol,
            client_id: self.ctx.sync.mqtt_id(),
            host: m.host.clone(),
            port: m.port,
            tls: self.tls.clone(),
            keep_alive: m.keep_alive,
            max_packet_bytes: m.max_packet_bytes,
            inflight: m.window.saturating_add(16),
            request_capacity: m.window as usize + 64,
            will_topic: self.topics.status(),
            will_payload: will.to_string().into_bytes(),
            session_expiry: m.session_expiry,
        }
    }

    async fn run(&mut self, cancel: CancellationToken) {
        let mut failures = 0u32;
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let (client, eventloop) = mqtt::connect(&self.options());
            let mut up = MqttUplink {
                client,
                events_topic: self.topics.events(),
                connected: false,
                pairing: Pairing::default(),
                acked: Vec::new(),
                held: self.held_topics(),
            };
            let end = self.session(&mut up, eventloop, &cancel, &mut failures).await;
            self.ctx.stats.connected.store(false, Ordering::Relaxed);
            self.uploader.reset();
            self.record_link_state("offline");
            match end {
                SessionEnd::Shutdown => break,
                SessionEnd::Lost(why) => {
                    failures = failures.saturating_add(1);
                    let wait = backoff(failures);
                    tracing::warn!(error = %why, retry_in = ?wait, "cloud link down; gate keeps deciding locally");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        tracing::info!("cloud link stopped");
    }

    async fn session(
        &mut self,
        up: &mut MqttUplink,
        el: mqtt::Connection,
        cancel: &CancellationToken,
        failures: &mut u32,
    ) -> SessionEnd {
        // rumqttc's poll() is not cancel-safe (a dropped poll during the TLS/CONNECT handshake starts the
        // connection over), so the event loop runs in its own task and hands its events over a channel.
        let (tx, mut events) = tokio::sync::mpsc::channel(1024);
        let driver = tokio::spawn(drive(el, tx));
        let end = self.session_loop(up, &mut events, cancel, failures).await;
        driver.abort();
        end
    }

    async fn session_loop(
        &mut self,
        up: &mut MqttUplink,
        events: &mut tokio::sync::mpsc::Receiver<Result<LinkEvent, String>>,
        cancel: &CancellationToken,
        failures: &mut u32,
    ) -> SessionEnd {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_heartbeat = tokio::time::Instant::now() + self.ctx.mqtt.heartbeat;
        let mut next_checkpoint = tokio::time::Instant::now();
        self.audit_published = 0;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.goodbye(up, events).await;
                    return SessionEnd::Shutdown;
                }
                ev = events.recv() => {
                    let ev = match ev {
                        Some(Ok(ev)) => ev,
                        Some(Err(e)) => {
                            self.flush(up);
                            return SessionEnd::Lost(e);
                        }
                        None => {
                            self.flush(up);
                            return SessionEnd::Lost("event loop ended".into());
                        }
                    };
                    if let Err(why) = self.handle(up, ev, failures) {
                        return SessionEnd::Lost(why);
                    }
                    self.pump(up, false);
                }
                _ = tick.tick() => {
                    // A hold ends on its own time, on a broker that keeps the connection after a refusal too.
                    if !up.held.is_empty() {
                        up.held = self.held_topics();
                    }
                    self.pump(up, true);
                    if up.connected && tokio::time::Instant::now() >= next_checkpoint {
                        next_checkpoint = tokio::time::Instant::now() + Duration::from_secs(2);
                        self.publish_checkpoint(up);
                    }
                    if up.connected && tokio::time::Instant::now() >= next_heartbeat {
                        next_heartbeat = tokio::time::Instant::now() + self.ctx.mqtt.heartbeat;
                        let hb = self.heartbeat();
                        // Expires after two periods: a heartbeat nobody read in time says nothing. With
                        // MQTT 5 it goes at QoS 1, so a broker's refusal is seen (and the topic held back)
                        // instead of silently dropping, or with some brokers closing, the connection.
                        let expiry = Some(self.ctx.mqtt.heartbeat * 2);
                        let qos = match self.ctx.mqtt.protocol {
                            crate::config::MqttProtocol::V5 => QoS::AtLeastOnce,
                            crate::config::MqttProtocol::V311 => QoS::AtMostOnce,
                        };
                        up.publish_expiring(self.topics.heartbeat(), qos, false, hb.into_bytes(), other(), expiry);
                    }
                }
            }
        }
    }

    /// One event from the broker connection.
    fn handle(&mut self, up: &mut MqttUplink, ev: LinkEvent, failures: &mut u32) -> Result<(), String> {
        if let Some((topic, why)) = up.on_event(&ev) {
            self.refused(&topic, &why);
        }
        match ev {
            LinkEvent::ConnAck { session_present } => {
                *failures = 0;
                up.connected = true;
                self.ctx.stats.connected.store(true, Ordering::Relaxed);
                self.ctx.stats.connects.fetch_add(1, Ordering::Relaxed);
                self.record_link_state("online");
                tracing::info!(
                    broker = %format!("{}:{}", self.ctx.mqtt.host, self.ctx.mqtt.port),
                    protocol = ?self.ctx.mqtt.protocol,
                    session_present,
                    "cloud link up"
                );
                let subs = self.topics.subscriptions();
                if !up.client.try_subscribe_many(&subs) {
                    return Err("could not queue the subscription".into());
                }
                let online = serde_json::json!({
                    "state": "online",
                    "at": rfc3339(self.now()),
                    "software": crate::VERSION,
                });
                up.publish(
                    self.topics.status(),
                    QoS::AtLeastOnce,
                    true,
                    online.to_string().into_bytes(),
                    other(),
                );
                self.publish_state(up);
            }
            LinkEvent::SubAck { refused } => {
                for (topic, why) in self.topics.subscriptions().into_iter().zip(refused) {
                    if let Some(why) = why {
                        tracing::error!(
                            topic,
                            reason = why,
                            "the broker refused a subscription (check its ACL for this device); \
                             what the cloud sends there will not arrive"
                        );
                    }
                }
            }
            LinkEvent::Message { topic, payload } => self.on_message(up, &topic, &payload),
            LinkEvent::BrokerDisconnect(why) => return Err(format!("the broker ended the session: {why}")),
            _ => {}
        }
        Ok(())
    }

    /// The topics still on hold after a refusal (expired holds are dropped).
    fn held_topics(&mut self) -> std::collections::HashSet<String> {
        let now = std::time::Instant::now();
        self.held.retain(|_, until| *until > now);
        self.held.keys().cloned().collect()
    }

    /// A publish the broker refused (MQTT 5 reason code): logged once per topic and reason while the
    /// daemon runs, never retried in a loop (a refused event stays owed and goes again on the next
    /// connection, when the broker's ACL may have been fixed).
    fn refused(&mut self, topic: &str, why: &str) {
        self.ctx.stats.publishes_refused.fetch_add(1, Ordering::Relaxed);
        self.held
            .insert(topic.to_string(), std::time::Instant::now() + REFUSAL_HOLD);
        if self.refusals.insert((topic.to_string(), why.to_string())) {
            tracing::error!(
                topic,
                reason = why,
                hold_s = REFUSAL_HOLD.as_secs(),
                "the broker refused a publish (check its ACL for this device); logged once per topic, \
                 nothing is published there for a while"
            );
        }
    }

    /// Commits acknowledgements and tops up the window.
    fn pump(&mut self, up: &mut MqttUplink, flush: bool) {
        let now = self.now();
        if let Err(e) = self
            .uploader
            .pump(&mut self.conn, up, &self.ctx.stats.upload, now, flush)
        {
            tracing::error!(error = %e, "outbox: could not read or mark events; will retry");
        }
    }

    /// Commits what was acknowledged, offering nothing new.
    fn flush(&mut self, up: &mut MqttUplink) {
        up.connected = false;
        self.pump(up, true);
    }

    /// Clean shutdown: status offline (retained), wait briefly for outstanding acknowledgements,
    /// disconnect, commit acknowledgements.
    async fn goodbye(
        &mut self,
        up: &mut MqttUplink,
        events: &mut tokio::sync::mpsc::Receiver<Result<LinkEvent, String>>,
    ) {
        if up.connected {
            let off = serde_json::json!({ "state": "offline", "reason": "shutdown", "at": rfc3339(self.now()) });
            up.publish(
                self.topics.status(),
                QoS::AtLeastOnce,
                true,
                off.to_string().into_bytes(),
                other(),
            );
            up.connected = false;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            let mut failures = 0;
            while !up.pairing.is_settled() {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    // Allowlist messages still arriving are applied (the broker already has our PUBACK).
                    Ok(Some(Ok(ev))) => {
                        let _ = self.handle(up, ev, &mut failures);
                        up.connected = false;
                    }
                    _ => break,
                }
            }
            up.client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Some(Ok(ev)) = events.recv().await {
                    if matches!(ev, LinkEvent::Outgoing(Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
        self.flush(up);
    }

    fn on_message(&mut self, up: &mut MqttUplink, topic: &str, payload: &[u8]) {
        let envelope = if topic == self.topics.allowlist() {
            Some(payload.to_vec())
        } else if topic == self.topics.allowlist_chunks() {
            match self.assembler.push(payload) {
                Ok(e) => e,
                Err(e) => {
                    self.reject(up, &e);
                    None
                }
            }
        } else if topic == self.topics.command() {
            self.on_command(up, payload);
            None
        } else {
            tracing::warn!(topic, bytes = payload.len(), "message on an unexpected topic ignored");
            None
        };
        if let Some(env) = envelope {
            self.apply_envelope(up, &env);
        }
    }

    fn apply_envelope(&mut self, up: &mut MqttUplink, payload: &[u8]) {
        let started = std::time::Instant::now();
        let applied = match access::store::version(&self.conn) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "allowlist: cannot read the applied version; envelope not applied");
                return;
            }
        };
        let now = self.now();
        let result = envelope::verify(
            payload,
            &self.trusted,
            &self.ctx.sync.device,
            applied,
            now,
            MAX_ENVELOPE_BYTES,
        )
        .and_then(|v| super::apply::apply(&mut self.conn, &v, now, &self.ctx.plate_key).map(|n| (v, n)));
        match result {
            Ok((v, entries)) => {
                match access::load_snapshot(&self.conn, &self.ctx.plate_key) {
                    Ok(list) => self.ctx.allowlist.replace(list),
                    Err(e) => tracing::error!(error = %e, "allowlist applied but not loaded; the reloader will retry"),
                }
                self.need_snapshot = false;
                self.ctx.stats.envelopes_applied.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    kind = ?v.kind, version = v.version, entries, ms = started.elapsed().as_millis() as u64,
                    "allowlist envelope applied"
                );
                self.publish_state(up);
            }
            Err(SyncError::NotNewer { got, applied }) if got == applied => {
                // The same envelope again (a redelivery): nothing to do, nothing suspicious.
                tracing::debug!(version = got, "allowlist envelope already applied");
            }
            Err(e) => self.reject(up, &e),
        }
    }

    /// A signed cloud command (DSAR): verified, run once, answered on `command/result`; an export's
    /// bundle goes up in chunks on `dsar/export`.
    fn on_command(&mut self, up: &mut MqttUplink, payload: &[u8]) {
        let now = self.now();
        let data_dir = self.ctx.db_path.parent().map(PathBuf::from).unwrap_or_default();
        let outcome = super::command::verify(payload, &self.trusted, &self.ctx.sync.device, now).and_then(|c| {
            super::command::execute(&mut self.conn, &c, &self.ctx.plate_key, &data_dir, now).map(|o| (c, o))
        });
        let mut report = match outcome {
            Ok((c, o)) => {
                tracing::info!(id = %c.id, action = c.action.as_str(), result = %o.result, "cloud command ran");
                if let Some(bundle) = o.export {
                    let room = self.ctx.mqtt.max_packet_bytes.saturating_sub(4096).max(4096);
                    for part in super::chunk::split(&bundle, room) {
                        if !up.publish(self.topics.dsar_export(), QoS::AtLeastOnce, false, part, other()) {
                            tracing::error!(id = %c.id, "DSAR export could not be queued whole; the cloud should ask again");
                            break;
                        }
                    }
                }
                serde_json::json!({"format": 1, "id": c.id, "action": c.action, "ok": true, "result": o.result})
            }
            Err(e) => {
                // Refused before anything ran, or (rarely) failed part-way: the id is then not recorded and a
                // redelivery runs it again (both actions are safe to repeat).
                tracing::warn!(error = %e, "cloud command rejected or failed");
                // The (unverified) id is echoed, shortened and printable, so the cloud can match the answer.
                let id = serde_json::from_slice::<serde_json::Value>(payload).ok().and_then(|v| {
                    v["id"]
                        .as_str()
                        .map(|s| s.chars().filter(|c| !c.is_control()).take(64).collect::<String>())
                });
                serde_json::json!({"format": 1, "id": id, "ok": false, "error": e.to_string()})
            }
        };
        report["at"] = serde_json::json!(rfc3339(now));
        up.publish(
            self.topics.command_result(),
            QoS::AtLeastOnce,
            false,
            report.to_string().into_bytes(),
            other(),
        );
        self.publish_checkpoint(up);
    }

    fn reject(&mut self, up: &mut MqttUplink, e: &SyncError) {
        self.ctx.stats.envelopes_rejected.fetch_add(1, Ordering::Relaxed);
        if matches!(e, SyncError::BaseMismatch { .. }) {
            self.need_snapshot = true;
        }
        tracing::warn!(error = %e, "allowlist envelope rejected; the applied list is unchanged");
        let r = Rejection {
            at: rfc3339(self.now()),
            reason: e.to_string(),
        };
        if let Ok(text) = serde_json::to_string(&r) {
            let _ = crate::db::meta_set(&self.conn, MetaKey::SyncLastRejection, &text);
        }
        self.last_rejection = Some(r);
        self.publish_state(up);
    }

    fn state(&self) -> ReportedState {
        let applied_version = access::store::version(&self.conn).unwrap_or(0);
        let body_sha256 = crate::db::meta_get(&self.conn, MetaKey::AllowlistSha256).ok().flatten();
        ReportedState {
            device: self.ctx.sync.device.clone(),
            applied_version,
            body_sha256,
            entries: self.ctx.allowlist.current().len(),
            need_snapshot: self.need_snapshot || applied_version == 0,
            last_rejection: self.last_rejection.clone(),
            at: rfc3339(self.now()),
        }
    }

    fn publish_state(&mut self, up: &mut MqttUplink) {
        if let Ok(s) = serde_json::to_vec(&self.state()) {
            up.publish(self.topics.state(), QoS::AtLeastOnce, true, s, other());
        }
    }

    /// Sends the newest signed audit checkpoint (retained) when there is a newer one than last sent, so
    /// the cloud holds a signed head the device cannot later roll back below.
    fn publish_checkpoint(&mut self, up: &mut MqttUplink) {
        let row = self.conn.query_row(
            "SELECT seq, head_hash, at, key_id, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        );
        let Ok((seq, head, at, key_id, signature)) = row else {
            return;
        };
        if seq <= self.audit_published {
            return;
        }
        if self.audit_public_key.is_none() {
            self.audit_public_key = self
                .ctx
                .db_path
                .parent()
                .and_then(|d| crate::audit::device_key(&d.join("audit-device.key")).ok())
                .map(|k| {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.encode(k.verifying_key().to_bytes())
                });
        }
        let msg = serde_json::json!({
            "format": 1,
            "seq": seq,
            "head_hash": head,
            "at": DateTime::from_timestamp_millis(at).map(rfc3339),
            "key_id": key_id,
            "signature": signature,
            "public_key": self.audit_public_key,
        });
        up.publish(
            self.topics.audit_checkpoint(),
            QoS::AtLeastOnce,
            true,
            msg.to_string().into_bytes(),
            other(),
        );
        self.audit_published = seq;
    }

    fn heartbeat(&self) -> String {
        let backlog = outbox::backlog(&self.conn).unwrap_or_default();
        let st = &self.ctx.stats;
        let fresh = super::freshness::freshness(
            &self.ctx.allowlist.current(),
            self.now(),
            self.ctx.sync.allowlist_max_age,
        );
        serde_json::json!({
            "allowlist_issued": fresh.issued,
            "allowlist_age_s": fresh.age_s,
            "allowlist_stale": fresh.stale,
            "at": rfc3339(self.now()),
            "uptime_s": self.started.elapsed().as_secs(),
            "software": crate::VERSION,
            "allowlist_version": self.ctx.allowlist.current().version,
            "allowlist_entries": self.ctx.allowlist.current().len(),
            "outbox_pending": backlog.pending,
            "outbox_oldest": backlog.oldest.map(rfc3339),
            "events_uploaded": st.upload.uploaded.load(Ordering::Relaxed),
            "link_connects": st.connects.load(Ordering::Relaxed),
            "envelopes_applied": st.envelopes_applied.load(Ordering::Relaxed),
            "envelopes_rejected": st.envelopes_rejected.load(Ordering::Relaxed),
            "publishes_refused": st.publishes_refused.load(Ordering::Relaxed),
            "held_topics": self.held.keys().collect::<Vec<_>>(),
            "daemon": (self.ctx.health)(),
        })
        .to_string()
    }

    /// For `gatehouse sync status`.
    fn record_link_state(&self, state: &str) {
        let v = serde_json::json!({ "state": state, "since": rfc3339(self.now()) }).to_string();
        if let Err(e) = crate::db::meta_set(&self.conn, MetaKey::SyncLink, &v) {
            tracing::debug!(error = %e, "could not record the link state");
        }
    }
}

/// Polls the event loop until it fails or the session is dropped, forwarding what it yields.
async fn drive(mut el: mqtt::Connection, tx: tokio::sync::mpsc::Sender<Result<LinkEvent, String>>) {
    loop {
        let ev = el.poll().await.map_err(|e| e.to_string());
        let failed = ev.is_err();
        if tx.send(ev).await.is_err() || failed {
            return;
        }
    }
}

/// Exponential back-off, 1 s doubling to 60 s, with jitter (half to all of it) so a site's devices do
/// not reconnect in step after a broker restart.
fn backoff(failures: u32) -> Duration {
    let full = Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60));
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u16::from_le_bytes(b) as f64 / u16::MAX as f64
    } else {
        0.5
    };
    full.mul_f64(0.5 + 0.5 * r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_minute_with_jitter() {
        assert!(backoff(1) <= Duration::from_secs(1) && backoff(1) >= Duration::from_millis(500));
        assert!(backoff(3) >= Duration::from_secs(2));
        for _ in 0..20 {
            assert!(backoff(30) <= Duration::from_secs(60) && backoff(30) >= Duration::from_secs(30));
        }
    }
}
