//! Cross-site request refusal for the admin surface. The session cookie is already
//! `SameSite=Strict`; this is the second layer (OWASP: verify the origin with standard
//! headers). A state-changing request to `/admin/*`, `/web/auth/*` or the server functions
//! (`/admin-next/*`) that a browser marks as coming from another site is refused with 403.
//! Requests without any of those headers (scripts, `curl`, tests with a bearer token) pass:
//! only browsers attach cookies on their own, and browsers send the headers.

use axum::{
    extract::Request,
    http::{header, HeaderMap, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

fn guarded_path(path: &str) -> bool {
    path.starts_with("/admin/")
        || path.starts_with("/admin-next/")
        || path.starts_with("/web/auth/")
}

fn carries_session_cookie(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .any(|(k, _)| k == app::SESSION_COOKIE || k == "adminToken")
}

/// `host[:port]` of an `Origin` or `Referer` value (`null` and garbage give `None`).
fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|a| !a.is_empty())
}

/// Whether a browser says this request comes from another site.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    // The browser's own verdict, when it gives one (a page script cannot forge it).
    match get("sec-fetch-site") {
        Some("same-origin") | Some("none") => return false,
        Some("cross-site") | Some("same-site") => return true,
        _ => {}
    }
    let hosts: Vec<&str> = [get("host"), get("x-forwarded-host")]
        .into_iter()
        .flatten()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect();
    let same =
        |url: &str| authority(url).is_some_and(|a| hosts.iter().any(|h| h.eq_ignore_ascii_case(a)));
    if let Some(origin) = get("origin") {
        return !same(origin);
    }
    if let Some(referer) = get("referer") {
        return !same(referer);
    }
    false
}

pub async fn refuse_cross_site(req: Request, next: Next) -> Response {
    let safe = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    let path = req.uri().path();
    if !safe
        && guarded_path(path)
        && (path.starts_with("/admin-next/") || carries_session_cookie(req.headers()))
        && cross_site(req.headers())
    {
        tracing::warn!(path, "cross-site admin request refused");
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"success": false, "error": "Forbidden", "message": "Cross-site request refused"})),
        )
            .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn verdicts() {
        let host = ("host", "relay.example:3000");
        assert!(!cross_site(&h(&[host])));
        assert!(!cross_site(&h(&[
            host,
            ("origin", "http://relay.example:3000")
        ])));
        assert!(cross_site(&h(&[host, ("origin", "https://evil.example")])));
        assert!(cross_site(&h(&[host, ("origin", "null")])));
        assert!(cross_site(&h(&[
            host,
            ("origin", "http://relay.example:3000.evil")
        ])));
        assert!(!cross_site(&h(&[
            host,
            ("referer", "http://relay.example:3000/admin-next/keys")
        ])));
        assert!(cross_site(&h(&[
            host,
            ("referer", "http://evil.example/relay.example:3000")
        ])));
        assert!(!cross_site(&h(&[
            host,
            ("x-forwarded-host", "crs.example.com"),
            ("origin", "https://crs.example.com")
        ])));
        // A proxy that rewrote Host: the browser's Sec-Fetch-Site still says same-origin.
        assert!(!cross_site(&h(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "https://crs.example.com"),
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(cross_site(&h(&[host, ("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&h(&[host, ("sec-fetch-site", "same-site")])));
    }
}
