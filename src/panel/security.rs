//! Headers on every response, and refusal of cross-origin state changes (CSRF): a POST must carry an
//! `Origin` (or, failing that, a `Referer`) of this very host, and `Sec-Fetch-Site`, when sent, must be
//! `same-origin`. Session cookies are also `SameSite=Strict`; this is the second lock.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub const CSP: &str =
    "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

pub async fn headers_and_origin(req: Request, next: Next) -> Response {
    let state_changing = !matches!(*req.method(), Method::GET | Method::HEAD);
    let mut resp = if state_changing && !same_origin(req.headers()) {
        tracing::warn!(path = %req.uri().path(), "cross-origin request refused");
        (
            StatusCode::FORBIDDEN,
            super::html::page(
                "Forbidden",
                None,
                &super::html::notice("error", "Cross-origin request refused."),
            ),
        )
            .into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // Not "no-referrer": with it, Chromium sends `Origin: null` on same-origin form posts.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        header::HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    resp
}

/// Whether a state-changing request comes from a page of this panel.
pub fn same_origin(h: &HeaderMap) -> bool {
    let Some(host) = h.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if let Some(site) = h.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return false;
        }
    }
    let ours = format!("https://{host}");
    match h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => origin == ours,
        None => h
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|r| r == ours || r.starts_with(&format!("{ours}/"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn origin_rules() {
        assert!(same_origin(&headers(&[
            ("host", "gate.local:8443"),
            ("origin", "https://gate.local:8443")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "gate.local"),
            ("referer", "https://gate.local/live")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "gate.local"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "gate.local"),
            ("origin", "http://gate.local")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "gate.local"),
            ("referer", "https://gate.local.evil/")
        ])));
        assert!(!same_origin(&headers(&[("host", "gate.local")])), "neither header");
        assert!(!same_origin(&headers(&[
            ("host", "gate.local"),
            ("origin", "https://gate.local"),
            ("sec-fetch-site", "cross-site")
        ])));
    }
}
