//! One lane's stages after capture: recognition on its own thread (newest frame in, its plate reads out,
//! crops encoded), and the decision task (decision stage -> gate command -> event), which never waits on the
//! event writer.

use std::sync::Arc;
use std::time::Duration;

use opencv::core::{Mat, Rect, Vector};
use opencv::prelude::*;
use tokio::sync::mpsc;

use crate::access::{self, Action, Decision, SharedAllowlist};
use crate::camera::setup::FrameRead;
use crate::camera::{CaptureStats, Frame, LaneSetup, LaneStill, LatestSlot, MotionGate};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::events::{EventSink, GateEvent};
use crate::gate::{self, Actor, GateCommand, GateHandle};
use crate::plate;
use crate::recognize::PlateReader;
use crate::track::{self, PlateRead, VotedRead};

/// Where a lane's recognition thread records its times.
#[derive(Clone)]
pub(super) struct LaneTiming {
    pub(super) timings: Arc<crate::supervise::metrics::Timings>,
    /// The clock frames' ages are measured by; `None` for a replayed file.
    pub(super) clock: Option<SharedClock>,
}

/// Recognition for one lane, on its own thread: newest frame in, all its plate reads out (best first,
/// one message per frame, each read with its crop).
pub(super) fn recognize_loop(
    mut reader: Box<dyn PlateReader>,
    slot: Arc<LatestSlot<Frame>>,
    out: mpsc::Sender<Vec<PlateRead>>,
    stats: Arc<CaptureStats>,
    mut motion: Option<MotionGate>,
    views: LaneViews,
    timing: LaneTiming,
) {
    let progress = &stats.progress;
    loop {
        let frame = match slot.take_timeout(Duration::from_millis(200)) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(()) => break,
        };
        if let Some(clock) = &timing.clock {
            let age = (clock.now() - frame.at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
            timing.timings.frame_age(&frame.lane, age);
        }
        let now = std::time::Instant::now();
        if let Some(s) = &views.still {
            s.offer(&frame.lane, &frame.image, frame.roi, now);
        }
        // With the setup page open the lane reads every frame: the installer sees what the reader sees.
        let setup_open = views.setup.as_ref().is_some_and(|s| s.watched(now));
        if let Some(gate) = motion.as_mut() {
            if !gate.wants(&frame.image, frame.roi, frame.at) && !setup_open {
                stats.still.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
        }
        let started = std::time::Instant::now();
        let reads = reader.read(&frame.image, frame.roi);
        let recognition_s = started.elapsed().as_secs_f64();
        timing.timings.recognition(&frame.lane, recognition_s);
        progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reads = match reads {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(lane = %frame.lane, error = %e, "recognition failed on a frame");
                continue;
            }
        };
        if let Some(s) = &views.setup {
            let read = FrameRead {
                image: &frame.image,
                roi: frame.roi,
                plates: &reads.candidates,
                recognition_ms: recognition_s * 1000.0,
                seq: frame.seq,
                at: frame.at,
            };
            s.offer(&read, std::time::Instant::now());
        }
        if reads.candidates.is_empty() {
            continue;
        }
        if let Some(gate) = motion.as_mut() {
            gate.plate_seen(frame.at);
        }
        // Every plate of the frame goes to the tracker (best first): the vehicle's own text or a second
        // vehicle follows its own pass there instead of outvoting the plate.
        let frame_reads: Vec<PlateRead> = reads
            .candidates
            .into_iter()
            .map(|candidate| PlateRead {
                lane: frame.lane.clone(),
                at: frame.at,
                frame_seq: frame.seq,
                crop_jpeg: encode_crop(&frame.image, candidate.bbox).unwrap_or_default(),
                candidate,
            })
            .collect();
        if out.blocking_send(frame_reads).is_err() {
            break;
        }
    }
}

/// What a lane shows the panel: the guards' live still and the installers' setup view.
pub(super) struct LaneViews {
    pub(super) still: Option<Arc<LaneStill>>,
    pub(super) setup: Option<Arc<LaneSetup>>,
}

pub(super) fn encode_crop(image: &Mat, bbox: Rect) -> opencv::Result<Vec<u8>> {
    let r = bbox & Rect::new(0, 0, image.cols(), image.rows());
    if r.width <= 0 || r.height <= 0 {
        return Ok(Vec::new());
    }
    let crop = Mat::roi(image, r)?;
    let mut buf: Vector<u8> = Vector::new();
    let params: Vector<i32> = Vector::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, 90]);
    if r.width > CROP_MAX_WIDTH {
        // A close-up plate (half the frame) is as legible at this width and a fraction of the work: every
        // read of a frame is encoded on the recognition thread.
        let h = (r.height * CROP_MAX_WIDTH / r.width).max(1);
        let mut small = Mat::default();
        opencv::imgproc::resize(
            &crop,
            &mut small,
            opencv::core::Size::new(CROP_MAX_WIDTH, h),
            0.0,
            0.0,
            opencv::imgproc::INTER_AREA,
        )?;
        opencv::imgcodecs::imencode(".jpg", &small, &mut buf, &params)?;
    } else {
        opencv::imgcodecs::imencode(".jpg", &crop, &mut buf, &params)?;
    }
    Ok(buf.to_vec())
}

