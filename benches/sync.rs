//! Allowlist sync benchmark (`cargo bench --bench sync`): sign, verify and apply a 100,000-entry snapshot
//! to a real SQLite file, reporting entries per second (goal: apply >= 200,000 entries/s).

use std::time::Instant;

use chrono::Utc;
use gatehouse::sync::envelope::{self, Envelope, ListBody, WireEntry};
use gatehouse::sync::{apply, keys};

fn main() {
    const N: usize = 100_000;
    let entries: Vec<WireEntry> = (0..N)
        .map(|i| WireEntry {
            plate: format!("B{:06}", i),
            kind: if i % 100 == 0 {
                "blocked".into()
            } else {
                "resident".into()
            },
            host: Some(format!("Resident {i}")),
            unit: Some(format!("{}", i % 500)),
            valid_from: None,
            valid_until: None,
            schedule: None,
            do_not_log: false,
            note: None,
        })
        .collect();
    let key = keys::generate().expect("key");
    let mut trusted = keys::TrustedKeys::default();
    trusted.add("bench", key.verifying_key());
    let now = Utc::now();
    let t = Instant::now();
    let env = Envelope::make(
        &ListBody::Snapshot { entries },
        "site/dev",
        1,
        None,
        now,
        now + chrono::Duration::hours(1),
        "bench",
        &key,
    )
    .expect("make");
    let bytes = serde_json::to_vec(&env).expect("json");
    let sign_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let v = envelope::verify(&bytes, &trusted, "site/dev", 0, now, envelope::MAX_ENVELOPE_BYTES).expect("verify");
    let verify_s = t.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().expect("tmp");
    let mut conn = gatehouse::db::open(&dir.path().join("bench.db")).expect("db");
    let t = Instant::now();
    let n = apply::apply(&mut conn, &v, now, &gatehouse::access::PlateKey::from_bytes([1; 32])).expect("apply");
    let apply_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let list =
        gatehouse::access::load_snapshot(&conn, &gatehouse::access::PlateKey::from_bytes([1; 32])).expect("load");
    let load_s = t.elapsed().as_secs_f64();
    println!(
        "snapshot of {N} entries, {:.1} MB on the wire",
        bytes.len() as f64 / 1e6
    );
    println!(
        "sign (cloud side)        {:>8.0} entries/s  ({sign_s:.3} s)",
        N as f64 / sign_s
    );
    println!(
        "parse + verify           {:>8.0} entries/s  ({verify_s:.3} s)",
        N as f64 / verify_s
    );
    println!(
        "apply (one transaction)  {:>8.0} entries/s  ({apply_s:.3} s, {n} rows)",
        N as f64 / apply_s
    );
    println!(
        "load in-memory snapshot  {:>8.0} entries/s  ({load_s:.3} s, {} entries)",
        N as f64 / load_s,
        list.len()
    );
    println!(
        "verify + apply + load    {:>8.0} entries/s",
        N as f64 / (verify_s + apply_s + load_s)
    );
}
