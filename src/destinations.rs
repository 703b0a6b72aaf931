//! A write key's destination list: read from Segment's Projects API and the
//! source settings, stored in KV, and mapped to the OneTrust groups each needs.

use crate::categories::groups_for_category;
use crate::config::Config;
use crate::json;
use crate::rules::Rules;
use crate::time::{format_rfc3339, parse_rfc3339};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The KV key holding a write key's list. The `v1:` prefix lets a later
/// schema live beside this one during a rollout.
pub fn kv_key(write_key: &str) -> String {
    format!("v1:destinations:{write_key}")
}

/// One destination enabled on the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub name: String,
    /// The key analytics.js and Segment match in `integrations`.
    pub creation_name: String,
    #[serde(default)]
    pub category: String,
    /// `consentSettings.categories` from the source settings (Segment Consent
    /// Management); empty when not configured.
    #[serde(default)]
    pub consent_categories: Vec<String>,
}

/// The stored value: what the last good refresh found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationList {
    pub fetched_at: String,
    pub destinations: Vec<Destination>,
}

impl DestinationList {
    /// Milliseconds since the epoch when it was fetched, if the stamp reads.
    pub fn fetched_at_ms(&self) -> Option<u64> {
        parse_rfc3339(&self.fetched_at)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(raw: &str) -> Result<Self, DestinationError> {
        serde_json::from_str(raw).map_err(|e| DestinationError::Shape(format!("stored list: {e}")))
    }
}

/// Why a refresh could not produce a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationError {
    /// The upstream could not be reached or did not answer in time.
    Network(String),
    /// The upstream answered with a non-2xx status for this document.
    Status { document: &'static str, status: u16 },
    /// The body was not JSON.
    Json(String),
    /// Valid JSON of the wrong shape.
    Shape(String),
}

impl fmt::Display for DestinationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestinationError::Network(reason) => write!(f, "network error: {reason}"),
            DestinationError::Status { document, status } => {
                write!(f, "{document} answered HTTP {status}")
            }
            DestinationError::Json(reason) => write!(f, "invalid JSON: {reason}"),
            DestinationError::Shape(reason) => write!(f, "unexpected shape: {reason}"),
        }
    }
}

/// One item of `GET {cdn}/v1/projects/{wk}/integrations`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProjectsItem {
    name: String,
    #[serde(default)]
    creation_name: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

/// Builds the list from the Projects API body and the settings body.
/// Settings' integrations that the Projects API does not list (device-mode
/// action destinations, for one) are added with no category, so that their
/// consent categories still apply.
pub fn from_upstream(
    projects: &[u8],
    settings: &[u8],
    now_ms: u64,
) -> Result<DestinationList, DestinationError> {
    let items: Value = serde_json::from_slice(projects)
        .map_err(|e| DestinationError::Json(format!("integrations: {e}")))?;
    if !items.is_array() {
        return Err(DestinationError::Shape(
            "integrations: expected an array".to_owned(),
        ));
    }
    let items: Vec<ProjectsItem> = serde_json::from_value(items)
        .map_err(|e| DestinationError::Shape(format!("integrations: {e}")))?;

    let settings: Value = serde_json::from_slice(settings)
        .map_err(|e| DestinationError::Json(format!("settings: {e}")))?;
    let Some(integrations) = settings.get("integrations").and_then(Value::as_object) else {
        return Err(DestinationError::Shape(
            "settings: expected an object with integrations".to_owned(),
        ));
    };
    let consent_categories = |creation_name: &str| -> Vec<String> {
        integrations
            .get(creation_name)
            .and_then(|i| i.pointer("/consentSettings/categories"))
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };

    let mut destinations: Vec<Destination> = items
        .into_iter()
        .map(|item| {
            let creation_name = item
                .creation_name
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| item.name.clone());
            Destination {
                consent_categories: consent_categories(&creation_name),
                name: item.name,
                creation_name,
                category: item.category.unwrap_or_default(),
            }
        })
        .collect();
    for creation_name in integrations.keys() {
        let listed = destinations
            .iter()
            .any(|d| &d.creation_name == creation_name);
        if creation_name != "Segment.io" && !listed {
            destinations.push(Destination {
                name: creation_name.clone(),
                creation_name: creation_name.clone(),
                category: String::new(),
                consent_categories: consent_categories(creation_name),
            });
        }
    }
    Ok(DestinationList {
        fetched_at: format_rfc3339(now_ms),
        destinations,
    })
}

/// Which rule decided a destination's groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingRule {
    /// Segment Consent Management: `consentSettings.categories`.
    ConsentSettings,
    /// `DESTINATION_MAP`.
    DestinationMap,
    /// `CATEGORY_MAP` (or its defaults) for its category.
    Category,
    /// Nothing maps it; `ALL_DEFAULT` decides.
    Unmapped,
}

