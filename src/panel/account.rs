//! One's own account: change the password, set up or remove the second factor. Each change asks for
//! the current password again (re-authentication) and ends every session of the account.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{end_all_sessions, logged_out_redirect, Authed};
use super::html::{error, notice, page, Flash};
use super::store::{self, Stage};
use super::{password, totp, Failure, Panel};

async fn show(p: Panel, a: Authed, error: Option<String>) -> Result<Response, Failure> {
    let name = a.user.clone();
    let u = p
        .db(move |c| store::user(c, &name))
        .await?
        .ok_or(Failure::Unauthorized)?;
    let body = html! {
        (notice("error", error.as_deref().unwrap_or("")))
        h2 { "Password" }
        form.stack method="post" action="/account/password" {
            label { "Current password " input name="current" type="password" required autocomplete="current-password"; }
            label {
                "New password (8 or more characters; a few words work well) "
                input name="new" type="password" required minlength="8" autocomplete="new-password";
            }
            label { "New password again " input name="again" type="password" required autocomplete="new-password"; }
            button { "Change password" }
        }
        p.muted { "Changing it logs you out everywhere." }
        h2 { "Second factor" }
        @if u.totp_secret.is_some() {
            p { "On; " (u.recovery.len()) " recovery code(s) left." }
            @if !u.role.requires_totp(p.cfg.totp_for_all_roles) {
                form.stack method="post" action="/account/totp/disable" {
                    label { "Current password " input name="current" type="password" required; }
                    label {
                        "Code from your authenticator (or a recovery code) "
                        input name="current_code" autocomplete="one-time-code" required;
                    }
                    button.warn { "Turn off" }
                }
            }
            p { a href="/account/totp" { "Set up a new authenticator" } }
        } @else {
            p { "Off. " a href="/account/totp" { "Set it up" } }
        }
    };
    Ok(page("Account", Some(&a), body).into_response())
}

pub async fn account(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Query(q): Query<Flash>,
) -> Result<Response, Failure> {
    show(p, a, q.error).await
}

fn back(msg: &str) -> Response {
    error("/account", msg)
}

/// Re-authentication: the current password, checked under the same limits as a login (the source's
/// rate, the (account, source) lockout, the hashing permits); a wrong one counts as a failed login.
async fn current_password_ok(p: &Panel, a: &Authed, given: String) -> Result<bool, Failure> {
    let now = p.now();
    let refused = || {
        tracing::warn!(user = %a.user, source = %a.source, "re-authentication refused: rate limit or lockout");
        Failure::Busy
    };
    if !p.lockout.allow_attempt(a.source, now) {
        return Err(refused());
    }
    let locks = p.lockout.attempt(&a.user, a.source, now).map_err(|_| refused())?;
    if given.len() > 4 * password::MAX_LEN {
        return Ok(false);
    }
    let name = a.user.clone();
    let Some(u) = p.db(move |c| store::user(c, &name)).await? else {
        return Ok(false);
    };
    let ok = match p
        .hash_work(a.source, move || password::verify(&given, &u.password))
        .await
    {
        Ok(ok) => ok,
        Err(busy) => {
            // Not checked: not counted.
            p.lockout.undo(&a.user, a.source);
            return Err(busy);
        }
    };
    if ok {
        p.lockout.undo(&a.user, a.source);
    } else if locks.is_some() {
        p.audit(
            &a.who(),
            "login.locked",
            Some(a.user.clone()),
            None,
            Some("re-authentication".into()),
        )
        .await;
    }
    Ok(ok)
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    new: String,
    again: String,
}

pub async fn change_password(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Form(f): Form<PasswordForm>,
) -> Result<Response, Failure> {
    if !current_password_ok(&p, &a, f.current).await? {
        p.audit(
            &a.who(),
            "password.change_refused",
            Some(a.user.clone()),
            None,
            Some("wrong current password".into()),
        )
        .await;
        return Ok(back("The current password is wrong."));
    }
    if f.new != f.again {
        return Ok(back("The two new passwords differ."));
    }
    if let Some(why) = password::weakness(&f.new, &a.user) {
        return Ok(back(&why));
    }
    let new = f.new;
    let phc = p
        .hash_work(a.source, move || password::hash(&new))
        .await?
        .map_err(Failure::Internal)?;
    let (name, now) = (a.user.clone(), p.now());
    p.db(move |c| store::set_password(c, &name, &phc, now)).await?;
    let ended = end_all_sessions(&p, &a.user).await?;
    p.audit(
        &a.who(),
        "password.change",
        Some(a.user.clone()),
        None,
        Some(format!("{ended} session(s) ended")),
    )
    .await;
    Ok(logged_out_redirect())
}

