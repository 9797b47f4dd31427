use std::process::Command;

use sha2::{Digest, Sha256};

use crate::support::*;

/// Runs a training script under `models/train/` for a couple of steps and returns the exported model's
/// path and sha256.
fn train_briefly(dir: &std::path::Path, script: &str, extra: &[&str]) -> (std::path::PathBuf, String) {
    let bench = bench_dir().expect("bench");
    let onnx = dir.join(script.replace(".py", ".onnx"));
    let o = Command::new("python3")
        .arg(repo().join("models/train").join(script))
        .args([
            "--bench",
            bench.to_str().expect("utf8"),
            "--out",
            onnx.to_str().expect("utf8"),
        ])
        .args(extra)
        .args(["--steps", "2", "--no-eval"])
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "{script} failed (pip install -r models/train/requirements.txt?):\n{}",
        text(&o)
    );
    let sha = hex::encode(Sha256::digest(std::fs::read(&onnx).expect("onnx")));
    (onnx, sha)
}

/// The Brazilian crops dataset beside the bench (`--br-crops`), when it is there.
fn br_crops(bench: &std::path::Path) -> Option<String> {
    let br = bench.join("../openalpr-train-detector/br");
    br.is_dir().then(|| br.to_str().expect("utf8").to_string())
}

/// `gatehouse recognize --json` on one image with the given manifest: the image's JSON object.
fn recognize(dir: &std::path::Path, manifest: &str, image: &std::path::Path) -> serde_json::Value {
    let mpath = dir.join("manifest.toml");
    std::fs::write(&mpath, manifest).expect("manifest");
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
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("json line {line:?}: {e}"))
}

