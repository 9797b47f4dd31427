//! Every route of the panel and who may use it: the only place that knows every handler. The router is
//! built here, and its access rule is a layer: [`route_rule`] looks each matched route up in [`ROUTES`] and
//! hands its [`Access`] to the session check ([`super::auth::authorize`]) in the request's extensions; a
//! route missing from the table is refused, never served unchecked. No handler imports this module.

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use super::roles::Access;
use super::roles::Perm;
use super::{account, admin, auth, lanes, passes, search, security, setup, Panel};

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
    r("GET", "/lane/{name}/still", Perm(Perm::ViewLive)),
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
    r("GET", "/setup", Perm(Perm::SetupLanes)),
    r("GET", "/api/setup", Perm(Perm::SetupLanes)),
    r("GET", "/lane/{name}/view", Perm(Perm::SetupLanes)),
    r("POST", "/setup/{name}/region", Perm(Perm::SetupLanes)),
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

/// The access rule of the matched route, put in the request for [`super::auth::authorize`]; a known path
/// with another method gets 405, a route without a rule 404 (and an error in the log).
pub async fn route_rule(mut req: Request, next: Next) -> Response {
    let Some(matched) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        return super::Failure::NotFound.into_response();
    };
    let Some(access) = find(req.method().as_str(), &matched) else {
        if has_path(&matched) {
            // Another method on a known path: routine scanner noise, not a server fault.
            tracing::debug!(method = %req.method(), path = %matched, "method not allowed");
            return (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.").into_response();
        }
        tracing::error!(path = %matched, "route without an access rule refused");
        return super::Failure::NotFound.into_response();
    };
    req.extensions_mut().insert(access);
    next.run(req).await
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
        .route("/lane/{name}/still", get(lanes::still))
        .route("/setup", get(setup::setup_page))
        .route("/api/setup", get(setup::setup_api))
        .route("/lane/{name}/view", get(setup::view_image))
        .route("/setup/{name}/region", post(setup::save_region))
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
        // the rule lookup runs first (the outer layer), then the session check
        .route_layer(axum::middleware::from_fn_with_state(panel.clone(), auth::authorize))
        .route_layer(axum::middleware::from_fn(route_rule))
        .fallback(|| async { super::Failure::NotFound })
        .layer(axum::extract::DefaultBodyLimit::max(super::limits::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            panel.clone(),
            security::headers_and_origin,
        ))
        .with_state(panel)
}

#[cfg(test)]
mod tests {
    /// The route table knows the handlers, never the other way round: no handler module imports it.
    #[test]
    fn no_handler_imports_the_route_table() {
        let handlers = [
            ("account.rs", include_str!("account.rs")),
            ("admin.rs", include_str!("admin.rs")),
            ("auth.rs", include_str!("auth.rs")),
            ("lanes.rs", include_str!("lanes.rs")),
            ("passes.rs", include_str!("passes.rs")),
            ("search.rs", include_str!("search.rs")),
            ("security.rs", include_str!("security.rs")),
            ("html.rs", include_str!("html.rs")),
        ];
        for (name, src) in handlers {
            let code: Vec<&str> = src
                .lines()
                .map(str::trim_start)
                .filter(|l| !l.starts_with("//"))
                .filter(|l| l.contains("routes::") || (l.starts_with("use ") && l.contains("routes")))
                .collect();
            assert!(code.is_empty(), "{name} reaches into the route table: {code:?}");
        }
    }

    #[test]
    fn every_rule_is_found_and_an_unknown_route_has_none() {
        for r in super::ROUTES {
            assert_eq!(super::find(r.method, r.path), Some(r.access), "{} {}", r.method, r.path);
        }
        assert_eq!(super::find("DELETE", "/users"), None);
        assert!(super::has_path("/users") && !super::has_path("/nowhere"));
    }
}