/// Widest plate crop stored with an event (pixels); wider ones are scaled down to it.
const CROP_MAX_WIDTH: i32 = 400;

pub(super) struct DecisionCtx {
    pub(super) cfg: Config,
    pub(super) clock: SharedClock,
    pub(super) allowlist: SharedAllowlist,
    pub(super) gate: GateHandle,
    pub(super) sink: EventSink,
    pub(super) voted: mpsc::Receiver<VotedRead>,
    pub(super) decisions: Arc<std::sync::atomic::AtomicU64>,
    pub(super) opened: Arc<std::sync::atomic::AtomicU64>,
    pub(super) opens: track::RecentOpens,
    /// The panel's live view (a short push; never waits on the panel).
    pub(super) live: crate::panel::LiveHub,
    /// Where the capture-to-relay time goes; its clock is `None` for a replayed file (its own time).
    pub(super) timing: LaneTiming,
    /// With a loop detector set to `open_only_present`: a decided opening waits for a vehicle on it.
    pub(super) wait_for_vehicle: Option<WaitForVehicle>,
}

/// A lane whose gate opens for a decided plate only while its loop detector says a vehicle is there.
pub(super) struct WaitForVehicle {
    pub(super) present: tokio::sync::watch::Receiver<bool>,
    pub(super) wait: Duration,
}

