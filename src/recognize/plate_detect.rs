//! Decoding the plate detector's centre-point maps into plate boxes.

use opencv::core::Rect;

/// A plate box in model-input pixels with its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlateBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    pub score: f32,
}

impl PlateBox {
    pub fn iou(&self, o: &PlateBox) -> f32 {
        let ix = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let iy = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        inter / (self.w * self.h + o.w * o.h - inter)
    }

    /// Scales to image pixels and clips to `cols` x `rows`.
    pub fn to_rect(&self, sx: f32, sy: f32, cols: i32, rows: i32) -> Option<Rect> {
        let x0 = (self.x / sx).floor().max(0.0) as i32;
        let y0 = (self.y / sy).floor().max(0.0) as i32;
        let x1 = ((self.x + self.w) / sx).ceil().min(cols as f32) as i32;
        let y1 = ((self.y + self.h) / sy).ceil().min(rows as f32) as i32;
        (x1 - x0 >= 4 && y1 - y0 >= 3).then(|| Rect::new(x0, y0, x1 - x0, y1 - y0))
    }
}

/// Heat-map scores a plate needs: the best plate `first`, every further one `next` (a second box the
/// detector is unsure of is more often a sign or a sticker than a plate, and each box costs a reader pass).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub first: f32,
    pub next: f32,
}

/// Peaks of the heat map (3x3 local maxima above the thresholds), decoded to boxes, best first, after NMS.
/// `maps` is [5, h, w]: heat, log w, log h, dx, dy (sizes and offsets in units of `stride`).
pub fn decode(maps: &[f32], h: usize, w: usize, stride: f32, th: Thresholds, max_boxes: usize) -> Vec<PlateBox> {
    let threshold = th.first.min(th.next);
    let plane = h * w;
    if maps.len() < plane * 5 {
        return Vec::new();
    }
    let heat = &maps[..plane];
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let v = heat[y * w + x];
            if v < threshold {
                continue;
            }
            let mut peak = true;
            'n: for dy in -1i32..=1 {
                for dx in -1i32..=1 {
                    let (ny, nx) = (y as i32 + dy, x as i32 + dx);
                    if (dy != 0 || dx != 0) && ny >= 0 && nx >= 0 && (ny as usize) < h && (nx as usize) < w {
                        let n = heat[ny as usize * w + nx as usize];
                        if n > v || (n == v && (dy, dx) < (0, 0)) {
                            peak = false;
                            break 'n;
                        }
                    }
                }
            }
            if !peak {
                continue;
            }
            let i = y * w + x;
            let bw = maps[plane + i].clamp(-4.0, 8.0).exp() * stride;
            let bh = maps[2 * plane + i].clamp(-4.0, 8.0).exp() * stride;
            let cx = (x as f32 + maps[3 * plane + i]) * stride;
            let cy = (y as f32 + maps[4 * plane + i]) * stride;
            out.push(PlateBox {
                x: cx - bw / 2.0,
                y: cy - bh / 2.0,
                w: bw,
                h: bh,
                score: v,
            });
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<PlateBox> = Vec::new();
    for b in out {
        let needed = if kept.is_empty() { th.first } else { th.next };
        if b.score >= needed && kept.iter().all(|k| k.iou(&b) < 0.3) {
            kept.push(b);
            if kept.len() == max_boxes {
                break;
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peak_becomes_one_box_in_pixels() {
        let (h, w) = (8usize, 10usize);
        let mut maps = vec![0.0f32; 5 * h * w];
        let i = 3 * w + 4;
        maps[i] = 0.9;
        maps[i + 1] = 0.5; // a weaker neighbour is not a second peak
        maps[h * w + i] = (20.0f32 / 4.0).ln();
        maps[2 * h * w + i] = (8.0f32 / 4.0).ln();
        maps[3 * h * w + i] = 0.5;
        maps[4 * h * w + i] = 0.5;
        let th = Thresholds { first: 0.3, next: 0.3 };
        let boxes = decode(&maps, h, w, 4.0, th, 5);
        assert_eq!(boxes.len(), 1);
        let b = boxes[0];
        assert!((b.x - 8.0).abs() < 1e-4 && (b.y - 10.0).abs() < 1e-4, "{b:?}");
        assert!((b.w - 20.0).abs() < 1e-3 && (b.h - 8.0).abs() < 1e-3);
        assert_eq!(b.to_rect(0.5, 0.5, 1000, 1000), Some(Rect::new(16, 20, 40, 16)));
    }

    #[test]
    fn further_plates_need_the_higher_threshold() {
        let (h, w) = (8usize, 20usize);
        let mut maps = vec![0.0f32; 5 * h * w];
        for (x, v) in [(2, 0.8), (9, 0.45), (16, 0.6)] {
            maps[3 * w + x] = v;
        }
        let scores_in = |maps: &[f32], first: f32, next: f32| -> Vec<f32> {
            decode(maps, h, w, 4.0, Thresholds { first, next }, 5)
                .iter()
                .map(|b| b.score)
                .collect()
        };
        let scores = |first: f32, next: f32| scores_in(&maps, first, next);
        assert_eq!(scores(0.3, 0.3), vec![0.8, 0.6, 0.45]);
        assert_eq!(scores(0.3, 0.5), vec![0.8, 0.6], "the 0.45 box is not a further plate");
        assert_eq!(scores(0.9, 0.5), Vec::<f32>::new(), "no best plate, no further ones");
        maps[3 * w + 2] = 0.35;
        maps[3 * w + 9] = 0.0;
        maps[3 * w + 16] = 0.4;
        assert_eq!(
            scores_in(&maps, 0.3, 0.5),
            vec![0.4],
            "the best box needs only the first threshold, the 0.35 one the next"
        );
    }
}
