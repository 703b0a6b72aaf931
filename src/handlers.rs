//! What each route answers, as plain functions of what the glue read from
//! the request, from KV and from upstream.

use crate::cdn::{self, CdnPath};
use crate::config::{Config, Receipts};
use crate::consent::{verdict, ConsentState, Explanation, RequestSignals, Resolution};
use crate::cookie::OneTrustReading;
use crate::destinations::DestinationSet;
use crate::events::{Counts, Endpoint, Enforced};
use crate::http::{FetchFailure, Fetched, Reply, UrlParts};
use crate::json::ObjectWriter;
use crate::loader::{self, LoaderInput, Origin};
use crate::receipt::Receipt;
use crate::refresh::{short_key, RefreshStatus};
use crate::routes::query_param;
use crate::rules::RulesDigest;
use crate::time::parse_rfc3339;
use std::rc::Rc;

/// How long the proxy waits for Segment before answering 504.
pub const UPSTREAM_TIMEOUT_MS: u32 = 10_000;

/// The visitor signals consent depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Visitor<'a> {
    pub cookie: &'a [u8],
    /// `Sec-GPC: 1`.
    pub sec_gpc: bool,
    /// Cloudflare's country for the request.
    pub country: Option<&'a str>,
}

pub fn resolve(config: &Config, visitor: Visitor<'_>) -> ConsentState {
    VisitorKey::of(visitor).resolve(config)
}

/// All that a visitor's consent is made of: visitors with equal keys resolve
/// equally under one configuration, so the Worker keeps states by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorKey {
    cookies: OneTrustReading,
    sec_gpc: bool,
    country: Option<String>,
}

impl VisitorKey {
    pub fn of(visitor: Visitor<'_>) -> VisitorKey {
        VisitorKey {
            cookies: OneTrustReading::of(visitor.cookie),
            sec_gpc: visitor.sec_gpc,
            country: visitor.country.map(str::to_owned),
        }
    }

    pub fn resolve(&self, config: &Config) -> ConsentState {
        let signals = RequestSignals {
            sec_gpc: self.sec_gpc,
            country: self.country.as_deref(),
        };
        ConsentState::resolve(config, &self.cookies.cookies(), signals)
    }
}

/// Whether a `Sec-GPC` header value is the GPC signal.
pub fn is_gpc(header: Option<&str>) -> bool {
    header.is_some_and(|v| v.trim() == "1")
}

/// Which route needs a write key, for its not-found answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedRoute {
    Loader,
    Consent,
}

/// `?wk=KEY` if configured, else the first configured key; an unknown key is a 404.
pub fn requested_write_key<'c>(
    config: &'c Config,
    query: &str,
    route: KeyedRoute,
) -> Result<&'c str, Reply> {
    let found = match query_param(query, "wk") {
        Some(wk) => config
            .write_keys
            .iter()
            .find(|k| *k == wk)
            .map(String::as_str),
        None => config.default_write_key(),
    };
    found.ok_or_else(|| match route {
        KeyedRoute::Loader => Reply::new(
            404,
            "application/javascript; charset=utf-8",
            b"/* consent-edge: this write key is not configured here (WRITE_KEYS); analytics.js was not loaded. */\n".to_vec(),
        )
        .with("cache-control", "no-store"),
        KeyedRoute::Consent => Reply::error(404, "write key not configured (WRITE_KEYS)"),
    })
}

/// What a loader's bytes depend on besides the template: equal keys, equal
/// scripts. `list` identifies the destination list the resolution was made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderKey {
    list: u64,
    origin: String,
    page: bool,
    write_key: String,
    pub resolution: Rc<Resolution>,
    pub hold_ms: u32,
}

impl LoaderKey {
    pub fn new(
        url: &UrlParts<'_>,
        write_key: &str,
        list: u64,
        resolution: Rc<Resolution>,
        hold_ms: u32,
    ) -> Self {
        LoaderKey {
            list,
            origin: url.origin(),
            page: loader_pages(url),
            write_key: write_key.to_owned(),
            resolution,
            hold_ms,
        }
    }
}

/// `?page=0` leaves the first `analytics.page()` to the site.
fn loader_pages(url: &UrlParts<'_>) -> bool {
    query_param(url.query, "page") != Some("0")
}

