//! A request's cookies and signals resolve, under several configurations, to
//! consent that never goes beyond what the cookie (or the model) allows.
//!
//! Input: one byte of signals (bit 0: `Sec-GPC: 1`; bits 1-3: the request's
//! country, from [`COUNTRIES`]), then the `Cookie` header.
#![no_main]

mod common;

use consent_edge::config::Config;
use consent_edge::consent::{ConsentState, Grants, Model, RequestSignals, Source};
use consent_edge::cookie::parse_cookie_header;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const COUNTRIES: [Option<&str>; 8] = [
    None,
    Some("US"),
    Some("DE"),
    Some("GB"),
    Some("BR"),
    Some("XX"),
    Some(""),
    Some("ch"),
];

/// Groups worth asking about besides those the cookie names.
const PROBES: [&str; 6] = ["C0001", "C0002", "C0003", "C0004", "SSPD_BG", "NECESSARY"];

fn configs() -> &'static [Config] {
    static CONFIGS: OnceLock<Vec<Config>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let configs = vec![
            common::config(&[]),
            common::config(&[("CONSENT_MODEL", "opt-out")]),
            common::config(&[("CONSENT_MODEL", "geo")]),
            // GPC groups that include the strict group, which GPC cannot deny.
            common::config(&[
                ("CONSENT_MODEL", "opt-out"),
                ("GPC_GROUPS", "C0001, C0004,C0005,SSPD_BG"),
            ]),
            common::config(&[
                ("CONSENT_MODEL", "geo"),
                ("STRICT_GROUP", "NECESSARY"),
                ("GPC_GROUPS", "NECESSARY,C0002"),
            ]),
        ];
        assert!(configs.iter().all(|c| !c.locked_down()));
        configs
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&signals, header)) = data.split_first() else {
        return;
    };
    let sec_gpc = signals & 1 == 1;
    let country = COUNTRIES[usize::from(signals >> 1) % COUNTRIES.len()];
    let cookies = parse_cookie_header(header);
    let cookie = cookies.consent.as_ref();
    let gpc = sec_gpc || cookies.gpc;

    for config in configs() {
        let state = ConsentState::resolve(config, &cookies, RequestSignals { sec_gpc, country });
        let strict = config.strict_group.as_str();
        assert!(state.granted(strict), "the strict group is always granted");
        assert_eq!(state.source == Source::Cookie, cookie.is_some());
        assert_eq!(state.gpc, gpc);

        let named = cookie.map_or(&[][..], |c| &c.groups[..]);
        let asked = named.iter().map(|(g, _)| g.as_str()).chain(PROBES);
        for g in asked.filter(|&g| g != strict) {
            let granted = state.granted(g);
            match cookie {
                // With a usable cookie, only its `:1` groups can be granted.
                Some(c) => assert!(c.group(g) == Some(true) || !granted, "{g} granted"),
                // Without one, the model decides, less what GPC denies.
                None if state.model == Model::OptIn => assert!(!granted, "{g} granted"),
                None => {
                    let denied = gpc && config.gpc_groups.iter().any(|d| d == g);
                    assert_eq!(granted, !denied, "{g} under opt-out");
                }
            }
        }

        if gpc {
            let chose = |g: &str| {
                cookie.is_some_and(|c| {
                    (c.interaction_count >= 1 || cookies.alert_box_closed.is_some())
                        && c.group(g) == Some(true)
                })
            };
            for g in config.gpc_groups.iter().filter(|g| *g != strict) {
                assert!(chose(g) || !state.granted(g), "GPC group {g} granted");
            }
        }
    }
});
