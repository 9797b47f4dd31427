//! Encryption at rest (issue 24): someone who copies the data folder of a running gate (the card pulled
//! from the box) finds no plate text, no TOTP secret and no key material in any file, WAL included; the
//! same scan over a site run in clear finds each of them, so the scan works. The master key comes from a
//! systemd credential (`$CREDENTIALS_DIRECTORY`, as the unit's `LoadCredentialEncrypted=` sets it up).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use gatehouse::secrets::{sealed, AtRest};

use crate::support::{bin, gatehouse_with, render_video, require_models, text, write_config, Kill};

/// 32 bytes the scan can look for.
const MASTER: &[u8; 32] = b"gatehouse-test-master-key-32byte";
const PLATES: [&str; 2] = ["HXP4729", "MWK3974"];

fn cli(cfg: &Path, creds: Option<&Path>, args: &[&str], stdin: &str) -> String {
    let cfg = cfg.to_str().expect("utf8");
    let full: Vec<&str> = match args[0] {
        "check-config" => vec![args[0], cfg],
        _ => [&[args[0], "--config", cfg], &args[1..]].concat(),
    };
    let out = gatehouse_with(&full, creds, stdin);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The TOTP secret `user add` printed.
fn totp_of(added: &str) -> String {
    added
        .lines()
        .find_map(|l| l.strip_prefix("second factor key: "))
        .expect("a TOTP secret")
        .trim()
        .to_string()
}

struct Site {
    copy: PathBuf,
    totp: String,
    log: String,
}

/// Sets a site up (allowlist, an admin with TOTP, the panel), runs the daemon over two passes, kills it
/// with SIGKILL (so the WAL is left as a power cut leaves it) and copies its data folder.
fn run_site(dir: &Path, encrypted: bool) -> Site {
    let video = dir.join("lane.avi");
    render_video(&video, &PLATES.join(","), "3", "1.5");
    let cfg = write_config(dir, &video, "stop");
    let port = crate::support::broker::free_port();
    let mut t = std::fs::read_to_string(&cfg).expect("cfg");
    t.push_str(&format!(
        "\n[panel]\nlisten = \"127.0.0.1:{port}\"\nhostnames = [\"localhost\"]\n"
    ));
    let creds = dir.join("credentials");
    if encrypted {
        std::fs::create_dir_all(&creds).expect("creds");
        std::fs::write(creds.join("gatehouse-master"), MASTER).expect("master");
        t.push_str("\n[secrets]\ncredential = \"gatehouse-master\"\n");
    }
    std::fs::write(&cfg, t).expect("cfg");
    let creds = encrypted.then_some(creds.as_path());
    let check = cli(&cfg, creds, &["check-config"], "");
    assert_eq!(
        check.contains("at rest: encrypted"),
        encrypted,
        "check-config says what is encrypted:\n{check}"
    );
    let csv = dir.join("allow.csv");
    std::fs::write(
        &csv,
        "plate,kind,host,unit,valid_from,valid_until\nHXP4729,resident,Ana Diaz,12B,,\n",
    )
    .expect("csv");
    cli(&cfg, creds, &["allowlist", "import", csv.to_str().expect("utf8")], "");
    let added = cli(
        &cfg,
        creds,
        &["user", "add", "alex", "--role", "admin"],
        "quiet river morning\n",
    );
    let totp = totp_of(&added);

    let mut c = Command::new(bin());
    c.args(["run", "--config", cfg.to_str().expect("utf8")])
        .env_remove("INVOCATION_ID")
        .env_remove("CREDENTIALS_DIRECTORY");
    if let Some(d) = creds {
        c.env("CREDENTIALS_DIRECTORY", d);
    }
    let log_path = dir.join("daemon.log");
    let log_file = std::fs::File::create(&log_path).expect("log");
    let mut daemon = Kill(
        c.stdout(Stdio::from(log_file.try_clone().expect("log")))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn"),
    );
    let start = std::time::Instant::now();
    let decided = |l: &str| l.contains("decision") && l.contains(PLATES[1]);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.lines().any(decided) {
            break;
        }
        assert!(
            daemon.0.try_wait().expect("wait").is_none(),
            "the daemon stopped before deciding:\n{log}"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no decision:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The event is written a moment after its decision; then the power goes.
    std::thread::sleep(Duration::from_secs(2));
    daemon.0.kill().expect("kill -9");
    let _ = daemon.0.wait();
    let copy = dir.join("card");
    copy_dir(&dir.join("data"), &copy);
    Site {
        copy,
        totp,
        log: std::fs::read_to_string(&log_path).unwrap_or_default(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let p = e.path();
        let ft = e.file_type().expect("type");
        if ft.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else if ft.is_file() {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Which needles (by name) turn up in which files of `dir`.
fn scan(dir: &Path, needles: &[(&str, Vec<u8>)]) -> Vec<String> {
    let mut all = Vec::new();
    files(dir, &mut all);
    let mut found = Vec::new();
    for f in &all {
        let bytes = std::fs::read(f).expect("read");
        let name = f.strip_prefix(dir).expect("inside").display().to_string();
        for (what, n) in needles {
            if contains(&bytes, n) {
                found.push(format!("{what} in {name}"));
            }
        }
        // A JPEG in clear (a crop) starts FF D8 FF.
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            found.push(format!("a picture in clear: {name}"));
        }
    }
    found
}

/// The secrets a site holds, as the scan looks for them: plate text, the resident's name, the TOTP secret,
/// the plate key (hex), the audit key (base64), any PEM private key, the master key (raw and hex).
fn needles(site: &Site, plate_key: &str, audit_key: &str) -> Vec<(&'static str, Vec<u8>)> {
    let mut n: Vec<(&str, Vec<u8>)> = PLATES.iter().map(|p| ("plate text", p.as_bytes().to_vec())).collect();
    n.push(("a resident's name", b"Ana Diaz".to_vec()));
    n.push(("the TOTP secret", site.totp.as_bytes().to_vec()));
    n.push(("the plate key", plate_key.trim().as_bytes().to_vec()));
    n.push(("the audit key", audit_key.trim().as_bytes().to_vec()));
    n.push(("a private key", b"PRIVATE KEY".to_vec()));
    n.push(("the master key", MASTER.to_vec()));
    n.push(("the master key", hex::encode(MASTER).into_bytes()));
    n
}

#[test]
fn a_copied_data_folder_holds_no_plate_totp_secret_or_key_in_clear() {
    require_models();
    // In clear: the scan finds each kind of secret, so it would find them below.
    let plain_dir = tempfile::tempdir().expect("tmp");
    let plain = run_site(plain_dir.path(), false);
    let pk = std::fs::read_to_string(plain.copy.join("plate.key")).expect("plate key");
    let ak = std::fs::read_to_string(plain.copy.join("audit-device.key")).expect("audit key");
    let found = scan(&plain.copy, &needles(&plain, &pk, &ak));
    for what in [
        "plate text",
        "a resident's name",
        "the TOTP secret",
        "the plate key",
        "the audit key",
        "a private key",
        "a picture in clear",
    ] {
        assert!(
            found.iter().any(|f| f.starts_with(what)),
            "the scan finds {what} in a site run in clear: {found:?}\n{}",
            plain.log
        );
    }

    // Encrypted: nothing.
    let enc_dir = tempfile::tempdir().expect("tmp");
    let enc = run_site(enc_dir.path(), true);
    let keys = AtRest::from_master(MASTER, "test");
    let open = |name: &str| {
        let bytes = std::fs::read(enc.copy.join(name)).expect(name);
        assert!(sealed::is_sealed(&bytes), "{name} is sealed");
        String::from_utf8(sealed::open(&keys, name, &bytes).expect("opens with the master key")).expect("utf8")
    };
    let (pk, ak) = (open("plate.key"), open("audit-device.key"));
    let mut all = Vec::new();
    files(&enc.copy, &mut all);
    let names: Vec<String> = all.iter().map(|p| p.display().to_string()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("gatehouse.db-wal")),
        "the WAL is there to scan (the daemon was killed): {names:?}"
    );
    assert!(
        names.iter().any(|n| n.contains("/crops/")),
        "crops are there to scan: {names:?}"
    );
    let found = scan(&enc.copy, &needles(&enc, &pk, &ak));
    assert!(found.is_empty(), "found in the encrypted data folder: {found:?}");
    // The audit key's public half is public; its private half did not leak into it.
    assert!(base64::engine::general_purpose::STANDARD.decode(ak.trim()).is_ok());

    // And the data is all there for the device that holds the key: both passes decided and stored.
    let conn = rusqlite::Connection::open(enc.copy.join("gatehouse.db")).expect("db");
    conn.execute_batch(&keys.sqlcipher_key_sql()).expect("key");
    let mut stmt = conn
        .prepare("SELECT plate, action FROM events ORDER BY at")
        .expect("query");
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        rows,
        vec![
            (PLATES[0].to_string(), "open".to_string()),
            (PLATES[1].to_string(), "deny".to_string())
        ],
        "{}",
        enc.log
    );
    // Without the key the file is noise.
    let bare = rusqlite::Connection::open(enc.copy.join("gatehouse.db")).expect("db");
    assert!(bare
        .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
        .is_err());
}

/// Switching encryption on for a site that ran in clear: the first command that opens the data folder
/// with `[secrets]` encrypts the database in place and seals the key files it reads; nothing is lost and
/// the audit chain still verifies.
#[test]
fn a_site_run_in_clear_is_encrypted_in_place_when_secrets_are_added() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(dir.path(), &dir.path().join("v.avi"), "stop");
    let csv = dir.path().join("allow.csv");
    std::fs::write(
        &csv,
        "plate,kind,host,unit,valid_from,valid_until\nHXP4729,resident,Ana Diaz,12B,,\n",
    )
    .expect("csv");
    cli(&cfg, None, &["allowlist", "import", csv.to_str().expect("utf8")], "");
    let added = cli(
        &cfg,
        None,
        &["user", "add", "alex", "--role", "admin"],
        "quiet river morning\n",
    );
    let totp = totp_of(&added);
    let data = dir.path().join("data");
    let pk = std::fs::read_to_string(data.join("plate.key")).expect("plate key");
    let ak = std::fs::read_to_string(data.join("audit-device.key")).expect("audit key");
    assert!(std::fs::read(data.join("gatehouse.db"))
        .expect("db")
        .starts_with(b"SQLite format 3\0"));

    let creds = dir.path().join("credentials");
    std::fs::create_dir_all(&creds).expect("creds");
    std::fs::write(creds.join("gatehouse-master"), MASTER).expect("master");
    let mut t = std::fs::read_to_string(&cfg).expect("cfg");
    t.push_str("\n[secrets]\ncredential = \"gatehouse-master\"\n");
    std::fs::write(&cfg, t).expect("cfg");
    let check = cli(&cfg, Some(&creds), &["check-config"], "");
    assert!(check.contains("encrypted at the next start"), "{check}");

    let listed = cli(&cfg, Some(&creds), &["allowlist", "export"], "");
    assert!(listed.contains("encrypted the database"), "said once: {listed}");
    assert!(listed.contains("HXP4729") && listed.contains("Ana Diaz"), "{listed}");
    let verified = cli(&cfg, Some(&creds), &["audit", "verify"], "");
    assert!(verified.contains("audit log OK"), "{verified}");
    assert!(!std::fs::read(data.join("gatehouse.db"))
        .expect("db")
        .starts_with(b"SQLite format 3\0"));
    for f in ["plate.key", "audit-device.key"] {
        assert!(
            sealed::is_sealed(&std::fs::read(data.join(f)).expect("key")),
            "{f} sealed"
        );
    }
    let site = Site {
        copy: data.clone(),
        totp,
        log: String::new(),
    };
    let found = scan(&data, &needles(&site, &pk, &ak));
    assert!(found.is_empty(), "left in clear: {found:?}");
    // Later commands open it as it is now.
    let again = cli(&cfg, Some(&creds), &["allowlist", "export"], "");
    assert!(!again.contains("WARN"), "nothing left to encrypt: {again}");
    assert!(listed.ends_with(&again), "the same list: {again}");
}
