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

/// Acceptance: an opted-out resident's plate, sent by the cloud sealed, opens the gate; afterwards the
/// plate string is nowhere: not in the SQLite files, the crop folder, the daemon's log or any MQTT payload
/// the cloud saw. An unknown plate's pass in the same run is found in each of them (the search works).
#[test]
fn an_opted_out_plate_opens_and_is_found_nowhere_afterwards() {
    use crate::cloud_link::{device_config, envelope, json, keys, last_json, metric, wait_online, Daemon, TOPIC};
    use crate::support::broker::Broker;
    use gatehouse::access::{Entry, Kind, PlateKey};
    use gatehouse::sync::envelope::{ListBody, WireEntry};

    const OPTED: &str = "HXP4729";
    const STRANGER: &str = "MWK3974";
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Broker::start(&dir.path().join("broker"));
    let k = keys(dir.path(), "cloud-1");
    // The lane first shows only the stranger; the resident drives up once the list is in use.
    let video = dir.path().join("lane.avi");
    render_video(&video, STRANGER, "2", "1");
    let both = dir.path().join("both.avi");
    render_video(&both, &format!("{OPTED},{STRANGER}"), "2.5", "1");
    let (cfg, mport) = device_config(
        dir.path(),
        video.to_str().expect("utf8"),
        "loop",
        &broker,
        &[("cloud-1", &k.public)],
    );
    // The site's plate key, shared with the cloud (here: made by the test, named in the config).
    let key_path = dir.path().join("plate.key");
    let key = PlateKey::from_bytes([0x5a; 32]);
    std::fs::write(&key_path, format!("{}\n", "5a".repeat(32))).expect("key");
    let mut t = std::fs::read_to_string(&cfg).expect("cfg");
    t.push_str(&format!("\n[privacy]\nplate_key = \"{}\"\n", key_path.display()));
    std::fs::write(&cfg, t).expect("cfg");

    let cloud = broker.client("cloud", "cloud-test", true);
    cloud.subscribe("gatehouse/#");
    let daemon = Daemon::start(&cfg, dir.path());
    wait_online(&cloud);
    let mut resident = Entry::new(&key.seal(OPTED), Kind::Resident);
    resident.do_not_log = true;
    resident.host = Some("Ana Diaz".into());
    let body = ListBody::Snapshot {
        entries: vec![
            WireEntry::from(&resident),
            WireEntry::from(&Entry::new("JCY4712", Kind::Resident)),
        ],
    };
    cloud.publish(
        &format!("{TOPIC}/allowlist"),
        json(&envelope(&body, "oak/*", 3, None, &k, "cloud-1")),
        false,
    );
    cloud.wait_for(20, "the list applied", |c| {
        last_json(&c.on(&format!("{TOPIC}/allowlist/state")))["applied_version"] == 3
    });
    // Swap the lane's video (the source reopens the file at its end).
    std::fs::rename(&both, &video).expect("swap video");
    let relay_log = dir.path().join("data/relay.jsonl");
    let opened = || {
        std::fs::read_to_string(&relay_log)
            .unwrap_or_default()
            .contains("\"energized\":true")
    };
    let start = std::time::Instant::now();
    while !opened() || metric(mport, "gatehouse_opted_out_passes_total").unwrap_or(0.0) < 1.0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(90),
            "the opted-out resident was not let in:\n{}",
            daemon.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // A later pass of the stranger is uploaded: the resident's pass is behind us on the wire too.
    let seen = cloud.on(&format!("{TOPIC}/events")).len();
    cloud.wait_for(60, "a later event upload", |c| {
        c.on(&format!("{TOPIC}/events")).len() > seen
    });
    let log = daemon.stop();
    assert!(log.contains("opted-out resident passed"), "{log}");

    // Search every place: files under the data folder (database, WAL, crops, relay log), the log, the wire.
    let mut files = Vec::new();
    let mut todo = vec![dir.path().join("data")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let contains = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    let wire: Vec<Vec<u8>> = cloud.got.lock().expect("lock").iter().map(|(_, p)| p.clone()).collect();
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("crops")),
        "crops were written: {files:?}"
    );
    for (what, needle, want) in [
        ("the opted-out plate", OPTED, false),
        ("the stranger's plate", STRANGER, true),
    ] {
        let in_files: Vec<_> = files
            .iter()
            .filter(|f| f.to_string_lossy().contains(needle) || contains(&std::fs::read(f).unwrap_or_default(), needle))
            .collect();
        let in_db = in_files.iter().any(|f| f.to_string_lossy().contains("gatehouse.db"));
        let on_wire = wire.iter().any(|m| contains(m, needle));
        let in_log = log.contains(needle);
        if want {
            assert!(
                in_db && on_wire && in_log,
                "{what}: db {in_db}, wire {on_wire}, log {in_log}"
            );
        } else {
            assert!(
                in_files.is_empty() && !on_wire && !in_log,
                "{what} leaked: files {in_files:?}, wire {on_wire}, log {in_log}"
            );
        }
    }
}
