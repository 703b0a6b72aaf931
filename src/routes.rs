//! Which route a request is for, and which methods each route takes.

use crate::events::Endpoint;
use crate::rules::RulesDigest;

/// A route under `PATH_PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Loader,
    Consent,
    Healthz,
    /// `{prefix}/rules/{digest}`: the rules snapshot a receipt names.
    Rules(RulesDigest),
    /// `{prefix}/cdn{path}`; the path is classified by [`crate::cdn::classify`].
    Cdn(&'a str),
    /// `{prefix}/api/v1/{segment}`, forwarded to `{SEGMENT_API}/v1/{segment}`.
    Api {
        endpoint: Endpoint,
        segment: &'a str,
    },
}

/// The HTTP methods the Worker distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Options,
    Other,
}

impl Method {
    pub fn parse(method: &str) -> Method {
        match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

impl Route<'_> {
    /// The `Allow` header value: what this route answers to.
    pub fn allow(&self) -> &'static str {
        match self {
            Route::Api { .. } => "POST, OPTIONS",
            _ => "GET, HEAD",
        }
    }

    pub fn allows(&self, method: Method) -> bool {
        match self {
            Route::Api { .. } => matches!(method, Method::Post | Method::Options),
            _ => matches!(method, Method::Get | Method::Head),
        }
    }
}

/// Matches `path` (no query) under `prefix`; `None` is a 404 (so is a
/// rules digest that is not one: nothing is read for it).
pub fn route<'a>(prefix: &str, path: &'a str) -> Option<Route<'a>> {
    let rest = path.strip_prefix(prefix)?;
    match rest {
        "/loader.js" => Some(Route::Loader),
        "/consent" => Some(Route::Consent),
        "/healthz" => Some(Route::Healthz),
        _ => {
            if let Some(digest) = rest.strip_prefix("/rules/") {
                return RulesDigest::parse(digest).map(Route::Rules);
            }
            if let Some(cdn) = rest.strip_prefix("/cdn") {
                return cdn.starts_with('/').then_some(Route::Cdn(cdn));
            }
            let segment = rest.strip_prefix("/api/v1/")?;
            let endpoint = Endpoint::from_segment(segment)?;
            Some(Route::Api { endpoint, segment })
        }
    }
}

/// The value of `name` in a query string (`a=1&wk=KEY`), not decoded: the
/// values looked up here (write keys, flags) never need decoding, and one
/// that is encoded simply does not match anything configured.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_under_the_prefix() {
        assert_eq!(route("/edge", "/edge/loader.js"), Some(Route::Loader));
        assert_eq!(route("/edge", "/edge/consent"), Some(Route::Consent));
        assert_eq!(route("/edge", "/edge/healthz"), Some(Route::Healthz));
        assert_eq!(
            route("/edge", "/edge/rules/0123456789abcdef"),
            RulesDigest::parse("0123456789abcdef").map(Route::Rules)
        );
        assert_eq!(
            route("/edge", "/edge/cdn/v1/projects/k/settings"),
            Some(Route::Cdn("/v1/projects/k/settings"))
        );
        assert_eq!(
            route("/a/b", "/a/b/api/v1/t"),
            Some(Route::Api {
                endpoint: Endpoint::Event,
                segment: "t"
            })
        );
        assert_eq!(
            route("/edge", "/edge/api/v1/batch"),
            Some(Route::Api {
                endpoint: Endpoint::Batch,
                segment: "batch"
            })
        );
        assert_eq!(
            route("/edge", "/edge/api/v1/m"),
            Some(Route::Api {
                endpoint: Endpoint::Metrics,
                segment: "m"
            })
        );
    }

    #[test]
    fn everything_else_is_not_found() {
        for path in [
            "/",
            "/loader.js",
            "/edgeloader.js",
            "/edge/loader.js/",
            "/edge/cdnx",
            "/edge/api/v1/x",
            "/edge/api/v1/t/x",
            "/edge/api/v2/t",
            "/EDGE/consent",
            "/edge/rules",
            "/edge/rules/",
            "/edge/rules/0123456789ABCDEF",
            "/edge/rules/0123456789abcde",
            "/edge/rules/0123456789abcdef0",
            "/edge/rules/0123456789abcdef/",
            "/edge/rules/../x",
            "/edge/rules/%2e%2e%2fx",
        ] {
            assert_eq!(route("/edge", path), None, "{path}");
        }
    }

    #[test]
    fn methods_per_route() {
        let api = Route::Api {
            endpoint: Endpoint::Event,
            segment: "t",
        };
        assert!(
            api.allows(Method::Post) && api.allows(Method::Options) && !api.allows(Method::Get)
        );
        assert!(Route::Loader.allows(Method::Get) && Route::Loader.allows(Method::Head));
        assert!(!Route::Loader.allows(Method::Post) && !Route::Cdn("/x").allows(Method::Other));
        assert_eq!(Method::parse("DELETE"), Method::Other);
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param("wk=abc&page=0", "wk"), Some("abc"));
        assert_eq!(query_param("page=0&wk=abc", "page"), Some("0"));
        assert_eq!(query_param("wk", "wk"), Some(""));
        assert_eq!(query_param("", "wk"), None);
        assert_eq!(query_param("xwk=1", "wk"), None);
    }
}
