//! The gate controller of one relay: commands in, timed relay transitions out.
//!
//! - `Open`: a pulse of `pulse` length; ignored while open and during `cooldown` after a pulse (many gate
//!   operators treat a second pulse as "stop" or "close").
//! - `HoldOpen` / `Release`: a guard holds the gate open (at most `max_hold`), then releases it.
//! - `Lockdown` / `Unlock`: no opening at all until unlocked.
//!
//! On exit (all handles dropped, or cancelled) the relay goes to its safe state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::safety::{self, SharedRelay};
use super::GateError;
use crate::config::RelayConfig;

/// Who asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "name", rename_all = "lowercase")]
pub enum Actor {
    /// The access decision.
    Automatic,
    Guard(String),
    /// A push-button wired to an input (`[inputs.NAME]`, role exit_button), by the input's name.
    Button(String),
    System,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateCommand {
    Open { actor: Actor, reason: String },
    HoldOpen { actor: Actor, reason: String },
    Release { actor: Actor, reason: String },
    Lockdown { actor: Actor, reason: String },
    Unlock { actor: Actor, reason: String },
}

/// What the controller did with a command: what an event records as its gate result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateOutcome {
    /// The relay pulsed: the gate was asked to open.
    Pulsed,
    /// Not pulsed: the gate was already open (a pulse or a hold under way).
    AlreadyOpen,
    /// Not pulsed: within the cooldown after the last pulse (a second pulse may stop or close the gate).
    Cooldown,
    /// Refused: the gate is in lockdown.
    Lockdown,
    /// The relay is held open.
    Held,
    /// The relay was released (or was already).
    Released,
    LockedDown,
    Unlocked,
    /// The relay did not take the change.
    RelayFailed,
    /// Not pulsed: the opening waited for a vehicle on the lane's loop detector (`open_only_present`)
    /// and none came in time.
    NoVehicle,
}

impl std::fmt::Display for GateOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GateOutcome::Pulsed => "gate pulsed open",
            GateOutcome::AlreadyOpen => "not pulsed: the gate was already open",
            GateOutcome::Cooldown => "not pulsed: cooldown after the last pulse",
            GateOutcome::Lockdown => "refused: lockdown",
            GateOutcome::Held => "gate held open",
            GateOutcome::Released => "gate released",
            GateOutcome::LockedDown => "lockdown on",
            GateOutcome::Unlocked => "lockdown lifted",
            GateOutcome::RelayFailed => "relay failed: the gate was not moved",
            GateOutcome::NoVehicle => "not pulsed: no vehicle came onto the loop in time",
        })
    }
}

/// A command and, when the sender wants to know, where to say what became of it.
#[derive(Debug)]
struct Request {
    cmd: GateCommand,
    reply: Option<oneshot::Sender<GateOutcome>>,
}

/// The relay as last set: whether it is energised, and how many times it has been energised (so a pulse
/// shorter than a watcher's wake-up is still seen).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayState {
    pub on: bool,
    pub energized_count: u64,
}

/// A cheap, cloneable way to command one gate without waiting.
#[derive(Debug, Clone)]
pub struct GateHandle {
    name: Arc<str>,
    tx: mpsc::Sender<Request>,
    lockdown: Arc<AtomicBool>,
    energized: Arc<AtomicBool>,
    relay_state: tokio::sync::watch::Receiver<RelayState>,
}

impl GateHandle {
    /// Queues a command; fails at once if the queue is full or the controller is gone.
    pub fn try_command(&self, cmd: GateCommand) -> Result<(), GateError> {
        self.send(Request { cmd, reply: None })
    }

    /// Like [`Self::try_command`]; the receiver then says what the controller did (pulsed, or why not).
    /// Nothing waits here: await the receiver where the answer is needed (an event's gate result).
    pub fn try_command_reply(&self, cmd: GateCommand) -> Result<oneshot::Receiver<GateOutcome>, GateError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request { cmd, reply: Some(tx) })?;
        Ok(rx)
    }

    fn send(&self, r: Request) -> Result<(), GateError> {
        self.tx.try_send(r).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => GateError::Busy(self.name.to_string()),
            mpsc::error::TrySendError::Closed(_) => GateError::Stopped(self.name.to_string()),
        })
    }

    pub fn in_lockdown(&self) -> bool {
        self.lockdown.load(Ordering::Relaxed)
    }

    /// Whether the relay is asking the gate to open right now (as last set successfully).
    pub fn is_open(&self) -> bool {
        self.energized.load(Ordering::Relaxed)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Follows the relay's transitions (the gate watch compares them with the gate's position contact).
    pub fn relay_state(&self) -> tokio::sync::watch::Receiver<RelayState> {
        self.relay_state.clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed,
    Pulse(Instant),
    Held(Instant),
}