/// Two training steps of the plate detector, exported to ONNX and quantized to 8 bits, then run by the
/// daemon's reader through a manifest (with the line reader): proves `models/train/` still produces a model
/// the Rust side can use.
#[test]
fn plate_detector_trains_exports_and_loads() {
    let Some(bench) = bench_dir() else {
        eprintln!("SKIP: ../shared/datasets/openalpr-bench is absent; training smoke test not run");
        return;
    };
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    // The committed command's options, each sample taking them (text negatives, dusk, distant plates), and
    // real plate crops pasted in place of every rendered one (with the Brazilian crops when that dataset is
    // beside the bench).
    let mut options = vec![
        "--pose",
        "1",
        "--batch",
        "2",
        "--text-negatives",
        "1",
        "--dark",
        "0.5",
        "--small",
        "0.5",
        "--real-plates",
        "1",
    ];
    let br = br_crops(&bench);
    if let Some(br) = &br {
        options.extend(["--br-crops", br.as_str()]);
    }
    let (float, _) = train_briefly(dir.path(), "plate_detector.py", &options);
    // The shipped detector is the trained one quantized to 8 bits: quantize this one the same way.
    let onnx = dir.path().join("plate_detector.int8.onnx");
    let o = Command::new("python3")
        .arg(repo().join("models/train/quantize.py"))
        .args(["--bench", bench.to_str().expect("utf8"), "--frames", "2", "--no-eval"])
        .arg("--model")
        .arg(&float)
        .arg("--out")
        .arg(&onnx)
        .output()
        .expect("python3");
    assert!(o.status.success(), "quantize.py failed:\n{}", text(&o));
    let sha = hex::encode(Sha256::digest(std::fs::read(&onnx).expect("int8 onnx")));
    let m = repo().join("models");
    let manifest = format!(
        r#"
[[model]]
role = "plate-detector"
kind = "center-box"
file = "{onnx}"
sha256 = "{sha}"
input = {{ color = "bgr", multiple_of = 32, max_side = 640, space_to_depth = 2 }}
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
    let v = recognize(dir.path(), &manifest, &bench.join("endtoend/eu/eu1.jpg"));
    assert!(v["plates"].is_array(), "{v}");

    // quantize.py's model takes 8-bit values and says how they were quantized; without that it is refused.
    let bare = dir.path().join("bare.int8.onnx");
    let o = Command::new("python3")
        .args([
            "-c",
            "import onnx, sys\nm = onnx.load(sys.argv[1])\nassert m.graph.input[0].type.tensor_type.elem_type == \
             onnx.TensorProto.UINT8\ndel m.metadata_props[:]\nonnx.save(m, sys.argv[2])",
        ])
        .arg(&onnx)
        .arg(&bare)
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", text(&o));
    let bare_sha = hex::encode(Sha256::digest(std::fs::read(&bare).expect("bare onnx")));
    let mpath = dir.path().join("bare.toml");
    std::fs::write(
        &mpath,
        manifest
            .replace(&onnx.display().to_string(), &bare.display().to_string())
            .replace(&sha, &bare_sha),
    )
    .expect("manifest");
    let image = bench.join("endtoend/eu/eu1.jpg");
    let o = gatehouse(&[
        "recognize",
        image.to_str().expect("utf8"),
        "--models",
        mpath.to_str().expect("utf8"),
    ]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("gatehouse.input_scale") && out.contains("uint8_input.py") && out.contains("bare.int8.onnx"),
        "{out}"
    );

    // For CPUs without VNNI: the same model with unsigned weights (`--weights u8`, plain pixels), listed
    // after the signed one as the manifest does; a machine without VNNI loads it, this one the signed one.
    let unsigned = dir.path().join("plate_detector.u8.onnx");
    let o = Command::new("python3")
        .arg(repo().join("models/train/quantize.py"))
        .args(["--bench", bench.to_str().expect("utf8"), "--frames", "2", "--no-eval"])
        .args(["--weights", "u8", "--space-to-depth", "1", "--model"])
        .arg(&float)
        .arg("--out")
        .arg(&unsigned)
        .output()
        .expect("python3");
    assert!(o.status.success(), "quantize.py --weights u8 failed:\n{}", text(&o));
    let u8_sha = hex::encode(Sha256::digest(std::fs::read(&unsigned).expect("u8 onnx")));
    let first = manifest
        .find("[[model]]\nrole = \"detector\"")
        .expect("text detector entry");
    let paired = format!(
        "{}needs = \"exact-int8\"\n{}",
        &manifest[..first],
        &manifest[..first]
            .replace(&onnx.display().to_string(), &unsigned.display().to_string())
            .replace(&sha, &u8_sha)
            .replace(", space_to_depth = 2", "")
    ) + &manifest[first..];
    let v = recognize(dir.path(), &paired, &image);
    assert!(v["plates"].is_array(), "{v}");
    // And the unsigned model alone, as a CPU without VNNI runs it.
    let (_, unsigned_only) = paired.split_once("needs = \"exact-int8\"\n").expect("needs");
    let v = recognize(dir.path(), unsigned_only, &image);
    assert!(v["plates"].is_array(), "{v}");
}

/// `plate_detector.py --init` starts from an exported detector: with a learning rate of 0, two steps
/// later the export computes what the committed detector does (its folded batch norms loaded as the
/// identity plus bias and kept frozen), so a fine-tune starts exactly where the committed model is.
#[test]
fn plate_detector_fine_tunes_from_an_exported_detector() {
    let Some(_) = bench_dir() else {
        eprintln!("SKIP: ../shared/datasets/openalpr-bench is absent; training smoke test not run");
        return;
    };
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    let committed = repo().join("models/plate_detector.onnx");
    let committed = committed.to_str().expect("utf8");
    let (tuned, _) = train_briefly(
        dir.path(),
        "plate_detector.py",
        &["--batch", "2", "--init", committed, "--lr", "0"],
    );
    let o = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, numpy as np, onnxruntime as ort\n\
             a, b = (ort.InferenceSession(p, providers=['CPUExecutionProvider']) for p in sys.argv[1:3])\n\
             x = np.random.RandomState(0).rand(1, 3, 352, 640).astype(np.float32) * 2 - 1\n\
             d = float(np.abs(a.run(None, {'image': x})[0] - b.run(None, {'image': x})[0]).max())\n\
             print(d)\n\
             sys.exit(0 if d < 1e-4 else 1)\n",
        )
        .arg(committed)
        .arg(&tuned)
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "the fine-tune's start differs from the committed detector:\n{}",
        text(&o)
    );
}

