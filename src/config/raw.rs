//! The file as written: serde structs with `deny_unknown_fields` and documented defaults.
//! Validation turns these into the typed [`super::Config`].

use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    #[serde(default = "default_site_name")]
    pub name: String,
    /// IANA time zone for schedules, e.g. "America/Chicago".
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Folder for the database and crops; relative paths are relative to the config file.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Free space to keep on the data folder's file system; below it, crop images give way first.
    #[serde(default = "default_min_free_mb")]
    pub min_free_mb: u64,
    /// Space held back for the database (a file of zeros, `db-reserve`), released when a commit finds the
    /// disk full so events can still be stored; 0 disables it.
    #[serde(default = "default_db_reserve_mb")]
    pub db_reserve_mb: u64,
}

fn default_min_free_mb() -> u64 {
    256
}

fn default_db_reserve_mb() -> u64 {
    8
}

fn default_site_name() -> String {
    "gatehouse".into()
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_data_dir() -> String {
    "/var/lib/gatehouse".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecognize {
    /// Path of the model manifest (models/manifest.toml).
    pub manifest: String,
    /// Path of libonnxruntime.so; default: $ORT_DYLIB_PATH, then next to the binary, then /usr/lib/gatehouse.
    #[serde(default)]
    pub onnxruntime: Option<String>,
    #[serde(default = "one")]
    pub threads: usize,
    #[serde(default = "default_min_len")]
    pub min_plate_len: usize,
    #[serde(default = "default_max_len")]
    pub max_plate_len: usize,
    /// Longest side the detector sees (pixels, multiple of 32).
    #[serde(default = "default_det_side")]
    pub detector_max_side: u32,
    /// Plate format prior: "us", "br", "eu" or "none".
    #[serde(default = "default_region")]
    pub region: String,
    /// Extra plate patterns (L letter, D digit, * either), e.g. ["LLLDDDD"].
    #[serde(default)]
    pub formats: Vec<String>,
    /// Plates at most this wide for their height are also read as two rows (0: never).
    #[serde(default = "default_two_line")]
    pub two_line_max_aspect: f32,
    /// Plates read per frame, the detector's best first (each costs one reader pass).
    #[serde(default = "default_max_plates")]
    pub max_plates: usize,
}

fn default_region() -> String {
    "none".into()
}

fn one() -> usize {
    1
}
fn default_min_len() -> usize {
    super::DEFAULT_MIN_PLATE_LEN
}
fn default_max_len() -> usize {
    super::DEFAULT_MAX_PLATE_LEN
}
fn default_two_line() -> f32 {
    super::DEFAULT_TWO_LINE_MAX_ASPECT
}
fn default_max_plates() -> usize {
    super::DEFAULT_MAX_PLATES
}
fn default_det_side() -> u32 {
    960
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrack {
    #[serde(default = "default_gap")]
    pub pass_gap_ms: u64,
    #[serde(default = "default_min_reads")]
    pub min_reads: usize,
    #[serde(default = "default_early")]
    pub early_confidence: f32,
    #[serde(default = "default_same_vehicle")]
    pub same_vehicle_s: u64,
    #[serde(default = "default_dwell")]
    pub decide_after_ms: u64,
}

impl Default for RawTrack {
    fn default() -> Self {
        Self {
            pass_gap_ms: default_gap(),
            min_reads: default_min_reads(),
            early_confidence: default_early(),
            same_vehicle_s: default_same_vehicle(),
            decide_after_ms: default_dwell(),
        }
    }
}

fn default_gap() -> u64 {
    1500
}
fn default_min_reads() -> usize {
    2
}
fn default_early() -> f32 {
    0.90
}
fn default_same_vehicle() -> u64 {
    20
}
fn default_dwell() -> u64 {
    2500
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    #[serde(default = "one")]
    pub max_confusions: usize,
    #[serde(default = "default_min_conf")]
    pub min_confidence: f32,
    #[serde(default = "default_ambiguity")]
    pub ambiguity_confidence: f32,
}

impl Default for RawAccess {
    fn default() -> Self {
        Self {
            max_confusions: 1,
            min_confidence: default_min_conf(),
            ambiguity_confidence: default_ambiguity(),
        }
    }
}

fn default_min_conf() -> f32 {
    0.60
}
fn default_ambiguity() -> f32 {
    0.95
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    /// "gpio" or "simulated".
    pub kind: String,
    #[serde(default)]
    pub chip: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default)]
    pub active_low: bool,
    #[serde(default = "default_pulse")]
    pub pulse_ms: u64,
    #[serde(default = "default_cooldown")]
    pub cooldown_ms: u64,
    #[serde(default = "default_max_hold")]
    pub max_hold_s: u64,
    /// "closed" (line released) or "open" (line energised: fail-open sites).
    #[serde(default = "default_safe")]
    pub safe_state: String,
    /// Simulated relay only: JSON-lines file that records every transition.
    #[serde(default)]
    pub log: Option<String>,
}

fn default_pulse() -> u64 {
    800
}
fn default_cooldown() -> u64 {
    3000
}
fn default_max_hold() -> u64 {
    3600
}
fn default_safe() -> String {
    "closed".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoi {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLane {
    pub name: String,
    /// A video file path (or `file:PATH`), an `rtsp://` URL, or a V4L2 device (`/dev/video0`, `v4l2:/dev/video0`).
    pub source: String,
    /// Name of a `[relays.NAME]` table.
    pub relay: String,
    #[serde(default)]
    pub roi: Option<RawRoi>,
    /// Files only: "stop" or "loop" at the end of the video.
    #[serde(default = "default_at_end")]
    pub at_end: String,
    /// Files only: play at the video's frame rate (true) or as fast as recognition takes frames (false).
    #[serde(default = "yes")]
    pub realtime: bool,
    /// Files only: recognise every frame and time the lane by the video's own clock (frame number / frame
    /// rate), whatever recognition costs: a deterministic replay of a recorded clip (tests, emulation).
    #[serde(default)]
    pub replay: bool,
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// Read frames only when something moves in the region (or a plate was just seen).
    #[serde(default)]
    pub motion: Option<RawMotion>,
}

/// `[inputs.NAME]`: one gate input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    /// "gpio" or "simulated".
    pub kind: String,
    /// "presence", "gate_position" or "exit_button".
    pub role: String,
    #[serde(default)]
    pub chip: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
    /// Simulated inputs: the file that holds the level.
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub active_low: bool,
    #[serde(default = "default_debounce")]
    pub debounce_ms: u64,
    /// presence: the lane whose loop this is.
    #[serde(default)]
    pub lane: Option<String>,
    /// presence: a plate decided "open" opens the gate only while the loop is occupied (the camera often
    /// reads a plate before the car reaches the gate; the opening waits for it).
    #[serde(default)]
    pub open_only_present: bool,
    /// presence, with `open_only_present`: how long a decided opening waits for the loop.
    #[serde(default = "default_present_wait")]
    pub present_wait_s: u64,
    /// gate_position, exit_button: the relay whose gate this is.
    #[serde(default)]
    pub relay: Option<String>,
    /// gate_position: "commanded but did not open" after this long.
    #[serde(default = "default_open_within")]
    pub open_within_ms: u64,
    /// gate_position: "held open too long" after this long open with the relay let go.
    #[serde(default = "default_held_open")]
    pub held_open_s: u64,
}

fn default_debounce() -> u64 {
    50
}
fn default_present_wait() -> u64 {
    20
}
fn default_open_within() -> u64 {
    5000
}
fn default_held_open() -> u64 {
    120
}

/// `[lanes.motion]`: present means on (unless `enabled = false`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMotion {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_min_changed")]
    pub min_changed: f32,
    #[serde(default = "default_hold_ms")]
    pub hold_ms: u64,
    #[serde(default = "default_idle_read_ms")]
    pub idle_read_ms: u64,
}

fn default_min_changed() -> f32 {
    0.002
}
fn default_hold_ms() -> u64 {
    2_000
}
fn default_idle_read_ms() -> u64 {
    2_000
}

fn default_at_end() -> String {
    "stop".into()
}
fn yes() -> bool {
    true
}
fn default_reconnect_min() -> u64 {
    500
}
/// A camera back after an outage waits at most this long more (a longer back-off kept a lane blind for
/// up to 10 s after a 20 s outage).
fn default_reconnect_max() -> u64 {
    5_000
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    /// Write plate text in logs (false: redacted, the default).
    #[serde(default)]
    pub plates: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    /// The systemd credential holding the master key (LoadCredentialEncrypted= in the unit).
    #[serde(default)]
    pub credential: Option<String>,
    /// Development only: a clear master key file, made on first use; refused under systemd.
    #[serde(default)]
    pub insecure_dev_key_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Address for Prometheus metrics, e.g. "127.0.0.1:9898"; absent = off.
    #[serde(default)]
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacy {
    /// Two-letter US state code (or DC); leave out outside the US.
    #[serde(default)]
    pub state: Option<String>,
    /// The rules file; default: retention/us-states.toml beside the config, then /usr/share/gatehouse.
    #[serde(default)]
    pub rules: Option<String>,
    #[serde(default = "default_read_days")]
    pub retention_days_reads: u32,
    #[serde(default = "default_image_days")]
    pub retention_days_images: u32,
    /// Where the rules say counsel must review: who reviewed, when, what.
    #[serde(default)]
    pub counsel_acknowledged: Option<String>,
    /// Who residents and visitors contact about their data (for the published policy).
    #[serde(default)]
    pub contact: Option<String>,
    /// The site's plate key (seals opted-out plates); default: plate.key in the data folder, made on first use.
    #[serde(default)]
    pub plate_key: Option<String>,
    /// Keep an anonymous count of opted-out residents' passes (a metric; no plate, time or crop).
    #[serde(default = "yes")]
    pub count_opted_out: bool,
}

impl Default for RawPrivacy {
    fn default() -> Self {
        Self {
            state: None,
            rules: None,
            retention_days_reads: default_read_days(),
            retention_days_images: default_image_days(),
            counsel_acknowledged: None,
            contact: None,
            plate_key: None,
            count_opted_out: true,
        }
    }
}

fn default_read_days() -> u32 {
    180
}
fn default_image_days() -> u32 {
    60
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    /// This device's identity for the cloud, `site/device`.
    #[serde(default)]
    pub device: Option<String>,
    /// Public keys trusted to sign allowlists, by key id: { "cloud-2026a" = "/etc/gatehouse/keys/cloud-2026a.pub" }.
    #[serde(default)]
    pub trusted_keys: std::collections::BTreeMap<String, String>,
    /// The MQTT link to the cloud (absent: signed allowlists only through the CLI).
    #[serde(default)]
    pub mqtt: Option<RawMqtt>,
    /// Alert when the applied allowlist was signed longer ago than this (0: no alert).
    #[serde(default = "default_allowlist_max_age")]
    pub allowlist_max_age_hours: u32,
}

fn default_allowlist_max_age() -> u32 {
    168
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// `mqtts://host:port` (TLS 1.3 with a client certificate; plain MQTT is not offered).
    pub broker: String,
    /// CA certificate(s) the broker's certificate must chain to (PEM).
    pub ca: String,
    /// This device's client certificate (PEM) and its private key (PEM).
    pub cert: String,
    pub key: String,
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_s: u64,
    /// Events published but not yet acknowledged, at most.
    #[serde(default = "default_window")]
    pub window: u16,
    /// Largest MQTT packet accepted from the broker (allowlist chunks must fit).
    #[serde(default = "default_max_packet_kb")]
    pub max_packet_kb: usize,
    /// "5" (MQTT 5, the default) or "3.1.1" (for a broker without MQTT 5).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// MQTT 5: how long the broker keeps this device's session (and the messages for it) while it is away.
    #[serde(default = "default_session_expiry")]
    pub session_expiry_h: u32,
}

fn default_protocol() -> String {
    "5".into()
}
fn default_session_expiry() -> u32 {
    168
}

fn default_topic_prefix() -> String {
    "gatehouse".into()
}
fn default_keep_alive() -> u64 {
    30
}
fn default_heartbeat() -> u64 {
    60
}
fn default_window() -> u16 {
    200
}
fn default_max_packet_kb() -> usize {
    1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPanel {
    /// HTTPS address of the guards' panel, e.g. "0.0.0.0:8443".
    #[serde(default = "default_panel_listen")]
    pub listen: String,
    /// The site's certificate and key (PEM); leave both out for a self-signed one made on first start.
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    /// Names the self-signed certificate is made for.
    #[serde(default = "default_panel_hostnames")]
    pub hostnames: Vec<String>,
    /// A session ends after this long without use.
    #[serde(default = "default_idle_minutes")]
    pub idle_minutes: u32,
    /// ... and at the latest this long after login (a guard's shift).
    #[serde(default = "default_shift_hours")]
    pub shift_hours: u32,
    #[serde(default = "default_lockout_failures")]
    pub lockout_failures: u32,
    #[serde(default = "default_lockout_minutes")]
    pub lockout_minutes: u32,
    #[serde(default = "default_login_per_minute")]
    pub login_per_minute: u32,
    /// How long a plate image link works.
    #[serde(default = "default_image_url_seconds")]
    pub image_url_seconds: u32,
    /// Every role must use a second factor (admins and installers always must).
    #[serde(default)]
    pub totp_for_all_roles: bool,
}

fn default_panel_listen() -> String {
    "0.0.0.0:8443".into()
}
fn default_panel_hostnames() -> Vec<String> {
    vec!["gatehouse.local".into()]
}
fn default_idle_minutes() -> u32 {
    120
}
fn default_shift_hours() -> u32 {
    13
}
fn default_lockout_failures() -> u32 {
    5
}
fn default_lockout_minutes() -> u32 {
    15
}
fn default_login_per_minute() -> u32 {
    20
}
fn default_image_url_seconds() -> u32 {
    120
}
