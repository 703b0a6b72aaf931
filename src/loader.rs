//! The loader script: `static/loader.min.js` (`static/loader.js` minified by
//! `scripts/loader.mjs`), with this request's resolved consent injected as
//! data where the script says `EDGE_DATA`.

use crate::config::{Config, Mode};
use crate::consent::{ConsentState, Resolution};
use crate::destinations::DestinationSet;
use crate::json::{script_safe, write_str, ObjectWriter};
use std::sync::OnceLock;

const TEMPLATE: &str = include_str!("../static/loader.min.js");
const MARKER: &str = "EDGE_DATA";

/// The template around the data block, split once per isolate.
fn template() -> (&'static str, &'static str) {
    static SPLIT: OnceLock<(&str, &str)> = OnceLock::new();
    *SPLIT.get_or_init(|| TEMPLATE.split_once(MARKER).unwrap_or((TEMPLATE, "")))
}

/// Where the loader points analytics.js, derived from the request URL.
pub struct Origin<'a> {
    /// `https` or `http`.
    pub scheme: &'a str,
    /// `host[:port]`.
    pub host: &'a str,
    pub prefix: &'a str,
}

pub struct LoaderInput<'a> {
    pub write_key: &'a str,
    pub origin: Origin<'a>,
    pub mode: Mode,
    /// Call `analytics.page()` as Segment's snippet does.
    pub page: bool,
    pub set: &'a DestinationSet,
    pub resolution: &'a Resolution,
    /// The pre-consent hold for this visitor ([`hold_ms`]); 0: none.
    pub hold_ms: u32,
}

/// How long the loader holds this visitor's events before the banner decision
/// (0: it does not): only an undecided visitor, and only when a decision could
/// change something, i.e. the resolved consent leaves a destination disabled.
pub fn hold_ms(config: &Config, state: &ConsentState, resolution: &Resolution) -> u32 {
    if may_hold(config, state) && resolution.enabled.contains(&false) {
        config.pre_consent_hold_ms
    } else {
        0
    }
}

/// Whether this visitor could be held at all, before the destinations are
/// weighed: undecided, with the hold on.
pub fn may_hold(config: &Config, state: &ConsentState) -> bool {
    !state.decided && config.pre_consent_hold_ms > 0
}

