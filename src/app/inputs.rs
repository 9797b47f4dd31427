//! Step 3b: the gate inputs ([`crate::inputs`]), started with the lanes. Each input has a reader thread;
//! its changes go where they belong:
//! - a loop detector (`presence`) to its lane's tracker, which opens and closes passes with it;
//! - a gate position contact to a gate watch task ([`crate::gate::GateWatch`]) that compares it with the
//!   relay's transitions and raises "not opened", "held open" and "forced open": standing alerts, metrics,
//!   and gate events (stored, uploaded, shown live);
//! - an exit button to its gate: an opening with the button as actor, audited and recorded as an event.
//!
//! An input that cannot be opened raises an alert and is left out; the gate keeps working on the camera.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{Lanes, Stores};
use crate::access::{Action, Decision, Reason};
use crate::config::{Config, InputConfig, InputRole};
use crate::events::{EventSink, GateEvent};
use crate::gate::{Actor, GateAlertKind, GateCommand, GateHandle, GateWatch, WatchNotice};
use crate::inputs::{self, InputEvent, InputStats};

/// Raised when an input cannot be opened.
pub(super) const ALERT_INPUT: &str = "input_unavailable";
/// How often the gate watch looks at the time (its alerts fire within this of their threshold).
const WATCH_TICK: Duration = Duration::from_millis(250);

/// A lane's loop detector as its lane sees it: the changes (for the tracker), whether a vehicle is on it
/// now, and how long a decided opening waits for one (`None`: it does not wait).
pub(super) struct LaneLoop {
    pub events: mpsc::Receiver<InputEvent>,
    pub present: watch::Receiver<bool>,
    pub open_wait: Option<Duration>,
}

/// Where a loop detector's changes go: its lane's tracker and its "vehicle present" state.
#[derive(Clone)]
pub(super) struct LoopFeed {
    events: mpsc::Sender<InputEvent>,
    present: Arc<watch::Sender<bool>>,
}

/// The loop detectors by lane, made before the lanes so each lane gets its end.
pub(super) fn loop_channels(cfg: &Config) -> (HashMap<String, LoopFeed>, HashMap<String, LaneLoop>) {
    cfg.inputs
        .iter()
        .filter_map(|i| match &i.role {
            InputRole::Presence { lane, open_wait } => {
                let (tx, rx) = mpsc::channel(32);
                let (ptx, prx) = watch::channel(false);
                let feed = LoopFeed {
                    events: tx,
                    present: Arc::new(ptx),
                };
                let tap = LaneLoop {
                    events: rx,
                    present: prx,
                    open_wait: *open_wait,
                };
                Some(((lane.clone(), feed), (lane.clone(), tap)))
            }
            _ => None,
        })
        .unzip()
}

/// What the gate-side input tasks need.
pub(super) struct InputCtx<'a> {
    pub cfg: &'a Config,
    pub clock: crate::clock::SharedClock,
    pub stores: &'a Stores,
    pub handles: &'a HashMap<String, GateHandle>,
    pub presence: HashMap<String, LoopFeed>,
}

/// Opens every input and starts its reader thread and the task that acts on it.
pub(super) fn start_inputs(ctx: InputCtx<'_>, lanes: &mut Lanes) -> anyhow::Result<()> {
    for ic in &ctx.cfg.inputs {
        let line = match inputs::build_input(ic) {
            Ok(l) => l,
            Err(e) => {
                ctx.stores.alerts.raise(
                    ALERT_INPUT,
                    format!(
                        "{e}; the gate works without it (check the wiring and [inputs.{}])",
                        ic.name
                    ),
                );
                continue;
            }
        };
        tracing::info!(input = %ic.name, line = %line.describe(), role = ?ic.role, "input open");
        let (tx, rx) = mpsc::channel::<InputEvent>(32);
        let (name, debounce, clock, cancel) = (
            Arc::<str>::from(ic.name.as_str()),
            ic.debounce,
            ctx.clock.clone(),
            lanes.cancel.clone(),
        );
        lanes.inputs.push(
            std::thread::Builder::new()
                .name(format!("input-{}", ic.name))
                .spawn(move || inputs::run_input(name, line, debounce, clock, tx, cancel))?,
        );
        let task = match &ic.role {
            InputRole::Presence { lane, .. } => {
                let Some(to) = ctx.presence.get(lane).cloned() else {
                    continue;
                };
                tokio::spawn(forward_presence(rx, to, lane.clone(), lanes.input_stats.clone()))
            }
            InputRole::GatePosition { relay, .. } => {
                let Some(handle) = ctx.handles.get(relay).cloned() else {
                    continue;
                };
                tokio::spawn(watch_gate(WatchCtx {
                    input: ic.clone(),
                    lane: lane_of(ctx.cfg, relay),
                    handle,
                    rx,
                    clock: ctx.clock.clone(),
                    alerts: ctx.stores.alerts.clone(),
                    sink: ctx.stores.sink.clone(),
                    live: lanes.live.clone(),
                    stats: lanes.input_stats.clone(),
                }))
            }
            InputRole::ExitButton { relay } => {
                let Some(handle) = ctx.handles.get(relay).cloned() else {
                    continue;
                };
                tokio::spawn(exit_button(ButtonCtx {
                    input: ic.name.clone(),
                    lane: lane_of(ctx.cfg, relay),
                    handle,
                    rx,
                    clock: ctx.clock.clone(),
                    sink: ctx.stores.sink.clone(),
                    live: lanes.live.clone(),
                    stats: lanes.input_stats.clone(),
                    db_path: ctx.cfg.site.database_path(),
                    key_path: ctx.cfg.site.data_dir.join("audit-device.key"),
                }))
            }
        };
        lanes.tasks.push(task);
    }
    Ok(())
}