/// The loader script for this visitor, from its resolved consent.
pub fn loader(
    config: &Config,
    url: &UrlParts<'_>,
    write_key: &str,
    set: &DestinationSet,
    resolution: &Resolution,
    hold_ms: u32,
) -> Reply {
    let input = LoaderInput {
        write_key,
        origin: Origin {
            scheme: url.scheme,
            host: url.host,
            prefix: &config.path_prefix,
        },
        mode: config.mode,
        page: loader_pages(url),
        set,
        resolution,
        hold_ms,
    };
    Reply::new(
        200,
        "application/javascript; charset=utf-8",
        loader::render(&input),
    )
    .with("cache-control", "private, max-age=0")
    .with("vary", "Cookie, Sec-GPC")
}

/// `/consent`: what this request resolves to, and why, per destination, and
/// the receipt its events would carry.
pub fn consent(
    config: &Config,
    set: &DestinationSet,
    state: &ConsentState,
    list_fetched_at: Option<&str>,
) -> Reply {
    let resolution = Resolution::of_state(config, set, state);
    let mut body = Vec::with_capacity(1024);
    let mut w = ObjectWriter::new(&mut body);
    w.str("model", state.model.as_str());
    w.str("source", state.source.as_str());
    w.bool("gpc", state.gpc);
    w.bool("awaitingReconsent", state.awaiting_reconsent);
    w.bool("undecided", !state.decided);
    w.bool("hold", loader::hold_ms(config, state, &resolution) > 0);
    resolution.write_preferences(w.key("groups"));
    w.bool("collection", resolution.collection);
    {
        let mut dw = ObjectWriter::new(w.key("destinations"));
        for dest in set.destinations() {
            let verdict = verdict(config, state, resolution.collection, dest);
            let mut d = ObjectWriter::new(dw.key(&dest.key));
            d.str("name", &dest.name);
            d.bool("enabled", verdict.enabled());
            let groups = d.key("groups");
            groups.extend_from_slice(
                serde_json::to_string(&dest.groups)
                    .unwrap_or_default()
                    .as_bytes(),
            );
            d.str("reason", &Explanation { dest, verdict }.to_string());
            d.finish();
        }
        dw.finish();
    }
    resolution.write_integrations(set, w.key("integrations"));
    w.str("onetrust", &resolution.onetrust());
    match Receipt::new(config, state, set.rules().digest()) {
        Some(receipt) => receipt.write(w.key("receipt")),
        None => w.key("receipt").extend_from_slice(b"null"),
    }
    w.str_or_null("destinationsFetchedAt", list_fetched_at);
    w.finish();
    Reply::json(200, body)
        .with("cache-control", "private, no-store")
        .with("vary", "Cookie, Sec-GPC")
}

/// What `/healthz` knows of one write key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyHealth {
    /// The stored list's size and fetch time, if a list is stored.
    pub list: Option<(usize, String)>,
    pub last_refresh: Option<RefreshStatus>,
    /// The digest of the rules its events are stamped with now, if known
    /// (shown as `null` with `RECEIPTS = "off"`: no receipt names one).
    pub rules: Option<RulesDigest>,
}

/// `/healthz`: 503 while the configuration is broken. `metrics`: whether the
/// Worker has its Analytics Engine dataset.
pub fn healthz(config: &Config, keys: &[(&str, KeyHealth)], metrics: bool, now_ms: u64) -> Reply {
    let ok = config.errors.is_empty();
    let mut body = Vec::with_capacity(512);
    let mut w = ObjectWriter::new(&mut body);
    w.bool("ok", ok);
    w.str("version", env!("CARGO_PKG_VERSION"));
    w.bool("metrics", metrics);
    {
        let errors = w.key("configErrors");
        errors.push(b'[');
        for (i, error) in config.errors.iter().enumerate() {
            if i > 0 {
                errors.push(b',');
            }
            let mut e = ObjectWriter::new(errors);
            e.str("key", error.key());
            e.str("message", &error.to_string());
            e.finish();
        }
        errors.push(b']');
    }
    {
        let mut kw = ObjectWriter::new(w.key("writeKeys"));
        for (wk, health) in keys {
            let mut h = ObjectWriter::new(kw.key(&short_key(wk)));
            let (count, age) = match &health.list {
                Some((count, at)) => (
                    count.to_string(),
                    parse_rfc3339(at).map_or("null".to_owned(), |t| {
                        (now_ms.saturating_sub(t) / 1000).to_string()
                    }),
                ),
                None => ("0".to_owned(), "null".to_owned()),
            };
            h.key("destinations").extend_from_slice(count.as_bytes());
            h.key("ageSeconds").extend_from_slice(age.as_bytes());
            let refresh = h.key("lastRefresh");
            match &health.last_refresh {
                Some(status) => {
                    let mut r = ObjectWriter::new(refresh);
                    r.str("at", &status.at);
                    r.bool("ok", status.ok);
                    r.str("reason", &status.reason);
                    r.finish();
                }
                None => refresh.extend_from_slice(b"null"),
            }
            let rules = health.rules.filter(|_| config.receipts != Receipts::Off);
            h.str_or_null("rules", rules.as_ref().map(RulesDigest::as_str));
            h.finish();
        }
        kw.finish();
    }
    w.finish();
    Reply::json(if ok { 200 } else { 503 }, body).with("cache-control", "no-store")
}

