//! The simulated input beside the real one: a file holding `1` (active) or anything else (released); a
//! missing file reads as released. Tests and the demo write the file; `gatehouse` never does.

use std::path::PathBuf;
use std::time::Duration;

use super::{InputError, InputLine};

/// A file has no change notifications: it is read every this often.
const FILE_POLL: Duration = Duration::from_millis(20);

pub struct SimulatedInput {
    file: PathBuf,
}

impl SimulatedInput {
    pub fn new(file: PathBuf) -> Self {
        Self { file }
    }
}

impl InputLine for SimulatedInput {
    fn wait_level(&mut self, wait: Duration) -> Result<bool, InputError> {
        std::thread::sleep(wait.min(FILE_POLL));
        Ok(std::fs::read_to_string(&self.file).is_ok_and(|s| s.trim() == "1"))
    }

    fn describe(&self) -> String {
        format!("simulated ({})", self.file.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_says_the_level_and_a_missing_file_is_released() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("loop");
        let mut i = SimulatedInput::new(f.clone());
        assert!(!i.wait_level(Duration::ZERO).expect("read"));
        std::fs::write(&f, "1\n").expect("write");
        assert!(i.wait_level(Duration::ZERO).expect("read"));
        std::fs::write(&f, "0").expect("write");
        assert!(!i.wait_level(Duration::ZERO).expect("read"));
    }
}
