//! Consent receipts: what the proxy stamps on every forwarded event as
//! `context.consent.receipt`, so that a site can show an auditor what decided
//! it (GDPR Art. 7(1)) — where the consent came from, when the visitor chose,
//! GPC, the region, and the digest of the rules in force ([`crate::rules`]).
//!
//! `{"v":1,"source":"choice","decidedAt":"2026-11-23T09:00:00.000Z","gpc":false,"country":"DE","rules":"0123456789abcdef"}`,
//! keys always these, in this order, plus `consentId` (a string or `null`)
//! under `RECEIPTS = "with-id"`.

use crate::config::{Config, Receipts};
use crate::consent::{Basis, ConsentState};
use crate::json::ObjectWriter;
use crate::rules::RulesDigest;
use crate::time::write_iso_millis;

/// The receipt format's version: `v`.
const FORMAT_VERSION: &[u8] = b"1";
/// OneTrust's consentId is a UUID. A value longer than this, or of other
/// characters, is stamped as `null`: a crafted cookie must not make every
/// event of a batch bigger, nor put arbitrary text into an audit record.
const MAX_CONSENT_ID_BYTES: usize = 64;

/// The `consentId` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentIdField<'s> {
    /// Not written (`RECEIPTS = "on"`).
    Omitted,
    /// Written: the id, or `null` when the cookie has none that reads as one.
    Stamped(Option<&'s str>),
}

/// One request's receipt: the same for every event of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt<'s> {
    pub source: Basis,
    /// In milliseconds since the epoch; written as `toISOString` writes it.
    pub decided_at_ms: Option<u64>,
    pub gpc: bool,
    pub country: Option<&'s str>,
    pub rules: RulesDigest,
    pub consent_id: ConsentIdField<'s>,
}

impl<'s> Receipt<'s> {
    /// The receipt for a request resolved to `state` under rules `rules`;
    /// `None` with `RECEIPTS = "off"`.
    pub fn new(config: &Config, state: &'s ConsentState, rules: RulesDigest) -> Option<Self> {
        let consent_id = match config.receipts {
            Receipts::Off => return None,
            Receipts::On => ConsentIdField::Omitted,
            Receipts::WithId => {
                ConsentIdField::Stamped(state.consent_id.as_deref().filter(|id| is_consent_id(id)))
            }
        };
        Some(Receipt {
            source: state.basis(),
            decided_at_ms: state.decided_at_ms,
            gpc: state.gpc,
            country: state.country.as_deref(),
            rules,
            consent_id,
        })
    }

    /// The receipt as a JSON object, keys in the documented order.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        w.key("v").extend_from_slice(FORMAT_VERSION);
        w.str("source", self.source.as_str());
        match self.decided_at_ms {
            Some(ms) => {
                let out = w.key("decidedAt");
                out.push(b'"');
                write_iso_millis(out, ms);
                out.push(b'"');
            }
            None => w.key("decidedAt").extend_from_slice(b"null"),
        }
        w.bool("gpc", self.gpc);
        w.str_or_null("country", self.country);
        w.str("rules", self.rules.as_str());
        if let ConsentIdField::Stamped(id) = self.consent_id {
            w.str_or_null("consentId", id);
        }
        w.finish();
    }

    /// [`write`](Self::write) into a buffer of its own: rendered once per
    /// request, copied into each event.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        self.write(&mut out);
        out
    }
}

