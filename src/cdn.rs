//! The Segment CDN proxy: which paths it serves, and the settings patch that
//! points analytics.js at this Worker for events.

use crate::config::Config;
use crate::json::{ObjectWriter, RawObject, Shape};

/// An allowed CDN path (the part after `{prefix}/cdn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdnPath<'a> {
    /// `/analytics.js/v1/{wk}/analytics.min.js`
    AnalyticsJs { write_key: &'a str },
    /// `/v1/projects/{wk}/settings`
    Settings { write_key: &'a str },
    /// `/analytics-next/bundles/*` (analytics.js's own chunks)
    Bundle,
    /// `/next-integrations/*` (device-mode destination code)
    Integration,
}

impl CdnPath<'_> {
    /// Whether the upstream body is patched before it is served.
    pub fn is_settings(&self) -> bool {
        matches!(self, CdnPath::Settings { .. })
    }
}

/// Classifies `path` (after `{prefix}/cdn`, without query). Anything else,
/// any write key not configured, and anything that could walk out of these
/// trees (`..`, `.`, empty segments, any `%` escape, `\`) is `None`: a 404
/// with nothing fetched.
pub fn classify<'a>(config: &Config, path: &'a str) -> Option<CdnPath<'a>> {
    let rest = path.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    if !segments.iter().all(|s| is_safe_segment(s)) {
        return None;
    }
    let known = |wk: &&str| config.knows_write_key(wk);
    match segments.as_slice() {
        ["analytics.js", "v1", wk, "analytics.min.js"] if known(wk) => {
            Some(CdnPath::AnalyticsJs { write_key: wk })
        }
        ["v1", "projects", wk, "settings"] if known(wk) => {
            Some(CdnPath::Settings { write_key: wk })
        }
        ["analytics-next", "bundles", _file] => Some(CdnPath::Bundle),
        ["next-integrations", _, ..] => Some(CdnPath::Integration),
        _ => None,
    }
}

fn is_safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~@+".contains(&b))
}

/// What the patch reads of the settings document in its one pass.
const SETTINGS: &[(&str, Shape)] = &[(
    "integrations",
    Shape::Object(&[("Segment.io", Shape::Object(&[]))]),
)];

/// Rewrites Segment's source settings so analytics.js posts events to
/// `{protocol}://{api_host}`: `integrations["Segment.io"].apiHost` (no scheme,
/// as analytics.js expects) and `.protocol`, added if Segment left them out.
/// Everything else is kept as it came. `None` if the body is not a settings object.
pub fn patch_settings(body: &[u8], api_host: &str, protocol: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let settings = RawObject::parse_shaped(text, SETTINGS).ok()?;
    let integrations = settings.object("integrations")?;
    let segment = match integrations.get("Segment.io") {
        Some(_) => Some(integrations.object("Segment.io")?),
        None => None,
    };

    let mut out = Vec::with_capacity(body.len() + 64);
    let mut w = ObjectWriter::new(&mut out);
    for entry in settings.iter() {
        if entry.key() != "integrations" {
            w.entry(entry);
            continue;
        }
        let mut iw = ObjectWriter::new(w.key_of(entry));
        for integration in integrations.iter() {
            if integration.key() == "Segment.io" {
                write_segment(iw.key_of(integration), segment, api_host, protocol);
            } else {
                iw.entry(integration);
            }
        }
        if segment.is_none() {
            write_segment(iw.key("Segment.io"), None, api_host, protocol);
        }
        iw.finish();
    }
    w.finish();
    Some(out)
}

