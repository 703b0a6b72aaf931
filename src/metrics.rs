//! Per-key consent metrics: the Workers Analytics Engine data point written
//! for each tracking request and each loader served, from what the Worker
//! already decided. The positions (`index1`, `blob1`…, `double1`…) are what
//! operators' SQL reads (docs/OPERATIONS.md): add fields at the end, never
//! move one.
//!
//! Nothing here identifies a visitor: no cookie, IP, user, anonymous or
//! consent id, and the write key only as `/healthz` shortens it.

use crate::config::{Config, ConsentModel};
use crate::consent::{ConsentState, Model, Resolution};
use crate::destinations::DestinationSet;
use crate::events::Counts;
use crate::loader::{hold_ms, may_hold};
use crate::refresh::short_key;

/// One data point, as `writeDataPoint` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint {
    /// `index1`: the write key's first six characters and `…`, as `/healthz`
    /// and the logs name it (Analytics Engine samples per index).
    pub index: String,
    /// `blob1`…`blob5`: kind, consent source, GPC, region, hold.
    pub blobs: [&'static str; 5],
    /// `double1`…: per kind, see [`tracking`] and [`loader`].
    pub doubles: Vec<f64>,
}

/// `blob1`: what the point counts — one tracking call by its API name, or
/// one loader served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Track,
    Page,
    Identify,
    Group,
    Alias,
    Screen,
    Batch,
    Loader,
}

impl Kind {
    /// The call a `/v1/{segment}` path makes, short or long form; `None` for
    /// `m` (analytics.js's own telemetry: no write key, nothing consented).
    pub fn of_segment(segment: &str) -> Option<Kind> {
        Some(match segment {
            "t" | "track" => Kind::Track,
            "p" | "page" => Kind::Page,
            "i" | "identify" => Kind::Identify,
            "g" | "group" => Kind::Group,
            "a" | "alias" => Kind::Alias,
            "s" | "screen" => Kind::Screen,
            "b" | "batch" => Kind::Batch,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Track => "track",
            Kind::Page => "page",
            Kind::Identify => "identify",
            Kind::Group => "group",
            Kind::Alias => "alias",
            Kind::Screen => "screen",
            Kind::Batch => "batch",
            Kind::Loader => "loader",
        }
    }
}

/// `blob4`: the country class the `geo` model put the request in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    OptIn,
    OptOut,
    /// `CONSENT_MODEL` is not `geo`: the country decides nothing.
    NotGeo,
}

impl Region {
    pub fn of(config: &Config, state: &ConsentState) -> Region {
        match (config.consent_model, state.model) {
            (ConsentModel::Geo, Model::OptIn) => Region::OptIn,
            (ConsentModel::Geo, Model::OptOut) => Region::OptOut,
            _ => Region::NotGeo,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Region::OptIn => "opt-in",
            Region::OptOut => "opt-out",
            Region::NotGeo => "n/a",
        }
    }
}

/// `blob3`.
fn gpc(state: &ConsentState) -> &'static str {
    if state.gpc {
        "gpc"
    } else {
        "no-gpc"
    }
}

/// `blob5`: whether a loader served with this request's consent holds the
/// visitor's events (`loader::hold_ms`).
fn hold(held: bool) -> &'static str {
    if held {
        "hold"
    } else {
        "no-hold"
    }
}

/// The point for one tracking request (a batch is one) that passed the
/// checks. `blob5` is whether the visitor, as the post's cookie says, is one
/// the loader holds: the edge cannot know whether the page that sent the post
/// held it. Doubles: 1 events received, 2 forwarded, 3 dropped (collection
/// refused), 4 grants corrected, 5 refusals kept (see [`Counts`]).
pub fn tracking(
    config: &Config,
    set: &DestinationSet,
    state: &ConsentState,
    kind: Kind,
    write_key: &str,
    counts: Counts,
) -> DataPoint {
    // Most posts come from decided visitors: no resolution needed for them.
    let held = may_hold(config, state)
        && hold_ms(config, state, &Resolution::of_state(config, set, state)) > 0;
    let doubles = [
        counts.forwarded + counts.dropped,
        counts.forwarded,
        counts.dropped,
        counts.corrected,
        counts.kept,
    ];
    DataPoint {
        index: short_key(write_key),
        blobs: blobs(config, state, kind, held),
        doubles: doubles.into_iter().map(|n| n as f64).collect(),
    }
}

/// The point for one loader served; `held`: whether it holds the visitor's
/// events (`loader::hold_ms`). Doubles: 1 loaders (always 1), 2 destinations
/// enabled, 3 destinations on the list, 4 collection consented (1 or 0).
pub fn loader(
    config: &Config,
    state: &ConsentState,
    resolution: &Resolution,
    held: bool,
    write_key: &str,
) -> DataPoint {
    let enabled = resolution.enabled.iter().filter(|on| **on).count();
    DataPoint {
        index: short_key(write_key),
        blobs: blobs(config, state, Kind::Loader, held),
        doubles: vec![
            1.0,
            enabled as f64,
            resolution.enabled.len() as f64,
            f64::from(u8::from(resolution.collection)),
        ],
    }
}

