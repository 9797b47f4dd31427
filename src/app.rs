//! Wiring only: builds the stages of every lane, connects them with bounded channels, runs them, and
//! shuts them down in order.
//!
//! ```text
//! capture thread ─LatestSlot─▶ recognize thread ─mpsc(16)─▶ tracker task ─mpsc(16)─▶ decision task
//!                                                                                  ├─try_send─▶ gate controller ─▶ relay
//!                                                                                  └─mpsc(256)─▶ event writer thread ─▶ SQLite
//! ```
//! [`run`] is named steps: open the stores, start the gates, start the lanes (assembled in one place,
//! [`start_lanes`]), start the services (panel, cloud link, metrics, watchdog), announce READY, and shut
//! down in order. Every group runs under a child of one root cancellation token, and every join has a
//! deadline (`stop::*`, together under the unit's 30 s stop timeout).
//! Shutdown: the panel -> stop capture -> recognition drains -> trackers close open passes -> decisions
//! finish -> gate controllers put relays in their safe state -> the event writer commits what is queued ->
//! the link offers what it can -> the background loops.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use opencv::core::{Mat, Rect, Vector};
use opencv::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::access::{self, Action, Decision, SharedAllowlist};
use crate::camera::{self, CaptureOptions, CaptureStats, Frame, FrameSource, LatestSlot, OpenCvSource};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, LaneConfig, RelayConfig};
use crate::events::{self, EventSink, GateEvent};
use crate::gate::{self, safety, Actor, GateCommand, GateHandle, Relay};
use crate::plate;
use crate::recognize::{Manifest, OnnxPlateReader, PlateReader, ReaderOptions};
use crate::track::{self, PlateRead, VotedRead};

type SourceFactory = Box<dyn Fn(&LaneConfig) -> Box<dyn FrameSource> + Send>;
type ReaderFactory = Box<dyn Fn(&LaneConfig) -> anyhow::Result<Box<dyn PlateReader>> + Send>;
type RelayFactory = Box<dyn Fn(&RelayConfig) -> anyhow::Result<Box<dyn Relay>> + Send>;

/// The parts at the hardware seams. [`Parts::real`] uses OpenCV, ONNX Runtime and the configured relays;
/// tests swap in fakes.
pub struct Parts {
    pub clock: SharedClock,
    /// The service manager's notify socket (READY, WATCHDOG, STOPPING); disabled outside systemd.
    pub notifier: crate::supervise::Notifier,
    pub make_source: SourceFactory,
    pub make_reader: ReaderFactory,
    pub make_relay: RelayFactory,
}

impl Parts {
    pub fn real(cfg: &Config) -> anyhow::Result<Self> {
        let manifest = Manifest::load(&cfg.recognize.manifest)?;
        let rc = cfg.recognize.clone();
        Ok(Self {
            clock: Arc::new(SystemClock),
            notifier: crate::supervise::Notifier::from_env(),
            make_source: Box::new(|lane| Box::new(OpenCvSource::new(lane.source.clone()))),
            make_reader: Box::new(move |_lane| {
                let opts = ReaderOptions {
                    threads: rc.threads,
                    min_plate_len: rc.min_plate_len,
                    max_plate_len: rc.max_plate_len,
                    detector_max_side: rc.detector_max_side,
                    prior: rc.prior.clone(),
                    two_line_max_aspect: rc.two_line_max_aspect,
                    max_plates: rc.max_plates,
                    ..Default::default()
                };
                let reader = OnnxPlateReader::new(&manifest, rc.onnxruntime.as_deref(), opts)?;
                Ok(Box::new(reader) as Box<dyn PlateReader>)
            }),
            make_relay: Box::new(|rc| Ok(gate::build_relay(rc)?)),
        })
    }
}

/// Raised when the guard panel cannot start because the database is unusable.
const ALERT_PANEL: &str = "panel";
/// Raised when the cloud link cannot start because the database is unusable.
const ALERT_LINK: &str = "cloud_link";

/// What a run did, for the exit message and tests.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    pub frames: u64,
    pub frames_dropped: u64,
    pub decisions: u64,
    pub opened: u64,
    pub events_committed: u64,
}

/// How long each part may take to stop, in shutdown order; together under the unit's TimeoutStopSec=30s.
/// A part that overruns is left behind with a warning (and a task aborted) so the rest still stops in order.
mod stop {
    use std::time::Duration;
    pub const PANEL: Duration = Duration::from_secs(3);
    pub const METRICS: Duration = Duration::from_secs(1);
    pub const WATCHDOG: Duration = Duration::from_secs(1);
    pub const RECOGNITION: Duration = Duration::from_secs(5);
    pub const LANES: Duration = Duration::from_secs(5);
    pub const GATES: Duration = Duration::from_secs(2);
    pub const WRITER: Duration = Duration::from_secs(8);
    pub const LINK: Duration = Duration::from_secs(3);
    pub const BACKGROUND: Duration = Duration::from_secs(1);
}

/// Waits for a thread at most `limit`.
async fn join_thread(t: std::thread::JoinHandle<()>, what: &str, limit: Duration) {
    if tokio::time::timeout(limit, tokio::task::spawn_blocking(move || t.join()))
        .await
        .is_err()
    {
        tracing::warn!("{what} did not stop within {limit:?}; shutdown goes on without it");
    }
}

/// Waits for a task at most `limit`, then aborts it.
async fn join_task(mut t: tokio::task::JoinHandle<()>, what: &str, limit: Duration) {
    if tokio::time::timeout(limit, &mut t).await.is_err() {
        tracing::warn!("{what} did not stop within {limit:?}; aborted");
        t.abort();
    }
}