fn write_segment(
    out: &mut Vec<u8>,
    segment: Option<&RawObject<'_>>,
    api_host: &str,
    protocol: &str,
) {
    let mut sw = ObjectWriter::new(out);
    for entry in segment.into_iter().flat_map(RawObject::iter) {
        if entry.key() != "apiHost" && entry.key() != "protocol" {
            sw.entry(entry);
        }
    }
    sw.str("apiHost", api_host);
    sw.str("protocol", protocol);
    sw.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn config() -> Config {
        Config::from_vars(|k| (k == "WRITE_KEYS").then(|| "wk1,wk2".to_owned()))
    }

    #[test]
    fn serves_exactly_the_four_shapes() {
        let c = config();
        assert_eq!(
            classify(&c, "/analytics.js/v1/wk1/analytics.min.js"),
            Some(CdnPath::AnalyticsJs { write_key: "wk1" })
        );
        assert_eq!(
            classify(&c, "/v1/projects/wk2/settings"),
            Some(CdnPath::Settings { write_key: "wk2" })
        );
        assert_eq!(
            classify(
                &c,
                "/analytics-next/bundles/ajs-destination.bundle.40628baed746e9904edc.js"
            ),
            Some(CdnPath::Bundle)
        );
        assert_eq!(
            classify(&c, "/next-integrations/integrations/google-analytics/2.18.0/google-analytics.dynamic.js.gz"),
            Some(CdnPath::Integration)
        );
        assert_eq!(
            classify(&c, "/next-integrations/actions/amplitude-plugins/0a1b2c.js"),
            Some(CdnPath::Integration)
        );
    }

    #[test]
    fn everything_else_is_not_found() {
        let c = config();
        for path in [
            "",
            "/",
            "/analytics.js/v1/stranger/analytics.min.js",
            "/v1/projects/stranger/settings",
            "/v1/projects/wk1/integrations",
            "/v1/projects/wk1/settings/extra",
            "/analytics.js/v1/wk1/analytics.js",
            "/analytics-next/bundles/",
            "/analytics-next/bundles/a/b.js",
            "/analytics-next/bundles/../../v1/projects/stranger/settings",
            "/next-integrations/../v1/projects/wk1/settings",
            "/next-integrations/%2e%2e/x",
            "/next-integrations/a%2fb",
            "/next-integrations/a%5cb",
            "/next-integrations/a\\b",
            "/next-integrations//x",
            "/next-integrations/./x",
            "/next-integrations",
            "/analytics-next/bundles/x.js?y",
            "//evil.example/x",
            "/other/file.js",
        ] {
            assert_eq!(classify(&c, path), None, "{path}");
        }
    }

    #[test]
    fn settings_point_events_at_the_edge_and_keep_the_rest() {
        let settings = r#"{"integrations":{"Segment.io":{"apiKey":"wk1","apiHost":"api.segment.io/v1","unbundledIntegrations":[],"addBundledMetadata":true},"Google Analytics 4 Web":{"measurementId":"G-1","consentSettings":{"categories":["C0002"]}}},"plan":{"track":{"__default":{"enabled":true}}},"remotePlugins":[{"name":"x","url":"https://cdn.segment.com/next-integrations/actions/x/1.js"}],"n":1.50}"#;
        let out = patch_settings(settings.as_bytes(), "shop.example/edge/api/v1", "https").unwrap();
        let text = String::from_utf8(out).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value["integrations"]["Segment.io"],
            json!({"apiKey": "wk1", "unbundledIntegrations": [], "addBundledMetadata": true, "apiHost": "shop.example/edge/api/v1", "protocol": "https"})
        );
        assert!(text.contains(r#""Google Analytics 4 Web":{"measurementId":"G-1","consentSettings":{"categories":["C0002"]}}"#));
        assert!(text.contains(r#""n":1.50"#), "numbers kept as written");
        assert_eq!(
            value["remotePlugins"][0]["url"],
            "https://cdn.segment.com/next-integrations/actions/x/1.js"
        );
    }

    #[test]
    fn settings_without_segment_io_get_it() {
        let out = patch_settings(br#"{"integrations":{}}"#, "h/edge/api/v1", "http").unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value["integrations"]["Segment.io"],
            json!({"apiHost": "h/edge/api/v1", "protocol": "http"})
        );
    }

    #[test]
    fn non_settings_bodies_are_refused() {
        for body in [
            &b"<html>"[..],
            b"[]",
            br#"{"integrations":[]}"#,
            b"{}",
            br#"{"integrations":{"Segment.io":1}}"#,
            b"\xff",
        ] {
            assert_eq!(patch_settings(body, "h", "https"), None);
        }
    }
}
