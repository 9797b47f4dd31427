//! check-config's behaviour on whole configs: every problem named with its key and fix.

use super::lanes::parse_source;
use super::*;

const GOOD: &str = r#"
[site]
name = "test"
timezone = "America/Chicago"
data_dir = "data"
[recognize]
manifest = "Cargo.toml"
[relays.main]
kind = "simulated"
[[lanes]]
name = "entry"
source = "demo.avi"
relay = "main"
"#;

fn base() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn good_config_parses_with_defaults() {
    let c = parse(GOOD, &base()).expect("valid");
    assert_eq!(c.lanes.len(), 1);
    assert_eq!(c.lanes[0].source, SourceSpec::File(base().join("demo.avi")));
    assert_eq!(c.relays[0].safe_state, SafeState::Closed);
    assert_eq!(c.track.min_reads, 2);
    assert_eq!(c.site.data_dir, base().join("data"));
    assert!(
        c.lanes[0].reconnect_max <= Duration::from_secs(5),
        "a camera back from an outage is probed within 5 s"
    );
}

#[test]
fn motion_gating_is_on_with_its_table_and_its_mistakes_are_named() {
    let on = format!("{GOOD}[lanes.motion]\nhold_ms = 3000\n");
    let c = parse(&on, &base()).expect("valid");
    let m = c.lanes[0].motion.as_ref().expect("on with its table");
    assert_eq!(
        (m.hold, m.idle_read, m.min_changed),
        (Duration::from_secs(3), Duration::from_secs(2), 0.002)
    );
    assert!(c.summary().contains("read on motion (hold 3000 ms)"), "{}", c.summary());
    assert!(
        parse(GOOD, &base()).expect("valid").lanes[0].motion.is_none(),
        "off by default"
    );
    let off = format!("{GOOD}[lanes.motion]\nenabled = false\n");
    assert!(parse(&off, &base()).expect("valid").lanes[0].motion.is_none());
    let bad = format!("{GOOD}[lanes.motion]\nmin_changed = 0.9\nidle_read_ms = 10\n");
    let text = parse(&bad, &base()).expect_err("invalid").to_string();
    assert!(text.contains("lanes[0].motion.min_changed"), "{text}");
    assert!(text.contains("lanes[0].motion.idle_read_ms"), "{text}");
    let unknown = format!("{GOOD}[lanes.motion]\nthreshold = 3\n");
    assert!(parse(&unknown, &base()).is_err(), "unknown keys are refused");
}

#[test]
fn gate_inputs_are_typed_and_their_mistakes_name_key_and_fix() {
    let good = format!(
        "{GOOD}[inputs.exit]\nkind = \"simulated\"\nrole = \"exit_button\"\nrelay = \"main\"\nfile = \"sim/exit\"\n\
         [inputs.loop]\nkind = \"gpio\"\nchip = \"/dev/gpiochip0\"\nline = 17\nactive_low = true\nrole = \"presence\"\nlane = \"entry\"\n\
         open_only_present = true\n\
         [inputs.gate]\nkind = \"gpio\"\nchip = \"/dev/gpiochip0\"\nline = 27\nrole = \"gate_position\"\nrelay = \"main\"\nheld_open_s = 90\n"
    );
    let c = parse(&good, &base()).expect("valid");
    assert_eq!(c.inputs.len(), 3);
    let exit = c.inputs.iter().find(|i| i.name == "exit").expect("exit");
    assert_eq!(
        exit.kind,
        InputKind::Simulated {
            file: base().join("sim/exit")
        }
    );
    assert_eq!(exit.debounce, Duration::from_millis(50));
    let gate = c.inputs.iter().find(|i| i.name == "gate").expect("gate");
    assert_eq!(
        gate.role,
        InputRole::GatePosition {
            relay: "main".into(),
            open_within: Duration::from_secs(5),
            held_open: Duration::from_secs(90)
        }
    );
    assert!(c.inputs.iter().any(|i| i.active_low
        && i.role
            == InputRole::Presence {
                lane: "entry".into(),
                open_wait: Some(Duration::from_secs(20))
            }));
    let summary = c.summary();
    assert!(
        summary.contains("input loop: GPIO line 17 on /dev/gpiochip0, active low, debounce 50 ms, loop detector of lane entry; a decided opening waits up to 20 s"),
        "{summary}"
    );

    let bad = format!(
        "{GOOD}[inputs.a]\nkind = \"gpio\"\nrole = \"exit_button\"\nrelay = \"gate9\"\n\
         [inputs.b]\nkind = \"simulated\"\nrole = \"doorbell\"\nfile = \"x\"\n\
         [inputs.c]\nkind = \"simulated\"\nrole = \"presence\"\nfile = \"x\"\n\
         [inputs.d]\nkind = \"simulated\"\nrole = \"gate_position\"\nrelay = \"main\"\nfile = \"x\"\nopen_within_ms = 10\n\
         [inputs.e]\nkind = \"simulated\"\nrole = \"gate_position\"\nrelay = \"main\"\nfile = \"y\"\n\
         [inputs.f]\nkind = \"simulated\"\nrole = \"exit_button\"\nrelay = \"main\"\nfile = \"z\"\nopen_only_present = true\n\
         [inputs.g]\nkind = \"simulated\"\nrole = \"presence\"\nlane = \"entry\"\nfile = \"w\"\nopen_only_present = true\npresent_wait_s = 0\n"
    );
    let err = parse(&bad, &base()).expect_err("invalid");
    let issues: Vec<(String, String)> = err.issues().iter().map(|i| (i.path.clone(), i.fix.clone())).collect();
    for (path, fix) in [
        ("inputs.a.chip", "chip = \"/dev/gpiochip0\""),
        ("inputs.a.relay", "main"),
        ("inputs.b.role", "exit_button"),
        ("inputs.c.lane", "entry"),
        ("inputs.d.open_within_ms", "500 to 120000"),
        ("inputs.e.role", "one position contact per gate"),
        ("inputs.f.open_only_present", "role = \"presence\""),
        ("inputs.g.present_wait_s", "1 to 600"),
    ] {
        assert!(
            issues.iter().any(|(p, f)| p == path && f.contains(fix)),
            "{path} with {fix:?} in {issues:?}"
        );
    }
}