/// `GET {p}/rules/{digest}`: the snapshot KV holds under `digest`. It never
/// changes, so it is cached for a year. Unknown (or, should KV ever hold one,
/// a value that is not the snapshot of its digest): 404, never cached, as the
/// first use of a digest may store it any moment. KV unreadable: 503, so an
/// auditor is not told that a real digest does not exist.
pub fn rules(digest: RulesDigest, stored: Result<Option<String>, String>) -> Reply {
    match stored {
        Ok(Some(snapshot)) if RulesDigest::of(snapshot.as_bytes()) == digest => {
            Reply::json(200, snapshot.into_bytes())
                .with("cache-control", "public, max-age=31536000, immutable")
        }
        Ok(_) => Reply::error(404, "no rules snapshot under this digest"),
        Err(_) => {
            Reply::error(503, "the rules snapshots cannot be read now").with("retry-after", "60")
        }
    }
}

/// The upstream URL for a CDN path, or a 404 (503 while `SEGMENT_CDN` is broken).
pub fn cdn_target<'p>(config: &Config, path: &'p str) -> Result<(CdnPath<'p>, String), Reply> {
    let kind = cdn::classify(config, path).ok_or_else(Reply::not_found)?;
    let base = config
        .segment_cdn
        .as_deref()
        .ok_or_else(|| Reply::error(503, "SEGMENT_CDN is misconfigured"))?;
    Ok((kind, format!("{base}{path}")))
}

/// Whether the glue must read a CDN answer's body (to patch it) rather than
/// stream it through.
pub fn cdn_needs_body(kind: CdnPath<'_>, fetched: &Fetched) -> bool {
    kind.is_settings() && (200..300).contains(&fetched.status)
}

/// Passes a CDN answer on; settings get `apiHost`/`protocol` pointed here,
/// everything else streams through untouched.
pub fn cdn_reply(
    config: &Config,
    kind: CdnPath<'_>,
    url: &UrlParts<'_>,
    fetched: Result<Fetched, FetchFailure>,
) -> Reply {
    let fetched = match fetched {
        Ok(f) => f,
        Err(failure) => return failure_reply(&failure, "the Segment CDN"),
    };
    let content_type = fetched
        .content_type
        .as_deref()
        .unwrap_or("application/octet-stream");
    let mut reply = if cdn_needs_body(kind, &fetched) {
        let api_host = format!("{}{}/api/v1", url.host, config.path_prefix);
        match cdn::patch_settings(
            fetched.body.as_deref().unwrap_or_default(),
            &api_host,
            url.scheme,
        ) {
            Some(patched) => Reply::new(fetched.status, content_type, patched),
            None => {
                return Reply::error(
                    502,
                    "the Segment CDN sent settings that are not a settings object",
                )
            }
        }
    } else {
        Reply::passthrough(fetched.status, content_type)
    };
    if let Some(cc) = fetched.cache_control {
        reply = reply.with("cache-control", cc);
    }
    if let Some(ra) = fetched.retry_after {
        reply = reply.with("retry-after", ra);
    }
    reply
}

/// Whether a CDN answer may be kept in the Cache API (shared by every visitor):
/// a 200 that upstream does not mark private or uncacheable.
pub fn cdn_cacheable(fetched: &Fetched) -> bool {
    fetched.status == 200
        && fetched.cache_control.as_deref().is_none_or(|cc| {
            let cc = cc.to_ascii_lowercase();
            !cc.contains("private") && !cc.contains("no-store")
        })
}

/// The request headers a tracking post forwards.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackHeaders<'a> {
    pub content_type: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub retry_count: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// A tracking post to send upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Where and how to forward what survived enforcement; `Err` is the answer
