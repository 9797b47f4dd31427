//! Prometheus metrics on a local port (`[metrics] listen`), GET /metrics only. The families are built by
//! `prometheus-client` (text format 0.0.4) from the stages' counters at scrape time, and served by the same
//! HTTP stack as the panel (hyper + axum) on its own task, at most 4 connections at once: a slow or
//! flooding scraper never touches the decision path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::SharedAllowlist;
use crate::camera::{CaptureStats, Frame, LatestSlot};
use crate::events::WriterStats;

/// Everything the daemon counts, shared by reference with the stages.
pub struct Metrics {
    pub lanes: Vec<(String, Arc<CaptureStats>, Arc<LatestSlot<Frame>>)>,
    pub decisions: Arc<AtomicU64>,
    pub opened: Arc<AtomicU64>,
    pub writer: Arc<WriterStats>,
    pub allowlist: SharedAllowlist,
    /// The cloud link's figures, when a link is configured.
    pub link: Option<Arc<crate::sync::link::LinkStats>>,
    /// Whether the anonymous count of opted-out residents' passes is kept (`[privacy] count_opted_out`).
    pub count_opted_out: bool,
    pub clock: crate::clock::SharedClock,
    /// `[sync] allowlist_max_age_hours` (`None`: no alert).
    pub allowlist_max_age: Option<chrono::Duration>,
    /// Standing alerts (`gatehouse_alert{name="..."} 1` while raised).
    pub alerts: super::Alerts,
    /// Per-lane time histograms, observed by the stages.
    pub timings: Arc<Timings>,
    /// The gate inputs: positions, vehicles on loops, gate alerts, exit-button openings.
    pub inputs: Arc<crate::inputs::InputStats>,
}

/// A histogram per lane.
type LaneHistograms = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 1 ms to about 4 s
    Histogram::new(exponential_buckets(0.001, 2.0, 13))
}

/// Time histograms the stages observe (in seconds, labelled by lane).
#[derive(Debug)]
pub struct Timings {
    recognition: LaneHistograms,
    frame_age: LaneHistograms,
    capture_to_relay: LaneHistograms,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            recognition: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            frame_age: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            capture_to_relay: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
        }
    }
}

impl Timings {
    /// One frame's recognition (detector and reader), on the lane's recognition thread.
    pub fn recognition(&self, lane: &str, seconds: f64) {
        self.recognition.get_or_create(&lane_label(lane)).observe(seconds);
    }

    /// How old a frame was when recognition took it (live sources only: a replayed file keeps its own time).
    pub fn frame_age(&self, lane: &str, seconds: f64) {
        self.frame_age
            .get_or_create(&lane_label(lane))
            .observe(seconds.max(0.0));
    }

    /// From the capture of the frame whose read opened the gate to the relay taking the pulse (live
    /// sources only), on the lane's decision task when the gate controller answers.
    pub fn capture_to_relay(&self, lane: &str, seconds: f64) {
        self.capture_to_relay
            .get_or_create(&lane_label(lane))
            .observe(seconds.max(0.0));
    }
}

fn lane_label(lane: &str) -> Vec<(String, String)> {
    vec![("lane".to_string(), lane.to_string())]
}

