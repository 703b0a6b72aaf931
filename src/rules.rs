//! The rules behind a consent receipt: everything a decision depended on
//! besides the request — the consent settings (as effective values) and the
//! write key's destination list — written as one canonical JSON text, the
//! snapshot, and named by the first 16 hex digits of its SHA-256, the digest
//! a receipt's `rules` carries.
//!
//! The canonical form: no whitespace; object keys sorted by their bytes;
//! strings escaped as [`write_str`] does (`"`, `\` and control characters
//! only, everything else as UTF-8); sets (group lists, the destination list)
//! sorted and without repeats. Same configuration and list, same text, same
//! digest, in every isolate. It holds:
//!
//! ```text
//! {"configErrors":["KEY",…],
//!  "destinations":[{"category":…,"consentCategories":[…],"creationName":…,"name":…},…],
//!  "settings":{"ALL_DEFAULT":…,"CATEGORY_MAP":{…},"COLLECTION_GROUP":…|null,
//!   "CONSENT_MODEL":…,"DESTINATION_MAP":{…},"GPC_GROUPS":[…],"MODE":…,"OPT_IN":…,
//!   "PRE_CONSENT_HOLD_MS":…,"STRICT_GROUP":…},
//!  "v":1}
//! ```
//!
//! `CATEGORY_MAP` is the default table with the configured map merged over it
//! (category names case-folded, as they are matched); `configErrors` names the
//! keys whose broken value locks consent down. Nothing else is in it: not
//! `RECEIPTS`, the origins, the path prefix or the Segment hosts, which decide
//! nothing about consent.

use crate::categories::GroupMap;
use crate::config::Config;
use crate::destinations::Destination;
use crate::json::{write_str, ObjectWriter};
use sha2::{Digest, Sha256};
use std::fmt;

/// The canonical form's version: what it holds changes only with a new `v`.
const FORM_VERSION: &[u8] = b"1";
/// A snapshot that could not be stored is tried again after this long.
const RETRY_MS: u64 = 60_000;

/// The first 8 bytes of a snapshot's SHA-256, kept as the 16 lowercase hex
/// digits every use writes (each receipt: no formatting per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RulesDigest([u8; 16]);

impl RulesDigest {
    pub fn of(canonical: &[u8]) -> RulesDigest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hash = Sha256::digest(canonical);
        let mut hex = [0; 16];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(&hash[..8]) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        RulesDigest(hex)
    }

    /// Exactly 16 lowercase hex digits, as the digest is written; anything
    /// else (uppercase, another length, a path) names no snapshot.
    pub fn parse(text: &str) -> Option<RulesDigest> {
        let is_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        let hex: [u8; 16] = text.as_bytes().try_into().ok()?;
        hex.iter().all(is_hex).then_some(RulesDigest(hex))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }

    /// The KV key its snapshot is stored under.
    pub fn kv_key(self) -> String {
        format!("v1:rules:{self}")
    }
}

impl fmt::Display for RulesDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot and its digest. Built when the configuration or a list
/// changes, never per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    canonical: String,
    digest: RulesDigest,
}

impl Rules {
    /// The rules of `config` over a write key's `list` (an empty list before
    /// any is loaded: the failsafe decides exactly as an empty list does).
    pub fn new(config: &Config, list: &[Destination]) -> Rules {
        let mut out = Vec::with_capacity(1024 + list.len() * 128);
        let mut w = ObjectWriter::new(&mut out);
        // Keys in byte order, here and below.
        write_set(w.key("configErrors"), config.errors.iter().map(|e| e.key()));
        write_destinations(w.key("destinations"), list);
        write_settings(w.key("settings"), config);
        w.key("v").extend_from_slice(FORM_VERSION);
        w.finish();
        let digest = RulesDigest::of(&out);
        Rules {
            canonical: String::from_utf8(out).expect("JSON text is UTF-8"),
            digest,
        }
    }

    /// The snapshot: what `GET {p}/rules/{digest}` serves.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    pub fn digest(&self) -> RulesDigest {
        self.digest
    }
}

/// The settings a decision depends on, as the Worker applies them.
fn write_settings(out: &mut Vec<u8>, config: &Config) {
    let mut w = ObjectWriter::new(out);
    w.bool("ALL_DEFAULT", config.all_default);
    write_group_map(w.key("CATEGORY_MAP"), &config.category_map);
    w.str_or_null("COLLECTION_GROUP", config.collection_group.as_deref());
    w.str("CONSENT_MODEL", config.consent_model.as_str());
    write_group_map(w.key("DESTINATION_MAP"), &config.destination_map);
    write_set(
        w.key("GPC_GROUPS"),
        config.gpc_groups.iter().map(String::as_str),
    );
    w.str("MODE", config.mode.as_str());
    w.bool("OPT_IN", config.opt_in);
    w.key("PRE_CONSENT_HOLD_MS")
        .extend_from_slice(config.pre_consent_hold_ms.to_string().as_bytes());
    w.str("STRICT_GROUP", &config.strict_group);
    w.finish();
}

