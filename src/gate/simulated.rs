//! A simulated relay: records every transition with its time, prints it, and optionally appends it to a
//! JSON-lines file so a test (or an installer) can see exactly what the gate would have done.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{GateError, Relay};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Transition {
    pub relay: String,
    pub at: DateTime<Utc>,
    pub energized: bool,
}

pub struct SimulatedRelay {
    name: String,
    log: Option<File>,
    pub transitions: Arc<Mutex<Vec<Transition>>>,
}

impl SimulatedRelay {
    pub fn new(name: &str, log: Option<PathBuf>) -> Result<Self, GateError> {
        let log = match log {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                Some(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&p)
                        .map_err(|e| GateError::Hardware {
                            relay: name.to_string(),
                            reason: format!("cannot open relay log {}: {e}", p.display()),
                        })?,
                )
            }
            None => None,
        };
        Ok(Self {
            name: name.to_string(),
            log,
            transitions: Arc::default(),
        })
    }
}

impl Relay for SimulatedRelay {
    fn set(&mut self, energized: bool) -> Result<(), GateError> {
        let t = Transition {
            relay: self.name.clone(),
            at: Utc::now(),
            energized,
        };
        tracing::info!(relay = %self.name, state = if energized { "OPEN (energised)" } else { "CLOSED (released)" }, "relay");
        if let Some(f) = self.log.as_mut() {
            if let Ok(line) = serde_json::to_string(&t) {
                let _ = writeln!(f, "{line}");
                let _ = f.flush();
            }
        }
        self.transitions.lock().unwrap_or_else(|p| p.into_inner()).push(t);
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }
}
