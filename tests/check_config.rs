use crate::support::*;

#[test]
fn three_mistakes_are_reported_at_once_with_their_paths() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        r#"
[site]
timezone = "Mars/Olympus"
[recognize]
manifest = "nowhere/manifest.toml"
[relays.main]
kind = "simulated"
pulse_ms = 20
[[lanes]]
name = "entry"
source = "/dev/video0"
relay = "mian"
"#,
    )
    .expect("write");
    let o = gatehouse(&["check-config", p.to_str().expect("utf8")]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(78), "{out}");
    for path in [
        "site.timezone",
        "recognize.manifest",
        "relays.main.pulse_ms",
        "lanes[0].relay",
    ] {
        assert!(out.contains(path), "missing {path} in:\n{out}");
    }
    assert!(out.contains("fix:"), "{out}");
}

#[test]
fn the_shipped_configs_are_valid() {
    require_models();
    // The reference config encrypts at rest with the unit's credential: given as systemd gives it.
    let creds = tempfile::tempdir().expect("tmp");
    std::fs::write(creds.path().join("gatehouse-master"), [3u8; 32]).expect("credential");
    for f in ["config/gatehouse.toml", "config/demo.toml"] {
        let o = std::process::Command::new(crate::support::bin())
            .args(["check-config", repo().join(f).to_str().expect("utf8")])
            .env("CREDENTIALS_DIRECTORY", creds.path())
            .env_remove("INVOCATION_ID")
            .output()
            .expect("run");
        assert!(o.status.success(), "{f}: {}", text(&o));
    }
}

/// `[secrets]`: a credential systemd did not load, or a development key file under systemd, stops the
/// start with the fix; a development key file inside the data folder is a config error.
#[test]
fn the_master_key_source_is_checked_with_its_fix() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(dir.path(), &dir.path().join("v.avi"), "stop");
    let base = std::fs::read_to_string(&cfg).expect("read");
    let run = |extra: &str, env: &[(&str, &str)]| {
        std::fs::write(&cfg, format!("{base}\n[secrets]\n{extra}\n")).expect("write");
        let mut c = std::process::Command::new(crate::support::bin());
        c.args(["check-config", cfg.to_str().expect("utf8")])
            .env_remove("INVOCATION_ID")
            .env_remove("CREDENTIALS_DIRECTORY");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().expect("run");
        (o.status.code(), text(&o))
    };
    let (code, out) = run("credential = \"gatehouse-master\"", &[]);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("CREDENTIALS_DIRECTORY") && out.contains("seal-master-key"),
        "{out}"
    );
    let dev = dir.path().join("dev-master.key");
    let line = format!("insecure_dev_key_file = \"{}\"", dev.display());
    let (code, out) = run(&line, &[("INVOCATION_ID", "0123")]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("refused under systemd"), "{out}");
    assert!(!dev.exists(), "no key made when refused");
    let (code, out) = run(&line, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("at rest: encrypted") && out.contains("INSECURE"), "{out}");
    let inside = format!("insecure_dev_key_file = \"{}\"", dir.path().join("data/k").display());
    let (code, out) = run(&inside, &[]);
    assert_eq!(code, Some(78), "{out}");
    assert!(
        out.contains("secrets.insecure_dev_key_file") && out.contains("outside"),
        "{out}"
    );
}

#[test]
fn a_model_that_run_would_refuse_on_its_sha256_is_not_ok() {
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(dir.path(), &dir.path().join("v.avi"), "stop");
    // The shipped manifest with absolute model paths and one checksum changed.
    let models = repo().join("models");
    let mut manifest = String::new();
    let mut changed = false;
    for line in std::fs::read_to_string(models.join("manifest.toml"))
        .expect("manifest")
        .lines()
    {
        if let Some(file) = line.strip_prefix("file = \"") {
            manifest.push_str(&format!("file = \"{}/{}\n", models.display(), file));
        } else if line.starts_with("sha256 = ") && !changed {
            manifest.push_str(&format!("sha256 = \"{}\"\n", "0".repeat(64)));
            changed = true;
        } else {
            manifest.push_str(line);
            manifest.push('\n');
        }
    }
    assert!(changed, "the manifest has a sha256 line");
    let bad = dir.path().join("manifest.toml");
    std::fs::write(&bad, manifest).expect("write");
    let cfg_text = std::fs::read_to_string(&cfg).expect("read").replace(
        &models.join("manifest.toml").display().to_string(),
        &bad.display().to_string(),
    );
    std::fs::write(&cfg, cfg_text).expect("write");
    let o = gatehouse(&["check-config", cfg.to_str().expect("utf8")]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(78), "{out}");
    assert!(!out.contains("configuration OK"), "{out}");
    assert!(out.contains("recognize.manifest") && out.contains("sha256"), "{out}");
}

fn privacy_config(dir: &std::path::Path, privacy: &str) -> std::path::PathBuf {
    let p = write_config(dir, &dir.join("v.avi"), "stop");
    let mut text = std::fs::read_to_string(&p).expect("read");
    text.push_str(&format!(
        "\n[privacy]\nrules = \"{}\"\n{privacy}\n",
        repo().join("config/retention/us-states.toml").display()
    ));
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn a_site_in_maine_refuses_to_start_and_new_hampshire_needs_counsel() {
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    let me = privacy_config(dir.path(), "state = \"ME\"");
    for cmd in [&["check-config"][..], &["run", "--config"][..]] {
        let mut args: Vec<&str> = cmd.to_vec();
        args.push(me.to_str().expect("utf8"));
        let o = gatehouse(&args);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(78), "{cmd:?}: {out}");
        assert!(
            out.contains("prohibited in ME") && out.contains("29-A M.R.S. 2117-A"),
            "{out}"
        );
    }
    let nh = privacy_config(dir.path(), "state = \"NH\"");
    let o = gatehouse(&["check-config", nh.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(text(&o).contains("privacy.counsel_acknowledged"), "{}", text(&o));
    let nh_ok = privacy_config(
        dir.path(),
        "state = \"NH\"\ncounsel_acknowledged = \"2026-11-20, J. Doe, counsel\"",
    );
    let o = gatehouse(&["check-config", nh_ok.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn check_config_prints_the_effective_retention_and_why() {
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    let ar = privacy_config(dir.path(), "state = \"AR\"\nretention_days_reads = 90");
    let o = gatehouse(&["check-config", ar.to_str().expect("utf8")]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("retention of plate reads: 60 days (AR caps plate reads at 60 days"),
        "{out}"
    );
    assert!(out.contains("retention of plate images: 60 days"), "{out}");
}

#[test]
fn panel_mistakes_are_named_with_their_fix() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = write_config(dir.path(), &dir.path().join("v.avi"), "stop");
    let mut t = std::fs::read_to_string(&p).expect("read");
    t.push_str("\n[panel]\nlisten = \"everywhere\"\ncert = \"site.pem\"\nidle_minutes = 0\nimage_url_seconds = 86400\nlockout_failures = 1\n");
    std::fs::write(&p, t).expect("write");
    let o = gatehouse(&["check-config", p.to_str().expect("utf8")]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(78), "{out}");
    for path in [
        "panel.listen",
        "panel.cert",
        "panel.idle_minutes",
        "panel.image_url_seconds",
        "panel.lockout_failures",
    ] {
        assert!(out.contains(path), "missing {path} in:\n{out}");
    }
    assert!(out.contains("cert and key must be given together"), "{out}");
}
