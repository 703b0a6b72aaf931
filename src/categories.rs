//! Which OneTrust group each Segment destination category needs, and the
//! name → group id(s) maps that `CATEGORY_MAP` and `DESTINATION_MAP` configure.

use serde_json::Value;

/// Segment's destination categories and the OneTrust group each goes to by
/// default (OneTrust's standard groups: C0002 performance, C0003 functional,
/// C0004 targeting, C0005 social media). Any other category is unmapped.
pub const DEFAULT_CATEGORY_GROUPS: &[(&str, &str)] = &[
    ("Analytics", "C0002"),
    ("A/B Testing", "C0002"),
    ("Heatmaps & Recordings", "C0002"),
    ("Performance Monitoring", "C0002"),
    ("Raw Data", "C0002"),
    ("Personalization", "C0003"),
    ("Feature Flagging", "C0003"),
    ("Livechat", "C0003"),
    ("Customer Success", "C0003"),
    ("Surveys", "C0003"),
    ("Video", "C0003"),
    ("Security & Fraud", "C0003"),
    ("Advertising", "C0004"),
    ("Attribution", "C0004"),
    ("Deep Linking", "C0004"),
    ("Email", "C0004"),
    ("Email Marketing", "C0004"),
    ("CRM", "C0004"),
    ("Marketing Automation", "C0004"),
    ("Referrals", "C0004"),
    ("SMS & Push Notifications", "C0004"),
    ("Tag Managers", "C0004"),
    ("Enrichment", "C0004"),
    ("Social Media", "C0005"),
];

/// Names mapped to the group ids they all require, in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMap(Vec<(String, Vec<String>)>);

impl GroupMap {
    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, groups)| groups.as_slice())
    }

    /// Each name with its groups, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.0
            .iter()
            .map(|(key, groups)| (key.as_str(), groups.as_slice()))
    }

    /// Adds `other`'s entries; its keys win over existing ones.
    pub fn merge(&mut self, other: GroupMap) {
        for (key, groups) in other.0 {
            match self.0.iter_mut().find(|(existing, _)| *existing == key) {
                Some(entry) => entry.1 = groups,
                None => self.0.push((key, groups)),
            }
        }
    }
}

/// Category names compare without regard to ASCII case ("Email marketing").
pub fn category_key(category: &str) -> String {
    category.trim().to_ascii_lowercase()
}

/// The default table as a [`GroupMap`] keyed by [`category_key`].
pub fn default_category_map() -> GroupMap {
    GroupMap(
        DEFAULT_CATEGORY_GROUPS
            .iter()
            .map(|&(category, group)| (category_key(category), vec![group.to_owned()]))
            .collect(),
    )
}

/// The groups a Segment category needs under `map`, if it is mapped.
pub fn groups_for_category<'m>(map: &'m GroupMap, category: &str) -> Option<&'m [String]> {
    map.get(&category_key(category))
}

/// Parses a `CATEGORY_MAP` value: category keys are case-folded.
pub fn parse_category_map(raw: &str) -> Result<GroupMap, String> {
    let GroupMap(entries) = parse_group_map(raw)?;
    Ok(GroupMap(
        entries
            .into_iter()
            .map(|(k, v)| (category_key(&k), v))
            .collect(),
    ))
}

/// Parses `{"name": "C0002", "other": ["C0002", "C0004"]}`.
pub fn parse_group_map(raw: &str) -> Result<GroupMap, String> {
    let value: Value = serde_json::from_str(raw).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(object) = value else {
        return Err("expected a JSON object of name to group id or [group ids]".to_owned());
    };
    let mut map = GroupMap::default();
    for (name, groups) in object {
        let groups = match groups {
            Value::String(id) => vec![id],
            Value::Array(ids) => ids
                .into_iter()
                .map(|id| match id {
                    Value::String(id) => Ok(id),
                    other => Err(format!("{name:?}: group ids must be strings, got {other}")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            other => {
                return Err(format!(
                    "{name:?}: expected a group id or an array of group ids, got {other}"
                ))
            }
        };
        let groups: Vec<String> = groups.iter().map(|g| g.trim().to_owned()).collect();
        if groups.is_empty() || groups.iter().any(String::is_empty) {
            return Err(format!("{name:?}: group ids must be non-empty"));
        }
        map.merge(GroupMap(vec![(name, groups)]));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every category Segment's catalog uses for destinations has a group.
    #[test]
    fn default_table_covers_segment_categories() {
        let map = default_category_map();
        let segment_categories = [
            "A/B Testing",
            "Advertising",
            "Analytics",
            "Attribution",
            "CRM",
            "Customer Success",
            "Deep Linking",
            "Email",
            "Email Marketing",
            "Enrichment",
            "Feature Flagging",
            "Heatmaps & Recordings",
            "Livechat",
            "Marketing Automation",
            "Performance Monitoring",
            "Personalization",
            "Raw Data",
            "Referrals",
            "Security & Fraud",
            "SMS & Push Notifications",
            "Surveys",
            "Tag Managers",
            "Video",
            "Social Media",
        ];
        for category in segment_categories {
            assert!(groups_for_category(&map, category).is_some(), "{category}");
        }
        assert_eq!(groups_for_category(&map, "Analytics").unwrap(), ["C0002"]);
        assert_eq!(groups_for_category(&map, "advertising").unwrap(), ["C0004"]);
        assert_eq!(
            groups_for_category(&map, "Social Media").unwrap(),
            ["C0005"]
        );
        assert_eq!(groups_for_category(&map, "Livechat").unwrap(), ["C0003"]);
        assert!(groups_for_category(&map, "Other").is_none());
        assert!(groups_for_category(&map, "").is_none());
    }

    #[test]
    fn group_map_accepts_one_id_or_an_array() {
        let map =
            parse_group_map(r#"{"Amplitude": "C0002", "Braze": ["C0002", " C0004 "]}"#).unwrap();
        assert_eq!(map.get("Amplitude").unwrap(), ["C0002"]);
        assert_eq!(map.get("Braze").unwrap(), ["C0002", "C0004"]);
        assert!(
            map.get("amplitude").is_none(),
            "destination names match exactly"
        );
    }

    #[test]
    fn group_map_rejects_wrong_shapes() {
        for raw in [
            "not json",
            "[]",
            r#""C0002""#,
            r#"{"A": 2}"#,
            r#"{"A": [2]}"#,
            r#"{"A": []}"#,
            r#"{"A": ""}"#,
            r#"{"A": null}"#,
        ] {
            assert!(parse_group_map(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn custom_category_map_merges_over_defaults() {
        let mut map = default_category_map();
        map.merge(
            parse_category_map(
                r#"{"analytics": "PERF", "Video": ["C0003", "C0004"], "Other": "C0009"}"#,
            )
            .unwrap(),
        );
        assert_eq!(groups_for_category(&map, "Analytics").unwrap(), ["PERF"]);
        assert_eq!(
            groups_for_category(&map, "Video").unwrap(),
            ["C0003", "C0004"]
        );
        assert_eq!(groups_for_category(&map, "Other").unwrap(), ["C0009"]);
        assert_eq!(groups_for_category(&map, "Advertising").unwrap(), ["C0004"]);
    }
}
