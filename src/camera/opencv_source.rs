//! The real [`FrameSource`]: OpenCV `VideoCapture` over a file, an RTSP/HTTP URL, a V4L2 device or a
//! GStreamer pipeline (OpenCV's GStreamer back end, for hardware decoders).

use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};

use super::{CameraError, FrameSource, Grab};
use crate::config::{redact_pipeline, redact_url, SourceSpec};

pub struct OpenCvSource {
    spec: SourceSpec,
    cap: Option<VideoCapture>,
}

impl OpenCvSource {
    pub fn new(spec: SourceSpec) -> Self {
        Self { spec, cap: None }
    }

    fn name(&self) -> String {
        match &self.spec {
            SourceSpec::File(p) => p.display().to_string(),
            SourceSpec::Url(u) => redact_url(u),
            SourceSpec::Device(d) => d.display().to_string(),
            SourceSpec::Pipeline(p) => format!("gst:{}", redact_pipeline(p)),
        }
    }
}

impl FrameSource for OpenCvSource {
    fn open(&mut self) -> Result<(), CameraError> {
        self.cap = None;
        let open_err = |reason: String| CameraError::Open {
            source_name: self.name(),
            reason,
        };
        let cap = match &self.spec {
            SourceSpec::File(p) => {
                if !p.is_file() {
                    return Err(open_err("file not found".into()));
                }
                VideoCapture::from_file(p.as_os_str(), videoio::CAP_ANY)
            }
            // Bounded open and read: a dead camera must fail fast (and keep the watchdog fed by
            // reconnect attempts), not hang in FFmpeg for its default 30 s.
            SourceSpec::Url(u) => VideoCapture::from_file_with_params(
                u,
                videoio::CAP_FFMPEG,
                &opencv::core::Vector::from_slice(&[
                    videoio::CAP_PROP_OPEN_TIMEOUT_MSEC,
                    5000,
                    videoio::CAP_PROP_READ_TIMEOUT_MSEC,
                    5000,
                ]),
            ),
            SourceSpec::Device(d) => VideoCapture::from_file(d.as_os_str(), videoio::CAP_V4L2),
            SourceSpec::Pipeline(p) => VideoCapture::from_file(p, videoio::CAP_GSTREAMER),
        }
        .map_err(|e| open_err(e.to_string()))?;
        if !cap.is_opened().unwrap_or(false) {
            return Err(open_err(
                "OpenCV could not open it (check the path/URL and the codec)".into(),
            ));
        }
        self.cap = Some(cap);
        Ok(())
    }

    fn read(&mut self) -> Result<Grab, CameraError> {
        let is_file = self.is_file();
        let name = self.name();
        let cap = self.cap.as_mut().ok_or_else(|| CameraError::Read {
            source_name: name.clone(),
            reason: "not open".into(),
        })?;
        let mut frame = Mat::default();
        let ok = cap.read(&mut frame).map_err(|e| CameraError::Read {
            source_name: name.clone(),
            reason: e.to_string(),
        })?;
        if ok && !frame.empty() {
            return Ok(Grab::Frame(frame));
        }
        if is_file {
            Ok(Grab::End)
        } else {
            self.cap = None;
            Err(CameraError::Read {
                source_name: name,
                reason: "stream returned no frame".into(),
            })
        }
    }

    fn fps(&self) -> Option<f64> {
        let fps = self.cap.as_ref()?.get(videoio::CAP_PROP_FPS).ok()?;
        (fps.is_finite() && fps > 0.5 && fps < 1000.0).then_some(fps)
    }

    fn is_file(&self) -> bool {
        matches!(self.spec, SourceSpec::File(_))
    }

    fn describe(&self) -> String {
        self.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_passwords_never_reach_logs() {
        assert_eq!(
            redact_url("rtsp://admin:secret@10.0.0.5/live"),
            "rtsp://***@10.0.0.5/live"
        );
        assert_eq!(redact_url("rtsp://cam/live"), "rtsp://cam/live");
    }

    #[test]
    fn missing_file_is_a_clear_open_error() {
        let mut s = OpenCvSource::new(SourceSpec::File("/nonexistent/x.avi".into()));
        let e = s.open().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("file not found"), "{e}");
    }
}
