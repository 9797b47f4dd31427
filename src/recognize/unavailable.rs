//! The reader a lane runs with when its models cannot be loaded (a corrupt or missing model file, no ONNX
//! Runtime): it reads no plate, so no plate ever opens the gate, while the rest of the daemon keeps
//! working: the guards' panel and live stills, the exit button, the event store and the cloud link. The
//! daemon raises a standing alert saying why; exiting instead would leave a restart loop with no panel and
//! no exit button.

use opencv::core::{Mat, Rect};

use super::{FrameReads, PlateReader, RecognizeError};

#[derive(Debug, Default)]
pub struct UnavailableReader;

impl PlateReader for UnavailableReader {
    fn read(&mut self, _image: &Mat, _roi: Option<Rect>) -> Result<FrameReads, RecognizeError> {
        Ok(FrameReads {
            candidates: Vec::new(),
            timings: Default::default(),
        })
    }
}
