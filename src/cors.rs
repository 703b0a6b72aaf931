//! Who may post events from a browser: the site's own origin, or the ones
//! `ALLOWED_ORIGINS` lists. Everyone else gets 403 and no CORS headers.

use crate::config::Config;
use crate::http::Reply;

/// The request headers analytics.js sends with an event post.
pub const ALLOWED_HEADERS: &str = "Content-Type, Authorization, X-Retry-Count";

/// How a request's `Origin` header stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin`: a server-side client; its write key alone decides.
    Absent,
    /// An allowed origin, echoed in `Access-Control-Allow-Origin`.
    Allowed(String),
    Forbidden,
}

/// Judges `origin` against `ALLOWED_ORIGINS`, or (when that is empty) against
/// the origin of the request itself.
pub fn check_origin(config: &Config, origin: Option<&str>, own_origin: &str) -> OriginCheck {
    let Some(origin) = origin.map(str::trim) else {
        return OriginCheck::Absent;
    };
    let normalized = origin.trim_end_matches('/').to_ascii_lowercase();
    let allowed = if config.allowed_origins.is_empty() {
        normalized == own_origin
    } else {
        config.allowed_origins.contains(&normalized)
    };
    if allowed {
        OriginCheck::Allowed(origin.to_owned())
    } else {
        OriginCheck::Forbidden
    }
}

/// Adds the CORS response headers for an allowed origin. Credentials are
/// allowed: the consent cookie must travel with the event.
pub fn with_cors(reply: Reply, check: &OriginCheck) -> Reply {
    match check {
        OriginCheck::Allowed(origin) => reply
            .with("access-control-allow-origin", origin.clone())
            .with("access-control-allow-credentials", "true")
            .with(
                "access-control-expose-headers",
                "X-Consent-Forwarded, X-Consent-Dropped, Retry-After",
            )
            .with("vary", "Origin"),
        _ => reply.with("vary", "Origin"),
    }
}

/// The answer to an `OPTIONS` preflight.
pub fn preflight(check: &OriginCheck) -> Reply {
    match check {
        OriginCheck::Forbidden => Reply::error(403, "origin not allowed").with("vary", "Origin"),
        _ => with_cors(Reply::new(204, "text/plain", Vec::new()), check)
            .with("access-control-allow-methods", "POST, OPTIONS")
            .with("access-control-allow-headers", ALLOWED_HEADERS)
            .with("access-control-max-age", "86400"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(allowed: &str) -> Config {
        let allowed = allowed.to_owned();
        Config::from_vars(move |k| match k {
            "WRITE_KEYS" => Some("wk".into()),
            "ALLOWED_ORIGINS" => Some(allowed.clone()),
            _ => None,
        })
    }

    #[test]
    fn by_default_only_the_own_origin() {
        let c = config("");
        assert_eq!(
            check_origin(&c, None, "https://shop.example"),
            OriginCheck::Absent
        );
        assert_eq!(
            check_origin(&c, Some("https://shop.example"), "https://shop.example"),
            OriginCheck::Allowed("https://shop.example".into())
        );
        assert_eq!(
            check_origin(&c, Some("https://evil.example"), "https://shop.example"),
            OriginCheck::Forbidden
        );
        assert_eq!(
            check_origin(&c, Some("http://shop.example"), "https://shop.example"),
            OriginCheck::Forbidden
        );
        assert_eq!(
            check_origin(&c, Some("null"), "https://shop.example"),
            OriginCheck::Forbidden
        );
    }

    #[test]
    fn allowed_origins_replace_the_default() {
        let c = config("https://www.shop.example, https://Shop.example/");
        assert!(matches!(
            check_origin(&c, Some("https://shop.example"), "https://edge.example"),
            OriginCheck::Allowed(_)
        ));
        assert!(matches!(
            check_origin(&c, Some("https://www.shop.example"), "https://edge.example"),
            OriginCheck::Allowed(_)
        ));
        assert_eq!(
            check_origin(&c, Some("https://edge.example"), "https://edge.example"),
            OriginCheck::Forbidden
        );
    }

    #[test]
    fn preflight_answers() {
        let ok = preflight(&OriginCheck::Allowed("https://shop.example".into()));
        assert_eq!(ok.status, 204);
        assert_eq!(
            ok.header("access-control-allow-origin"),
            Some("https://shop.example")
        );
        assert_eq!(
            ok.header("access-control-allow-headers"),
            Some(ALLOWED_HEADERS)
        );
        assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
        let denied = preflight(&OriginCheck::Forbidden);
        assert_eq!(denied.status, 403);
        assert_eq!(denied.header("access-control-allow-origin"), None);
    }
}
