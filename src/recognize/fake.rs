//! A scripted [`PlateReader`] for tests: returns the next scripted text for each frame.

use std::collections::VecDeque;

use opencv::core::{Mat, Rect};

use super::{CharRead, FrameReads, PlateCandidate, PlateReader, RecognizeError};

pub struct FakeReader {
    script: VecDeque<Option<(String, f32)>>,
}

impl FakeReader {
    /// One entry per frame: `Some((text, confidence))` or `None` for "no plate".
    pub fn new(script: Vec<Option<(&str, f32)>>) -> Self {
        Self {
            script: script.into_iter().map(|o| o.map(|(t, c)| (t.to_string(), c))).collect(),
        }
    }

    pub fn candidate(text: &str, conf: f32) -> PlateCandidate {
        let chars: Vec<CharRead> = text.chars().map(|ch| CharRead { ch, conf, alt: None }).collect();
        PlateCandidate {
            text: text.to_string(),
            chars,
            confidence: conf,
            bbox: Rect::new(10, 10, 100, 30),
            score: conf,
            alternatives: vec![(text.to_string(), conf)],
        }
    }
}

impl PlateReader for FakeReader {
    fn read(&mut self, _image: &Mat, _roi: Option<Rect>) -> Result<FrameReads, RecognizeError> {
        let candidates = match self.script.pop_front().flatten() {
            Some((t, c)) => vec![Self::candidate(&t, c)],
            None => Vec::new(),
        };
        Ok(FrameReads {
            candidates,
            ..Default::default()
        })
    }
}