/// Storage, the allowlist snapshot and their background loops.
struct Stores {
    alerts: crate::supervise::Alerts,
    plate_key: access::PlateKey,
    allowlist: SharedAllowlist,
    /// The database passed its checks at start (otherwise the gate runs on the last-good allowlist).
    db_ok: bool,
    sink: EventSink,
    writer: std::thread::JoinHandle<()>,
    writer_stats: Arc<events::WriterStats>,
    background: CancellationToken,
    retention: std::thread::JoinHandle<()>,
    reloader: std::thread::JoinHandle<()>,
}

/// Relays and their controllers (safe state registered for the panic hook).
struct Gates {
    handles: HashMap<String, GateHandle>,
    controllers: Vec<tokio::task::JoinHandle<()>>,
    cancel: CancellationToken,
}

/// Every lane's stages, and the counters they share.
struct Lanes {
    capture: Vec<std::thread::JoinHandle<()>>,
    recognize: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    slots: Vec<Arc<LatestSlot<Frame>>>,
    stats: Vec<Arc<CaptureStats>>,
    decisions: Arc<std::sync::atomic::AtomicU64>,
    opened: Arc<std::sync::atomic::AtomicU64>,
    live: crate::panel::LiveHub,
    cancel: CancellationToken,
}

/// The services around the lanes: the guards' panel, the cloud link, metrics and the watchdog.
struct Services {
    panel: Option<std::thread::JoinHandle<()>>,
    panel_cancel: CancellationToken,
    link: Option<std::thread::JoinHandle<()>>,
    link_cancel: CancellationToken,
    metrics: Option<tokio::task::JoinHandle<()>>,
    metrics_cancel: CancellationToken,
    watchdog: Option<tokio::task::JoinHandle<()>>,
    watchdog_cancel: CancellationToken,
}

/// Runs the daemon until `shutdown` resolves or every lane's source has ended: named steps under one root
/// cancellation token (each group a child of it), stopped in order with a deadline on every join.
pub async fn run(cfg: Config, parts: Parts, shutdown: impl Future<Output = ()>) -> anyhow::Result<RunSummary> {
    let root = CancellationToken::new();
    let stores = open_stores(&cfg, &parts.clock, &root)?;
    let gates = start_gates(&cfg, &parts, &root)?;
    let mut lanes = start_lanes(&cfg, &parts, &stores, &gates, &root)?;
    let health = health_summary(&cfg, &stores, &lanes, &parts.clock);
    let services = start_services(&cfg, &parts, &stores, &gates, &lanes, health, &root)?;
    drop(gates.handles);
    let gates = Gates {
        handles: HashMap::new(),
        ..gates
    };
    announce_ready(&cfg, &parts, &stores, &lanes).await;
    tracing::info!(lanes = cfg.lanes.len(), "gatehouse running");

    // Run until a signal, or until every source has ended.
    let all_ended = {
        let threads: Vec<_> = std::mem::take(&mut lanes.capture);
        tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
    };
    tokio::select! {
        _ = shutdown => tracing::info!("shutdown requested"),
        _ = all_ended => tracing::info!("every source has ended"),
    }
    parts.notifier.notify("STOPPING=1");
    let summary = shut_down(stores, gates, lanes, services).await;
    root.cancel();
    tracing::info!(?summary, "gatehouse stopped");
    Ok(summary)
}

