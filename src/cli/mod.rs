//! The command line: `run`, `check-config`, `recognize`, `eval`, `allowlist`, `events`, `demo`.
//! Each subcommand lives in its own file; `main.rs` only parses and dispatches.

mod allowlist;
mod audit;
mod backup;
mod debug;
mod dsar;
mod events;
mod models;
mod recognize;
mod storage;
mod sync;
mod user;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use allowlist::{allowlist, keys};
pub use audit::audit_cmd;
pub use backup::{backup, backup_key, restore};
pub use debug::event_burst;
pub use dsar::{dsar, DsarAction};
pub use events::events;
pub use models::{default_manifest, VERSION};
pub use recognize::{eval, eval_passes, recognize, speed};
pub use storage::check_storage;
pub use sync::status as sync_status;
pub use user::{panel_cert, user};

/// Loads the config and, when it has `[secrets]`, the master key that unlocks the data folder (before any
/// command opens the database or a sealed file).
pub fn load_unlocked(path: &std::path::Path) -> anyhow::Result<crate::config::Config> {
    let cfg = crate::config::load(path)?;
    unlock(&cfg)?;
    Ok(cfg)
}

/// Installs the at-rest keys named by `[secrets]` for this process; says so when there are none.
pub fn unlock(cfg: &crate::config::Config) -> anyhow::Result<()> {
    use crate::secrets;
    match &cfg.secrets {
        Some(src) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
            let keys = secrets::load(src, dir.as_deref(), secrets::under_systemd())?;
            tracing::debug!(source = keys.source(), "data folder encrypted at rest");
            secrets::install(keys);
        }
        None if secrets::under_systemd() => tracing::warn!(
            "the data folder is NOT encrypted at rest (no [secrets] in the config): see docs/operations.md, at rest"
        ),
        None => {}
    }
    Ok(())
}

pub const DEFAULT_CONFIG: &str = "/etc/gatehouse/gatehouse.toml";

