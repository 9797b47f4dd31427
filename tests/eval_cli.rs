use crate::support::*;

/// The eval command prints its figures, the last line being one JSON object with the agreed keys.
/// Runs on the EU set (the smallest frames) to stay quick; docs/recognition.md carries the full figures.
#[test]
fn eval_prints_figures_as_json_on_the_last_line() {
    let Some(bench) = bench_dir() else {
        eprintln!("SKIP: ../shared/datasets/openalpr-bench is absent; eval test not run");
        return;
    };
    require_models();
    let o = gatehouse(&[
        "eval",
        bench.join("endtoend/eu").to_str().expect("utf8"),
        "--json",
        "--threads",
        "2",
    ]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    let last = out.lines().last().expect("output");
    let v: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    for k in [
        "frames",
        "exact_top1",
        "top_n",
        "detection_recall",
        "median_ms",
        "p90_ms",
    ] {
        assert!(v.get(k).is_some(), "missing {k}: {last}");
    }
    assert_eq!(v["frames"].as_u64(), Some(108));
    // A floor well under the measured figure, to catch a broken pipeline (not a target).
    assert!(v["exact_top1"].as_f64().unwrap_or(0.0) > 0.3, "{last}");
}

/// `speed --baseline` times two manifests on the same frames and prints their ratio; a manifest that feeds
/// the detector plain pixels when the model reads 2 x 2 blocks is refused at load, naming the key to set.
#[test]
fn speed_compares_against_a_baseline_and_a_mismatched_input_layout_is_named() {
    let Some(bench) = bench_dir() else {
        eprintln!("SKIP: ../shared/datasets/openalpr-bench is absent; speed test not run");
        return;
    };
    require_models();
    let frame = bench.join("speed/car-1.png");
    let frame = frame.to_str().expect("utf8");
    let shipped = repo().join("models/manifest.toml");
    let o = gatehouse(&[
        "speed",
        frame,
        "--rounds",
        "2",
        "--baseline",
        shipped.to_str().expect("utf8"),
    ]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.contains("baseline") && out.contains("ratio"), "{out}");

    let dir = tempfile::tempdir().expect("tmp");
    let models = repo().join("models");
    let manifest = std::fs::read_to_string(&shipped).expect("manifest");
    assert!(
        manifest.contains(", space_to_depth = 2"),
        "the shipped detector reads pixel blocks"
    );
    let manifest = manifest
        .replace(", space_to_depth = 2", "")
        .replace("file = \"", &format!("file = \"{}/", models.display()));
    let plain = dir.path().join("manifest.toml");
    std::fs::write(&plain, manifest).expect("write");
    let o = gatehouse(&[
        "speed",
        frame,
        "--rounds",
        "1",
        "--models",
        plain.to_str().expect("utf8"),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("set input.space_to_depth = 2"), "{}", text(&o));
}

/// `eval-passes` runs seeded approaches through the reader, the tracker and the access decision: the same
/// seed gives the same passes, and no pass opens the gate for another car's entry (a false accept).
/// Runs on the BR validation frames (7 passes) with short approaches to stay quick.
#[test]
fn eval_passes_is_repeatable_and_opens_for_no_other_entry() {
    let Some(bench) = bench_dir() else {
        eprintln!("SKIP: ../shared/datasets/openalpr-bench is absent; eval-passes test not run");
        return;
    };
    require_models();
    let run = || {
        let o = gatehouse(&[
            "eval-passes",
            bench.join("endtoend/br").to_str().expect("utf8"),
            "--frames",
            "5",
            "--threads",
            "2",
            "--json",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let last = out.lines().last().expect("output").to_string();
        let v: serde_json::Value = serde_json::from_str(&last).expect("last line is JSON");
        (v, last)
    };
    let (a, last) = run();
    let (b, _) = run();
    assert_eq!(a, b, "a seeded benchmark repeats itself");
    let r = &a["report"];
    assert_eq!(r["passes"].as_u64(), Some(7), "{last}");
    assert_eq!(r["frames_per_pass"].as_u64(), Some(5), "{last}");
    assert_eq!(r["opened_wrong"].as_u64(), Some(0), "{last}");
    let passes = a["passes"].as_array().expect("passes");
    assert!(
        passes.iter().all(|p| p["reads"].as_array().map(Vec::len) == Some(5)),
        "{last}"
    );
    // A floor well under the measured figure, to catch a broken pipeline (not a target).
    assert!(r["correct"].as_u64().unwrap_or(0) >= 4, "{last}");
}
