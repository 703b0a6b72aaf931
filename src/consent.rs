//! Consent resolution: a request's OneTrust cookies, GPC signal and country,
//! under the configuration, into a [`ConsentState`]; and from any set of
//! grants, which destinations may receive data.

use crate::config::{Config, ConsentModel, Receipts};
use crate::cookie::OneTrustCookies;
use crate::destinations::{DestinationSet, MappedDestination, MappingRule};
use crate::json::{bool_text, ObjectWriter};
use crate::onetrust;
use crate::region::{country_code, is_opt_in_code};
use std::fmt;

/// Anything that says whether a OneTrust group is granted.
pub trait Grants {
    fn granted(&self, group: &str) -> bool;
}

/// The default model a request falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    OptIn,
    OptOut,
}

impl Model {
    pub fn as_str(self) -> &'static str {
        match self {
            Model::OptIn => "opt-in",
            Model::OptOut => "opt-out",
        }
    }
}

/// Where the grants came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A usable `OptanonConsent` cookie.
    Cookie,
    /// No usable cookie: the model's default.
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cookie => "cookie",
            Source::Default => "default",
        }
    }
}

/// What decided a request's consent, as receipts and metrics report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// A usable cookie from an explicit choice in the banner.
    Choice,
    /// A usable cookie, but no explicit choice (OneTrust's defaults).
    Cookie,
    /// No usable cookie: `CONSENT_MODEL` decided. Also when only
    /// `OptanonAlertBoxClosed` says the visitor chose: nothing says what.
    Default,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Choice => "choice",
            Basis::Cookie => "cookie",
            Basis::Default => "default",
        }
    }
}

/// The set of granted groups, closed or open-ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GroupGrants {
    /// Only these groups (a cookie, or the opt-in default).
    Only(Vec<String>),
    /// Every group but these (the opt-out default, less GPC groups).
    AllExcept(Vec<String>),
}

/// What one request's visitor consented to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentState {
    pub model: Model,
    pub source: Source,
    /// A Global Privacy Control signal was seen (header or cookie).
    pub gpc: bool,
    /// OneTrust asks the visitor to choose again; the stored choice applies meanwhile.
    pub awaiting_reconsent: bool,
    /// The visitor made an explicit choice in the banner: a usable cookie with
    /// `interactionCount` ≥ 1, or a non-empty `OptanonAlertBoxClosed`.
    pub decided: bool,
    /// When the visitor chose (ms since the epoch): `OptanonAlertBoxClosed`
    /// if it is a time as OneTrust writes it (`toISOString`), whatever the source.
    pub decided_at_ms: Option<u64>,
    /// Under `geo`, the country the model classified (an upper-case code);
    /// `None` when it is unknown or another model applies.
    pub country: Option<String>,
    /// OneTrust's `consentId` from the usable cookie, kept only under
    /// `RECEIPTS = "with-id"` (it is an identifier).
    pub consent_id: Option<String>,
    /// Configuration is broken: only the strict group, no destination.
    pub locked_down: bool,
    grants: GroupGrants,
    strict_group: String,
    /// The groups the cookie names, in cookie order.
    named_groups: Vec<String>,
}

impl Grants for ConsentState {
    fn granted(&self, group: &str) -> bool {
        group == self.strict_group
            || match &self.grants {
                GroupGrants::Only(granted) => granted.iter().any(|g| g == group),
                GroupGrants::AllExcept(denied) => !denied.iter().any(|g| g == group),
            }
    }
}

/// The signals of one request besides its cookies.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSignals<'a> {
    /// `Sec-GPC: 1`.
    pub sec_gpc: bool,
    /// Cloudflare's country for the request.
    pub country: Option<&'a str>,
}

