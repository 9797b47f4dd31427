//! Logging in (password, then the second factor), logging out, and the check every request passes:
//! the session from the `__Host-` cookie, its stage, and the route's rule (an [`Access`] the route table's
//! layer put in the request).

use std::net::{IpAddr, Ipv4Addr};

use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{html, Markup};
use serde::Deserialize;

use super::html::{notice, page};
use super::roles::{Access, Perm, Role};
use super::store::{self, Stage};
use super::{password, totp, Failure, Panel, Who};

pub const COOKIE: &str = "__Host-gh_session";

/// The client's address, set by the server on every connection.
#[derive(Debug, Clone, Copy)]
pub struct Source(pub IpAddr);

/// The logged-in user of a request (put there by [`authorize`]).
#[derive(Debug, Clone)]
pub struct Authed {
    pub user: String,
    pub role: Role,
    /// The session's short handle (what the audit log and the sessions page show).
    pub handle: String,
    /// The raw session id (to end it at logout).
    pub id: String,
    pub source: IpAddr,
    pub stage: Stage,
    pub full: bool,
}

impl Authed {
    pub fn who(&self) -> Who<'_> {
        Who {
            actor: &self.user,
            role: self.role.as_str(),
            session: Some(&self.handle),
            source: self.source,
        }
    }
}