/// Step 1: the data folders, the allowlist snapshot, the event writer and the background loops. A damaged,
/// empty or foreign database, or a full disk, does not stop the gate: the allowlist then comes from the
/// last-good snapshot, events are held, alerts say why.
fn open_stores(cfg: &Config, clock: &SharedClock, root: &CancellationToken) -> anyhow::Result<Stores> {
    // The data folders are made with explicit modes, whatever the umask (the unit sets UMask=0027; a run
    // outside systemd may have 0022): crops are personal data.
    for dir in [cfg.site.data_dir.clone(), cfg.site.crops_dir()] {
        crate::secret_file::create_dir_all(&dir, 0o750).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // crops/ made 0755 by an older version: closed to other users (it is the daemon's own folder).
    if let Ok(true) = crate::secret_file::close_to_others(&cfg.site.crops_dir()) {
        tracing::warn!(dir = %cfg.site.crops_dir().display(), "the crops folder was open to every user; closed to others");
    }
    let alerts = crate::supervise::Alerts::default();
    let plate_key = cfg.plate_key()?;
    let (list, db_ok) = start_allowlist(cfg, &plate_key, &alerts, clock)?;
    let allowlist = SharedAllowlist::new(list);
    let (sink, writer, writer_stats) = events::spawn_writer(events::WriterOptions {
        db_path: cfg.site.database_path(),
        crops_dir: cfg.site.crops_dir(),
        log_plates: cfg.logging.plates,
        min_free: cfg.site.min_free_bytes,
        reserve: cfg.site.db_reserve_bytes,
        alerts: alerts.clone(),
    })?;
    let background = root.child_token();
    let retention = std::thread::Builder::new().name("retention".into()).spawn({
        let (path, retention, clock, cancel) = (
            cfg.site.database_path(),
            cfg.privacy.effective.clone(),
            clock.clone(),
            background.clone(),
        );
        move || retention_loop(path, retention, clock, cancel, db_ok)
    })?;
    let reloader = std::thread::Builder::new().name("allowlist-reload".into()).spawn({
        let ctx = ReloadCtx {
            path: cfg.site.database_path(),
            list: allowlist.clone(),
            key: plate_key.clone(),
            alerts: alerts.clone(),
            db_ok,
            age: (clock.clone(), cfg.sync.as_ref().and_then(|s| s.allowlist_max_age)),
        };
        let cancel = background.clone();
        move || reload_allowlist(ctx, cancel)
    })?;
    Ok(Stores {
        alerts,
        plate_key,
        allowlist,
        db_ok,
        sink,
        writer,
        writer_stats,
        background,
        retention,
        reloader,
    })
}

/// Step 2: relays and their controllers (safe state registered for the panic hook).
fn start_gates(cfg: &Config, parts: &Parts, root: &CancellationToken) -> anyhow::Result<Gates> {
    let cancel = root.child_token();
    let mut handles = HashMap::new();
    let mut controllers = Vec::new();
    for rc in &cfg.relays {
        let relay: safety::SharedRelay = Arc::new(Mutex::new(
            (parts.make_relay)(rc).with_context(|| format!("relay {}", rc.name))?,
        ));
        safety::register(relay.clone(), rc.safe_state);
        let (handle, fut) = gate::run_controller(rc.clone(), relay, cancel.clone());
        controllers.push(tokio::spawn(fut));
        handles.insert(rc.name.clone(), handle);
    }
    Ok(Gates {
        handles,
        controllers,
        cancel,
    })
}

/// Step 3: every lane, assembled in one place (a new input joins here): capture -> recognize -> track ->
/// decide -> its gate.
fn start_lanes(
    cfg: &Config,
    parts: &Parts,
    stores: &Stores,
    gates: &Gates,
    root: &CancellationToken,
) -> anyhow::Result<Lanes> {
    let mut lanes = Lanes {
        capture: Vec::new(),
        recognize: Vec::new(),
        tasks: Vec::new(),
        slots: Vec::new(),
        stats: Vec::new(),
        decisions: Arc::default(),
        opened: Arc::default(),
        live: crate::panel::LiveHub::default(),
        cancel: root.child_token(),
    };
    for lane in &cfg.lanes {
        let reader = (parts.make_reader)(lane).with_context(|| format!("lane {}: recognizer", lane.name))?;
        let source = (parts.make_source)(lane);
        let gate = gates
            .handles
            .get(&lane.relay)
            .cloned()
            .with_context(|| format!("lane {}: relay {} is not configured", lane.name, lane.relay))?;
        let slot: Arc<LatestSlot<Frame>> = Arc::new(LatestSlot::new());
        let stats = Arc::new(CaptureStats::default());
        let opts = CaptureOptions {
            lane: lane.name.as_str().into(),
            roi: lane.roi,
            at_end: lane.at_end,
            realtime: lane.realtime,
            replay: lane.replay,
            reconnect_min: lane.reconnect_min,
            reconnect_max: lane.reconnect_max,
        };
        let (slot2, clock, stats2, cancel) = (slot.clone(), parts.clock.clone(), stats.clone(), lanes.cancel.clone());
        lanes.capture.push(
            std::thread::Builder::new()
                .name(format!("capture-{}", lane.name))
                .spawn(move || camera::run_capture(source, slot2, opts, clock, stats2, cancel))?,
        );
        let (reads_tx, reads_rx) = mpsc::channel::<PlateRead>(16);
        let (slot2, progress) = (slot.clone(), stats.progress.clone());
        lanes.recognize.push(
            std::thread::Builder::new()
                .name(format!("recognize-{}", lane.name))
                .spawn(move || recognize_loop(reader, slot2, reads_tx, progress))?,
        );
        let (voted_tx, voted_rx) = mpsc::channel::<VotedRead>(16);
        let opens = track::RecentOpens::default();
        lanes.tasks.push(tokio::spawn(track::run_tracker(
            cfg.track.clone(),
            // A replayed video runs on its own clock: only its reads (and its end) close a pass.
            (!lane.replay).then(|| parts.clock.clone()),
            reads_rx,
            voted_tx,
            opens.clone(),
        )));
        lanes.tasks.push(tokio::spawn(decision_loop(DecisionCtx {
            cfg: cfg.clone(),
            clock: parts.clock.clone(),
            allowlist: stores.allowlist.clone(),
            gate,
            sink: stores.sink.clone(),
            voted: voted_rx,
            decisions: lanes.decisions.clone(),
            opened: lanes.opened.clone(),
            opens,
            live: lanes.live.clone(),
        })));
        lanes.slots.push(slot);
        lanes.stats.push(stats);
    }
    Ok(lanes)
}

/// A summary of the pipeline for the cloud heartbeat and the panel's system page, with its alerts.
fn health_summary(cfg: &Config, stores: &Stores, lanes: &Lanes, clock: &SharedClock) -> crate::sync::link::HealthFn {
    let names: Vec<(String, Arc<CaptureStats>)> = cfg
        .lanes
        .iter()
        .map(|l| l.name.clone())
        .zip(lanes.stats.iter().cloned())
        .collect();
    let (decisions, opened) = (lanes.decisions.clone(), lanes.opened.clone());
    let (writer, alerts, list, clock) = (
        stores.writer_stats.clone(),
        stores.alerts.clone(),
        stores.allowlist.clone(),
        clock.clone(),
    );
    let max_age = cfg.sync.as_ref().and_then(|s| s.allowlist_max_age);
    Arc::new(move || {
        let ld = std::sync::atomic::Ordering::Relaxed;
        let fresh = crate::sync::freshness::freshness(&list.current(), clock.now(), max_age);
        serde_json::json!({
            "alerts": alerts.to_json(),
            "allowlist": fresh,
            "decisions": decisions.load(ld),
            "opened": opened.load(ld),
            "events_committed": writer.committed.load(ld),
            "events_failed": writer.failed.load(ld),
            "events_unstored": writer.held.load(ld),
            "lanes": names.iter().map(|(n, s)| serde_json::json!({
                "name": n,
                "frames": s.frames.load(ld),
                "reconnects": s.reconnects.load(ld),
            })).collect::<Vec<_>>(),
        })
    })
}

/// Step 4: the services around the lanes. The panel and the link live in the database; without it the
/// gate still runs and an alert says why they are not.
fn start_services(
    cfg: &Config,
    parts: &Parts,
    stores: &Stores,
    gates: &Gates,
    lanes: &Lanes,
    health: crate::sync::link::HealthFn,
    root: &CancellationToken,
) -> anyhow::Result<Services> {
    let panel_cancel = root.child_token();
    let panel = match &cfg.panel {
        Some(pc) => start_panel(
            cfg,
            pc,
            parts,
            stores,
            gates,
            lanes,
            health.clone(),
            panel_cancel.clone(),
        )?,
        None => None,
    };
    let link_cancel = root.child_token();
    let link_stats = Arc::new(crate::sync::link::LinkStats::default());
    let link = start_link(cfg, parts, stores, health, link_stats.clone(), link_cancel.clone())?;
    let metrics_cancel = root.child_token();
    let metrics = cfg.metrics.map(|addr| {
        let link_stats = link.is_some().then(|| link_stats.clone());
        start_metrics(addr, cfg, parts, stores, lanes, link_stats, metrics_cancel.clone())
    });
    let watchdog_cancel = root.child_token();
    let watchdog = parts.notifier.watchdog.map(|interval| {
        let progress = cfg
            .lanes
            .iter()
            .zip(&lanes.stats)
            .map(|(l, s)| (l.name.clone(), s.progress.clone()))
            .collect();
        tokio::spawn(crate::supervise::run_watchdog(
            parts.notifier.clone(),
            interval,
            progress,
            watchdog_cancel.clone(),
        ))
    });
    Ok(Services {
        panel,
        panel_cancel,
        link,
        link_cancel,
        metrics,
        metrics_cancel,
        watchdog,
        watchdog_cancel,
    })
}

/// The cloud link on its own thread (allowlists in, events out), when `[sync.mqtt]` is configured.
fn start_link(
    cfg: &Config,
    parts: &Parts,
    stores: &Stores,
    health: crate::sync::link::HealthFn,
    stats: Arc<crate::sync::link::LinkStats>,
    cancel: CancellationToken,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    let Some((sync, mqtt)) = cfg.sync.as_ref().and_then(|s| s.mqtt.clone().map(|m| (s.clone(), m))) else {
        return Ok(None);
    };
    let ctx = crate::sync::link::LinkCtx {
        sync,
        mqtt,
        db_path: cfg.site.database_path(),
        allowlist: stores.allowlist.clone(),
        clock: parts.clock.clone(),
        health,
        stats,
        keep_reads_days: cfg.privacy.effective.reads.days,
        plate_key: stores.plate_key.clone(),
    };
    match crate::sync::link::spawn(ctx, cancel) {
        Ok(t) => Ok(Some(t)),
        Err(e) if !stores.db_ok => {
            stores.alerts.raise(
                ALERT_LINK,
                format!(
                    "the cloud link is not running: {e}; it starts once the database is fixed and the daemon restarted"
                ),
            );
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context("cloud link")),
    }
}

/// The metrics endpoint (`[metrics] listen`) as a task.
fn start_metrics(
    addr: std::net::SocketAddr,
    cfg: &Config,
    parts: &Parts,
    stores: &Stores,
    lanes: &Lanes,
    link: Option<Arc<crate::sync::link::LinkStats>>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let metrics = Arc::new(crate::supervise::metrics::Metrics {
        lanes: cfg
            .lanes
            .iter()
            .zip(lanes.stats.iter().zip(&lanes.slots))
            .map(|(l, (st, sl))| (l.name.clone(), st.clone(), sl.clone()))
            .collect(),
        decisions: lanes.decisions.clone(),
        opened: lanes.opened.clone(),
        writer: stores.writer_stats.clone(),
        allowlist: stores.allowlist.clone(),
        link,
        count_opted_out: cfg.privacy.count_opted_out,
        clock: parts.clock.clone(),
        allowlist_max_age: cfg.sync.as_ref().and_then(|s| s.allowlist_max_age),
        alerts: stores.alerts.clone(),
    });
    tokio::spawn(async move {
        if let Err(e) = crate::supervise::metrics::serve(addr, metrics, cancel).await {
            tracing::error!(%addr, error = %e, "metrics endpoint could not start");
        }
    })
}

/// The guards' panel on its own thread and runtime; `None` when the database keeps it from starting.
#[allow(clippy::too_many_arguments)]
fn start_panel(
    cfg: &Config,
    pc: &crate::config::PanelConfig,
    parts: &Parts,
    stores: &Stores,
    gates: &Gates,
    lanes: &Lanes,
    health: crate::sync::link::HealthFn,
    cancel: CancellationToken,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    let gate_info = cfg
        .relays
        .iter()
        .filter_map(|r| {
            gates.handles.get(&r.name).map(|h| crate::panel::GateInfo {
                handle: h.clone(),
                lane: cfg.lanes.iter().find(|l| l.relay == r.name).map(|l| l.name.clone()),
            })
        })
        .collect();
    let deps = crate::panel::PanelDeps {
        db_path: cfg.site.database_path(),
        data_dir: cfg.site.data_dir.clone(),
        clock: parts.clock.clone(),
        site: cfg.site.name.clone(),
        timezone: cfg.site.timezone,
        gates: gate_info,
        live: lanes.live.clone(),
        sink: Some(stores.sink.clone()),
        status: health,
        plate_key: stores.plate_key.clone(),
    };
    let (cert, key) = crate::panel::tls::ensure(pc, &cfg.site.data_dir).context("panel certificate")?;
    let tls = crate::panel::tls::server_config(&cert, &key).context("panel TLS")?;
    let panel = match crate::panel::Panel::new(pc.clone(), deps) {
        Ok(p) => p,
        Err(e) if !stores.db_ok => {
            stores.alerts.raise(
                ALERT_PANEL,
                format!("the guard panel is not running: {e}; it starts once the database is fixed and the daemon restarted"),
            );
            return Ok(None);
        }
        Err(e) => return Err(anyhow::Error::new(e).context("panel")),
    };
    let (thread, addr) = crate::panel::server::spawn(panel, tls, cancel).context("panel")?;
    tracing::info!(
        %addr,
        fingerprint = %crate::panel::tls::fingerprint(&cert).unwrap_or_default(),
        "guard panel listening (HTTPS)"
    );
    Ok(Some(thread))
}

/// Step 5: READY once every lane has turned a frame into a result (or 10 s passed: a camera may be down;
/// its lane keeps reconnecting and the status says so).
async fn announce_ready(cfg: &Config, parts: &Parts, stores: &Stores, lanes: &Lanes) {
    let ld = std::sync::atomic::Ordering::Relaxed;
    let ready_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lanes.stats.iter().any(|s| s.progress.load(ld) == 0) && tokio::time::Instant::now() < ready_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting: Vec<&str> = cfg
        .lanes
        .iter()
        .zip(&lanes.stats)
        .filter(|(_, s)| s.frames.load(ld) == 0)
        .map(|(l, _)| l.name.as_str())
        .collect();
    let mut status = if waiting.is_empty() {
        format!("STATUS=running {} lane(s)", cfg.lanes.len())
    } else {
        format!("STATUS=running; no frames yet from: {}", waiting.join(", "))
    };
    let raised: Vec<&str> = stores.alerts.list().into_iter().map(|(name, _)| name).collect();
    if !raised.is_empty() {
        status.push_str(&format!("; ALERT: {}", raised.join(", ")));
    }
    parts.notifier.notify(&format!("READY=1\n{status}"));
}

/// Step 6: shutdown, in order, each part with its deadline: the panel first (it holds an event sink and
/// gate handles), then capture, recognition and the lanes (open passes closed, decisions finished), the
/// gates (relays to their safe state), the event writer (what is queued committed), the link (it offers
/// what it can), the background loops.
async fn shut_down(stores: Stores, gates: Gates, lanes: Lanes, services: Services) -> RunSummary {
    services.panel_cancel.cancel();
    if let Some(t) = services.panel {
        join_thread(t, "the guard panel", stop::PANEL).await;
    }
    services.metrics_cancel.cancel();
    if let Some(m) = services.metrics {
        join_task(m, "the metrics endpoint", stop::METRICS).await;
    }
    services.watchdog_cancel.cancel();
    if let Some(w) = services.watchdog {
        join_task(w, "the watchdog", stop::WATCHDOG).await;
    }
    lanes.cancel.cancel();
    for s in &lanes.slots {
        s.close();
    }
    for t in lanes.recognize {
        join_thread(t, "recognition", stop::RECOGNITION).await;
    }
    let deadline = tokio::time::Instant::now() + stop::LANES;
    for t in lanes.tasks {
        join_task(
            t,
            "a lane task",
            deadline.saturating_duration_since(tokio::time::Instant::now()),
        )
        .await;
    }
    gates.cancel.cancel();
    for c in gates.controllers {
        join_task(c, "a gate controller", stop::GATES).await;
    }
    drop(stores.sink);
    join_thread(stores.writer, "the event writer", stop::WRITER).await;
    services.link_cancel.cancel();
    if let Some(l) = services.link {
        join_thread(l, "the cloud link", stop::LINK).await;
    }
    stores.background.cancel();
    join_thread(stores.reloader, "the allowlist reloader", stop::BACKGROUND).await;
    join_thread(stores.retention, "the retention loop", stop::BACKGROUND).await;
    safety::clear();
    let ld = std::sync::atomic::Ordering::Relaxed;
    RunSummary {
        frames: lanes.stats.iter().map(|s| s.frames.load(ld)).sum(),
        frames_dropped: lanes.slots.iter().map(|s| s.dropped()).sum(),
        decisions: lanes.decisions.load(ld),
        opened: lanes.opened.load(ld),
        events_committed: stores.writer_stats.committed.load(ld),
    }
}

/// Recognition for one lane, on its own thread: newest frame in, best plate read out.
fn recognize_loop(
    mut reader: Box<dyn PlateReader>,
    slot: Arc<LatestSlot<Frame>>,
    out: mpsc::Sender<PlateRead>,
    progress: crate::supervise::Progress,
) {
    loop {
        let frame = match slot.take_timeout(Duration::from_millis(200)) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(()) => break,
        };
        let reads = reader.read(&frame.image, frame.roi);
        progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reads = match reads {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(lane = %frame.lane, error = %e, "recognition failed on a frame");
                continue;
            }
        };
        let Some(best) = reads.candidates.into_iter().next() else {
            continue;
        };
        let crop_jpeg = encode_crop(&frame.image, best.bbox).unwrap_or_default();
        let read = PlateRead {
            lane: frame.lane.clone(),
            at: frame.at,
            frame_seq: frame.seq,
            candidate: best,
            crop_jpeg,
        };
        if out.blocking_send(read).is_err() {
            break;
        }
    }
}