impl ConsentState {
    pub fn resolve(
        config: &Config,
        cookies: &OneTrustCookies,
        signals: RequestSignals<'_>,
    ) -> Self {
        let cookie = cookies.consent.as_ref();
        let country = (config.consent_model == ConsentModel::Geo)
            .then(|| country_code(cookies.country.as_deref().or(signals.country)))
            .flatten();
        let model = match config.consent_model {
            ConsentModel::OptIn => Model::OptIn,
            ConsentModel::OptOut => Model::OptOut,
            ConsentModel::Geo if is_opt_in_code(country.as_deref()) => Model::OptIn,
            ConsentModel::Geo => Model::OptOut,
        };
        let gpc = signals.sec_gpc || cookies.gpc;
        let locked_down = config.locked_down();
        let decided =
            cookie.is_some_and(|c| c.interaction_count >= 1) || cookies.alert_box_closed.is_some();

        let mut grants = match (cookie, model) {
            _ if locked_down => GroupGrants::Only(Vec::new()),
            (Some(c), _) => GroupGrants::Only(
                c.groups
                    .iter()
                    .filter(|(_, granted)| *granted)
                    .map(|(id, _)| id.clone())
                    .collect(),
            ),
            (None, Model::OptIn) => GroupGrants::Only(Vec::new()),
            (None, Model::OptOut) => GroupGrants::AllExcept(Vec::new()),
        };
        if gpc {
            // An explicit grant: the visitor interacted with the banner and chose the group.
            let chose =
                |group: &str| decided && cookie.is_some_and(|c| c.group(group) == Some(true));
            for group in config.gpc_groups.iter().filter(|g| !chose(g)) {
                match &mut grants {
                    GroupGrants::Only(granted) => granted.retain(|g| g != group),
                    GroupGrants::AllExcept(denied) => denied.push(group.clone()),
                }
            }
        }

        ConsentState {
            model,
            source: if cookie.is_some() {
                Source::Cookie
            } else {
                Source::Default
            },
            gpc,
            awaiting_reconsent: cookie.is_some_and(|c| c.awaiting_reconsent),
            decided,
            decided_at_ms: cookies.alert_box_closed.and_then(|closed| closed.at_ms),
            country,
            consent_id: cookie
                .filter(|_| config.receipts == Receipts::WithId)
                .and_then(|c| c.consent_id.clone()),
            locked_down,
            grants,
            strict_group: config.strict_group.clone(),
            named_groups: cookie
                .map(|c| c.groups.iter().map(|(id, _)| id.clone()).collect())
                .unwrap_or_default(),
        }
    }

    pub fn basis(&self) -> Basis {
        match self.source {
            Source::Cookie if self.decided => Basis::Choice,
            Source::Cookie => Basis::Cookie,
            Source::Default => Basis::Default,
        }
    }

    pub fn strict_group(&self) -> &str {
        &self.strict_group
    }

    /// The groups the cookie names, in cookie order.
    pub fn named_groups(&self) -> &[String] {
        &self.named_groups
    }
}

/// Whether Segment itself may collect: `OPT_IN`, and `COLLECTION_GROUP` if set.
pub fn collection(config: &Config, grants: &impl Grants) -> bool {
    config.opt_in
        && config
            .collection_group
            .as_deref()
            .is_none_or(|g| grants.granted(g))
}

/// The `All` key: `ALL_DEFAULT`, unless collection is refused or config is broken.
pub fn all_value(config: &Config, collection: bool) -> bool {
    config.all_default && collection && !config.locked_down()
}

/// Why a destination is enabled or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'d> {
    LockedDown,
    CollectionRefused,
    /// Maps to no group: `ALL_DEFAULT` decides.
    Unmapped {
        all_default: bool,
    },
    /// Needs groups: all granted (`missing` is `None`) or the first one not granted.
    Groups {
        missing: Option<&'d str>,
    },
}

impl Verdict<'_> {
    pub fn enabled(self) -> bool {
        match self {
            Verdict::LockedDown | Verdict::CollectionRefused => false,
            Verdict::Unmapped { all_default } => all_default,
            Verdict::Groups { missing } => missing.is_none(),
        }
    }
}

