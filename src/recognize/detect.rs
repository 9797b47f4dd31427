//! Detector pre- and post-processing for DB-style text maps: resize + normalise into an NCHW tensor,
//! then threshold the probability map into boxes (contours, box score, unclip).

use opencv::core::{Mat, Point, Rect, Size, Vector, CV_8UC1};
use opencv::imgproc;
use opencv::prelude::*;

use super::manifest::{ColorOrder, ModelSpec, Normalize};
use super::RecognizeError;

/// How a frame was scaled into the detector input.
#[derive(Debug, Clone, Copy)]
pub struct Letterbox {
    pub width: i32,
    pub height: i32,
    pub scale_x: f32,
    pub scale_y: f32,
}

/// Input size for an image of `w`x`h`: longest side at most `max_side`, both sides multiples of `multiple`.
pub fn input_size(w: i32, h: i32, max_side: u32, multiple: u32) -> Letterbox {
    let m = multiple.max(1) as f32;
    let ratio = (max_side as f32 / w.max(h) as f32).min(1.0);
    let round = |v: f32| ((v / m).round() * m).max(m) as i32;
    let width = round(w as f32 * ratio);
    let height = round(h as f32 * ratio);
    Letterbox {
        width,
        height,
        scale_x: width as f32 / w as f32,
        scale_y: height as f32 / h as f32,
    }
}

/// Shrinks each axis that is larger than `size` with area averaging (no aliasing; what the whole-plate
/// reader saw in training, where images were resized with an antialiasing filter). Axes that grow are left
/// to [`to_chw`]'s linear resize.
pub fn shrink_smoothly(image: Mat, size: Size) -> Result<Mat, RecognizeError> {
    let target = Size::new(image.cols().min(size.width), image.rows().min(size.height));
    if target.width == image.cols() && target.height == image.rows() {
        return Ok(image);
    }
    let mut out = Mat::default();
    imgproc::resize(&image, &mut out, target, 0.0, 0.0, imgproc::INTER_AREA)?;
    Ok(out)
}

/// An 8-bit model input: the value fed for a normalised pixel `x` is ONNX QuantizeLinear's
/// `saturate(round_half_even(x / scale) + zero_point)`, computed as ONNX Runtime does (f32 division), so a
/// model whose QuantizeLinear was cut off (models/train/uint8_input.py) sees the integers it saw before.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputQuant {
    pub scale: f32,
    pub zero_point: u8,
}

impl InputQuant {
    pub fn quantize(&self, x: f32) -> u8 {
        let zp = f32::from(self.zero_point);
        // clamped first (as MLAS does), so the sum is always within 0..=255
        ((x / self.scale).clamp(-zp, 255.0 - zp).round_ties_even() + zp) as u8
    }
}

/// How a model takes its image: size, colour order, normalisation, contrast stretch and pixel blocks.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    pub size: Size,
    pub color: ColorOrder,
    pub norm: &'a Normalize,
    /// With a gain cap > 1 each image's contrast is stretched first (see [`contrast_stretch`]).
    pub max_gain: f32,
    /// 1: plain planes; b > 1: b x b pixel blocks (see [`to_chw`]).
    pub block: u32,
}

impl<'a> Layout<'a> {
    /// The layout a model's manifest entry asks for, at `size`.
    pub fn of(spec: &'a ModelSpec, size: Size) -> Self {
        Self {
            size,
            color: spec.input.color,
            norm: &spec.normalize,
            max_gain: spec.input.auto_contrast,
            block: spec.input.block(),
        }
    }
}

/// Writes a BGR 8-bit image into `out` as normalised CHW floats, resizing to `layout.size` first (bilinear)
/// and, with `max_gain` > 1, stretching its contrast (see [`contrast_stretch`]). With `block` > 1 the
/// planes are `block` x `block` pixel blocks instead ([3*b*b, H/b, W/b], ONNX SpaceToDepth order: channel
/// `(dy * b + dx) * 3 + c` holds pixel `(b*y + dy, b*x + dx)` of colour `c`); the size must divide by it.
pub fn to_chw(image: &Mat, layout: Layout, out: &mut Vec<f32>) -> Result<(), RecognizeError> {
    to_planes(image, layout, |x| x, out)
}

