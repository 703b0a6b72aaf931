//! What several targets share.

use consent_edge::config::Config;

/// The write key every target's configuration serves.
pub const WRITE_KEY: &str = "wk_live";

/// A configuration from `[vars]`-style pairs, serving [`WRITE_KEY`].
pub fn config(vars: &[(&str, &str)]) -> Config {
    Config::from_vars(|key| {
        vars.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .or_else(|| (key == "WRITE_KEYS").then(|| WRITE_KEY.to_owned()))
    })
}
