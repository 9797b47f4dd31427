//! Outbox drain benchmark (`cargo bench --bench drain`): a backlog of events in a real SQLite outbox,
//! uploaded by the daemon's cloud link to a local Mosquitto over mTLS (TLS 1.3), each event marked
//! uploaded only after its PUBACK. Baseline in the same process: the same payloads published at QoS 1
//! by a bare MQTT client with no outbox (no SQLite reads, no marking). Goal: >= 5,000 events/s.
//! Needs mosquitto and openssl (scripts/setup.sh installs them); says so and stops when they are absent.

#[allow(dead_code)]
#[path = "../tests/support/broker.rs"]
mod broker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse::access::{Allowlist, SharedAllowlist};
use gatehouse::config::{MqttConfig, SyncConfig};
use gatehouse::events::outbox;
use gatehouse::sync::link::{self, LinkCtx, LinkStats};
use rusqlite::params;
use tokio_util::sync::CancellationToken;

const N: usize = 20_000;

fn main() {
    if !std::path::Path::new("/usr/sbin/mosquitto").exists() {
        println!("drain benchmark skipped: mosquitto is not installed (run scripts/setup.sh)");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let broker = broker::Broker::start(&dir.path().join("broker"));
    broker::client_cert(&broker.dir, "device", "site.dev");

    // The outbox: N committed events, as the event writer leaves them.
    let db = dir.path().join("g.db");
    let mut conn = gatehouse::db::open(&db).expect("db");
    let tx = conn.transaction().expect("tx");
    for i in 0..N {
        let at = chrono::Utc::now().timestamp_millis() + i as i64;
        tx.execute(
            "INSERT INTO events (id, lane, at, first_seen, plate, confidence, chars, alternatives, reads, action,
                alert, reason_code, reason, matched_plate, kind, host, unit)
             VALUES (?1, 'entry', ?2, ?2, 'HXP4729', 0.97, '[[\"H\",0.99],[\"X\",0.98],[\"P\",0.97],[\"4\",0.99],[\"7\",0.99],[\"2\",0.96],[\"9\",0.99]]',
                '[[\"HXP4729\",0.97],[\"HXP4728\",0.02]]', 5, 'open', 0, 'resident', 'resident HXP4729 (Ana Diaz, 12B)',
                'HXP4729', 'resident', 'Ana Diaz', '12B')",
            params![format!("0193a0b2-0000-7000-8000-{i:012}"), at],
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
    let sample = outbox::pending_after(&conn, 0, 1, "site/dev", chrono::Duration::days(180)).expect("sample");
    let payload = sample[0].payload.clone();
    println!(
        "backlog: {N} events of {} bytes each, broker on 127.0.0.1:{} (TLS 1.3, client certificates)",
        payload.len(),
        broker.port
    );

    // Baseline: a bare client publishing the same bytes at QoS 1, no outbox.
    let bare = broker.client("cloud", "bare-publisher", true);
    bare.wait_for(10, "connection", |c| !c.acks.lock().expect("lock").is_empty());
    let t = Instant::now();
    for _ in 0..N {
        bare.publish("gatehouse/d/site.dev/events", payload.clone(), false);
    }
    bare.wait_for(120, "baseline PUBACKs", |c| {
        c.acks
            .lock()
            .expect("lock")
            .iter()
            .filter(|p| matches!(p, rumqttc::Packet::PubAck(_)))
            .count()
            >= N
    });
    let base_s = t.elapsed().as_secs_f64();
    drop(bare);

    // The daemon's link draining the outbox.
    let read = |f: &str| broker.dir.join(f);
    let ctx = LinkCtx {
        sync: SyncConfig {
            device: "site/dev".into(),
            trusted_keys: vec![],
            mqtt: None,
            allowlist_max_age: None,
        },
        mqtt: MqttConfig {
            host: "localhost".into(),
            port: broker.port,
            ca: read("ca.pem"),
            cert: read("device.pem"),
            key: read("device.key"),
            topic_prefix: "gatehouse".into(),
            keep_alive: Duration::from_secs(30),
            heartbeat: Duration::from_secs(60),
            window: 200,
            max_packet_bytes: 1 << 20,
            // GATEHOUSE_MQTT=3.1.1 drains over MQTT 3.1.1 instead (the same broker and outbox).
            protocol: match std::env::var("GATEHOUSE_MQTT").as_deref() {
                Ok("3.1.1") => gatehouse::config::MqttProtocol::V311,
                _ => gatehouse::config::MqttProtocol::V5,
            },
            session_expiry: Duration::from_secs(3600),
        },
        db_path: db.clone(),
        allowlist: SharedAllowlist::new(Allowlist::new(vec![], 0)),
        clock: Arc::new(gatehouse::clock::SystemClock),
        health: Arc::new(|| serde_json::json!({})),
        stats: Arc::new(LinkStats::default()),
        keep_reads_days: 180,
        plate_key: gatehouse::access::PlateKey::from_bytes([1; 32]),
    };
    let cancel = CancellationToken::new();
    let t = Instant::now();
    let handle = link::spawn(ctx, cancel.clone()).expect("link");
    loop {
        let b = outbox::backlog(&conn).expect("backlog");
        if b.pending == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "drain stalled at {} owed",
            b.pending
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let drain_s = t.elapsed().as_secs_f64();
    cancel.cancel();
    let _ = handle.join();
    println!(
        "bare QoS 1 publisher (baseline) {:>8.0} events/s  ({base_s:.2} s)",
        N as f64 / base_s
    );
    println!(
        "outbox drain, PUBACK-marked     {:>8.0} events/s  ({drain_s:.2} s, incl. TLS connect)  ratio to baseline {:.2}",
        N as f64 / drain_s,
        base_s / drain_s
    );
}
