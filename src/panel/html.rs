//! Server-rendered pages: the shared layout with a role-aware menu, notices, and the two static assets
//! (no inline script or style anywhere, so the CSP can stay `default-src 'self'`).
//!
//! Every page is a maud template (`html!`): the markup is checked when the crate compiles and every
//! interpolated value is escaped unless it is wrapped in `PreEscaped`, which no page does. maud rather than
//! askama because the pages are small fragments composed by Rust code (menus filtered by role, rows per
//! record): as functions they keep their types and need no template files or context structs.

use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use super::auth::Authed;
use super::roles::Perm;

pub const APP_JS: &str = include_str!("assets/app.js");
pub const PANEL_CSS: &str = include_str!("assets/panel.css");

const MENU: &[(&str, &str, Perm)] = &[
    ("/live", "Live", Perm::ViewLive),
    ("/events", "Search", Perm::SearchEvents),
    ("/passes", "Visitor passes", Perm::ManagePasses),
    ("/users", "Users", Perm::ManageUsers),
    ("/audit", "Audit log", Perm::ViewAudit),
    ("/system", "System", Perm::ViewSystem),
    ("/setup", "Setup", Perm::SetupLanes),
    ("/sessions", "Sessions", Perm::OwnAccount),
    ("/account", "Account", Perm::OwnAccount),
];

/// A whole page. `who` is `None` on the login pages.
pub fn page(title: &str, who: Option<&Authed>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " - Gatehouse" }
                    link rel="stylesheet" href="/static/panel.css";
                    script src="/static/app.js" defer {}
                }
                body {
                    header {
                        strong { "Gatehouse" }
                        @if let Some(a) = who.filter(|a| a.full) { (menu(a)) }
                    }
                    main { h1 { (title) } (body) }
                }
            }
        }
        .into_string(),
    )
}

/// The menu: the pages this role may open, who is logged in, and the log-out button.
fn menu(a: &Authed) -> Markup {
    html! {
        nav {
            @for (href, label, perm) in MENU {
                @if a.role.may(*perm) { a href=(href) { (label) } }
            }
            span.who { (a.user) " (" (a.role) ")" }
            form method="post" action="/logout" { button.link #logout { "Log out" } }
        }
    }
}

/// A message box (error or notice) for the top of a page; nothing for an empty text.
pub fn notice(kind: &str, text: &str) -> Markup {
    html! {
        @if !text.is_empty() { p class={ "notice " (kind) } role="status" { (text) } }
    }
}

pub fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Formats a UTC time in the site's zone.
pub fn local(t: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Percent-encodes everything but unreserved characters (query values, `otpauth://` labels).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The outcome of a form post, carried to the page it redirects to (`?done=` or `?error=`).
#[derive(Debug, Default, Deserialize)]
pub struct Flash {
    #[serde(default)]
    pub done: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

impl Flash {
    pub fn render(&self) -> Markup {
        html! {
            (notice("ok", self.done.as_deref().unwrap_or("")))
            (notice("error", self.error.as_deref().unwrap_or("")))
        }
    }
}

/// Redirects to `path` with a success message.
pub fn done(path: &str, msg: &str) -> Response {
    Redirect::to(&format!("{path}?done={}", percent_encode(msg))).into_response()
}

/// Redirects to `path` with an error message.
pub fn error(path: &str, msg: &str) -> Response {
    Redirect::to(&format!("{path}?error={}", percent_encode(msg))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panel HTML comes from templates only: no tag in a string literal, so nothing relies on remembering
    /// to escape (the check that keeps `format!` HTML from coming back).
    #[test]
    fn no_page_is_built_from_strings() {
        let files = [
            ("account.rs", include_str!("account.rs")),
            ("admin.rs", include_str!("admin.rs")),
            ("auth.rs", include_str!("auth.rs")),
            ("html.rs", include_str!("html.rs")),
            ("lanes.rs", include_str!("lanes.rs")),
            ("limits.rs", include_str!("limits.rs")),
            ("live.rs", include_str!("live.rs")),
            ("lockout.rs", include_str!("lockout.rs")),
            ("mod.rs", include_str!("mod.rs")),
            ("passes.rs", include_str!("passes.rs")),
            ("password.rs", include_str!("password.rs")),
            ("roles.rs", include_str!("roles.rs")),
            ("routes.rs", include_str!("routes.rs")),
            ("search.rs", include_str!("search.rs")),
            ("security.rs", include_str!("security.rs")),
            ("server.rs", include_str!("server.rs")),
            ("store.rs", include_str!("store.rs")),
            ("tls.rs", include_str!("tls.rs")),
            ("totp.rs", include_str!("totp.rs")),
        ];
        let quote_tag = |l: &str| {
            l.match_indices("\"<")
                .any(|(i, _)| l[i + 2..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!'))
        };
        for (name, src) in files {
            // The code, not its tests (which feed markup in on purpose).
            let code = src.split("#[cfg(test)]").next().unwrap_or(src);
            let bad: Vec<&str> = code
                .lines()
                .map(str::trim_start)
                .filter(|l| !l.starts_with("//"))
                .filter(|l| quote_tag(l))
                .collect();
            assert!(bad.is_empty(), "{name} builds HTML from strings: {bad:?}");
        }
    }

    /// Every interpolated value is escaped, in the layout and in the notices.
    #[test]
    fn the_layout_escapes_what_it_is_given() {
        let Html(text) = page("<b>T&C</b>", None, notice("error", "<script>x\"</script>"));
        assert!(
            text.contains("<title>&lt;b&gt;T&amp;C&lt;/b&gt; - Gatehouse</title>"),
            "{text}"
        );
        assert!(text.contains("<h1>&lt;b&gt;T&amp;C&lt;/b&gt;</h1>"), "{text}");
        assert!(text.contains("&lt;script&gt;x&quot;&lt;/script&gt;"), "{text}");
        assert!(!text.contains("<script>x"), "{text}");
        assert_eq!(notice("ok", "").into_string(), "");
    }
}
