//! Properties of the tracking proxy's rewrite, over generated analytics.js
//! events, cookies and configurations in every MODE: consent is never
//! upgraded, rewriting is idempotent, every byte the rewrite does not own goes
//! out as it came, a batch is rewritten as its events would be alone, and
//! every forwarded event carries exactly the edge's receipt.
//!
//! What each event may receive is worked out here from the generated cookie
//! and stamps, by the rules of DESIGN.md, not by asking the crate.

use consent_edge::config::Config;
use consent_edge::consent::{ConsentState, RequestSignals};
use consent_edge::cookie::parse_cookie_header;
use consent_edge::destinations::{Destination, DestinationSet};
use consent_edge::events::{self, Endpoint, Enforced, Enforcer};
use consent_edge::json::RawObject;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const WRITE_KEY: &str = "wk_live";
/// `Basic base64("wk_live:")`, as analytics.js sends it.
const AUTH: &str = "Basic d2tfbGl2ZTo=";
const CLIENT_IP: &str = "203.0.113.7";
const CONSENT_ID: &str = "0823f385-4b64-4cf2-96a9-3f2c1b9a7d10";
const MODES: [&str; 3] = ["both", "integrations", "context"];
const STRICT: &str = "C0001";
const GPC_GROUP: &str = "C0004";
/// The groups cookies and stamps name: OneTrust's standard ones and custom ids.
const GROUPS: [&str; 8] = [
    "C0001", "C0002", "C0003", "C0004", "C0005", "SSPD_BG", "STACK42", "1",
];
/// Groups only an event's stamp names.
const STAMP_ONLY_GROUPS: [&str; 1] = ["C0009"];

/// A destination, and the groups it needs under [`DESTINATION_MAP`] and the
/// default category table (none: unmapped, `ALL_DEFAULT` decides).
struct Dest {
    name: &'static str,
    creation_name: &'static str,
    category: &'static str,
    consent: &'static [&'static str],
    needs: &'static [&'static str],
}

const DESTINATIONS: [Dest; 7] = [
    Dest {
        name: "Google Analytics 4 Web",
        creation_name: "Google Analytics 4 Web",
        category: "Analytics",
        consent: &[],
        needs: &["C0002"],
    },
    Dest {
        name: "Amplitude (Actions)",
        creation_name: "Actions Amplitude",
        category: "Analytics",
        consent: &["C0002", "STACK42"],
        needs: &["C0002", "STACK42"],
    },
    Dest {
        name: "Facebook Pixel",
        creation_name: "Facebook Pixel",
        category: "Advertising",
        consent: &[],
        needs: &["C0004"],
    },
    Dest {
        name: "Intercom Web (Actions)",
        creation_name: "Intercom Web (Actions)",
        category: "Livechat",
        consent: &[],
        needs: &["C0003"],
    },
    Dest {
        name: "Twitter Ads",
        creation_name: "Twitter Ads",
        category: "Social Media",
        consent: &[],
        needs: &["C0005"],
    },
    Dest {
        name: "Braze Web Mode (Actions)",
        creation_name: "Actions Braze Web",
        category: "Email Marketing",
        consent: &[],
        needs: &["C0003", "SSPD_BG"],
    },
    Dest {
        name: "Homegrown Tool",
        creation_name: "Homegrown Tool",
        category: "Other",
        consent: &[],
        needs: &[],
    },
];
const DESTINATION_MAP: &str = r#"{"Braze Web Mode (Actions)": ["C0003", "SSPD_BG"]}"#;
/// `integrations` keys that name no destination of the list.
const UNKNOWN_DESTINATIONS: [&str; 2] = ["Mixpanel", "Custom Webhook"];

