//! Backup and restore (issue 24): a backup made while the daemon runs, the data folder wiped, the backup
//! restored onto the fresh folder of a box with a new master key: the daemon decides the demo plates as
//! before and the audit chain verifies. Another site's backup is refused, and so is a folder in use.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{bin, gatehouse_with, logged_decisions, render_video, require_models, text, write_config};

fn gh(creds: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    let out = gatehouse_with(args, Some(creds), stdin);
    (out.status.success(), text(&out))
}

fn ok(creds: &Path, args: &[&str], stdin: &str) -> String {
    let (good, out) = gh(creds, args, stdin);
    assert!(good, "{args:?}: {out}");
    out
}

fn new_credential(dir: &Path, byte: u8) {
    std::fs::create_dir_all(dir).expect("creds");
    std::fs::write(dir.join("gatehouse-master"), [byte; 32]).expect("master");
}

/// Runs the daemon over the video to its end (`during` runs meanwhile); returns its log.
fn run_daemon(creds: &Path, cfg: &Path, during: impl FnOnce()) -> String {
    let mut child = Command::new(bin())
        .args(["run", "--config", cfg.to_str().expect("utf8")])
        .env("CREDENTIALS_DIRECTORY", creds)
        .env_remove("INVOCATION_ID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    during();
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the daemon did not finish the video");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("out");
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    log
}

#[test]
fn backup_wipe_restore_and_the_gate_decides_as_before() {
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    let video = dir.path().join("lane.avi");
    render_video(&video, "HXP4729,MWK3974", "3", "1.5");
    let cfg = write_config(dir.path(), &video, "stop");
    let mut t = std::fs::read_to_string(&cfg).expect("cfg");
    t.push_str("\n[secrets]\ncredential = \"gatehouse-master\"\n");
    std::fs::write(&cfg, &t).expect("cfg");
    let c = cfg.to_str().expect("utf8");
    let creds = dir.path().join("box-1");
    new_credential(&creds, 1);
    let csv = dir.path().join("allow.csv");
    std::fs::write(
        &csv,
        "plate,kind,host,unit,valid_from,valid_until\nHXP4729,resident,Ana Diaz,12B,,\n",
    )
    .expect("csv");
    ok(
        &creds,
        &["allowlist", "--config", c, "import", csv.to_str().expect("utf8")],
        "",
    );
    ok(
        &creds,
        &["user", "--config", c, "add", "alex", "--role", "admin"],
        "quiet river morning\n",
    );
    let keys = dir.path().join("office");
    ok(&creds, &["backup-key", keys.to_str().expect("utf8")], "");
    let (public, private) = (keys.join("backup.pub"), keys.join("backup.key"));

    // Online: the backup is made while the daemon runs the video.
    let file = dir.path().join("site.backup");
    let made = std::cell::RefCell::new(String::new());
    let first = run_daemon(&creds, &cfg, || {
        std::thread::sleep(Duration::from_secs(2));
        *made.borrow_mut() = ok(
            &creds,
            &[
                "backup",
                "--config",
                c,
                "--recipient",
                public.to_str().expect("utf8"),
                "--out",
                file.to_str().expect("utf8"),
            ],
            "",
        );
    });
    let made = made.into_inner();
    assert!(made.contains("allowlist 1") && made.contains("users 1"), "{made}");
    let before = logged_decisions(&first);
    assert_eq!(before, vec!["HXP4729 Open", "MWK3974 Deny"], "{first}");
    let sealed = std::fs::read(&file).expect("backup");
    assert!(!sealed.windows(7).any(|w| w == b"HXP4729"), "the backup is encrypted");

    // The box dies: a new card (empty data folder) and a new master key.
    std::fs::remove_dir_all(dir.path().join("data")).expect("wipe");
    let creds2 = dir.path().join("box-2");
    new_credential(&creds2, 2);
    let restore = |cfg: &str| {
        gh(
            &creds2,
            &[
                "restore",
                "--config",
                cfg,
                "--from",
                file.to_str().expect("utf8"),
                "--key",
                private.to_str().expect("utf8"),
            ],
            "",
        )
    };
    // Another site's box refuses it.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, t.replace("name = \"test site\"", "name = \"elm gate\"")).expect("cfg");
    let (good, out) = restore(other.to_str().expect("utf8"));
    assert!(
        !good && out.contains("another site") && out.contains("--other-site"),
        "{out}"
    );
    // The office's other key cannot open it.
    ok(
        &creds2,
        &["backup-key", keys.to_str().expect("utf8"), "--id", "wrong"],
        "",
    );
    let (good, out) = gh(
        &creds2,
        &[
            "restore",
            "--config",
            c,
            "--from",
            file.to_str().expect("utf8"),
            "--key",
            keys.join("wrong.key").to_str().expect("utf8"),
        ],
        "",
    );
    assert!(!good && out.contains("does not open with this key"), "{out}");
    std::fs::remove_dir_all(dir.path().join("data")).ok();

    let (good, out) = restore(c);
    assert!(good, "{out}");
    assert!(out.contains("audit log OK"), "{out}");
    // Not twice onto the same folder.
    let (good, out) = restore(c);
    assert!(!good && out.contains("not fresh"), "{out}");
    let verified = ok(&creds2, &["audit", "--config", c, "verify"], "");
    assert!(verified.contains("audit log OK"), "{verified}");
    let users = ok(&creds2, &["user", "--config", c, "list"], "");
    assert!(users.contains("alex"), "{users}");

    let second = run_daemon(&creds2, &cfg, || {});
    assert_eq!(
        logged_decisions(&second),
        before,
        "the restored gate decides as before:\n{second}"
    );
}
