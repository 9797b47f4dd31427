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
    for f in ["config/gatehouse.toml", "config/demo.toml"] {
        let o = gatehouse(&["check-config", repo().join(f).to_str().expect("utf8")]);
        assert!(o.status.success(), "{f}: {}", text(&o));
    }
}
