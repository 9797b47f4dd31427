use opencv::core::{Mat, Point, Rect, Scalar, Vector, CV_8UC3};
use opencv::{imgcodecs, imgproc};

use crate::support::*;

/// A plate photo: `rows` of text centred on a light plate `w` x `h` with a dark border, inside a grey
/// margin (what the detector's box plus the reader's margin hands the reader).
fn plate(rows: &[&str], w: i32, h: i32) -> Mat {
    let (mx, my) = (w / 10, h / 4);
    let mut img = Mat::new_rows_cols_with_default(h + 2 * my, w + 2 * mx, CV_8UC3, Scalar::all(90.0)).expect("mat");
    let r = Rect::new(mx, my, w, h);
    imgproc::rectangle(&mut img, r, Scalar::all(235.0), -1, imgproc::LINE_8, 0).expect("plate");
    imgproc::rectangle(&mut img, r, Scalar::all(20.0), 3, imgproc::LINE_8, 0).expect("border");
    let font = imgproc::FONT_HERSHEY_DUPLEX;
    let row_h = h / rows.len() as i32;
    for (i, text) in rows.iter().enumerate() {
        let mut base = 0;
        let unit = imgproc::get_text_size(text, font, 1.0, 2, &mut base).expect("size");
        let scale = (row_h as f64 * 0.6 / unit.height as f64).min(w as f64 * 0.85 / unit.width as f64);
        let ts = imgproc::get_text_size(text, font, scale, 3, &mut base).expect("size");
        let org = Point::new(mx + (w - ts.width) / 2, my + row_h * i as i32 + (row_h + ts.height) / 2);
        imgproc::put_text(
            &mut img,
            text,
            org,
            font,
            scale,
            Scalar::all(15.0),
            3,
            imgproc::LINE_AA,
            false,
        )
        .expect("text");
    }
    img
}

/// Writes a crops set (labels.csv) of two-row and one-row plates, and returns eval's JSON with
/// the given `--two-line-max-aspect`.
fn eval_rows(dir: &std::path::Path, max_aspect: &str) -> serde_json::Value {
    let o = gatehouse(&[
        "eval",
        dir.to_str().expect("utf8"),
        "--json",
        "--region",
        "none",
        "--two-line-max-aspect",
        max_aspect,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    serde_json::from_str(out.lines().last().expect("output")).expect("json")
}

/// Square two-row plates (motorcycles, trailers, Brazilian two-row plates) are read row by row and joined
/// top first; with the two-row read turned off, the same plates come out interleaved or short.
#[test]
fn two_row_plates_are_read_top_row_then_bottom_row() {
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    // The one-row plates' crops (plate + margin) are 1.6 and 1.76 wide for their height: both may be read
    // as rows with the default 1.8, and the whole read must stay.
    let plates: [(&[&str], i32, i32); 5] = [
        (&["ABC", "1D23"], 200, 160),
        (&["KT", "48215"], 180, 150),
        (&["XYZ", "7895"], 190, 140),
        (&["7ABC123"], 240, 120),
        (&["8XYZ452"], 264, 120),
    ];
    let mut labels = String::from("image,state,plate\n");
    for (i, (rows, w, h)) in plates.iter().enumerate() {
        let name = format!("p{i}.png");
        let ok = imgcodecs::imwrite(
            dir.path().join(&name).to_str().expect("utf8"),
            &plate(rows, *w, *h),
            &Vector::new(),
        )
        .expect("png");
        assert!(ok);
        labels.push_str(&format!("{name},xx,{}\n", rows.concat()));
    }
    std::fs::write(dir.path().join("labels.csv"), labels).expect("labels");
    let on = eval_rows(dir.path(), "1.8");
    assert_eq!(on["frames"].as_u64(), Some(5), "{on}");
    assert_eq!(on["exact_top1"].as_f64(), Some(1.0), "every plate read exactly: {on}");
    let off = eval_rows(dir.path(), "0");
    assert!(
        off["exact_top1"].as_f64().unwrap_or(1.0) <= 0.6,
        "read whole, two-row plates should not come out right: {off}"
    );
}