fn encode_crop(image: &Mat, bbox: Rect) -> opencv::Result<Vec<u8>> {
    let r = bbox & Rect::new(0, 0, image.cols(), image.rows());
    if r.width <= 0 || r.height <= 0 {
        return Ok(Vec::new());
    }
    let crop = Mat::roi(image, r)?;
    let mut buf: Vector<u8> = Vector::new();
    let params: Vector<i32> = Vector::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, 90]);
    opencv::imgcodecs::imencode(".jpg", &crop, &mut buf, &params)?;
    Ok(buf.to_vec())
}

struct DecisionCtx {
    cfg: Config,
    clock: SharedClock,
    allowlist: SharedAllowlist,
    gate: GateHandle,
    sink: EventSink,
    voted: mpsc::Receiver<VotedRead>,
    decisions: Arc<std::sync::atomic::AtomicU64>,
    opened: Arc<std::sync::atomic::AtomicU64>,
    opens: track::RecentOpens,
    /// The panel's live view (a short push; never waits on the panel).
    live: crate::panel::LiveHub,
}

/// Decides each voted read, commands the gate (never waiting), then queues the event. The event writer is
/// never awaited while a read is waiting: events that do not fit its queue wait in a local backlog.
async fn decision_loop(mut ctx: DecisionCtx) {
    let mut backlog: std::collections::VecDeque<(GateEvent, Option<GateReply>)> = std::collections::VecDeque::new();
    let mut reads_open = true;
    while reads_open || !backlog.is_empty() {
        tokio::select! {
            v = ctx.voted.recv(), if reads_open => match v {
                Some(v) => backlog.push_back(decide_and_act(&ctx, v)),
                None => reads_open = false,
            },
            permit = ctx.sink.reserve(), if !backlog.is_empty() => match (permit, backlog.pop_front()) {
                (Ok(permit), Some((mut e, reply))) => {
                    if let Some(reply) = reply {
                        e.gate_result = Some(gate_result(reply).await);
                    }
                    permit.send(e)
                }
                (Err(_), _) => {
                    tracing::error!(events = backlog.len(), "event writer has stopped; events not recorded");
                    backlog.clear();
                }
                (Ok(_), None) => {}
            },
        }
        if backlog.len() == 1000 {
            tracing::error!("1000 events wait for the event writer: storage is slow or failing");
        }
    }
}

