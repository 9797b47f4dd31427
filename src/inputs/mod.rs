//! Gate inputs: the contacts beside the camera. A loop detector says a vehicle stands at the gate
//! (`presence`), the gate operator's limit contact says the gate is open (`gate_position`), and an exit or
//! guard push-button asks for an opening (`exit_button`). Each is one [`InputLine`]: a GPIO line through
//! the Linux character device ([`GpioInput`]) or, for tests and the demo, a file holding `1` or `0`
//! ([`SimulatedInput`]). [`run_input`] reads a line on its own thread, debounces it ([`Debouncer`]) and
//! sends each accepted change as an [`InputEvent`]; `app` hands the events to the stage they belong to
//! (the tracker, the gate watch, the gate).
//!
//! Wiring: "active" means the contact is made (loop occupied, gate open, button pressed). A contact that
//! pulls the line to ground when made is `active_low = true`. A released (floating or broken) line must
//! read as inactive: enable the board's pull resistor on the side that makes it so.

mod debounce;
mod gpio;
mod simulated;
pub mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use debounce::Debouncer;
pub use gpio::GpioInput;
pub use simulated::SimulatedInput;
pub use stats::InputStats;

use crate::clock::SharedClock;
use crate::config::{InputConfig, InputKind};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("input {input}: {reason}")]
    Hardware { input: String, reason: String },
}

/// One input line. `wait_level` blocks up to `wait` for the line to change and then says whether it is
/// active (a line without change notifications simply reads its level after `wait`).
pub trait InputLine: Send {
    fn wait_level(&mut self, wait: Duration) -> Result<bool, InputError>;
    fn describe(&self) -> String;
}

/// An accepted change of one input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputEvent {
    pub input: Arc<str>,
    pub active: bool,
    /// The level found at start-up (not a change anything did: no button press, no forced gate).
    pub initial: bool,
    pub at: DateTime<Utc>,
}

/// Opens the line an input's config describes.
pub fn build_input(cfg: &InputConfig) -> Result<Box<dyn InputLine>, InputError> {
    Ok(match &cfg.kind {
        InputKind::Gpio { chip, line } => Box::new(GpioInput::open(&cfg.name, chip, *line, cfg.active_low)?),
        InputKind::Simulated { file } => Box::new(SimulatedInput::new(file.clone())),
    })
}

/// How long a line is waited on while nothing is pending (also how soon a cancellation is noticed).
const IDLE_WAIT: Duration = Duration::from_millis(250);
/// How often a line is read again while a change is being debounced.
const DEBOUNCE_WAIT: Duration = Duration::from_millis(5);

/// Reads one input until cancelled (on a thread of its own: a line read blocks). Changes go out with
/// `try_send`: inputs change a few times a minute, and a full queue is logged, never waited on. A line that
/// fails to read is logged and tried again every second.
pub fn run_input(
    name: Arc<str>,
    mut line: Box<dyn InputLine>,
    debounce: Duration,
    clock: SharedClock,
    tx: mpsc::Sender<InputEvent>,
    cancel: CancellationToken,
) {
    let mut deb = Debouncer::new(debounce);
    let mut failing = false;
    while !cancel.is_cancelled() {
        let wait = if deb.is_pending() { DEBOUNCE_WAIT } else { IDLE_WAIT };
        match line.wait_level(wait) {
            Ok(level) => {
                if failing {
                    tracing::info!(input = %name, "input reads again");
                    failing = false;
                }
                let initial = deb.level().is_none();
                if let Some(active) = deb.feed(level, Instant::now()) {
                    let event = InputEvent {
                        input: name.clone(),
                        active,
                        initial,
                        at: clock.now(),
                    };
                    tracing::info!(input = %name, active, initial, "input changed");
                    if let Err(e) = tx.try_send(event) {
                        tracing::error!(input = %name, error = %e, "input change dropped: its stage is not keeping up");
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::error!(input = %name, error = %e, "input cannot be read; retrying every second");
                    failing = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A line that plays a script of levels, one per read.
    struct Script(Arc<Mutex<Vec<bool>>>);

    impl InputLine for Script {
        fn wait_level(&mut self, _wait: Duration) -> Result<bool, InputError> {
            std::thread::sleep(Duration::from_millis(2));
            let mut s = self.0.lock().expect("lock");
            Ok(if s.len() > 1 { s.remove(0) } else { s[0] })
        }
        fn describe(&self) -> String {
            "script".into()
        }
    }

    #[test]
    fn a_line_is_debounced_and_its_first_level_is_marked_initial() {
        let levels = Arc::new(Mutex::new(vec![
            false, false, true, false, true, true, true, true, true,
        ]));
        let (tx, mut rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let t = std::thread::spawn(move || {
            run_input("btn".into(), Box::new(Script(levels)), Duration::ZERO, clock, tx, c2)
        });
        let first = rx.blocking_recv().expect("first");
        assert!(first.initial && !first.active);
        let mut changes = Vec::new();
        while changes.len() < 3 {
            let e = rx.blocking_recv().expect("change");
            assert!(!e.initial);
            changes.push(e.active);
        }
        assert_eq!(changes, [true, false, true]);
        cancel.cancel();
        t.join().expect("thread");
    }
}
