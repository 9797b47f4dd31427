//! Stage 5: the gate. A [`Relay`] drives the gate operator's input (GPIO line, or simulated); the
//! [`controller`] turns commands (open once, hold open, release, lockdown) into timed relay transitions
//! with a cooldown, and puts the relay in its configured safe state on shutdown and from the panic hook
//! ([`safety`]). Commands arrive on a bounded channel with `try_send`: the decision path never waits.

pub mod controller;
mod gpio;
pub mod safety;
mod simulated;
pub mod watch;

pub use controller::{run_controller, Actor, GateCommand, GateHandle, GateOutcome, RelayState};
pub use gpio::GpioRelay;
pub use simulated::{SimulatedRelay, Transition};
pub use watch::{GateAlertKind, GateWatch, Opening, WatchNotice};

use crate::config::{RelayConfig, RelayKind};

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("relay {relay}: {reason}")]
    Hardware { relay: String, reason: String },
    #[error("gate {0}: command queue is full; command dropped")]
    Busy(String),
    #[error("gate {0}: controller has stopped")]
    Stopped(String),
    #[error("reason: {0}")]
    BadReason(String),
}

/// Shortest and longest reason a person gives for a gate command.
pub const REASON_CHARS: std::ops::RangeInclusive<usize> = 3..=200;

/// Checks a reason typed for a gate command (the panel's forms, any other entry point) and returns it
/// trimmed: 3 to 200 characters, no control characters (a newline would start a forged line in a log or
/// a report), no Unicode line separators or bidirectional overrides.
pub fn validate_reason(text: &str) -> Result<String, GateError> {
    let reason = text.trim();
    if !REASON_CHARS.contains(&reason.chars().count()) {
        return Err(GateError::BadReason(format!(
            "state a reason of {} to {} characters",
            REASON_CHARS.start(),
            REASON_CHARS.end()
        )));
    }
    if reason.chars().any(|c| {
        c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }) {
        return Err(GateError::BadReason(
            "a reason is one line of text: no line breaks, tabs or control characters".into(),
        ));
    }
    Ok(reason.to_string())
}

/// The output that drives the gate operator. `energized = true` asks the gate to open.
pub trait Relay: Send {
    fn set(&mut self, energized: bool) -> Result<(), GateError>;
    fn name(&self) -> &str;
}

/// Builds the relay a config describes (opens the GPIO line).
pub fn build_relay(cfg: &RelayConfig) -> Result<Box<dyn Relay>, GateError> {
    let initial = cfg.safe_state == crate::config::SafeState::Open;
    Ok(match &cfg.kind {
        RelayKind::Gpio { chip, line } => Box::new(GpioRelay::open(&cfg.name, chip, *line, cfg.active_low, initial)?),
        RelayKind::Simulated { log } => Box::new(SimulatedRelay::new(&cfg.name, log.clone())?),
    })
}
