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
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::access::{self, SharedAllowlist};
use crate::camera::{self, CaptureOptions, CaptureStats, Frame, FrameSource, LatestSlot, MotionGate, OpenCvSource};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, LaneConfig, RelayConfig};
use crate::events::{self, EventSink};
use crate::gate::{self, safety, GateHandle, Relay};
use crate::recognize::{Manifest, PlateReader, ReaderOptions};
use crate::track::{self, PlateRead, VotedRead};

mod allowlist;
mod inputs;
mod lane;

use allowlist::{reload_allowlist, start_allowlist, ReloadCtx};
pub use lane::decide_read;
use lane::{decision_loop, recognize_loop, DecisionCtx, LaneTiming};

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

/// The newest time the site has recorded (events, audit log): the floor of the daemon's clock. None when
/// there is no readable database yet, or `GATEHOUSE_TRUST_WALL_CLOCK=1` says to follow the wall clock.
fn newest_record(cfg: &Config) -> Option<chrono::DateTime<chrono::Utc>> {
    if std::env::var("GATEHOUSE_TRUST_WALL_CLOCK").is_ok_and(|v| v == "1") {
        return None;
    }
    let path = cfg.site.database_path();
    if std::fs::metadata(&path).map(|m| m.len() == 0).unwrap_or(true) {
        return None;
    }
    let conn = crate::db::connect(&path).ok()?;
    let ms: Option<i64> = conn
        .query_row(
            "SELECT max(m) FROM (SELECT max(at) AS m FROM events UNION ALL SELECT max(at) FROM audit_log)",
            [],
            |r| r.get(0),
        )
        .ok()
        .flatten();
    ms.and_then(chrono::DateTime::from_timestamp_millis)
}

