//! `gatehouse dsar sign`: a signed data-subject command (export or delete one plate's records), made as the
//! cloud makes it, for the cloud team and for support. The JSON goes on the device's `command` topic
//! (docs/protocol.md); the device verifies it like any other and answers on `command/result`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use crate::sync::command::{Command, CommandAction, MAX_LIFETIME_HOURS};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DsarKind {
    /// Export every record of the plate (events, crops, allowlist entry, legal holds).
    Export,
    /// Delete every record of the plate not under legal hold.
    Delete,
}

#[derive(Debug, Subcommand)]
pub enum DsarAction {
    /// Make a signed DSAR command (prints JSON for the device's command topic).
    Sign {
        /// Private key file (from `gatehouse keys generate`); its public half is in the device's trusted keys.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        key_id: String,
        /// `site/device`, or `site/*` for every device of the site.
        #[arg(long)]
        audience: String,
        #[arg(long, value_enum)]
        action: DsarKind,
        /// The plate the request is about (spaces and dashes are dropped, letters upper-cased).
        #[arg(long)]
        plate: String,
        /// Why: recorded with the request in the device's access log.
        #[arg(long)]
        purpose: String,
        /// Who asked (recorded as the actor).
        #[arg(long)]
        requested_by: String,
        /// Hours the command stays valid.
        #[arg(long, default_value_t = 24)]
        expires_hours: i64,
        /// The command's id (a command id runs once per device); a new UUID when left out.
        #[arg(long)]
        id: Option<String>,
    },
}

pub fn dsar(action: DsarAction) -> anyhow::Result<()> {
    let DsarAction::Sign {
        key,
        key_id,
        audience,
        action,
        plate,
        purpose,
        requested_by,
        expires_hours,
        id,
    } = action;
    anyhow::ensure!(
        (1..=MAX_LIFETIME_HOURS).contains(&expires_hours),
        "--expires-hours {expires_hours}: use 1 to {MAX_LIFETIME_HOURS} (devices refuse a command valid for longer)"
    );
    // Spaces, dashes and dots are how plates are written; anything else is a mistake, not something to drop.
    if let Some(c) = plate
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '.')))
    {
        anyhow::bail!("--plate {plate:?} has {c:?}; use A-Z and 0-9 only (spaces and dashes are dropped)");
    }
    let plate = crate::plate::normalize(&plate);
    crate::plate::validate(&plate).map_err(|e| anyhow::anyhow!("--plate: {e}"))?;
    let signing = crate::sync::keys::read_signing(&key)?;
    let now = chrono::Utc::now();
    let id = id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let action = match action {
        DsarKind::Export => CommandAction::DsarExport,
        DsarKind::Delete => CommandAction::DsarDelete,
    };
    let c = Command::make(
        action,
        &id,
        &audience,
        &plate,
        &purpose,
        &requested_by,
        now,
        now + chrono::Duration::hours(expires_hours),
        &key_id,
        &signing,
    )
    .context("the command cannot be made")?;
    println!("{}", serde_json::to_string_pretty(&c)?);
    Ok(())
}
