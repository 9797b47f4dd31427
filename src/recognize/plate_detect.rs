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

    /// The box with its x and width times `sx`, y and height times `sy`.
    pub fn scaled(&self, sx: f32, sy: f32) -> PlateBox {
        PlateBox {
            x: self.x * sx,
            y: self.y * sy,
            w: self.w * sx,
            h: self.h * sy,
            score: self.score,
        }
    }

    /// The share of this box's area that lies inside `o`.
    pub fn inside(&self, o: &PlateBox) -> f32 {
        let ix = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let iy = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        if ix <= 0.0 || iy <= 0.0 || self.w <= 0.0 || self.h <= 0.0 {
            return 0.0;
        }
        ix * iy / (self.w * self.h)
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

/// Plates at least this share of the frame's long side wide are the coarse pass's to find; narrower ones
/// the full-size pass's (see [`merge_scales`]).
pub const FINE_UP_TO: f32 = 0.25;
pub const COARSE_FROM: f32 = 0.3;
/// Plates at least this share of the frame's long side wide are also the close pass's to find (at the
/// coarse side they are bigger than the detector saw in training).
pub const CLOSE_FROM: f32 = 0.45;

/// Merges the boxes of the full-size pass (`fine`), the coarse pass (`coarse`) and the close pass
/// (`close`, empty when there is none), all in frame pixels. Each pass is trusted in its own size range:
/// the full-size one for boxes under [`FINE_UP_TO`] of the frame's long side (at the coarse side such
/// plates are a few dozen pixels, and its boxes come out about twice too big), the coarse one from
/// [`COARSE_FROM`] up (the full-size detector never saw plates that big in training and either misses them
/// or boxes a part), the close one from [`CLOSE_FROM`] up. Boxes in their pass's range go first, then the
/// rest, each group best first; a box overlapping a kept one (IoU >= 0.3) or lying mostly inside one at
/// most twice its width, or holding such a one, is the same plate and is dropped; the thresholds apply as
/// for one pass.
pub fn merge_scales(
    fine: Vec<PlateBox>,
    coarse: Vec<PlateBox>,
    close: Vec<PlateBox>,
    long_side: f32,
    th: Thresholds,
    max_boxes: usize,
) -> Vec<PlateBox> {
    let mut all: Vec<(bool, PlateBox)> = fine
        .into_iter()
        .map(|b| (b.w < FINE_UP_TO * long_side, b))
        .chain(coarse.into_iter().map(|b| (b.w >= COARSE_FROM * long_side, b)))
        .chain(close.into_iter().map(|b| (b.w >= CLOSE_FROM * long_side, b)))
        .collect();
    all.sort_by(|(ra, a), (rb, b)| rb.cmp(ra).then(b.score.total_cmp(&a.score)));
    let mut kept: Vec<PlateBox> = Vec::new();
    for (_, b) in all {
        let needed = if kept.is_empty() { th.first } else { th.next };
        // A box lying mostly inside another of at most twice its width is a second box on that plate; a
        // much smaller one inside a big box (a plate inside a tailgate's text block) is a plate of its own.
        let inside = |small: &PlateBox, big: &PlateBox| small.inside(big) >= 0.6 && small.w >= 0.5 * big.w;
        let same = |k: &PlateBox| k.iou(&b) >= 0.3 || inside(k, &b) || inside(&b, k);
        if b.score >= needed && !kept.iter().any(same) {
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

    fn pb(x: f32, y: f32, w: f32, h: f32, score: f32) -> PlateBox {
        PlateBox { x, y, w, h, score }
    }

    #[test]
    fn each_pass_is_trusted_in_its_own_size_range() {
        let th = Thresholds { first: 0.3, next: 0.5 };
        // A 180 px plate in a 1280 frame: the coarse pass boxes it twice too big, with a fair score.
        let fine = vec![pb(687.0, 371.0, 182.0, 80.0, 0.73)];
        let coarse = vec![pb(622.0, 317.0, 332.0, 148.0, 0.61)];
        assert_eq!(merge_scales(fine.clone(), coarse.clone(), vec![], 1280.0, th, 2), fine);
        // ... and even a better-scored coarse box of that size does not displace the fine one.
        let coarse_better = vec![pb(622.0, 317.0, 332.0, 148.0, 0.9)];
        assert_eq!(merge_scales(fine.clone(), coarse_better, vec![], 1280.0, th, 2), fine);
        // A close-up (60% of the frame): the fine pass boxes a wrong part, the coarse pass the plate.
        let fine = vec![pb(478.0, 232.0, 628.0, 209.0, 0.45)];
        let coarse = vec![pb(390.0, 251.0, 723.0, 166.0, 0.94)];
        assert_eq!(merge_scales(fine, coarse.clone(), vec![], 1280.0, th, 2), coarse);
        // Only one pass finds a plate: kept, whichever it is.
        let lone = vec![pb(100.0, 300.0, 400.0, 150.0, 0.6)];
        assert_eq!(merge_scales(Vec::new(), lone.clone(), vec![], 1280.0, th, 2), lone);
        assert_eq!(merge_scales(lone.clone(), Vec::new(), vec![], 1280.0, th, 2), lone);
        // A plate filling 60% of the frame: the coarse pass scores it under the threshold, the close pass
        // finds it; a close box of a plate the other passes size is the same plate, not a second one.
        let close = vec![pb(61.0, 242.0, 768.0, 379.0, 0.8)];
        assert_eq!(
            merge_scales(Vec::new(), Vec::new(), close.clone(), 1280.0, th, 2),
            close
        );
        let coarse = vec![pb(70.0, 250.0, 750.0, 360.0, 0.9)];
        assert_eq!(
            merge_scales(Vec::new(), coarse.clone(), close.clone(), 1280.0, th, 2),
            coarse
        );
        // A close box narrower than its range goes behind the boxes in theirs.
        let small_close = vec![pb(600.0, 100.0, 300.0, 100.0, 0.95)];
        let got = merge_scales(fine_one(), Vec::new(), small_close, 1280.0, th, 2);
        assert_eq!(got[0], fine_one()[0]);
    }

    fn fine_one() -> Vec<PlateBox> {
        vec![pb(687.0, 371.0, 182.0, 80.0, 0.73)]
    }

    #[test]
    fn merged_plates_elsewhere_keep_the_thresholds_and_the_cap() {
        let th = Thresholds { first: 0.3, next: 0.5 };
        let fine = vec![pb(10.0, 10.0, 100.0, 40.0, 0.8), pb(900.0, 500.0, 100.0, 40.0, 0.45)];
        let coarse = vec![pb(300.0, 300.0, 400.0, 150.0, 0.7), pb(20.0, 600.0, 300.0, 100.0, 0.6)];
        let got = merge_scales(fine, coarse, vec![], 1280.0, th, 2);
        // in-range boxes first, best first; the 0.45 second plate is under `next`; two at most
        assert_eq!(got.iter().map(|b| b.score).collect::<Vec<_>>(), vec![0.8, 0.7]);
        // a box mostly inside a kept one of at most twice its width is the same plate, whatever the IoU
        let fine = vec![pb(100.0, 100.0, 300.0, 100.0, 0.9), pb(120.0, 110.0, 160.0, 60.0, 0.8)];
        assert_eq!(merge_scales(fine, Vec::new(), vec![], 1280.0, th, 4).len(), 1);
        // ... but a plate inside a much bigger box (a tailgate's text block that the close pass boxes with
        // a better score) is still read
        let close = vec![pb(300.0, 200.0, 640.0, 300.0, 0.9)];
        let fine = vec![pb(560.0, 420.0, 120.0, 50.0, 0.7)];
        let got = merge_scales(fine.clone(), Vec::new(), close.clone(), 1280.0, th, 3);
        assert_eq!(got, vec![close[0], fine[0]]);
    }
}