/// What the gate controller will say it did with an opening (see [`gate_result`]).
type GateReply = tokio::sync::oneshot::Receiver<gate::GateOutcome>;

/// The event's record of what the relay did: the controller's answer (it answers as soon as it has set
/// the relay, so this wait is short; the gate was commanded before it began).
async fn gate_result(reply: GateReply) -> String {
    match tokio::time::timeout(Duration::from_secs(2), reply).await {
        Ok(Ok(outcome)) => outcome.to_string(),
        Ok(Err(_)) => "gate controller stopped before it answered".to_string(),
        Err(_) => "gate controller did not answer within 2 s".to_string(),
    }
}

fn decide_and_act(ctx: &DecisionCtx, v: VotedRead) -> (GateEvent, Option<GateReply>) {
    let now = ctx.clock.now();
    let decision = decide_read(&v, &ctx.allowlist, &ctx.cfg, now, ctx.gate.in_lockdown());
    ctx.decisions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (mut gate_result, mut reply) = (None, None);
    if decision.action == Action::Open {
        ctx.opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ctx.opens.record(&v.text, v.decided_at);
        let reason = decision.reason.to_string();
        match ctx.gate.try_command_reply(GateCommand::Open {
            actor: Actor::Automatic,
            reason,
        }) {
            // Filled in with what the relay did before the event is stored.
            Ok(rx) => reply = Some(rx),
            Err(e) => {
                tracing::error!(lane = %v.lane, error = %e, "could not command the gate");
                gate_result = Some(format!("gate command failed: {e}"));
            }
        }
    }
    let opted_out = decision.action == Action::Open && decision.matched.as_ref().is_some_and(|m| m.do_not_log);
    let shown = if opted_out {
        "(opted out)".to_string()
    } else if ctx.cfg.logging.plates {
        v.text.clone()
    } else {
        plate::redact(&v.text)
    };
    if decision.alert {
        tracing::warn!(lane = %v.lane, plate = %shown, reason = ?decision.reason.to_string(), "ALERT: guard attention needed");
    }
    tracing::info!(
        lane = %v.lane, plate = %shown, confidence = format!("{:.2}", v.confidence), reads = v.reads,
        action = ?decision.action, reason = ?decision.reason.to_string(), early = v.early, "decision"
    );
    let event = GateEvent {
        id: GateEvent::new_id(v.decided_at),
        lane: v.lane.clone(),
        at: v.decided_at,
        first_seen: v.first_seen,
        plate: v.text,
        confidence: v.confidence,
        chars: v.chars,
        alternatives: v.alternatives,
        reads: v.reads,
        decision,
        crop_jpeg: v.best_crop,
        guard_action: None,
        gate_result,
    };
    if ctx.cfg.panel.is_some() {
        ctx.live.publish(crate::panel::LiveEvent::from_event(&event));
    }
    (event, reply)
}