/// An id as OneTrust writes one: letters, digits and `-`.
fn is_consent_id(id: &str) -> bool {
    id.len() <= MAX_CONSENT_ID_BYTES && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::RequestSignals;
    use crate::cookie::parse_cookie_header;
    use crate::rules::Rules;
    use serde_json::{json, Value};

    const CHOICE: &str = "OptanonConsent=consentId=6fcfe4fe-8de9-4101-bdf9-5dad0faf2611&interactionCount=1&groups=C0001%3A1%2CC0002%3A1&geolocation=FR%3BIDF";
    const CLOSED: &str = "OptanonAlertBoxClosed=2026-11-23T09:00:00.000Z";

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::for_test(vars)
    }

    /// The receipt for a request, as the proxy stamps it.
    fn receipt_text(
        vars: &[(&str, &str)],
        cookie: &str,
        sec_gpc: bool,
        country: Option<&str>,
    ) -> Option<String> {
        let config = config(vars);
        let state = ConsentState::resolve(
            &config,
            &parse_cookie_header(cookie.as_bytes()),
            RequestSignals { sec_gpc, country },
        );
        let rules = Rules::new(&config, &[]).digest();
        Receipt::new(&config, &state, rules).map(|r| String::from_utf8(r.to_json()).unwrap())
    }

    fn receipt_with(
        vars: &[(&str, &str)],
        cookie: &str,
        sec_gpc: bool,
        country: Option<&str>,
    ) -> Option<Value> {
        receipt_text(vars, cookie, sec_gpc, country)
            .map(|text| serde_json::from_str(&text).unwrap())
    }

    fn receipt(cookie: &str) -> Value {
        receipt_with(&[], cookie, false, Some("US")).unwrap()
    }

    #[test]
    fn the_source_of_each_cookie_class() {
        assert_eq!(receipt(CHOICE)["source"], "choice");
        let untouched = CHOICE.replace("interactionCount=1", "interactionCount=0");
        assert_eq!(receipt(&untouched)["source"], "cookie");
        assert_eq!(
            receipt(&format!("{untouched}; {CLOSED}"))["source"],
            "choice",
            "the closed banner is the explicit choice"
        );
        assert_eq!(receipt("")["source"], "default");
        assert_eq!(
            receipt("OptanonConsent=groups=garbled")["source"],
            "default"
        );
        assert_eq!(
            receipt(CLOSED)["source"],
            "default",
            "decided, but no usable cookie says what"
        );
    }

    #[test]
    fn keys_and_their_order_are_fixed() {
        let text = String::from_utf8(
            Receipt {
                source: Basis::Choice,
                decided_at_ms: crate::time::parse_iso_millis("2026-11-23T09:00:00.000Z"),
                gpc: false,
                country: Some("DE"),
                rules: RulesDigest::parse("0123456789abcdef").unwrap(),
                consent_id: ConsentIdField::Omitted,
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            text,
            r#"{"v":1,"source":"choice","decidedAt":"2026-11-23T09:00:00.000Z","gpc":false,"country":"DE","rules":"0123456789abcdef"}"#
        );
        let nulls = receipt("");
        assert_eq!(nulls["decidedAt"], Value::Null);
        assert_eq!(nulls["country"], Value::Null);
        let keys: Vec<&String> = nulls.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
    }

    #[test]
    fn decided_at_is_the_alert_box_time_when_it_is_one() {
        assert_eq!(
            receipt(CHOICE)["decidedAt"],
            Value::Null,
            "no alert box cookie"
        );
        assert_eq!(
            receipt(&format!("{CHOICE}; {CLOSED}"))["decidedAt"],
            "2026-11-23T09:00:00.000Z"
        );
        assert_eq!(
            receipt(CLOSED)["decidedAt"],
            "2026-11-23T09:00:00.000Z",
            "whatever the source"
        );
        assert_eq!(
            receipt("OptanonAlertBoxClosed=2026-11-23T09%3A00%3A00.000Z")["decidedAt"],
            "2026-11-23T09:00:00.000Z",
            "percent-decoded"
        );
        for invalid in [
            "true",
            "2026-11-23",
            "2026-11-23T09:00:00Z",
            "2026-02-30T09:00:00.000Z",
            "2026-11-23T09:00:00.000+01:00",
            "\"2026-11-23T09:00:00.000Z\"x",
        ] {
            let cookie = format!("{CHOICE}; OptanonAlertBoxClosed={invalid}");
            let r = receipt(&cookie);
            assert_eq!(r["decidedAt"], Value::Null, "{invalid}");
            assert_eq!(r["source"], "choice", "still a choice: {invalid}");
        }
    }

    #[test]
    fn gpc_from_the_header_or_the_cookie() {
        assert_eq!(receipt(CHOICE)["gpc"], false);
        assert_eq!(receipt_with(&[], CHOICE, true, None).unwrap()["gpc"], true);
        let flagged = CHOICE.replace("interactionCount", "isGpcEnabled=1&interactionCount");
        assert_eq!(receipt(&flagged)["gpc"], true);
    }

    #[test]
    fn country_only_under_geo_as_the_model_classified_it() {
        let geo = [("CONSENT_MODEL", "geo")];
        let country = |cookie: &str, cf: Option<&str>| {
            receipt_with(&geo, cookie, false, cf).unwrap()["country"].clone()
        };
        assert_eq!(
            country(CHOICE, Some("US")),
            "FR",
            "the cookie's geolocation first, also when the cookie decided"
        );
        assert_eq!(
            country("", Some("us")),
            "US",
            "else the request's, upper-cased"
        );
        assert_eq!(
            country("OptanonConsent=geolocation=&groups=", Some("CH")),
            "CH"
        );
        for unknown in [None, Some("XX"), Some("T1"), Some("USA")] {
            assert_eq!(country("", unknown), Value::Null, "{unknown:?}");
        }
        assert_eq!(
            country(
                "OptanonConsent=geolocation=%E2%82&groups=C0001:1",
                Some("US")
            ),
            Value::Null,
            "a malformed cookie country is unknown, not replaced"
        );
        for model in ["opt-in", "opt-out"] {
            let r = receipt_with(&[("CONSENT_MODEL", model)], CHOICE, false, Some("US")).unwrap();
            assert_eq!(r["country"], Value::Null, "{model}");
        }
    }

    #[test]
    fn consent_id_only_under_with_id() {
        let with_id = [("RECEIPTS", "with-id")];
        assert!(receipt(CHOICE).get("consentId").is_none());
        let text = receipt_text(&with_id, CHOICE, false, None).unwrap();
        assert!(
            text.ends_with(r#","consentId":"6fcfe4fe-8de9-4101-bdf9-5dad0faf2611"}"#),
            "after the other keys: {text}"
        );
        for (cookie, why) in [
            ("", "no cookie"),
            ("OptanonConsent=groups=C0001:1", "no consentId"),
            ("OptanonConsent=consentId=&groups=C0001:1", "empty"),
            ("OptanonConsent=consentId=x&groups=", "an unusable cookie"),
            (
                "OptanonConsent=consentId=%3Cscript%3E&groups=C0001:1",
                "not an id",
            ),
        ] {
            assert_eq!(
                receipt_with(&with_id, cookie, false, None).unwrap()["consentId"],
                Value::Null,
                "{why}"
            );
        }
        let long = format!("OptanonConsent=consentId={}&groups=C0001:1", "a".repeat(65));
        assert_eq!(
            receipt_with(&with_id, &long, false, None).unwrap()["consentId"],
            Value::Null
        );
    }

    #[test]
    fn off_means_no_receipt() {
        assert_eq!(
            receipt_with(&[("RECEIPTS", "off")], CHOICE, false, None),
            None
        );
        let broken = receipt_with(&[("RECEIPTS", "sometimes")], CHOICE, false, None).unwrap();
        assert!(broken.get("consentId").is_none(), "a broken value is on");
    }

    #[test]
    fn rules_is_the_digest_of_the_rules_in_force() {
        let config = config(&[]);
        let state = ConsentState::resolve(
            &config,
            &parse_cookie_header(b""),
            RequestSignals::default(),
        );
        let rules = Rules::new(&config, &[]);
        let r = Receipt::new(&config, &state, rules.digest()).unwrap();
        let value: Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(value["rules"], json!(rules.digest().to_string()));
        assert_eq!(value["v"], 1);
    }
}
