//! The demo video: synthetic vehicles with rendered plates driving up to the gate, drawn with OpenCV so
//! the project produces its own footage (no camera needed). A timestamp overlay in the top strip mimics a
//! real camera (the demo lane's region of interest leaves it out).

use std::path::Path;

use opencv::core::{Mat, Point, Rect, Scalar, Size, CV_8UC3};
use opencv::imgproc;
use opencv::prelude::*;
use opencv::videoio::{VideoWriter, VideoWriterTrait};

/// One vehicle pass in the demo video.
#[derive(Debug, Clone)]
pub struct DemoPass {
    pub plate: String,
    /// How long the plate is in view.
    pub seconds: f32,
}

pub const WIDTH: i32 = 640;
pub const HEIGHT: i32 = 360;

/// The default demo: matches `config/demo-allowlist.csv`.
pub fn default_passes() -> Vec<DemoPass> {
    ["HXP4729", "MWK3974", "TRV8633", "JCY4712", "PKN3150"]
        .iter()
        .map(|p| DemoPass {
            plate: p.to_string(),
            seconds: 3.0,
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo video {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// Renders one frame: `t` in 0..1 is the vehicle's progress through its pass (None = empty lane).
pub fn frame(plate: Option<(&str, f32)>, clock_text: &str, seed: u64) -> Result<Mat, DemoError> {
    let mut img = Mat::new_rows_cols_with_default(HEIGHT, WIDTH, CV_8UC3, Scalar::new(92.0, 96.0, 98.0, 0.0))?;
    // road and lane markings
    imgproc::rectangle(
        &mut img,
        Rect::new(0, 120, WIDTH, HEIGHT - 120),
        Scalar::new(60.0, 62.0, 64.0, 0.0),
        -1,
        imgproc::LINE_8,
        0,
    )?;
    for i in 0..6 {
        let y = 140 + i * 40 + ((seed as i32 * 7) % 40);
        imgproc::line(
            &mut img,
            Point::new(WIDTH / 2, y),
            Point::new(WIDTH / 2, y + 18),
            Scalar::all(200.0),
            3,
            imgproc::LINE_8,
            0,
        )?;
    }
    if let Some((text, t)) = plate {
        // the car approaches: grows and moves up, then stops at the gate
        let t = t.clamp(0.0, 1.0);
        let approach = (t / 0.6).min(1.0);
        let scale = 0.75 + 0.35 * approach;
        let car_w = (300.0 * scale) as i32;
        let car_h = (170.0 * scale) as i32;
        let cx = WIDTH / 2 + ((1.0 - approach) * 40.0) as i32;
        let cy = (HEIGHT as f32 - 40.0 - approach * 70.0) as i32;
        let car = Rect::new(cx - car_w / 2, cy - car_h, car_w, car_h);
        imgproc::rectangle(
            &mut img,
            car,
            Scalar::new(40.0, 30.0, 120.0, 0.0),
            -1,
            imgproc::LINE_8,
            0,
        )?;
        // windscreen
        let ws = Rect::new(car.x + car_w / 8, car.y + 8, car_w * 3 / 4, car_h / 3);
        imgproc::rectangle(&mut img, ws, Scalar::new(70.0, 60.0, 50.0, 0.0), -1, imgproc::LINE_8, 0)?;
        // plate
        let pw = (170.0 * scale) as i32;
        let ph = (48.0 * scale) as i32;
        let plate_rect = Rect::new(cx - pw / 2, car.y + car_h - ph - (14.0 * scale) as i32, pw, ph);
        imgproc::rectangle(&mut img, plate_rect, Scalar::all(235.0), -1, imgproc::LINE_8, 0)?;
        imgproc::rectangle(&mut img, plate_rect, Scalar::all(20.0), 2, imgproc::LINE_8, 0)?;
        let font = imgproc::FONT_HERSHEY_DUPLEX;
        let fs = 1.05 * scale as f64;
        let mut base = 0;
        let ts = imgproc::get_text_size(text, font, fs, 2, &mut base)?;
        let org = Point::new(plate_rect.x + (pw - ts.width) / 2, plate_rect.y + (ph + ts.height) / 2);
        imgproc::put_text(
            &mut img,
            text,
            org,
            font,
            fs,
            Scalar::all(15.0),
            2,
            imgproc::LINE_AA,
            false,
        )?;
    }
    imgproc::put_text(
        &mut img,
        clock_text,
        Point::new(10, 24),
        imgproc::FONT_HERSHEY_SIMPLEX,
        0.6,
        Scalar::all(255.0),
        1,
        imgproc::LINE_AA,
        false,
    )?;
    Ok(img)
}

/// Writes the demo video (MJPEG in AVI): for each pass, `gap_s` of empty lane, then the vehicle. The lane
/// markings scroll from frame to frame unless `still_road` (a fixed camera over a still road: what motion
/// gating sees between vehicles).
pub fn render(path: &Path, passes: &[DemoPass], fps: f64, gap_s: f32, still_road: bool) -> Result<usize, DemoError> {
    let err = |reason: String| DemoError::Write {
        path: path.display().to_string(),
        reason,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let fourcc = VideoWriter::fourcc('M', 'J', 'P', 'G')?;
    let mut w = VideoWriter::new(path.as_os_str(), fourcc, fps, Size::new(WIDTH, HEIGHT), true)?;
    if !w.is_opened()? {
        return Err(err(
            "OpenCV cannot write MJPEG/AVI here (is ffmpeg support installed?)".into()
        ));
    }
    let mut n = 0usize;
    let mut clock_s = 0.0f64;
    let mut put = |w: &mut VideoWriter, plate: Option<(&str, f32)>, n: &mut usize| -> Result<(), DemoError> {
        let secs = clock_s as u64;
        let stamp = format!("CAM1 2026-11-23 08:{:02}:{:02}", (secs / 60) % 60, secs % 60);
        w.write(&frame(plate, &stamp, if still_road { 0 } else { *n as u64 })?)?;
        *n += 1;
        clock_s += 1.0 / fps;
        Ok(())
    };
    for p in passes {
        for _ in 0..(gap_s as f64 * fps).round() as usize {
            put(&mut w, None, &mut n)?;
        }
        let frames = (p.seconds as f64 * fps).round().max(1.0) as usize;
        for i in 0..frames {
            put(&mut w, Some((&p.plate, i as f32 / frames as f32)), &mut n)?;
        }
    }
    for _ in 0..(gap_s as f64 * fps).round() as usize {
        put(&mut w, None, &mut n)?;
    }
    w.release()?;
    Ok(n)
}
