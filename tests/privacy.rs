use rusqlite::{params, Connection};

use crate::support::*;

/// DSAR: export holds every record and crop of a plate seeded over several days; delete leaves none but
/// the held one; both (and the event query) are in the access log with their purpose.
#[test]
fn dsar_export_and_delete_with_purpose_in_the_access_log() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(dir.path(), &dir.path().join("v.avi"), "stop");
    let cfg_s = cfg.to_str().expect("utf8");
    // The daemon's own schema and pragmas.
    let db = dir.path().join("data/gatehouse.db");
    drop(gatehouse::db::open(&db).expect("db"));
    let conn = Connection::open(&db).expect("db");
    let crops = dir.path().join("data/crops");
    std::fs::create_dir_all(&crops).expect("crops");
    for day in 0..4 {
        let id = format!("evt-{day}");
        let crop = crops.join(format!("{id}.jpg"));
        std::fs::write(&crop, b"\xff\xd8jpeg\xff\xd9").expect("crop");
        conn.execute(
            "INSERT INTO events (id, lane, at, plate, action, reason_code, reason, crop_path)
             VALUES (?1, 'entry', ?2, 'DSR123', 'deny', 'unknown', 'not on the list', ?3)",
            params![id, 1_790_000_000_000i64 + day * 86_400_000, crop.display().to_string()],
        )
        .expect("insert");
    }
    conn.execute(
        "INSERT INTO events (id, lane, at, plate, action, reason_code, reason) VALUES ('other', 'entry', 1, 'OTH999', 'deny', 'unknown', 'x')",
        [],
    )
    .expect("insert");

    let o = gatehouse(&["events", "--config", cfg_s, "list", "--purpose", ""]);
    assert!(
        !o.status.success() && text(&o).contains("purpose"),
        "a query without a purpose is refused: {}",
        text(&o)
    );

    let out = dir.path().join("export");
    let o = gatehouse(&[
        "events",
        "--config",
        cfg_s,
        "dsar-export",
        "dsr-123",
        "--out",
        out.to_str().expect("utf8"),
        "--purpose",
        "owner request #17",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("records.json")).expect("records")).expect("json");
    assert_eq!(records["events"].as_array().map(Vec::len), Some(4));
    assert_eq!(std::fs::read_dir(out.join("crops")).expect("crops").count(), 4);
    assert!(!records.to_string().contains("OTH999"));

    let o = gatehouse(&[
        "events",
        "--config",
        cfg_s,
        "hold",
        "--event",
        "evt-2",
        "--reason",
        "subpoena 2026-44",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = gatehouse(&[
        "events",
        "--config",
        cfg_s,
        "dsar-delete",
        "DSR123",
        "--purpose",
        "owner request #18",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("deleted 3") && text(&o).contains("1 kept"),
        "{}",
        text(&o)
    );
    let left: Vec<String> = {
        let mut s = conn
            .prepare("SELECT id FROM events WHERE plate = 'DSR123'")
            .expect("stmt");
        let r = s.query_map([], |r| r.get(0)).expect("q");
        r.collect::<Result<_, _>>().expect("rows")
    };
    assert_eq!(left, vec!["evt-2"]);
    assert_eq!(
        std::fs::read_dir(&crops).expect("crops").count(),
        1,
        "only the held crop is left"
    );

    let o = gatehouse(&["events", "--config", cfg_s, "access-log"]);
    let log = text(&o);
    for want in [
        "dsar-export",
        "owner request #17",
        "dsar-delete",
        "owner request #18",
        "legal-hold",
    ] {
        assert!(log.contains(want), "{want} missing from the access log:\n{log}");
    }
}