/// Two fine-tuning steps of the whole-plate reader from the PP-OCRv4 base, exported to ONNX, then used by
/// the daemon beside the committed plate detector: the exported geometry and classes fit the Rust side.
#[test]
fn plate_reader_trains_exports_and_loads() {
    let Some(bench) = bench_dir() else {
        eprintln!("SKIP: ../shared/datasets/openalpr-bench is absent; training smoke test not run");
        return;
    };
    require_models();
    let dir = tempfile::tempdir().expect("tmp");
    let m = repo().join("models");
    let base = m.join("ch_PP-OCRv4_rec_infer.onnx");
    // The committed command's options (crops cut like a detector box's, the cleaned Brazilian crops when
    // that dataset is beside the bench, and `--camera`, here on every plate so that its code surely runs)
    // and the dim-plate one, and half the batch synthetic with every synthetic plate split by an emblem;
    // the real plates drawn by their loss (`--hard`) and the weights averaged (`--ema`, tried 2026-12-07);
    // every plate rolled or sheared as a camera beside the lane sees it (`--pose`).
    let mut options = vec![
        "--pose",
        "1",
        "--hard",
        "1",
        "--ema",
        "0.9",
        "--batch",
        "4",
        "--base",
        base.to_str().expect("utf8"),
        "--det-margins",
        "1",
        "--dim",
        "0.5",
        "--camera",
        "1",
        "--synthetic",
        "0.5",
        "--emblems",
        "1",
    ];
    let br = br_crops(&bench);
    if let Some(br) = &br {
        options.extend(["--br-crops", br.as_str()]);
    }
    let (brief, _) = train_briefly(dir.path(), "plate_reader.py", &options);
    assert!(
        dir.path().join("plate_reader.last.onnx").is_file(),
        "--ema exports the last weights beside the averaged ones"
    );
    // soup.py averages it with the committed reader (two exports of the same graph) into the reader loaded
    // below, and refuses a file of another graph, naming what differs.
    let soup = |inputs: &[&std::path::Path], out: &std::path::Path| {
        Command::new("python3")
            .arg(repo().join("models/train/soup.py"))
            .arg("--out")
            .arg(out)
            .args(inputs)
            .output()
            .expect("python3")
    };
    let onnx = dir.path().join("soup.onnx");
    let o = soup(&[&brief, &m.join("plate_reader.onnx")], &onnx);
    assert!(o.status.success(), "soup.py failed:\n{}", text(&o));
    // The shipped reader runs its 1 x 1 convolutions in 8 bits: reader_int8.py turns the soup into the
    // reader loaded below.
    let int8 = dir.path().join("soup.int8.onnx");
    let o = Command::new("python3")
        .arg(repo().join("models/train/reader_int8.py"))
        .args(["--bench", bench.to_str().expect("utf8"), "--plates", "4", "--no-eval"])
        // every layer in int8, whatever it loses, so that the quantized path surely runs
        .args(["--max-loss", "1000"])
        .arg("--model")
        .arg(&onnx)
        .arg("--out")
        .arg(&int8)
        .output()
        .expect("python3");
    assert!(o.status.success(), "reader_int8.py failed:\n{}", text(&o));
    let out = text(&o);
    let rewritten = out
        .split(" 1 x 1 convolutions as MatMul")
        .next()
        .and_then(|head| head.lines().last())
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no count of rewritten convolutions in:\n{out}"));
    assert!(
        rewritten > 0 && out.contains(&format!("int8: {rewritten} of {rewritten} layers")),
        "{out}"
    );
    let onnx = int8;
    let sha = hex::encode(Sha256::digest(std::fs::read(&onnx).expect("int8 reader")));
    let o = soup(
        &[&brief, &m.join("plate_detector.onnx")],
        &dir.path().join("mixed.onnx"),
    );
    assert!(!o.status.success(), "soup.py averaged a reader with a detector");
    assert!(text(&o).contains("differ"), "{}", text(&o));
    let committed = std::fs::read_to_string(m.join("manifest.toml")).expect("manifest");
    let detector = committed
        .split("[[model]]")
        .find(|block| block.contains("role = \"plate-detector\""))
        .expect("the committed manifest has a plate detector")
        // the first one alone (on a CPU without VNNI it reads a little worse, enough for a smoke test)
        .replace("needs = \"exact-int8\"\n", "");
    let manifest = format!(
        r#"
[[model]]{detector}
[[model]]
role = "recognizer"
kind = "plate-ctc"
file = "{onnx}"
sha256 = "{sha}"
input = {{ color = "bgr", height = 48, width = 160 }}
normalize = {{ scale = 255.0, mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}
charset = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
license = "test"
produced_by = "smoke test"
"#,
        detector = detector.replace("file = \"", &format!("file = \"{}/", m.display())),
        onnx = onnx.display(),
    );
    let v = recognize(dir.path(), &manifest, &bench.join("endtoend/eu/eu1.jpg"));
    assert!(v["plates"].is_array(), "{v}");
}

/// Runs a Python snippet in `models/train/` (so it can import the training scripts) with the PP-OCRv4 base
/// model's path as its argument, and returns its stdout lines that start with one of `prefixes`.
fn train_snippet(code: &str, prefixes: &[&str]) -> Vec<String> {
    let o = Command::new("python3")
        .current_dir(repo().join("models/train"))
        .arg("-c")
        .arg(code)
        .arg(repo().join("models/ch_PP-OCRv4_rec_infer.onnx"))
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .map(str::to_string)
        .collect()
}

/// `plate_reader.py --time-steps 40` (tried 2026-12-07, not in the committed command): the base's neck pools
/// by height only, so a 160 px plate gives 40 CTC steps instead of 20; a base without PP-OCRv4's 3 x 2 pool
/// (here: one already widened) is refused with the reason rather than trained as something else.
#[test]
fn the_reader_base_can_be_given_forty_time_steps() {
    require_models();
    let lines = train_snippet(
        "import sys, torch\n\
         import plate_reader as pr\n\
         net = pr.load_base(sys.argv[1])\n\
         print('steps', tuple(net(torch.zeros(1, 3, 48, 160)).shape))\n\
         net = pr.widen_time(net, 40)\n\
         print('steps', tuple(net(torch.zeros(2, 3, 48, 160)).shape))\n\
         try:\n    pr.widen_time(net, 40)\nexcept SystemExit as e:\n    print('refused:', e)\n",
        &["steps", "refused"],
    );
    assert_eq!(
        lines,
        [
            "steps (1, 20, 38)",
            "steps (2, 40, 38)",
            "refused: --time-steps 40: expected one 3 x 2 AveragePool in the base model, found 0"
        ]
    );
}

/// `plate_reader.py --ema` (tried 2026-12-07, not in the committed command) averages the weights and
/// batch-norm statistics over the steps, but copies the converted graph's integer tensors (reshape targets):
/// averaged, they round down and the averaged reader no longer runs (torch's own EMA helper did that).
#[test]
fn the_readers_moving_average_keeps_its_graph_and_averages_its_weights() {
    require_models();
    let lines = train_snippet(
        "import sys, torch\n\
         import plate_reader as pr\n\
         model = pr.Reader(pr.load_base(sys.argv[1]))\n\
         ema = pr.Ema(model, 0.9)\n\
         w = next(p for p in model.parameters() if p.dim() == 4)\n\
         before = w.detach().clone()\n\
         with torch.no_grad():\n    w.add_(1.0)\n\
         ema.update(model)\n\
         e = dict(ema.module.named_parameters())[next(n for n, p in model.named_parameters() if p is w)]\n\
         print('averaged', round(float((e - before).mean()), 4))\n\
         ints = [k for k, v in model.state_dict().items() if not v.is_floating_point()]\n\
         same = all(torch.equal(model.state_dict()[k], ema.module.state_dict()[k]) for k in ints)\n\
         print('integer tensors copied' if ints and same else 'integer tensors changed or absent')\n\
         print('probs', tuple(ema.module(torch.zeros(2, 3, 48, 160)).shape))\n",
        &["averaged", "integer", "probs"],
    );
    assert_eq!(lines, ["averaged 0.1", "integer tensors copied", "probs (2, 20, 38)"]);
}

/// `plate_reader.py --hard` (tried 2026-12-07, not in the committed command) draws real plates by their
/// recent loss: a plate read three times worse than the rest comes back about three times as often, and a
/// mislabelled one (fifty times worse, never learnt) at most about `HardPlates.CAP` times as often.
#[test]
fn hard_plates_come_back_more_often_but_a_mislabelled_one_is_capped() {
    require_models();
    let lines = train_snippet(
        "import random, collections, torch\n\
         import plate_reader as pr\n\
         h = pr.HardPlates(200)\n\
         h.update([(i, i) for i in range(200)], torch.tensor([5.0, 0.3] + [0.1] * 198))\n\
         rng = random.Random(7)\n\
         c = collections.Counter(h.pick(rng) for _ in range(40000))\n\
         typical = sum(c[i] for i in range(2, 200)) / 198\n\
         print('mislabelled', round(c[0] / typical, 1), 'harder', round(c[1] / typical, 1))\n",
        &["mislabelled"],
    );
    assert_eq!(lines, ["mislabelled 4.9 harder 3.2"]);
}

/// `models/train/pose.py` (the pose class sets and `--pose`) turns a frame about a point and gives each
/// turned plate's bounding box: a dark plate on a light frame, rolled and sheared about a point off its
/// centre (so an image turned the other way than its box would show), lies in the box it returns to a pixel.
#[test]
fn a_turned_plate_lies_in_the_box_pose_gives_it() {
    let lines = train_snippet(
        "import numpy as np\n\
         from PIL import Image\n\
         import pose\n\
         arr = np.full((200, 300, 3), 230, np.uint8)\n\
         arr[80:120, 100:200] = 20\n\
         for kind, deg in (('roll', 15), ('roll', -10), ('shear', 20), ('shear', -12)):\n    \
             im, (b,) = pose.apply(Image.fromarray(arr), [(100, 80, 100, 40)], kind, deg, (120, 90))\n    \
             ys, xs = np.nonzero(np.asarray(im)[:, :, 0] < 125)\n    \
             dark = (xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min())\n    \
             off = max(abs(a - c) for a, c in zip(dark, b))\n    \
             print(kind, deg, 'fits' if off <= 1.5 else f'off by {off:.0f}')\n",
        &["roll", "shear"],
    );
    assert_eq!(
        lines,
        ["roll 15 fits", "roll -10 fits", "shear 20 fits", "shear -12 fits"]
    );
}

/// `models/train/compute_budget.py` counts the shipped models' multiply-accumulates from their graphs:
/// a smaller frame costs the detector fewer, the reader's count does not move, and the per-frame total
/// is the detector plus the reader passes (plus, by default, the coarse and close detector passes).
#[test]
fn the_compute_budget_is_counted_from_the_graphs() {
    require_models();
    let run = |frame: &str, plates: &str, extra: &str| {
        let o = Command::new("python3")
            .arg(repo().join("models/train/compute_budget.py"))
            .args(["--frame", frame, "--plates", plates, "--extra", extra])
            .output()
            .expect("python3");
        assert!(o.status.success(), "compute_budget.py failed:\n{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let macs = |prefix: &str| -> f64 {
            out.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.split_whitespace().find_map(|w| w.parse::<f64>().ok()))
                .unwrap_or_else(|| panic!("no {prefix} line in:\n{out}"))
        };
        let total: f64 = out
            .lines()
            .find(|l| l.starts_with("per frame"))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no per-frame line in:\n{out}"));
        (macs("plate_detector"), macs("plate_reader"), total)
    };
    let (det, reader, total) = run("640x352", "2", "");
    assert!(det > 10.0 && reader > 10.0, "{det} {reader}");
    assert!(
        (total - (det + 2.0 * reader)).abs() < 0.2,
        "{total} vs {det} + 2 x {reader}"
    );
    let (_, _, with_passes) = run("640x352", "2", "224x128,128x64");
    let more = with_passes - total;
    assert!(
        more > 0.05 * det && more < 0.3 * det,
        "the coarse and close passes add {more} M to a {det} M detector pass"
    );
    let (small, reader_again, _) = run("320x192", "1", "");
    assert!(small < det / 2.0, "a quarter of the pixels: {small} vs {det}");
    assert!((reader_again - reader).abs() < 0.05);
}