/// Renders the loader for one request.
pub fn render(input: &LoaderInput<'_>) -> Vec<u8> {
    let (head, tail) = template();
    let data = data_block(input);
    // The data is JSON: escape what could end the script or a JS string.
    let data = script_safe(std::str::from_utf8(&data).unwrap_or("null"));
    let mut out = Vec::with_capacity(head.len() + data.len() + tail.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(tail.as_bytes());
    out
}

fn data_block(input: &LoaderInput<'_>) -> Vec<u8> {
    let Origin {
        scheme,
        host,
        prefix,
    } = input.origin;
    let mut out = Vec::with_capacity(512 + input.set.destinations().len() * 32);
    let mut w = ObjectWriter::new(&mut out);
    w.str("writeKey", input.write_key);
    w.str("cdn", &format!("{scheme}://{host}{prefix}/cdn"));
    w.str("apiHost", &format!("{host}{prefix}/api/v1"));
    w.str("protocol", scheme);
    let consent_url = w.key("consentUrl");
    write_str(
        consent_url,
        &format!("{prefix}/consent?wk={}", input.write_key),
    );
    w.str("mode", input.mode.as_str());
    w.bool("page", input.page);
    w.key("hold")
        .extend_from_slice(input.hold_ms.to_string().as_bytes());
    w.str("version", env!("CARGO_PKG_VERSION"));
    write_consent(w.key("consent"), input.set, input.resolution);
    w.finish();
    out
}

/// `{"collection":…,"integrations":{…},"groups":{…},"onetrust":"…"}`: the
/// shape the loader embeds and `/consent` also answers, so the page can swap one
/// for the other when the banner changes consent.
pub fn write_consent(out: &mut Vec<u8>, set: &DestinationSet, resolution: &Resolution) {
    let mut w = ObjectWriter::new(out);
    w.bool("collection", resolution.collection);
    resolution.write_integrations(set, w.key("integrations"));
    resolution.write_preferences(w.key("groups"));
    w.str("onetrust", &resolution.onetrust());
    w.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::consent::{ConsentState, RequestSignals};
    use crate::cookie::parse_cookie_header;
    use crate::destinations::Destination;
    use serde_json::Value;

    fn render_with(cookie: &[u8], write_key: &str, destination: &str) -> String {
        let config = Config::from_vars(|k| (k == "WRITE_KEYS").then(|| "wk".to_owned()));
        let list = [Destination {
            name: destination.into(),
            creation_name: destination.into(),
            category: "Analytics".into(),
            consent_categories: vec![],
        }];
        let set = DestinationSet::new(&list, &config);
        let state = ConsentState::resolve(
            &config,
            &parse_cookie_header(cookie),
            RequestSignals::default(),
        );
        let resolution = Resolution::of_state(&config, &set, &state);
        let input = LoaderInput {
            write_key,
            origin: Origin {
                scheme: "https",
                host: "shop.example",
                prefix: "/edge",
            },
            mode: Mode::Both,
            page: true,
            set: &set,
            resolution: &resolution,
            hold_ms: 2500,
        };
        String::from_utf8(render(&input)).unwrap()
    }

    /// The JSON between the template's head and tail.
    fn data(js: &str) -> Value {
        let (head, tail) = template();
        serde_json::from_str(&js[head.len()..js.len() - tail.len()]).unwrap()
    }

    #[test]
    fn embeds_the_resolved_consent_and_the_first_party_urls() {
        let js = render_with(b"OptanonConsent=groups=C0001:1,C0002:1", "wk", "GA4");
        assert!(js.starts_with("/*! consent-edge loader"));
        assert!(!js.contains(MARKER));
        let data = data(&js);
        assert_eq!(data["cdn"], "https://shop.example/edge/cdn");
        assert_eq!(data["apiHost"], "shop.example/edge/api/v1");
        assert_eq!(data["consentUrl"], "/edge/consent?wk=wk");
        assert_eq!(
            data["consent"]["integrations"],
            serde_json::json!({"All": false, "GA4": true, "Segment.io": true})
        );
        assert_eq!(
            data["consent"]["groups"],
            serde_json::json!({"C0001": true, "C0002": true})
        );
        assert_eq!(data["consent"]["onetrust"], "C0001:1,C0002:1");
        assert_eq!(data["page"], true);
        assert_eq!(data["hold"], 2500);
    }

    #[test]
    fn holds_only_undecided_visitors_whose_decision_could_change_something() {
        let list = [Destination {
            name: "GA4".into(),
            creation_name: "GA4".into(),
            category: "Analytics".into(),
            consent_categories: vec![],
        }];
        let hold = |vars: &[(&str, &str)], cookie: &str| {
            let config = Config::from_vars(|k| {
                vars.iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
                    .or_else(|| (k == "WRITE_KEYS").then(|| "wk".to_owned()))
            });
            let set = DestinationSet::new(&list, &config);
            let state = ConsentState::resolve(
                &config,
                &parse_cookie_header(cookie.as_bytes()),
                RequestSignals::default(),
            );
            hold_ms(
                &config,
                &state,
                &Resolution::of_state(&config, &set, &state),
            )
        };
        assert_eq!(hold(&[], ""), 10_000, "a new visitor under opt-in");
        assert_eq!(
            hold(
                &[],
                "OptanonConsent=groups=C0001:1,C0002:0&interactionCount=0"
            ),
            10_000,
            "OneTrust's cookie before any interaction"
        );
        assert_eq!(hold(&[("PRE_CONSENT_HOLD_MS", "2500")], ""), 2500);
        assert_eq!(hold(&[("PRE_CONSENT_HOLD_MS", "0")], ""), 0, "off");
        assert_eq!(
            hold(&[], "OptanonAlertBoxClosed=2026-11-23T09:00:00.000Z"),
            0,
            "decided, even with nothing granted"
        );
        assert_eq!(
            hold(
                &[],
                "OptanonConsent=groups=C0001:1,C0002:0&interactionCount=1"
            ),
            0,
            "decided: refused"
        );
        assert_eq!(
            hold(&[("CONSENT_MODEL", "opt-out")], ""),
            0,
            "undecided, but every destination is already on"
        );
    }

    #[test]
    fn hostile_values_cannot_break_out() {
        let hostile = "</script><script>alert(1)</script>'\"\\\u{2028}\u{2029}<!--";
        let cookie = format!(
            "OptanonConsent=groups=C0001:1,{}:1",
            hostile.replace(',', "")
        );
        let js = render_with(cookie.as_bytes(), hostile, hostile);
        let (head, tail) = template();
        let block = &js[head.len()..js.len() - tail.len()];
        for bad in ["<", ">", "'", "\u{2028}", "\u{2029}", "&"] {
            assert!(!block.contains(bad), "{bad:?} in {block}");
        }
        let data = data(&js);
        assert_eq!(data["writeKey"], hostile);
        assert!(data["consent"]["integrations"].get(hostile).is_some());
    }
}
