//! Two-line (stacked) plates: motorcycle, trailer and some regional plates carry the registration on two
//! rows, e.g. "ABC" over "1D23". The whole-plate reader reads one row, and over two rows it interleaves
//! their characters or gives only its larger row. So a plate whose box is nearly square and whose whole
//! read could be such a row ([`maybe_one_row`]), or whose box is square ([`square`]), is read again as its
//! top and bottom halves, and the two halves, joined top then bottom, replace the whole read when they read
//! more confidently or when the whole read was just one of them (see [`prefer_rows`]).

use opencv::core::Rect;

use super::ctc::Decoded;

/// The top and bottom halves of a plate image to read as two rows, or `None` when the plate box is too
/// wide to hold two rows (`max_aspect` is the widest width / height that can; 0 turns this off).
/// `inner` is the plate box inside the `cols` x `rows` image, which carries a margin around it; each half
/// keeps the side margins and reaches a little past the plate's middle so a row's characters stay whole.
pub fn halves(inner: Rect, cols: i32, rows: i32, max_aspect: f32) -> Option<(Rect, Rect)> {
    if max_aspect <= 0.0 || inner.height < 8 || inner.width as f32 > inner.height as f32 * max_aspect {
        return None;
    }
    let mid = inner.y + inner.height / 2;
    let overlap = (inner.height / 12).max(1);
    let top = Rect::new(0, 0, cols, (mid + overlap).min(rows));
    let bottom_y = (mid - overlap).max(0);
    let bottom = Rect::new(0, bottom_y, cols, rows - bottom_y);
    (top.height >= 4 && bottom.height >= 4).then_some((top, bottom))
}

/// Whether a nearly square plate's whole read could be one row of a two-row plate (or their characters
/// interleaved), so that its rows are worth reading: a read shorter than a full plate, or one with a
/// character under even odds. Read whole, a two-row plate gives its larger row (often 3-5 characters) or a
/// mix with characters the reader is unsure of; a one-row plate whose box came out squarish reads 6-8
/// characters and costs no second pass. (Until 2026-12-07 every character had to reach 0.9, so one-row US
/// plates read at 0.5-0.9 in boxes 1.6-1.8 times as wide as tall had their halves read for nothing: two
/// more reader passes each. At 0.5 every set read the same, three seeds of the synthetic two-row set
/// included, and the speed frames' median frame -> text fell by 2-3 ms; docs/recognition.md.)
pub fn maybe_one_row(whole: &Decoded) -> bool {
    const FULL_LEN: usize = 6;
    const SURE: f32 = 0.5;
    whole.chars.len() < FULL_LEN || whole.chars.iter().any(|c| c.conf < SURE)
}

/// Whether the plate box is square enough that it cannot be a level one-row plate (at most 1.4 times as
/// wide as tall; a one-row plate is 2 to 4.7 times), so its rows are read whatever the whole read says.
/// Since 2026-12-08 the reader is trained on tilted plates too, and it reads a two-row plate's rows
/// interleaved with every character sure (XYZ over 7895 read 7X8Y95); a tilted one-row plate's box can be
/// this square too (2:1 with its rows sloping by 20 degrees: 1.16), and its rows then lose to the whole read.
pub fn square(inner: Rect) -> bool {
    const SQUARE: f32 = 1.4;
    inner.width as f32 <= inner.height as f32 * SQUARE
}

/// The two rows as one read: top row first, then the bottom row.
pub fn join(top: &Decoded, bottom: &Decoded) -> Decoded {
    Decoded {
        chars: top.chars.iter().chain(&bottom.chars).cloned().collect(),
        others: top.others + bottom.others,
    }
}

/// Whether the two-row read replaces the whole-plate read. Both rows must read something, and either the
/// joined read scores clearly higher (a one-row plate cut in half reads worse in both halves, so it keeps
/// its read), or the whole read is exactly one of the rows and the other row adds at least two confidently
/// read characters: read whole, a two-row plate often gives only its larger row.
pub fn prefer_rows(whole: &Decoded, whole_score: f32, top: &Decoded, bottom: &Decoded, rows_score: f32) -> bool {
    const MARGIN: f32 = 0.02;
    const SLACK: f32 = 0.15;
    const OTHER_ROW_CONF: f32 = 0.7;
    if top.chars.is_empty() || bottom.chars.is_empty() || rows_score <= 0.0 {
        return false;
    }
    if rows_score > whole_score + MARGIN {
        return true;
    }
    let adds = |row: &Decoded| row.chars.len() >= 2 && mean_conf(row) >= OTHER_ROW_CONF;
    let one_row = (same_text(whole, top) && adds(bottom)) || (same_text(whole, bottom) && adds(top));
    one_row && rows_score >= whole_score - SLACK
}

fn same_text(a: &Decoded, b: &Decoded) -> bool {
    !a.chars.is_empty() && a.chars.iter().map(|c| c.ch).eq(b.chars.iter().map(|c| c.ch))
}

