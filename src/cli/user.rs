//! `gatehouse user add|list|passwd`: panel accounts from the box itself (the first admin, and the way back
//! in when every admin has lost access), and `gatehouse panel cert`. No default passwords exist.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context};
use chrono::Utc;

use super::UserAction;
use crate::panel::{password, store, totp, Role};

/// Reads a password: one line from stdin when piped, or typed twice without echo on a terminal.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let first = read_hidden(prompt)?;
    let again = read_hidden("again: ")?;
    if first != again {
        bail!("the two passwords differ");
    }
    Ok(first)
}

fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let stdin = std::io::stdin();
    // Echo off while the password is typed, then the terminal as it was (also when reading fails).
    let saved = tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        let _ = tcsetattr(&stdin, OptionalActions::Now, &quiet);
    }
    let mut line = String::new();
    let res = stdin.lock().read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = tcsetattr(&stdin, OptionalActions::Now, saved);
    }
    eprintln!();
    res?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn user(config: &Path, action: UserAction) -> anyhow::Result<()> {
    let cfg = super::load_unlocked(config)?;
    let conn = crate::db::open(&cfg.site.database_path())?;
    match action {
        UserAction::Add {
            name,
            role,
            totp: want_totp,
        } => {
            let name = name.trim().to_lowercase();
            if !store::valid_name(&name) {
                bail!("user name {name:?}: use 2-32 of a-z, 0-9, '.', '_', '-'");
            }
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            if store::user(&conn, &name)?.is_some() {
                bail!("user {name} already exists (use `gatehouse user passwd {name}` to reset the password)");
            }
            let pw = read_password(&format!("password for {name}: "))?;
            if let Some(why) = password::weakness(&pw, &name) {
                bail!("password refused: {why}");
            }
            let phc = password::hash(&pw).map_err(anyhow::Error::msg)?;
            let second = (role.requires_totp(cfg.panel.as_ref().is_some_and(|p| p.totp_for_all_roles)) || want_totp)
                .then(|| (totp::new_secret(), totp::new_recovery_codes()));
            store::add_user(
                &conn,
                &name,
                role,
                &phc,
                second.as_ref().map(|(s, (_, hashes))| (s.as_str(), hashes.as_slice())),
                Utc::now(),
            )?;
            super::audit::record(&cfg, "user.create", &name, Some(format!("role {role}")))?;
            println!("added {name} ({role})");
            if let Some((secret, (codes, _))) = second {
                println!("second factor key: {secret}");
                println!("{}", totp::uri(&format!("Gatehouse {}", cfg.site.name), &name, &secret));
                println!("recovery codes (each works once; shown only now):");
                for c in codes {
                    println!("  {c}");
                }
            }
        }
        UserAction::List => {
            for u in store::users(&conn)? {
                println!(
                    "{:<24} {:<11} 2fa={:<3} {}",
                    u.name,
                    u.role.as_str(),
                    if u.totp_secret.is_some() { "on" } else { "off" },
                    if u.disabled { "disabled" } else { "active" }
                );
            }
        }
        UserAction::Passwd { name } => {
            if store::user(&conn, &name)?.is_none() {
                bail!("no user {name}");
            }
            let pw = read_password(&format!("new password for {name}: "))?;
            if let Some(why) = password::weakness(&pw, &name) {
                bail!("password refused: {why}");
            }
            let phc = password::hash(&pw).map_err(anyhow::Error::msg)?;
            store::set_password(&conn, &name, &phc, Utc::now())?;
            store::set_disabled(&conn, &name, false)?;
            let ended = store::delete_all_for(&conn, &name)?;
            super::audit::record(&cfg, "password.reset", &name, Some(format!("{ended} session(s) ended")))?;
            println!("password of {name} set; {ended} session(s) ended");
        }
    }
    Ok(())
}

/// `gatehouse panel cert`: a self-signed certificate for the panel.
pub fn panel_cert(dir: &Path, hostnames: &[String]) -> anyhow::Result<()> {
    let names = if hostnames.is_empty() {
        vec!["gatehouse.local".to_string()]
    } else {
        hostnames.to_vec()
    };
    let (cert, key) = crate::panel::tls::self_signed(dir, &names).context("panel certificate")?;
    println!("certificate {}\nkey         {}", cert.display(), key.display());
    println!("SHA-256 {}", crate::panel::tls::fingerprint(&cert)?);
    Ok(())
}
