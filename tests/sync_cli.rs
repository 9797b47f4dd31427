use crate::support::*;

/// Installer's end-to-end check of allowlist signing: keys, a signed snapshot applied with the trust
/// store from [sync], a replay refused, and command-line trust refused when [sync] is configured.
#[test]
fn signed_snapshot_applies_with_configured_trust_and_replays_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let keys = dir.path().join("keys");
    let o = gatehouse(&[
        "keys",
        "generate",
        "--dir",
        keys.to_str().expect("utf8"),
        "--id",
        "cloud-1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let cfg = write_config(dir.path(), &dir.path().join("v.avi"), "stop");
    let mut t = std::fs::read_to_string(&cfg).expect("cfg");
    t.push_str(&format!(
        "\n[sync]\ndevice = \"oak/gate-1\"\ntrusted_keys = {{ \"cloud-1\" = \"{}\" }}\n",
        keys.join("cloud-1.pub").display()
    ));
    std::fs::write(&cfg, t).expect("cfg");
    let c = cfg.to_str().expect("utf8");
    let csv = dir.path().join("list.csv");
    std::fs::write(&csv, "plate,kind\nABC123,resident\nBLK666,blocked\n").expect("csv");
    let o = gatehouse(&[
        "allowlist",
        "--config",
        c,
        "sign",
        "--key",
        keys.join("cloud-1.key").to_str().expect("utf8"),
        "--key-id",
        "cloud-1",
        "--audience",
        "oak/*",
        "--version",
        "7",
        "--csv",
        csv.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let env = dir.path().join("snap.json");
    std::fs::write(&env, &o.stdout).expect("envelope");
    let e = env.to_str().expect("utf8");

    let o = gatehouse(&["allowlist", "--config", c, "apply", e]);
    assert!(o.status.success() && text(&o).contains("version 7"), "{}", text(&o));
    let o = gatehouse(&["allowlist", "--config", c, "apply", e]);
    assert!(
        !o.status.success() && text(&o).contains("not newer"),
        "replay: {}",
        text(&o)
    );
    let o = gatehouse(&[
        "allowlist",
        "--config",
        c,
        "apply",
        e,
        "--trust",
        &format!("x={}", keys.join("cloud-1.pub").display()),
    ]);
    assert!(!o.status.success() && text(&o).contains("[sync]"), "{}", text(&o));
    let o = gatehouse(&["allowlist", "--config", c, "list"]);
    assert!(
        text(&o).contains("ABC123") && text(&o).contains("BLK666"),
        "{}",
        text(&o)
    );
}