impl Parts {
    pub fn real(cfg: &Config) -> anyhow::Result<Self> {
        let rc = cfg.recognize.clone();
        Ok(Self {
            clock: Arc::new(crate::clock::TrustedClock::new(SystemClock, newest_record(cfg))),
            notifier: crate::supervise::Notifier::from_env(),
            make_source: Box::new(|lane| Box::new(OpenCvSource::new(lane.source.clone()))),
            make_reader: Box::new(move |lane| {
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
                // Loaded per lane: a manifest that cannot be read costs that lane its plates, not the daemon.
                let manifest = Manifest::load(&rc.manifest)?;
                for note in manifest.passed_over() {
                    tracing::info!(lane = %lane.name, "{note}");
                }
                // A reader that cannot read a clean rendered plate is not trusted with the gate; the manifest's
                // fallback models (the float reader) get one more try.
                let plate = crate::recognize::check_plate(rc.min_plate_len, rc.max_plate_len);
                let checked = crate::recognize::checked_reader(&manifest, rc.onnxruntime.as_deref(), &opts, &plate)?;
                if let Some(note) = &checked.note {
                    tracing::warn!(lane = %lane.name, "{note}");
                }
                let reader = checked.reader;
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
/// Raised when a lane's models cannot be loaded: it runs without reading plates.
const ALERT_RECOGNITION: &str = "recognition";

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
    /// Each lane's live still for the panel (made only while a guard watches).
    stills: camera::Stills,
    /// Each lane's setup view and its region of interest (shared with its capture loop).
    setups: camera::Setups,
    /// The gate inputs' reader threads (their tasks are in `tasks`) and what they count.
    inputs: Vec<std::thread::JoinHandle<()>>,
    input_stats: Arc<crate::inputs::InputStats>,
    /// Recognition time and frame age per lane (the metrics endpoint's histograms).
    timings: Arc<crate::supervise::metrics::Timings>,
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
    // The lanes and the panel hold their own gate handles from here on.
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
    if let Some(b) = clock.behind() {
        alerts.raise(
            "clock",
            format!(
                "the wall clock is {} days {} h behind the newest record: the gate goes on from that record's time; \
                 set the clock right (RTC battery, NTP)",
                b.num_days(),
                b.num_hours() % 24
            ),
        );
    }
    let plate_key = crate::access::PlateKey::load_or_create(&cfg.plate_key_path())?;
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
        // With a cloud link, events still owed to it outlive a forward clock jump.
        let keep_owed = cfg.sync.as_ref().is_some_and(|s| s.mqtt.is_some());
        move || events::retention::run_loop(path, retention, clock, cancel, db_ok, keep_owed)
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
        stills: camera::Stills::new(cfg.lanes.iter().map(|l| l.name.as_str())),
        setups: lane_regions(cfg, stores),
        inputs: Vec::new(),
        input_stats: Arc::default(),
        timings: Arc::default(),
        cancel: root.child_token(),
    };
    let (presence_tx, mut loops) = inputs::loop_channels(cfg);
    for lane in &cfg.lanes {
        let lane_loop = loops.remove(&lane.name);
        start_lane(cfg, lane, parts, stores, gates, &mut lanes, lane_loop)?;
    }
    inputs::start_inputs(
        inputs::InputCtx {
            cfg,
            clock: parts.clock.clone(),
            stores,
            handles: &gates.handles,
            presence: presence_tx,
        },
        &mut lanes,
    )?;
    Ok(lanes)
}

/// One lane: its capture thread, recognition thread, tracker (with its loop detector, if any) and decision
/// task, joined to its gate.
fn start_lane(
    cfg: &Config,
    lane: &LaneConfig,
    parts: &Parts,
    stores: &Stores,
    gates: &Gates,
    lanes: &mut Lanes,
    lane_loop: Option<inputs::LaneLoop>,
) -> anyhow::Result<()> {
    let (presence, wait_for_vehicle) = match lane_loop {
        Some(l) => (
            Some(l.events),
            l.open_wait.map(|wait| lane::WaitForVehicle {
                present: l.present,
                wait,
            }),
        ),
        None => (None, None),
    };
    let reader = match (parts.make_reader)(lane) {
        Ok(r) => r,
        // Without its models the lane reads no plate (nothing opens for a plate); guards, buttons, stills,
        // events and the cloud link go on. A standing alert says why and how to fix it.
        Err(e) => {
            let why = format!(
                "lane {}: plates cannot be read, so none opens the gate ({e:#}); guards and exit buttons still \
                 open it. Fix the models (scripts/setup.sh, `gatehouse check-config`) and restart",
                lane.name
            );
            tracing::error!("{why}");
            stores.alerts.raise(ALERT_RECOGNITION, why);
            Box::new(crate::recognize::UnavailableReader)
        }
    };
    let source = (parts.make_source)(lane);
    let gate = gates
        .handles
        .get(&lane.relay)
        .cloned()
        .with_context(|| format!("lane {}: relay {} is not configured", lane.name, lane.relay))?;
    let slot: Arc<LatestSlot<Frame>> = Arc::new(LatestSlot::new());
    let stats = Arc::new(CaptureStats::default());
    let setup = lanes.setups.lane(&lane.name);
    let opts = CaptureOptions {
        lane: lane.name.as_str().into(),
        roi: setup.as_ref().map(|s| s.roi.clone()).unwrap_or_default(),
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
    let (reads_tx, reads_rx) = mpsc::channel::<Vec<PlateRead>>(16);
    let (slot2, stats2) = (slot.clone(), stats.clone());
    let motion = lane.motion.as_ref().map(MotionGate::new);
    let timing = LaneTiming {
        timings: lanes.timings.clone(),
        // A replayed file keeps its own time: its frames' age means nothing.
        clock: (!lane.replay).then(|| parts.clock.clone()),
    };
    let timing2 = timing.clone();
    let views = lane::LaneViews {
        still: lanes.stills.lane(&lane.name),
        setup,
    };
    lanes.recognize.push(
        std::thread::Builder::new()
            .name(format!("recognize-{}", lane.name))
            .spawn(move || recognize_loop(reader, slot2, reads_tx, stats2, motion, views, timing2))?,
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
        presence,
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
        timing,
        wait_for_vehicle,
    })));
    lanes.slots.push(slot);
    lanes.stats.push(stats);
    Ok(())
}

/// Each lane's region: the one saved on the setup page (`meta.lane_regions`) where there is one, else the
/// config's. A saved region that no longer passes the rule is ignored (and said so).
fn lane_regions(cfg: &Config, stores: &Stores) -> camera::Setups {
    let saved: std::collections::BTreeMap<String, crate::config::Roi> = if stores.db_ok {
        crate::db::open(&cfg.site.database_path())
            .ok()
            .and_then(|c| crate::db::meta_get(&c, crate::db::MetaKey::LaneRegions).ok().flatten())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    } else {
        Default::default()
    };
    camera::Setups::new(cfg.lanes.iter().map(|l| {
        let roi = match saved.get(&l.name) {
            Some(r) if r.is_valid() => {
                tracing::info!(lane = %l.name, region = ?r, "region of interest from the setup page");
                Some(*r)
            }
            Some(r) => {
                tracing::warn!(lane = %l.name, region = ?r, "saved region is not inside the frame; using the config's");
                l.roi
            }
            None => l.roi,
        };
        (l.name.as_str(), roi)
    }))
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
        timings: lanes.timings.clone(),
        inputs: lanes.input_stats.clone(),
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
        stills: lanes.stills.clone(),
        setups: lanes.setups.clone(),
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
    for t in lanes.inputs {
        join_thread(t, "a gate input", stop::BACKGROUND).await;
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
