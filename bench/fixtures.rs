//! The bench inputs (bench/fixtures/) as the core takes them; shared by the
//! native benches (benches/core.rs) and the wasm one (bench/wasm-core).

use consent_edge::config::Config;
use consent_edge::consent::ConsentState;
use consent_edge::destinations::{DestinationList, DestinationSet};
use consent_edge::events::{self, Endpoint, Enforced, Enforcer};
use consent_edge::handlers::{self, Visitor};

pub const COOKIE: &str = include_str!("fixtures/cookie.txt");
pub const DESTINATIONS: &str = include_str!("fixtures/destinations.json");
pub const TRACK: &str = include_str!("fixtures/track.json");
const AUTH: &str = "Basic d2tfYmVuY2g6"; // wk_bench:

/// A site serving `wk_bench` with the 100-destination list.
pub struct Site {
    pub config: Config,
    pub set: DestinationSet,
}

impl Site {
    pub fn new() -> Self {
        let config = Config::from_vars(|key| (key == "WRITE_KEYS").then(|| "wk_bench".to_owned()));
        let list = DestinationList::from_json(DESTINATIONS).expect("fixture list");
        let set = DestinationSet::new(&list.destinations, &config);
        Site { config, set }
    }

    /// The visitor with the fixture cookie.
    pub fn visitor() -> Visitor<'static> {
        Visitor {
            cookie: COOKIE.as_bytes(),
            sec_gpc: false,
            country: Some("DE"),
        }
    }

    pub fn resolve(&self) -> ConsentState {
        handlers::resolve(&self.config, Self::visitor())
    }

    /// What the tracking proxy does with a body, under `state`.
    pub fn rewrite(&self, state: &ConsentState, endpoint: Endpoint, body: &[u8]) -> Enforced {
        let parsed =
            events::parse(&self.config, endpoint, body, Some(AUTH)).expect("valid request");
        Enforcer::new(&self.config, &self.set, state, Some("203.0.113.7")).enforce(parsed)
    }
}

/// A batch request of `events`, as analytics.js sends one.
pub fn batch(events: &[&str]) -> String {
    format!(
        r#"{{"batch":[{}],"writeKey":"wk_bench","sentAt":"2026-11-25T10:00:00.120Z"}}"#,
        events.join(",")
    )
}

/// 100 stamped events whose `integrations` alternate between two stampings
/// (one destination switched on, then off), so no event repeats the one
/// before it: the worst case for reusing the reading of a repeated object.
pub fn alternating_batch() -> String {
    let other = TRACK.replacen(r#""Heap":false"#, r#""Heap":true"#, 1);
    assert_ne!(other, TRACK, "the fixture stamps Heap");
    let events: Vec<&str> = (0..100)
        .map(|i| if i % 2 == 0 { TRACK } else { &other })
        .collect();
    batch(&events)
}
