//! Plain descriptions of what the Worker answers and where a request went:
//! the glue turns a [`Reply`] into a runtime `Response`, nothing more.

use crate::json::ObjectWriter;

/// A response, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

/// What a reply carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Bytes(Vec<u8>),
    /// The upstream answer's body, streamed through without entering the Worker.
    Upstream,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", content_type.to_owned())],
            body: Body::Bytes(body),
        }
    }

    /// A reply whose body is the upstream's, as it comes.
    pub fn passthrough(status: u16, content_type: &str) -> Reply {
        Reply {
            body: Body::Upstream,
            ..Reply::new(status, content_type, Vec::new())
        }
    }

    /// The bytes of a reply decided here (empty for a passed-through body).
    pub fn bytes(&self) -> &[u8] {
        match &self.body {
            Body::Bytes(bytes) => bytes,
            Body::Upstream => &[],
        }
    }

    pub fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply::new(status, "application/json; charset=utf-8", body)
    }

    /// `{"error": "<message>", "status": <status>}`.
    pub fn error(status: u16, message: &str) -> Reply {
        let mut body = Vec::with_capacity(message.len() + 32);
        let mut w = ObjectWriter::new(&mut body);
        w.str("error", message);
        w.key("status")
            .extend_from_slice(status.to_string().as_bytes());
        w.finish();
        Reply::json(status, body).with("cache-control", "no-store")
    }

    pub fn not_found() -> Reply {
        Reply::error(404, "not found")
    }

    pub fn method_not_allowed(allow: &'static str) -> Reply {
        Reply::error(405, "method not allowed").with("allow", allow)
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Headers as one `name\nvalue\n…` string: the JS entry builds a request or
/// a response from it, one string crossing out of wasm instead of a call per
/// header. Each name comes once, its values joined with `, ` as `Headers`
/// joins them, so the entry can make it a plain object (which the runtime
/// converts faster than a list of pairs). Names and values never hold a line
/// break (the runtime refuses them in headers); a pair that does is left out
/// rather than split wrong.
pub fn pack_headers(headers: &[(&'static str, String)]) -> String {
    let sendable = |(n, v): &&(&str, String)| !n.contains('\n') && !v.contains('\n');
    let mut packed =
        String::with_capacity(headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
    for (i, pair) in headers
        .iter()
        .enumerate()
        .filter(|(_, pair)| sendable(pair))
    {
        let (name, value) = pair;
        let named = |other: &&(&str, String)| sendable(other) && other.0.eq_ignore_ascii_case(name);
        if headers[..i].iter().any(|other| named(&other)) {
            continue;
        }
        packed.push_str(name);
        packed.push('\n');
        packed.push_str(value);
        for (_, later) in headers[i + 1..].iter().filter(named) {
            packed.push_str(", ");
            packed.push_str(later);
        }
        packed.push('\n');
    }
    packed
}

/// An upstream answer, as far as the Worker passes it on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    pub status: u16,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub retry_after: Option<String>,
    /// The body, when it was read; `None` when it is to be streamed through.
    pub body: Option<Vec<u8>>,
}

/// Why an upstream call produced no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchFailure {
    Unreachable(String),
    Timeout,
}

impl std::fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchFailure::Unreachable(reason) => write!(f, "unreachable: {reason}"),
            FetchFailure::Timeout => write!(f, "timed out"),
        }
    }
}

/// The parts of a request URL the Worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub scheme: &'a str,
    /// `host[:port]`, as in the URL.
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a str,
}

impl<'a> UrlParts<'a> {
    /// Splits an absolute `scheme://host/path?query#fragment` URL.
    pub fn parse(url: &'a str) -> Option<UrlParts<'a>> {
        let (scheme, rest) = url.split_once("://")?;
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (host, rest) = rest.split_at(authority_end);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if host.is_empty() {
            return None;
        }
        Some(UrlParts {
            scheme,
            host,
            path: if path.is_empty() { "/" } else { path },
            query,
        })
    }

    /// `scheme://host`: what a browser sends as `Origin` for this URL.
    pub fn origin(&self) -> String {
        // One allocation: `format!` and a lowercased copy of it showed in the loader's profile.
        let mut origin = String::with_capacity(self.scheme.len() + 3 + self.host.len());
        origin.push_str(self.scheme);
        origin.push_str("://");
        origin.push_str(self.host);
        origin.make_ascii_lowercase();
        origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_pack_as_name_and_value_lines() {
        let headers = vec![
            ("content-type", "text/plain".to_owned()),
            ("x-empty", String::new()),
            ("x-broken", "a\nb".to_owned()),
            ("vary", "Origin".to_owned()),
        ];
        assert_eq!(
            pack_headers(&headers),
            "content-type\ntext/plain\nx-empty\n\nvary\nOrigin\n"
        );
        assert_eq!(pack_headers(&[]), "");
    }

    #[test]
    fn a_name_packed_twice_comes_once_with_its_values_joined() {
        let headers = vec![
            ("vary", "Cookie, Sec-GPC".to_owned()),
            ("content-type", "application/json".to_owned()),
            ("Vary", "Origin".to_owned()),
            ("x-broken", "a\nb".to_owned()),
            ("x-broken", "c".to_owned()),
        ];
        assert_eq!(
            pack_headers(&headers),
            "vary\nCookie, Sec-GPC, Origin\ncontent-type\napplication/json\nx-broken\nc\n"
        );
    }

    #[test]
    fn errors_are_json_with_their_status() {
        let reply = Reply::error(413, "too \"big\"");
        assert_eq!(reply.status, 413);
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        let body: serde_json::Value = serde_json::from_slice(reply.bytes()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "too \"big\"", "status": 413})
        );
        assert_eq!(
            Reply::method_not_allowed("GET, HEAD").header("allow"),
            Some("GET, HEAD")
        );
    }

    #[test]
    fn splits_urls() {
        let u = UrlParts::parse("https://Shop.Example:8443/edge/loader.js?wk=a&page=0#x").unwrap();
        assert_eq!(
            (u.scheme, u.host, u.path, u.query),
            (
                "https",
                "Shop.Example:8443",
                "/edge/loader.js",
                "wk=a&page=0"
            )
        );
        assert_eq!(u.origin(), "https://shop.example:8443");
        let u = UrlParts::parse("http://localhost?x").unwrap();
        assert_eq!((u.host, u.path, u.query), ("localhost", "/", "x"));
        assert_eq!(UrlParts::parse("/relative"), None);
        assert_eq!(UrlParts::parse("https:///x"), None);
    }
}
