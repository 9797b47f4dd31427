//! What encryption at rest costs (`cargo bench --bench at_rest`): the same work on a data folder in clear
//! and on one encrypted (SQLCipher database, sealed crops), each in a fresh process (the at-rest keys are
//! per process), alternating plain / encrypted for `ROUNDS` rounds; prints the medians and the ratios
//! encrypted / plain:
//! - event commits: 3,000 decided events, each with an 8 KiB crop, through the daemon's event writer;
//! - purge: 100,000 expired events removed by the retention purge (batches of 5,000);
//! - panel search: the panel's plate search (LIKE, last 30 days, newest 200) over those 100,000 events;
//! - start-up: opening the 100,000-event database as the daemon does at start (key, pragmas,
//!   migrations, quick_check).
//!
//! Decisions never touch the disk (benches/decision.rs and benches/purge.rs measure them).
//! `cargo bench --bench at_rest -- ROUNDS` (default 3).

use std::time::Instant;

use chrono::{Duration, Utc};
use gatehouse::access::{Action, Decision, Reason};
use gatehouse::events::{retention, spawn_writer, GateEvent, WriterOptions};
use gatehouse::privacy::{Effective, Period};
use rusqlite::params;

const MODE: &str = "GATEHOUSE_AT_REST_BENCH_MODE";
const EVENTS: usize = 3_000;
const PURGED: usize = 100_000;
const SEARCHES: usize = 50;

/// One process's figures: events/s, purged/s, ms per search, ms to open.
#[derive(Debug, Clone, Copy)]
struct Figures {
    commit: f64,
    purge: f64,
    search_ms: f64,
    open_ms: f64,
}

fn child(encrypted: bool) -> Figures {
    if encrypted {
        let mut master = [0u8; 32];
        getrandom::fill(&mut master).expect("random");
        gatehouse::secrets::install(gatehouse::secrets::AtRest::from_master(&master, "bench"));
    }
    let dir = tempfile::tempdir().expect("tmp");

    // Event commits through the writer, crops included.
    let db = dir.path().join("gatehouse.db");
    let (sink, handle, stats) = spawn_writer(WriterOptions::new(db.clone(), dir.path().join("crops"))).expect("writer");
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
    let crop = vec![0x5Au8; 8 * 1024];
    let t = Instant::now();
    rt.block_on(async {
        for i in 0..EVENTS {
            let now = Utc::now();
            let mut e = GateEvent::without_plate(
                "entry".into(),
                now,
                now,
                Decision {
                    action: Action::Deny,
                    alert: false,
                    reason: Reason::Unknown,
                    matched: None,
                },
                String::new(),
            );
            e.gate_result = None;
            e.plate = format!("P{:06}", i);
            e.confidence = 0.95;
            e.reads = 4;
            e.crop_jpeg = crop.clone();
            sink.send(e).await.expect("send");
        }
    });
    drop(sink);
    handle.join().expect("writer");
    let commit = EVENTS as f64 / t.elapsed().as_secs_f64();
    assert_eq!(
        stats.committed.load(std::sync::atomic::Ordering::Relaxed),
        EVENTS as u64
    );

    // A database of 100,000 expired events.
    let big = dir.path().join("big.db");
    {
        let mut conn = gatehouse::db::open(&big).expect("db");
        let old = (Utc::now() - Duration::days(200)).timestamp_millis();
        let tx = conn.transaction().expect("tx");
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO events (id, lane, at, plate, action, reason_code, reason, host)
                     VALUES (?1, 'entry', ?2, ?3, 'deny', 'unknown', 'not on the list', 'Ana Diaz')",
                )
                .expect("stmt");
            for i in 0..PURGED {
                st.execute(params![
                    format!("{i:012}"),
                    old + i as i64,
                    format!("P{:06}", i % 50_000)
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    // Start-up: open as the daemon does.
    let t = Instant::now();
    let mut conn = gatehouse::db::open_checked(&big).expect("open");
    let open_ms = t.elapsed().as_secs_f64() * 1e3;

    // The panel's search (over all of them: 250 days back).
    let since = (Utc::now() - Duration::days(250)).timestamp_millis();
    let t = Instant::now();
    for i in 0..SEARCHES {
        let pattern = format!("%{:04}%", (i * 37) % 10_000);
        let mut st = conn
            .prepare_cached(
                "SELECT id, lane, at, plate, action, reason, host, guard_action, crop_path IS NOT NULL
                 FROM events WHERE plate LIKE ?1 AND at >= ?2 ORDER BY at DESC LIMIT 200",
            )
            .expect("stmt");
        let n = st
            .query_map(params![pattern, since], |r| r.get::<_, String>(0))
            .expect("query")
            .count();
        std::hint::black_box(n);
    }
    let search_ms = t.elapsed().as_secs_f64() * 1e3 / SEARCHES as f64;

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
    let purge = purged.events as f64 / t.elapsed().as_secs_f64();
    assert_eq!(purged.events as usize, PURGED);
    Figures {
        commit,
        purge,
        search_ms,
        open_ms,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Ok(mode) = std::env::var(MODE) {
        let f = child(mode == "encrypted");
        println!("{} {} {} {}", f.commit, f.purge, f.search_ms, f.open_ms);
        return;
    }
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let exe = std::env::current_exe().expect("exe");
    let mut runs: [Vec<Figures>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, mode) in ["plain", "encrypted"].iter().enumerate() {
            let out = std::process::Command::new(&exe).env(MODE, mode).output().expect("run");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().last().unwrap_or("");
            let v: Vec<f64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            assert_eq!(v.len(), 4, "{text}");
            let f = Figures {
                commit: v[0],
                purge: v[1],
                search_ms: v[2],
                open_ms: v[3],
            };
            println!("round {} {mode:>9}: {f:?}", round + 1);
            runs[i].push(f);
        }
    }
    let m = |i: usize, g: fn(&Figures) -> f64| median(runs[i].iter().map(g).collect());
    println!("\nmedians of {rounds} rounds (each in its own process), encrypted / plain:");
    type Row = (&'static str, fn(&Figures) -> f64, &'static str, bool);
    let rows: [Row; 4] = [
        ("event commits (8 KiB crop each)", |f| f.commit, "events/s", true),
        ("retention purge", |f| f.purge, "events/s", true),
        ("panel search, 100k events", |f| f.search_ms, "ms", false),
        ("start-up open + quick_check, 100k events", |f| f.open_ms, "ms", false),
    ];
    for (name, g, unit, higher_better) in rows {
        let (p, e) = (m(0, g), m(1, g));
        let cost = if higher_better { p / e } else { e / p };
        println!("{name:<42} plain {p:>10.1} {unit:<8} encrypted {e:>10.1} {unit:<8} cost x{cost:.2}");
    }
}