/// The list as the Worker maps it, sorted: a repeated creationName counts
/// once, the first time (as in [`crate::destinations::DestinationSet`]).
fn write_destinations(out: &mut Vec<u8>, list: &[Destination]) {
    out.push(b'[');
    let order = by_name(list.iter().map(|d| d.creation_name.as_str()));
    for (i, &(_, at)) in once_each(&order).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let d = &list[at];
        let mut w = ObjectWriter::new(out);
        w.str("category", &d.category);
        write_set(
            w.key("consentCategories"),
            d.consent_categories.iter().map(String::as_str),
        );
        w.str("creationName", &d.creation_name);
        w.str("name", &d.name);
        w.finish();
    }
    out.push(b']');
}

/// `{"name":["group",…],…}`: a destination needs all its groups, so each
/// list is a set.
fn write_group_map(out: &mut Vec<u8>, map: &GroupMap) {
    let entries: Vec<(&str, &[String])> = map.iter().collect();
    let mut w = ObjectWriter::new(out);
    for &(name, at) in once_each(&by_name(entries.iter().map(|(name, _)| *name))) {
        write_set(w.key(name), entries[at].1.iter().map(String::as_str));
    }
    w.finish();
}

/// A JSON array of strings, sorted, each once.
fn write_set<'s>(out: &mut Vec<u8>, items: impl Iterator<Item = &'s str>) {
    out.push(b'[');
    for (i, &(item, _)) in once_each(&by_name(items)).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, item);
    }
    out.push(b']');
}

/// Each name with its position, in byte order of the names, equal names in
/// their order. The one sort of the canonical form (one instantiation of it
/// in the Worker, which pays for code size).
fn by_name<'a>(names: impl Iterator<Item = &'a str>) -> Vec<(&'a str, usize)> {
    let mut sorted: Vec<(&str, usize)> = names.enumerate().map(|(at, n)| (n, at)).collect();
    sorted.sort_unstable();
    sorted
}

/// The first of each run of equal names.
fn once_each<'s, 'a>(sorted: &'s [(&'a str, usize)]) -> impl Iterator<Item = &'s (&'a str, usize)> {
    sorted
        .iter()
        .enumerate()
        .filter(|(i, (name, _))| *i == 0 || sorted[i - 1].0 != *name)
        .map(|(_, entry)| entry)
}

/// Which snapshots an isolate has put in KV. Each digest's snapshot is stored
/// on its first use, not once per request (KV takes one write per second per
/// key); one that could not be stored is tried again a minute later.
#[derive(Debug, Default)]
pub struct SnapshotLedger {
    /// A few digests per write key over an isolate's life: a list will do.
    stages: Vec<(RulesDigest, Stage)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Storing,
    Stored,
    Failed { at_ms: u64 },
}

impl SnapshotLedger {
    /// Whether the caller is to store `digest`'s snapshot now; if so, no
    /// other caller is until it [`settle`](Self::settle)s.
    pub fn claim(&mut self, digest: RulesDigest, now_ms: u64) -> bool {
        let due = match self.stage(digest) {
            None => true,
            Some(Stage::Failed { at_ms }) => now_ms.saturating_sub(at_ms) >= RETRY_MS,
            Some(Stage::Storing | Stage::Stored) => false,
        };
        if due {
            self.set(digest, Stage::Storing);
        }
        due
    }

    /// Records how a claimed store ended.
    pub fn settle(&mut self, digest: RulesDigest, stored: bool, now_ms: u64) {
        let stage = if stored {
            Stage::Stored
        } else {
            Stage::Failed { at_ms: now_ms }
        };
        self.set(digest, stage);
    }

    fn stage(&self, digest: RulesDigest) -> Option<Stage> {
        self.stages
            .iter()
            .find(|(d, _)| *d == digest)
            .map(|&(_, stage)| stage)
    }

