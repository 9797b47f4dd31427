//! Headers on every response, and refusal of cross-origin state changes (CSRF): a POST must carry an
//! `Origin` (or, failing that, a `Referer`) of this very host, and `Sec-Fetch-Site`, when sent, must be
//! `same-origin`. Session cookies are also `SameSite=Strict`; this is the second lock.
//!
//! The `Host` header must name this panel: an IP address, `localhost`, one of `[panel] hostnames`, or a
//! name the site's own certificate (`[panel] cert`) covers (421 otherwise). A page served under a stranger's DNS name (DNS rebinding) is refused before any
//! handler runs.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub const CSP: &str =
    "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

pub async fn headers_and_origin(State(p): State<super::Panel>, req: Request, next: Next) -> Response {
    let state_changing = !matches!(*req.method(), Method::GET | Method::HEAD);
    let host_ok = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| host_allowed(h, &p.cfg.hostnames, p.cert_der.as_deref()));
    let mut resp = if !host_ok {
        tracing::debug!(host = ?req.headers().get(header::HOST), "request for another host name refused");
        (
            StatusCode::MISDIRECTED_REQUEST,
            super::html::page(
                "Wrong address",
                None,
                super::html::notice(
                    "error",
                    "This panel does not answer to that name. Use its address, or add the name to [panel] hostnames.",
                ),
            ),
        )
            .into_response()
    } else if state_changing && !same_origin(req.headers()) {
        tracing::warn!(path = %req.uri().path(), "cross-origin request refused");
        (
            StatusCode::FORBIDDEN,
            super::html::page(
                "Forbidden",
                None,
                super::html::notice("error", "Cross-origin request refused."),
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
    set(
        h,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    );
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

/// Whether a `Host` header names this panel: an IP literal, `localhost`, a configured host name, or a
/// name the site's certificate (DER) covers, with or without a port.
pub fn host_allowed(host: &str, hostnames: &[String], cert: Option<&[u8]>) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((v6, tail)) if tail.is_empty() || tail.starts_with(':') => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok();
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            Some(_) => return false,
            None => host,
        }
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || hostnames.iter().any(|h| h.trim().eq_ignore_ascii_case(name))
        || cert.is_some_and(|der| cert_covers(der, name))
}

/// Whether a certificate is valid for a DNS name (its subject alternative names, wildcards included).
fn cert_covers(der: &[u8], name: &str) -> bool {
    let der = rustls::pki_types::CertificateDer::from(der);
    let Ok(cert) = webpki::EndEntityCert::try_from(&der) else {
        return false;
    };
    let Ok(server) = rustls::pki_types::ServerName::try_from(name) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&server).is_ok()
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
    fn host_rules() {
        let names = vec!["gate.local".to_string()];
        for ok in [
            "gate.local",
            "GATE.local:8443",
            "10.0.0.2",
            "10.0.0.2:8443",
            "localhost:8443",
            "[::1]:8443",
            "[fe80::1]",
        ] {
            assert!(host_allowed(ok, &names, None), "{ok}");
        }
        for bad in [
            "evil.example",
            "gate.local.evil:8443",
            "gate.local:x",
            "[::1",
            "[zz]:1",
            "",
        ] {
            assert!(!host_allowed(bad, &names, None), "{bad}");
        }
        // A site certificate's names count too (a site with its own certificate kept the default list).
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["gate.example.org".into(), "*.lan.example.org".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let der = cert.der().to_vec();
        assert!(host_allowed("gate.example.org:8443", &names, Some(&der)));
        assert!(host_allowed("tablet.lan.example.org", &names, Some(&der)));
        assert!(!host_allowed("evil.example", &names, Some(&der)));
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
