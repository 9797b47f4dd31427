//! The real relay: one GPIO output line through the Linux character device (`gpio-cdev`).
//! Wiring: the line released (inactive) must mean "gate closed" so a crash or power loss closes the gate;
//! use `active_low` for boards whose relay inputs are active-low.

use std::path::Path;

use gpio_cdev::{Chip, LineHandle, LineRequestFlags};

use super::{GateError, Relay};

pub struct GpioRelay {
    name: String,
    handle: LineHandle,
}

impl GpioRelay {
    pub fn open(name: &str, chip: &Path, line: u32, active_low: bool, initial: bool) -> Result<Self, GateError> {
        let err = |reason: String| GateError::Hardware {
            relay: name.to_string(),
            reason,
        };
        let mut c = Chip::new(chip).map_err(|e| err(format!("cannot open {}: {e}", chip.display())))?;
        let l = c
            .get_line(line)
            .map_err(|e| err(format!("line {line} on {}: {e}", chip.display())))?;
        let mut flags = LineRequestFlags::OUTPUT;
        if active_low {
            flags |= LineRequestFlags::ACTIVE_LOW;
        }
        let handle = l.request(flags, u8::from(initial), "gatehouse").map_err(|e| {
            err(format!(
                "line {line} on {} is busy or not an output: {e}",
                chip.display()
            ))
        })?;
        Ok(Self {
            name: name.to_string(),
            handle,
        })
    }
}

impl Relay for GpioRelay {
    fn set(&mut self, energized: bool) -> Result<(), GateError> {
        self.handle
            .set_value(u8::from(energized))
            .map_err(|e| GateError::Hardware {
                relay: self.name.clone(),
                reason: format!("cannot set line: {e}"),
            })
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_chip_is_a_clear_error() {
        let e = GpioRelay::open("main", Path::new("/dev/gpiochip-none"), 17, false, false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("relay main") && e.contains("/dev/gpiochip-none"), "{e}");
    }
}
