//! Any body on any tracking endpoint is either refused or rewritten into JSON
//! that grants no destination or group the cookie refuses, and whose every
//! event carries exactly the edge's receipt (none with `RECEIPTS = "off"`);
//! rewriting the rewrite changes nothing. Each body runs under every scenario
//! (MODE and RECEIPTS × cookie).
#![no_main]

mod common;

use consent_edge::config::Config;
use consent_edge::consent::{collection, ConsentState, Grants, RequestSignals};
use consent_edge::cookie::parse_cookie_header;
use consent_edge::destinations::{Destination, DestinationSet};
use consent_edge::events::{self, Endpoint, Enforced, Enforcer, Refusal};
use consent_edge::json;
use consent_edge::receipt::Receipt;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

/// `Basic base64("wk_live:")`, as analytics.js sends it.
const AUTH: &str = "Basic d2tfbGl2ZTo=";
const CLIENT_IP: &str = "203.0.113.7";
/// Groups no granted id of any scenario contains, so that `g:1` anywhere in a
/// groups string can only be a claim on `g`.
const SUBSTRING_SAFE_GROUPS: [&str; 5] = ["C0002", "C0003", "C0004", "C0005", "SSPD_BG"];

struct Scenario {
    config: Config,
    set: DestinationSet,
    state: ConsentState,
    /// The receipt the edge stamps; `None` with `RECEIPTS = "off"`.
    receipt: Option<Value>,
}

/// Segment destinations as the Projects API lists them; no name of one is
/// another's creationName, so an `integrations` key names one destination.
fn destinations() -> Vec<Destination> {
    let d = |name: &str, creation_name: &str, category: &str, consent: &[&str]| Destination {
        name: name.into(),
        creation_name: creation_name.into(),
        category: category.into(),
        consent_categories: consent.iter().map(|c| c.to_string()).collect(),
    };
    vec![
        d(
            "Google Analytics 4 Web",
            "Google Analytics 4 Web",
            "Analytics",
            &[],
        ),
        d(
            "Amplitude (Actions)",
            "Actions Amplitude",
            "Analytics",
            &["C0002"],
        ),
        d("Facebook Pixel", "Facebook Pixel", "Advertising", &[]),
        d(
            "Braze Cloud Mode (Actions)",
            "Actions Braze",
            "",
            &["C0002", "C0004"],
        ),
        d(
            "Intercom Web (Actions)",
            "Intercom Web (Actions)",
            "Livechat",
            &[],
        ),
        d("Twitter Ads", "Twitter Ads", "Social Media", &[]),
        d("Webhooks", "Webhooks", "Raw Data", &[]),
        d("Homegrown Tool", "Homegrown Tool", "Other", &[]),
    ]
}

fn scenarios() -> &'static [Scenario] {
    static SCENARIOS: OnceLock<Vec<Scenario>> = OnceLock::new();
    SCENARIOS.get_or_init(|| {
        let configs = [
            common::config(&[]),
            common::config(&[
                ("MODE", "integrations"),
                ("ALL_DEFAULT", "true"),
                ("RECEIPTS", "with-id"),
            ]),
            common::config(&[
                ("MODE", "context"),
                ("COLLECTION_GROUP", "C0002"),
                ("DESTINATION_MAP", r#"{"Webhooks": ["C0002", "SSPD_BG"]}"#),
                ("RECEIPTS", "off"),
            ]),
        ];
        let cookies = [
            (
                "OptanonConsent=groups=C0001:1,C0002:1,C0003:0,C0004:0,SSPD_BG:1&interactionCount=1&consentId=6fcfe4fe-8de9; OptanonAlertBoxClosed=2026-11-23T09:00:00.000Z",
                false,
            ),
            ("", false),
            // Everything granted, then GPC without an explicit choice: C0004 denied.
            (
                "OptanonConsent=groups=C0001:1,C0002:1,C0003:1,C0004:1,C0005:1&interactionCount=0",
                true,
            ),
        ];
        let list = destinations();
        let mut scenarios = Vec::new();
        for config in &configs {
            assert!(!config.locked_down());
            for (cookie, sec_gpc) in cookies {
                let state = ConsentState::resolve(
                    config,
                    &parse_cookie_header(cookie.as_bytes()),
                    RequestSignals {
                        sec_gpc,
                        country: Some("DE"),
                    },
                );
                let set = DestinationSet::new(&list, config);
                let receipt = Receipt::new(config, &state, set.rules().digest())
                    .map(|r| serde_json::from_slice(&r.to_json()).expect("a receipt is JSON"));
                scenarios.push(Scenario {
                    config: config.clone(),
                    set,
                    state,
                    receipt,
                });
            }
        }
        scenarios
    })
}

fuzz_target!(|body: &[u8]| {
    let first = &scenarios()[0];
    // Metrics go upstream as they came.
    if let Ok(parsed) = events::parse(&first.config, Endpoint::Metrics, body, None) {
        let enforced = Enforcer::new(&first.config, &first.set, &first.state, None).enforce(parsed);
        assert_eq!(enforced.body.as_deref(), Some(body));
    }
    for endpoint in [Endpoint::Event, Endpoint::Batch] {
        for s in scenarios() {
            // Whether a body is refused does not depend on MODE or the cookie.
            let Ok(parsed) = events::parse(&s.config, endpoint, body, Some(AUTH)) else {
                break;
            };
            let enforced = enforce(s, parsed);
            check(s, endpoint, body, &enforced);
        }
    }
});