impl Metrics {
    /// The Prometheus text exposition (format 0.0.4), encoded by `prometheus-client`.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Snapshot(self.families())));
        registry.register(
            "gatehouse_recognition_seconds",
            "Time to recognise one frame (plate detector and reader), per lane",
            self.timings.recognition.clone(),
        );
        registry.register(
            "gatehouse_frame_age_seconds",
            "Age of a frame when recognition took it (live sources), per lane",
            self.timings.frame_age.clone(),
        );
        registry.register(
            "gatehouse_capture_to_relay_seconds",
            "From a frame's capture to the relay pulsing for the read it gave (live sources), per lane",
            self.timings.capture_to_relay.clone(),
        );
        let mut out = String::new();
        match prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            Ok(()) => out,
            Err(e) => {
                tracing::warn!(error = %e, "could not encode the metrics");
                String::new()
            }
        }
    }

    /// Every family with its current values, read from the stages' counters at scrape time.
    fn families(&self) -> Vec<FamilyRows> {
        let mut out = Vec::new();
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut family = |name: &'static str, kind: &str, help: &'static str, rows: Vec<(Labels, u64)>| {
            let kind = if kind == "counter" {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            // prometheus-client adds the `_total` of a counter itself
            let name = name
                .strip_suffix("_total")
                .filter(|_| kind == MetricType::Counter)
                .unwrap_or(name);
            out.push(FamilyRows { name, help, kind, rows });
        };
        let lane = |n: &str| vec![("lane".to_string(), n.to_string())];
        family(
            "gatehouse_frames_total",
            "counter",
            "Frames captured.",
            self.lanes.iter().map(|(n, c, _)| (lane(n), r(&c.frames))).collect(),
        );
        family(
            "gatehouse_frames_dropped_total",
            "counter",
            "Frames replaced before recognition took them (newest frame wins).",
            self.lanes.iter().map(|(n, _, q)| (lane(n), q.dropped())).collect(),
        );
        family(
            "gatehouse_frames_recognized_total",
            "counter",
            "Frames recognition took.",
            self.lanes.iter().map(|(n, _, q)| (lane(n), q.delivered())).collect(),
        );
        family(
            "gatehouse_frames_still_total",
            "counter",
            "Frames recognition took but did not read: nothing moved in the lane (motion gating).",
            self.lanes.iter().map(|(n, c, _)| (lane(n), r(&c.still))).collect(),
        );
        family(
            "gatehouse_camera_reconnects_total",
            "counter",
            "Camera open failures and drops.",
            self.lanes.iter().map(|(n, c, _)| (lane(n), r(&c.reconnects))).collect(),
        );
        family(
            "gatehouse_decisions_total",
            "counter",
            "Access decisions.",
            vec![(Vec::new(), r(&self.decisions))],
        );
        family(
            "gatehouse_gate_opens_total",
            "counter",
            "Decisions that opened the gate.",
            vec![(Vec::new(), r(&self.opened))],
        );
        family(
            "gatehouse_events_committed_total",
            "counter",
            "Events committed to the database.",
            vec![(Vec::new(), r(&self.writer.committed))],
        );
        if self.count_opted_out {
            family(
                "gatehouse_opted_out_passes_total",
                "counter",
                "Opted-out residents' passes (nothing about them is stored; this count is all there is).",
                vec![(Vec::new(), r(&self.writer.opted_out))],
            );
        }
        family(
            "gatehouse_events_failed_total",
            "counter",
            "Events lost: held in memory only (the spill file full) when the daemon stopped.",
            vec![(Vec::new(), r(&self.writer.failed))],
        );
        family(
            "gatehouse_events_unstored",
            "gauge",
            "Decided events waiting unstored (held in memory and the spill file while the database cannot take them).",
            vec![(Vec::new(), r(&self.writer.held))],
        );
        family(
            "gatehouse_events_spilled_total",
            "counter",
            "Events written to the spill file because the database could not take them.",
            vec![(Vec::new(), r(&self.writer.spilled))],
        );
        family(
            "gatehouse_db_reserve_released_total",
            "counter",
            "Times the database reserve was released because the disk was full.",
            vec![(Vec::new(), r(&self.writer.reserve_released))],
        );
        family(
            "gatehouse_alert",
            "gauge",
            "1 for each standing alert (the panel's system status names the fix).",
            self.alerts
                .list()
                .into_iter()
                .map(|(name, _)| (vec![("name".to_string(), name.to_string())], 1))
                .collect(),
        );
        family(
            "gatehouse_crops_pruned_total",
            "counter",
            "Crop images deleted because storage ran short (images give way before events).",
            vec![(Vec::new(), r(&self.writer.crops_pruned))],
        );
        family(
            "gatehouse_crops_skipped_total",
            "counter",
            "Events stored without their crop because storage was short.",
            vec![(Vec::new(), r(&self.writer.crops_skipped))],
        );
        if let Some(l) = &self.link {
            family(
                "gatehouse_cloud_connected",
                "gauge",
                "1 while the MQTT link to the cloud is up.",
                vec![(Vec::new(), l.connected.load(Ordering::Relaxed) as u64)],
            );
            family(
                "gatehouse_events_uploaded_total",
                "counter",
                "Events the broker acknowledged (PUBACK) and the outbox marked uploaded.",
                vec![(Vec::new(), r(&l.upload.uploaded))],
            );
            family(
                "gatehouse_allowlist_envelopes_total",
                "counter",
                "Allowlist envelopes received, by result.",
                vec![
                    (
                        vec![("result".to_string(), "applied".to_string())],
                        r(&l.envelopes_applied),
                    ),
                    (
                        vec![("result".to_string(), "rejected".to_string())],
                        r(&l.envelopes_rejected),
                    ),
                ],
            );
            family(
                "gatehouse_cloud_publishes_refused_total",
                "counter",
                "Publishes the broker refused with an MQTT 5 reason code (its ACL, usually); see the log.",
                vec![(Vec::new(), r(&l.publishes_refused))],
            );
        }
        input_families(&self.inputs, &mut family);
        let list = self.allowlist.current();
        family(
            "gatehouse_allowlist_entries",
            "gauge",
            "Entries in the allowlist snapshot.",
            vec![(Vec::new(), list.len() as u64)],
        );
        family(
            "gatehouse_allowlist_version",
            "gauge",
            "Applied allowlist version.",
            vec![(Vec::new(), list.version)],
        );
        let fresh = crate::sync::freshness::freshness(&list, self.clock.now(), self.allowlist_max_age);
        if let Some(age) = fresh.age_s {
            family(
                "gatehouse_allowlist_age_seconds",
                "gauge",
                "Seconds since the cloud signed the applied allowlist.",
                vec![(Vec::new(), age.max(0) as u64)],
            );
        }
        family(
            "gatehouse_allowlist_stale",
            "gauge",
            "1 when the applied allowlist is older than [sync] allowlist_max_age_hours (updates are not arriving).",
            vec![(Vec::new(), fresh.stale as u64)],
        );
        out
    }
}