/// The one rule: a destination is enabled only if collection is consented and
/// all its groups are granted; unmapped ones follow `ALL_DEFAULT`.
pub fn verdict<'d>(
    config: &Config,
    grants: &impl Grants,
    collection: bool,
    dest: &'d MappedDestination,
) -> Verdict<'d> {
    if config.locked_down() {
        Verdict::LockedDown
    } else if !collection {
        Verdict::CollectionRefused
    } else if dest.groups.is_empty() {
        Verdict::Unmapped {
            all_default: config.all_default,
        }
    } else {
        Verdict::Groups {
            missing: dest
                .groups
                .iter()
                .map(String::as_str)
                .find(|g| !grants.granted(g)),
        }
    }
}

/// A verdict with the mapping rule behind it, for people: "category
/// Advertising → C0004 not granted".
pub struct Explanation<'d> {
    pub dest: &'d MappedDestination,
    pub verdict: Verdict<'d>,
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dest = self.dest;
        let groups = dest.groups.join(" + ");
        let rule = match dest.rule {
            MappingRule::ConsentSettings => format!("consentSettings.categories → {groups}"),
            MappingRule::DestinationMap => format!("DESTINATION_MAP → {groups}"),
            MappingRule::Category => format!("category {} → {groups}", dest.category),
            MappingRule::Unmapped => String::new(),
        };
        match self.verdict {
            Verdict::LockedDown => write!(f, "configuration error: every destination is disabled"),
            Verdict::CollectionRefused => {
                write!(f, "collection not consented: every destination is disabled")
            }
            Verdict::Unmapped { all_default } => {
                write!(
                    f,
                    "category {:?} maps to no group → ALL_DEFAULT {all_default}",
                    dest.category
                )
            }
            Verdict::Groups { missing: None } => write!(f, "{rule} granted"),
            Verdict::Groups { missing: Some(_) } if dest.groups.len() == 1 => {
                write!(f, "{rule} not granted")
            }
            Verdict::Groups { missing: Some(g) } => write!(f, "{rule}: {g} not granted"),
        }
    }
}

/// Everything decided for one set of grants over one destination set: what the
/// loader embeds, `/consent` reports and the proxy stamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub collection: bool,
    /// The `All` key.
    pub all: bool,
    /// Per destination of the set, in set order.
    pub enabled: Vec<bool>,
    /// The groups worth stating, each with whether it is granted.
    pub groups: Vec<(String, bool)>,
}

impl Resolution {
    /// Decides every destination of `set` under `grants`, and states `groups`.
    pub fn new<'g>(
        config: &Config,
        set: &DestinationSet,
        grants: &impl Grants,
        collection: bool,
        groups: impl IntoIterator<Item = &'g str>,
    ) -> Self {
        let mut stated: Vec<(String, bool)> = Vec::new();
        for g in groups {
            if !stated.iter().any(|(known, _)| known == g) {
                stated.push((g.to_owned(), grants.granted(g)));
            }
        }
        Resolution {
            collection,
            all: all_value(config, collection),
            enabled: set
                .destinations()
                .iter()
                .map(|d| verdict(config, grants, collection, d).enabled())
                .collect(),
            groups: stated,
        }
    }

    /// The resolution of a request: states the strict group, every group the
    /// cookie names and every group a destination needs.
    pub fn of_state(config: &Config, set: &DestinationSet, state: &ConsentState) -> Self {
        let groups = std::iter::once(state.strict_group())
            .chain(state.named_groups().iter().map(String::as_str))
            .chain(set.groups().iter().map(String::as_str));
        Resolution::new(config, set, state, collection(config, state), groups)
    }

    /// `{"All":false,"<creationName>":true,…,"Segment.io":true}`.
    pub fn write_integrations(&self, set: &DestinationSet, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        w.bool("All", self.all);
        for (d, &enabled) in set.destinations().iter().zip(&self.enabled) {
            w.key_literal(&d.key_literal)
                .extend_from_slice(bool_text(enabled));
        }
        w.bool(SEGMENT_IO, self.collection);
        w.finish();
    }

    /// `{"C0001":true,"C0002":false,…}`: Segment's `categoryPreferences`.
    pub fn write_preferences(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        for (g, granted) in &self.groups {
            w.bool(g, *granted);
        }
        w.finish();
    }

    /// `C0001:1,C0002:0,…`: the string a Destination Filter matches with "contains C0002:1".
    pub fn onetrust(&self) -> String {
        onetrust::write(
            self.groups
                .iter()
                .map(|(g, granted)| (g.as_str(), *granted)),
        )
    }
}

