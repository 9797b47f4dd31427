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
//! - [`keyfile`], [`secret_file`]: ed25519 key files and files written with care (no symlinks, 0600);
//!   low modules that `config`, `audit` and `sync` build on.
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
pub mod camera;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod demo;
pub mod eval;
pub mod events;
pub mod gate;
pub mod keyfile;
pub mod panel;
pub mod plate;
pub mod privacy;
pub mod recognize;
pub mod secret_file;
pub mod supervise;
pub mod sync;
pub mod track;

/// The build: package version and git hash (`gatehouse --version`, the cloud link's status and heartbeats).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("GATEHOUSE_GIT_HASH"), ")");
