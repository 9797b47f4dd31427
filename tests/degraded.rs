//! The daemon without its models (a corrupt model file on the card): it does not exit into a restart loop
//! that would take the panel and the exit button with it. It runs, reads no plate (so no plate opens the
//! gate), raises a standing alert naming the file and the fix, and the exit button still opens the gate.

use std::time::Duration;

use crate::inputs::{pulses, rows};
use crate::support::*;

/// A copy of the shipped models in `dir/models` with `manifest` (the shipped one, maybe edited) as their
/// manifest; returns the folder.
fn copy_models(dir: &std::path::Path, manifest: &str) -> std::path::PathBuf {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).expect("dir");
    for line in manifest.lines() {
        if let Some(f) = line.strip_prefix("file = \"").and_then(|l| l.strip_suffix('"')) {
            std::fs::copy(repo().join("models").join(f), models.join(f)).expect("copy model");
        }
    }
    std::fs::write(models.join("manifest.toml"), manifest).expect("manifest");
    models
}

/// The reader's charset line as the shipped manifest has it, and the same with the charset reversed (every
/// class then maps to another character: a reader that loads and runs but misreads).
fn reader_charset_lines() -> (String, String) {
    let charset = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let reversed: String = charset.chars().rev().collect();
    (format!("charset = \"{charset}\""), format!("charset = \"{reversed}\""))
}

/// A looping lane of the listed car HXP4729 whose config loads the models in `models`, with `extra`
/// appended to the config; returns the config's path.
fn lane_with_models(dir: &std::path::Path, models: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let video = dir.join("lane.avi");
    render_video(&video, "HXP4729", "2", "1");
    let cfg = write_config(dir, &video, "loop");
    let t = std::fs::read_to_string(&cfg).expect("cfg").replace(
        &repo().join("models/manifest.toml").display().to_string(),
        &models.join("manifest.toml").display().to_string(),
    );
    std::fs::write(&cfg, t + extra).expect("cfg");
    let o = gatehouse(&["allowlist", "--config", cfg.to_str().expect("utf8"), "add", "HXP4729"]);
    assert!(o.status.success(), "{}", text(&o));
    cfg
}

#[test]
fn a_corrupt_model_leaves_the_gate_to_guards_and_buttons_with_an_alert() {
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    // A copy of the models with one byte of the reader changed.
    let listed = std::fs::read_to_string(repo().join("models/manifest.toml")).expect("manifest");
    let models = copy_models(dir.path(), &listed);
    // The reader the manifest names (its file and the name check-config must give).
    let reader_file = listed
        .split("[[model]]")
        .find(|block| block.contains("role = \"recognizer\""))
        .and_then(|block| block.lines().find_map(|l| l.strip_prefix("file = \"")))
        .and_then(|l| l.strip_suffix('"'))
        .expect("the manifest names a recognizer file");
    let reader = models.join(reader_file);
    let mut bytes = std::fs::read(&reader).expect("reader");
    bytes[1000] ^= 0x5a;
    std::fs::write(&reader, bytes).expect("corrupt");

    let exit = dir.path().join("exit");
    std::fs::write(&exit, "0").expect("write");
    let cfg = lane_with_models(
        dir.path(),
        &models,
        &format!(
            "\n[inputs.exit]\nkind = \"simulated\"\nrole = \"exit_button\"\nrelay = \"main\"\nfile = \"{}\"\ndebounce_ms = 20\n",
            exit.display()
        ),
    );
    let c = cfg.to_str().expect("utf8");
    let o = gatehouse(&["check-config", c]);
    assert!(
        !o.status.success() && text(&o).contains(&format!("{reader_file} has sha256")),
        "check-config names the bad model: {}",
        text(&o)
    );

    let (mut daemon, (log, _)) = spawn_logged(&cfg);
    let logged = |needle: &str| log.lock().expect("lock").iter().any(|l| l.contains(needle));
    wait_for("the alert", Duration::from_secs(30), &log, || {
        logged("ALERT: lane entry: plates cannot be read") && logged("input changed")
    });
    // The listed car passes (twice, the video loops): nothing is read, nothing opens.
    std::thread::sleep(Duration::from_secs(6));
    let data = dir.path().join("data");
    let plate_opens = pulses(&data) as i64;
    crate::support::faults::row(
        "corrupt model file",
        "ran on reading no plate, standing alert 'recognition' naming the file; panel, exit button, events and cloud link went on",
        None,
        0,
        plate_opens,
    );
    assert_eq!(pulses(&data), 0, "no plate opened the gate");
    // The exit button still does.
    std::fs::write(&exit, "1").expect("press");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&exit, "0").expect("release");
    let db = data.join("gatehouse.db");
    wait_for("the exit button's opening", Duration::from_secs(10), &log, || {
        rows(&db, "SELECT action || ':' || reason_code FROM events").contains(&"open:exit_button".to_string())
    });
    assert_eq!(pulses(&data), 1);
    assert!(daemon.0.try_wait().expect("wait").is_none(), "the daemon runs on");
}

