//! A lane on an IP camera as installed: a rendered 1080p H.264 lane video served over RTSP on loopback by
//! GStreamer's RTSP server (scripts/rtsp-serve.py), read by the daemon through OpenCV/FFmpeg. The daemon
//! decides the demo plates, then the camera goes away (the server is killed) and comes back on the same
//! port: the daemon reconnects by itself and decides again. Once with the URL (FFmpeg), once through a
//! GStreamer pipeline (`gst:` source).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::support::broker::free_port;
use crate::support::*;

/// The system Python: GStreamer's bindings come from Debian's packages, not from a virtual environment.
const PYTHON: &str = "/usr/bin/python3";

/// The lane video at 1920 x 1080, 15 fps, H.264 without B-frames (as IP cameras send it), in Matroska.
fn lane_video_1080p(dir: &Path) -> std::path::PathBuf {
    let avi = dir.join("lane.avi");
    render_video(&avi, "HXP4729,MWK3974", "3", "1.5");
    let mkv = dir.join("lane1080.mkv");
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&avi)
        .args([
            "-vf",
            "fps=15,scale=1920:1080:flags=bicubic",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "15",
            "-bf",
            "0",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&mkv)
        .output()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(o.status.success(), "ffmpeg: {}", text(&o));
    mkv
}

/// Starts the RTSP server and waits until it says it listens.
fn serve(video: &Path, port: u16) -> Kill {
    let mut child = Command::new(PYTHON)
        .arg(repo().join("scripts/rtsp-serve.py"))
        .arg(video)
        .args(["--port", &port.to_string(), "--loop"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start scripts/rtsp-serve.py");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    if !first.starts_with("ready") {
        let out = child.wait_with_output().expect("wait");
        panic!(
            "the RTSP server did not start (scripts/setup.sh installs GStreamer's RTSP server and its \
             Python bindings): {first}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Kill(child)
}

fn decisions(db: &Path) -> Vec<(String, String)> {
    let Ok(conn) = Connection::open(db) else {
        return Vec::new();
    };
    let Ok(mut st) = conn.prepare("SELECT plate, action FROM events ORDER BY at") else {
        return Vec::new();
    };
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

#[test]
fn reads_a_1080p_rtsp_camera_and_reconnects_when_it_comes_back() {
    lane_on_rtsp(|url| url.to_string());
}

/// The same camera through a GStreamer pipeline (how an ARM box reaches its hardware decoder; here
/// `decodebin` picks a software one).
#[test]
fn reads_the_camera_through_a_gstreamer_pipeline_and_reconnects() {
    lane_on_rtsp(|url| {
        format!(
            "gst:rtspsrc location={url} latency=100 ! rtph264depay ! h264parse ! decodebin ! \
             videoconvert ! appsink drop=true max-buffers=1"
        )
    });
}

/// Serves the lane video over RTSP, runs the daemon on `source(url)`, checks the decisions, kills the
/// server, starts it again and checks the daemon reconnects and decides again.
fn lane_on_rtsp(source: impl Fn(&str) -> String) {
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    let video = lane_video_1080p(dir.path());
    let port = free_port();
    let url = format!("rtsp://127.0.0.1:{port}/lane");
    let cfg = write_config(dir.path(), Path::new(&source(&url)), "stop");
    let o = gatehouse(&["allowlist", "--config", cfg.to_str().expect("utf8"), "add", "HXP4729"]);
    assert!(o.status.success(), "{}", text(&o));
    let db = dir.path().join("data/gatehouse.db");

    let server = serve(&video, port);
    let (mut daemon, (log, readers)) = spawn_logged(&cfg);

    // The resident opens, the stranger does not.
    wait_for(
        "both demo plates decided from the stream",
        Duration::from_secs(90),
        &log,
        || {
            let d = decisions(&db);
            d.contains(&("HXP4729".into(), "open".into())) && d.contains(&("MWK3974".into(), "deny".into()))
        },
    );
    let before = decisions(&db);
    assert!(
        before
            .iter()
            .all(|(p, a)| (p == "HXP4729" && a == "open") || (p == "MWK3974" && a == "deny")),
        "only the demo plates, decided right: {before:?}"
    );

    // The camera goes away: the daemon notices and keeps trying.
    drop(server);
    wait_for(
        "the daemon notices the camera is gone",
        Duration::from_secs(30),
        &log,
        || {
            log.lock()
                .expect("lock")
                .iter()
                .any(|l| l.contains("camera dropped") || l.contains("camera open failed"))
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let while_down = decisions(&db).len();

    // It comes back on the same address: the daemon reconnects and decides the next pass.
    let back = Instant::now();
    let _server = serve(&video, port);
    wait_for(
        "decisions after the camera came back",
        Duration::from_secs(90),
        &log,
        || {
            decisions(&db)
                .get(while_down..)
                .is_some_and(|new| new.iter().any(|(p, a)| p == "HXP4729" && a == "open"))
        },
    );
    let opens = log
        .lock()
        .expect("lock")
        .iter()
        .filter(|l| l.contains("camera open") && !l.contains("failed"))
        .count();
    assert!(opens >= 2, "the camera was opened again after it came back");
    let after = decisions(&db);
    let wrong = after.iter().filter(|(p, a)| a == "open" && p != "HXP4729").count() as i64;
    crate::support::faults::row(
        "camera stream killed, back on the same address",
        "kept trying with backoff, reopened the stream, decided the next pass",
        Some(back.elapsed()),
        0,
        wrong,
    );

    let kill = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let stop = Instant::now();
    let status = loop {
        if let Some(s) = daemon.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            stop.elapsed() < Duration::from_secs(30),
            "daemon did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for r in readers {
        r.join().expect("reader");
    }
    let log = log.lock().expect("lock").join("\n");
    assert!(status.success(), "exit {status:?}\n{log}");
    // A live source: its openings carry the capture-to-relay time.
    assert!(
        log.contains("relay pulsed") && log.contains("capture_to_relay_ms"),
        "{log}"
    );
}