#[derive(Debug, Parser)]
#[command(name = "gatehouse", version = crate::cli::models::VERSION, about = "Runs a gated community's entrance gate from a license-plate camera")]
pub struct Cli {
    /// More logging (RUST_LOG overrides).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config file and print what it sets up (exit code 78 when invalid); also a full integrity
    /// check of the database (exit code 1 when it is empty, foreign or damaged).
    CheckConfig { config: PathBuf },
    /// Read the plates in an image or a folder of images.
    Recognize {
        /// An image file or a folder of images.
        input: PathBuf,
        /// Write annotated copies (boxes and reads) into this folder.
        #[arg(long)]
        annotate: Option<PathBuf>,
        /// One JSON object per image on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Accuracy and speed on a labelled set (labels.tsv or labels.csv), or on every such set below a folder
    /// (the class sets of models/train/class_sets.py: a table row per class).
    Eval {
        dir: PathBuf,
        /// The last line of output is one JSON object with the figures.
        #[arg(long)]
        json: bool,
        /// Worker threads (each with its own single-threaded model sessions).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// N for the top-N figure.
        #[arg(long, default_value_t = 5)]
        top_n: usize,
        /// Which part of the set: all, or the project's train / validation split (models/train/split.py).
        #[arg(long, value_enum, default_value = "all")]
        split: crate::eval::Split,
        /// Write contact sheets of the misreads (plate, truth, read) into this folder.
        #[arg(long)]
        failures: Option<PathBuf>,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// The whole-pass benchmark: each labelled frame becomes a seeded approach (the car coming closer, with
    /// perspective, motion blur, noise and JPEG), run through the real reader, tracker and access decision.
    EvalPasses {
        dir: PathBuf,
        /// Images per approach (the last is the labelled frame).
        #[arg(long, default_value_t = 10)]
        frames: usize,
        /// Camera frame rate the timestamps follow (as `replay` gives them).
        #[arg(long, default_value_t = 10.0)]
        fps: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Which part of the set: all, or the project's train / validation split (models/train/split.py).
        #[arg(long, value_enum, default_value = "val")]
        split: crate::eval::Split,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// The last line of output is one JSON object with the figures.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Per-stage recognition timings (decode, detect, recognize) over a folder of images, one thread.
    Speed {
        dir: PathBuf,
        /// Passes over the folder.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// A second model manifest timed in the same process on the same frames, in alternating order,
        /// with the ratio of the total times per stage (this machine's load affects both alike).
        #[arg(long)]
        baseline: Option<PathBuf>,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Manage the local allowlist.
    Allowlist {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(subcommand)]
        action: AllowlistAction,
    },
    /// The site's usage and privacy policy, from the config (markdown on stdout).
    PrivacyPolicy {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// The tamper-evident audit log of operator actions.
    Audit {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Back the site up while the daemon runs: allowlist, users, audit log, config and keys (events with
    /// --events), encrypted to a recipient's public key (made with `backup-key`, kept off the box).
    Backup {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The recipient's public key file (`backup-key` writes it).
        #[arg(long)]
        recipient: PathBuf,
        /// The backup file to write (never over an existing file).
        #[arg(long)]
        out: PathBuf,
        /// Include the events (large; the cloud holds them too).
        #[arg(long)]
        events: bool,
    },
    /// Make a recipient key pair for backups: DIR/ID.key (private: keep it off the box) and DIR/ID.pub.
    BackupKey {
        dir: PathBuf,
        #[arg(long, default_value = "backup")]
        id: String,
    },
    /// Restore a backup onto a fresh data folder; refuses another site's backup unless --other-site, and
    /// verifies the audit chain after.
    Restore {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The recipient's private key file.
        #[arg(long)]
        key: PathBuf,
        /// Restore even though the backup is of another site (this box takes that site over).
        #[arg(long)]
        other_site: bool,
    },
    /// Data-subject requests as the cloud sends them: `dsar sign` makes a signed export or delete command.
    Dsar {
        #[command(subcommand)]
        action: DsarAction,
    },
    /// Signing keys for allowlist envelopes.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// The cloud link: applied allowlist, outbox backlog, link state.
    Sync {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(subcommand)]
        action: SyncAction,
    },
    /// Panel accounts: the first admin, a lost password.
    User {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(subcommand)]
        action: UserAction,
    },
    /// The panel's TLS certificate.
    Panel {
        #[command(subcommand)]
        action: PanelAction,
    },
    /// Look at recorded gate events.
    Events {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Demo material.
    Demo {
        #[command(subcommand)]
        action: DemoAction,
    },
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        action: DebugAction,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Model manifest (default: models/manifest.toml here, beside the binary, or /usr/share/gatehouse).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// libonnxruntime.so (default: $ORT_DYLIB_PATH, beside the binary, vendor/onnxruntime, /usr/lib/gatehouse).
    #[arg(long)]
    pub onnxruntime: Option<PathBuf>,
    /// Longest side the detector sees.
    #[arg(long, default_value_t = 960)]
    pub detector_max_side: u32,
    /// Plate format prior: us, br, eu or none (eval: from the set's folder name when not given).
    #[arg(long)]
    pub region: Option<String>,
    /// Plates at most this wide for their height are also read as two rows (0: never).
    #[arg(long, default_value_t = crate::recognize::DEFAULT_TWO_LINE_MAX_ASPECT)]
    pub two_line_max_aspect: f32,
    /// Plates read per frame, the detector's best first (1 to 8).
    #[arg(long, default_value_t = crate::recognize::DEFAULT_MAX_PLATES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=8))]
    pub max_plates: usize,
    /// Further detector boxes read when one of the first `--max-plates` reads no plate.
    #[arg(long, default_value_t = crate::recognize::DEFAULT_SPARE_PLATES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=4))]
    pub spare_plates: usize,
    /// Shortest read taken as a plate (the daemon: recognize.min_plate_len).
    #[arg(long, default_value_t = crate::recognize::DEFAULT_MIN_PLATE_LEN, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=crate::plate::MAX_PLATE_LEN as u64))]
    pub min_plate_len: usize,
    /// Longest read taken as a plate (the daemon: recognize.max_plate_len).
    #[arg(long, default_value_t = crate::recognize::DEFAULT_MAX_PLATE_LEN, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=crate::plate::MAX_PLATE_LEN as u64))]
    pub max_plate_len: usize,
}

#[derive(Debug, Subcommand)]
pub enum AllowlistAction {
    /// Add or replace entries from a CSV file (plate,kind,host,unit,valid_from,valid_until,schedule,do_not_log,note).
    Import { csv: PathBuf },
    /// Write the whole list as CSV (stdout, or --out).
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Add or replace one entry.
    Add {
        plate: String,
        #[arg(long, default_value = "resident")]
        kind: String,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        unit: Option<String>,
        /// RFC 3339, e.g. 2026-12-01T08:00:00Z
        #[arg(long)]
        valid_from: Option<String>,
        #[arg(long)]
        valid_until: Option<String>,
        /// e.g. "mon-fri 07:00-19:00; sat 09:00-13:00" (site time)
        #[arg(long)]
        schedule: Option<String>,
        #[arg(long)]
        do_not_log: bool,
        #[arg(long)]
        note: Option<String>,
    },
    /// Remove one plate.
    Remove { plate: String },
    /// Make a signed allowlist envelope from CSV, as the cloud does (prints JSON).
    Sign {
        /// Private key file (from `gatehouse keys generate`).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        key_id: String,
        /// `site/device`, or `site/*` for every device of the site.
        #[arg(long)]
        audience: String,
        #[arg(long)]
        version: u64,
        /// Makes a delta on top of this version (otherwise a full snapshot).
        #[arg(long)]
        base: Option<u64>,
        /// Hours the envelope stays valid (at most 744: devices refuse longer).
        #[arg(long, default_value_t = 24)]
        expires_hours: i64,
        /// CSV of entries: the whole list (snapshot) or the entries to add or replace (delta).
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Delta: plates (or sealed ids) to remove, comma-separated.
        #[arg(long, value_delimiter = ',')]
        remove: Vec<String>,
        /// The site's plate key file: opted-out (do_not_log) entries travel sealed with it. Required when the
        /// CSV has any.
        #[arg(long)]
        plate_key: Option<PathBuf>,
    },
    /// Verify a signed envelope and apply it to the local database (what the cloud link does).
    Apply {
        envelope: PathBuf,
        /// This device's audience, `site/device` (only without a [sync] section in the config).
        #[arg(long)]
        device: Option<String>,
        /// Trusted public key, `ID=FILE`, repeatable (only without a [sync] section in the config).
        #[arg(long)]
        trust: Vec<String>,
    },
    /// Print the list.
    List,
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a user; the password is read from stdin (typed twice on a terminal). Admins and installers get
    /// a second factor at once: its key and recovery codes are printed.
    Add {
        name: String,
        /// guard, supervisor, admin or installer
        #[arg(long)]
        role: String,
        /// Also give a guard or supervisor a second factor now.
        #[arg(long)]
        totp: bool,
    },
    List,
    /// Set a new password (read from stdin), re-enable the account and end its sessions.
    Passwd {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PanelAction {
    /// Make a self-signed certificate and key (panel-cert.pem, panel-key.pem) in DIR.
    Cert {
        #[arg(long)]
        dir: PathBuf,
        /// Host names (and addresses) the tablets use to reach the panel; repeatable.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the hash chain and the signed checkpoints; names the first bad sequence number.
    Verify,
    /// Write the log as JSON lines (stdout, or --out).
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SyncAction {
    /// Applied allowlist version, last rejection, events waiting for upload, link state.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Make an ed25519 key pair: DIR/ID.key (private, 0600) and DIR/ID.pub.
    Generate {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsAction {
    /// The most recent events, newest first (the query is recorded in the access log).
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
        /// Why you are looking (required; recorded with your user name).
        #[arg(long)]
        purpose: String,
    },
    /// Who queried or exported plate data, when, and why.
    AccessLog {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Pause retention deletion for one event or every event of a plate.
    Hold {
        #[arg(long)]
        event: Option<String>,
        #[arg(long)]
        plate: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// Everything held for a plate, into a folder (records.json + crops/).
    DsarExport {
        plate: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        purpose: String,
    },
    /// Delete a plate's events and crops, except those under legal hold.
    DsarDelete {
        plate: String,
        #[arg(long)]
        purpose: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemoAction {
    /// Render the demo video (synthetic vehicles with plates) to an AVI file.
    Video {
        out: PathBuf,
        /// Plates to show, in order (default: the demo scenario).
        #[arg(long, value_delimiter = ',')]
        plates: Vec<String>,
        #[arg(long, default_value_t = 10.0)]
        fps: f64,
        /// Seconds each vehicle is in view.
        #[arg(long, default_value_t = 3.0)]
        seconds: f32,
        /// Seconds of empty lane between vehicles.
        #[arg(long, default_value_t = 2.0)]
        gap: f32,
        /// Lane markings stand still (by default they scroll): an empty lane with nothing moving, as
        /// motion gating sees it between vehicles.
        #[arg(long)]
        still_road: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DebugAction {
    /// Commit synthetic events as fast as possible (storage durability tests).
    EventBurst {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
}