/// [`to_chw`] for a model that takes 8-bit integers: each normalised value quantized with `quant`.
pub fn to_chw_u8(image: &Mat, layout: Layout, quant: InputQuant, out: &mut Vec<u8>) -> Result<(), RecognizeError> {
    to_planes(image, layout, |x| quant.quantize(x), out)
}

fn to_planes<T: Copy + Default>(
    image: &Mat,
    layout: Layout,
    value: impl Fn(f32) -> T,
    out: &mut Vec<T>,
) -> Result<(), RecognizeError> {
    let Layout {
        size,
        color,
        norm,
        max_gain,
        block,
    } = layout;
    let b = block.max(1) as usize;
    let (w, h) = (size.width.max(0) as usize, size.height.max(0) as usize);
    if w % b != 0 || h % b != 0 {
        return Err(RecognizeError::Inference(format!(
            "input {w}x{h} does not divide into {b}x{b} pixel blocks"
        )));
    }
    let mut resized = Mat::default();
    let src = if image.cols() == size.width && image.rows() == size.height && image.is_continuous() {
        image
    } else {
        imgproc::resize(image, &mut resized, size, 0.0, 0.0, imgproc::INTER_LINEAR)?;
        &resized
    };
    let bytes = src.data_bytes()?;
    let plane = w * h;
    if bytes.len() < plane * 3 {
        return Err(RecognizeError::Inference("image is not 8-bit BGR".into()));
    }
    // Every element is written below, so a buffer of the right size is not cleared first.
    out.resize(plane * 3, T::default());
    // pixel v becomes ((v - lo) * gain) clamped to 0..255, then (x / scale - mean) / std: one table per
    // model channel over the 256 byte values
    let (lo, gain) = contrast_stretch(&bytes[..plane * 3], max_gain);
    let level = |v: u8| ((v as f32 - lo) * gain).clamp(0.0, 255.0);
    let table: [[T; 256]; 3] = std::array::from_fn(|c| {
        let (mul, add) = (1.0 / (norm.scale * norm.std[c]), -norm.mean[c] / norm.std[c]);
        std::array::from_fn(|v| value(level(v as u8) * mul + add))
    });
    // BGR in memory; the model wants channel c of its own order.
    let src_of: [usize; 3] = match color {
        ColorOrder::Bgr => [0, 1, 2],
        ColorOrder::Rgb => [2, 1, 0],
    };
    if b == 1 {
        let (out0, rest) = out.split_at_mut(plane);
        let (out1, out2) = rest.split_at_mut(plane);
        for (p, px) in bytes.chunks_exact(3).enumerate().take(plane) {
            out0[p] = table[0][px[src_of[0]] as usize];
            out1[p] = table[1][px[1] as usize];
            out2[p] = table[2][px[src_of[2]] as usize];
        }
        return Ok(());
    }
    // Pixel blocks: row y fills, for each column offset dx, a run of w/b values in 3 planes.
    let (bw, bplane) = (w / b, plane / (b * b));
    for (y, row) in bytes.chunks_exact(3 * w).take(h).enumerate() {
        let (by, dy) = (y / b, y % b);
        for dx in 0..b {
            for (c, t) in table.iter().enumerate() {
                let start = ((dy * b + dx) * 3 + c) * bplane + by * bw;
                let dst = &mut out[start..start + bw];
                for (x, v) in dst.iter_mut().enumerate() {
                    *v = t[row[(x * b + dx) * 3 + src_of[c]] as usize];
                }
            }
        }
    }
    Ok(())
}

/// Contrast stretch for packed BGR bytes: `(lo, gain)` that map the 1st..99th percentile of luminance
/// (mean of the three channels) onto 0..255, the gain capped at `max_gain`; `(0, 1)` (identity) when
/// `max_gain` <= 1, the image already spans the range, or it is flat.
pub fn contrast_stretch(bgr: &[u8], max_gain: f32) -> (f32, f32) {
    if max_gain <= 1.0 || bgr.len() < 3 {
        return (0.0, 1.0);
    }
    let mut hist = [0u32; 256];
    for px in bgr.chunks_exact(3) {
        hist[(px[0] as usize + px[1] as usize + px[2] as usize) / 3] += 1;
    }
    let n = (bgr.len() / 3) as u32;
    let percentile = |q: u32| {
        let want = (n * q / 100).max(1);
        let mut seen = 0;
        hist.iter()
            .position(|&c| {
                seen += c;
                seen >= want
            })
            .unwrap_or(255) as f32
    };
    let (lo, hi) = (percentile(1), percentile(99));
    let gain = (255.0 / (hi - lo).max(1.0)).min(max_gain);
    if hi - lo < 1.0 || gain <= 1.0 {
        return (0.0, 1.0);
    }
    (lo, gain)
}

