//! A full disk, a damaged or an empty database: the gate keeps deciding, no decided event and no
//! committed crop is lost, and an alert says why (issue 20, findings 10 and 11).
//!
//! The daemon runs in process on a fake camera and reader (as in `watchdog`), with its sd_notify STATUS
//! captured. The full-disk tests need a small tmpfs (`mount -t tmpfs`, root); where mounting is not
//! permitted they are skipped with a message. The database tests need nothing special.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse::app::{self, Parts, RunSummary};
use gatehouse::camera::{FakeSource, FakeStep, FrameSource};
use gatehouse::clock::SystemClock;
use gatehouse::gate::{Relay, SimulatedRelay};
use gatehouse::recognize::{FakeReader, PlateReader};
use gatehouse::supervise::Notifier;
use opencv::core::{Mat, Scalar, CV_8UC3};
use rusqlite::Connection;

use crate::support::*;

/// A config whose data folder is `data`, one lane on the fake camera; written to `dir/gatehouse.toml`.
/// `site` adds lines to `[site]`.
fn config(dir: &Path, data: &Path, site: &str) -> PathBuf {
    let text = format!(
        r#"
[site]
data_dir = "{data}"
min_free_mb = 0
{site}
[recognize]
manifest = "{manifest}"
[relays.main]
kind = "simulated"
[[lanes]]
name = "entry"
source = "fake.avi"
relay = "main"
realtime = false
[logging]
plates = true
"#,
        data = data.display(),
        manifest = repo().join("Cargo.toml").display(), // any existing file: the fake reader loads no model
    );
    let p = dir.join("gatehouse.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

/// What one run of the daemon did: its summary (or error) and the sd_notify messages it sent.
struct Run {
    result: anyhow::Result<RunSummary>,
    notes: Vec<String>,
}

impl Run {
    fn status(&self) -> String {
        self.notes
            .iter()
            .filter(|m| m.contains("STATUS="))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn opened(&self) -> u64 {
        match &self.result {
            Ok(s) => s.opened,
            Err(e) => panic!("the daemon did not run: {e:#}"),
        }
    }
}

/// Runs the daemon until its fake camera ends: `plate` read on every frame of one pass.
fn run_daemon(cfg_path: &Path, plate: Option<&'static str>) -> Run {
    let dir = cfg_path.parent().expect("dir");
    let text = std::fs::read_to_string(cfg_path).expect("config");
    let cfg = gatehouse::config::parse(&text, dir).expect("config");
    let sock_path = dir.join(format!("notify-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let listener = std::thread::spawn(move || {
        let started = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while started.elapsed() < Duration::from_secs(40) {
            if let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let done = msg.contains("STOPPING=1");
                got.push(msg);
                if done {
                    break;
                }
            }
        }
        got
    });
    let parts = Parts {
        clock: Arc::new(SystemClock),
        notifier: Notifier::to_path(sock_path.clone(), None),
        make_source: Box::new(|_| {
            let script: Vec<FakeStep> = (0..20)
                .flat_map(|_| {
                    let m = Mat::new_rows_cols_with_default(48, 160, CV_8UC3, Scalar::all(90.0)).expect("mat");
                    [FakeStep::Frame(m), FakeStep::Stall(Duration::from_millis(30))]
                })
                .chain([FakeStep::End])
                .collect();
            Box::new(FakeSource::new(script)) as Box<dyn FrameSource>
        }),
        make_reader: Box::new(move |_| {
            let script = (0..20).map(|_| plate.map(|p| (p, 0.95))).collect();
            Ok(Box::new(FakeReader::new(script)) as Box<dyn PlateReader>)
        }),
        make_relay: Box::new(|rc| Ok(Box::new(SimulatedRelay::new(&rc.name, None)?) as Box<dyn Relay>)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let result = rt.block_on(app::run(cfg, parts, std::future::pending::<()>()));
    drop(rt);
    if result.is_err() {
        // No STOPPING comes from a run that did not start: end the listener with one.
        if let Ok(s) = UnixDatagram::unbound() {
            let _ = s.send_to(b"STOPPING=1", &sock_path);
        }
    }
    let notes = listener.join().expect("listener");
    let _ = std::fs::remove_file(&sock_path);
    Run { result, notes }
}

fn allowlist_add(cfg_path: &Path, plate: &str) {
    let o = gatehouse(&["allowlist", "--config", cfg_path.to_str().expect("utf8"), "add", plate]);
    assert!(o.status.success(), "{}", text(&o));
}

fn events_with(data: &Path, plate: &str) -> i64 {
    let c = Connection::open(data.join("gatehouse.db")).expect("db");
    c.query_row("SELECT count(*) FROM events WHERE plate = ?1", [plate], |r| r.get(0))
        .expect("count")
}

fn spilled(data: &Path, plate: &str) -> bool {
    std::fs::read(data.join("events.spill"))
        .map(|b| String::from_utf8_lossy(&b).contains(plate))
        .unwrap_or(false)
}

/// Overwrites the events table's pages with garbage (the schema on page 1 stays intact).
fn scribble_events_table(db: &Path) {
    let c = Connection::open(db).expect("db");
    for i in 0..400 {
        c.execute(
            "INSERT INTO events (id, lane, at, action, reason_code, reason, plate)
             VALUES (?1, 'entry', ?2, 'deny', 'unknown', 'not on the allowlist', 'OLD123')",
            rusqlite::params![format!("old{i:05}"), i],
        )
        .expect("insert");
    }
    let _: i64 = c
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .expect("checkpoint");
    let root: i64 = c
        .query_row("SELECT rootpage FROM sqlite_master WHERE name = 'events'", [], |r| {
            r.get(0)
        })
        .expect("root");
    let page: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).expect("size");
    let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).expect("count");
    drop(c);
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(db).expect("open");
    // The table's root page and the last pages of the file (its newest leaves).
    for p in [root].into_iter().chain((pages - 4).max(root + 1)..=pages) {
        f.write_all_at(&vec![0xA5; page as usize], ((p - 1) * page) as u64)
            .expect("scribble");
    }
    f.sync_all().expect("sync");
}

#[test]
fn a_scribbled_events_table_is_caught_at_start_and_nothing_is_dropped() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = config(dir.path(), &data, "");
    allowlist_add(&cfg, "ABC123");
    // A healthy start first (it keeps the last-good allowlist beside the database).
    assert_eq!(run_daemon(&cfg, None).opened(), 0);
    scribble_events_table(&data.join("gatehouse.db"));

    let run = run_daemon(&cfg, Some("ABC123"));
    assert!(run.opened() >= 1, "the listed plate is let in: {}", run.status());
    let status = run.status();
    assert!(status.contains("ALERT: database"), "the damage is an alert: {status}");
    // The decided event is not dropped: it waits in the spill file for a usable database.
    let held = spilled(&data, "ABC123");
    crate::support::faults::row(
        "corrupt database (events table scribbled)",
        "caught by quick_check at start, decided on the last-good allowlist, alert 'database', events held in the spill file",
        None,
        (!held) as i64,
        0,
    );
    assert!(held, "the event is held on disk");
}

#[test]
fn an_empty_database_file_is_refused_and_the_last_good_allowlist_decides() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = config(dir.path(), &data, "");
    allowlist_add(&cfg, "ABC123");
    assert_eq!(run_daemon(&cfg, None).opened(), 0);
    let db = data.join("gatehouse.db");
    std::fs::write(&db, b"").expect("truncate");
    for side in ["gatehouse.db-wal", "gatehouse.db-shm"] {
        let _ = std::fs::remove_file(data.join(side));
    }

    let run = run_daemon(&cfg, Some("ABC123"));
    assert!(
        run.opened() >= 1,
        "the resident is let in, not denied: {}",
        run.status()
    );
    assert!(run.status().contains("ALERT: database"), "{}", run.status());
    assert_eq!(
        std::fs::metadata(&db).expect("db").len(),
        0,
        "the empty file is refused, not reused"
    );
    assert!(spilled(&data, "ABC123"), "the event is held on disk");

    // With no last-good allowlist either, the daemon refuses to start and says why.
    std::fs::remove_file(data.join("allowlist.last-good.json")).expect("remove");
    let run = run_daemon(&cfg, Some("ABC123"));
    let err = format!("{:#}", run.result.expect_err("refused"));
    assert!(err.contains("is empty (0 bytes)"), "{err}");
    assert!(err.contains("last-good allowlist"), "{err}");
}

