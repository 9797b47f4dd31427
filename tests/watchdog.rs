use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse::app::{self, Parts};
use gatehouse::camera::{FakeSource, FakeStep, FrameSource};
use gatehouse::clock::SystemClock;
use gatehouse::gate::{Relay, SimulatedRelay};
use gatehouse::recognize::{FakeReader, PlateReader};
use gatehouse::supervise::Notifier;
use opencv::core::{Mat, Scalar, CV_8UC3};

use crate::support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn frames(n: usize) -> Vec<FakeStep> {
    (0..n)
        .flat_map(|_| {
            let m = Mat::new_rows_cols_with_default(48, 64, CV_8UC3, Scalar::all(90.0)).expect("mat");
            [FakeStep::Frame(m), FakeStep::Stall(Duration::from_millis(20))]
        })
        .collect()
}

/// sd_notify: READY after start-up; WATCHDOG pings while frames flow, none while the (fake) camera is
/// stalled, and pings again once it recovers; STOPPING at the end.
#[test]
fn watchdog_pings_follow_pipeline_progress() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg_text = format!(
        r#"
[site]
data_dir = "{data}"
[recognize]
manifest = "{manifest}"
[relays.main]
kind = "simulated"
[[lanes]]
name = "entry"
source = "fake.avi"
relay = "main"
realtime = false
[metrics]
listen = "127.0.0.1:{port}"
"#,
        port = free_port(),
        data = dir.path().join("data").display(),
        manifest = repo().join("Cargo.toml").display(), // any existing file: the fake reader loads no model
    );
    let cfg = gatehouse::config::parse(&cfg_text, dir.path()).expect("config");
    let metrics_addr = cfg.metrics.expect("metrics address");
    let scraper = std::thread::spawn(move || {
        use std::io::{Read, Write};
        std::thread::sleep(Duration::from_millis(700));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut c = loop {
            match std::net::TcpStream::connect(metrics_addr) {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("metrics endpoint: {e}"),
            }
        };
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let mut body = String::new();
        let _ = c.read_to_string(&mut body);
        body
    });
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let started = Instant::now();
    let listener = std::thread::spawn(move || {
        let mut got: Vec<(Duration, String)> = Vec::new();
        let mut buf = [0u8; 512];
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let done = msg.contains("STOPPING=1");
                got.push((started.elapsed(), msg));
                if done {
                    break;
                }
            }
        }
        got
    });

    let parts = Parts {
        clock: Arc::new(SystemClock),
        notifier: Notifier::to_path(sock_path, Some(Duration::from_millis(200))),
        make_source: Box::new(|_| {
            let mut script = frames(50);
            script.push(FakeStep::Stall(Duration::from_millis(1500)));
            script.extend(frames(50));
            script.push(FakeStep::End);
            Box::new(FakeSource::new(script)) as Box<dyn FrameSource>
        }),
        make_reader: Box::new(|_| Ok(Box::new(FakeReader::new(Vec::new())) as Box<dyn PlateReader>)),
        make_relay: Box::new(|rc| Ok(Box::new(SimulatedRelay::new(&rc.name, None)?) as Box<dyn Relay>)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(app::run(cfg, parts, std::future::pending::<()>()))
        .expect("run");
    let got = listener.join().expect("listener");
    let scraped = scraper.join().expect("scraper");
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    assert!(scraped.contains("gatehouse_frames_total{lane=\"entry\"}"), "{scraped}");
    assert!(scraped.contains("gatehouse_events_committed_total"), "{scraped}");

    let first = got.first().map(|(_, m)| m.clone()).unwrap_or_default();
    assert!(first.starts_with("READY=1"), "first message: {first:?}\n{got:?}");
    let pings: Vec<Duration> = got.iter().filter(|(_, m)| m == "WATCHDOG=1").map(|(t, _)| *t).collect();
    let stalled_at = got
        .iter()
        .find(|(_, m)| m.starts_with("STATUS=stalled"))
        .map(|(t, _)| *t);
    let stalled_at = stalled_at.unwrap_or_else(|| panic!("no stall reported: {got:?}"));
    assert!(
        pings.iter().filter(|t| **t < stalled_at).count() >= 2,
        "pings before the stall: {got:?}"
    );
    assert!(
        pings.iter().filter(|t| **t > stalled_at).count() >= 2,
        "pings after recovery: {got:?}"
    );
    let longest_gap = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    assert!(
        longest_gap >= Duration::from_millis(1000),
        "no ping gap during the 1.5 s stall: {got:?}"
    );
    assert!(got.last().is_some_and(|(_, m)| m == "STOPPING=1"), "{got:?}");
}
