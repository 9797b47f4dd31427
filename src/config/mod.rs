//! Configuration: one TOML file, parsed into typed structs and validated before anything is opened.
//!
//! Loading touches nothing (no devices, no ports); [`load`] reports every problem at once, each keyed by
//! its path with the fix (`gatehouse check-config`). Relative paths are resolved against the config
//! file's folder.

mod error;
mod raw;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigIssue};

// The plate reader's defaults, here because the config's defaults are made of them.
/// Widest plate box (width / height) read as two rows as well. US motorcycle plates are 7 x 4 in (1.75),
/// Brazilian two-row plates 1.2-1.4, one-row US car plates 2 (12 x 6 in) and EU plates 4.7. The shipped
/// detector's boxes for two-row plates come out a little flatter than the plates (94% at most 1.8 on the
/// synthetic two-row sets, 80% at most 1.6); 14% of its US car-plate boxes qualify too, but their rows are
/// read only when the whole read is short or unsure (`two_line::maybe_one_row`), and win only when they read
/// clearly better.
pub const DEFAULT_TWO_LINE_MAX_ASPECT: f32 = 1.8;
/// Plates read per frame (the detector's best), unless configured.
pub const DEFAULT_MAX_PLATES: usize = 2;

/// Plate lengths read by default (`recognize.min_plate_len`, `recognize.max_plate_len`). The longest is the
/// allowlist's ([`crate::plate::MAX_PLATE_LEN`]): Indian plates have 10 characters (MH12AB1234), Russian ones
/// with a three-digit region 9, and a US novelty plate in the developers' crops 10 (SWEETTHING, read right
/// and dropped at the earlier maximum of 8). Raising 8 to 10 changed no other read or whole pass of the
/// developers' sets, vehicle text included (docs/recognition.md, 2026-12-07).
pub const DEFAULT_MIN_PLATE_LEN: usize = 4;
pub const DEFAULT_MAX_PLATE_LEN: usize = crate::plate::MAX_PLATE_LEN;

/// Hides credentials in a camera URL (`rtsp://user:pass@host` -> `rtsp://***@host`).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

