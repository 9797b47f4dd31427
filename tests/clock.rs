//! The wall clock set back 400 days and forward 400 days (libfaketime on the real daemon; the monotonic
//! clock is left alone, as when an RTC or NTP is wrong). Set back: the daemon goes on from the newest
//! time the site recorded, so a visitor pass that expired yesterday does not open the gate again, and a
//! standing alert says why. Set forward: residents still open, expired passes stay shut. Committed events
//! are all still there after each run (no cloud link here: retention would apply to them at the jumped
//! date, see docs/operations.md; with one, events not yet acknowledged are kept).

use std::process::Command;

use crate::support::{bin, logged_decisions, render_video, require_models, text, write_config};

fn run(cfg: &std::path::Path, shift: Option<&str>) -> String {
    let mut c = match shift {
        Some(s) => {
            let mut c = Command::new("faketime");
            c.args(["-f", s]).arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    let out = c
        .args(["run", "--config", cfg.to_str().expect("utf8")])
        .env("DONT_FAKE_MONOTONIC", "1")
        .env_remove("GATEHOUSE_TRUST_WALL_CLOCK")
        .output()
        .expect("run");
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    log
}

fn events(dir: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("data/gatehouse.db")).expect("db");
    conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count")
}

#[test]
fn a_clock_set_back_or_forward_400_days_opens_nothing_it_should_not_and_loses_nothing() {
    require_models();
    if Command::new("faketime").arg("--version").output().is_err() {
        panic!("faketime is not installed: run scripts/setup.sh");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let video = dir.path().join("lane.avi");
    render_video(&video, "HXP4729,JCY4712", "3", "1.5");
    let cfg = write_config(dir.path(), &video, "stop");
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let csv = dir.path().join("allow.csv");
    std::fs::write(
        &csv,
        format!(
            "plate,kind,host,unit,valid_from,valid_until\nHXP4729,resident,Ana Diaz,12B,,\n\
             JCY4712,visitor,Ana Diaz,12B,,{yesterday}\n"
        ),
    )
    .expect("csv");
    let o = crate::support::gatehouse(&[
        "allowlist",
        "--config",
        cfg.to_str().expect("utf8"),
        "import",
        csv.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let right = vec!["HXP4729 Open".to_string(), "JCY4712 Deny".to_string()];

    let log = run(&cfg, None);
    assert_eq!(logged_decisions(&log), right, "{log}");
    assert_eq!(events(dir.path()), 2);

    // Set back 400 days: the pass's end is in the clock's future, but not in the site's.
    let log = run(&cfg, Some("-400d"));
    let wrong = logged_decisions(&log).iter().filter(|d| *d == "JCY4712 Open").count() as i64;
    crate::support::faults::row(
        "wall clock set back 400 days (restart under the wrong clock)",
        "went on from the newest recorded time (not the clock), standing alert 'clock'; an expired pass stayed shut",
        None,
        4 - events(dir.path()),
        wrong,
    );
    assert_eq!(logged_decisions(&log), right, "an expired pass must not open:\n{log}");
    assert!(log.contains("the wall clock is behind the newest time"), "{log}");
    assert_eq!(events(dir.path()), 4, "nothing committed is lost");
    let newest_ms: i64 = rusqlite::Connection::open(dir.path().join("data/gatehouse.db"))
        .expect("db")
        .query_row("SELECT max(at) FROM events", [], |r| r.get(0))
        .expect("max");
    assert!(
        newest_ms >= chrono::Utc::now().timestamp_millis() - 3_600_000,
        "events are stamped from the trusted time, not 400 days back"
    );

    // Forward 400 days: followed (NTP corrects boxes without an RTC forward after every power cut).
    let log = run(&cfg, Some("+400d"));
    crate::support::faults::row(
        "wall clock set forward 400 days",
        "followed it (NTP does this after power cuts); passes judged by it; retention keeps events the cloud has not acknowledged",
        None,
        0,
        logged_decisions(&log).iter().filter(|d| *d == "JCY4712 Open").count() as i64,
    );
    assert_eq!(logged_decisions(&log), right, "{log}");
    let n = events(dir.path());
    assert!(n >= 2, "this run's events are committed ({n})");
}