/// The `integrations` key of Segment's own collection.
pub const SEGMENT_IO: &str = "Segment.io";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookie::parse_cookie_header;
    use crate::destinations::Destination;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::for_test(vars)
    }

    fn state(config: &Config, cookie: &str, sec_gpc: bool, country: Option<&str>) -> ConsentState {
        ConsentState::resolve(
            config,
            &parse_cookie_header(cookie.as_bytes()),
            RequestSignals { sec_gpc, country },
        )
    }

    fn granted_of(state: &ConsentState, groups: &[&str]) -> Vec<bool> {
        groups.iter().map(|g| state.granted(g)).collect()
    }

    const GROUPS: [&str; 5] = ["C0001", "C0002", "C0003", "C0004", "C0005"];

    #[test]
    fn a_usable_cookie_grants_exactly_its_ones() {
        let s = state(
            &config(&[]),
            "OptanonConsent=groups=C0001:1,C0002:1,C0003:0&interactionCount=1",
            false,
            None,
        );
        assert_eq!(s.source, Source::Cookie);
        assert_eq!(granted_of(&s, &GROUPS), [true, true, false, false, false]);
        assert!(!s.granted("SOMETHING_ELSE"));
        assert_eq!(s.named_groups(), ["C0001", "C0002", "C0003"]);
    }

    #[test]
    fn the_strict_group_is_always_granted() {
        let cfg = config(&[("GPC_GROUPS", "C0001,C0004")]);
        let s = state(&cfg, "OptanonConsent=groups=C0001:0,C0002:1", true, None);
        assert!(s.granted("C0001"));
        let custom = config(&[("STRICT_GROUP", "NECESSARY")]);
        let s = state(&custom, "", false, None);
        assert!(s.granted("NECESSARY") && !s.granted("C0001"));
    }

    #[test]
    fn without_a_cookie_the_model_decides() {
        let s = state(&config(&[]), "", false, Some("US"));
        assert_eq!((s.model, s.source), (Model::OptIn, Source::Default));
        assert_eq!(granted_of(&s, &GROUPS), [true, false, false, false, false]);

        let s = state(
            &config(&[("CONSENT_MODEL", "opt-out")]),
            "OptanonConsent=garbage",
            false,
            None,
        );
        assert_eq!((s.model, s.source), (Model::OptOut, Source::Default));
        assert_eq!(granted_of(&s, &GROUPS), [true; 5]);
        assert!(s.granted("ANY_CUSTOM_GROUP"));
    }

    #[test]
    fn geo_uses_the_cookie_country_then_the_request_country() {
        let geo = config(&[("CONSENT_MODEL", "geo")]);
        assert_eq!(state(&geo, "", false, Some("US")).model, Model::OptOut);
        assert_eq!(state(&geo, "", false, Some("DE")).model, Model::OptIn);
        assert_eq!(
            state(&geo, "", false, None).model,
            Model::OptIn,
            "unknown country"
        );
        assert_eq!(state(&geo, "", false, Some("XX")).model, Model::OptIn);
        // The cookie's geolocation wins, even when its groups are unusable.
        let us_cookie = "OptanonConsent=geolocation=US%3BCA&groups=";
        let s = state(&geo, us_cookie, false, Some("FR"));
        assert_eq!(
            (s.model, s.source),
            (Model::OptOut, Source::Default),
            "an unusable cookie still tells the country"
        );
        let us_cookie = "OptanonConsent=geolocation=US%3BCA&groups=C0001:1";
        let s = state(&geo, us_cookie, false, Some("FR"));
        assert_eq!((s.model, s.source), (Model::OptOut, Source::Cookie));
        assert!(
            !s.granted("C0002"),
            "a usable cookie decides, whatever the model"
        );
        let empty_geo = "OptanonConsent=geolocation=&groups=C0001:1";
        assert_eq!(
            state(&geo, empty_geo, false, Some("BR")).model,
            Model::OptOut
        );
        // An opt-out country without a cookie grants everything.
        assert_eq!(
            granted_of(&state(&geo, "", false, Some("BR")), &GROUPS),
            [true; 5]
        );
    }

    #[test]
    fn gpc_denies_gpc_groups_without_an_explicit_grant() {
        let opt_out = config(&[("CONSENT_MODEL", "opt-out")]);
        let s = state(&opt_out, "", true, None);
        assert!(s.gpc);
        assert_eq!(granted_of(&s, &GROUPS), [true, true, true, false, true]);

        // Granted in the cookie but never chosen (interactionCount 0, no alert box).
        let untouched = "OptanonConsent=groups=C0001:1,C0002:1,C0004:1&interactionCount=0";
        assert!(!state(&opt_out, untouched, true, None).granted("C0004"));
        // The same cookie after a choice.
        assert!(state(&opt_out, &untouched.replace("=0", "=2"), true, None).granted("C0004"));
        assert!(state(
            &opt_out,
            &format!("{untouched}; OptanonAlertBoxClosed=2026-01-01T00:00:00.000Z"),
            true,
            None
        )
        .granted("C0004"));
        assert!(!state(
            &opt_out,
            &format!("{untouched}; OptanonAlertBoxClosed="),
            true,
            None
        )
        .granted("C0004"));
        // The cookie's own GPC flag counts as the signal.
        let flagged = "OptanonConsent=isGpcEnabled=1&groups=C0001:1,C0004:1&interactionCount=0";
        let s = state(&opt_out, flagged, false, None);
        assert!(s.gpc && !s.granted("C0004"));
        // Several GPC groups.
        let cfg = config(&[
            ("CONSENT_MODEL", "opt-out"),
            ("GPC_GROUPS", "C0004, C0005 ,SSPD_BG"),
        ]);
        let s = state(&cfg, "", true, None);
        assert_eq!(
            granted_of(&s, &["C0004", "C0005", "SSPD_BG", "C0002"]),
            [false, false, false, true]
        );
    }

    #[test]
    fn decided_means_an_explicit_choice_in_the_banner() {
        let cfg = config(&[]);
        let decided = |cookie: &str| state(&cfg, cookie, false, None).decided;
        let untouched = "OptanonConsent=groups=C0001:1,C0002:0&interactionCount=0";
        assert!(!decided(""), "no cookie");
        assert!(
            !decided(untouched),
            "OneTrust's cookie before any interaction"
        );
        assert!(
            !decided("OptanonConsent=groups=C0001:1"),
            "no interactionCount"
        );
        assert!(!decided(&format!("{untouched}; OptanonAlertBoxClosed=")));
        assert!(decided(&untouched.replace("=0", "=1")));
        assert!(
            decided("OptanonAlertBoxClosed=2026-11-23T09:00:00.000Z"),
            "the alert box closed alone is a choice"
        );
        assert!(
            !decided("OptanonConsent=interactionCount=3&groups=garbled"),
            "an unusable cookie is no choice"
        );
    }

    #[test]
    fn awaiting_reconsent_is_reported_and_the_stored_choice_applies() {
        let s = state(
            &config(&[]),
            "OptanonConsent=groups=C0001:1,C0002:1&AwaitingReconsent=true",
            false,
            None,
        );
        assert!(s.awaiting_reconsent && s.granted("C0002"));
        assert!(
            !state(
                &config(&[]),
                "OptanonConsent=AwaitingReconsent=true",
                false,
                None
            )
            .awaiting_reconsent
        );
    }

    #[test]
    fn broken_config_locks_consent_down() {
        let cfg = config(&[("CATEGORY_MAP", "{not json"), ("CONSENT_MODEL", "opt-out")]);
        let s = state(&cfg, "OptanonConsent=groups=C0001:1,C0002:1", false, None);
        assert!(s.locked_down);
        assert_eq!(granted_of(&s, &GROUPS), [true, false, false, false, false]);
    }

    #[test]
    fn collection_follows_opt_in_and_the_collection_group() {
        let s = state(&config(&[]), "", false, None);
        assert!(collection(&config(&[]), &s));
        assert!(!collection(&config(&[("OPT_IN", "false")]), &s));
        let cfg = config(&[("COLLECTION_GROUP", "C0002")]);
        assert!(!collection(&cfg, &state(&cfg, "", false, None)));
        assert!(collection(
            &cfg,
            &state(&cfg, "OptanonConsent=groups=C0002:1", false, None)
        ));
    }

    fn set(cfg: &Config) -> DestinationSet {
        let d = |name: &str, category: &str, consent: &[&str]| Destination {
            name: name.into(),
            creation_name: name.into(),
            category: category.into(),
            consent_categories: consent.iter().map(|c| c.to_string()).collect(),
        };
        DestinationSet::new(
            &[
                d("GA4", "Analytics", &[]),
                d("Ads", "Advertising", &[]),
                d("Both", "", &["C0002", "C0004"]),
                d("Odd", "Other", &[]),
            ],
            cfg,
        )
    }

    #[test]
    fn a_destination_needs_all_its_groups() {
        let cfg = config(&[]);
        let set = set(&cfg);
        let s = state(
            &cfg,
            "OptanonConsent=groups=C0001:1,C0002:1,C0004:0",
            false,
            None,
        );
        let verdicts: Vec<_> = set
            .destinations()
            .iter()
            .map(|d| verdict(&cfg, &s, true, d))
            .collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Groups { missing: None },
                Verdict::Groups {
                    missing: Some("C0004")
                },
                Verdict::Groups {
                    missing: Some("C0004")
                },
                Verdict::Unmapped { all_default: false },
            ]
        );
        let explain: Vec<String> = set
            .destinations()
            .iter()
            .zip(&verdicts)
            .map(|(dest, &verdict)| Explanation { dest, verdict }.to_string())
            .collect();
        assert_eq!(
            explain,
            [
                "category Analytics → C0002 granted",
                "category Advertising → C0004 not granted",
                "consentSettings.categories → C0002 + C0004: C0004 not granted",
                "category \"Other\" maps to no group → ALL_DEFAULT false",
            ]
        );
        assert!(
            !verdict(&cfg, &s, false, &set.destinations()[0]).enabled(),
            "collection refused"
        );
    }

    #[test]
    fn resolution_outputs() {
        let cfg = config(&[("ALL_DEFAULT", "true")]);
        let set = set(&cfg);
        let s = state(
            &cfg,
            "OptanonConsent=groups=C0001:1,C0002:1,C0004:0,SSPD_BG:1",
            false,
            None,
        );
        let r = Resolution::of_state(&cfg, &set, &s);
        assert_eq!((r.collection, r.all), (true, true));
        assert_eq!(r.enabled, [true, false, false, true]);
        let mut out = Vec::new();
        r.write_integrations(&set, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"All":true,"GA4":true,"Ads":false,"Both":false,"Odd":true,"Segment.io":true}"#
        );
        let mut out = Vec::new();
        r.write_preferences(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"C0001":true,"C0002":true,"C0004":false,"SSPD_BG":true}"#
        );
        assert_eq!(r.onetrust(), "C0001:1,C0002:1,C0004:0,SSPD_BG:1");
    }

    #[test]
    fn refused_collection_disables_everything() {
        let cfg = config(&[("ALL_DEFAULT", "true"), ("COLLECTION_GROUP", "C0002")]);
        let set = set(&cfg);
        let r = Resolution::of_state(
            &cfg,
            &set,
            &state(&cfg, "OptanonConsent=groups=C0002:0,C0004:1", false, None),
        );
        assert_eq!((r.collection, r.all), (false, false));
        assert_eq!(r.enabled, [false; 4]);
    }
}