/// A reader whose models load and run but misread (here the real reader with its manifest's charset
/// reversed, so every class maps to another character, as broken integer kernels on an unexpected CPU
/// can make it read): the lane's start-up check reads the rendered check plate, refuses the reader, and
/// raises the recognition alert naming what it read. No plate opens the gate.
#[test]
fn a_reader_that_misreads_a_clean_plate_at_start_up_is_not_trusted_with_the_gate() {
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    let listed = std::fs::read_to_string(repo().join("models/manifest.toml")).expect("manifest");
    let (line, reversed) = reader_charset_lines();
    assert!(listed.contains(&line), "the manifest's reader has the plate charset");
    let models = copy_models(dir.path(), &listed.replace(&line, &reversed));
    let cfg = lane_with_models(dir.path(), &models, "");

    let (mut daemon, (log, _)) = spawn_logged(&cfg);
    let logged = |needle: &str| log.lock().expect("lock").iter().any(|l| l.contains(needle));
    wait_for("the alert", Duration::from_secs(30), &log, || {
        logged("ALERT: lane entry: plates cannot be read") && logged("start-up check")
    });
    assert!(
        logged("from a clean rendered plate HXP4729"),
        "the alert says what the reader read and from what"
    );
    // The listed car passes twice (the video loops): nothing is read, nothing opens.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(pulses(&dir.path().join("data")), 0, "no plate opened the gate");
    assert!(daemon.0.try_wait().expect("wait").is_none(), "the daemon runs on");
}

/// The same misreading int8 reader, but the manifest's float reader (`fallback = true`) is intact: the
/// start-up check fails with the int8 reader, passes with the fallback, the lane says so, reads with it, and
/// the listed car opens the gate, with no recognition alert.
#[test]
fn a_reader_that_misreads_at_start_up_gives_way_to_the_fallback_reader() {
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    let listed = std::fs::read_to_string(repo().join("models/manifest.toml")).expect("manifest");
    let (line, reversed) = reader_charset_lines();
    let (first, fallback) = listed
        .split_once("fallback = true")
        .expect("the manifest lists a fallback reader");
    assert!(
        first.contains(&line) && fallback.contains(&line),
        "both readers have the plate charset"
    );
    // The first reader (the int8 one) misreads; the fallback entry is untouched.
    let edited = first.replacen(&line, &reversed, 1) + "fallback = true" + fallback;
    let models = copy_models(dir.path(), &edited);
    let cfg = lane_with_models(dir.path(), &models, "");

    let (mut daemon, (log, _)) = spawn_logged(&cfg);
    let logged = |needle: &str| log.lock().expect("lock").iter().any(|l| l.contains(needle));
    wait_for("the fallback reader", Duration::from_secs(30), &log, || {
        logged("fallback models read the check plate right")
    });
    assert!(
        logged("plate_reader.onnx instead of"),
        "the log names the reader the lane uses"
    );
    let data = dir.path().join("data");
    wait_for("the listed car's opening", Duration::from_secs(30), &log, || {
        pulses(&data) > 0
    });
    assert!(!logged("ALERT"), "a lane that reads raises no recognition alert");
    assert!(daemon.0.try_wait().expect("wait").is_none(), "the daemon runs on");
}