fn blobs(config: &Config, state: &ConsentState, kind: Kind, held: bool) -> [&'static str; 5] {
    [
        kind.as_str(),
        state.basis().as_str(),
        gpc(state),
        Region::of(config, state).as_str(),
        hold(held),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::RequestSignals;
    use crate::cookie::parse_cookie_header;
    use crate::destinations::Destination;

    const WK: &str = "wk_live_0123456789";
    const CHOSE_ANALYTICS: &str =
        "OptanonConsent=interactionCount=1&groups=C0001:1,C0002:1,C0004:0";

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_vars(|key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .or_else(|| (key == "WRITE_KEYS").then(|| WK.to_owned()))
        })
    }

    fn set(config: &Config) -> DestinationSet {
        let d = |name: &str, category: &str| Destination {
            name: name.into(),
            creation_name: name.into(),
            category: category.into(),
            consent_categories: vec![],
        };
        DestinationSet::new(&[d("GA4", "Analytics"), d("Ads", "Advertising")], config)
    }

    fn state(config: &Config, cookie: &str, signals: RequestSignals<'_>) -> ConsentState {
        ConsentState::resolve(config, &parse_cookie_header(cookie.as_bytes()), signals)
    }

    fn counts(forwarded: usize, dropped: usize, corrected: usize, kept: usize) -> Counts {
        Counts {
            forwarded,
            dropped,
            corrected,
            kept,
        }
    }

    #[test]
    fn a_tracking_point_has_its_fields_in_their_documented_places() {
        let c = config(&[]);
        let s = state(&c, CHOSE_ANALYTICS, RequestSignals::default());
        let point = tracking(&c, &set(&c), &s, Kind::Batch, WK, counts(3, 1, 2, 1));
        assert_eq!(
            point,
            DataPoint {
                index: "wk_liv…".into(),
                blobs: ["batch", "choice", "no-gpc", "n/a", "no-hold"],
                doubles: vec![4.0, 3.0, 1.0, 2.0, 1.0],
            }
        );
    }

    #[test]
    fn the_region_is_the_geo_models_class_and_nothing_otherwise() {
        let geo = config(&[("CONSENT_MODEL", "geo")]);
        let region = |config: &Config, country| {
            let signals = RequestSignals {
                sec_gpc: false,
                country: Some(country),
            };
            Region::of(config, &state(config, "", signals))
        };
        assert_eq!(region(&geo, "DE"), Region::OptIn);
        assert_eq!(region(&geo, "US"), Region::OptOut);
        assert_eq!(region(&geo, "XX"), Region::OptIn);
        assert_eq!(region(&config(&[]), "US"), Region::NotGeo);
        assert_eq!(
            region(&config(&[("CONSENT_MODEL", "opt-out")]), "DE"),
            Region::NotGeo
        );
    }

    #[test]
    fn gpc_and_hold_follow_the_request() {
        let c = config(&[]);
        let list = set(&c);
        let gpc_signal = RequestSignals {
            sec_gpc: true,
            country: None,
        };
        let undecided = state(&c, "", gpc_signal);
        let point = tracking(&c, &list, &undecided, Kind::Track, WK, counts(1, 0, 0, 0));
        assert_eq!(point.blobs, ["track", "default", "gpc", "n/a", "hold"]);
        let off = config(&[("PRE_CONSENT_HOLD_MS", "0")]);
        let point = tracking(&off, &list, &undecided, Kind::Page, WK, counts(1, 0, 0, 0));
        assert_eq!(point.blobs[4], "no-hold");
        // Undecided, but every destination already on: nothing to wait for.
        let opt_out = config(&[("CONSENT_MODEL", "opt-out")]);
        let all_on = state(&opt_out, "", RequestSignals::default());
        let point = tracking(
            &opt_out,
            &list,
            &all_on,
            Kind::Track,
            WK,
            counts(1, 0, 0, 0),
        );
        assert_eq!(point.blobs[4], "no-hold");
    }

    #[test]
    fn a_loader_point_counts_the_enabled_destinations() {
        let c = config(&[("COLLECTION_GROUP", "C0002")]);
        let list = set(&c);
        let chose = state(&c, CHOSE_ANALYTICS, RequestSignals::default());
        let resolution = Resolution::of_state(&c, &list, &chose);
        assert_eq!(
            loader(
                &c,
                &chose,
                &resolution,
                hold_ms(&c, &chose, &resolution) > 0,
                WK
            ),
            DataPoint {
                index: "wk_liv…".into(),
                blobs: ["loader", "choice", "no-gpc", "n/a", "no-hold"],
                doubles: vec![1.0, 1.0, 2.0, 1.0],
            }
        );
        let undecided = state(&c, "", RequestSignals::default());
        let resolution = Resolution::of_state(&c, &list, &undecided);
        let point = loader(
            &c,
            &undecided,
            &resolution,
            hold_ms(&c, &undecided, &resolution) > 0,
            WK,
        );
        assert_eq!(point.blobs, ["loader", "default", "no-gpc", "n/a", "hold"]);
        assert_eq!(point.doubles, [1.0, 0.0, 2.0, 0.0], "collection refused");
    }

    #[test]
    fn every_tracking_segment_has_its_kind_and_metrics_posts_none() {
        for (segment, kind) in [
            ("t", "track"),
            ("track", "track"),
            ("p", "page"),
            ("i", "identify"),
            ("g", "group"),
            ("a", "alias"),
            ("s", "screen"),
            ("screen", "screen"),
            ("b", "batch"),
            ("batch", "batch"),
        ] {
            assert_eq!(Kind::of_segment(segment).map(Kind::as_str), Some(kind));
        }
        assert_eq!(Kind::of_segment("m"), None);
    }

    #[test]
    fn no_field_carries_the_write_key_or_anything_of_the_visitor() {
        let c = config(&[]);
        let s = state(&c, CHOSE_ANALYTICS, RequestSignals::default());
        let point = tracking(&c, &set(&c), &s, Kind::Track, WK, counts(1, 0, 0, 0));
        assert!(!point.index.contains(WK));
        assert!(point.index.len() <= 96, "Analytics Engine's index limit");
        assert!(point.blobs.iter().all(|b| !b.contains("wk_")));
    }
}
