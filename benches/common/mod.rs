//! Shared by the benchmarks that drive the decision path: deterministic plates, and a relay that flags
//! when it is energised so the path up to the relay command can be timed.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatehouse::config::{RelayConfig, RelayKind, SafeState};
use gatehouse::gate::{GateError, Relay};

const CHARS: &[u8] = b"ABCDEFGHJKMNPRTUVWXY0123456789";

/// Deterministic pseudo-random plates (xorshift), 7 characters.
pub fn plates(n: usize, seed: u64) -> Vec<String> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            (0..7)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    CHARS[(x % CHARS.len() as u64) as usize] as char
                })
                .collect()
        })
        .collect()
}

/// A relay that flags when it is energised.
pub struct FlagRelay(pub Arc<AtomicBool>);

impl Relay for FlagRelay {
    fn set(&mut self, on: bool) -> Result<(), GateError> {
        self.0.store(on, Ordering::Release);
        Ok(())
    }
    fn name(&self) -> &str {
        "bench"
    }
}

/// A relay config with no cooldown and a long pulse (the benchmark releases it itself).
pub fn relay_config(name: &str) -> RelayConfig {
    RelayConfig {
        name: name.into(),
        kind: RelayKind::Simulated { log: None },
        active_low: false,
        pulse: Duration::from_secs(10),
        cooldown: Duration::ZERO,
        max_hold: Duration::from_secs(10),
        safe_state: SafeState::Closed,
    }
}