/// A code (or recovery code) of the second factor in use, spent when right; true when the account has
/// none. Counted like a login's second factor (per session, per account, per source) *before* the
/// check, so codes sent at once or from many addresses cannot outrun the limits.
async fn current_factor_ok(p: &Panel, a: &Authed, given: String) -> Result<bool, Failure> {
    let name = a.user.clone();
    let has_factor = p
        .db(move |c| store::user(c, &name))
        .await?
        .is_some_and(|u| u.totp_secret.is_some());
    if !has_factor {
        return Ok(true);
    }
    let given = given.trim().to_string();
    if given.is_empty() || given.len() > 64 {
        return Ok(false);
    }
    let now = p.now();
    if p.lockout.second_factor_attempt(&a.user, &a.id, a.source, now).is_none() {
        tracing::warn!(user = %a.user, source = %a.source, "second-factor check refused: too many wrong codes");
        return Err(Failure::Busy);
    }
    let name = a.user.clone();
    let ok = p
        .db(move |c| {
            let Some(u) = store::user(c, &name)? else {
                return Ok::<_, rusqlite::Error>(false);
            };
            let Some(old) = u.totp_secret else { return Ok(true) };
            if given.chars().any(|ch| ch.is_ascii_alphabetic()) {
                return store::use_recovery(c, &name, &totp::recovery_hash(&given));
            }
            match totp::check(&old, &given, now, u.totp_last_step) {
                Some(step) => store::use_totp_step(c, &name, step),
                None => Ok(false),
            }
        })
        .await?;
    if ok {
        p.lockout.second_factor_success(&a.user, &a.id);
        p.lockout.undo(&a.user, a.source);
    }
    Ok(ok)
}

/// How long a key shown for enrolment stays valid.
const PENDING_TOTP_MINUTES: i64 = 30;

