//! Server-rendered pages: escaping, the shared layout with a role-aware menu, and the two static assets
//! (no inline script or style anywhere, so the CSP can stay `default-src 'self'`).

use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::Authed;
use super::roles::Perm;

pub const APP_JS: &str = include_str!("assets/app.js");
pub const PANEL_CSS: &str = include_str!("assets/panel.css");

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const MENU: &[(&str, &str, Perm)] = &[
    ("/live", "Live", Perm::ViewLive),
    ("/events", "Search", Perm::SearchEvents),
    ("/passes", "Visitor passes", Perm::ManagePasses),
    ("/users", "Users", Perm::ManageUsers),
    ("/audit", "Audit log", Perm::ViewAudit),
    ("/system", "System", Perm::ViewSystem),
    ("/sessions", "Sessions", Perm::OwnAccount),
    ("/account", "Account", Perm::OwnAccount),
];

/// A whole page. `who` is `None` on the login pages.
pub fn page(title: &str, who: Option<&Authed>, body: &str) -> Html<String> {
    let nav = match who {
        Some(a) if a.full => {
            let links: String = MENU
                .iter()
                .filter(|(_, _, p)| a.role.may(*p))
                .map(|(href, label, _)| format!("<a href=\"{href}\">{label}</a>"))
                .collect();
            format!(
                "<nav>{links}<span class=\"who\">{} ({})</span>\
                 <form method=\"post\" action=\"/logout\"><button class=\"link\" id=\"logout\">Log out</button></form></nav>",
                esc(&a.user),
                a.role
            )
        }
        _ => String::new(),
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} - Gatehouse</title><link rel=\"stylesheet\" href=\"/static/panel.css\">\
         <script src=\"/static/app.js\" defer></script></head>\
         <body><header><strong>Gatehouse</strong>{nav}</header><main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    ))
}

/// A message box (error or notice) for the top of a page.
pub fn notice(kind: &str, text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    format!("<p class=\"notice {kind}\" role=\"status\">{}</p>", esc(text))
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
    pub fn render(&self) -> String {
        notice("ok", self.done.as_deref().unwrap_or("")) + &notice("error", self.error.as_deref().unwrap_or(""))
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
