//! Decision latency with and without the guard panel under load (`cargo bench --bench panel_load`).
//!
//! The decision path runs as it does in the daemon: a task on a 2-worker runtime decides voted reads
//! against a 100,000-entry snapshot and commands a real gate controller. The panel runs on its own
//! thread and runtime over TLS 1.3. A local load generator opens 32 concurrent HTTPS clients (a new TLS
//! connection per request): live-feed polls, event searches (access log + audit writes), page views and
//! wrong-password logins (Argon2id, 19 MiB each). Prints p50 / p99 / max of "read -> command queued" and
//! "read -> relay energised" for the quiet and the loaded phase, their ratio, and the panel's request rate.
//! On a 2-core machine the load generator and the panel compete with the decision path for the CPU; the
//! check is that nothing *waits* on the panel (ratios near 1 at p50, bounded tails).

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use gatehouse::access::{self, Allowlist, Entry, Kind, SharedAllowlist};
use gatehouse::config::{AccessConfig, PanelConfig};
use gatehouse::gate::{self, safety::SharedRelay, Actor, GateCommand, Relay};
use gatehouse::panel::store::{self, Stage};
use gatehouse::panel::{GateInfo, LiveHub, Panel, PanelDeps, Role};
use gatehouse::recognize::CharRead;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[derive(Default, Clone)]
struct Stats {
    queued: Vec<u64>,
    relayed: Vec<u64>,
}

fn pct(ns: &mut [u64], q: f64) -> f64 {
    ns.sort_unstable();
    ns[((ns.len() - 1) as f64 * q) as usize] as f64 / 1000.0
}

fn line(name: &str, ns: &mut [u64]) -> (f64, f64, f64) {
    let (p50, p99, max) = (pct(ns, 0.5), pct(ns, 0.99), pct(ns, 1.0));
    println!(
        "{name:<46} n={:<6} p50 {p50:>8.1} us   p99 {p99:>8.1} us   max {max:>9.1} us",
        ns.len()
    );
    (p50, p99, max)
}

/// Decides reads for `secs` seconds, one every 2 ms, on the daemon-like runtime.
fn decide_for(
    rt: &tokio::runtime::Runtime,
    secs: u64,
    list: SharedAllowlist,
    handle: gate::GateHandle,
    flag: Arc<AtomicBool>,
    reads: Arc<Vec<(String, Vec<CharRead>)>>,
) -> Stats {
    rt.block_on(async move {
        let cfg = AccessConfig::default();
        let mut st = Stats::default();
        let end = Instant::now() + Duration::from_secs(secs);
        let mut i = 0;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let (t, c) = &reads[i % reads.len()];
            i += 1;
            let s = Instant::now();
            let snap = list.current();
            let d = access::decide(t, c, &snap, &cfg, Utc::now(), chrono_tz::UTC);
            if d.action != access::Action::Open {
                continue;
            }
            if handle
                .try_command(GateCommand::Open {
                    actor: Actor::Automatic,
                    reason: "bench".into(),
                })
                .is_err()
            {
                continue;
            }
            st.queued.push(s.elapsed().as_nanos() as u64);
            while !flag.load(Ordering::Acquire) {
                tokio::task::yield_now().await;
            }
            st.relayed.push(s.elapsed().as_nanos() as u64);
            let _ = handle.try_command(GateCommand::Release {
                actor: Actor::System,
                reason: "bench".into(),
            });
            while flag.load(Ordering::Acquire) {
                tokio::task::yield_now().await;
            }
        }
        st
    })
}

async fn request(connector: &tokio_rustls::TlsConnector, port: u16, req: &str) -> bool {
    let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from("localhost") else {
        return false;
    };
    let Ok(mut tls) = connector.connect(name, tcp).await else {
        return false;
    };
    if tls.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.is_ok() || !buf.is_empty()
}

