//! A scripted [`FrameSource`] for tests: frames, stalls, drops and the end, in a given order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opencv::core::Mat;

use super::{CameraError, FrameSource, Grab};

pub enum FakeStep {
    Frame(Mat),
    /// Blocks the read for this long (a stalled camera).
    Stall(Duration),
    /// The stream drops; the capture loop must re-open.
    Drop,
    End,
}

/// Plays a script of steps; counts how often it was opened.
pub struct FakeSource {
    script: VecDeque<FakeStep>,
    pub opens: Arc<Mutex<u32>>,
    fail_opens: u32,
    fps: Option<f64>,
}

impl FakeSource {
    pub fn new(script: Vec<FakeStep>) -> Self {
        Self {
            script: script.into(),
            opens: Arc::new(Mutex::new(0)),
            fail_opens: 0,
            fps: None,
        }
    }

    /// Declares a frame rate, as a video file does.
    pub fn with_fps(mut self, fps: f64) -> Self {
        self.fps = Some(fps);
        self
    }

    /// The first `n` opens fail (camera not reachable yet).
    pub fn failing_first_opens(mut self, n: u32) -> Self {
        self.fail_opens = n;
        self
    }
}

impl FrameSource for FakeSource {
    fn open(&mut self) -> Result<(), CameraError> {
        let mut opens = self.opens.lock().unwrap_or_else(|p| p.into_inner());
        *opens += 1;
        if *opens <= self.fail_opens {
            return Err(CameraError::Open {
                source_name: "fake".into(),
                reason: "scripted failure".into(),
            });
        }
        Ok(())
    }

    fn read(&mut self) -> Result<Grab, CameraError> {
        match self.script.pop_front() {
            Some(FakeStep::Frame(m)) => Ok(Grab::Frame(m)),
            Some(FakeStep::Stall(d)) => {
                std::thread::sleep(d);
                self.read()
            }
            Some(FakeStep::Drop) => Err(CameraError::Read {
                source_name: "fake".into(),
                reason: "scripted drop".into(),
            }),
            Some(FakeStep::End) | None => Ok(Grab::End),
        }
    }

    fn fps(&self) -> Option<f64> {
        self.fps
    }

    fn is_file(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        "fake".into()
    }
}
