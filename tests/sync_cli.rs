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

/// `gatehouse dsar sign` (for the cloud team): the command it prints passes the device's own verifier with
/// the public key, names the plate as normalised, and a tampered copy does not; a lifetime past what
/// devices accept and a plate with odd characters are refused with the fix.
#[test]
fn dsar_sign_makes_a_command_the_device_verifies() {
    use gatehouse::sync::command::{self, CommandAction};
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
    let key = keys.join("cloud-1.key");
    let sign = |extra: &[&str]| {
        let mut args = vec![
            "dsar",
            "sign",
            "--key",
            key.to_str().expect("utf8"),
            "--key-id",
            "cloud-1",
            "--audience",
            "oak/*",
            "--plate",
            "dsr-123",
            "--purpose",
            "owner request 2026-118",
            "--requested-by",
            "privacy@oak",
        ];
        args.extend_from_slice(extra);
        gatehouse(&args)
    };
    let o = sign(&["--action", "delete"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut trusted = gatehouse::sync::keys::TrustedKeys::default();
    trusted.add(
        "cloud-1",
        gatehouse::sync::keys::read_verifying(&keys.join("cloud-1.pub")).expect("pub"),
    );
    let c = command::verify(&o.stdout, &trusted, "oak/gate-1", chrono::Utc::now()).expect("the device accepts it");
    assert_eq!((c.action, c.plate.as_str()), (CommandAction::DsarDelete, "DSR123"));
    assert_eq!(c.purpose, "owner request 2026-118");
    let tampered = String::from_utf8_lossy(&o.stdout).replace("DSR123", "DSR124");
    assert!(command::verify(tampered.as_bytes(), &trusted, "oak/gate-1", chrono::Utc::now()).is_err());
    assert!(
        command::verify(&o.stdout, &trusted, "elm/gate-1", chrono::Utc::now()).is_err(),
        "another site's device refuses it"
    );

    let o = sign(&["--action", "export", "--expires-hours", "100"]);
    assert!(!o.status.success() && text(&o).contains("use 1 to 72"), "{}", text(&o));
    let o = gatehouse(&[
        "dsar",
        "sign",
        "--key",
        key.to_str().expect("utf8"),
        "--key-id",
        "cloud-1",
        "--audience",
        "oak/*",
        "--action",
        "export",
        "--plate",
        "Ö!",
        "--purpose",
        "x",
        "--requested-by",
        "y",
    ]);
    assert!(!o.status.success() && text(&o).contains("A-Z and 0-9"), "{}", text(&o));
}