#[test]
fn three_mistakes_are_reported_together_with_paths() {
    let bad = GOOD
        .replace("timezone = \"America/Chicago\"", "timezone = \"Mars/Olympus\"")
        .replace("relay = \"main\"", "relay = \"mian\"")
        .replace("kind = \"simulated\"", "kind = \"simulated\"\npulse_ms = 5");
    let err = parse(&bad, &base()).expect_err("invalid");
    let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths.len(), 3, "{err}");
    assert!(paths.contains(&"site.timezone"));
    assert!(paths.contains(&"lanes[0].relay"));
    assert!(paths.contains(&"relays.main.pulse_ms"));
    assert!(err.to_string().contains("fix:"));
}

#[test]
fn the_allowlist_maximum_age_defaults_to_a_week_and_is_range_checked() {
    let sync = |extra: &str| {
        format!(
            "{GOOD}\n[sync]\ndevice = \"oak/gate-1\"\ntrusted_keys = {{ \"k\" = \"config/keys/cloud-2026a.pub\" }}\n{extra}"
        )
    };
    let c = parse(&sync(""), &base()).expect("valid");
    assert_eq!(
        c.sync.expect("sync").allowlist_max_age,
        Some(chrono::Duration::hours(168))
    );
    let off = parse(&sync("allowlist_max_age_hours = 0\n"), &base()).expect("valid");
    assert_eq!(off.sync.expect("sync").allowlist_max_age, None);
    let err = parse(&sync("allowlist_max_age_hours = 100000\n"), &base()).expect_err("invalid");
    assert_eq!(err.issues()[0].path, "sync.allowlist_max_age_hours", "{err}");
    assert!(err.issues()[0].fix.contains("0 for no alert"), "{err}");
}

#[test]
fn the_database_reserve_is_bounded() {
    let c = parse(GOOD, &base()).expect("valid");
    assert_eq!(c.site.db_reserve_bytes, 8 * 1024 * 1024, "default 8 MB");
    let off = GOOD.replace("data_dir = \"data\"", "data_dir = \"data\"\ndb_reserve_mb = 0");
    assert_eq!(parse(&off, &base()).expect("valid").site.db_reserve_bytes, 0);
    let bad = GOOD.replace("data_dir = \"data\"", "data_dir = \"data\"\ndb_reserve_mb = 5000");
    let err = parse(&bad, &base()).expect_err("invalid");
    let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["site.db_reserve_mb"], "{err}");
    assert!(err.to_string().contains("use 0 to 4096"), "{err}");
}