/// when nothing needs forwarding (every event dropped) or nothing can be.
pub fn track_forward(
    config: &Config,
    endpoint: Endpoint,
    segment: &str,
    enforced: Enforced,
    headers: TrackHeaders<'_>,
) -> Result<Forward, Reply> {
    let Some(body) = enforced.body else {
        return Err(with_counts(
            Reply::json(200, br#"{"success":true}"#.to_vec()),
            enforced.counts,
        ));
    };
    let Some(api) = config.segment_api.as_deref() else {
        return Err(Reply::error(503, "SEGMENT_API is misconfigured").with("retry-after", "60"));
    };
    let mut out = vec![(
        "content-type",
        headers.content_type.unwrap_or("text/plain").to_owned(),
    )];
    // Metrics carry no write key; an Authorization header on them could name
    // one that is not served here, so it is not passed on.
    let authorization = headers
        .authorization
        .filter(|_| endpoint != Endpoint::Metrics);
    let passed = [
        ("authorization", authorization),
        ("x-retry-count", headers.retry_count),
        ("user-agent", headers.user_agent),
    ];
    out.extend(
        passed
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?.to_owned()))),
    );
    Ok(Forward {
        url: format!("{api}/v1/{segment}"),
        headers: out,
        body,
    })
}

/// Passes Segment's answer back: its status (so analytics.js retries 5xx and
/// 429), `Retry-After`, and the consent counts.
pub fn track_reply(counts: Counts, fetched: Result<Fetched, FetchFailure>) -> Reply {
    let reply = match fetched {
        Err(failure) => failure_reply(&failure, "the Segment API"),
        Ok(f) => {
            let content_type = f.content_type.as_deref().unwrap_or("application/json");
            let mut reply = Reply::passthrough(f.status, content_type);
            if let Some(ra) = f.retry_after {
                reply = reply.with("retry-after", ra);
            }
            reply
        }
    };
    with_counts(reply, counts)
}

fn with_counts(reply: Reply, counts: Counts) -> Reply {
    reply
        .with("x-consent-forwarded", counts.forwarded.to_string())
        .with("x-consent-dropped", counts.dropped.to_string())
        .with("cache-control", "no-store")
}