    fn set(&mut self, digest: RulesDigest, stage: Stage) {
        match self.stages.iter_mut().find(|(d, _)| *d == digest) {
            Some(entry) => entry.1 = stage,
            None => self.stages.push((digest, stage)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::for_test(vars)
    }

    fn d(name: &str, creation_name: &str, category: &str, consent: &[&str]) -> Destination {
        Destination {
            name: name.into(),
            creation_name: creation_name.into(),
            category: category.into(),
            consent_categories: consent.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn list() -> Vec<Destination> {
        vec![
            d(
                "Google Analytics 4 Web",
                "Google Analytics 4 Web",
                "Analytics",
                &[],
            ),
            d(
                "Amplitude (Actions)",
                "Actions Amplitude",
                "Analytics",
                &["C0002", "C0003"],
            ),
            d("Facebook Pixel", "Facebook Pixel", "Advertising", &[]),
        ]
    }

    fn digest(vars: &[(&str, &str)], list: &[Destination]) -> RulesDigest {
        Rules::new(&config(vars), list).digest()
    }

    #[test]
    fn the_digest_is_the_sha256_prefix_of_the_snapshot() {
        let rules = Rules::new(&config(&[]), &list());
        let hex = rules.digest().to_string();
        assert_eq!(hex.len(), 16);
        let full: String = Sha256::digest(rules.canonical().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, full[..16]);
        assert_eq!(RulesDigest::parse(&hex), Some(rules.digest()));
        assert_eq!(rules.digest().kv_key(), format!("v1:rules:{hex}"));
    }

    #[test]
    fn the_snapshot_is_canonical_json() {
        let rules = Rules::new(
            &config(&[
                ("CATEGORY_MAP", r#"{"Zeta": ["C0009", "C0002", "C0009"]}"#),
                ("DESTINATION_MAP", r#"{"b": "C0003", "a": ["C0004"]}"#),
                ("GPC_GROUPS", "C0005,C0004"),
                ("COLLECTION_GROUP", "C0002"),
            ]),
            &list(),
        );
        let value: Value = serde_json::from_str(rules.canonical()).unwrap();
        // serde_json's maps are sorted by key and it writes no whitespace:
        // re-serialized, the text is the same.
        assert_eq!(value.to_string(), rules.canonical());
        let settings = &value["settings"];
        assert_eq!(
            settings["CATEGORY_MAP"]["zeta"],
            serde_json::json!(["C0002", "C0009"])
        );
        assert_eq!(
            settings["CATEGORY_MAP"]["analytics"],
            serde_json::json!(["C0002"])
        );
        assert_eq!(
            settings["DESTINATION_MAP"],
            serde_json::json!({"a": ["C0004"], "b": ["C0003"]})
        );
        assert_eq!(
            settings["GPC_GROUPS"],
            serde_json::json!(["C0004", "C0005"])
        );
        assert_eq!(settings["COLLECTION_GROUP"], "C0002");
        assert_eq!(settings["PRE_CONSENT_HOLD_MS"], 10_000);
        assert_eq!(value["v"], 1);
        assert_eq!(value["configErrors"], serde_json::json!([]));
        let names: Vec<&str> = value["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["creationName"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Actions Amplitude",
                "Facebook Pixel",
                "Google Analytics 4 Web"
            ]
        );
        assert_eq!(
            value["destinations"][0],
            serde_json::json!({"category": "Analytics", "consentCategories": ["C0002", "C0003"], "creationName": "Actions Amplitude", "name": "Amplitude (Actions)"})
        );
    }

    #[test]
    fn unset_and_explicit_defaults_give_the_same_digest() {
        let unset = digest(&[], &list());
        for (key, value) in [
            ("MODE", "both"),
            ("MODE", "BOTH"),
            ("CONSENT_MODEL", "opt-in"),
            ("STRICT_GROUP", "C0001"),
            ("GPC_GROUPS", "C0004"),
            ("GPC_GROUPS", " C0004 , C0004"),
            ("CATEGORY_MAP", "{}"),
            (
                "CATEGORY_MAP",
                r#"{"analytics": "C0002", "ADVERTISING": ["C0004"]}"#,
            ),
            ("DESTINATION_MAP", "{}"),
            ("ALL_DEFAULT", "false"),
            ("OPT_IN", "true"),
            ("COLLECTION_GROUP", ""),
            ("PRE_CONSENT_HOLD_MS", "10000"),
        ] {
            assert_eq!(digest(&[(key, value)], &list()), unset, "{key} = {value:?}");
        }
    }

    #[test]
    fn list_order_and_repeats_change_nothing() {
        let mut reversed = list();
        reversed.reverse();
        assert_eq!(digest(&[], &reversed), digest(&[], &list()));
        let mut shuffled_categories = list();
        shuffled_categories[1].consent_categories =
            vec!["C0003".into(), "C0002".into(), "C0003".into()];
        assert_eq!(digest(&[], &shuffled_categories), digest(&[], &list()));
        // A repeated creationName: the first one is the one that applies.
        let mut repeated = list();
        repeated.push(d("Other name", "Facebook Pixel", "Analytics", &[]));
        assert_eq!(digest(&[], &repeated), digest(&[], &list()));
        repeated.reverse();
        assert_ne!(
            digest(&[], &repeated),
            digest(&[], &list()),
            "now the other one applies"
        );
    }

    #[test]
    fn every_consent_setting_changes_the_digest() {
        let base = digest(&[], &list());
        let mut seen = vec![base];
        for (key, value) in [
            ("MODE", "context"),
            ("MODE", "integrations"),
            ("CONSENT_MODEL", "opt-out"),
            ("CONSENT_MODEL", "geo"),
            ("STRICT_GROUP", "NECESSARY"),
            ("GPC_GROUPS", "C0004,C0005"),
            ("CATEGORY_MAP", r#"{"Analytics": "C0003"}"#),
            ("CATEGORY_MAP", r#"{"Custom": "C0003"}"#),
            ("DESTINATION_MAP", r#"{"Facebook Pixel": "C0005"}"#),
            ("ALL_DEFAULT", "true"),
            ("OPT_IN", "false"),
            ("COLLECTION_GROUP", "C0002"),
            ("PRE_CONSENT_HOLD_MS", "0"),
            // Broken: consent is locked down.
            ("CATEGORY_MAP", "{not json"),
            ("RECEIPTS", "maybe"),
        ] {
            let changed = digest(&[(key, value)], &list());
            assert!(!seen.contains(&changed), "{key} = {value:?}");
            seen.push(changed);
        }
    }

    #[test]
    fn every_list_field_changes_the_digest() {
        let base = digest(&[], &list());
        let edits: [fn(&mut Destination); 5] = [
            |d| d.name.push('!'),
            |d| d.creation_name.push('!'),
            |d| d.category = "Advertising".into(),
            |d| d.consent_categories.push("C0009".into()),
            |d| d.consent_categories.clear(),
        ];
        for (i, edit) in edits.into_iter().enumerate() {
            let mut changed = list();
            edit(&mut changed[1]);
            assert_ne!(digest(&[], &changed), base, "edit {i}");
        }
        assert_ne!(digest(&[], &list()[..2]), base, "a destination less");
        assert_ne!(digest(&[], &[]), base, "no destination");
    }

    #[test]
    fn what_decides_nothing_about_consent_is_left_out() {
        let base = digest(&[], &list());
        for (key, value) in [
            ("WRITE_KEYS", "another_key"),
            ("PATH_PREFIX", "/consent-edge"),
            ("SEGMENT_CDN", "https://cdn.example"),
            ("SEGMENT_API", "https://events.eu1.segmentapis.com"),
            ("ALLOWED_ORIGINS", "https://shop.example"),
            ("RECEIPTS", "off"),
            ("RECEIPTS", "with-id"),
        ] {
            assert_eq!(digest(&[(key, value)], &list()), base, "{key} = {value:?}");
        }
    }

    #[test]
    fn digests_parse_only_as_written() {
        let digest = RulesDigest::of(b"x");
        assert_eq!(RulesDigest::parse(&digest.to_string()), Some(digest));
        for text in [
            "",
            "0123456789abcde",
            "0123456789abcdef0",
            "0123456789ABCDEF",
            "0123456789abcdeg",
            "+123456789abcdef",
            "../x",
            "0123456789abcd/f",
            "０123456789abcde",
        ] {
            assert_eq!(RulesDigest::parse(text), None, "{text:?}");
        }
        assert_eq!(
            RulesDigest::parse("00ff10a0b0c0d0e0").unwrap().to_string(),
            "00ff10a0b0c0d0e0"
        );
    }

    #[test]
    fn a_snapshot_is_stored_once_and_retried_a_minute_after_a_failure() {
        let (a, b) = (RulesDigest::of(b"a"), RulesDigest::of(b"b"));
        let mut ledger = SnapshotLedger::default();
        assert!(ledger.claim(a, 0));
        assert!(!ledger.claim(a, 1), "under way");
        assert!(ledger.claim(b, 1), "another digest");
        ledger.settle(a, true, 2);
        assert!(!ledger.claim(a, 10 * RETRY_MS), "stored");
        ledger.settle(b, false, 100);
        assert!(!ledger.claim(b, 100 + RETRY_MS - 1));
        assert!(ledger.claim(b, 100 + RETRY_MS));
        assert!(!ledger.claim(b, 100 + RETRY_MS), "under way again");
    }
}