/// One visitor under one configuration (MODE aside).
#[derive(Debug, Clone)]
struct Setup {
    /// The cookie's groups; `None`: no cookie. No entries: an unusable cookie.
    cookie: Option<Vec<(&'static str, bool)>>,
    encode_cookie: bool,
    interaction_count: u32,
    sec_gpc: bool,
    opt_out: bool,
    all_default: bool,
    collection_group: Option<&'static str>,
    receipts: &'static str,
}

impl Setup {
    fn config(&self, mode: &str) -> Config {
        Config::from_vars(|key| {
            let value = match key {
                "WRITE_KEYS" => WRITE_KEY,
                "MODE" => mode,
                "CONSENT_MODEL" if self.opt_out => "opt-out",
                "ALL_DEFAULT" => ["false", "true"][usize::from(self.all_default)],
                "DESTINATION_MAP" => DESTINATION_MAP,
                "COLLECTION_GROUP" => self.collection_group?,
                "RECEIPTS" => self.receipts,
                _ => return None,
            };
            Some(value.to_owned())
        })
    }

    fn cookie_header(&self) -> String {
        let Some(entries) = &self.cookie else {
            return "_ga=GA1.1.1234567890.1795600000".to_owned();
        };
        let groups: Vec<String> = entries
            .iter()
            .map(|(g, v)| format!("{g}:{}", u8::from(*v)))
            .collect();
        let mut groups = groups.join(",");
        if self.encode_cookie {
            groups = groups.replace(':', "%3A").replace(',', "%2C");
        }
        format!(
            "_ga=GA1.1.1; OptanonConsent=isGpcEnabled=0&version=202409.1.0&consentId={CONSENT_ID}&interactionCount={}&groups={groups}&geolocation=DE%3BBE",
            self.interaction_count
        )
    }

    /// The receipt every forwarded event carries, as the edge writes it
    /// (`None` with `RECEIPTS = "off"`); `rules` is the list's digest.
    fn receipt(&self, rules: &str) -> Option<String> {
        let usable = self.cookie.as_ref().is_some_and(|e| !e.is_empty());
        let source = match (usable, self.interaction_count) {
            (false, _) => "default",
            (true, 0) => "cookie",
            (true, _) => "choice",
        };
        let consent_id = match self.receipts {
            "off" => return None,
            "with-id" if usable => format!(r#","consentId":"{CONSENT_ID}""#),
            "with-id" => r#","consentId":null"#.to_owned(),
            _ => String::new(),
        };
        Some(format!(
            r#"{{"v":1,"source":"{source}","decidedAt":null,"gpc":{},"country":null,"rules":"{rules}"{consent_id}}}"#,
            self.sec_gpc
        ))
    }

    /// Whether the request (cookie, model, GPC) grants `group`.
    fn cookie_grants(&self, group: &str) -> bool {
        let says = |v: bool| {
            self.cookie
                .as_ref()
                .is_some_and(|e| e.iter().any(|&(g, granted)| g == group && granted == v))
        };
        let usable = self.cookie.as_ref().is_some_and(|e| !e.is_empty());
        let base = if usable { says(true) } else { self.opt_out };
        let chose = usable && self.interaction_count >= 1 && says(true);
        group == STRICT || (base && !(self.sec_gpc && group == GPC_GROUP && !chose))
    }
}

fn setup() -> impl Strategy<Value = Setup> {
    let entries = prop::sample::subsequence(GROUPS.to_vec(), 0..=GROUPS.len())
        .prop_flat_map(|groups| {
            let n = groups.len();
            (Just(groups), prop::collection::vec(any::<bool>(), n))
        })
        .prop_map(|(groups, grants)| groups.into_iter().zip(grants).collect());
    (
        prop::option::weighted(0.8, entries),
        any::<bool>(),
        0..3u32,
        prop::bool::weighted(0.3),
        any::<bool>(),
        any::<bool>(),
        prop::option::weighted(0.2, Just("C0002")),
        prop::sample::select(vec!["on", "off", "with-id"]),
    )
        .prop_map(
            |(
                cookie,
                encode_cookie,
                interaction_count,
                sec_gpc,
                opt_out,
                all_default,
                cg,
                receipts,
            )| {
                Setup {
                    cookie,
                    encode_cookie,
                    interaction_count,
                    sec_gpc,
                    opt_out,
                    all_default,
                    collection_group: cg,
                    receipts,
                }
            },
        )
}

/// An event as its top-level fields, each with the JSON text it is sent as.
#[derive(Debug, Clone)]
struct Event {
    fields: Vec<(String, Value)>,
    pretty: bool,
}

impl Event {
    fn raw(&self, value: &Value) -> String {
        if self.pretty {
            serde_json::to_string_pretty(value).unwrap()
        } else {
            value.to_string()
        }
    }