#[test]
fn a_missing_database_is_made_anew_with_the_last_good_allowlist() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = config(dir.path(), &data, "");
    allowlist_add(&cfg, "ABC123");
    assert_eq!(run_daemon(&cfg, None).opened(), 0);
    for f in ["gatehouse.db", "gatehouse.db-wal", "gatehouse.db-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }

    let run = run_daemon(&cfg, Some("ABC123"));
    assert!(
        run.opened() >= 1,
        "the resident is let in, not denied: {}",
        run.status()
    );
    assert_eq!(events_with(&data, "ABC123"), 1, "the new database stores events");
    // The last-good list went into the new database: it holds on the next start too.
    let run = run_daemon(&cfg, Some("ABC123"));
    assert!(run.opened() >= 1, "{}", run.status());
}

/// A tmpfs mounted for the test (unmounted when dropped).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).expect("mkdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "SKIPPED: cannot mount a {size} tmpfs at {} (needs root): the full-disk test did not run",
                path.display()
            );
            return None;
        }
        Some(Self(path.to_path_buf()))
    }

    /// Writes filler files until the file system is full.
    fn fill(&self) {
        use std::io::Write;
        let mut n = 0;
        for chunk in [64 * 1024, 4096, 512, 1] {
            let buf = vec![7u8; chunk];
            loop {
                let p = self.0.join(format!("filler-{n}"));
                n += 1;
                let Ok(mut f) = std::fs::File::create(&p) else {
                    break;
                };
                if f.write_all(&buf).and_then(|_| f.sync_all()).is_err() {
                    break;
                }
            }
        }
        let free = gatehouse::events::storage::free_bytes(&self.0).unwrap_or(0);
        assert!(free < 64 * 1024, "{free} bytes still free");
    }

    fn unfill(&self) {
        for e in std::fs::read_dir(&self.0).expect("dir").flatten() {
            if e.file_name().to_string_lossy().starts_with("filler-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn burst(cfg: &Path, count: usize) -> String {
    let o = gatehouse(&[
        "debug",
        "event-burst",
        "--config",
        cfg.to_str().expect("utf8"),
        "--count",
        &count.to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

#[test]
fn a_full_disk_during_a_burst_loses_no_decided_event_and_no_committed_crop() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let Some(fs) = Tmpfs::mount(&data, "4m") else {
        return;
    };
    // A 1 MB reserve on a 4 MB file system.
    let cfg = config(dir.path(), &data, "db_reserve_mb = 1");
    // One event stored with its crop while space is plentiful.
    burst(&cfg, 1);
    let c = Connection::open(data.join("gatehouse.db")).expect("db");
    let first_crop: String = c
        .query_row("SELECT crop_path FROM events", [], |r| r.get(0))
        .expect("a committed crop");
    drop(c);
    assert!(Path::new(&first_crop).exists());

    // The disk fills up; then a burst of 1000 decided events.
    fs.fill();
    let out = burst(&cfg, 1000);
    assert!(!out.contains("they are lost"), "{out}");
    assert!(Path::new(&first_crop).exists(), "a committed crop was deleted");

    // Space returns; the next start stores what was held.
    fs.unfill();
    burst(&cfg, 0);
    let c = Connection::open(data.join("gatehouse.db")).expect("db");
    let stored: i64 = c
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count");
    crate::support::faults::row(
        "disk full on the data folder during a 1,000-event burst",
        "released its reserve, held what it could not store in the spill file and memory, stored it all when space returned",
        None,
        1001 - stored,
        0,
    );
    assert_eq!(stored, 1001, "every decided event is stored");
    assert!(Path::new(&first_crop).exists(), "a committed crop was deleted");
}

#[test]
fn a_start_on_a_full_disk_still_decides_and_says_why_it_cannot_log() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let Some(fs) = Tmpfs::mount(&data, "4m") else {
        return;
    };
    // A 1 MB reserve on a 4 MB file system.
    let cfg = config(dir.path(), &data, "db_reserve_mb = 1");
    allowlist_add(&cfg, "ABC123");
    // A first start while space is there: the reserve, the spill file and the last-good list are made.
    assert_eq!(run_daemon(&cfg, None).opened(), 0);

    // Full: the start releases the reserve and the database takes the event.
    fs.fill();
    let run = run_daemon(&cfg, Some("ABC123"));
    assert!(run.opened() >= 1, "{}", run.status());
    assert_eq!(events_with(&data, "ABC123"), 1, "{}", run.status());

    // Full with the reserve spent: the gate still decides on the last-good list, says why, holds the event.
    fs.fill();
    let run = run_daemon(&cfg, Some("ABC123"));
    assert!(run.opened() >= 1, "{}", run.status());
    assert!(run.status().contains("ALERT: database"), "{}", run.status());
    assert!(spilled(&data, "ABC123"), "the event is held on disk");

    fs.unfill();
    assert_eq!(run_daemon(&cfg, None).opened(), 0);
    assert_eq!(
        events_with(&data, "ABC123"),
        2,
        "the held event is stored once space returns"
    );
}

#[test]
fn check_config_runs_the_full_integrity_check_of_the_database() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = config(dir.path(), &data, "");
    // check-config reads the manifest and checks the models' checksums: the shipped one here.
    require_models();
    let text_cfg = std::fs::read_to_string(&cfg).expect("config");
    let fake = repo().join("Cargo.toml").display().to_string();
    let real = repo().join("models/manifest.toml").display().to_string();
    std::fs::write(&cfg, text_cfg.replace(&fake, &real)).expect("config");
    let check = || gatehouse(&["check-config", cfg.to_str().expect("utf8")]);
    allowlist_add(&cfg, "ABC123");
    let o = check();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("integrity check ok"), "{}", text(&o));

    let db = data.join("gatehouse.db");
    scribble_events_table(&db);
    let o = check();
    assert!(!o.status.success(), "a damaged database fails the check: {}", text(&o));
    assert!(text(&o).contains("is damaged"), "{}", text(&o));

    std::fs::write(&db, b"").expect("truncate");
    let o = check();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("is empty (0 bytes)"), "{}", text(&o));
}