fn main() {
    let dir = tempfile::tempdir().expect("tmp");
    let list_plates = common::plates(100_000, 0x9E37_79B9_7F4A_7C15);
    let list = SharedAllowlist::new(Allowlist::new(
        list_plates.iter().map(|p| Entry::new(p, Kind::Resident)).collect(),
        1,
    ));
    let reads: Arc<Vec<(String, Vec<CharRead>)>> = Arc::new(
        list_plates
            .iter()
            .step_by(37)
            .take(2000)
            .map(|p| {
                (
                    p.clone(),
                    p.chars()
                        .map(|ch| CharRead {
                            ch,
                            conf: 0.99,
                            alt: None,
                        })
                        .collect(),
                )
            })
            .collect(),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let flag = Arc::new(AtomicBool::new(false));
    let relay: SharedRelay = Arc::new(Mutex::new(Box::new(common::FlagRelay(flag.clone())) as Box<dyn Relay>));
    let rc = common::relay_config("main");
    let cancel = CancellationToken::new();
    let (handle, fut) = {
        let _g = rt.enter();
        gate::run_controller(rc, relay, cancel.clone())
    };
    let controller = rt.spawn(fut);

    // The panel, on its own thread, with a guard session and 20,000 stored events to search.
    let db = dir.path().join("gatehouse.db");
    let cookie = {
        let conn = gatehouse::db::open(&db).expect("db");
        store::add_user(&conn, "guard", Role::Guard, "x", None, Utc::now()).expect("user");
        conn.execute_batch("BEGIN").expect("begin");
        for (i, p) in common::plates(20_000, 7).iter().enumerate() {
            conn.execute(
                "INSERT INTO events (id, lane, at, plate, action, reason_code, reason) VALUES (?1, 'entry', ?2, ?3, 'deny', 'unknown', 'not on the list')",
                rusqlite::params![format!("ev-{i}"), Utc::now().timestamp_millis() - i as i64 * 1000, p],
            )
            .expect("insert");
        }
        conn.execute_batch("COMMIT").expect("commit");
        store::create_session(&conn, "guard", Stage::Full, "127.0.0.1", "bench", Utc::now()).expect("session")
    };
    let pc = PanelConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        cert: None,
        key: None,
        hostnames: vec!["localhost".into()],
        idle: chrono::Duration::minutes(120),
        absolute: chrono::Duration::hours(13),
        lockout_failures: 20,
        lockout_period: Duration::from_secs(60),
        login_per_minute: 600,
        image_url_ttl: Duration::from_secs(120),
    };
    let (cert, key) = gatehouse::panel::tls::self_signed(dir.path(), &pc.hostnames).expect("cert");
    let tls = gatehouse::panel::tls::server_config(&cert, &key).expect("tls");
    let deps = PanelDeps {
        db_path: db,
        data_dir: dir.path().to_path_buf(),
        clock: Arc::new(gatehouse::clock::SystemClock),
        site: "bench".into(),
        timezone: chrono_tz::UTC,
        gates: vec![GateInfo {
            handle: handle.clone(),
            lane: Some("entry".into()),
        }],
        live: LiveHub::default(),
        sink: None,
        status: Arc::new(|| serde_json::json!({})),
        plate_key: gatehouse::access::PlateKey::from_bytes([1; 32]),
    };
    let panel_cancel = CancellationToken::new();
    let (panel_thread, addr) =
        gatehouse::panel::server::spawn(Panel::new(pc, deps).expect("panel"), tls, panel_cancel.clone())
            .expect("panel");

    println!("decision path: 100,000-entry snapshot, one read every 2 ms, real gate controller");
    let secs = 6;
    let mut quiet = decide_for(&rt, secs, list.clone(), handle.clone(), flag.clone(), reads.clone());

    // The load generator: its own thread and runtime, 32 concurrent clients.
    let served = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (served, failed, stop) = (served.clone(), failed.clone(), stop.clone());
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).expect("pem") {
            roots.add(c.expect("cert")).expect("root");
        }
        let client =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let port = addr.port();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for w in 0..32u64 {
                    let (connector, served, failed, stop, cookie) =
                        (connector.clone(), served.clone(), failed.clone(), stop.clone(), cookie.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut i = w;
                        while !stop.load(Ordering::Relaxed) {
                            i += 1;
                            let req = match i % 10 {
                                0 => {
                                    let body = "user=guard&password=wrong-password";
                                    format!("POST /login HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: https://localhost:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                                }
                                1 | 2 => format!("GET /events?plate=AB&purpose=load+test HTTP/1.1\r\nHost: localhost:{port}\r\nCookie: __Host-gh_session={cookie}\r\nConnection: close\r\n\r\n"),
                                3 => format!("GET /live HTTP/1.1\r\nHost: localhost:{port}\r\nCookie: __Host-gh_session={cookie}\r\nConnection: close\r\n\r\n"),
                                _ => format!("GET /api/live?after=0 HTTP/1.1\r\nHost: localhost:{port}\r\nCookie: __Host-gh_session={cookie}\r\nConnection: close\r\n\r\n"),
                            };
                            if request(&connector, port, &req).await {
                                served.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let before = served.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut loaded = decide_for(&rt, secs, list, handle, flag, reads);
    let rate = (served.load(Ordering::Relaxed) - before) as f64 / t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = load.join();

    let (q50, q99, qmax) = line("quiet:  read -> command queued", &mut quiet.queued);
    let (r50, r99, rmax) = line("quiet:  read -> relay energised", &mut quiet.relayed);
    let (lq50, lq99, lqmax) = line("loaded: read -> command queued", &mut loaded.queued);
    let (lr50, lr99, lrmax) = line("loaded: read -> relay energised", &mut loaded.relayed);
    println!(
        "panel under load: {rate:.0} requests/s served ({} failed); 32 clients, new TLS 1.3 connection each",
        failed.load(Ordering::Relaxed)
    );
    println!(
        "ratio loaded/quiet, command queued:  p50 {:.2}  p99 {:.2}  max {:.2}",
        lq50 / q50,
        lq99 / q99,
        lqmax / qmax
    );
    println!(
        "ratio loaded/quiet, relay energised: p50 {:.2}  p99 {:.2}  max {:.2}",
        lr50 / r50,
        lr99 / r99,
        lrmax / rmax
    );
    panel_cancel.cancel();
    let _ = panel_thread.join();
    cancel.cancel();
    let _ = rt.block_on(controller);
}
