//! Stage 5: the gate. A [`Relay`] drives the gate operator's input (GPIO line, or simulated); the
//! [`controller`] turns commands (open once, hold open, release, lockdown) into timed relay transitions
//! with a cooldown, and puts the relay in its configured safe state on shutdown and from the panic hook
//! ([`safety`]). Commands arrive on a bounded channel with `try_send`: the decision path never waits.

pub mod controller;
mod gpio;
pub mod safety;
mod simulated;

pub use controller::{run_controller, Actor, GateCommand, GateHandle};
pub use gpio::GpioRelay;
pub use simulated::{SimulatedRelay, Transition};

use crate::config::{RelayConfig, RelayKind};

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("relay {relay}: {reason}")]
    Hardware { relay: String, reason: String },
    #[error("gate {0}: command queue is full; command dropped")]
    Busy(String),
    #[error("gate {0}: controller has stopped")]
    Stopped(String),
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