fn mean_conf(d: &Decoded) -> f32 {
    d.chars.iter().map(|c| c.conf).sum::<f32>() / d.chars.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recognize::CharRead;

    fn read(text: &str, conf: f32) -> Decoded {
        Decoded {
            chars: text.chars().map(|ch| CharRead { ch, conf, alt: None }).collect(),
            others: 0,
        }
    }

    #[test]
    fn a_square_box_is_read_as_rows_whatever_its_whole_read() {
        assert!(square(Rect::new(0, 0, 140, 110)), "a motorcycle plate");
        assert!(square(Rect::new(0, 0, 140, 100)));
        assert!(!square(Rect::new(0, 0, 141, 100)));
        assert!(!square(Rect::new(0, 0, 200, 100)), "a level US plate");
    }

    #[test]
    fn only_short_or_unsure_whole_reads_get_their_rows_read() {
        assert!(maybe_one_row(&read("7953", 0.99)), "one row of a two-row plate");
        assert!(maybe_one_row(&read("A1B2C3D", 0.4)), "an unsure mix of the rows");
        assert!(
            !maybe_one_row(&read("AKS4329", 0.7)),
            "a full-length read with every character more likely than not"
        );
        assert!(maybe_one_row(&read("", 0.0)), "nothing read");
        assert!(!maybe_one_row(&read("7ABC123", 0.97)), "a sure read of a full plate");
        assert!(!maybe_one_row(&read("ABC123", 0.95)));
    }

    #[test]
    fn a_nearly_square_plate_is_cut_into_overlapping_rows_with_its_margins() {
        // plate 100 x 80 at (10, 20) in a 120 x 120 crop
        let (top, bottom) = halves(Rect::new(10, 20, 100, 80), 120, 120, 1.6).expect("square enough");
        assert_eq!((top.x, top.width, bottom.x, bottom.width), (0, 120, 0, 120));
        assert_eq!(top.y, 0, "the top row keeps the margin above the plate");
        assert_eq!(
            bottom.y + bottom.height,
            120,
            "the bottom row keeps the margin below it"
        );
        let mid = 20 + 40;
        assert!(
            top.y + top.height > mid && bottom.y < mid,
            "the rows overlap at the middle"
        );
        assert!(top.y + top.height - bottom.y <= 16, "but only a little");
    }

    #[test]
    fn wide_plates_and_a_zero_setting_are_read_whole() {
        assert!(
            halves(Rect::new(0, 0, 200, 100), 220, 130, 1.6).is_none(),
            "a US plate is 2:1"
        );
        assert!(
            halves(Rect::new(0, 0, 470, 100), 500, 130, 1.6).is_none(),
            "an EU plate is 4.7:1"
        );
        assert!(
            halves(Rect::new(0, 0, 100, 80), 120, 110, 0.0).is_none(),
            "0 turns it off"
        );
        assert!(halves(Rect::new(0, 0, 6, 6), 8, 8, 1.6).is_none(), "too small to cut");
    }

    #[test]
    fn rows_join_top_first_and_replace_the_whole_read_only_when_clearly_better() {
        let (top, bottom) = (read("ABC", 0.99), read("1D23", 0.98));
        let joined = join(&top, &bottom);
        assert_eq!(joined.chars.iter().map(|c| c.ch).collect::<String>(), "ABC1D23");
        let whole = read("1ADB2C3", 0.9);
        assert!(prefer_rows(&whole, 0.90, &top, &bottom, 0.985));
        assert!(
            !prefer_rows(&whole, 0.97, &top, &bottom, 0.985),
            "within the margin the whole read stays"
        );
        assert!(
            !prefer_rows(&whole, 0.5, &read("", 0.0), &bottom, 0.9),
            "an empty row is not a two-row plate"
        );
    }

    #[test]
    fn a_whole_read_that_is_only_one_row_gives_way_to_both_rows() {
        let (top, bottom) = (read("PJ", 0.9), read("2658", 0.99));
        let whole = read("2658", 0.99);
        assert!(prefer_rows(&whole, 0.99, &top, &bottom, 0.95), "the top row was missed");
        assert!(
            !prefer_rows(&whole, 0.99, &top, &bottom, 0.80),
            "not when the rows read much worse"
        );
        let faint = read("PJ", 0.5);
        assert!(
            !prefer_rows(&whole, 0.99, &faint, &bottom, 0.95),
            "not for a faint extra row"
        );
        let short = read("P", 0.99);
        assert!(
            !prefer_rows(&whole, 0.99, &short, &bottom, 0.95),
            "not for one extra character"
        );
        let other = read("2657", 0.99);
        assert!(
            !prefer_rows(&other, 0.99, &top, &bottom, 0.95),
            "only when the whole read is that row"
        );
    }
}
