//! The Worker's configuration: wrangler.toml `[vars]` into a typed [`Config`].
//!
//! Parsing never fails as a whole. A bad value is recorded as a [`ConfigError`]
//! naming its key, and the key takes its closed value (the one that grants the
//! least); while any error stands, consent is locked down to the strict group
//! (see [`Config::locked_down`]) and `/healthz` answers 503.

use crate::categories::{self, GroupMap};
use std::fmt;

/// Every configuration key, its default, and what it does: the one list that
/// the README's reference is checked against.
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "WRITE_KEYS",
        "(required)",
        "comma-separated Segment write keys this Worker serves; anything else is refused",
    ),
    ("PATH_PREFIX", "/edge", "path prefix of every route"),
    (
        "MODE",
        "both",
        "what the proxy stamps on events: integrations, context or both",
    ),
    (
        "CONSENT_MODEL",
        "opt-in",
        "default without a usable OneTrust cookie: opt-in, opt-out or geo",
    ),
    (
        "STRICT_GROUP",
        "C0001",
        "the strictly necessary group, always granted",
    ),
    (
        "GPC_GROUPS",
        "C0004",
        "comma-separated groups a Global Privacy Control signal denies",
    ),
    (
        "CATEGORY_MAP",
        "{}",
        "JSON: Segment category to group id(s), merged over the default table",
    ),
    (
        "DESTINATION_MAP",
        "{}",
        "JSON: destination name or creationName to group id(s)",
    ),
    (
        "ALL_DEFAULT",
        "false",
        "whether destinations that map to no group are enabled",
    ),
    (
        "OPT_IN",
        "true",
        "whether events are collected by Segment at all (the Segment.io key)",
    ),
    (
        "COLLECTION_GROUP",
        "",
        "if set, collection also requires this group",
    ),
    (
        "SEGMENT_CDN",
        "https://cdn.segment.com",
        "Segment CDN origin (analytics.js, settings, Projects API)",
    ),
    (
        "SEGMENT_API",
        "https://api.segment.io",
        "Segment tracking API origin; EU: https://events.eu1.segmentapis.com",
    ),
    (
        "ALLOWED_ORIGINS",
        "",
        "comma-separated origins allowed to post events; empty: the request's own origin",
    ),
    (
        "PRE_CONSENT_HOLD_MS",
        "10000",
        "how long the loader holds an undecided visitor's events for the banner decision; 0: off",
    ),
    (
        "RECEIPTS",
        "on",
        "consent receipts on forwarded events: on, off, or with-id (adds OneTrust's consentId)",
    ),
];

/// The longest pre-consent hold accepted: ten minutes.
pub const MAX_HOLD_MS: u32 = 600_000;
const DEFAULT_HOLD_MS: u32 = 10_000;

/// How the proxy stamps consent on events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only the `integrations` object.
    Integrations,
    /// Only `context.consent` (for Destination Filters and Segment Consent Management).
    Context,
    /// Both.
    Both,
}

impl Mode {
    pub fn stamps_integrations(self) -> bool {
        matches!(self, Mode::Integrations | Mode::Both)
    }

    pub fn stamps_context(self) -> bool {
        matches!(self, Mode::Context | Mode::Both)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Integrations => "integrations",
            Mode::Context => "context",
            Mode::Both => "both",
        }
    }
}

/// What applies without a usable OneTrust cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentModel {
    OptIn,
    OptOut,
    /// Opt-in in the EU/EEA, UK and CH (and when the country is unknown), opt-out elsewhere.
    Geo,
}

impl ConsentModel {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentModel::OptIn => "opt-in",
            ConsentModel::OptOut => "opt-out",
            ConsentModel::Geo => "geo",
        }
    }
}

/// Whether the proxy stamps a consent receipt on each forwarded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipts {
    On,
    Off,
    /// On, with OneTrust's `consentId`: it joins an event to OneTrust's
    /// consent records, but it is an identifier, so only on request.
    WithId,
}

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Missing {
        key: &'static str,
    },
    Invalid {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    BadMap {
        key: &'static str,
        reason: String,
    },
}

