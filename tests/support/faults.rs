//! The fault table (issue 24): a fault test appends its row here, `scripts/faults.sh` prints the rows as
//! the table in the README. Rows go to `$GATEHOUSE_FAULT_TABLE`, default `target/fault-table.jsonl`.

use std::io::Write;
use std::time::Duration;

/// One row: the fault, what the daemon did, how long until it was back to normal (None: it never
/// stopped deciding), committed events lost, wrong opens.
pub fn row(fault: &str, did: &str, recovery: Option<Duration>, lost: i64, wrong_opens: i64) {
    let path = std::env::var_os("GATEHOUSE_FAULT_TABLE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| super::repo().join("target/fault-table.jsonl"));
    let line = serde_json::json!({
        "fault": fault,
        "did": did,
        "recovery_s": recovery.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
        "lost": lost,
        "wrong_opens": wrong_opens,
        "at": chrono::Utc::now().to_rfc3339(),
    });
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = writeln!(f, "{line}");
    }
}
