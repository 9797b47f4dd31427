use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::support::*;

#[test]
fn kill_9_during_a_burst_keeps_every_committed_event() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(dir.path(), &dir.path().join("unused.avi"), "stop");
    let mut child = Command::new(bin())
        .args([
            "debug",
            "event-burst",
            "--config",
            cfg.to_str().expect("utf8"),
            "--count",
            "1000000",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut committed = Vec::new();
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line.contains("event committed") {
            if let Some(id) = line.split("id=").nth(1).and_then(|s| s.split_whitespace().next()) {
                committed.push(id.to_string());
            }
        }
        // Kill in the middle of the burst, while commits are in flight.
        if committed.len() >= 300 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    child.kill().expect("kill -9"); // SIGKILL
    let _ = child.wait();
    assert!(
        committed.len() >= 300,
        "the burst did not get going: {} commits",
        committed.len()
    );

    let conn = Connection::open(dir.path().join("data/gatehouse.db")).expect("database opens after kill -9");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity");
    assert_eq!(check, "ok");
    let mut stmt = conn.prepare("SELECT 1 FROM events WHERE id = ?1").expect("stmt");
    let missing: Vec<&String> = committed
        .iter()
        .filter(|id| !stmt.exists([id.as_str()]).expect("query"))
        .collect();
    crate::support::faults::row(
        "power cut (kill -9) in the middle of a burst of commits",
        &format!(
            "the database opened clean (integrity_check ok) with all {} events it had reported committed",
            committed.len()
        ),
        None,
        missing.len() as i64,
        0,
    );
    assert!(
        missing.is_empty(),
        "{} committed events lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let total: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count");
    assert!(total as usize >= committed.len());
}