pub fn source_of(ext: Option<Extension<Source>>) -> IpAddr {
    ext.map(|Extension(Source(ip))| ip)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The session id the browser sent, if any.
pub fn session_cookie(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(id: &str) -> (header::HeaderName, HeaderValue) {
    let v = format!("{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict");
    (
        header::SET_COOKIE,
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("")),
    )
}

fn clear_cookie() -> (header::HeaderName, HeaderValue) {
    (
        header::SET_COOKIE,
        HeaderValue::from_static("__Host-gh_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    )
}

/// The per-request check: the route's rule, the session, its stage, the role's permission.
pub async fn authorize(State(p): State<Panel>, mut req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let Some(matched) = matched else {
        return Failure::NotFound.into_response();
    };
    // Put there by the route table's layer (routes::route_rule), which runs first; none: refused.
    let Some(access) = req.extensions().get::<Access>().copied() else {
        tracing::error!(path = %matched, "route without an access rule refused");
        return Failure::NotFound.into_response();
    };
    let path = matched;
    if access == Access::Public {
        return next.run(req).await;
    }
    // Images and the feeds answer 401; a page sends the browser to the login.
    let polled = matches!(
        path.as_str(),
        "/api/live" | "/lane/{name}/still" | "/api/setup" | "/lane/{name}/view"
    );
    let page_view = req.method() == Method::GET && !polled && !path.starts_with("/api/") && !path.starts_with("/img/");
    let unauthorized = || {
        if page_view {
            Redirect::to("/login").into_response()
        } else {
            Failure::Unauthorized.into_response()
        }
    };
    let Some(id) = session_cookie(req.headers()) else {
        return unauthorized();
    };
    let source = req
        .extensions()
        .get::<Source>()
        .map(|s| s.0)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    // The live feed and the stills poll: they must not keep an unattended session alive forever.
    let touch = !polled;
    let (now, idle, absolute) = (p.now(), p.cfg.idle, p.cfg.absolute);
    let lookup_id = id.clone();
    let session = match p
        .db(move |c| store::lookup(c, &lookup_id, now, idle, absolute, touch))
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return unauthorized(),
        Err(f) => return f.into_response(),
    };
    let allowed = match (access, session.stage) {
        (Access::AnySession, _) | (Access::Public, _) => true,
        (Access::Pending, Stage::Totp) => true,
        (Access::Pending, _) => return Redirect::to("/").into_response(),
        (_, Stage::Totp) if page_view => return Redirect::to("/login/totp").into_response(),
        (_, Stage::Totp) => return Failure::Unauthorized.into_response(),
        (Access::Enroll, Stage::Enroll) => true,
        (_, Stage::Enroll) if page_view => return Redirect::to("/account/totp").into_response(),
        (_, Stage::Enroll) => return Failure::Forbidden.into_response(),
        (Access::Enroll, Stage::Full) => session.role.may(Perm::OwnAccount),
        (Access::Perm(perm), Stage::Full) => session.role.may(perm),
    };
    if !allowed {
        tracing::warn!(user = %session.user, role = %session.role, %path, "request refused: role lacks permission");
        return Failure::Forbidden.into_response();
    }
    req.extensions_mut().insert(Authed {
        user: session.user,
        role: session.role,
        handle: session.handle,
        id,
        source,
        stage: session.stage,
        full: session.stage == Stage::Full,
    });
    next.run(req).await
}

pub async fn home(Extension(a): Extension<Authed>) -> Redirect {
    Redirect::to(match a.stage {
        Stage::Totp => "/login/totp",
        Stage::Enroll => "/account/totp",
        Stage::Full => a.role.home(),
    })
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    m: Option<String>,
}

fn login_form(message: Markup) -> Markup {
    html! {
        (message)
        form.stack method="post" action="/login" {
            label { "User name " input #user name="user" autocomplete="username" required autofocus; }
            label { "Password " input #password name="password" type="password" autocomplete="current-password" required; }
            button #login { "Log in" }
        }
    }
}

pub async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    let msg = match q.m.as_deref() {
        Some("changed") => notice("ok", "Your password or second factor changed: please log in again."),
        Some("out") => notice("ok", "You are logged out."),
        Some("expired") => notice(
            "error",
            "Your login took too long or had too many wrong codes; start again.",
        ),
        _ => html! {},
    };
    page("Log in", None, login_form(msg)).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
}

fn refused(status: StatusCode, text: &str) -> Response {
    (status, page("Log in", None, login_form(notice("error", text)))).into_response()
}

pub async fn login(
    State(p): State<Panel>,
    src: Option<Extension<Source>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let source = source_of(src);
    let now = p.now();
    if !p.lockout.allow_attempt(source, now) {
        tracing::warn!(%source, "login rate limit reached");
        return refused(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many login attempts from this device; wait a minute.",
        );
    }
    // A name no account can have is refused before the lockout table or the audit log sees it: neither
    // may grow with what a stranger types. The log gets a shortened, escaped form.
    let name = f.user.trim().to_lowercase();
    if !store::valid_name(&name) || f.password.len() > 4 * password::MAX_LEN {
        tracing::warn!(%source, user = ?super::limits::for_log(&f.user), "login refused: not a valid account name or password");
        return refused(StatusCode::UNAUTHORIZED, "Wrong user name or password.");
    }
    let who = Who {
        actor: &name,
        role: "-",
        session: None,
        source,
    };
    let locks = match p.lockout.attempt(&name, source, now) {
        Ok(locks) => locks,
        Err(until) => {
            p.audit_failure(&who, "login.refused_locked", Some(name.clone())).await;
            return refused(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many failed logins for this account from this device. Try again after {}, or log in from \
                     another terminal.",
                    super::html::local(until, p.deps.timezone)
                ),
            );
        }
    };
    let lookup = name.clone();
    let user = match p.db(move |c| store::user(c, &lookup)).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let exists = user.is_some();
    let pw = f.password;
    let checked = match p
        .hash_work(source, move || match user {
            Some(u) if !u.disabled && password::verify(&pw, &u.password) => Some(u),
            _ => {
                password::verify_dummy(&pw);
                None
            }
        })
        .await
    {
        Ok(c) => c,
        Err(_) => {
            // Not checked: not counted.
            p.lockout.undo(&name, source);
            return refused(
                StatusCode::TOO_MANY_REQUESTS,
                "The panel is busy checking other logins; try again in a few seconds.",
            );
        }
    };
    let Some(user) = checked else {
        let locked = locks;
        if exists {
            // Guessing at a real account is always itemised (the pair lockout bounds it).
            p.audit(&who, "login.failed", Some(name.clone()), None, None).await;
        } else {
            p.audit_failure(&who, "login.failed", Some(name.clone())).await;
        }
        if locked.is_some() {
            p.audit(
                &who,
                "login.locked",
                Some(name.clone()),
                None,
                Some(format!("until {}", locked.map(|t| t.to_rfc3339()).unwrap_or_default())),
            )
            .await;
        }
        return refused(StatusCode::UNAUTHORIZED, "Wrong user name or password.");
    };
    let stage = if user.totp_secret.is_some() {
        Stage::Totp
    } else if user.role.requires_totp(p.cfg.totp_for_all_roles) {
        Stage::Enroll
    } else {
        Stage::Full
    };
    if stage == Stage::Full {
        p.lockout.trust(source, now);
        p.lockout.success(&name, source);
    } else {
        p.lockout.undo(&name, source);
    }
    let id = match start_session(&p, &headers, &user.name, stage, source).await {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let handle = store::handle_of(&id);
    let who = Who {
        actor: &user.name,
        role: user.role.as_str(),
        session: Some(&handle),
        source,
    };
    let (action, to) = match stage {
        Stage::Full => ("login", user.role.home()),
        Stage::Totp => ("login.password_ok", "/login/totp"),
        Stage::Enroll => ("login.enroll_required", "/account/totp"),
    };
    p.audit(&who, action, None, None, Some("password".into())).await;
    ([set_cookie(&id)], Redirect::to(to)).into_response()
}

/// Ends the session the browser came with (if any) and starts a new one: the id changes at every login
/// step, so an id planted before login is worth nothing after it.
async fn start_session(
    p: &Panel,
    headers: &HeaderMap,
    user: &str,
    stage: Stage,
    source: IpAddr,
) -> Result<String, Failure> {
    let old = session_cookie(headers);
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (user, now) = (user.to_string(), p.now());
    p.db(move |c| {
        if let Some(old) = old {
            store::delete_session(c, &old)?;
        }
        store::create_session(c, &user, stage, &source.to_string(), &agent, now)
    })
    .await
}

fn totp_form(message: Markup) -> Markup {
    html! {
        (message)
        p { "Enter the 6-digit code from your authenticator app, or one of your recovery codes." }
        form.stack method="post" action="/login/totp" {
            label { "Code " input #code name="code" autocomplete="one-time-code" inputmode="numeric" required autofocus; }
            button #verify { "Verify" }
        }
        form method="post" action="/logout" { button.link { "Cancel" } }
    }
}

pub async fn totp_page() -> Response {
    page("Second factor", None, totp_form(html! {})).into_response()
}

#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
}

pub async fn totp_submit(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Response {
    let now = p.now();
    let fail =
        |status, text: &str| (status, page("Second factor", None, totp_form(notice("error", text)))).into_response();
    if !p.lockout.allow_attempt(a.source, now) {
        return fail(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts from this device; wait a minute.",
        );
    }
    if code_is_malformed(&f.code) {
        return fail(StatusCode::UNAUTHORIZED, "That code is wrong or was already used.");
    }
    // Counted before the check: codes sent all at once cannot outrun the limits.
    let Some(pre) = p.lockout.second_factor_attempt(&a.user, &a.id, a.source, now) else {
        let id = a.id.clone();
        let _ = p.db(move |c| store::delete_session(c, &id)).await;
        return ([clear_cookie()], Redirect::to("/login?m=expired")).into_response();
    };
    let (name, code) = (a.user.clone(), f.code.trim().to_string());
    let outcome = p
        .db(move |c| {
            let Some(u) = store::user(c, &name)? else {
                return Ok::<_, rusqlite::Error>(None);
            };
            let Some(secret) = u.totp_secret else { return Ok(None) };
            if code.chars().any(|ch| ch.is_ascii_alphabetic()) {
                let used = store::use_recovery(c, &name, &totp::recovery_hash(&code))?;
                return Ok(used.then_some("recovery code"));
            }
            match totp::check(&secret, &code, now, u.totp_last_step) {
                Some(step) if store::use_totp_step(c, &name, step)? => Ok(Some("totp")),
                _ => Ok(None),
            }
        })
        .await;
    let how = match outcome {
        Ok(Some(how)) => how,
        Ok(None) => {
            let (locked, second) = (pre.pair_locked_until, pre);
            p.audit_failure(&a.who(), "login.totp_failed", None).await;
            if locked.is_some() {
                p.audit(&a.who(), "login.locked", Some(a.user.clone()), None, None)
                    .await;
            }
            if let Some(until) = second.account_locked_until {
                p.audit(
                    &a.who(),
                    "login.totp_locked",
                    Some(a.user.clone()),
                    None,
                    Some(format!("until {}", until.to_rfc3339())),
                )
                .await;
            }
            if second.end_session || second.account_locked_until.is_some() {
                let id = a.id.clone();
                let _ = p.db(move |c| store::delete_session(c, &id)).await;
                p.audit(&a.who(), "login.pending_ended", Some(a.user.clone()), None, None)
                    .await;
                return ([clear_cookie()], Redirect::to("/login?m=expired")).into_response();
            }
            return fail(StatusCode::UNAUTHORIZED, "That code is wrong or was already used.");
        }
        Err(e) => return e.into_response(),
    };
    p.lockout.success(&a.user, a.source);
    p.lockout.second_factor_success(&a.user, &a.id);
    p.lockout.trust(a.source, now);
    let id = match start_session(&p, &headers, &a.user, Stage::Full, a.source).await {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let handle = store::handle_of(&id);
    let who = Who {
        actor: &a.user,
        role: a.role.as_str(),
        session: Some(&handle),
        source: a.source,
    };
    p.audit(&who, "login", None, None, Some(format!("password + {how}")))
        .await;
    ([set_cookie(&id)], Redirect::to(a.role.home())).into_response()
}

/// A code no authenticator or recovery list could have made (it is not checked, counted or logged).
fn code_is_malformed(code: &str) -> bool {
    let c = code.trim();
    c.is_empty() || c.len() > 64 || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == ' ')
}

pub async fn logout(State(p): State<Panel>, Extension(a): Extension<Authed>) -> Response {
    let id = a.id.clone();
    if let Err(e) = p.db(move |c| store::delete_session(c, &id)).await {
        return e.into_response();
    }
    p.audit(&a.who(), "logout", None, None, None).await;
    ([clear_cookie()], Redirect::to("/login?m=out")).into_response()
}

/// Ends every session of a user and sends the browser to the login (after a password or 2FA change).
pub async fn end_all_sessions(p: &Panel, user: &str) -> Result<usize, Failure> {
    let user = user.to_string();
    p.db(move |c| store::delete_all_for(c, &user)).await
}

pub fn logged_out_redirect() -> Response {
    ([clear_cookie()], Redirect::to("/login?m=changed")).into_response()
}
