//! Retention purge benchmark (`cargo bench --bench purge`): 1,000,000 expired events in a real SQLite
//! file are purged in batches while another thread keeps deciding against a 100,000-entry allowlist;
//! prints the purge time and the worst decision latency seen during it (decisions never touch the disk).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use gatehouse::access::{self, Allowlist, Entry, Kind};
use gatehouse::config::AccessConfig;
use gatehouse::events::retention;
use gatehouse::privacy::{Effective, Period};
use gatehouse::recognize::CharRead;
use rusqlite::params;

fn main() {
    const N: usize = 1_000_000;
    let dir = tempfile::tempdir().expect("tmp");
    let mut conn = gatehouse::db::open(&dir.path().join("purge.db")).expect("db");
    let old = (Utc::now() - Duration::days(400)).timestamp_millis();
    let t = Instant::now();
    {
        let tx = conn.transaction().expect("tx");
        {
            let mut st = tx
                .prepare("INSERT INTO events (id, lane, at, plate, action, reason_code, reason) VALUES (?1, 'entry', ?2, ?3, 'deny', 'unknown', 'not on the list')")
                .expect("stmt");
            for i in 0..N {
                st.execute(params![
                    format!("{i:012}"),
                    old + i as i64,
                    format!("P{:06}", i % 100_000)
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    println!("seeded {N} expired events in {:.1} s", t.elapsed().as_secs_f64());

    let list = Arc::new(Allowlist::new(
        (0..100_000)
            .map(|i| Entry::new(&format!("R{i:06}"), Kind::Resident))
            .collect(),
        1,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let decider = {
        let (list, stop) = (list.clone(), stop.clone());
        std::thread::spawn(move || {
            let cfg = AccessConfig::default();
            let (mut worst, mut n) = (0u128, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let plate = format!("R{:06}", n % 100_000);
                let chars: Vec<CharRead> = plate
                    .chars()
                    .map(|ch| CharRead {
                        ch,
                        conf: 0.99,
                        alt: None,
                    })
                    .collect();
                let s = Instant::now();
                std::hint::black_box(access::decide(&plate, &chars, &list, &cfg, Utc::now(), chrono_tz::UTC));
                worst = worst.max(s.elapsed().as_nanos());
                n += 1;
            }
            (worst, n)
        })
    };
    let retention = Effective {
        state: None,
        reads: Period {
            days: 180,
            why: String::new(),
        },
        images: Period {
            days: 60,
            why: String::new(),
        },
        duties: vec![],
        citations: vec![],
    };
    let t = Instant::now();
    let purged = retention::purge(&mut conn, &retention, Utc::now(), 5_000, false).expect("purge");
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (worst, n) = decider.join().expect("decider");
    println!(
        "purged {} events in {secs:.1} s ({:.0} events/s), batches of 5,000",
        purged.events,
        purged.events as f64 / secs
    );
    println!(
        "{n} decisions meanwhile; worst decision latency {:.1} us",
        worst as f64 / 1000.0
    );
}