fn enroll_form(p: &Panel, a: &Authed, secret: &str, replacing: bool, error: &str) -> Markup {
    let uri = totp::uri(&format!("Gatehouse {}", p.deps.site), &a.user, secret);
    html! {
        (notice("error", error))
        @if a.stage == Stage::Enroll {
            p { "Your role needs a second factor: set it up to continue." }
        }
        p {
            "Add this key to an authenticator app (type it in, or open the link on the phone), then enter the code it shows."
        }
        p { "Key: " span.codes #totp-secret { (secret) } }
        p { a href=(uri) { (uri) } }
        form.stack method="post" action="/account/totp" {
            label { "Current password " input #totp-password name="current" type="password" required; }
            @if replacing {
                label {
                    "Code from your current authenticator (or a recovery code) "
                    input #totp-current-code name="current_code" autocomplete="one-time-code" required;
                }
            }
            label { "Code from the app " input #totp-code name="code" inputmode="numeric" required; }
            button #enable-totp { "Turn on" }
        }
    }
}

/// The key shown to this session for enrolment: kept on the server, never taken back from the form.
fn pending_secret(p: &Panel, session: &str, fresh: bool) -> Option<String> {
    let now = p.now();
    let mut map = p.pending_totp.lock().unwrap_or_else(|e| e.into_inner());
    let live = |at: &chrono::DateTime<chrono::Utc>| now - *at < chrono::Duration::minutes(PENDING_TOTP_MINUTES);
    if let Some((secret, at)) = map.get(session) {
        if live(at) {
            return Some(secret.clone());
        }
    }
    if !fresh {
        return None;
    }
    if map.len() >= super::limits::MAX_TRACKED {
        map.retain(|_, (_, at)| live(at));
        while map.len() >= super::limits::MAX_TRACKED {
            let Some(oldest) = map.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| k.clone()) else {
                break;
            };
            map.remove(&oldest);
        }
    }
    let secret = totp::new_secret();
    map.insert(session.to_string(), (secret.clone(), now));
    Some(secret)
}

pub async fn totp_page(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Query(q): Query<Flash>,
) -> Result<Response, Failure> {
    let name = a.user.clone();
    let replacing = p
        .db(move |c| store::user(c, &name))
        .await?
        .is_some_and(|u| u.totp_secret.is_some());
    let secret = pending_secret(&p, &a.id, true).unwrap_or_default();
    Ok(page(
        "Second factor",
        Some(&a),
        enroll_form(&p, &a, &secret, replacing, q.error.as_deref().unwrap_or("")),
    )
    .into_response())
}

#[derive(Deserialize)]
pub struct EnableForm {
    current: String,
    /// A code of the second factor being replaced (or one of its recovery codes).
    #[serde(default)]
    current_code: String,
    code: String,
}

pub async fn totp_enable(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Form(f): Form<EnableForm>,
) -> Result<Response, Failure> {
    let retry = |msg: &str| error("/account/totp", msg);
    let Some(secret) = pending_secret(&p, &a.id, false) else {
        return Ok(retry("The key shown was too old; here is a new one."));
    };
    if !current_password_ok(&p, &a, f.current).await? {
        p.audit(
            &a.who(),
            "totp.enable_refused",
            Some(a.user.clone()),
            None,
            Some("wrong current password".into()),
        )
        .await;
        return Ok(retry("The current password is wrong."));
    }
    // The new key's code first: it has no side effect, so a typo costs no code of the current factor.
    let Some(step) = totp::check(&secret, &f.code, p.now(), 0) else {
        return Ok(retry(
            "That code does not match; check the phone's clock and try the next code.",
        ));
    };
    // Replacing a second factor takes a code of the one in use: a password alone (a stolen one, or a
    // browser left logged in) must not move the account to an attacker's phone.
    if !current_factor_ok(&p, &a, f.current_code).await? {
        p.audit(
            &a.who(),
            "totp.enable_refused",
            Some(a.user.clone()),
            None,
            Some("no valid code of the current second factor".into()),
        )
        .await;
        return Ok(retry(
            "Enter a code from the authenticator you use now (or a recovery code) to replace it.",
        ));
    }
    p.pending_totp.lock().unwrap_or_else(|e| e.into_inner()).remove(&a.id);
    let (codes, hashes) = totp::new_recovery_codes();
    let name = a.user.clone();
    p.db(move |c| {
        store::set_totp(c, &name, Some((&secret, &hashes)))?;
        store::use_totp_step(c, &name, step)
    })
    .await?;
    let ended = end_all_sessions(&p, &a.user).await?;
    p.audit(
        &a.who(),
        "totp.enable",
        Some(a.user.clone()),
        None,
        Some(format!("{ended} session(s) ended")),
    )
    .await;
    let body = html! {
        p.notice.ok { "The second factor is on." }
        p {
            "Recovery codes: each works once if the phone is lost. Keep them somewhere safe; they are not shown again."
        }
        ol.codes #recovery {
            @for code in &codes { li { (code) } }
        }
        p { a #login-again href="/login" { "Log in again" } }
    };
    let mut resp = page("Second factor", None, body).into_response();
    let cleared = logged_out_redirect();
    if let Some(c) = cleared.headers().get(axum::http::header::SET_COOKIE) {
        resp.headers_mut().insert(axum::http::header::SET_COOKIE, c.clone());
    }
    Ok(resp)
}

#[derive(Deserialize)]
pub struct DisableForm {
    current: String,
    #[serde(default)]
    current_code: String,
}

pub async fn totp_disable(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Form(f): Form<DisableForm>,
) -> Result<Response, Failure> {
    if a.role.requires_totp(p.cfg.totp_for_all_roles) {
        return Ok(back("Your role needs a second factor."));
    }
    if !current_password_ok(&p, &a, f.current).await? {
        return Ok(back("The current password is wrong."));
    }
    // As for replacing it: a password alone does not take the second factor off.
    if !current_factor_ok(&p, &a, f.current_code).await? {
        p.audit(
            &a.who(),
            "totp.disable_refused",
            Some(a.user.clone()),
            None,
            Some("no valid code of the current second factor".into()),
        )
        .await;
        return Ok(back(
            "Enter a code from your authenticator (or a recovery code) to turn the second factor off.",
        ));
    }
    let name = a.user.clone();
    p.db(move |c| store::set_totp(c, &name, None)).await?;
    let ended = end_all_sessions(&p, &a.user).await?;
    p.audit(
        &a.who(),
        "totp.disable",
        Some(a.user.clone()),
        None,
        Some(format!("{ended} session(s) ended")),
    )
    .await;
    Ok(logged_out_redirect())
}