#[test]
fn mqtt_link_mistakes_name_their_keys() {
    let sync = format!(
        "{GOOD}\n[sync]\ndevice = \"oak/gate-1\"\ntrusted_keys = {{ \"k\" = \"config/keys/cloud-2026a.pub\" }}\n\
         [sync.mqtt]\nbroker = \"mqtt://plain:1883\"\nca = \"Cargo.toml\"\ncert = \"nope.pem\"\nkey = \"Cargo.toml\"\n\
         window = 0\n"
    );
    let err = parse(&sync, &base()).expect_err("invalid");
    let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        ["sync.mqtt.broker", "sync.mqtt.cert", "sync.mqtt.window"],
        "{err}"
    );
    assert!(err.to_string().contains("TLS is required"), "{err}");
    let good = sync
        .replace("mqtt://plain:1883", "mqtts://mqtt.example.com")
        .replace("nope.pem", "Cargo.toml")
        .replace("window = 0", "window = 50");
    let c = parse(&good, &base()).expect("valid");
    let s = c.sync.expect("sync");
    let m = s.mqtt.as_ref().expect("mqtt");
    assert_eq!((m.host.as_str(), m.port, m.window), ("mqtt.example.com", 8883, 50));
    assert_eq!(s.mqtt_id(), "oak.gate-1");
}

#[test]
fn plates_per_frame_default_to_two_and_are_range_checked() {
    let c = parse(GOOD, &base()).expect("valid");
    assert_eq!(c.recognize.max_plates, 2);
    let one = GOOD.replace("manifest = \"Cargo.toml\"", "manifest = \"Cargo.toml\"\nmax_plates = 1");
    assert_eq!(parse(&one, &base()).expect("1 is fine").recognize.max_plates, 1);
    for bad in ["0", "9"] {
        let text = GOOD.replace(
            "manifest = \"Cargo.toml\"",
            &format!("manifest = \"Cargo.toml\"\nmax_plates = {bad}"),
        );
        let err = parse(&text, &base()).expect_err("invalid");
        assert_eq!(err.issues()[0].path, "recognize.max_plates", "{err}");
        assert!(err.to_string().contains("use 1 to 8"), "{err}");
    }
}

#[test]
fn two_row_plate_setting_defaults_and_is_range_checked() {
    let c = parse(GOOD, &base()).expect("valid");
    assert_eq!(
        c.recognize.two_line_max_aspect,
        crate::config::DEFAULT_TWO_LINE_MAX_ASPECT
    );
    let off = GOOD.replace(
        "manifest = \"Cargo.toml\"",
        "manifest = \"Cargo.toml\"\ntwo_line_max_aspect = 0",
    );
    assert_eq!(
        parse(&off, &base()).expect("0 is off").recognize.two_line_max_aspect,
        0.0
    );
    let bad = GOOD.replace(
        "manifest = \"Cargo.toml\"",
        "manifest = \"Cargo.toml\"\ntwo_line_max_aspect = 0.5",
    );
    let err = parse(&bad, &base()).expect_err("invalid");
    assert_eq!(err.issues()[0].path, "recognize.two_line_max_aspect", "{err}");
    assert!(err.to_string().contains("e.g. 1.8"), "{err}");
}

#[test]
fn unknown_keys_are_named() {
    let bad = GOOD.replace("source = \"demo.avi\"", "sorce = \"demo.avi\"");
    let err = parse(&bad, &base()).expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("lanes[0]"), "{text}");
    assert!(text.contains("sorce"), "{text}");
}

#[test]
fn syntax_errors_name_the_line() {
    let err = parse("[site\nname=1", &base()).expect_err("invalid");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn sources_are_classified() {
    let b = Path::new("/etc/gatehouse");
    assert_eq!(
        parse_source("rtsp://cam/1", b),
        Ok(SourceSpec::Url("rtsp://cam/1".into()))
    );
    assert_eq!(
        parse_source("/dev/video2", b),
        Ok(SourceSpec::Device("/dev/video2".into()))
    );
    assert_eq!(
        parse_source("v4l2:/dev/video0", b),
        Ok(SourceSpec::Device("/dev/video0".into()))
    );
    assert_eq!(
        parse_source("file:a.mp4", b),
        Ok(SourceSpec::File("/etc/gatehouse/a.mp4".into()))
    );
    assert!(parse_source("ftp://x", b).is_err());
    assert_eq!(
        parse_source(
            "gst: rtspsrc location=rtsp://cam/1 ! decodebin ! videoconvert ! appsink",
            b
        ),
        Ok(SourceSpec::Pipeline(
            "rtspsrc location=rtsp://cam/1 ! decodebin ! videoconvert ! appsink".into()
        ))
    );
    let e =
        parse_source("gst:rtspsrc location=rtsp://cam/1 ! decodebin ! autovideosink", b).expect_err("not an appsink");
    assert!(e.contains("must end in an appsink"), "{e}");
}

#[test]
fn pipeline_secrets_stay_out_of_logs() {
    assert_eq!(
        crate::config::redact_pipeline(
            "rtspsrc location=rtsp://admin:secret@10.0.0.5/live user-id=admin user-pw=hunter2 ! appsink"
        ),
        "rtspsrc location=rtsp://***@10.0.0.5/live user-id=admin user-pw=*** ! appsink"
    );
}