impl ConfigError {
    pub fn key(&self) -> &'static str {
        match self {
            ConfigError::Missing { key }
            | ConfigError::Invalid { key, .. }
            | ConfigError::BadMap { key, .. } => key,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing { key } => write!(f, "{key} is required but not set"),
            ConfigError::Invalid {
                key,
                value,
                expected,
            } => {
                write!(f, "{key} = {value:?} is not valid: expected {expected}")
            }
            ConfigError::BadMap { key, reason } => write!(f, "{key} is not a valid map: {reason}"),
        }
    }
}

/// The parsed configuration. Built once per isolate.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub write_keys: Vec<String>,
    pub path_prefix: String,
    pub mode: Mode,
    pub consent_model: ConsentModel,
    pub strict_group: String,
    pub gpc_groups: Vec<String>,
    /// The default category table with `CATEGORY_MAP` merged over it.
    pub category_map: GroupMap,
    pub destination_map: GroupMap,
    pub all_default: bool,
    pub opt_in: bool,
    pub collection_group: Option<String>,
    /// `None` while the configured value is broken: those routes answer 503
    /// rather than send anything to a host nobody chose (EU data to the US).
    pub segment_cdn: Option<String>,
    pub segment_api: Option<String>,
    pub allowed_origins: Vec<String>,
    /// How long the loader holds an undecided visitor's events (0: never).
    pub pre_consent_hold_ms: u32,
    pub receipts: Receipts,
    pub errors: Vec<ConfigError>,
}

impl Default for Config {
    /// The documented defaults, with no write key.
    fn default() -> Self {
        Config::from_vars(|_| None)
    }
}

impl Config {
    /// Reads every key through `var` (`None` = not set). Non-string `[vars]`
    /// values (TOML booleans, tables) arrive as their JSON text.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Config {
        let mut errors = Vec::new();
        let read = |key: &'static str| {
            var(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(|v| (key, v))
        };

        let write_keys: Vec<String> = match read("WRITE_KEYS") {
            None => Vec::new(),
            Some((key, raw)) => list(&raw)
                .into_iter()
                .filter(|wk| {
                    let ok = is_write_key(wk);
                    if !ok {
                        // Shortened: healthz is public, and a typo'd key is still most of a key.
                        errors.push(ConfigError::Invalid {
                            key,
                            value: crate::refresh::short_key(wk),
                            expected: "write keys of letters, digits, '-' and '_'",
                        });
                    }
                    ok
                })
                .collect(),
        };
        if write_keys.is_empty() && errors.is_empty() {
            errors.push(ConfigError::Missing { key: "WRITE_KEYS" });
        }

        let path_prefix = match read("PATH_PREFIX") {
            None => "/edge".to_owned(),
            Some((key, raw)) => {
                let trimmed = raw.trim_end_matches('/').to_owned();
                if is_path_prefix(&trimmed) {
                    trimmed
                } else {
                    errors.push(ConfigError::Invalid {
                        key,
                        value: raw,
                        expected: "a path like /edge (letters, digits, '-', '_', '/')",
                    });
                    "/edge".to_owned()
                }
            }
        };

        let mode = choice(
            read("MODE"),
            &[
                ("integrations", Mode::Integrations),
                ("context", Mode::Context),
                ("both", Mode::Both),
            ],
            Mode::Both,
            "integrations, context or both",
            &mut errors,
        );
        let consent_model = choice(
            read("CONSENT_MODEL"),
            &[
                ("opt-in", ConsentModel::OptIn),
                ("opt-out", ConsentModel::OptOut),
                ("geo", ConsentModel::Geo),
            ],
            ConsentModel::OptIn,
            "opt-in, opt-out or geo",
            &mut errors,
        );
        let strict_group = read("STRICT_GROUP").map_or_else(|| "C0001".to_owned(), |(_, v)| v);
        let gpc_groups =
            read("GPC_GROUPS").map_or_else(|| vec!["C0004".to_owned()], |(_, v)| list(&v));

