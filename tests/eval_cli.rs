use crate::support::*;

/// The eval command prints its figures, the last line being one JSON object with the agreed keys.
/// Runs on the EU set (the smallest frames) to stay quick; the README carries the full figures.
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