    fn body(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{}: {}", json!(k), self.raw(v)))
            .collect();
        format!("{{{}}}", fields.join(", "))
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The groups the event's own consent refuses: `categoryPreferences[g]
    /// === false`, or `g:0` in `onetrust`.
    fn refuses(&self) -> Vec<String> {
        let consent = self.get("context").and_then(|c| c.get("consent"));
        let prefs = consent
            .and_then(|c| c.get("categoryPreferences"))
            .and_then(Value::as_object);
        let mut refused: Vec<String> = prefs
            .into_iter()
            .flatten()
            .filter(|(_, v)| **v == Value::Bool(false))
            .map(|(g, _)| g.clone())
            .collect();
        let onetrust = consent
            .and_then(|c| c.get("onetrust"))
            .and_then(Value::as_str);
        for (g, v) in onetrust.into_iter().flat_map(onetrust_entries) {
            if v == "0" {
                refused.push(g.to_owned());
            }
        }
        refused
    }

    fn refuses_collection(&self) -> bool {
        self.get("integrations")
            .and_then(|i| i.get("Segment.io"))
            .is_some_and(|v| *v == Value::Bool(false))
    }
}

/// `g:v` entries of a OneTrust groups string, trimmed.
fn onetrust_entries(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split(',').filter_map(|e| {
        let (g, v) = e.split_once(':')?;
        Some((g.trim(), v.trim())).filter(|(g, _)| !g.is_empty())
    })
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        "[a-zA-Z0-9 ./:<>&'\"\\\\\n\t\u{e9}\u{2028}\u{1f600}]{0,16}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            object_of(inner),
        ]
    })
}

fn object_of(values: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z_$]{1,10}", values, 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn some_group() -> impl Strategy<Value = &'static str> {
    prop::sample::select([&GROUPS[..], &STAMP_ONLY_GROUPS[..]].concat())
}

/// `context.consent` as analytics.js plugins (or a tampered client) stamp it.
fn consent() -> impl Strategy<Value = Value> {
    let preference = prop_oneof![
        4 => any::<bool>().prop_map(Value::Bool),
        1 => Just(json!("yes")),
        1 => Just(Value::Null),
    ];
    let prefs = prop::collection::btree_map(some_group(), preference, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().map(|(g, v)| (g.to_owned(), v)).collect()));
    let entry = (
        some_group(),
        prop::sample::select(vec![":1", ":0", " : 1 ", ":0 ", ":x", "", ":"]),
    )
        .prop_map(|(g, v)| format!("{g}{v}"));
    let onetrust = prop::collection::vec(entry, 0..6).prop_map(|e| Value::String(e.join(",")));
    // A receipt the page stamped: forged, stale, or not even an object.
    let receipt = prop_oneof![
        Just(
            json!({"v": 1, "source": "choice", "decidedAt": "2026-11-23T09:00:00.000Z",
                    "gpc": false, "country": null, "rules": "0123456789abcdef"})
        ),
        value(),
    ];
    (
        prop::option::of(prefs),
        prop::option::of(onetrust),
        prop::option::of(value()),
        prop::option::weighted(0.3, receipt),
    )
        .prop_map(|(prefs, onetrust, other, receipt)| {
            let mut consent = Map::new();
            if let Some(prefs) = prefs {
                consent.insert("categoryPreferences".into(), prefs);
            }
            if let Some(onetrust) = onetrust {
                consent.insert("onetrust".into(), onetrust);
            }
            if let Some(other) = other {
                consent.insert("source".into(), other);
            }
            if let Some(receipt) = receipt {
                consent.insert("receipt".into(), receipt);
            }
            Value::Object(consent)
        })
}