/// A destination with the groups it needs (all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedDestination {
    /// The `integrations` key: creationName.
    pub key: String,
    /// `key` as a JSON string literal, quotes included: escaped once here,
    /// copied into every event stamped with it.
    pub key_literal: String,
    pub name: String,
    pub category: String,
    pub groups: Vec<String>,
    pub rule: MappingRule,
}

/// A destination list mapped under the configuration and indexed for the
/// request path, with the digest of the rules that makes (for receipts).
/// Built once per list, not per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationSet {
    destinations: Vec<MappedDestination>,
    /// creationName and name → position; creationName wins a clash.
    index: FxHashMap<String, usize>,
    /// Every group some destination needs, in list order, once.
    groups: Vec<String>,
    rules: Rules,
}

impl DestinationSet {
    /// Maps each destination: consent settings, else `DESTINATION_MAP`, else
    /// `CATEGORY_MAP`. An empty list is also what applies before any list is
    /// loaded (the failsafe).
    pub fn new(list: &[Destination], config: &Config) -> Self {
        let mut set = DestinationSet {
            destinations: Vec::with_capacity(list.len()),
            index: FxHashMap::default(),
            groups: Vec::new(),
            rules: Rules::new(config, list),
        };
        for d in list {
            if set.index.contains_key(&d.creation_name) {
                continue;
            }
            let (groups, rule) = if !d.consent_categories.is_empty() {
                (d.consent_categories.clone(), MappingRule::ConsentSettings)
            } else if let Some(groups) = config
                .destination_map
                .get(&d.creation_name)
                .or_else(|| config.destination_map.get(&d.name))
            {
                (groups.to_vec(), MappingRule::DestinationMap)
            } else if let Some(groups) = groups_for_category(&config.category_map, &d.category) {
                (groups.to_vec(), MappingRule::Category)
            } else {
                (Vec::new(), MappingRule::Unmapped)
            };
            for g in &groups {
                if !set.groups.contains(g) {
                    set.groups.push(g.clone());
                }
            }
            let at = set.destinations.len();
            set.index.insert(d.creation_name.clone(), at);
            let mut key_literal = Vec::with_capacity(d.creation_name.len() + 2);
            json::write_str(&mut key_literal, &d.creation_name);
            set.destinations.push(MappedDestination {
                key: d.creation_name.clone(),
                key_literal: String::from_utf8(key_literal).expect("JSON text is UTF-8"),
                name: d.name.clone(),
                category: d.category.clone(),
                groups,
                rule,
            });
        }
        for (at, d) in set.destinations.iter().enumerate() {
            set.index.entry(d.name.clone()).or_insert(at);
        }
        set
    }

    pub fn destinations(&self) -> &[MappedDestination] {
        &self.destinations
    }

    /// The position of the destination an `integrations` key names (creationName or name).
    pub fn find(&self, key: &str) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// [`find`](Self::find), trying position `hint` first: the loader stamps
    /// events with every destination in set order, so walking an event's
    /// `integrations` mostly meets them in that order, without hashing.
    pub fn find_from(&self, hint: usize, key: &str) -> Option<usize> {
        match self.destinations.get(hint) {
            Some(d) if json::same(d.key.as_bytes(), key.as_bytes()) => Some(hint),
            _ => self.find(key),
        }
    }

