//! Every route of the panel and who may use it. The router is built from this table's paths, and the
//! per-request check ([`super::auth::authorize`]) looks each matched route up here: a route missing from
//! the table is refused, never served unchecked.

use axum::routing::{get, post};
use axum::Router;

use super::roles::Perm;
use super::{account, admin, auth, lanes, passes, search, security, Panel};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    /// No session needed (login pages, static assets).
    Public,
    /// A session whose second factor is still owed.
    Pending,
    /// A session in any stage (logout).
    AnySession,
    /// Second-factor enrollment: a full session, or one that must enroll before anything else.
    Enroll,
    /// A full session whose role has the permission.
    Perm(Perm),
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const fn r(method: &'static str, path: &'static str, access: Access) -> Route {
    Route { method, path, access }
}

use Access::*;

pub const ROUTES: &[Route] = &[
    r("GET", "/", AnySession),
    r("GET", "/static/app.js", Public),
    r("GET", "/static/panel.css", Public),
    r("GET", "/login", Public),
    r("POST", "/login", Public),
    r("GET", "/login/totp", Pending),
    r("POST", "/login/totp", Pending),
    r("POST", "/logout", AnySession),
    r("GET", "/live", Perm(Perm::ViewLive)),
    r("GET", "/api/live", Perm(Perm::ViewLive)),
    r("GET", "/img/{id}", Perm(Perm::ViewLive)),
    r("POST", "/gate/{relay}/open", Perm(Perm::GateOpen)),
    r("POST", "/gate/{relay}/hold", Perm(Perm::GateHold)),
    r("POST", "/gate/{relay}/release", Perm(Perm::GateHold)),
    r("POST", "/gate/{relay}/lockdown", Perm(Perm::GateLockdown)),
    r("POST", "/gate/{relay}/unlock", Perm(Perm::GateLockdown)),
    r("GET", "/events", Perm(Perm::SearchEvents)),
    r("GET", "/passes", Perm(Perm::ManagePasses)),
    r("POST", "/passes", Perm(Perm::ManagePasses)),
    r("POST", "/passes/revoke", Perm(Perm::ManagePasses)),
    r("GET", "/users", Perm(Perm::ManageUsers)),
    r("POST", "/users", Perm(Perm::ManageUsers)),
    r("POST", "/users/{name}/role", Perm(Perm::ManageUsers)),
    r("POST", "/users/{name}/disable", Perm(Perm::ManageUsers)),
    r("POST", "/users/{name}/enable", Perm(Perm::ManageUsers)),
    r("POST", "/users/{name}/reset-2fa", Perm(Perm::ManageUsers)),
    r("GET", "/sessions", Perm(Perm::OwnAccount)),
    r("POST", "/sessions/revoke", Perm(Perm::OwnAccount)),
    r("GET", "/account", Perm(Perm::OwnAccount)),
    r("POST", "/account/password", Perm(Perm::OwnAccount)),
    r("GET", "/account/totp", Enroll),
    r("POST", "/account/totp", Enroll),
    r("POST", "/account/totp/disable", Perm(Perm::OwnAccount)),
    r("GET", "/audit", Perm(Perm::ViewAudit)),
    r("GET", "/system", Perm(Perm::ViewSystem)),
];

/// Whether the table has the path under any method (a request with another method gets 405).
pub fn has_path(path: &str) -> bool {
    ROUTES.iter().any(|r| r.path == path)
}

/// The rule of a matched route.
pub fn find(method: &str, path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|r| r.method == method && r.path == path)
        .map(|r| r.access)
}

/// The whole panel: routes, the per-route access check, security headers and cross-origin refusal.
pub fn router(panel: Panel) -> Router {
    Router::new()
        .route("/", get(auth::home))
        .route(
            "/static/app.js",
            get(|| async { super::html::asset(super::html::APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/static/panel.css",
            get(|| async { super::html::asset(super::html::PANEL_CSS, "text/css; charset=utf-8") }),
        )
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/login/totp", get(auth::totp_page).post(auth::totp_submit))
        .route("/logout", post(auth::logout))
        .route("/live", get(lanes::live_page))
        .route("/api/live", get(lanes::live_api))
        .route("/img/{id}", get(lanes::image))
        .route("/gate/{relay}/open", post(lanes::open))
        .route("/gate/{relay}/hold", post(lanes::hold))
        .route("/gate/{relay}/release", post(lanes::release))
        .route("/gate/{relay}/lockdown", post(lanes::lockdown))
        .route("/gate/{relay}/unlock", post(lanes::unlock))
        .route("/events", get(search::search))
        .route("/passes", get(passes::list).post(passes::create))
        .route("/passes/revoke", post(passes::revoke))
        .route("/users", get(admin::users).post(admin::add_user))
        .route("/users/{name}/role", post(admin::set_role))
        .route("/users/{name}/disable", post(admin::disable))
        .route("/users/{name}/enable", post(admin::enable))
        .route("/users/{name}/reset-2fa", post(admin::reset_totp))
        .route("/sessions", get(admin::sessions))
        .route("/sessions/revoke", post(admin::revoke_session))
        .route("/account", get(account::account))
        .route("/account/password", post(account::change_password))
        .route("/account/totp", get(account::totp_page).post(account::totp_enable))
        .route("/account/totp/disable", post(account::totp_disable))
        .route("/audit", get(admin::audit))
        .route("/system", get(admin::system))
        .route_layer(axum::middleware::from_fn_with_state(panel.clone(), auth::authorize))
        .fallback(|| async { super::Failure::NotFound })
        .layer(axum::extract::DefaultBodyLimit::max(super::limits::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            panel.clone(),
            security::headers_and_origin,
        ))
        .with_state(panel)
}