/// A GStreamer pipeline with its secrets hidden: credentials inside any URL (`location=rtsp://user:pw@..`)
/// and the value of `user-pw=` (rtspsrc's password property).
pub fn redact_pipeline(pipeline: &str) -> String {
    pipeline
        .split_whitespace()
        .map(|token| {
            if token.starts_with("user-pw=") {
                "user-pw=***".to_string()
            } else if token.contains("://") {
                redact_url(token)
            } else {
                token.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Exit code for an invalid configuration (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

#[derive(Debug, Clone)]
pub struct Config {
    pub site: SiteConfig,
    pub recognize: RecognizeConfig,
    pub track: TrackConfig,
    pub access: AccessConfig,
    pub relays: Vec<RelayConfig>,
    pub lanes: Vec<LaneConfig>,
    /// Gate inputs: loop detectors, gate position contacts, exit buttons (`[inputs.NAME]`).
    pub inputs: Vec<InputConfig>,
    pub logging: LoggingConfig,
    /// Prometheus metrics address (off when absent).
    pub metrics: Option<std::net::SocketAddr>,
    pub privacy: PrivacyConfig,
    /// The cloud link's identity and trust (absent: no cloud sync configured).
    pub sync: Option<SyncConfig>,
    /// The guards' HTTPS panel (absent: off).
    pub panel: Option<PanelConfig>,
    /// Where the master key that encrypts the data folder comes from (absent: nothing is encrypted).
    pub secrets: Option<crate::secrets::MasterKeySource>,
}

#[derive(Debug, Clone)]
pub struct PanelConfig {
    pub listen: std::net::SocketAddr,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub hostnames: Vec<String>,
    pub idle: chrono::Duration,
    pub absolute: chrono::Duration,
    pub lockout_failures: u32,
    pub lockout_period: Duration,
    pub login_per_minute: u32,
    pub image_url_ttl: Duration,
    /// Guards and supervisors must use a second factor too.
    pub totp_for_all_roles: bool,
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `site/device`
    pub device: String,
    /// Key id -> public key file.
    pub trusted_keys: Vec<(String, PathBuf)>,
    /// The MQTT link (absent: no live link; `gatehouse allowlist apply` still works).
    pub mqtt: Option<MqttConfig>,
    /// Past this age (from the applied envelope's `issued`), the list is stale: an alert (`None`: off).
    pub allowlist_max_age: Option<chrono::Duration>,
}

impl SyncConfig {
    /// The device's MQTT identity: client id, certificate CN and its topic level (`site.device`).
    pub fn mqtt_id(&self) -> String {
        self.device.replacen('/', ".", 1)
    }
}

#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub topic_prefix: String,
    pub keep_alive: Duration,
    pub heartbeat: Duration,
    pub window: u16,
    pub max_packet_bytes: usize,
    pub protocol: MqttProtocol,
    /// MQTT 5: how long the broker keeps the session while the device is away.
    pub session_expiry: Duration,
}

/// The MQTT version the cloud link speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttProtocol {
    /// MQTT 5: reason codes on acknowledgements, the device's maximum packet size announced, message
    /// expiry on heartbeats.
    V5,
    /// MQTT 3.1.1, for brokers without MQTT 5.
    V311,
}

#[derive(Debug, Clone)]
pub struct PrivacyConfig {
    /// Effective retention for reads and images, with the reasons and the site's duties.
    pub effective: crate::privacy::Effective,
    pub counsel_acknowledged: Option<String>,
    pub contact: Option<String>,
    /// The plate key file when set in the config (see [`Config::plate_key_path`]).
    pub plate_key: Option<PathBuf>,
    pub count_opted_out: bool,
}

#[derive(Debug, Clone)]
pub struct SiteConfig {
    pub name: String,
    pub timezone: chrono_tz::Tz,
    pub data_dir: PathBuf,
    /// Free space (bytes) kept on the data folder's file system; below it crops are pruned, oldest first.
    pub min_free_bytes: u64,
    /// Size of the database reserve (`db-reserve` in the data folder), released when the disk is full.
    pub db_reserve_bytes: u64,
}

impl SiteConfig {
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("gatehouse.db")
    }
    pub fn crops_dir(&self) -> PathBuf {
        self.data_dir.join("crops")
    }
}

#[derive(Debug, Clone)]
pub struct RecognizeConfig {
    pub manifest: PathBuf,
    pub onnxruntime: Option<PathBuf>,
    pub threads: usize,
    pub min_plate_len: usize,
    pub max_plate_len: usize,
    pub detector_max_side: u32,
    pub prior: crate::plate::prior::FormatPrior,
    pub two_line_max_aspect: f32,
    pub max_plates: usize,
}

#[derive(Debug, Clone)]
pub struct TrackConfig {
    pub pass_gap: Duration,
    pub min_reads: usize,
    pub early_confidence: f32,
    pub same_vehicle: Duration,
    /// A vehicle still in view after this long is decided with what the reads agree on so far.
    pub decide_after: Duration,
}

impl Default for TrackConfig {
    fn default() -> Self {
        Self {
            pass_gap: Duration::from_millis(1500),
            min_reads: 2,
            early_confidence: 0.9,
            same_vehicle: Duration::from_secs(20),
            decide_after: Duration::from_millis(2500),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AccessConfig {
    pub max_confusions: usize,
    pub min_confidence: f32,
    pub ambiguity_confidence: f32,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            max_confusions: 1,
            min_confidence: 0.6,
            ambiguity_confidence: 0.95,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafeState {
    /// Line released: the gate closes (the usual wiring).
    Closed,
    /// Line energised: the gate stays open (sites whose fire code requires fail-open).
    Open,
}

#[derive(Debug, Clone)]
pub enum RelayKind {
    Gpio { chip: PathBuf, line: u32 },
    Simulated { log: Option<PathBuf> },
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub name: String,
    pub kind: RelayKind,
    pub active_low: bool,
    pub pulse: Duration,
    pub cooldown: Duration,
    pub max_hold: Duration,
    pub safe_state: SafeState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    File(PathBuf),
    Url(String),
    Device(PathBuf),
    /// A GStreamer pipeline ending in `appsink`, opened through OpenCV's GStreamer back end (`gst:` in the
    /// config): how an ARM box uses its hardware decoder.
    Pipeline(String),
}

/// Region of interest as fractions of the frame.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Roi {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl Roi {
    /// Inside the frame and more than 5% of it each way (the config's and the setup page's rule).
    pub fn is_valid(&self) -> bool {
        [self.x, self.y, self.width, self.height]
            .iter()
            .all(|v| (0.0..=1.0).contains(v))
            && self.width > 0.05
            && self.height > 0.05
            && self.x + self.width <= 1.0 + 1e-6
            && self.y + self.height <= 1.0 + 1e-6
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtEnd {
    Stop,
    Loop,
}

#[derive(Debug, Clone)]
pub struct LaneConfig {
    pub name: String,
    pub source: SourceSpec,
    pub relay: String,
    pub roi: Option<Roi>,
    pub at_end: AtEnd,
    pub realtime: bool,
    /// Every frame recognised, timed by the video's clock (see `RawLane::replay`).
    pub replay: bool,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Motion gating (`[lanes.motion]`): `None` reads every frame recognition can take.
    pub motion: Option<MotionConfig>,
}

/// One gate input (`[inputs.NAME]`, see `inputs`).
#[derive(Debug, Clone, PartialEq)]
pub struct InputConfig {
    pub name: String,
    pub kind: InputKind,
    /// The contact pulls the line low when made.
    pub active_low: bool,
    /// A level counts once it has held this long.
    pub debounce: Duration,
    pub role: InputRole,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    Gpio {
        chip: PathBuf,
        line: u32,
    },
    /// A file holding `1` (active) or anything else; for tests and the demo.
    Simulated {
        file: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum InputRole {
    /// A loop detector under `lane`: a pass opens and closes with it. With `open_wait` set, a plate decided
    /// "open" opens the gate only while the loop is occupied, waiting at most that long for it.
    Presence { lane: String, open_wait: Option<Duration> },
    /// The gate's open contact on `relay`'s gate: alerts when a command is not followed by an opening within
    /// `open_within`, when the gate stays open `held_open` after the relay let go, and when it opens with no
    /// command.
    GatePosition {
        relay: String,
        open_within: Duration,
        held_open: Duration,
    },
    /// A push-button that opens `relay`'s gate (exit button, guard's button), audited as its own actor.
    ExitButton { relay: String },
}

impl InputConfig {
    /// One line for `check-config`: the line, its polarity and what it does.
    pub fn describe(&self) -> String {
        let line = match &self.kind {
            InputKind::Gpio { chip, line } => format!("GPIO line {line} on {}", chip.display()),
            InputKind::Simulated { file } => format!("simulated, level in {}", file.display()),
        };
        let polarity = if self.active_low { "active low" } else { "active high" };
        let role = match &self.role {
            InputRole::Presence { lane, open_wait: None } => format!("loop detector of lane {lane}"),
            InputRole::Presence {
                lane,
                open_wait: Some(w),
            } => format!(
                "loop detector of lane {lane}; a decided opening waits up to {} s for a vehicle on it",
                w.as_secs()
            ),
            InputRole::GatePosition {
                relay,
                open_within,
                held_open,
            } => format!(
                "gate position of relay {relay}; alerts: not open within {} ms, held open over {} s, forced open",
                open_within.as_millis(),
                held_open.as_secs()
            ),
            InputRole::ExitButton { relay } => format!("exit button opening relay {relay}"),
        };
        format!("{line}, {polarity}, debounce {} ms, {role}", self.debounce.as_millis())
    }
}

/// When an idle lane reads a frame (see `camera::motion`).
#[derive(Debug, Clone, PartialEq)]
pub struct MotionConfig {
    /// Fraction of the region's thumbnail that must change to count as motion.
    pub min_changed: f32,
    /// How long the lane stays awake after motion or a plate.
    pub hold: Duration,
    /// With nothing going on, one frame is still read this often.
    pub idle_read: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct LoggingConfig {
    pub plates: bool,
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &base)
}

/// Parses and validates config text; relative paths resolve against `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
    validate::parse(text, base)
}

impl Config {
    /// The site's plate key file: `[privacy] plate_key`, or plate.key in the data folder.
    pub fn plate_key_path(&self) -> PathBuf {
        self.privacy
            .plate_key
            .clone()
            .unwrap_or_else(|| self.site.data_dir.join("plate.key"))
    }

    pub fn relay(&self, name: &str) -> Option<&RelayConfig> {
        self.relays.iter().find(|r| r.name == name)
    }

    /// A human summary printed by `check-config`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "site {:?} ({}), data in {}\n",
            self.site.name,
            self.site.timezone,
            self.site.data_dir.display()
        );
        match &self.secrets {
            Some(src) => s.push_str(&format!(
                "at rest: encrypted (database SQLCipher, crops/spill/snapshot/keys sealed), master key from {}\n",
                src.describe()
            )),
            None => s.push_str(
                "at rest: NOT encrypted (no [secrets]): whoever pulls the card reads plates, TOTP secrets and keys\n",
            ),
        }
        for lane in &self.lanes {
            let source = match &lane.source {
                SourceSpec::File(p) => format!("video file {}", p.display()),
                SourceSpec::Url(u) => format!("stream {}", redact_url(u)),
                SourceSpec::Device(d) => format!("V4L2 device {}", d.display()),
                SourceSpec::Pipeline(p) => format!("GStreamer pipeline {}", redact_pipeline(p)),
            };
            let roi = lane
                .roi
                .map(|r| format!(", region x={} y={} w={} h={}", r.x, r.y, r.width, r.height))
                .unwrap_or_default();
            let motion = lane
                .motion
                .as_ref()
                .map(|m| format!(", read on motion (hold {} ms)", m.hold.as_millis()))
                .unwrap_or_default();
            s.push_str(&format!(
                "lane {}: {source} -> relay {}{roi}{motion}\n",
                lane.name, lane.relay
            ));
        }
        for relay in &self.relays {
            let kind = match &relay.kind {
                RelayKind::Gpio { chip, line } => format!("GPIO line {line} on {}", chip.display()),
                RelayKind::Simulated { log: Some(p) } => format!("simulated, logging to {}", p.display()),
                RelayKind::Simulated { log: None } => "simulated".to_string(),
            };
            s.push_str(&format!(
                "relay {}: {kind}, pulse {} ms, cooldown {} ms, safe state {:?}\n",
                relay.name,
                relay.pulse.as_millis(),
                relay.cooldown.as_millis(),
                relay.safe_state
            ));
        }
        for input in &self.inputs {
            s.push_str(&format!("input {}: {}\n", input.name, input.describe()));
        }
        s.push_str(&format!("models: {}\n", self.recognize.manifest.display()));
        match &self.privacy.effective.state {
            Some(st) => s.push_str(&format!("privacy rules for {st}:\n")),
            None => s.push_str("privacy: no state rules (no [privacy] state)\n"),
        }
        s.push_str(&self.privacy.effective.to_string());
        if let Some(sync) = &self.sync {
            let ids: Vec<&str> = sync.trusted_keys.iter().map(|(id, _)| id.as_str()).collect();
            s.push_str(&format!(
                "cloud sync: device {}, trusted keys: {}, {}\n",
                sync.device,
                ids.join(", "),
                match sync.allowlist_max_age {
                    Some(m) => format!("alert when the applied allowlist is older than {} h", m.num_hours()),
                    None => "no alert for an old allowlist (allowlist_max_age_hours = 0)".to_string(),
                }
            ));
            match &sync.mqtt {
                Some(m) => s.push_str(&format!(
                    "cloud link: mqtts://{}:{} as {} ({}, TLS 1.3, client certificate {}), topics under {}/d/{}/\n",
                    m.host,
                    m.port,
                    sync.mqtt_id(),
                    match m.protocol {
                        MqttProtocol::V5 => format!(
                            "MQTT 5, session kept {} h offline, packets up to {} KiB",
                            m.session_expiry.as_secs() / 3600,
                            m.max_packet_bytes / 1024
                        ),
                        MqttProtocol::V311 => format!("MQTT 3.1.1, packets up to {} KiB", m.max_packet_bytes / 1024),
                    },
                    m.cert.display(),
                    m.topic_prefix,
                    sync.mqtt_id()
                )),
                None => {
                    s.push_str("cloud link: none ([sync.mqtt] not set); allowlists by `gatehouse allowlist apply`\n")
                }
            }
        }
        match &self.panel {
            Some(p) => s.push_str(&format!(
                "guard panel: https://{} (TLS 1.3), certificate {}, sessions end after {} min idle or {} h, \
                 lockout after {} failures for {} min per account and device\n",
                p.listen,
                match &p.cert {
                    Some(c) => c.display().to_string(),
                    None => format!("self-signed for {}", p.hostnames.join(", ")),
                },
                p.idle.num_minutes(),
                p.absolute.num_hours(),
                p.lockout_failures,
                p.lockout_period.as_secs() / 60
            )),
            None => s.push_str("guard panel: off (no [panel] section)\n"),
        }
        if let Some(a) = &self.privacy.counsel_acknowledged {
            s.push_str(&format!("counsel acknowledgement: {a}\n"));
        }
        s
    }
}