        let mut category_map = categories::default_category_map();
        if let Some((key, raw)) = read("CATEGORY_MAP") {
            match categories::parse_category_map(&raw) {
                Ok(custom) => category_map.merge(custom),
                Err(reason) => errors.push(ConfigError::BadMap { key, reason }),
            }
        }
        let destination_map = match read("DESTINATION_MAP") {
            None => GroupMap::default(),
            Some((key, raw)) => categories::parse_group_map(&raw).unwrap_or_else(|reason| {
                errors.push(ConfigError::BadMap { key, reason });
                GroupMap::default()
            }),
        };

        let all_default = boolean(read("ALL_DEFAULT"), false, &mut errors);
        let opt_in = boolean(read("OPT_IN"), true, &mut errors);
        let collection_group = read("COLLECTION_GROUP").map(|(_, v)| v);
        let segment_cdn = origin(read("SEGMENT_CDN"), "https://cdn.segment.com", &mut errors);
        let segment_api = origin(read("SEGMENT_API"), "https://api.segment.io", &mut errors);
        let allowed_origins = read("ALLOWED_ORIGINS")
            .map(|(key, raw)| {
                list(&raw)
                    .into_iter()
                    .filter_map(|o| {
                        let normalized = o.trim_end_matches('/').to_ascii_lowercase();
                        if is_origin(&normalized) {
                            Some(normalized)
                        } else {
                            errors.push(ConfigError::Invalid {
                                key,
                                value: o,
                                expected: "origins like https://www.example.com",
                            });
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let pre_consent_hold_ms = match read("PRE_CONSENT_HOLD_MS") {
            None => DEFAULT_HOLD_MS,
            Some((key, raw)) => match raw.parse::<u32>() {
                Ok(ms) if ms <= MAX_HOLD_MS => ms,
                _ => {
                    errors.push(ConfigError::Invalid {
                        key,
                        value: raw,
                        expected: "milliseconds from 0 (off) to 600000",
                    });
                    DEFAULT_HOLD_MS
                }
            },
        };
        // A broken value stamps the plain receipt: the audit trail stays, and
        // no identifier is added that nobody asked for.
        let receipts = choice(
            read("RECEIPTS"),
            &[
                ("on", Receipts::On),
                ("off", Receipts::Off),
                ("with-id", Receipts::WithId),
            ],
            Receipts::On,
            "on, off or with-id",
            &mut errors,
        );

        Config {
            write_keys,
            path_prefix,
            mode,
            consent_model,
            strict_group,
            gpc_groups,
            category_map,
            destination_map,
            // A broken ALL_DEFAULT enables nothing unmapped; a broken OPT_IN
            // collects nothing: closed.
            all_default: all_default.unwrap_or(false),
            opt_in: opt_in.unwrap_or(false),
            collection_group,
            segment_cdn,
            segment_api,
            allowed_origins,
            pre_consent_hold_ms,
            receipts,
            errors,
        }
    }

    /// While any value is broken, every destination is disabled and only the
    /// strict group is granted, whatever the cookie says.
    pub fn locked_down(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn knows_write_key(&self, write_key: &str) -> bool {
        self.write_keys.iter().any(|k| k == write_key)
    }

    /// The write key used when a request names none: the first configured one.
    pub fn default_write_key(&self) -> Option<&str> {
        self.write_keys.first().map(String::as_str)
    }

    /// For unit tests: `[vars]`-style pairs, serving the write key `wk`
    /// unless they set `WRITE_KEYS`.
    #[cfg(test)]
    pub(crate) fn for_test(vars: &[(&str, &str)]) -> Config {
        Config::from_vars(|key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .or_else(|| (key == "WRITE_KEYS").then(|| "wk".to_owned()))
        })
    }
}

/// Comma-separated values, trimmed, empty ones dropped.
fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One of `options` (any case); the default when unset, and also when the
/// value is not one of them (the defaults of MODE and CONSENT_MODEL grant
/// least; RECEIPTS says why its default is the one to fall back on).
fn choice<T: Copy>(
    value: Option<(&'static str, String)>,
    options: &[(&str, T)],
    default: T,
    expected: &'static str,
    errors: &mut Vec<ConfigError>,
) -> T {
    let Some((key, raw)) = value else {
        return default;
    };
    options
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&raw))
        .map(|&(_, v)| v)
        .unwrap_or_else(|| {
            errors.push(ConfigError::Invalid {
                key,
                value: raw,
                expected,
            });
            default
        })
}

/// `Some(value)`, or `None` after recording an error.
fn boolean(
    value: Option<(&'static str, String)>,
    default: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<bool> {
    let Some((key, raw)) = value else {
        return Some(default);
    };
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => {
            errors.push(ConfigError::Invalid {
                key,
                value: raw,
                expected: "true or false",
            });
            None
        }
    }
}

/// An `http(s)://host[:port]` origin, or `None` (routes that need it answer 503).
fn origin(
    value: Option<(&'static str, String)>,
    default: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    let Some((key, raw)) = value else {
        return Some(default.to_owned());
    };
    let normalized = raw.trim_end_matches('/').to_owned();
    if is_origin(&normalized) {
        Some(normalized)
    } else {
        errors.push(ConfigError::Invalid {
            key,
            value: raw,
            expected: "an origin like https://api.segment.io",
        });
        None
    }
}

pub(crate) fn is_write_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_path_prefix(s: &str) -> bool {
    s.starts_with('/')
        && s.len() > 1
        && !s.contains("//")
        && !s.split('/').any(|seg| seg == "." || seg == "..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_/.".contains(&b))
}

fn is_origin(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_vars(|key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = config(&[("WRITE_KEYS", " wk1 , wk2,, ")]);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(c.write_keys, ["wk1", "wk2"]);
        assert_eq!(c.default_write_key(), Some("wk1"));
        assert_eq!(c.path_prefix, "/edge");
        assert_eq!((c.mode, c.consent_model), (Mode::Both, ConsentModel::OptIn));
        assert_eq!(c.strict_group, "C0001");
        assert_eq!(c.gpc_groups, ["C0004"]);
        assert_eq!(
            (c.all_default, c.opt_in, c.collection_group.as_deref()),
            (false, true, None)
        );
        assert_eq!(c.segment_cdn.as_deref(), Some("https://cdn.segment.com"));
        assert_eq!(c.segment_api.as_deref(), Some("https://api.segment.io"));
        assert!(c.allowed_origins.is_empty());
        assert_eq!(c.pre_consent_hold_ms, 10_000);
        assert_eq!(c.receipts, Receipts::On);
        assert!(!c.locked_down());
        for (key, default, _) in KEYS {
            let documented = match *key {
                "WRITE_KEYS" => continue,
                "CATEGORY_MAP" | "DESTINATION_MAP" => "{}",
                _ => default,
            };
            // Setting every key to its documented default changes nothing.
            let explicit = config(&[("WRITE_KEYS", "wk1,wk2"), (key, documented)]);
            assert_eq!(explicit, c, "{key} = {documented:?}");
        }
    }

    #[test]
    fn values_as_wrangler_passes_them() {
        // TOML booleans and tables reach the Worker as JSON text.
        let c = config(&[
            ("WRITE_KEYS", "wk"),
            ("ALL_DEFAULT", "true"),
            ("OPT_IN", "FALSE"),
            ("MODE", "Context"),
            ("CONSENT_MODEL", "geo"),
            ("PATH_PREFIX", "/consent-edge/"),
            ("GPC_GROUPS", "C0004, C0005"),
            ("COLLECTION_GROUP", " C0002 "),
            ("PRE_CONSENT_HOLD_MS", "0"),
            ("RECEIPTS", "With-Id"),
            ("CATEGORY_MAP", r#"{"Analytics":"PERF"}"#),
            ("DESTINATION_MAP", r#"{"Braze":["C0003","C0004"]}"#),
            ("SEGMENT_API", "https://events.eu1.segmentapis.com/"),
            (
                "ALLOWED_ORIGINS",
                "https://WWW.Example.com/, https://shop.example.com",
            ),
        ]);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!((c.all_default, c.opt_in), (true, false));
        assert_eq!(
            (c.mode, c.consent_model),
            (Mode::Context, ConsentModel::Geo)
        );
        assert_eq!(c.path_prefix, "/consent-edge");
        assert_eq!(c.gpc_groups, ["C0004", "C0005"]);
        assert_eq!(c.collection_group.as_deref(), Some("C0002"));
        assert_eq!(c.pre_consent_hold_ms, 0);
        assert_eq!(c.receipts, Receipts::WithId);
        assert_eq!(
            config(&[("WRITE_KEYS", "wk"), ("RECEIPTS", "off")]).receipts,
            Receipts::Off
        );
        assert_eq!(
            categories::groups_for_category(&c.category_map, "analytics").unwrap(),
            ["PERF"]
        );
        assert_eq!(c.destination_map.get("Braze").unwrap(), ["C0003", "C0004"]);
        assert_eq!(
            c.segment_api.as_deref(),
            Some("https://events.eu1.segmentapis.com")
        );
        assert_eq!(
            c.allowed_origins,
            ["https://www.example.com", "https://shop.example.com"]
        );
    }

    #[test]
    fn every_broken_value_is_reported_by_key_and_takes_its_closed_value() {
        let cases: &[(&str, &str)] = &[
            ("MODE", "sideways"),
            ("CONSENT_MODEL", "maybe"),
            ("CATEGORY_MAP", "{not json"),
            ("DESTINATION_MAP", r#"{"A": 1}"#),
            ("ALL_DEFAULT", "yes please"),
            ("OPT_IN", "2"),
            ("SEGMENT_CDN", "cdn.segment.com"),
            ("SEGMENT_API", "ftp://api.segment.io"),
            ("ALLOWED_ORIGINS", "https://ok.example, not an origin"),
            ("PATH_PREFIX", "/../x"),
            ("PRE_CONSENT_HOLD_MS", "10s"),
            ("PRE_CONSENT_HOLD_MS", "600001"),
            ("PRE_CONSENT_HOLD_MS", "-1"),
            ("RECEIPTS", "sometimes"),
            ("RECEIPTS", "with_id"),
            ("WRITE_KEYS", "good_key,bad key<script>"),
        ];
        for &(key, value) in cases {
            let mut vars = vec![("WRITE_KEYS", "wk")];
            vars.retain(|(k, _)| *k != key);
            vars.push((key, value));
            let c = config(&vars);
            assert_eq!(c.errors.len(), 1, "{key}: {:?}", c.errors);
            assert_eq!(c.errors[0].key(), key);
            assert!(c.locked_down(), "{key}");
            assert!(c.errors[0].to_string().starts_with(key), "{}", c.errors[0]);
        }
        assert!(
            !config(&[("WRITE_KEYS", "wk"), ("OPT_IN", "nope")]).opt_in,
            "a broken OPT_IN collects nothing"
        );
        assert!(!config(&[("WRITE_KEYS", "wk"), ("ALL_DEFAULT", "?")]).all_default);
        assert_eq!(
            config(&[("WRITE_KEYS", "wk"), ("RECEIPTS", "yes")]).receipts,
            Receipts::On,
            "a broken RECEIPTS stamps the plain receipt"
        );
        assert_eq!(
            config(&[("WRITE_KEYS", "wk"), ("SEGMENT_API", "x")]).segment_api,
            None,
            "never another host"
        );
        let c = config(&[("WRITE_KEYS", "good_key,bad key<script>")]);
        assert_eq!(c.write_keys, ["good_key"]);
        assert!(
            !c.errors[0].to_string().contains("<script>"),
            "a bad key is shortened in messages"
        );
    }

    #[test]
    fn missing_write_keys_is_an_error() {
        for value in [None, Some(""), Some(" , ")] {
            let c = Config::from_vars(|key| {
                (key == "WRITE_KEYS")
                    .then(|| value.unwrap_or_default().to_owned())
                    .filter(|_| value.is_some())
            });
            assert!(c.write_keys.is_empty());
            assert!(c.locked_down(), "{value:?}");
        }
    }
}