    /// Every group some destination needs.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The rules this set decides by: the configuration and the list.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROJECTS: &str = r#"[
        {"name": "Google Analytics 4 Web", "creationName": "Google Analytics 4 Web", "category": "Analytics", "website": "https://ga.example"},
        {"name": "Facebook Pixel", "category": "Advertising"},
        {"name": "Hotjar", "creationName": "Hotjar", "category": "Heatmaps & Recordings"},
        {"name": "Webhooks", "creationName": "Webhooks", "category": "Raw Data"},
        {"name": "Mystery", "creationName": "Mystery", "category": "Other"}
    ]"#;
    const SETTINGS: &str = r#"{
        "integrations": {
            "Segment.io": {"apiKey": "wk"},
            "Google Analytics 4 Web": {"consentSettings": {"categories": ["C0002", "C0004"]}},
            "Hotjar": {"consentSettings": {"categories": []}},
            "Actions Amplitude": {"consentSettings": {"categories": ["C0003"]}}
        },
        "consentSettings": {"allCategories": ["C0002", "C0003", "C0004"]}
    }"#;

    fn list() -> DestinationList {
        from_upstream(PROJECTS.as_bytes(), SETTINGS.as_bytes(), 1_795_600_496_000).unwrap()
    }

    #[test]
    fn merges_projects_list_and_consent_settings() {
        let list = list();
        assert_eq!(list.fetched_at, "2026-11-25T09:54:56Z");
        let names: Vec<_> = list
            .destinations
            .iter()
            .map(|d| d.creation_name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "Google Analytics 4 Web",
                "Facebook Pixel",
                "Hotjar",
                "Webhooks",
                "Mystery",
                "Actions Amplitude"
            ]
        );
        let fb = &list.destinations[1];
        assert_eq!(
            (fb.name.as_str(), fb.creation_name.as_str()),
            ("Facebook Pixel", "Facebook Pixel")
        );
        assert_eq!(list.destinations[0].consent_categories, ["C0002", "C0004"]);
        assert!(list.destinations[2].consent_categories.is_empty());
        assert_eq!(list.destinations[5].consent_categories, ["C0003"]);
    }

    #[test]
    fn kv_json_round_trips() {
        let list = list();
        let json = list.to_json();
        assert!(json.contains(r#""fetchedAt":"2026-11-25T09:54:56Z""#));
        assert!(json.contains(r#""creationName":"Facebook Pixel""#));
        assert!(json.contains(r#""consentCategories":["C0002","C0004"]"#));
        assert_eq!(DestinationList::from_json(&json).unwrap(), list);
        assert_eq!(list.fetched_at_ms(), Some(1_795_600_496_000));
    }

    #[test]
    fn an_empty_list_is_a_list() {
        let list = from_upstream(b"[]", br#"{"integrations": {}}"#, 0).unwrap();
        assert!(list.destinations.is_empty());
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let ok_settings = br#"{"integrations": {}}"#;
        let cases: [(&[u8], &[u8], &str); 6] = [
            (b"<html>", ok_settings, "invalid JSON"),
            (br#"{"integrations": []}"#, ok_settings, "unexpected shape"),
            (
                br#"[{"category": "Analytics"}]"#,
                ok_settings,
                "unexpected shape",
            ),
            (br#"[{"name": 7}]"#, ok_settings, "unexpected shape"),
            (b"[]", b"nope", "invalid JSON"),
            (b"[]", br#"{"integrations": "x"}"#, "unexpected shape"),
        ];
        for (projects, settings, expected) in cases {
            let err = from_upstream(projects, settings, 0).unwrap_err();
            assert!(err.to_string().starts_with(expected), "{err}");
        }
    }

    #[test]
    fn mapping_prefers_consent_settings_then_destination_map_then_category() {
        let config = Config::from_vars(|key| match key {
            "WRITE_KEYS" => Some("wk".into()),
            "DESTINATION_MAP" => Some(
                r#"{"Facebook Pixel": ["C0004", "C0005"], "Google Analytics 4 Web": "C0009"}"#
                    .into(),
            ),
            _ => None,
        });
        let set = DestinationSet::new(&list().destinations, &config);
        let by_key = |k: &str| &set.destinations()[set.find(k).unwrap()];
        assert_eq!(by_key("Google Analytics 4 Web").groups, ["C0002", "C0004"]);
        assert_eq!(
            by_key("Google Analytics 4 Web").rule,
            MappingRule::ConsentSettings
        );
        assert_eq!(by_key("Facebook Pixel").groups, ["C0004", "C0005"]);
        assert_eq!(by_key("Facebook Pixel").rule, MappingRule::DestinationMap);
        assert_eq!(
            by_key("Hotjar").groups,
            ["C0002"],
            "empty consent categories count as absent"
        );
        assert_eq!(by_key("Hotjar").rule, MappingRule::Category);
        assert_eq!(by_key("Mystery").rule, MappingRule::Unmapped);
        assert!(by_key("Mystery").groups.is_empty());
        assert_eq!(set.groups(), ["C0002", "C0004", "C0005", "C0003"]);
    }

    #[test]
    fn set_finds_destinations_by_creation_name_or_name() {
        let list = [
            Destination {
                name: "Amplitude".into(),
                creation_name: "Actions Amplitude".into(),
                category: "Analytics".into(),
                consent_categories: vec![],
            },
            Destination {
                name: "Actions Amplitude".into(),
                creation_name: "Other".into(),
                category: "".into(),
                consent_categories: vec![],
            },
            Destination {
                name: "dup".into(),
                creation_name: "Actions Amplitude".into(),
                category: "".into(),
                consent_categories: vec![],
            },
        ];
        let set = DestinationSet::new(&list, &Config::default());
        assert_eq!(
            set.destinations().len(),
            2,
            "a repeated creationName is listed once"
        );
        assert_eq!(
            set.find("Actions Amplitude"),
            Some(0),
            "creationName wins over another's name"
        );
        assert_eq!(set.find("Amplitude"), Some(0));
        assert_eq!(set.find("Other"), Some(1));
        assert_eq!(set.find("amplitude"), None);
        assert_eq!(set.find_from(1, "Other"), Some(1));
        assert_eq!(
            set.find_from(0, "Other"),
            Some(1),
            "a wrong hint still finds it"
        );
        assert_eq!(set.find_from(7, "Amplitude"), Some(0));
        assert_eq!(set.find_from(0, "nope"), None);
    }
}
