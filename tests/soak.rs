//! Soak: the daemon on a looping lane video for `GATEHOUSE_SOAK_MINUTES` (default 1; `scripts/faults.sh
//! --soak-minutes 30` for the long run), sampling its resident memory, open descriptors and threads every
//! 5 s. After a warm-up none of them may keep growing; then SIGTERM: every committed event is stored,
//! the stranger's plate never opened the gate.

use std::time::{Duration, Instant};

use crate::support::{gatehouse, render_video, require_models, spawn_logged, text, write_config};

fn sample(pid: u32) -> Option<(u64, usize, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((field("VmRSS:")?, fds, field("Threads:")?))
}

#[test]
fn a_soak_keeps_memory_descriptors_and_threads_flat() {
    require_models();
    let minutes: f64 = std::env::var("GATEHOUSE_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(1.0);
    let dir = tempfile::tempdir().expect("tmp");
    let video = dir.path().join("loop.avi");
    render_video(&video, "HXP4729,MWK3974", "3", "1");
    let cfg = write_config(dir.path(), &video, "loop");
    let o = gatehouse(&["allowlist", "--config", cfg.to_str().expect("utf8"), "add", "HXP4729"]);
    assert!(o.status.success(), "{}", text(&o));
    let (mut daemon, (log, readers)) = spawn_logged(&cfg);
    let pid = daemon.0.id();
    let start = Instant::now();
    let total = Duration::from_secs_f64(minutes * 60.0);
    let warm = total.mul_f64(0.25).max(Duration::from_secs(15));
    let mut samples = Vec::new();
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_secs(5));
        assert!(daemon.0.try_wait().expect("wait").is_none(), "the daemon died");
        if let Some(s) = sample(pid) {
            samples.push((start.elapsed(), s));
        }
    }
    let after_warm: Vec<_> = samples.iter().filter(|(t, _)| *t >= warm).map(|(_, s)| *s).collect();
    assert!(after_warm.len() >= 2, "{samples:?}");
    let first = after_warm[0];
    let last = *after_warm.last().expect("samples");
    let peak_rss = after_warm.iter().map(|s| s.0).max().unwrap_or(0);
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = daemon.0.wait().expect("wait");
    for r in readers {
        r.join().expect("reader");
    }
    let log = log.lock().expect("lock").join("\n");
    assert!(status.success(), "{log}");
    let committed = log.lines().filter(|l| l.contains("event committed")).count() as i64;
    let conn = rusqlite::Connection::open(dir.path().join("data/gatehouse.db")).expect("db");
    let (stored, wrong): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(CASE WHEN action = 'open' AND plate != 'HXP4729' THEN 1 END) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    let did = format!(
        "{minutes} min, {stored} events; after warm-up RSS {} -> {} MiB (peak {}), fds {} -> {}, threads {} -> {}",
        first.0 / 1024,
        last.0 / 1024,
        peak_rss / 1024,
        first.1,
        last.1,
        first.2,
        last.2
    );
    println!("soak: {did}");
    crate::support::faults::row("soak on a looping lane", &did, None, committed - stored, wrong);
    assert_eq!(stored, committed, "{log}");
    assert_eq!(wrong, 0);
    assert!(stored >= 2, "the lane decided: {log}");
    assert!(last.1 <= first.1 + 4, "descriptors grew: {samples:?}");
    assert!(last.2 <= first.2 + 4, "threads grew: {samples:?}");
    assert!(
        last.0 <= first.0 + first.0 / 4 + 20 * 1024,
        "resident memory grew: {samples:?}"
    );
}
