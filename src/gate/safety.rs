//! The relays' safe state, reachable from anywhere: shutdown and the panic hook call [`all_safe`].

use std::sync::{Arc, Mutex, OnceLock};

use super::Relay;
use crate::config::SafeState;

pub type SharedRelay = Arc<Mutex<Box<dyn Relay>>>;

static REGISTRY: OnceLock<Mutex<Vec<(SharedRelay, SafeState)>>> = OnceLock::new();

fn registry() -> &'static Mutex<Vec<(SharedRelay, SafeState)>> {
    REGISTRY.get_or_init(Mutex::default)
}

/// Registers a relay so shutdown and the panic hook can reach it.
pub fn register(relay: SharedRelay, safe: SafeState) {
    registry().lock().unwrap_or_else(|p| p.into_inner()).push((relay, safe));
}

/// Forgets every relay (tests, and the end of a run).
pub fn clear() {
    registry().lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// Puts one relay in its safe state.
pub fn make_safe(relay: &SharedRelay, safe: SafeState) {
    let mut r = relay.lock().unwrap_or_else(|p| p.into_inner());
    let name = r.name().to_string();
    if let Err(e) = r.set(safe == SafeState::Open) {
        tracing::error!(relay = %name, error = %e, "could not put relay in its safe state");
    }
}

/// Puts every registered relay in its safe state. Never blocks on a relay that is held elsewhere
/// (the panic may have happened while it was held).
pub fn all_safe() {
    let Ok(list) = registry().try_lock() else { return };
    for (relay, safe) in list.iter() {
        if let Ok(mut r) = relay.try_lock() {
            let _ = r.set(*safe == SafeState::Open);
        }
    }
}

/// Installs a panic hook that sets every relay safe before the default hook runs. With `abort`, the
/// process then ends (the daemon: a half-dead pipeline must not keep running; the service manager
/// restarts it).
pub fn install_panic_hook(abort: bool) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        all_safe();
        default(info);
        if abort {
            std::process::abort();
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::SimulatedRelay;

    #[test]
    fn a_panic_puts_registered_relays_in_their_safe_state() {
        let sim = SimulatedRelay::new("panic-test", None).expect("relay");
        let transitions = sim.transitions.clone();
        let relay: SharedRelay = Arc::new(Mutex::new(Box::new(sim)));
        relay.lock().expect("lock").set(true).expect("open");
        register(relay, SafeState::Closed);
        install_panic_hook(false);
        let result = std::panic::catch_unwind(|| panic!("simulated crash in the decision path"));
        assert!(result.is_err());
        let states: Vec<bool> = transitions.lock().expect("lock").iter().map(|t| t.energized).collect();
        assert_eq!(states, vec![true, false], "the panic hook released the relay");
        clear();
    }
}