/// The decision for a voted read against the current snapshot. A pass with fewer agreeing reads than
/// `min_reads` never opens (it keeps its alert if it looked like a blocked plate).
/// The decision stage ([`access::stage`]) on the current allowlist snapshot, with the site's rules.
pub fn decide_read(
    v: &VotedRead,
    allowlist: &SharedAllowlist,
    cfg: &Config,
    now: chrono::DateTime<chrono::Utc>,
    lockdown: bool,
) -> Decision {
    let read = access::stage::PassRead {
        text: &v.text,
        chars: &v.chars,
        reads: v.reads,
    };
    let rules = access::stage::Rules {
        access: &cfg.access,
        min_reads: cfg.track.min_reads,
        tz: cfg.site.timezone,
    };
    access::stage::decide_pass(read, &allowlist.current(), rules, now, lockdown)
}

/// Opens the database for a background loop. One that was usable at start is opened as it is (an error
/// turns the loop off: `what` names it in the log); one that was not is tried every `retry` until it
/// passes the quick check. `None` when the loop is off or cancelled.
fn open_when_usable(
    path: &std::path::Path,
    db_ok: bool,
    what: &str,
    retry: Duration,
    cancel: &CancellationToken,
) -> Option<rusqlite::Connection> {
    loop {
        let opened = if db_ok {
            crate::db::open(path)
        } else {
            crate::db::open_checked(path)
        };
        match opened {
            Ok(c) => return Some(c),
            Err(e) if db_ok => {
                tracing::error!(error = %e, "{what} disabled");
                return None;
            }
            Err(_) => {
                let until = std::time::Instant::now() + retry;
                while !cancel.is_cancelled() && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if cancel.is_cancelled() {
                    return None;
                }
            }
        }
    }
}