/// The lane a relay's gate serves (its events are filed under it), or the relay's name.
fn lane_of(cfg: &Config, relay: &str) -> Arc<str> {
    cfg.lanes
        .iter()
        .find(|l| l.relay == relay)
        .map_or(relay, |l| l.name.as_str())
        .into()
}

async fn forward_presence(mut rx: mpsc::Receiver<InputEvent>, to: LoopFeed, lane: String, stats: Arc<InputStats>) {
    while let Some(e) = rx.recv().await {
        stats.present(&lane, e.active);
        to.present.send_replace(e.active);
        if to.events.send(e).await.is_err() {
            break;
        }
    }
}

struct WatchCtx {
    input: InputConfig,
    lane: Arc<str>,
    handle: GateHandle,
    rx: mpsc::Receiver<InputEvent>,
    clock: crate::clock::SharedClock,
    alerts: crate::supervise::Alerts,
    sink: EventSink,
    live: crate::panel::LiveHub,
    stats: Arc<InputStats>,
}

/// Compares a gate's position contact with its relay until the input stops.
async fn watch_gate(mut c: WatchCtx) {
    let InputRole::GatePosition {
        relay,
        open_within,
        held_open,
    } = c.input.role.clone()
    else {
        return;
    };
    let mut watch = GateWatch::new(open_within, held_open);
    let mut relay_state = c.handle.relay_state();
    let mut seen = *relay_state.borrow_and_update();
    let mut tick = tokio::time::interval(WATCH_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut relay_open = true;
    loop {
        let notices = tokio::select! {
            e = c.rx.recv() => match e {
                Some(e) => {
                    c.stats.gate_open(&relay, e.active);
                    if e.initial {
                        watch.initial(e.active, e.at);
                        Vec::new()
                    } else {
                        watch.position(e.active, e.at)
                    }
                }
                None => break,
            },
            changed = relay_state.changed(), if relay_open => {
                if changed.is_err() {
                    relay_open = false;
                    continue;
                }
                let now = c.clock.now();
                let s = *relay_state.borrow_and_update();
                let mut n = Vec::new();
                // A pulse shorter than this task's wake-up still counts as a command.
                if s.energized_count > seen.energized_count && !s.on {
                    n.extend(watch.relay(true, now));
                }
                n.extend(watch.relay(s.on, now));
                seen = s;
                n
            },
            _ = tick.tick() => watch.tick(c.clock.now()),
        };
        for n in notices {
            notice(&c, &relay, n).await;
        }
    }
}

async fn notice(c: &WatchCtx, relay: &str, n: WatchNotice) {
    match n {
        WatchNotice::Alert { kind, at } => {
            let what = format!("gate {relay}: {}", kind.describe());
            c.alerts.raise(kind.code(), what.clone());
            c.stats.alert(relay, kind.code());
            let e = alert_event(&c.lane, at, kind, &c.input.name);
            c.live.publish(crate::panel::LiveEvent::from_event(&e));
            if tokio::time::timeout(Duration::from_secs(2), c.sink.send(e))
                .await
                .is_err()
            {
                tracing::error!(
                    relay,
                    alert = kind.code(),
                    "gate alert could not be queued for the event store"
                );
            }
        }
        WatchNotice::Cleared { kind } => c.alerts.clear(kind.code()),
        WatchNotice::Opened { after } => {
            tracing::info!(relay, after_ms = after.num_milliseconds(), "gate opened on command");
        }
        WatchNotice::Closed(o) => {
            tracing::info!(
                relay,
                open_s = (o.closed_at - o.opened_at).num_milliseconds() as f64 / 1000.0,
                commanded = o.commanded,
                "gate closed"
            );
            let e = cycle_event(&c.lane, &o, &c.input.name);
            if tokio::time::timeout(Duration::from_secs(2), c.sink.send(e))
                .await
                .is_err()
            {
                tracing::error!(relay, "gate opening could not be queued for the event store");
            }
        }
    }
}

/// A finished opening as a gate event: action `gate`, `first_seen` when the gate opened, `at` when it
/// closed, how long it stood open in the gate result.
fn cycle_event(lane: &Arc<str>, o: &crate::gate::Opening, input: &str) -> GateEvent {
    let open_s = (o.closed_at - o.opened_at).num_milliseconds() as f64 / 1000.0;
    let decision = Decision {
        action: Action::Gate,
        alert: !o.commanded,
        reason: Reason::GateCycle { commanded: o.commanded },
        matched: None,
    };
    let result = format!("open {open_s:.1} s, seen by input {input}");
    GateEvent::without_plate(lane.clone(), o.opened_at, o.closed_at, decision, result)
}

/// A gate alert as a gate event: no plate, action `alert`, the alert's code as its reason.
fn alert_event(lane: &Arc<str>, at: chrono::DateTime<chrono::Utc>, kind: GateAlertKind, input: &str) -> GateEvent {
    let decision = Decision {
        action: Action::Alert,
        alert: true,
        reason: Reason::GateAlert { alert: kind.code() },
        matched: None,
    };
    GateEvent::without_plate(lane.clone(), at, at, decision, format!("seen by input {input}"))
}

struct ButtonCtx {
    input: String,
    lane: Arc<str>,
    handle: GateHandle,
    rx: mpsc::Receiver<InputEvent>,
    clock: crate::clock::SharedClock,
    sink: EventSink,
    live: crate::panel::LiveHub,
    stats: Arc<InputStats>,
    db_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
}

/// Opens the gate on each press (not on a button found pressed at start-up), audits it with the button
/// as actor and records it as a gate event, like a guard's opening.
async fn exit_button(mut c: ButtonCtx) {
    while let Some(e) = c.rx.recv().await {
        if !e.active || e.initial {
            continue;
        }
        let reason = format!("exit button {}", c.input);
        let answer = match c.handle.try_command_reply(GateCommand::Open {
            actor: Actor::Button(c.input.clone()),
            reason: reason.clone(),
        }) {
            Ok(rx) => match tokio::time::timeout(Duration::from_secs(2), rx).await {
                Ok(Ok(o)) => Ok(o),
                _ => Err("no answer from the gate within 2 s".to_string()),
            },
            Err(err) => Err(format!("gate command failed: {err}")),
        };
        let refused = answer == Ok(crate::gate::GateOutcome::Lockdown);
        let outcome = answer.map_or_else(|e| e, |o| o.to_string());
        c.stats.button_open(c.handle.name());
        tracing::info!(input = %c.input, relay = c.handle.name(), outcome = %outcome, "exit button pressed");
        audit_press(&c, &outcome).await;
        let now = c.clock.now();
        // In lockdown the button opens nothing, and the event says so.
        let decision = if refused {
            Decision {
                action: Action::Deny,
                alert: false,
                reason: Reason::Lockdown,
                matched: None,
            }
        } else {
            Decision {
                action: Action::Open,
                alert: false,
                reason: Reason::ExitButton,
                matched: None,
            }
        };
        let event = GateEvent {
            guard_action: Some(format!("open by {reason}")),
            ..GateEvent::without_plate(c.lane.clone(), now, now, decision, outcome)
        };
        c.live.publish(crate::panel::LiveEvent::from_event(&event));
        if tokio::time::timeout(Duration::from_secs(2), c.sink.send(event))
            .await
            .is_err()
        {
            tracing::error!(input = %c.input, "exit-button opening could not be queued for the event store");
        }
    }
}

/// The press in the audit log (actor `button:NAME`, action `gate.open`), with a signed checkpoint.
async fn audit_press(c: &ButtonCtx, outcome: &str) {
    let a = crate::audit::Action {
        actor: format!("button:{}", c.input),
        role: "input".into(),
        source: Some("gpio".into()),
        action: "gate.open".into(),
        target: Some(c.handle.name().to_string()),
        after: Some(format!("exit button pressed ({outcome})")),
        ..Default::default()
    };
    let (db, key, now) = (c.db_path.clone(), c.key_path.clone(), c.clock.now());
    let res = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn = crate::db::open(&db)?;
        crate::audit::append(&mut conn, &a, now)?;
        let key = crate::audit::device_key(&key)?;
        crate::audit::checkpoint(&conn, &key, "device", now)?;
        Ok(())
    })
    .await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(input = %c.input, error = %e, "exit-button press could not be audited"),
        Err(e) => tracing::error!(input = %c.input, error = %e, "audit task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InputKind, RelayConfig, RelayKind, SafeState};
    use crate::gate::{Relay, SimulatedRelay};

    /// A forced opening reaches the standing alerts, the panel's live feed, the metrics and the event store,
    /// and its alert clears when the gate closes.
    #[tokio::test]
    async fn a_gate_alert_reaches_the_alerts_the_live_feed_the_metrics_and_the_store() {
        let relay: Box<dyn Relay> = Box::new(SimulatedRelay::new("main", None).expect("relay"));
        let rc = RelayConfig {
            name: "main".into(),
            kind: RelayKind::Simulated { log: None },
            active_low: false,
            pulse: Duration::from_millis(300),
            cooldown: Duration::from_millis(100),
            max_hold: Duration::from_secs(60),
            safe_state: SafeState::Closed,
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let (handle, fut) = crate::gate::run_controller(rc, Arc::new(std::sync::Mutex::new(relay)), cancel.clone());
        tokio::spawn(fut);
        let (sink, mut stored) = EventSink::channel(8);
        let (tx, rx) = mpsc::channel(8);
        let (live, alerts, stats) = (
            crate::panel::LiveHub::default(),
            crate::supervise::Alerts::default(),
            Arc::new(InputStats::default()),
        );
        let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
        let task = tokio::spawn(watch_gate(WatchCtx {
            input: InputConfig {
                name: "gate".into(),
                kind: InputKind::Simulated {
                    file: "/nonexistent".into(),
                },
                active_low: false,
                debounce: Duration::ZERO,
                role: InputRole::GatePosition {
                    relay: "main".into(),
                    open_within: Duration::from_secs(1),
                    held_open: Duration::from_secs(60),
                },
            },
            lane: "entry".into(),
            handle,
            rx,
            clock: clock.clone(),
            alerts: alerts.clone(),
            sink,
            live: live.clone(),
            stats: stats.clone(),
        }));
        let event = |active, initial| InputEvent {
            input: "gate".into(),
            active,
            initial,
            at: clock.now(),
        };
        tx.send(event(false, true)).await.expect("send");
        tx.send(event(true, false)).await.expect("send");
        let e = tokio::time::timeout(Duration::from_secs(5), stored.recv())
            .await
            .expect("in time")
            .expect("an event");
        assert_eq!(e.decision.action, Action::Alert);
        assert_eq!(e.decision.reason.code(), "gate_forced_open");
        assert_eq!(&*e.lane, "entry");
        let shown = live.since(0, 10);
        assert!(
            shown.iter().any(|l| l.alert && l.reason.contains("forced open")),
            "the panel's live feed has it"
        );
        assert!(alerts.list().iter().any(|(name, _)| *name == "gate_forced_open"));
        assert_eq!(
            stats.snapshot().alerts.get(&("main".into(), "gate_forced_open".into())),
            Some(&1)
        );
        // Closed again: the standing alert clears (the event stays).
        tx.send(event(false, false)).await.expect("send");
        let start = std::time::Instant::now();
        while alerts.list().iter().any(|(name, _)| *name == "gate_forced_open") {
            assert!(start.elapsed() < Duration::from_secs(5), "cleared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The opening itself is recorded too: when it opened, when it closed, with no command behind it.
        let cycle = tokio::time::timeout(Duration::from_secs(5), stored.recv())
            .await
            .expect("in time")
            .expect("an event");
        assert_eq!(cycle.decision.action, Action::Gate);
        assert_eq!(cycle.decision.reason, Reason::GateCycle { commanded: false });
        assert!(cycle.first_seen <= cycle.at && cycle.at <= clock.now());
        assert!(cycle.gate_result.as_deref().is_some_and(|g| g.starts_with("open ")));
        drop(tx);
        task.await.expect("task");
        cancel.cancel();
    }
}
