//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod broker;
pub mod faults;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails with the fix when setup has not run.
pub fn require_models() {
    let lib = repo().join("vendor/onnxruntime/libonnxruntime.so.1");
    assert!(
        lib.exists() && repo().join("models/ch_PP-OCRv4_det_infer.onnx").exists(),
        "models or ONNX Runtime missing: run scripts/setup.sh first"
    );
}

pub fn gatehouse(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run gatehouse")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Renders a demo video of `plates` (comma-separated), each in view `seconds`, `gap` seconds apart.
pub fn render_video(path: &Path, plates: &str, seconds: &str, gap: &str) {
    let o = gatehouse(&[
        "demo",
        "video",
        path.to_str().expect("utf8"),
        "--plates",
        plates,
        "--seconds",
        seconds,
        "--gap",
        gap,
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A daemon config in `dir` for one lane on `video`, simulated relay logging to relay.jsonl.
pub fn write_config(dir: &Path, video: &Path, at_end: &str) -> PathBuf {
    let cfg = format!(
        r#"
[site]
name = "test site"
timezone = "UTC"
data_dir = "{data}"

[recognize]
manifest = "{manifest}"
onnxruntime = "{lib}"
detector_max_side = 640

[track]
pass_gap_ms = 1000
same_vehicle_s = 5

[relays.main]
kind = "simulated"
pulse_ms = 500
cooldown_ms = 1000
log = "{data}/relay.jsonl"

[[lanes]]
name = "entry"
source = "{video}"
relay = "main"
roi = {{ x = 0.0, y = 0.15, width = 1.0, height = 0.85 }}
at_end = "{at_end}"
realtime = true

[logging]
plates = true
"#,
        data = dir.join("data").display(),
        manifest = repo().join("models/manifest.toml").display(),
        lib = repo().join("vendor/onnxruntime/libonnxruntime.so.1").display(),
        video = video.display(),
    );
    let p = dir.join("gatehouse.toml");
    std::fs::write(&p, cfg).expect("write config");
    p
}

/// Where the shared benchmark lives, if it is there.
pub fn bench_dir() -> Option<PathBuf> {
    let d = repo().join("../shared/datasets/openalpr-bench");
    d.is_dir().then_some(d)
}

/// A child process killed (and reaped) when the test lets go of it, pass or fail.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `done`, failing after `limit` with `what` and the daemon's log so far.
pub fn wait_for(
    what: &str,
    limit: std::time::Duration,
    log: &std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    mut done: impl FnMut() -> bool,
) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "{what} within {limit:?}:\n{}",
            log.lock().expect("lock").join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A line-by-line log of a daemon's output, and the threads that gather it (join them after the daemon
/// exits to have every line).
pub type DaemonLog = (
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    Vec<std::thread::JoinHandle<()>>,
);

/// Starts `gatehouse run --config cfg` with its stdout and stderr gathered line by line.
pub fn spawn_logged(cfg: &Path) -> (Kill, DaemonLog) {
    use std::io::BufRead;
    let mut daemon = Kill(
        Command::new(bin())
            .args(["run", "--config", cfg.to_str().expect("utf8")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let readers = [
        Box::new(daemon.0.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(daemon.0.stderr.take().expect("stderr")),
    ]
    .into_iter()
    .map(|out| {
        let log = log.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                log.lock().expect("lock").push(l);
            }
        })
    })
    .collect();
    (daemon, (log, readers))
}

/// Runs `gatehouse ARGS` with `stdin` as outside systemd, with `$CREDENTIALS_DIRECTORY` set to `creds`
/// when given (as the unit's `LoadCredentialEncrypted=` sets it up).
pub fn gatehouse_with(args: &[&str], creds: Option<&Path>, stdin: &str) -> Output {
    use std::io::Write;
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("INVOCATION_ID")
        .env_remove("CREDENTIALS_DIRECTORY");
    if let Some(d) = creds {
        c.env("CREDENTIALS_DIRECTORY", d);
    }
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin");
    child.wait_with_output().expect("wait")
}

/// "PLATE Action" of each decision in a daemon's log (logging.plates = true).
pub fn logged_decisions(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" decision "))
        .filter_map(|l| {
            let plate = l.split("plate=").nth(1)?.split_whitespace().next()?;
            let action = l.split("action=").nth(1)?.split_whitespace().next()?;
            Some(format!("{plate} {action}"))
        })
        .collect()
}
