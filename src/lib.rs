//! Gatehouse: the entrance gate of a gated community, run from a license-plate camera.
//!
//! # Layout
//!
//! Data flows one way, one module per stage:
//!
//! ```text
//! camera ──frames──▶ recognize ──plate reads──▶ track ──one read per pass──▶ access ──decision──▶ gate
//!  (OpenCV,           (ONNX Runtime,              (votes across              (in-memory         (relay over
//!   newest frame wins) blocking threads)           frames)                    allowlist)         GPIO)
//!                                                                               │
//!                                                                               └──▶ events (SQLite outbox)
//! ```
//!
//! - [`config`]: one TOML file -> typed, validated [`config::Config`]; every error keyed by its path.
//! - [`camera`]: [`camera::FrameSource`] (OpenCV or fake), the capture loop with reconnect, and the
//!   newest-frame-wins slot that feeds recognition.
//! - [`recognize`]: [`recognize::PlateReader`] (ONNX or fake), the model manifest, detection and CTC decoding.
//! - [`track`]: turns a stream of reads into one voted read per vehicle pass.
//! - [`access`]: the allowlist (SQLite on disk, an in-memory snapshot for decisions), confusion-aware matching
//!   and the decision with its reason.
//! - [`gate`]: [`gate::Relay`] (GPIO or simulated) and the controller that pulses, holds and locks it, with the
//!   safe state applied on shutdown and from the panic hook.
//! - [`events`]: every pass committed to SQLite with its decision and crop.
//! - [`supervise`]: signals, the panic hook, sd_notify readiness, the progress-fed watchdog, metrics.
//! - [`sync`]: signed allowlist envelopes from the cloud (keys, verify, atomic apply).
//! - [`db`]: the SQLite file, its pragmas and migrations.
//! - [`secrets`]: the master key (a systemd credential) and what it locks at rest: the database (SQLCipher)
//!   and the sealed files (crops, spill, snapshot, keys).
//! - [`keyfile`], [`secret_file`], [`plate`], [`privacy`], [`db`], [`clock`]: low modules (key files, files
//!   written with care, plate text and format priors, the retention rules, the SQLite file, time) that
//!   `config`, `audit` and everything above build on. `config` and `audit` import nothing higher (a test
//!   below checks it).
//! - [`panel`]: the guards' HTTPS panel (live view, gate controls, passes, users, roles, 2FA, sessions); its
//!   own thread and runtime.
//! - [`audit`]: the hash-chained audit log of operator actions and its signed checkpoints.
//! - [`app`]: wiring: the run in named steps (`app/mod.rs`), a lane's recognition and decision tasks
//!   (`app/lane.rs`), the allowlist at start and its reloader (`app/allowlist.rs`).
//! - [`clock`]: the [`clock::Clock`] seam, so expiry and schedules are testable.
//! - [`demo`]: renders the bundled demo video (synthetic plates) so the daemon runs with nothing attached.
//! - [`eval`]: the accuracy / speed evaluation over a labelled image set.

#![forbid(unsafe_code)]

pub mod access;
pub mod app;
pub mod audit;
pub mod backup;
pub mod camera;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod demo;
pub mod eval;
pub mod events;
pub mod gate;
pub mod inputs;
pub mod keyfile;
pub mod panel;
pub mod plate;
pub mod privacy;
pub mod recognize;
pub mod secret_file;
pub mod secrets;
pub mod supervise;
pub mod sync;
pub mod track;

/// The build: package version and git hash (`gatehouse --version`, the cloud link's status and heartbeats).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("GATEHOUSE_GIT_HASH"), ")");

#[cfg(test)]
mod layering {
    use std::path::Path;

    /// Modules `config` and `audit` may import: themselves and the low modules under everything.
    const LOW: &[&str] = &[
        "config",
        "audit",
        "keyfile",
        "secret_file",
        "secrets",
        "plate",
        "privacy",
        "db",
        "clock",
    ];

    fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("source folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source file");
                out.push((path.display().to_string(), text));
            }
        }
    }

    /// Imports run one way: the config and the audit log never reach up into the stages that use them.
    #[test]
    fn config_and_audit_import_only_low_modules() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        for module in ["config", "audit"] {
            sources(&src.join(module), &mut files);
        }
        assert!(files.len() >= 5, "found the config and audit sources");
        let mut upward = Vec::new();
        for (name, text) in &files {
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let module: String = line[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !LOW.contains(&module.as_str()) {
                        upward.push(format!("{name}: {}", line.trim()));
                    }
                }
            }
        }
        assert!(
            upward.is_empty(),
            "config/audit import higher modules:\n{}",
            upward.join("\n")
        );
    }
}
