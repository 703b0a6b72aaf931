//! Any `[vars]` values make a configuration: a value that is rejected is
//! reported under its own key and locks consent down, never open.
//!
//! Input: NUL-separated values for the keys of `config::KEYS`, in order; an
//! empty or missing field is an unset key.
#![no_main]

use consent_edge::config::{Config, KEYS};
use consent_edge::consent::{collection, ConsentState, Grants, RequestSignals};
use consent_edge::cookie::parse_cookie_header;
use libfuzzer_sys::fuzz_target;

/// A cookie that grants every standard group.
const GRANT_ALL: &[u8] = b"OptanonConsent=groups=C0001:1,C0002:1,C0003:1,C0004:1,C0005:1";

/// The values each enumerated key accepts (compared trimmed, without regard to ASCII case).
const CHOICES: &[(&str, &[&str])] = &[
    ("MODE", &["integrations", "context", "both"]),
    ("CONSENT_MODEL", &["opt-in", "opt-out", "geo"]),
    ("ALL_DEFAULT", &["true", "false", "1", "0", "yes", "no"]),
    ("OPT_IN", &["true", "false", "1", "0", "yes", "no"]),
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<(&str, &str)> = KEYS
        .iter()
        .zip(text.split('\0'))
        .map(|(&(key, _, _), value)| (key, value))
        .collect();
    let raw = |key: &str| values.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    // What the configuration should see: blank counts as unset.
    let value_of = |key: &str| raw(key).map(str::trim).filter(|v| !v.is_empty());
    let config = Config::from_vars(|key| raw(key).map(str::to_owned));

    assert_eq!(config.locked_down(), !config.errors.is_empty());
    for error in &config.errors {
        let key = error.key();
        assert!(KEYS.iter().any(|(k, _, _)| *k == key), "{key} is not a key");
        // Only a key that was set can be wrong, except the one that is required.
        assert!(value_of(key).is_some() || key == "WRITE_KEYS", "{error}");
        assert!(error.to_string().contains(key));
    }
    for (key, accepted) in CHOICES {
        let rejected =
            value_of(key).is_some_and(|v| !accepted.iter().any(|a| a.eq_ignore_ascii_case(v)));
        assert_eq!(
            rejected,
            config.errors.iter().any(|e| e.key() == *key),
            "{key} = {:?}",
            value_of(key)
        );
    }
    if config.errors.iter().any(|e| e.key() == "OPT_IN") {
        assert!(!config.opt_in, "a broken OPT_IN collects");
    }

    if config.locked_down() {
        // Whatever the cookie and the model say: only the strict group.
        let state = ConsentState::resolve(
            &config,
            &parse_cookie_header(GRANT_ALL),
            RequestSignals::default(),
        );
        for g in ["C0001", "C0002", "C0003", "C0004", "C0005"] {
            assert_eq!(state.granted(g), g == config.strict_group, "{g}");
        }
        assert!(!consent_edge::consent::all_value(
            &config,
            collection(&config, &state)
        ));
    }
});