/// Creates a handle and the future that runs the controller.
pub fn run_controller(
    cfg: RelayConfig,
    relay: SharedRelay,
    cancel: CancellationToken,
) -> (GateHandle, impl std::future::Future<Output = ()>) {
    let (tx, rx) = mpsc::channel(32);
    let lockdown = Arc::new(AtomicBool::new(false));
    let energized = Arc::new(AtomicBool::new(false));
    let (state_tx, relay_state) = tokio::sync::watch::channel(RelayState::default());
    let handle = GateHandle {
        name: cfg.name.clone().into(),
        tx,
        lockdown: lockdown.clone(),
        energized: energized.clone(),
        relay_state,
    };
    (
        handle,
        controller(cfg, relay, rx, lockdown, energized, state_tx, cancel),
    )
}

async fn controller(
    cfg: RelayConfig,
    relay: SharedRelay,
    mut rx: mpsc::Receiver<Request>,
    lockdown: Arc<AtomicBool>,
    energized: Arc<AtomicBool>,
    state_tx: tokio::sync::watch::Sender<RelayState>,
    cancel: CancellationToken,
) {
    let name = cfg.name.clone();
    let set = |on: bool| -> bool {
        let mut r = relay.lock().unwrap_or_else(|p| p.into_inner());
        match r.set(on) {
            Ok(()) => {
                energized.store(on, Ordering::Relaxed);
                state_tx.send_if_modified(|s| {
                    let changed = s.on != on;
                    if on && !s.on {
                        s.energized_count += 1;
                    }
                    s.on = on;
                    changed
                });
                true
            }
            Err(e) => {
                tracing::error!(relay = %name, error = %e, "relay failed");
                false
            }
        }
    };
    // Running normally means closed (a fail-open site is open only while the daemon is down).
    set(false);
    let mut state = State::Closed;
    let mut last_closed: Option<Instant> = None;
    loop {
        let deadline = match state {
            State::Pulse(t) | State::Held(t) => Some(t),
            State::Closed => None,
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = async { if let Some(t) = deadline { tokio::time::sleep_until(t).await } }, if deadline.is_some() => {
                if set(false) {
                    state = State::Closed;
                    last_closed = Some(Instant::now());
                } else {
                    // The line did not release: keep trying; a gate held open is the failure to avoid.
                    state = State::Pulse(Instant::now() + std::time::Duration::from_millis(200));
                }
            }
            req = rx.recv() => {
                let Some(Request { cmd, reply }) = req else { break };
                let now = Instant::now();
                let locked = lockdown.load(Ordering::Relaxed);
                // Reasons are logged with Debug formatting: a newline in one cannot forge a log line.
                let outcome = match cmd {
                    GateCommand::Open { actor, reason } => {
                        if locked {
                            tracing::warn!(relay = %name, ?actor, ?reason, "open refused: lockdown");
                            GateOutcome::Lockdown
                        } else if state != State::Closed {
                            tracing::info!(relay = %name, ?actor, ?reason, "open ignored: gate already open");
                            GateOutcome::AlreadyOpen
                        } else if last_closed.is_some_and(|t| now - t < cfg.cooldown) {
                            tracing::info!(relay = %name, ?actor, ?reason, "open ignored: cooldown after the last pulse");
                            GateOutcome::Cooldown
                        } else {
                            tracing::info!(relay = %name, ?actor, ?reason, "gate pulse");
                            // Released at the deadline even if this write failed: the line may have moved.
                            state = State::Pulse(now + cfg.pulse);
                            if set(true) { GateOutcome::Pulsed } else { GateOutcome::RelayFailed }
                        }
                    }
                    GateCommand::HoldOpen { actor, reason } => {
                        if locked {
                            tracing::warn!(relay = %name, ?actor, ?reason, "hold refused: lockdown");
                            GateOutcome::Lockdown
                        } else {
                            tracing::info!(relay = %name, ?actor, ?reason, "gate held open");
                            state = State::Held(now + cfg.max_hold);
                            if set(true) { GateOutcome::Held } else { GateOutcome::RelayFailed }
                        }
                    }
                    GateCommand::Release { actor, reason } => {
                        tracing::info!(relay = %name, ?actor, ?reason, "gate released");
                        let mut ok = true;
                        if state != State::Closed {
                            ok = set(false);
                            last_closed = Some(now);
                        }
                        state = State::Closed;
                        if ok { GateOutcome::Released } else { GateOutcome::RelayFailed }
                    }
                    GateCommand::Lockdown { actor, reason } => {
                        tracing::warn!(relay = %name, ?actor, ?reason, "LOCKDOWN");
                        lockdown.store(true, Ordering::Relaxed);
                        let mut ok = true;
                        if state != State::Closed {
                            ok = set(false);
                            last_closed = Some(now);
                        }
                        state = State::Closed;
                        if ok { GateOutcome::LockedDown } else { GateOutcome::RelayFailed }
                    }
                    GateCommand::Unlock { actor, reason } => {
                        tracing::warn!(relay = %name, ?actor, ?reason, "lockdown lifted");
                        lockdown.store(false, Ordering::Relaxed);
                        GateOutcome::Unlocked
                    }
                };
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
        }
    }
    safety::make_safe(&relay, cfg.safe_state);
    tracing::info!(relay = %name, safe_state = ?cfg.safe_state, "relay in safe state");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RelayKind, SafeState};
    use crate::gate::{Relay, SimulatedRelay, Transition};
    use std::sync::Mutex;
    use std::time::Duration;

    fn cfg(safe: SafeState) -> RelayConfig {
        RelayConfig {
            name: "main".into(),
            kind: RelayKind::Simulated { log: None },
            active_low: false,
            pulse: Duration::from_millis(800),
            cooldown: Duration::from_secs(3),
            max_hold: Duration::from_secs(60),
            safe_state: safe,
        }
    }

    fn relay() -> (SharedRelay, Arc<Mutex<Vec<Transition>>>) {
        let r = SimulatedRelay::new("main", None).expect("relay");
        let t = r.transitions.clone();
        let b: Box<dyn Relay> = Box::new(r);
        (Arc::new(Mutex::new(b)), t)
    }

    fn states(t: &Arc<Mutex<Vec<Transition>>>) -> Vec<bool> {
        t.lock().expect("lock").iter().map(|t| t.energized).collect()
    }

    fn open() -> GateCommand {
        GateCommand::Open {
            actor: Actor::Automatic,
            reason: "test".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pulse_then_cooldown_then_pulse() {
        let (r, t) = relay();
        let cancel = CancellationToken::new();
        let (h, fut) = run_controller(cfg(SafeState::Closed), r, cancel.clone());
        let task = tokio::spawn(fut);
        h.try_command(open()).expect("queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.try_command(open()).expect("queued"); // while open: ignored
        tokio::time::sleep(Duration::from_millis(1000)).await;
        h.try_command(open()).expect("queued"); // in cooldown: ignored
        tokio::time::sleep(Duration::from_millis(3000)).await;
        h.try_command(open()).expect("queued"); // pulses again
        tokio::time::sleep(Duration::from_millis(1000)).await;
        cancel.cancel();
        task.await.expect("task");
        assert_eq!(states(&t), vec![false, true, false, true, false, false]);
    }

    #[tokio::test(start_paused = true)]
    async fn lockdown_refuses_opens_until_unlocked_and_exit_goes_to_safe_state() {
        let (r, t) = relay();
        let (h, fut) = run_controller(cfg(SafeState::Open), r, CancellationToken::new());
        let task = tokio::spawn(fut);
        h.try_command(GateCommand::Lockdown {
            actor: Actor::Guard("g1".into()),
            reason: "incident".into(),
        })
        .expect("q");
        h.try_command(open()).expect("q");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(h.in_lockdown());
        h.try_command(GateCommand::Unlock {
            actor: Actor::Guard("g1".into()),
            reason: "clear".into(),
        })
        .expect("q");
        h.try_command(GateCommand::HoldOpen {
            actor: Actor::Guard("g1".into()),
            reason: "delivery".into(),
        })
        .expect("q");
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(h);
        task.await.expect("task");
        // start closed, hold -> energised, exit -> safe state (open)
        assert_eq!(states(&t), vec![false, true, true]);
    }

    #[tokio::test(start_paused = true)]
    async fn each_command_says_what_the_relay_did() {
        let (r, t) = relay();
        let cancel = CancellationToken::new();
        let (h, fut) = run_controller(cfg(SafeState::Closed), r, cancel.clone());
        let task = tokio::spawn(fut);
        let ask = |cmd| h.try_command_reply(cmd).expect("queued");
        assert_eq!(ask(open()).await, Ok(GateOutcome::Pulsed));
        assert_eq!(ask(open()).await, Ok(GateOutcome::AlreadyOpen));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(ask(open()).await, Ok(GateOutcome::Cooldown));
        tokio::time::sleep(Duration::from_millis(3000)).await;
        assert_eq!(ask(open()).await, Ok(GateOutcome::Pulsed));
        let lock = GateCommand::Lockdown {
            actor: Actor::System,
            reason: "drill".into(),
        };
        assert_eq!(ask(lock).await, Ok(GateOutcome::LockedDown));
        tokio::time::sleep(Duration::from_millis(5000)).await;
        assert_eq!(ask(open()).await, Ok(GateOutcome::Lockdown));
        assert_eq!(
            GateOutcome::Cooldown.to_string(),
            "not pulsed: cooldown after the last pulse"
        );
        cancel.cancel();
        task.await.expect("task");
        assert_eq!(states(&t).iter().filter(|on| **on).count(), 2, "two pulses only");
    }

    /// Collects what a test subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_newline_in_a_reason_cannot_forge_a_log_line() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("rt");
        tracing::subscriber::with_default(subscriber, || {
            rt.block_on(async {
                let (r, _) = relay();
                let cancel = CancellationToken::new();
                let (h, fut) = run_controller(cfg(SafeState::Closed), r, cancel.clone());
                let task = tokio::spawn(fut);
                for cmd in [
                    GateCommand::Open {
                        actor: Actor::Guard("g1".into()),
                        reason: "delivery\nINFO gate: lockdown lifted by admin".into(),
                    },
                    GateCommand::HoldOpen {
                        actor: Actor::Guard("g1".into()),
                        reason: "x\r\nINFO forged".into(),
                    },
                ] {
                    h.try_command(cmd).expect("queued");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                cancel.cancel();
                task.await.expect("task");
            })
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8");
        assert!(text.contains("delivery"), "{text}");
        for line in text.lines() {
            assert!(!line.starts_with("INFO"), "a forged line: {line:?}\n{text}");
        }
    }

    #[test]
    fn reasons_with_control_characters_are_refused_where_they_enter() {
        assert_eq!(
            crate::gate::validate_reason("  parcel van  ").expect("ok"),
            "parcel van"
        );
        for bad in [
            "ok\nINFO forged",
            "tab\there",
            "esc \u{1b}[31m",
            "no",
            "",
            &"x".repeat(201),
            "rtl \u{202e}",
        ] {
            assert!(crate::gate::validate_reason(bad).is_err(), "{bad:?}");
        }
    }

    /// A relay whose line refuses to release a few times (a failing GPIO write).
    struct StuckRelay {
        refusals: u32,
        log: Arc<Mutex<Vec<bool>>>,
    }

    impl Relay for StuckRelay {
        fn set(&mut self, on: bool) -> Result<(), crate::gate::GateError> {
            if !on && self.refusals > 0 && self.log.lock().expect("lock").contains(&true) {
                self.refusals -= 1;
                return Err(crate::gate::GateError::Hardware {
                    relay: "stuck".into(),
                    reason: "EIO".into(),
                });
            }
            self.log.lock().expect("lock").push(on);
            Ok(())
        }
        fn name(&self) -> &str {
            "stuck"
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_relay_that_fails_to_release_is_retried_until_it_does() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let r: SharedRelay = Arc::new(Mutex::new(Box::new(StuckRelay {
            refusals: 3,
            log: log.clone(),
        })));
        let cancel = CancellationToken::new();
        let (h, fut) = run_controller(cfg(SafeState::Closed), r, cancel.clone());
        let task = tokio::spawn(fut);
        h.try_command(open()).expect("queued");
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(
            *log.lock().expect("lock"),
            vec![false, true, false],
            "released after three refusals"
        );
        cancel.cancel();
        task.await.expect("task");
    }
}
