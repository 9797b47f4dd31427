use rusqlite::Connection;

use crate::support::*;

/// Operator actions from the CLI land in the hash-chained audit log; `audit verify` passes on the real
/// log and names the first bad sequence once a row is altered; `audit export` writes JSON lines.
#[test]
fn cli_actions_are_audited_and_tampering_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(dir.path(), &dir.path().join("v.avi"), "stop");
    let c = cfg.to_str().expect("utf8");
    for args in [
        &["allowlist", "--config", c, "add", "ABC123"][..],
        &["allowlist", "--config", c, "add", "BLK666", "--kind", "blocked"][..],
        &["allowlist", "--config", c, "remove", "ABC123"][..],
    ] {
        let o = gatehouse(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    let o = gatehouse(&["audit", "--config", c, "verify"]);
    assert!(o.status.success() && text(&o).contains("3 entries"), "{}", text(&o));
    let o = gatehouse(&["audit", "--config", c, "export"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["action"], "allowlist.add");
    assert_eq!(lines[1]["target"], "BLK666");

    let conn = Connection::open(dir.path().join("data/gatehouse.db")).expect("db");
    conn.execute("UPDATE audit_log SET target = 'XYZ999' WHERE seq = 2", [])
        .expect("tamper");
    let o = gatehouse(&["audit", "--config", c, "verify"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("first bad sequence 2"), "{}", text(&o));
}