fn failure_reply(failure: &FetchFailure, what: &str) -> Reply {
    match failure {
        FetchFailure::Unreachable(_) => Reply::error(502, &format!("{what} is unreachable")),
        FetchFailure::Timeout => Reply::error(504, &format!("{what} did not answer in time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_vars(|k| (k == "WRITE_KEYS").then(|| "wk".to_owned()))
    }

    fn enforced() -> Enforced {
        Enforced {
            body: Some(b"{}".to_vec()),
            counts: Counts {
                forwarded: 1,
                ..Counts::default()
            },
        }
    }

    #[test]
    fn forwards_the_same_path_and_the_client_headers_but_never_cookies() {
        let headers = TrackHeaders {
            content_type: None,
            authorization: Some("Basic d2s6"),
            retry_count: Some("2"),
            user_agent: Some("UA"),
        };
        let forward =
            track_forward(&config(), Endpoint::Event, "track", enforced(), headers).unwrap();
        assert_eq!(forward.url, "https://api.segment.io/v1/track");
        assert_eq!(
            forward.headers,
            [
                ("content-type", "text/plain".to_owned()),
                ("authorization", "Basic d2s6".to_owned()),
                ("x-retry-count", "2".to_owned()),
                ("user-agent", "UA".to_owned())
            ]
        );
        let metrics =
            track_forward(&config(), Endpoint::Metrics, "m", enforced(), headers).unwrap();
        assert!(
            metrics
                .headers
                .iter()
                .all(|(name, _)| *name != "authorization"),
            "metrics pass no write key"
        );
    }

    #[test]
    fn healthz_says_whether_metrics_are_on() {
        for on in [true, false] {
            let reply = healthz(&config(), &[], on, 0);
            let crate::http::Body::Bytes(body) = reply.body else {
                panic!("healthz has a body")
            };
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["metrics"], on);
        }
    }

    #[test]
    fn rules_snapshots_are_served_immutable_and_only_under_their_digest() {
        let rules = crate::rules::Rules::new(&config(), &[]);
        let digest = rules.digest();
        let found = super::rules(digest, Ok(Some(rules.canonical().to_owned())));
        assert_eq!(found.status, 200);
        assert_eq!(found.bytes(), rules.canonical().as_bytes());
        assert_eq!(
            found.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(
            found.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        let unknown = super::rules(digest, Ok(None));
        assert_eq!(
            (unknown.status, unknown.header("cache-control")),
            (404, Some("no-store"))
        );
        let not_its_own = super::rules(digest, Ok(Some(format!("{} ", rules.canonical()))));
        assert_eq!(not_its_own.status, 404);
        let down = super::rules(digest, Err("KV unavailable".into()));
        assert_eq!(
            (down.status, down.header("cache-control")),
            (503, Some("no-store"))
        );
    }

    #[test]
    fn healthz_shows_each_keys_rules_digest() {
        let digest = crate::rules::RulesDigest::of(b"x");
        let keys = [
            (
                "wk_one",
                KeyHealth {
                    rules: Some(digest),
                    ..KeyHealth::default()
                },
            ),
            ("wk_two", KeyHealth::default()),
        ];
        let reply = healthz(&config(), &keys, false, 0);
        let body: serde_json::Value = serde_json::from_slice(reply.bytes()).unwrap();
        assert_eq!(body["writeKeys"]["wk_one…"]["rules"], digest.to_string());
        assert_eq!(
            body["writeKeys"]["wk_two…"]["rules"],
            serde_json::Value::Null
        );
        let off = Config::for_test(&[("RECEIPTS", "off")]);
        let body: serde_json::Value =
            serde_json::from_slice(healthz(&off, &keys, false, 0).bytes()).unwrap();
        assert_eq!(
            body["writeKeys"]["wk_one…"]["rules"],
            serde_json::Value::Null,
            "no receipt names one"
        );
    }

    #[test]
    fn visitors_share_a_key_when_their_onetrust_cookies_and_signals_agree() {
        let cookie = |others: &str| {
            format!("_ga={others}; OptanonConsent=groups=C0001:1,C0002:1&interactionCount=1; s={others}")
        };
        let (first, later) = (cookie("1"), cookie("2"));
        fn visitor<'a>(cookie: &'a str, sec_gpc: bool, country: Option<&'a str>) -> Visitor<'a> {
            Visitor {
                cookie: cookie.as_bytes(),
                sec_gpc,
                country,
            }
        }
        let key = VisitorKey::of;
        assert_eq!(
            key(visitor(&first, false, None)),
            key(visitor(&later, false, None)),
            "other cookies are not part of it"
        );
        assert_ne!(
            key(visitor(&first, false, None)),
            key(visitor(&first, true, None))
        );
        assert_ne!(
            key(visitor(&first, false, Some("FR"))),
            key(visitor(&first, false, Some("US")))
        );
        let config = Config::for_test(&[("CONSENT_MODEL", "geo")]);
        for v in [
            visitor(&first, true, Some("US")),
            visitor(&later, false, Some("FR")),
        ] {
            assert_eq!(key(v).resolve(&config), resolve(&config, v));
        }
    }

    #[test]
    fn consent_shows_the_receipt_its_events_would_carry() {
        let visitor = Visitor {
            cookie: b"OptanonConsent=groups=C0001:1&interactionCount=1&geolocation=fr",
            sec_gpc: true,
            country: Some("US"),
        };
        let answer = |receipts: &str| {
            let config = Config::for_test(&[("CONSENT_MODEL", "geo"), ("RECEIPTS", receipts)]);
            let set = DestinationSet::new(&[], &config);
            let state = resolve(&config, visitor);
            let reply = consent(&config, &set, &state, None);
            let body: serde_json::Value = serde_json::from_slice(reply.bytes()).unwrap();
            (body, set.rules().digest().to_string())
        };
        let (body, rules) = answer("on");
        assert_eq!(
            body["receipt"],
            serde_json::json!({"v": 1, "source": "choice", "decidedAt": null, "gpc": true,
                               "country": "FR", "rules": rules})
        );
        assert_eq!(
            body["model"], "opt-in",
            "FR decided the model, as the receipt says"
        );
        assert_eq!(answer("off").0["receipt"], serde_json::Value::Null);
    }

    #[test]
    fn nothing_to_forward_is_a_200_with_counts() {
        let dropped = Enforced {
            body: None,
            counts: Counts {
                dropped: 3,
                ..Counts::default()
            },
        };
        let reply = track_forward(
            &config(),
            Endpoint::Batch,
            "b",
            dropped,
            TrackHeaders::default(),
        )
        .unwrap_err();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-consent-dropped"), Some("3"));
        assert_eq!(reply.header("x-consent-forwarded"), Some("0"));
    }

    #[test]
    fn upstream_failures_are_answered_so_clients_retry() {
        let counts = Counts {
            forwarded: 1,
            ..Counts::default()
        };
        assert_eq!(track_reply(counts, Err(FetchFailure::Timeout)).status, 504);
        assert_eq!(
            track_reply(counts, Err(FetchFailure::Unreachable("reset".into()))).status,
            502
        );
        let busy = Fetched {
            status: 429,
            retry_after: Some("7".into()),
            ..Fetched::default()
        };
        let reply = track_reply(counts, Ok(busy));
        assert_eq!(
            (reply.status, reply.header("retry-after")),
            (429, Some("7"))
        );
        assert_eq!(reply.body, crate::http::Body::Upstream);
    }
}
