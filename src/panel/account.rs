//! One's own account: change the password, set up or remove the second factor. Each change asks for
//! the current password again (re-authentication) and ends every session of the account.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::auth::{end_all_sessions, logged_out_redirect, Authed};
use super::html::{error, esc, notice, page, Flash};
use super::store::{self, Stage};
use super::{password, totp, Failure, Panel};

async fn show(p: Panel, a: Authed, error: Option<String>) -> Result<Response, Failure> {
    let name = a.user.clone();
    let u = p
        .db(move |c| store::user(c, &name))
        .await?
        .ok_or(Failure::Unauthorized)?;
    let mut body = notice("error", error.as_deref().unwrap_or(""));
    body.push_str(
        "<h2>Password</h2><form class=\"stack\" method=\"post\" action=\"/account/password\">\
         <label>Current password <input name=\"current\" type=\"password\" required autocomplete=\"current-password\"></label>\
         <label>New password (8 or more characters; a few words work well) <input name=\"new\" type=\"password\" required minlength=\"8\" autocomplete=\"new-password\"></label>\
         <label>New password again <input name=\"again\" type=\"password\" required autocomplete=\"new-password\"></label>\
         <button>Change password</button></form><p class=\"muted\">Changing it logs you out everywhere.</p><h2>Second factor</h2>",
    );
    if u.totp_secret.is_some() {
        body.push_str(&format!("<p>On; {} recovery code(s) left.</p>", u.recovery.len()));
        if !u.role.requires_totp() {
            body.push_str(
                "<form class=\"stack\" method=\"post\" action=\"/account/totp/disable\">\
                 <label>Current password <input name=\"current\" type=\"password\" required></label>\
                 <button class=\"warn\">Turn off</button></form>",
            );
        }
        body.push_str("<p><a href=\"/account/totp\">Set up a new authenticator</a></p>");
    } else {
        body.push_str("<p>Off. <a href=\"/account/totp\">Set it up</a></p>");
    }
    Ok(page("Account", Some(&a), &body).into_response())
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

/// Re-authentication: the current password, checked off the runtime.
async fn current_password_ok(p: &Panel, user: &str, given: String) -> Result<bool, Failure> {
    let name = user.to_string();
    let Some(u) = p.db(move |c| store::user(c, &name)).await? else {
        return Ok(false);
    };
    tokio::task::spawn_blocking(move || password::verify(&given, &u.password))
        .await
        .map_err(|e| Failure::Internal(e.to_string()))
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
    if !current_password_ok(&p, &a.user, f.current).await? {
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
    let phc = tokio::task::spawn_blocking(move || password::hash(&new))
        .await
        .map_err(|e| Failure::Internal(e.to_string()))?
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

fn enroll_form(p: &Panel, a: &Authed, secret: &str, error: &str) -> String {
    let uri = totp::uri(&format!("Gatehouse {}", p.deps.site), &a.user, secret);
    let first = if a.stage == Stage::Enroll {
        "<p>Your role needs a second factor: set it up to continue.</p>"
    } else {
        ""
    };
    format!(
        "{}{first}<p>Add this key to an authenticator app (type it in, or open the link on the phone), then enter the code it shows.</p>\
         <p>Key: <span class=\"codes\" id=\"totp-secret\">{}</span></p><p><a href=\"{}\">{}</a></p>\
         <form class=\"stack\" method=\"post\" action=\"/account/totp\"><input type=\"hidden\" name=\"secret\" value=\"{}\">\
         <label>Current password <input name=\"current\" id=\"totp-password\" type=\"password\" required></label>\
         <label>Code from the app <input name=\"code\" id=\"totp-code\" inputmode=\"numeric\" required></label>\
         <button id=\"enable-totp\">Turn on</button></form>",
        notice("error", error),
        esc(secret),
        esc(&uri),
        esc(&uri),
        esc(secret),
    )
}

pub async fn totp_page(State(p): State<Panel>, Extension(a): Extension<Authed>, Query(q): Query<Flash>) -> Response {
    let secret = totp::new_secret();
    page(
        "Second factor",
        Some(&a),
        &enroll_form(&p, &a, &secret, q.error.as_deref().unwrap_or("")),
    )
    .into_response()
}

#[derive(Deserialize)]
pub struct EnableForm {
    secret: String,
    current: String,
    code: String,
}

pub async fn totp_enable(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Form(f): Form<EnableForm>,
) -> Result<Response, Failure> {
    let retry = |msg: &str| error("/account/totp", msg);
    if totp::base32_decode(&f.secret).is_none_or(|k| k.len() < 16) {
        return Ok(retry("The key was damaged; start again."));
    }
    if !current_password_ok(&p, &a.user, f.current).await? {
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
    let Some(step) = totp::check(&f.secret, &f.code, p.now(), 0) else {
        return Ok(retry(
            "That code does not match; check the phone's clock and try the next code.",
        ));
    };
    let (codes, hashes) = totp::new_recovery_codes();
    let (name, secret) = (a.user.clone(), f.secret.clone());
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
    let list: String = codes.iter().map(|c| format!("<li>{}</li>", esc(c))).collect();
    let body = format!(
        "<p class=\"notice ok\">The second factor is on.</p><p>Recovery codes: each works once if the phone is lost. \
         Keep them somewhere safe; they are not shown again.</p><ol class=\"codes\" id=\"recovery\">{list}</ol>\
         <p><a href=\"/login\" id=\"login-again\">Log in again</a></p>"
    );
    let mut resp = page("Second factor", None, &body).into_response();
    let cleared = logged_out_redirect();
    if let Some(c) = cleared.headers().get(axum::http::header::SET_COOKIE) {
        resp.headers_mut().insert(axum::http::header::SET_COOKIE, c.clone());
    }
    Ok(resp)
}

#[derive(Deserialize)]
pub struct DisableForm {
    current: String,
}

pub async fn totp_disable(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Form(f): Form<DisableForm>,
) -> Result<Response, Failure> {
    if a.role.requires_totp() {
        return Ok(back("Your role needs a second factor."));
    }
    if !current_password_ok(&p, &a.user, f.current).await? {
        return Ok(back("The current password is wrong."));
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
