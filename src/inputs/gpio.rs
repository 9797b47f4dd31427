//! The real input: one GPIO line through the Linux character device (`gpio-cdev`), requested as an input
//! with edge events on both edges (`active_low` inverts it in the kernel, edges included). Between edges
//! the line's level is read again on each idle wait, so a lost edge is corrected within a quarter second.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use gpio_cdev::{Chip, EventRequestFlags, LineEventHandle, LineRequestFlags};

use super::{InputError, InputLine};

/// The kernel's `struct gpioevent_data`: u64 timestamp, u32 id, padded to 16 bytes.
const EVENT_SIZE: usize = 16;
const GPIOEVENT_EVENT_RISING_EDGE: u32 = 0x01;
/// Most edges read in one wait (a chattering contact cannot keep the thread reading forever).
const MAX_EDGES_PER_WAIT: usize = 64;

pub struct GpioInput {
    name: String,
    chip: String,
    line: u32,
    events: LineEventHandle,
}

/// What is asked of the kernel for an input line.
pub(super) fn request_flags(active_low: bool) -> (LineRequestFlags, EventRequestFlags) {
    let mut flags = LineRequestFlags::INPUT;
    if active_low {
        flags |= LineRequestFlags::ACTIVE_LOW;
    }
    (flags, EventRequestFlags::BOTH_EDGES)
}

impl GpioInput {
    pub fn open(name: &str, chip: &Path, line: u32, active_low: bool) -> Result<Self, InputError> {
        let err = |reason: String| InputError::Hardware {
            input: name.to_string(),
            reason,
        };
        let mut c = Chip::new(chip).map_err(|e| err(format!("cannot open {}: {e}", chip.display())))?;
        let l = c
            .get_line(line)
            .map_err(|e| err(format!("line {line} on {}: {e}", chip.display())))?;
        let (flags, edges) = request_flags(active_low);
        let events = l.events(flags, edges, "gatehouse").map_err(|e| {
            err(format!(
                "line {line} on {} is busy or cannot report edges: {e}",
                chip.display()
            ))
        })?;
        Ok(Self {
            name: name.to_string(),
            chip: chip.display().to_string(),
            line,
            events,
        })
    }
}

/// Waits up to `wait` for edge records on `f` (the kernel's line-event file; a pipe in tests) and reads
/// those queued: the last edge's direction (rising = the line became active), or `None` when none came.
pub(super) fn read_edges<F: AsFd + Read>(f: &mut F, wait: Duration) -> std::io::Result<Option<bool>> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut last = None;
    let mut timeout = Timespec {
        tv_sec: wait.as_secs() as i64,
        tv_nsec: wait.subsec_nanos() as _,
    };
    for _ in 0..MAX_EDGES_PER_WAIT {
        let ready = {
            let mut fds = [PollFd::new(&*f, PollFlags::IN)];
            poll(&mut fds, Some(&timeout))?;
            fds[0].revents().contains(PollFlags::IN)
        };
        if !ready {
            break;
        }
        let mut record = [0u8; EVENT_SIZE];
        f.read_exact(&mut record)?;
        let id = u32::from_ne_bytes([record[8], record[9], record[10], record[11]]);
        last = Some(id == GPIOEVENT_EVENT_RISING_EDGE);
        // Only drain what is already queued.
        timeout = Timespec { tv_sec: 0, tv_nsec: 0 };
    }
    Ok(last)
}

impl InputLine for GpioInput {
    fn wait_level(&mut self, wait: Duration) -> Result<bool, InputError> {
        let err = |reason: String| InputError::Hardware {
            input: self.name.clone(),
            reason,
        };
        let mut file = self.events.file();
        match read_edges(&mut file, wait).map_err(|e| err(format!("reading edges: {e}")))? {
            Some(active) => Ok(active),
            None => self
                .events
                .get_value()
                .map(|v| v != 0)
                .map_err(|e| err(format!("reading the line: {e}"))),
        }
    }

    fn describe(&self) -> String {
        format!("gpio {} line {}", self.chip, self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn record(id: u32) -> [u8; EVENT_SIZE] {
        let mut r = [0u8; EVENT_SIZE];
        r[..8].copy_from_slice(&123_456_789u64.to_ne_bytes());
        r[8..12].copy_from_slice(&id.to_ne_bytes());
        r
    }

    #[test]
    fn the_request_is_an_input_on_both_edges_inverted_when_active_low() {
        let (flags, edges) = request_flags(false);
        assert_eq!(flags.bits(), LineRequestFlags::INPUT.bits());
        assert_eq!(edges.bits(), EventRequestFlags::BOTH_EDGES.bits());
        let (flags, _) = request_flags(true);
        assert_eq!(
            flags.bits(),
            (LineRequestFlags::INPUT | LineRequestFlags::ACTIVE_LOW).bits()
        );
    }

    #[test]
    fn queued_edges_are_read_and_the_last_one_wins() {
        let (mut kernel, mut ours) = UnixStream::pair().expect("pair");
        assert_eq!(
            read_edges(&mut ours, Duration::from_millis(10)).expect("read"),
            None,
            "timeout"
        );
        kernel.write_all(&record(0x01)).expect("write");
        assert_eq!(
            read_edges(&mut ours, Duration::from_millis(10)).expect("read"),
            Some(true)
        );
        // A bouncing contact: rising, falling, rising, falling queued at once.
        for id in [0x01, 0x02, 0x01, 0x02] {
            kernel.write_all(&record(id)).expect("write");
        }
        assert_eq!(
            read_edges(&mut ours, Duration::from_millis(10)).expect("read"),
            Some(false)
        );
        assert_eq!(
            read_edges(&mut ours, Duration::ZERO).expect("read"),
            None,
            "all drained"
        );
    }

    #[test]
    fn a_missing_chip_is_a_clear_error() {
        let e = GpioInput::open("exit", Path::new("/dev/gpiochip-none"), 5, true)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("input exit") && e.contains("/dev/gpiochip-none"), "{e}");
    }
}