/// The gate inputs' families, each only when some input feeds it.
fn input_families(
    stats: &crate::inputs::InputStats,
    family: &mut impl FnMut(&'static str, &str, &'static str, Vec<(Labels, u64)>),
) {
    let s = stats.snapshot();
    let label = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let mut add = |name, kind, help, rows: Vec<(Labels, u64)>| {
        if !rows.is_empty() {
            family(name, kind, help, rows);
        }
    };
    add(
        "gatehouse_gate_position_open",
        "gauge",
        "1 while the gate's position contact says it is open.",
        s.gate_open
            .iter()
            .map(|(r, o)| (label("relay", r), u64::from(*o)))
            .collect(),
    );
    add(
        "gatehouse_vehicle_present",
        "gauge",
        "1 while the lane's loop detector says a vehicle is on it.",
        s.present
            .iter()
            .map(|(l, p)| (label("lane", l), u64::from(*p)))
            .collect(),
    );
    add(
        "gatehouse_gate_alerts_total",
        "counter",
        "Gate alerts from the position contact, by relay and kind (gate_not_opened, gate_held_open, gate_forced_open).",
        s.alerts
            .iter()
            .map(|((r, k), n)| {
                (
                    vec![("relay".to_string(), r.clone()), ("kind".to_string(), k.clone())],
                    *n,
                )
            })
            .collect(),
    );
    add(
        "gatehouse_exit_button_opens_total",
        "counter",
        "Openings asked for by exit buttons, by relay.",
        s.button_opens.iter().map(|(r, n)| (label("relay", r), *n)).collect(),
    );
}

/// A family's labels: (name, value) pairs.
type Labels = Vec<(String, String)>;

/// One family as read at scrape time.
#[derive(Debug)]
struct FamilyRows {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    rows: Vec<(Labels, u64)>,
}