/// How long an event waits for the gate controller's answer before it is recorded without it.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Decides each voted read, commands the gate (never waiting), then queues the event. The event writer is
/// never awaited while a read is waiting: events that do not fit its queue wait in a local backlog, and an
/// event waiting for the gate's answer (at most [`ANSWER_WITHIN`], or the loop's wait) waits in a task of
/// its own, so neither the next decision nor the other events wait for it.
pub(super) async fn decision_loop(mut ctx: DecisionCtx) {
    let mut backlog: std::collections::VecDeque<GateEvent> = std::collections::VecDeque::new();
    let mut answering: tokio::task::JoinSet<GateEvent> = tokio::task::JoinSet::new();
    let mut reads_open = true;
    while reads_open || !backlog.is_empty() || !answering.is_empty() {
        tokio::select! {
            v = ctx.voted.recv(), if reads_open => match v {
                Some(v) => match decide_and_act(&ctx, v) {
                    None => {}
                    Some((e, None)) => backlog.push_back(e),
                    Some((mut e, Some((reply, within)))) => {
                        answering.spawn(async move {
                            e.gate_result = Some(gate_result(reply, within).await);
                            e
                        });
                    }
                },
                None => reads_open = false,
            },
            Some(done) = answering.join_next(), if !answering.is_empty() => match done {
                Ok(e) => backlog.push_back(e),
                Err(e) => tracing::error!(error = %e, "an event waiting for the gate's answer was lost"),
            },
            permit = ctx.sink.reserve(), if !backlog.is_empty() => match (permit, backlog.pop_front()) {
                (Ok(permit), Some(e)) => permit.send(e),
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
/// the relay, so this wait is short unless the opening waits for the loop; the gate was commanded, or
/// the wait begun, before this).
async fn gate_result(reply: GateReply, within: Duration) -> String {
    match tokio::time::timeout(within, reply).await {
        Ok(Ok(outcome)) => outcome.to_string(),
        Ok(Err(_)) => "gate controller stopped before it answered".to_string(),
        Err(_) => format!("gate controller did not answer within {} s", within.as_secs()),
    }
}

/// Opens the gate once a vehicle is on the loop, waiting at most `wait` (an opening for a car the camera
/// read on its way in). The answer says what became of it: the controller's outcome, or no vehicle.
fn open_when_present(
    gate: GateHandle,
    cmd: GateCommand,
    mut present: tokio::sync::watch::Receiver<bool>,
    wait: Duration,
) -> GateReply {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let arrived = matches!(tokio::time::timeout(wait, present.wait_for(|p| *p)).await, Ok(Ok(_)));
        let outcome = if !arrived {
            tracing::warn!(
                gate = gate.name(),
                wait_s = wait.as_secs(),
                "decided opening dropped: no vehicle came onto the loop"
            );
            gate::GateOutcome::NoVehicle
        } else {
            match gate.try_command_reply(cmd) {
                Ok(reply) => reply.await.unwrap_or(gate::GateOutcome::RelayFailed),
                Err(e) => {
                    tracing::error!(gate = gate.name(), error = %e, "could not command the gate");
                    gate::GateOutcome::RelayFailed
                }
            }
        };
        let _ = tx.send(outcome);
    });
    rx
}

/// Passes the gate controller's answer on, and when the relay pulsed records the time from the capture of
/// the deciding frame (`captured`) to then. A task of its own, so the time is taken when the relay answers,
/// not when the event writer next has room.
fn time_to_relay(
    timing: &LaneTiming,
    lane: &Arc<str>,
    captured: chrono::DateTime<chrono::Utc>,
    reply: GateReply,
) -> GateReply {
    let Some(clock) = timing.clock.clone() else {
        return reply;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (timings, lane) = (timing.timings.clone(), lane.clone());
    tokio::spawn(async move {
        if let Ok(outcome) = reply.await {
            if outcome == gate::GateOutcome::Pulsed {
                let s = (clock.now() - captured).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
                timings.capture_to_relay(&lane, s);
                tracing::info!(lane = %lane, capture_to_relay_ms = format!("{:.0}", s * 1e3), "relay pulsed");
            }
            let _ = tx.send(outcome);
        }
    });
    rx
}

/// Decides one voted read and commands the gate; the event, and when the gate was commanded, where its
/// answer comes and how long to wait for it. A quiet read (a passing read beside another pass) that raises
/// no alert gives no event.
pub(super) fn decide_and_act(ctx: &DecisionCtx, v: VotedRead) -> Option<(GateEvent, Option<(GateReply, Duration)>)> {
    let now = ctx.clock.now();
    let decision = decide_read(&v, &ctx.allowlist, &ctx.cfg, now, ctx.gate.in_lockdown());
    if v.quiet && !decision.alert {
        tracing::debug!(lane = %v.lane, reason = %decision.reason, "a passing read beside another pass: no event");
        return None;
    }
    ctx.decisions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (mut gate_result, mut reply) = (None, None);
    if decision.action == Action::Open {
        ctx.opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ctx.opens.record(&v.text, v.decided_at);
        let cmd = GateCommand::Open {
            actor: Actor::Automatic,
            reason: decision.reason.to_string(),
        };
        match &ctx.wait_for_vehicle {
            // The car is not on the loop yet: the opening waits for it (the event records what became of it).
            Some(w) if !*w.present.borrow() => {
                tracing::info!(lane = %v.lane, wait_s = w.wait.as_secs(), "opening waits for the vehicle on the loop");
                let rx = open_when_present(ctx.gate.clone(), cmd, w.present.clone(), w.wait);
                reply = Some((rx, w.wait + ANSWER_WITHIN));
            }
            _ => match ctx.gate.try_command_reply(cmd) {
                // Filled in with what the relay did before the event is stored.
                Ok(rx) => reply = Some((time_to_relay(&ctx.timing, &v.lane, v.decided_at, rx), ANSWER_WITHIN)),
                Err(e) => {
                    tracing::error!(lane = %v.lane, error = %e, "could not command the gate");
                    gate_result = Some(format!("gate command failed: {e}"));
                }
            },
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
    Some((event, reply))
}

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
        // a quiet read never opens: it counts as too few reads
        reads: if v.quiet { 0 } else { v.reads },
    };
    let rules = access::stage::Rules {
        access: &cfg.access,
        min_reads: cfg.track.min_reads,
        tz: cfg.site.timezone,
    };
    access::stage::decide_pass(read, &allowlist.current(), rules, now, lockdown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RelayConfig, RelayKind, SafeState};
    use crate::gate::{Relay, SimulatedRelay};

    fn gate() -> (GateHandle, Arc<std::sync::Mutex<Vec<gate::Transition>>>) {
        let cfg = RelayConfig {
            name: "main".into(),
            kind: RelayKind::Simulated { log: None },
            active_low: false,
            pulse: Duration::from_millis(200),
            cooldown: Duration::from_secs(1),
            max_hold: Duration::from_secs(60),
            safe_state: SafeState::Closed,
        };
        let r = SimulatedRelay::new("main", None).expect("relay");
        let t = r.transitions.clone();
        let b: Box<dyn Relay> = Box::new(r);
        let (handle, run) = gate::run_controller(cfg, Arc::new(std::sync::Mutex::new(b)), Default::default());
        tokio::spawn(run);
        (handle, t)
    }

    fn open() -> GateCommand {
        GateCommand::Open {
            actor: Actor::Automatic,
            reason: "test".into(),
        }
    }

    fn pulses(t: &std::sync::Mutex<Vec<gate::Transition>>) -> usize {
        t.lock().expect("lock").iter().filter(|x| x.energized).count()
    }

    #[tokio::test(start_paused = true)]
    async fn an_opening_waits_for_the_vehicle_on_the_loop() {
        let (handle, t) = gate();
        let (present, rx) = tokio::sync::watch::channel(false);
        let reply = open_when_present(handle, open(), rx, Duration::from_secs(20));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(pulses(&t), 0, "no pulse while the loop is empty");
        present.send_replace(true);
        assert_eq!(reply.await.expect("answer"), gate::GateOutcome::Pulsed);
        assert_eq!(pulses(&t), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_opening_no_vehicle_comes_for_is_dropped() {
        let (handle, t) = gate();
        let (_present, rx) = tokio::sync::watch::channel(false);
        let reply = open_when_present(handle, open(), rx, Duration::from_secs(20));
        let answer = reply.await.expect("answer");
        assert_eq!(answer, gate::GateOutcome::NoVehicle);
        assert_eq!(answer.to_string(), "not pulsed: no vehicle came onto the loop in time");
        assert_eq!(pulses(&t), 0);
        // The loop's feed gone (shutdown) ends the wait at once, without an opening.
        let (handle, t) = gate();
        let (present, rx) = tokio::sync::watch::channel(false);
        drop(present);
        let started = tokio::time::Instant::now();
        let reply = open_when_present(handle, open(), rx, Duration::from_secs(20));
        assert_eq!(reply.await.expect("answer"), gate::GateOutcome::NoVehicle);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(pulses(&t), 0);
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;
    use crate::access::{Allowlist, Entry, Kind};
    use crate::recognize::CharRead;

    const CONFIG: &str = r#"
[site]
name = "test"
timezone = "UTC"
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

    fn voted(text: &str, reads: usize, quiet: bool) -> VotedRead {
        let chars: Vec<CharRead> = text
            .chars()
            .map(|ch| CharRead {
                ch,
                conf: 0.99,
                alt: None,
            })
            .collect();
        VotedRead {
            lane: Arc::from("entry"),
            text: text.into(),
            chars,
            confidence: 0.99,
            reads,
            first_seen: chrono::Utc::now(),
            decided_at: chrono::Utc::now(),
            alternatives: Vec::new(),
            best_crop: Vec::new(),
            best_bbox: Default::default(),
            best_frame: 0,
            early: false,
            quiet,
        }
    }

    /// A close-up plate's crop is stored at most CROP_MAX_WIDTH wide; a distant one as it is.
    #[test]
    fn a_close_up_crop_is_scaled_down_a_distant_one_kept() {
        let frame = Mat::new_rows_cols_with_default(720, 1280, opencv::core::CV_8UC3, opencv::core::Scalar::all(128.0))
            .expect("frame");
        let size = |jpeg: Vec<u8>| {
            let m = opencv::imgcodecs::imdecode(&Vector::<u8>::from_slice(&jpeg), opencv::imgcodecs::IMREAD_COLOR)
                .expect("decodes");
            (m.cols(), m.rows())
        };
        assert_eq!(
            size(encode_crop(&frame, Rect::new(100, 200, 800, 300)).expect("crop")),
            (400, 150)
        );
        assert_eq!(
            size(encode_crop(&frame, Rect::new(100, 200, 120, 40)).expect("crop")),
            (120, 40)
        );
        assert!(encode_crop(&frame, Rect::new(2000, 200, 120, 40))
            .expect("crop")
            .is_empty());
    }

    /// A quiet read (a passing read beside another pass) never opens, even for a listed plate with
    /// enough reads, but a blocked plate read that way still raises the alert.
    #[test]
    fn a_quiet_read_never_opens_but_a_blocked_one_still_alerts() {
        let cfg = crate::config::parse(CONFIG, std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).expect("config");
        let list = SharedAllowlist::new(Allowlist::new(
            vec![
                Entry::new("ABC123", Kind::Resident),
                Entry::new("BAD666", Kind::Blocked),
            ],
            1,
        ));
        let now = chrono::Utc::now();
        let loud = decide_read(&voted("ABC123", 3, false), &list, &cfg, now, false);
        assert_eq!(loud.action, Action::Open);
        let quiet = decide_read(&voted("ABC123", 3, true), &list, &cfg, now, false);
        assert_eq!((quiet.action, quiet.alert), (Action::Deny, false));
        let blocked = decide_read(&voted("BAD666", 1, true), &list, &cfg, now, false);
        assert_eq!((blocked.action, blocked.alert), (Action::Deny, true));
    }
}
