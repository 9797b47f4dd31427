//! Integration tests: one binary, one module per area. They run the real `gatehouse` binary on real
//! parts (OpenCV capture of a video file the project renders, ONNX Runtime on the manifest's models,
//! SQLite files), with the simulated relay at the hardware seam. `scripts/setup.sh` must have fetched the
//! models and the ONNX Runtime library (the test command runs it).

mod support;

/// Encryption at rest: a copied data folder holds no plate, TOTP secret or key in clear (WAL included).
mod at_rest;
/// The audit log: CLI actions recorded, verify names tampering.
mod audit;
/// Backup made online, data folder wiped, restored onto a new key: same decisions, audit verifies.
mod backup;
/// `check-config`: every mistake reported at once, keyed by path, exit code 78.
mod check_config;
/// The wall clock set back and forward 400 days (libfaketime): no wrong open, nothing committed lost.
mod clock;
/// The cloud link over MQTT/mTLS against a real Mosquitto: allowlists in, events out, outages, ACL.
mod cloud_link;
/// The daemon end to end: demo video -> plates -> decisions -> relay -> events.
mod daemon;
/// A corrupt model: the daemon runs on without reading plates, alerts, and the exit button still opens.
mod degraded;
/// kill -9 during a burst of commits: the database opens cleanly and keeps every committed event.
mod durability;
/// `gatehouse eval` on the shared benchmark (skips when ../shared is absent).
mod eval_cli;
/// Gate inputs (simulated): exit button opening audited, the gate contact's three alerts as events.
mod inputs;
/// MQTT 5 at the broker's edges: a refused publish named once, an oversized message never delivered.
mod mqtt5;
/// The Debian package installed into a throwaway root.
mod package;
/// The guard panel: route x role matrix, TOTP replay, lockout, sessions, signed image URLs, CSRF, TLS.
mod panel;
/// The guard panel under abuse: bounded memory, hashing and connections; second-factor rules.
mod panel_abuse;
/// The guard panel in headless Chromium against the daemon on the demo video.
mod panel_browser;
/// Privacy: DSAR export/delete, legal holds and the access log.
mod privacy;
/// Property tests of every parser that takes outside input (fixed seed and case budget).
mod properties;
/// A 1080p H.264 camera over RTSP (GStreamer's server on loopback): read, decided, reconnected.
mod rtsp;
/// Soak on a looping lane: memory, descriptors and threads stay flat (GATEHOUSE_SOAK_MINUTES, default 1).
mod soak;
/// A full disk, a damaged or an empty database: the gate decides, nothing decided is lost, alerts say why.
mod storage;
/// Allowlist signing and applying from the command line, with the configured trust store.
mod sync_cli;
/// The systemd unit's hardening score.
mod systemd_unit;
/// `models/train/`: a short training run exports an ONNX model the reader loads.
mod train_smoke;
/// Two-row plates read row by row with the real models.
mod two_line;
/// sd_notify readiness and the progress-fed watchdog (fake camera that stalls).
mod watchdog;