fn context() -> impl Strategy<Value = Value> {
    (
        object_of(value()),
        prop::option::of(consent()),
        prop::option::weighted(0.3, Just("198.51.100.1")),
    )
        .prop_map(|(extra, consent, ip)| {
            let mut context = json!({
                "page": {"path": "/checkout", "url": "https://shop.example/checkout", "title": "Checkout"},
                "library": {"name": "analytics.js", "version": "npm:next-1.84.0"},
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0 Safari/537.36",
                "locale": "de-DE",
            });
            let object = context.as_object_mut().unwrap();
            if let Value::Object(extra) = extra {
                object.extend(extra);
            }
            if let Some(consent) = consent {
                object.insert("consent".into(), consent);
            }
            if let Some(ip) = ip {
                object.insert("ip".into(), json!(ip));
            }
            context
        })
}

/// A stamped `integrations`: known destinations (by creationName or name),
/// unknown ones, `All` and `Segment.io`, each true, false or options.
fn integrations() -> impl Strategy<Value = Value> {
    let mut keys: Vec<&str> = DESTINATIONS
        .iter()
        .flat_map(|d| [d.creation_name, d.name])
        .collect();
    keys.extend(UNKNOWN_DESTINATIONS);
    keys.extend(["All", "Segment.io"]);
    keys.dedup();
    let setting = prop_oneof![
        3 => Just(json!(true)),
        3 => Just(json!(false)),
        1 => Just(json!({"apiKey": "k-123", "sendPageView": false})),
    ];
    prop::collection::btree_map(prop::sample::select(keys), setting, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn event() -> impl Strategy<Value = Event> {
    (
        prop::sample::select(vec!["track", "page", "identify", "group", "screen"]),
        any::<bool>(),
        object_of(value()),
        prop::option::of(object_of(value())),
        prop::option::weighted(0.9, context()),
        prop::option::weighted(0.7, integrations()),
        any::<bool>(),
    )
        .prop_flat_map(
            |(kind, with_write_key, properties, traits, context, integrations, pretty)| {
                let mut fields: Vec<(String, Value)> = vec![
                    ("type".into(), json!(kind)),
                    ("messageId".into(), json!("ajs-next-1795600000107-3f2c1b9a")),
                    ("anonymousId".into(), json!("0823f385-4b64-4cf2-96a9")),
                    ("userId".into(), Value::Null),
                    ("timestamp".into(), json!("2026-11-25T10:00:00.107Z")),
                    ("properties".into(), properties),
                    (
                        "_metadata".into(),
                        json!({"bundled": ["Segment.io"], "unbundled": []}),
                    ),
                ];
                if kind == "track" {
                    fields.push(("event".into(), json!("Order Completed")));
                }
                if with_write_key {
                    fields.push(("writeKey".into(), json!(WRITE_KEY)));
                }
                let optional = [
                    ("traits", traits),
                    ("context", context),
                    ("integrations", integrations),
                ];
                for (key, value) in optional {
                    if let Some(value) = value {
                        fields.push((key.into(), value));
                    }
                }
                (Just(fields).prop_shuffle(), Just(pretty))
            },
        )
        .prop_map(|(fields, pretty)| Event { fields, pretty })
}

/// A request's enforcement under one setup and MODE.
struct Proxy {
    config: Config,
    set: DestinationSet,
    state: ConsentState,
}

impl Proxy {
    fn new(setup: &Setup, mode: &str) -> Proxy {
        let config = setup.config(mode);
        assert!(!config.locked_down(), "{:?}", config.errors);
        let list: Vec<Destination> = DESTINATIONS
            .iter()
            .map(|d| Destination {
                name: d.name.into(),
                creation_name: d.creation_name.into(),
                category: d.category.into(),
                consent_categories: d.consent.iter().map(|c| c.to_string()).collect(),
            })
            .collect();
        let state = ConsentState::resolve(
            &config,
            &parse_cookie_header(setup.cookie_header().as_bytes()),
            RequestSignals {
                sec_gpc: setup.sec_gpc,
                country: Some("DE"),
            },
        );
        Proxy {
            set: DestinationSet::new(&list, &config),
            config,
            state,
        }
    }

    fn enforce(&self, endpoint: Endpoint, body: &[u8]) -> Enforced {
        let parsed = events::parse(&self.config, endpoint, body, Some(AUTH))
            .unwrap_or_else(|r| panic!("refused ({r}): {}", String::from_utf8_lossy(body)));
        Enforcer::new(&self.config, &self.set, &self.state, Some(CLIENT_IP)).enforce(parsed)
    }
}

/// Each MODE's proxy under `setup`, with what it makes of `event` (`None`: dropped).
fn in_every_mode<'a>(
    setup: &'a Setup,
    event: &'a Event,
) -> impl Iterator<Item = (&'static str, Proxy, Option<Vec<u8>>)> + 'a {
    MODES.into_iter().map(move |mode| {
        let proxy = Proxy::new(setup, mode);
        let out = proxy.enforce(Endpoint::Event, event.body().as_bytes()).body;
        (mode, proxy, out)
    })
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("the rewrite is JSON")
}

/// The raw text of each field of a JSON object.
fn raw_fields(text: &str) -> Vec<(String, String)> {
    RawObject::parse(text)
        .expect("an object")
        .iter()
        .map(|e| (e.key().to_owned(), e.value().to_owned()))
        .collect()
}

fn raw_of<'f>(fields: &'f [(String, String)], key: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

proptest! {
    // About 3 s for the five on two cores (debug build).
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn refused_consent_is_never_granted(setup in setup(), event in event()) {
        let refused_by_event = event.refuses();
        let granted = |g: &str| {
            g == STRICT || (setup.cookie_grants(g) && !refused_by_event.iter().any(|r| r == g))
        };
        let collection = !event.refuses_collection()
            && setup.collection_group.is_none_or(granted);
        for (mode, _, out) in in_every_mode(&setup, &event) {
            prop_assert_eq!(out.is_some(), collection, "{} forwarded?", mode);
            let Some(out) = out else { continue };
            let out = parse(&out);

            let consent = &out["context"]["consent"];
            if let Some(prefs) = consent["categoryPreferences"].as_object() {
                for (g, v) in prefs {
                    prop_assert!(
                        granted(g) || *v != json!(true),
                        "{}: categoryPreferences[{}] in {}", mode, g, out
                    );
                }
            }
            if let Some(onetrust) = consent["onetrust"].as_str() {
                for (g, v) in onetrust_entries(onetrust) {
                    prop_assert!(
                        granted(g) || v != "1",
                        "{}: onetrust grants {} in {}", mode, g, out
                    );
                }
            }
            for (key, v) in out["integrations"].as_object().into_iter().flatten() {
                let dest = DESTINATIONS.iter().find(|d| d.creation_name == key || d.name == key);
                let allowed = match dest {
                    Some(d) if d.needs.is_empty() => setup.all_default,
                    Some(d) => d.needs.iter().all(|g| granted(g)),
                    // `Segment.io`: forwarded at all means collection is consented.
                    None if key == "Segment.io" => true,
                    // `All`, and keys that name no destination of the list.
                    None => setup.all_default,
                };
                prop_assert!(
                    allowed || *v == json!(false),
                    "{}: integrations[{}] = {} in {}", mode, key, v, out
                );
            }
        }
    }

    #[test]
    fn rewriting_is_idempotent(setup in setup(), event in event()) {
        for (mode, proxy, once) in in_every_mode(&setup, &event) {
            let Some(once) = once else { continue };
            let twice = proxy.enforce(Endpoint::Event, &once).body;
            prop_assert_eq!(
                twice.as_deref().map(String::from_utf8_lossy),
                Some(String::from_utf8_lossy(&once)),
                "{}", mode
            );
        }
    }

    #[test]
    fn fields_the_rewrite_does_not_own_go_out_byte_for_byte(setup in setup(), event in event()) {
        for (mode, _, out) in in_every_mode(&setup, &event) {
            let Some(out) = out else { continue };
            let out = raw_fields(std::str::from_utf8(&out).unwrap());
            for (key, value) in &event.fields {
                if key != "integrations" && key != "context" {
                    let sent = event.raw(value);
                    prop_assert_eq!(raw_of(&out, key), Some(sent.as_str()), "{}: {}", mode, key);
                }
            }
            for (key, _) in &out {
                prop_assert!(
                    event.get(key).is_some() || key == "integrations" || key == "context",
                    "{}: {} added", mode, key
                );
            }

            let Some(context) = event.get("context") else { continue };
            let context = raw_fields(&event.raw(context));
            let out_context = raw_fields(raw_of(&out, "context").expect("context kept"));
            for (key, value) in &context {
                if key != "consent" && key != "ip" {
                    prop_assert_eq!(
                        raw_of(&out_context, key), Some(value.as_str()),
                        "{}: context.{}", mode, key
                    );
                }
            }
            let ip = json!(CLIENT_IP).to_string();
            let ip = raw_of(&context, "ip").unwrap_or(&ip);
            prop_assert_eq!(raw_of(&out_context, "ip"), Some(ip), "{}: context.ip", mode);
        }
    }

    #[test]
    fn every_forwarded_event_has_exactly_the_edges_receipt(setup in setup(), event in event()) {
        for (mode, proxy, out) in in_every_mode(&setup, &event) {
            let Some(out) = out else { continue };
            let out = raw_fields(std::str::from_utf8(&out).unwrap());
            let context = raw_fields(raw_of(&out, "context").expect("a context"));
            let rules = proxy.set.rules().digest().to_string();
            let Some(expected) = setup.receipt(&rules) else {
                // Off: none, not even one the page stamped.
                let consent = raw_of(&context, "consent").filter(|c| *c != "null");
                prop_assert!(
                    consent.is_none_or(|c| raw_of(&raw_fields(c), "receipt").is_none()),
                    "{}: a receipt with RECEIPTS=off", mode
                );
                continue;
            };
            let consent = raw_fields(raw_of(&context, "consent").expect("a consent"));
            prop_assert_eq!(raw_of(&consent, "receipt"), Some(expected.as_str()), "{}", mode);
            // Under MODE=integrations the receipt is all the edge adds to a consent.
            let stamped = event.get("context").and_then(|c| c.get("consent")).filter(|c| c.is_object());
            if mode == "integrations" && stamped.is_none() {
                prop_assert_eq!(consent.len(), 1, "{}: {:?}", mode, consent);
            }
        }
    }

    #[test]
    fn a_batch_is_rewritten_as_its_events_alone(
        setup in setup(),
        events in prop::collection::vec(event(), 1..5),
    ) {
        let batch: Vec<String> = events.iter().map(Event::body).collect();
        let body = format!(
            r#"{{"batch": [{}], "writeKey": "{WRITE_KEY}", "sentAt": "2026-11-25T10:00:00.500Z"}}"#,
            batch.join(", ")
        );
        for mode in MODES {
            let proxy = Proxy::new(&setup, mode);
            let enforced = proxy.enforce(Endpoint::Batch, body.as_bytes());
            let alone: Vec<Value> = batch
                .iter()
                .filter_map(|e| proxy.enforce(Endpoint::Event, e.as_bytes()).body)
                .map(|b| parse(&b))
                .collect();
            prop_assert_eq!(enforced.counts.forwarded, alone.len());
            prop_assert_eq!(enforced.counts.dropped, events.len() - alone.len());
            let in_batch = enforced.body.map_or(json!([]), |b| parse(&b)["batch"].clone());
            prop_assert_eq!(in_batch, Value::Array(alone), "{}", mode);
        }
    }
}