/// Purges expired events and crops at start and then hourly, in small batches, off the async runtime.
/// When the database was not usable at start, it waits (trying every minute) until it passes the check.
fn retention_loop(
    path: std::path::PathBuf,
    retention: crate::privacy::Effective,
    clock: SharedClock,
    cancel: CancellationToken,
    db_ok: bool,
) {
    // A database that was not usable at start is not written to until it passes the quick check.
    let Some(mut conn) = open_when_usable(&path, db_ok, "retention purge", Duration::from_secs(60), &cancel) else {
        return;
    };
    while !cancel.is_cancelled() {
        match events::retention::purge(&mut conn, &retention, clock.now(), 500) {
            Ok(p) if p.events + p.crops > 0 => {
                tracing::info!(events = p.events, crops = p.crops, "retention purge")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention purge failed; will retry"),
        }
        let until = std::time::Instant::now() + Duration::from_secs(3600);
        while !cancel.is_cancelled() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The alert raised while the applied allowlist is older than `[sync] allowlist_max_age_hours`.
const ALERT_ALLOWLIST: &str = "allowlist";

/// The clock and `[sync] allowlist_max_age` the reloader warns by.
type AgeCheck = (SharedClock, Option<chrono::Duration>);

/// The allowlist at start: from the database when it opens and passes its quick check (it is then saved as
/// the last-good snapshot beside the database); otherwise (empty, foreign or damaged file, full disk) from
/// the last-good snapshot, with the `database` alert raised. Returns the list and whether the database was
/// usable. Fails only when neither is usable: then the gate cannot decide and says why.
fn start_allowlist(
    cfg: &Config,
    key: &access::PlateKey,
    alerts: &crate::supervise::Alerts,
    clock: &SharedClock,
) -> anyhow::Result<(access::Allowlist, bool)> {
    let path = cfg.site.database_path();
    let last_good = access::snapshot::path_for(&path);
    let reserve = events::storage::Reserve::new(&cfg.site.data_dir, cfg.site.db_reserve_bytes);
    let existed = path.exists();
    let opened = match crate::db::open_checked(&path) {
        Err(e) if e.is_full() && reserve.release() => crate::db::open_checked(&path),
        other => other,
    };
    let loaded = opened
        .map_err(|e| e.to_string())
        .and_then(|conn| access::load_snapshot(&conn, key).map_err(|e| e.to_string()));
    let why = match loaded {
        Ok(list) if !existed && list.is_empty() && last_good.exists() => {
            // The database was missing (a new, empty one was just made) but a last-good list is there: it
            // goes into the new database rather than every resident being denied.
            match restore_last_good(&path, &last_good, key, clock) {
                Ok(restored) => return Ok((restored, true)),
                Err(e) => {
                    tracing::error!(error = %e, "could not restore the last-good allowlist into the new database");
                    format!(
                        "database {} was missing and a new one was made, but {e}",
                        path.display()
                    )
                }
            }
        }
        Ok(list) => {
            if list.is_empty() {
                tracing::warn!("allowlist loaded: it is empty, so every plate is denied until a list is applied");
            } else {
                tracing::info!(entries = list.len(), version = list.version, "allowlist loaded");
            }
            if let Err(e) = access::snapshot::write(&last_good, list.entries(), list.version, clock.now()) {
                tracing::warn!(error = %e, "could not save the last-good allowlist");
            }
            return Ok((list, true));
        }
        Err(why) => why,
    };
    match access::snapshot::read(&last_good) {
        Ok(last) => {
            let saved = last
                .written_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "at an unknown time".into());
            alerts.raise(
                crate::db::ALERT_DATABASE,
                format!(
                    "{why}. The gate decides on the last-good allowlist ({} entries, version {}, saved {saved}) \
                     from {}; events are held, not stored, until the database is usable again",
                    last.entries.len(),
                    last.version,
                    last_good.display()
                ),
            );
            Ok((
                access::Allowlist::with_key(last.entries, last.version, Some(key.clone())),
                false,
            ))
        }
        Err(e) => anyhow::bail!(
            "{why}; and there is no usable last-good allowlist to decide on instead ({e}). Fix the database \
             (or free space on {}) and start again",
            cfg.site.data_dir.display()
        ),
    }
}

/// Puts the last-good allowlist into a new database and loads it from there.
fn restore_last_good(
    path: &std::path::Path,
    last_good: &std::path::Path,
    key: &access::PlateKey,
    clock: &SharedClock,
) -> Result<access::Allowlist, access::AccessError> {
    let last = access::snapshot::read(last_good)?;
    let mut conn = crate::db::open(path)?;
    access::snapshot::restore_into(&mut conn, &last, key, clock.now())?;
    let list = access::load_snapshot(&conn, key)?;
    tracing::error!(
        path = %path.display(), entries = list.len(), version = list.version,
        "the database was missing: a new one was made and the last-good allowlist restored into it \
         (earlier events are only in a backup, if there is one)"
    );
    Ok(list)
}

struct ReloadCtx {
    path: std::path::PathBuf,
    list: SharedAllowlist,
    key: access::PlateKey,
    alerts: crate::supervise::Alerts,
    /// The database was usable at start (otherwise the list in use is the last-good snapshot).
    db_ok: bool,
    /// When the applied list counts as stale (the `allowlist` alert).
    age: AgeCheck,
}

/// Keeps the in-memory snapshot in step with the allowlist on disk: when another connection (the CLI,
/// the cloud sync) commits, the list is reloaded off the async runtime, swapped whole and saved as the
/// last-good snapshot. When the database was not usable at start, it is tried every 30 s (with a quick
/// check); once it is, its list replaces the last-good one unless it is empty (a new database: the
/// last-good list stays until a list is applied) and the `database` alert clears. It also raises the
/// `allowlist` alert while the applied list is older than its maximum age (logged once each way).
fn reload_allowlist(ctx: ReloadCtx, cancel: CancellationToken) {
    let ReloadCtx {
        path,
        list,
        key,
        alerts,
        mut db_ok,
        age: (clock, max_age),
    } = ctx;
    let last_good = access::snapshot::path_for(&path);
    let Some(conn) = open_when_usable(&path, db_ok, "allowlist reload", Duration::from_secs(30), &cancel) else {
        return;
    };
    let version = |c: &rusqlite::Connection| c.pragma_query_value(None, "data_version", |r| r.get::<_, i64>(0)).ok();
    // Not usable at start: load at once.
    let mut seen = if db_ok { version(&conn) } else { None };
    let mut stale = false;
    while !cancel.is_cancelled() {
        let fresh = crate::sync::freshness::freshness(&list.current(), clock.now(), max_age);
        if fresh.stale != stale {
            stale = fresh.stale;
            match fresh.alert() {
                Some(alert) => {
                    tracing::warn!("ALERT: {alert}");
                    alerts.raise(ALERT_ALLOWLIST, alert);
                }
                None => {
                    tracing::info!(version = fresh.version, "allowlist is fresh again");
                    alerts.clear(ALERT_ALLOWLIST);
                }
            }
        }
        let now = version(&conn);
        if now == seen {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        seen = now;
        match access::load_snapshot(&conn, &key) {
            Ok(snapshot) if !db_ok && snapshot.is_empty() && !list.current().is_empty() => {
                tracing::warn!(
                    "the database is usable again but its allowlist is empty; keeping the last-good list until one is applied"
                );
            }
            Ok(snapshot) => {
                if !db_ok {
                    db_ok = true;
                    alerts.clear(crate::db::ALERT_DATABASE);
                }
                let current = list.current();
                // A keep-alive envelope changes no entry, only the version and issue time.
                if snapshot.entries() != current.entries()
                    || snapshot.version != current.version
                    || snapshot.issued != current.issued
                {
                    tracing::info!(
                        entries = snapshot.len(),
                        "allowlist changed on disk; new snapshot in use"
                    );
                    if let Err(e) =
                        access::snapshot::write(&last_good, snapshot.entries(), snapshot.version, chrono::Utc::now())
                    {
                        tracing::warn!(error = %e, "could not save the last-good allowlist");
                    }
                    list.replace(snapshot);
                }
            }
            Err(e) => tracing::error!(error = %e, "allowlist on disk is invalid; keeping the previous snapshot"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{store, Entry, Kind};

    #[test]
    fn allowlist_edits_on_disk_reach_the_running_snapshot() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("g.db");
        let mut conn = crate::db::open(&path).expect("db");
        let key = access::PlateKey::from_bytes([3; 32]);
        let list = SharedAllowlist::new(access::load_snapshot(&conn, &key).expect("load"));
        let cancel = CancellationToken::new();
        let t = {
            let ctx = ReloadCtx {
                path: path.clone(),
                list: list.clone(),
                key: key.clone(),
                alerts: crate::supervise::Alerts::default(),
                db_ok: true,
                age: (Arc::new(SystemClock), None),
            };
            let c = cancel.clone();
            std::thread::spawn(move || reload_allowlist(ctx, c))
        };
        std::thread::sleep(Duration::from_millis(100));
        store::upsert(
            &mut conn,
            &[Entry::new("BLK666", Kind::Blocked)],
            chrono::Utc::now(),
            &key,
        )
        .expect("upsert");
        let start = std::time::Instant::now();
        while list.current().exact("BLK666").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the new entry never reached the snapshot"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cancel.cancel();
        t.join().expect("join");
    }
}
