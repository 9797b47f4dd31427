use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::support::*;

#[derive(Debug)]
struct Row {
    plate: String,
    action: String,
    reason_code: String,
    alert: bool,
    crop: Option<String>,
}

#[test]
fn allowlisted_opens_once_per_pass_and_everything_else_stays_closed() {
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    let video = dir.path().join("lane.avi");
    // resident (standing 5 s in view: still one pass), unknown, blocked, expired visitor
    let o = gatehouse(&[
        "demo",
        "video",
        video.to_str().expect("utf8"),
        "--plates",
        "HXP4729,MWK3974,TRV8633,JCY4712",
        "--seconds",
        "3.5",
        "--gap",
        "1.5",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let cfg = write_config(dir.path(), &video, "");
    let csv = dir.path().join("allow.csv");
    std::fs::write(
        &csv,
        "plate,kind,host,unit,valid_from,valid_until\n\
         HXP4729,resident,Ana Diaz,12B,,\n\
         TRV8633,blocked,,,,\n\
         JCY4712,visitor,Ana Diaz,12B,2026-01-01T00:00:00Z,2026-01-02T00:00:00Z\n",
    )
    .expect("csv");
    let o = gatehouse(&[
        "allowlist",
        "--config",
        cfg.to_str().expect("utf8"),
        "import",
        csv.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));

    let started = Instant::now();
    let mut child = std::process::Command::new(bin())
        .args(["run", "--config", cfg.to_str().expect("utf8")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // The lane's video ends (at_end = "stop") and the daemon shuts down by itself.
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("daemon did not finish the video within 180 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("output");
    let log = text(&out);
    assert!(out.status.success(), "daemon failed:\n{log}");

    let conn = Connection::open(dir.path().join("data/gatehouse.db")).expect("db");
    let mut stmt = conn
        .prepare("SELECT plate, action, reason_code, alert, crop_path FROM events ORDER BY at")
        .expect("query");
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok(Row {
                plate: r.get(0)?,
                action: r.get(1)?,
                reason_code: r.get(2)?,
                alert: r.get(3)?,
                crop: r.get(4)?,
            })
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    let summary: Vec<(&str, &str, &str, bool)> = rows
        .iter()
        .map(|r| (r.plate.as_str(), r.action.as_str(), r.reason_code.as_str(), r.alert))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("HXP4729", "open", "allowed", false),
            ("MWK3974", "deny", "unknown", false),
            ("TRV8633", "deny", "blocked", true),
            ("JCY4712", "deny", "expired", false),
        ],
        "one event per pass, with its reason\n{log}"
    );
    for r in &rows {
        let crop = r.crop.as_deref().expect("every event keeps its best crop");
        assert!(
            std::fs::metadata(crop).map(|m| m.len() > 100).unwrap_or(false),
            "crop {crop} missing"
        );
    }

    // The relay pulsed exactly once (for the resident) and ended in its safe state (released).
    let relay_log = std::fs::read_to_string(dir.path().join("data/relay.jsonl")).expect("relay log");
    let states: Vec<bool> = relay_log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["energized"]
                .as_bool()
                .expect("bool")
        })
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s).count(),
        1,
        "exactly one open pulse: {states:?}\n{log}"
    );
    assert_eq!(states.last(), Some(&false), "relay left in its safe state");
    assert!(log.contains("ALERT"), "the blocked plate raised an alert");
}