fn enforce(s: &Scenario, parsed: events::Parsed<'_>) -> Enforced {
    Enforcer::new(&s.config, &s.set, &s.state, Some(CLIENT_IP)).enforce(parsed)
}

fn check(s: &Scenario, endpoint: Endpoint, input: &[u8], enforced: &Enforced) {
    if endpoint == Endpoint::Event {
        assert_eq!(enforced.counts.forwarded + enforced.counts.dropped, 1);
    }
    let Some(out) = &enforced.body else {
        assert_eq!(enforced.counts.forwarded, 0);
        return;
    };
    assert!(enforced.counts.forwarded > 0);
    assert!(
        collection(&s.config, &s.state),
        "forwarded although collection is refused"
    );

    match serde_json::from_slice::<Value>(out) {
        Ok(value) => {
            let batch = value.get("batch").and_then(Value::as_array);
            let events: Vec<&Value> = match (endpoint, batch) {
                (Endpoint::Batch, Some(batch)) => batch.iter().collect(),
                _ => vec![&value],
            };
            let envelope = (endpoint == Endpoint::Batch).then_some(&value);
            for object in events.iter().copied().chain(envelope) {
                check_consent(s, object);
            }
            for event in events {
                let receipt = event.pointer("/context/consent/receipt");
                assert_eq!(receipt, s.receipt.as_ref(), "not the edge's receipt");
            }
            if endpoint == Endpoint::Batch {
                // The envelope is corrected, never extended.
                let receipt = value.pointer("/context/consent/receipt");
                assert!(receipt.is_none() || receipt == s.receipt.as_ref());
            }
        }
        Err(e) => {
            // The scanner accepts on purpose what serde_json refuses (a lone
            // surrogate escape, a number beyond f64): only from the input.
            assert!(
                serde_json::from_slice::<Value>(input).is_err(),
                "the output is not JSON ({e}): {}",
                String::from_utf8_lossy(out)
            );
            let text = std::str::from_utf8(out).expect("the output is UTF-8");
            json::validate(text).expect("the output is JSON");
        }
    }

    match events::parse(&s.config, endpoint, out, Some(AUTH)) {
        Ok(parsed) => {
            let again = enforce(s, parsed);
            assert!(
                again.body.as_deref() == Some(&out[..]),
                "rewriting is not idempotent:\n{}\n{}",
                String::from_utf8_lossy(out),
                String::from_utf8_lossy(again.body.as_deref().unwrap_or(b"(dropped)"))
            );
            assert_eq!(again.counts.dropped, 0);
        }
        // The stamps can take an event that was just under the limit over it.
        Err(Refusal::BodyTooLarge { .. } | Refusal::EventTooLarge { .. }) => {}
        Err(r) => panic!("the rewrite is refused: {r}"),
    }
}

/// An event (or a batch envelope) claims nothing the cookie refuses.
fn check_consent(s: &Scenario, object: &Value) {
    let all_default = s.config.all_default;
    let allowed = |key: &str| match key {
        // Forwarded at all means collection is consented.
        "Segment.io" => true,
        "All" => all_default,
        key => match s
            .set
            .destinations()
            .iter()
            .find(|d| d.key == key || d.name == key)
        {
            Some(d) if !d.groups.is_empty() => d.groups.iter().all(|g| s.state.granted(g)),
            // Unmapped, or a key the list does not know.
            _ => all_default,
        },
    };
    if let Some(integrations) = object.get("integrations").and_then(Value::as_object) {
        for (key, value) in integrations {
            assert!(
                allowed(key) || *value == Value::Bool(false),
                "integrations[{key:?}] = {value} is not consented"
            );
        }
    }

    let strict = s.state.strict_group();
    let refused = |g: &str| g != strict && !s.state.granted(g);
    let Some(consent) = object.pointer("/context/consent") else {
        return;
    };
    if let Some(prefs) = consent
        .get("categoryPreferences")
        .and_then(Value::as_object)
    {
        for (g, value) in prefs {
            assert!(
                !(refused(g) && *value == Value::Bool(true)),
                "categoryPreferences[{g:?}] is true"
            );
        }
    }
    if let Some(onetrust) = consent.get("onetrust").and_then(Value::as_str) {
        for (g, v) in onetrust.split(',').filter_map(|e| e.split_once(':')) {
            assert!(
                !(refused(g.trim()) && v.trim() == "1"),
                "onetrust grants {g:?}: {onetrust:?}"
            );
        }
        // A Destination Filter matches "contains C0004:1" anywhere in the string.
        for g in SUBSTRING_SAFE_GROUPS.into_iter().filter(|g| refused(g)) {
            assert!(
                !onetrust.contains(&format!("{g}:1")),
                "onetrust contains {g}:1: {onetrust:?}"
            );
        }
    }
}