/// A text box in detector-map pixels with its mean probability.
#[derive(Debug, Clone, Copy)]
pub struct MapBox {
    pub rect: Rect,
    pub score: f32,
}

/// Thresholds a `h`x`w` probability map into unclipped boxes.
pub fn boxes_from_map(
    prob: &[f32],
    w: i32,
    h: i32,
    threshold: f32,
    box_threshold: f32,
    unclip_ratio: f32,
) -> Result<Vec<MapBox>, RecognizeError> {
    if prob.len() < (w * h) as usize {
        return Err(RecognizeError::Inference(format!(
            "detector map has {} values, expected {}",
            prob.len(),
            w * h
        )));
    }
    let mut bin = Mat::new_rows_cols_with_default(h, w, CV_8UC1, 0.into())?;
    {
        let data = bin.data_bytes_mut()?;
        for (d, p) in data.iter_mut().zip(prob) {
            *d = if *p > threshold { 255 } else { 0 };
        }
    }
    let mut contours: Vector<Vector<Point>> = Vector::new();
    imgproc::find_contours(
        &bin,
        &mut contours,
        imgproc::RETR_LIST,
        imgproc::CHAIN_APPROX_SIMPLE,
        Point::new(0, 0),
    )?;
    let mut out = Vec::new();
    for c in contours.iter() {
        let r = imgproc::bounding_rect(&c)?;
        if r.width < 3 || r.height < 3 {
            continue;
        }
        let mut sum = 0.0f32;
        for y in r.y..r.y + r.height {
            let row = &prob[(y * w + r.x) as usize..(y * w + r.x + r.width) as usize];
            sum += row.iter().sum::<f32>();
        }
        let score = sum / (r.width * r.height) as f32;
        if score < box_threshold {
            continue;
        }
        let area = (r.width * r.height) as f32;
        let perimeter = 2.0 * (r.width + r.height) as f32;
        let d = (area * unclip_ratio / perimeter).round() as i32;
        let x0 = (r.x - d).max(0);
        let y0 = (r.y - d).max(0);
        let x1 = (r.x + r.width + d).min(w);
        let y1 = (r.y + r.height + d).min(h);
        out.push(MapBox {
            rect: Rect::new(x0, y0, x1 - x0, y1 - y0),
            score,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dim_images_are_stretched_and_bright_or_flat_ones_left_alone() {
        // a dim plate: grey levels 20..60 -> stretched with the gain capped at 4
        let dim: Vec<u8> = (0..300u32).flat_map(|i| [(20 + i % 41) as u8; 3]).collect();
        let (lo, gain) = contrast_stretch(&dim, 4.0);
        assert_eq!(lo, 20.0);
        assert_eq!(gain, 4.0);
        // already full range (black characters on a white plate): identity
        let full: Vec<u8> = (0..300u32)
            .flat_map(|i| [if i % 3 == 0 { 0 } else { 255 }; 3])
            .collect();
        assert_eq!(contrast_stretch(&full, 4.0), (0.0, 1.0));
        // an even ramp over 0..255 is barely touched (its 1st..99th percentile is 2..253)
        let ramp: Vec<u8> = (0..256u32).flat_map(|i| [i as u8; 3]).collect();
        assert!(contrast_stretch(&ramp, 4.0).1 < 1.03);
        // flat image, or the stretch switched off: identity
        assert_eq!(contrast_stretch(&[90u8; 300], 4.0), (0.0, 1.0));
        assert_eq!(contrast_stretch(&dim, 0.0), (0.0, 1.0));
    }

    #[test]
    fn pixel_blocks_hold_the_same_values_as_plain_planes() {
        use opencv::core::{Scalar, CV_8UC3};
        let (w, h) = (8, 6);
        let mut img = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(0.0)).expect("mat");
        let bytes = img.data_bytes_mut().expect("bytes");
        for (i, v) in bytes.iter_mut().enumerate() {
            *v = (i * 7 % 251) as u8;
        }
        let norm = Normalize {
            scale: 255.0,
            mean: [0.5, 0.4, 0.3],
            std: [0.5, 0.6, 0.7],
        };
        let size = Size::new(w, h);
        for color in [ColorOrder::Bgr, ColorOrder::Rgb] {
            let (mut plain, mut blocks) = (Vec::new(), Vec::new());
            let layout = |block| Layout {
                size,
                color,
                norm: &norm,
                max_gain: 0.0,
                block,
            };
            to_chw(&img, layout(1), &mut plain).expect("plain");
            to_chw(&img, layout(2), &mut blocks).expect("blocks");
            let (w, h) = (w as usize, h as usize);
            for c in 0..3 {
                for y in 0..h {
                    for x in 0..w {
                        let ch = ((y % 2) * 2 + x % 2) * 3 + c;
                        let at = ch * (h / 2) * (w / 2) + (y / 2) * (w / 2) + x / 2;
                        assert_eq!(blocks[at], plain[c * h * w + y * w + x], "c{c} y{y} x{x}");
                    }
                }
            }
        }
        let mut out = Vec::new();
        let odd = Layout {
            size: Size::new(6, 6),
            color: ColorOrder::Bgr,
            norm: &norm,
            max_gain: 0.0,
            block: 4,
        };
        assert!(to_chw(&img, odd, &mut out).is_err());
    }

    #[test]
    fn eight_bit_input_is_quantize_linear_of_the_float_input() {
        use opencv::core::{Scalar, CV_8UC3};
        // what models/train/quantize.py measured for the detector: x in -1..1, scale 2/255, zero point 128
        let q = InputQuant {
            scale: 0.007_843_138,
            zero_point: 128,
        };
        assert_eq!((q.quantize(0.0), q.quantize(0.5)), (128, 192));
        assert_eq!((q.quantize(-5.0), q.quantize(5.0)), (0, 255), "saturates");
        // halfway values round to even, as ONNX QuantizeLinear does
        let half = InputQuant {
            scale: 1.0,
            zero_point: 10,
        };
        assert_eq!(
            (half.quantize(0.5), half.quantize(1.5), half.quantize(-2.5)),
            (10, 12, 8)
        );
        let (w, h) = (8, 6);
        let mut img = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(0.0)).expect("mat");
        for (i, v) in img.data_bytes_mut().expect("bytes").iter_mut().enumerate() {
            *v = (i * 37 % 256) as u8;
        }
        let norm = Normalize {
            scale: 255.0,
            mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.5, 0.5],
        };
        let size = Size::new(w, h);
        for block in [1, 2] {
            let (mut floats, mut bytes) = (Vec::new(), vec![7u8; 1000]);
            let layout = Layout {
                size,
                color: ColorOrder::Bgr,
                norm: &norm,
                max_gain: 0.0,
                block,
            };
            to_chw(&img, layout, &mut floats).expect("floats");
            to_chw_u8(&img, layout, q, &mut bytes).expect("bytes");
            let want: Vec<u8> = floats.iter().map(|&x| q.quantize(x)).collect();
            assert_eq!(bytes, want, "block {block}");
        }
    }
    #[test]
    fn input_size_keeps_multiples_and_caps_the_long_side() {
        let lb = input_size(1280, 720, 960, 32);
        assert_eq!((lb.width, lb.height), (960, 544));
        let small = input_size(300, 100, 960, 32);
        assert_eq!((small.width, small.height), (288, 96));
    }

    #[test]
    fn a_blob_becomes_an_unclipped_box() {
        let (w, h) = (40, 20);
        let mut prob = vec![0.0f32; (w * h) as usize];
        for y in 8..12 {
            for x in 10..30 {
                prob[(y * w + x) as usize] = 0.9;
            }
        }
        let boxes = boxes_from_map(&prob, w, h, 0.3, 0.5, 1.5).expect("boxes");
        assert_eq!(boxes.len(), 1);
        let r = boxes[0].rect;
        assert!(
            r.x < 10 && r.x + r.width > 29 && r.y < 8 && r.y + r.height > 11,
            "{r:?}"
        );
    }
}