/// The values of one scrape, handed to `prometheus-client` to encode.
#[derive(Debug)]
struct Snapshot(Vec<FamilyRows>);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let mut family = encoder.encode_descriptor(f.name, f.help, None, f.kind)?;
            for (labels, v) in &f.rows {
                let row = family.encode_family(labels)?;
                match f.kind {
                    MetricType::Counter => ConstCounter::new(*v).encode(row)?,
                    _ => ConstGauge::new(i64::try_from(*v).unwrap_or(i64::MAX)).encode(row)?,
                }
            }
        }
        Ok(())
    }
}

/// How long a scrape may take from connecting to the last byte.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

async fn scrape(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        m.render(),
    )
}

/// Serves GET /metrics until cancelled.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, cancel: CancellationToken) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    let router = axum::Router::new().route("/metrics", get(scrape)).with_state(metrics);
    // At most 4 scrapes at once: a flood of connections cannot exhaust the daemon's file descriptors.
    let limit = Arc::new(tokio::sync::Semaphore::new(4));
    loop {
        let (sock, _) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let svc = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(SCRAPE_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(sock), svc);
            let _ = tokio::time::timeout(SCRAPE_TIMEOUT, conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Allowlist;

    #[test]
    fn an_allowlist_older_than_its_maximum_age_shows_as_stale() {
        let mut list = Allowlist::new(vec![], 9);
        list.issued = Some(chrono::Utc::now() - chrono::Duration::hours(200));
        let metrics = |max_age| Metrics {
            lanes: Vec::new(),
            decisions: Arc::default(),
            opened: Arc::default(),
            writer: Arc::default(),
            allowlist: SharedAllowlist::new(list.clone()),
            link: None,
            count_opted_out: false,
            clock: Arc::new(crate::clock::SystemClock),
            allowlist_max_age: max_age,
            alerts: super::super::Alerts::default(),
            timings: Arc::default(),
            inputs: Arc::default(),
        };
        let text = metrics(Some(chrono::Duration::hours(168))).render();
        assert!(text.contains("\ngatehouse_allowlist_stale 1\n"), "{text}");
        assert!(text.contains("\ngatehouse_allowlist_age_seconds 720"), "{text}");
        let text = metrics(Some(chrono::Duration::hours(240))).render();
        assert!(text.contains("\ngatehouse_allowlist_stale 0\n"), "{text}");
    }

    #[test]
    fn unstored_events_and_alerts_are_exposed() {
        let writer = Arc::new(WriterStats::default());
        writer.held.store(3, Ordering::Relaxed);
        let alerts = super::super::Alerts::default();
        alerts.raise("database", "damaged");
        let m = Metrics {
            lanes: Vec::new(),
            decisions: Arc::default(),
            opened: Arc::default(),
            writer,
            allowlist: SharedAllowlist::new(crate::access::Allowlist::default()),
            link: None,
            count_opted_out: false,
            clock: Arc::new(crate::clock::SystemClock),
            allowlist_max_age: None,
            alerts,
            timings: Arc::default(),
            inputs: Arc::default(),
        };
        let text = m.render();
        assert!(text.contains("\ngatehouse_events_unstored 3\n"), "{text}");
        assert!(text.contains("\ngatehouse_alert{name=\"database\"} 1\n"), "{text}");
        assert!(text.contains("\ngatehouse_db_reserve_released_total 0\n"), "{text}");
    }

    fn full() -> Metrics {
        let mut list = Allowlist::new(vec![], 4);
        list.issued = Some(chrono::Utc::now());
        Metrics {
            lanes: Vec::new(),
            decisions: Arc::default(),
            opened: Arc::default(),
            writer: Arc::default(),
            allowlist: SharedAllowlist::new(list),
            link: Some(Arc::default()),
            count_opted_out: true,
            clock: Arc::new(crate::clock::SystemClock),
            allowlist_max_age: None,
            alerts: super::super::Alerts::default(),
            timings: Arc::default(),
            inputs: Arc::default(),
        }
    }

    #[test]
    fn the_inputs_families_appear_once_an_input_reports() {
        let m = full();
        let quiet = m.render();
        for name in [
            "gate_position_open",
            "vehicle_present",
            "gate_alerts",
            "exit_button_opens",
        ] {
            assert!(!quiet.contains(name), "no inputs, no {name}");
        }
        m.inputs.gate_open("main", true);
        m.inputs.present("entry", false);
        m.inputs.alert("main", "gate_forced_open");
        m.inputs.button_open("main");
        let text = m.render();
        for line in [
            "\ngatehouse_gate_position_open{relay=\"main\"} 1\n",
            "\ngatehouse_vehicle_present{lane=\"entry\"} 0\n",
            "\ngatehouse_gate_alerts_total{relay=\"main\",kind=\"gate_forced_open\"} 1\n",
            "\ngatehouse_exit_button_opens_total{relay=\"main\"} 1\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }

    /// The families (names and types) exactly as the hand-written exposition had them before the move to
    /// prometheus-client (dashboards and alert rules keep working). The time histograms follow once a lane
    /// has observed something (`recognition_times_are_histograms_per_lane`).
    #[test]
    fn the_families_keep_their_names_and_types() {
        let text = full().render();
        let types: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        let want = [
            "gatehouse_frames_total counter",
            "gatehouse_frames_dropped_total counter",
            "gatehouse_frames_recognized_total counter",
            "gatehouse_frames_still_total counter",
            "gatehouse_camera_reconnects_total counter",
            "gatehouse_decisions_total counter",
            "gatehouse_gate_opens_total counter",
            "gatehouse_events_committed_total counter",
            "gatehouse_opted_out_passes_total counter",
            "gatehouse_events_failed_total counter",
            "gatehouse_events_unstored gauge",
            "gatehouse_events_spilled_total counter",
            "gatehouse_db_reserve_released_total counter",
            "gatehouse_alert gauge",
            "gatehouse_crops_pruned_total counter",
            "gatehouse_crops_skipped_total counter",
            "gatehouse_cloud_connected gauge",
            "gatehouse_events_uploaded_total counter",
            "gatehouse_allowlist_envelopes_total counter",
            "gatehouse_cloud_publishes_refused_total counter",
            "gatehouse_allowlist_entries gauge",
            "gatehouse_allowlist_version gauge",
            "gatehouse_allowlist_age_seconds gauge",
            "gatehouse_allowlist_stale gauge",
        ];
        assert_eq!(types, want, "{text}");
        assert!(
            text.contains("\ngatehouse_allowlist_envelopes_total{result=\"rejected\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("\ngatehouse_allowlist_version 4\n"), "{text}");
    }

    #[tokio::test]
    async fn metrics_are_served_over_http_and_other_paths_are_not_found() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(addr, Arc::new(full()), cancel.clone()));
        let get = |path: &'static str| async move {
            for _ in 0..50 {
                if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
                    s.write_all(req.as_bytes()).await.expect("write");
                    let mut out = String::new();
                    s.read_to_string(&mut out).await.expect("read");
                    return out;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the metrics server did not come up");
        };
        let ok = get("/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(ok.contains("\ngatehouse_decisions_total 0\n"), "{ok}");
        let missing = get("/admin").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        cancel.cancel();
        server.await.expect("join").expect("served");
    }

    #[test]
    fn recognition_times_are_histograms_per_lane() {
        let m = full();
        m.timings.recognition("entry", 0.012);
        m.timings.recognition("entry", 0.030);
        m.timings.frame_age("entry", 0.2);
        m.timings.capture_to_relay("entry", 0.3);
        let text = m.render();
        assert!(
            text.contains("\ngatehouse_recognition_seconds_count{lane=\"entry\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("\n# TYPE gatehouse_recognition_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains("\ngatehouse_recognition_seconds_bucket{lane=\"entry\",le=\"0.016\"} 1\n"),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l
                == "# HELP gatehouse_recognition_seconds Time to recognise one frame (plate detector and reader), per lane."),
            "{text}"
        );
        assert!(
            text.contains("\ngatehouse_frame_age_seconds_count{lane=\"entry\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\ngatehouse_capture_to_relay_seconds_bucket{lane=\"entry\",le=\"0.256\"} 0\n")
                && text.contains("\ngatehouse_capture_to_relay_seconds_bucket{lane=\"entry\",le=\"0.512\"} 1\n"),
            "{text}"
        );
    }
}
