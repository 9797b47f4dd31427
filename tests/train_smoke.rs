use std::process::Command;

use sha2::{Digest, Sha256};

use crate::support::*;

/// Two training steps of the plate detector, exported to ONNX, then run by the daemon's reader through a
/// manifest: proves `models/train/` still produces a model the Rust side can load and use.
#[test]
fn plate_detector_trains_exports_and_loads() {
    let Some(bench) = bench_dir() else {
        eprintln!("SKIP: ../shared/datasets/openalpr-bench is absent; training smoke test not run");
        return;
    };
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    let onnx = dir.path().join("plate.onnx");
    let o = Command::new("python3")
        .arg(repo().join("models/train/plate_detector.py"))
        .args([
            "--bench",
            bench.to_str().expect("utf8"),
            "--out",
            onnx.to_str().expect("utf8"),
        ])
        .args(["--steps", "2", "--batch", "2", "--no-eval"])
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "training failed (pip install -r models/train/requirements.txt?):\n{}",
        text(&o)
    );
    let sha = hex::encode(Sha256::digest(std::fs::read(&onnx).expect("onnx")));
    let m = repo().join("models");
    let manifest = format!(
        r#"
[[model]]
role = "plate-detector"
kind = "center-box"
file = "{onnx}"
sha256 = "{sha}"
input = {{ color = "bgr", multiple_of = 32, max_side = 640 }}
normalize = {{ scale = 255.0, mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}
license = "test"
produced_by = "smoke test"

[[model]]
role = "detector"
kind = "db-text"
file = "{det}"
sha256 = "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"
input = {{ color = "bgr", multiple_of = 32 }}
normalize = {{ scale = 255.0, mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}
license = "Apache-2.0"
produced_by = "fetch-models.sh"

[[model]]
role = "recognizer"
kind = "ctc"
file = "{rec}"
sha256 = "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"
input = {{ color = "bgr", height = 48, max_width = 320 }}
normalize = {{ scale = 255.0, mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}
charset = "metadata:character"
license = "Apache-2.0"
produced_by = "fetch-models.sh"
"#,
        onnx = onnx.display(),
        det = m.join("ch_PP-OCRv4_det_infer.onnx").display(),
        rec = m.join("ch_PP-OCRv4_rec_infer.onnx").display(),
    );
    let mpath = dir.path().join("manifest.toml");
    std::fs::write(&mpath, manifest).expect("manifest");
    let image = bench.join("endtoend/eu/eu1.jpg");
    let o = gatehouse(&[
        "recognize",
        image.to_str().expect("utf8"),
        "--json",
        "--models",
        mpath.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let line = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).expect("json line");
    assert!(v["plates"].is_array(), "{line}");
}
