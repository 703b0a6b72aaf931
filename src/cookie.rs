//! Reading OneTrust's cookies out of a `Cookie` request header.
//!
//! OneTrust stores the visitor's choice in `OptanonConsent`, a form-urlencoded
//! string (`isGpcEnabled=0&…&groups=C0001:1,C0002:0&geolocation=DE;BE&…`), and
//! marks an explicit interaction with the banner by setting `OptanonAlertBoxClosed`.
//! Real cookies arrive in every shape: fields in any order, values encoded once or
//! twice (a server that re-sets the cookie encodes it again), one copy per domain
//! level, quotes, stray bytes. Nothing here fails: what cannot be read is ignored,
//! and a consent cookie with no readable group is reported as absent.

use crate::onetrust;
use crate::time::parse_iso_millis;
use memchr::memchr_iter;
use rustc_hash::FxHashMap;
use std::borrow::Cow;

const CONSENT_COOKIE: &str = "OptanonConsent";
const ALERT_BOX_CLOSED_COOKIE: &str = "OptanonAlertBoxClosed";
/// More rounds than any real cookie needs; bounds the work on hostile input.
const MAX_DECODE_ROUNDS: usize = 3;
/// OneTrust writes a few dozen groups at most. Entries of a copy beyond this,
/// and groups beyond it across copies, are ignored (an unnamed group is not
/// granted), so a hostile header cannot make consent cost time in proportion
/// to the square of its size further down.
const MAX_GROUP_ENTRIES: usize = 512;

/// What OneTrust's cookies in one request say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OneTrustCookies {
    /// The merged usable `OptanonConsent` copies, if any copy is usable.
    pub consent: Option<OptanonConsent>,
    /// `isGpcEnabled=1` or `browserGpcFlag=1` in any copy of `OptanonConsent`.
    pub gpc: bool,
    /// The country of `geolocation=CC;REGION`, trimmed and upper-cased: from the
    /// first usable copy, else from any copy (OneTrust writes it before a choice).
    pub country: Option<String>,
    /// A non-empty `OptanonAlertBoxClosed` cookie: the visitor made a
    /// choice. Of two copies, the first non-empty one counts.
    pub alert_box_closed: Option<AlertBoxClosed>,
}

/// What a non-empty `OptanonAlertBoxClosed` cookie says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertBoxClosed {
    /// When the visitor chose, in milliseconds since the epoch, if the value
    /// (percent-decoded as any value) is a time as OneTrust writes it
    /// (`toISOString`); `None` for anything else.
    pub at_ms: Option<u64>,
}

impl AlertBoxClosed {
    fn read(value: &[u8]) -> AlertBoxClosed {
        let at_ms = std::str::from_utf8(value)
            .ok()
            .and_then(|value| parse_iso_millis(&percent_decode_rounds(value, true)));
        AlertBoxClosed { at_ms }
    }
}

/// A usable `OptanonConsent` cookie: at least one group entry reads `:0` or `:1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptanonConsent {
    /// Each group the cookie names, in cookie order, with whether it is granted.
    pub groups: Vec<(String, bool)>,
    /// Where each id sits in `groups`.
    index: FxHashMap<String, usize>,
    /// `interactionCount`; 0 when absent or unreadable.
    pub interaction_count: u32,
    /// `AwaitingReconsent=true`.
    pub awaiting_reconsent: bool,
    /// `consentId`: OneTrust's id of the visitor's consent record, as written.
    pub consent_id: Option<String>,
}

impl OptanonConsent {
    /// `Some(true)` if the cookie grants `group`, `Some(false)` if it names it
    /// without granting it, `None` if it does not name it.
    pub fn group(&self, group: &str) -> Option<bool> {
        self.index.get(group).map(|&at| self.groups[at].1)
    }

    /// Records one reading of a group: a refusal anywhere wins over any grant.
    fn record(&mut self, id: &str, granted: bool) {
        match self.index.get(id) {
            Some(&at) => self.groups[at].1 &= granted,
            None if self.groups.len() < MAX_GROUP_ENTRIES => {
                self.index.insert(id.to_owned(), self.groups.len());
                self.groups.push((id.to_owned(), granted));
            }
            None => {}
        }
    }
}

/// Reads OneTrust's cookies from a raw `Cookie` header.
pub fn parse_cookie_header(header: &[u8]) -> OneTrustCookies {
    OneTrustReading::of(header).cookies()
}

/// Which of OneTrust's cookies a pair is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OneTrustCookie {
    Consent,
    AlertBoxClosed,
}

/// OneTrust's cookies as a `Cookie` header carries them: each `OptanonConsent`
/// and `OptanonAlertBoxClosed` value, in header order, as written. All that
/// consent reads of a header is read from here, so two headers with equal
/// readings give equal consent whatever else they carry (analytics ids,
/// sessions): a visitor's later requests can reuse the first one's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OneTrustReading {
    pairs: Vec<(OneTrustCookie, Box<[u8]>)>,
}

impl OneTrustReading {
    pub fn of(header: &[u8]) -> OneTrustReading {
        // `;` found a word at a time: a site's header is 2 KB of other cookies.
        let ends = memchr_iter(b';', header).chain(std::iter::once(header.len()));
        let mut start = 0;
        let mut pairs = Vec::new();
        for end in ends {
            let pair = cookie_pair(&header[start..end]).and_then(Self::onetrust);
            pairs.extend(pair);
            start = end + 1;
        }
        OneTrustReading { pairs }
    }

    fn onetrust((name, value): (&[u8], &[u8])) -> Option<(OneTrustCookie, Box<[u8]>)> {
        let cookie = if name == CONSENT_COOKIE.as_bytes() {
            OneTrustCookie::Consent
        } else if name == ALERT_BOX_CLOSED_COOKIE.as_bytes() {
            OneTrustCookie::AlertBoxClosed
        } else {
            return None;
        };
        Some((cookie, value.into()))
    }

    /// What the cookies say.
    pub fn cookies(&self) -> OneTrustCookies {
        let mut cookies = OneTrustCookies::default();
        let mut copies: Vec<OptanonConsent> = Vec::new();
        let mut unusable_country = None;
        for (cookie, value) in &self.pairs {
            match cookie {
                OneTrustCookie::Consent => {
                    let fields = ConsentFields::parse(&String::from_utf8_lossy(value));
                    cookies.gpc |= fields.gpc;
                    if fields.usable {
                        if copies.is_empty() {
                            cookies.country = fields.country;
                        }
                        copies.push(fields.consent);
                    } else if unusable_country.is_none() {
                        unusable_country = fields.country;
                    }
                }
                OneTrustCookie::AlertBoxClosed => {
                    if !value.is_empty() && cookies.alert_box_closed.is_none() {
                        cookies.alert_box_closed = Some(AlertBoxClosed::read(value));
                    }
                }
            }
        }
        if cookies.country.is_none() {
            cookies.country = unusable_country;
        }
        cookies.consent = merge_copies(copies);
        cookies
    }
}

/// Two copies (one per domain level) grant a group only if both grant it; the
/// first usable copy gives the other fields.
fn merge_copies(copies: Vec<OptanonConsent>) -> Option<OptanonConsent> {
    let mut copies = copies.into_iter();
    let mut merged = copies.next()?;
    for copy in copies {
        for (id, granted) in &mut merged.groups {
            *granted &= copy.group(id) == Some(true);
        }
        // Named by this copy only: not granted by the others.
        for (id, _) in &copy.groups {
            if merged.group(id).is_none() {
                merged.record(id, false);
            }
        }
    }
    Some(merged)
}

/// One `name=value` pair of a `Cookie` header (the text between two `;`):
/// SP/HTAB trimmed, a DQUOTE-wrapped value unwrapped; `None` without `=`.
fn cookie_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let pair = trim_ows(pair);
    let eq = pair.iter().position(|&b| b == b'=')?;
    let name = trim_ows(&pair[..eq]);
    let value = trim_ows(&pair[eq + 1..]);
    let value = match value {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    };
    Some((name, value))
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The fields of one `OptanonConsent` value that consent depends on.
#[derive(Debug, Default)]
struct ConsentFields {
    consent: OptanonConsent,
    usable: bool,
    gpc: bool,
    country: Option<String>,
}

impl ConsentFields {
    fn parse(raw: &str) -> Self {
        let value = reveal_fields(raw);
        let mut fields = ConsentFields::default();
        let mut seen: Vec<&str> = Vec::new();
        for field in split_ascii(&value, b'&') {
            let (name, field_value) = match field.bytes().position(|b| b == b'=') {
                Some(eq) => (&field[..eq], &field[eq + 1..]),
                None => (field, ""),
            };
            // Most fields (datestamp, consentId, landingPath…) are never read.
            if !Self::NAMES.contains(&name) || seen.contains(&name) {
                continue;
            }
            // A field that appears twice: the first one counts.
            seen.push(name);
            let field_value = percent_decode_rounds(field_value, true);
            fields.read(name, field_value.trim());
        }
        fields
    }

    const NAMES: [&'static str; 7] = [
        "groups",
        "isGpcEnabled",
        "browserGpcFlag",
        "interactionCount",
        "geolocation",
        "AwaitingReconsent",
        "consentId",
    ];

    fn read(&mut self, name: &str, value: &str) {
        match name {
            "groups" => {
                for (id, granted) in onetrust::entries(value).take(MAX_GROUP_ENTRIES) {
                    self.consent.record(id, granted);
                    self.usable = true;
                }
            }
            "isGpcEnabled" | "browserGpcFlag" => self.gpc |= value == "1",
            "interactionCount" => self.consent.interaction_count = value.parse().unwrap_or(0),
            "geolocation" => {
                let country = value.split(';').next().unwrap_or("").trim();
                self.country = (!country.is_empty()).then(|| country.to_ascii_uppercase());
            }
            "AwaitingReconsent" => self.consent.awaiting_reconsent = value == "true",
            "consentId" if !value.is_empty() => self.consent.consent_id = Some(value.to_owned()),
            _ => {}
        }
    }
}

/// `s` split on the ASCII byte `sep`. A byte search: `str::split` with a
/// `char` did the same work several times slower once it was no longer
/// inlined (measured by instruction count).
fn split_ascii(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|b| b == sep) {
            Some(at) => {
                rest = Some(&r[at + 1..]);
                Some(&r[..at])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// A cookie value whose `=`/`&` structure was itself encoded (by a server that
/// re-set the cookie) is decoded until the structure shows. A value that already
/// shows it is left alone: decoding it whole would turn an encoded `&` inside a
/// field (say `landingPath`) into a field separator, letting a crafted URL
/// inject a `groups` field ahead of the real one.
fn reveal_fields(raw: &str) -> Cow<'_, str> {
    let mut value = Cow::Borrowed(raw);
    for _ in 0..MAX_DECODE_ROUNDS {
        if value.contains('=') {
            break;
        }
        match percent_decode(&value, false) {
            Cow::Owned(decoded) => value = Cow::Owned(decoded),
            Cow::Borrowed(_) => break,
        }
    }
    value
}

/// Decodes a field value while escapes remain, at most [`MAX_DECODE_ROUNDS`] times.
fn percent_decode_rounds(raw: &str, plus_is_space: bool) -> Cow<'_, str> {
    let mut value = Cow::Borrowed(raw);
    for _ in 0..MAX_DECODE_ROUNDS {
        match percent_decode(&value, plus_is_space) {
            Cow::Owned(decoded) => value = Cow::Owned(decoded),
            Cow::Borrowed(_) => break,
        }
    }
    value
}

/// One round of percent-decoding. An escape that is not `%` + two hex digits,
/// or whose bytes are not valid UTF-8, is kept literally. Returns `Borrowed`
/// when nothing changed.
pub fn percent_decode(input: &str, plus_is_space: bool) -> Cow<'_, str> {
    let bytes = input.as_bytes();
    let special = |b: u8| b == b'%' || (plus_is_space && b == b'+');
    if !bytes.iter().any(|&b| special(b)) {
        return Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len());
    let mut changed = false;
    // Cuts only fall on ASCII bytes, so every slice below is on a char boundary.
    let (mut i, mut plain) = (0, 0);
    while i < bytes.len() {
        let run_end = escape_run_end(bytes, i);
        if run_end > i {
            out.push_str(&input[plain..i]);
            changed |= push_decoded_run(&input[i..run_end], &mut out);
            i = run_end;
            plain = i;
        } else if plus_is_space && bytes[i] == b'+' {
            out.push_str(&input[plain..i]);
            out.push(' ');
            changed = true;
            i += 1;
            plain = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&input[plain..]);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(input)
    }
}

/// End of the run of consecutive valid `%XX` escapes starting at `i` (== `i` if none).
fn escape_run_end(bytes: &[u8], mut i: usize) -> usize {
    while i + 2 < bytes.len() && bytes[i] == b'%' && is_hex(bytes[i + 1]) && is_hex(bytes[i + 2]) {
        i += 3;
    }
    i
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// Decodes a run of `%XX` escapes; bytes that do not form valid UTF-8 are kept
/// as their original escape text. Returns whether anything was decoded.
fn push_decoded_run(run: &str, out: &mut String) -> bool {
    // Every escape of the run is valid: one byte each, three bytes of `run`.
    let decoded: Vec<u8> = percent_encoding::percent_decode(run.as_bytes()).collect();
    let mut changed = false;
    let mut offset = 0;
    for chunk in decoded.utf8_chunks() {
        out.push_str(chunk.valid());
        changed |= !chunk.valid().is_empty();
        offset += chunk.valid().len();
        let invalid = chunk.invalid().len();
        out.push_str(&run[offset * 3..(offset + invalid) * 3]);
        offset += invalid;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// OneTrust's documented example, as the browser sends it (fields encoded once).
    const REFERENCE: &str = "isGpcEnabled=0&datestamp=Mon+Mar+27+2023+22%3A48%3A10+GMT-0400+(Eastern+Daylight+Time)&version=202303.1.0&browserGpcFlag=0&isIABGlobal=false&hosts=&consentId=6fcfe4fe-8de9-4101-bdf9-5dad0faf2611&interactionCount=0&landingPath=https%3A%2F%2Fonetoso.com%2Fdomain1.html&GPPCookiesCount=1&groups=C0001%3A1%2CC0003%3A1%2CSSPD_BG%3A1%2CC0004%3A1%2CC0002%3A1&geolocation=US%3BMI&AwaitingReconsent=true";

    fn consent_of(header: &str) -> Option<OptanonConsent> {
        parse_cookie_header(header.as_bytes()).consent
    }

    fn granted(header: &str) -> Vec<String> {
        consent_of(header)
            .map(|c| {
                c.groups
                    .into_iter()
                    .filter(|(_, g)| *g)
                    .map(|(id, _)| id)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn encode_all(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[test]
    fn reads_the_reference_cookie() {
        let header = format!("_ga=GA1.1.1; OptanonConsent={REFERENCE}; OptanonAlertBoxClosed=2023-03-28T02:48:10.123Z");
        let cookies = parse_cookie_header(header.as_bytes());
        let c = cookies.consent.unwrap();
        assert_eq!(
            c.groups,
            [
                ("C0001", true),
                ("C0003", true),
                ("SSPD_BG", true),
                ("C0004", true),
                ("C0002", true)
            ]
            .map(|(g, v)| (g.to_owned(), v))
        );
        assert_eq!(c.interaction_count, 0);
        assert_eq!(cookies.country.as_deref(), Some("US"));
        assert!(c.awaiting_reconsent);
        assert!(!cookies.gpc);
        assert_eq!(
            cookies.alert_box_closed,
            Some(AlertBoxClosed {
                at_ms: crate::time::parse_rfc3339("2023-03-28T02:48:10.123Z")
            })
        );
        assert_eq!(
            c.consent_id.as_deref(),
            Some("6fcfe4fe-8de9-4101-bdf9-5dad0faf2611")
        );
    }

    #[test]
    fn the_alert_box_cookie_keeps_the_time_of_its_first_non_empty_value() {
        let closed = |header: &str| parse_cookie_header(header.as_bytes()).alert_box_closed;
        let at = |ms| Some(AlertBoxClosed { at_ms: Some(ms) });
        let chose = Some(AlertBoxClosed { at_ms: None });
        let ms = crate::time::parse_rfc3339("2026-11-23T09:00:00.000Z").unwrap();
        assert_eq!(closed("OptanonAlertBoxClosed="), None, "empty is no choice");
        assert_eq!(closed("x=1"), None);
        assert_eq!(
            closed("OptanonAlertBoxClosed=2026-11-23T09:00:00.000Z"),
            at(ms)
        );
        assert_eq!(
            closed("OptanonAlertBoxClosed=2026-11-23T09%3A00%3A00.000Z"),
            at(ms),
            "percent-decoded"
        );
        assert_eq!(
            closed("OptanonAlertBoxClosed=2026-11-23T09%253A00%253A00.000Z"),
            at(ms),
            "encoded twice"
        );
        for value in [
            "yes",
            "%zz%",
            "2026-11-23T09:00:00Z",
            "2026-02-30T09:00:00.000Z",
        ] {
            assert_eq!(
                closed(&format!("OptanonAlertBoxClosed={value}")),
                chose,
                "{value}"
            );
        }
        assert_eq!(closed("OptanonAlertBoxClosed=\u{ff}"), chose);
        assert_eq!(
            closed("OptanonAlertBoxClosed=; OptanonAlertBoxClosed=yes; OptanonAlertBoxClosed=2026-11-23T09:00:00.000Z"),
            chose,
            "the first non-empty copy counts"
        );
        let mut raw = b"OptanonAlertBoxClosed=".to_vec();
        raw.push(0xff);
        assert_eq!(
            parse_cookie_header(&raw).alert_box_closed,
            chose,
            "not UTF-8"
        );
    }

    #[test]
    fn the_consent_id_comes_from_the_first_usable_copy() {
        let id = |header: &str| consent_of(header).and_then(|c| c.consent_id);
        assert_eq!(
            id("OptanonConsent=consentId=a%2Db&groups=C0001:1; OptanonConsent=consentId=c&groups=C0001:1")
                .as_deref(),
            Some("a-b")
        );
        assert_eq!(id("OptanonConsent=consentId=&groups=C0001:1"), None);
        assert_eq!(id("OptanonConsent=groups=C0001:1"), None);
        assert_eq!(
            id("OptanonConsent=consentId=x&groups=; OptanonConsent=groups=C0001:1"),
            None,
            "an unusable copy gives no field"
        );
    }

    #[test]
    fn field_order_does_not_matter() {
        let header = "OptanonConsent=geolocation=DE%3BBE&groups=C0002%3A0%2CC0001%3A1&interactionCount=2&isGpcEnabled=0";
        let cookies = parse_cookie_header(header.as_bytes());
        let c = cookies.consent.unwrap();
        assert_eq!(
            c.groups,
            [("C0002".to_owned(), false), ("C0001".to_owned(), true)]
        );
        assert_eq!(
            (c.interaction_count, cookies.country.as_deref()),
            (2, Some("DE"))
        );
    }

    #[test]
    fn raw_unencoded_values_work() {
        assert_eq!(
            granted("OptanonConsent=groups=C0001:1,C0002:1,C0004:0"),
            ["C0001", "C0002"]
        );
    }

    #[test]
    fn double_encoded_fields_and_whole_values_decode() {
        let fields_twice =
            "OptanonConsent=isGpcEnabled=0&groups=C0001%253A1%252CC0002%253A1%252CC0004%253A0";
        assert_eq!(granted(fields_twice), ["C0001", "C0002"]);
        let whole_again = format!("OptanonConsent={}", encode_all(REFERENCE));
        assert_eq!(
            consent_of(&whole_again),
            consent_of(&format!("OptanonConsent={REFERENCE}"))
        );
        let thrice = format!("OptanonConsent={}", encode_all(&encode_all(REFERENCE)));
        assert_eq!(
            granted(&thrice),
            ["C0001", "C0003", "SSPD_BG", "C0004", "C0002"]
        );
    }

    #[test]
    fn an_encoded_separator_in_another_field_cannot_inject_groups() {
        // landingPath carries a crafted URL whose query names groups.
        let header = "OptanonConsent=landingPath=https%3A%2F%2Fsite.test%2F%3Fx%3D1%26groups%3DC0004%253A1&groups=C0001%3A1%2CC0004%3A0";
        let c = consent_of(header).unwrap();
        assert_eq!(c.group("C0004"), Some(false));
    }

    #[test]
    fn arbitrary_group_ids_match_exactly() {
        let header = "OptanonConsent=groups=STACK42:1,1:1,V2STACK10:0,BGC0002:1,SSPD_BG:1";
        let c = consent_of(header).unwrap();
        assert_eq!(c.group("STACK42"), Some(true));
        assert_eq!(c.group("1"), Some(true));
        assert_eq!(c.group("V2STACK10"), Some(false));
        assert_eq!(c.group("C0002"), None, "BGC0002 is not C0002");
        assert_eq!(c.group("stack42"), None);
    }

    #[test]
    fn group_entries_are_trimmed_and_odd_ones_ignored() {
        let header =
            "OptanonConsent=groups=%20C0001%20:%201%20,C0002:,C0003,:1,C0004:2,C0005:true,C0006:0";
        let c = consent_of(header).unwrap();
        assert_eq!(
            c.groups,
            [("C0001".to_owned(), true), ("C0006".to_owned(), false)]
        );
    }

    #[test]
    fn a_refusal_of_a_repeated_group_wins() {
        assert_eq!(
            consent_of("OptanonConsent=groups=C0002:1,C0002:0")
                .unwrap()
                .group("C0002"),
            Some(false)
        );
        assert_eq!(
            consent_of("OptanonConsent=groups=C0002:0,C0002:1")
                .unwrap()
                .group("C0002"),
            Some(false)
        );
    }

    #[test]
    fn a_repeated_field_counts_once_the_first_time() {
        let c = consent_of("OptanonConsent=groups=C0002:1&groups=C0002:0,C0004:1").unwrap();
        assert_eq!(c.group("C0002"), Some(true));
        assert_eq!(c.group("C0004"), None);
    }

    #[test]
    fn cookies_without_readable_groups_are_not_usable() {
        for header in [
            "",
            "OptanonConsent=",
            "OptanonConsent=isGpcEnabled=0&groups=",
            "OptanonConsent=groups=C0001,C0002",
            "OptanonConsent=groups=C0001:yes",
            "OptanonConsent=garbage%%%zz",
            "optanonconsent=groups=C0001:1",
            "OptanonConsentX=groups=C0001:1",
            "Other=1; OptanonAlertBoxClosed=",
        ] {
            assert_eq!(consent_of(header), None, "{header:?}");
        }
    }

    #[test]
    fn quoted_and_spaced_cookies() {
        assert_eq!(
            granted("a=b;\tOptanonConsent=\"groups=C0001%3A1%2CC0002%3A1\" ;c=d"),
            ["C0001", "C0002"]
        );
        assert_eq!(granted(" OptanonConsent = groups=C0002:1 "), ["C0002"]);
    }

    #[test]
    fn invalid_escapes_are_kept_and_do_not_spoil_the_cookie() {
        let header =
            "OptanonConsent=landingPath=%zz%&groups=C0001%3A1%2CC0002%3A1%FF&geolocation=%E2%82";
        let cookies = parse_cookie_header(header.as_bytes());
        let c = cookies.consent.unwrap();
        assert_eq!(c.group("C0001"), Some(true));
        assert_eq!(c.group("C0002"), None, "C0002:1%FF is not a valid entry");
        assert_eq!(cookies.country.as_deref(), Some("%E2%82"));
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%41%zz%4", false), "A%zz%4");
        assert_eq!(percent_decode("%C3%A9%FF%41", false), "é%FFA");
        assert_eq!(percent_decode("a+b%2B", true), "a b+");
    }

    #[test]
    fn non_utf8_bytes_are_survived() {
        let mut header =
            b"OptanonConsent=groups=C0001:1,C0002:1,\xff\xfe:1&geolocation=\xc3".to_vec();
        header.extend_from_slice(b"; x=\x80");
        let cookies = parse_cookie_header(&header);
        assert_eq!(cookies.consent.unwrap().group("C0002"), Some(true));
    }

    #[test]
    fn two_copies_grant_only_what_both_grant() {
        let header = "OptanonConsent=groups=C0001:1,C0002:1,C0003:1&interactionCount=3&geolocation=FR; OptanonConsent=groups=C0001:1,C0002:0,C0004:1&interactionCount=1";
        let cookies = parse_cookie_header(header.as_bytes());
        let c = cookies.consent.unwrap();
        assert_eq!(c.group("C0002"), Some(false));
        assert_eq!(
            c.group("C0003"),
            Some(false),
            "missing from the second copy"
        );
        assert_eq!(c.group("C0004"), Some(false), "missing from the first copy");
        assert_eq!(c.group("C0001"), Some(true));
        assert_eq!(
            (c.interaction_count, cookies.country.as_deref()),
            (3, Some("FR")),
            "the first usable copy's fields"
        );
        // An unusable copy does not take part.
        let header = "OptanonConsent=isGpcEnabled=0; OptanonConsent=groups=C0002:1";
        assert_eq!(granted(header), ["C0002"]);
    }

    #[test]
    fn gpc_flags_come_from_any_copy() {
        for header in [
            "OptanonConsent=isGpcEnabled=1&groups=C0001:1",
            "OptanonConsent=browserGpcFlag=1&groups=C0001:1",
            "OptanonConsent=groups=C0001:1; OptanonConsent=isGpcEnabled=1",
        ] {
            assert!(parse_cookie_header(header.as_bytes()).gpc, "{header}");
        }
        assert!(
            !parse_cookie_header(b"OptanonConsent=isGpcEnabled=0&browserGpcFlag=0&groups=C0001:1")
                .gpc
        );
    }

    #[test]
    fn geolocation_and_reconsent() {
        let cookies = parse_cookie_header(
            b"OptanonConsent=groups=C0001:1&geolocation=%20gb%20%3Beng&AwaitingReconsent=false",
        );
        assert_eq!(cookies.country.as_deref(), Some("GB"));
        assert!(!cookies.consent.unwrap().awaiting_reconsent);
        assert_eq!(
            parse_cookie_header(b"OptanonConsent=groups=C0001:1&geolocation=%3B").country,
            None
        );
        // An unusable copy still tells the country, but a usable one wins.
        assert_eq!(
            parse_cookie_header(b"OptanonConsent=geolocation=US;CA&groups=")
                .country
                .as_deref(),
            Some("US")
        );
        let both =
            b"OptanonConsent=geolocation=US&groups=; OptanonConsent=geolocation=FR&groups=C0001:1";
        assert_eq!(parse_cookie_header(both).country.as_deref(), Some("FR"));
    }

    #[test]
    fn hostile_sizes_are_bounded() {
        let ids: String = (0..20_000).map(|i| format!("G{i}:1,")).collect();
        let started = std::time::Instant::now();
        let header = format!("OptanonConsent=groups={ids}; OptanonConsent=groups={ids}");
        let c = consent_of(&header).unwrap();
        assert_eq!(c.groups.len(), MAX_GROUP_ENTRIES);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        let copies: String = (0..1000)
            .map(|i| format!("OptanonConsent=groups=C{i}:1,C0002:1; "))
            .collect();
        let c = consent_of(&format!("{copies}OptanonConsent=groups=C0002:0")).unwrap();
        assert_eq!(
            c.group("C0002"),
            Some(false),
            "every copy counts, the last one too"
        );
        assert_eq!(
            c.groups.len(),
            MAX_GROUP_ENTRIES,
            "groups across copies are bounded"
        );
    }

    #[test]
    fn very_long_headers_parse_quickly() {
        let mut header = String::from("OptanonConsent=groups=C0001:1,C0002:1");
        for i in 0..5000 {
            header.push_str(&format!("; _junk{i}={}", "x".repeat(20)));
        }
        let groups: String = (0..2000).map(|i| format!("G{i}:1,")).collect();
        header.push_str(&format!("; OptanonConsent=groups=C0002:1,{groups}"));
        let c = consent_of(&header).unwrap();
        assert_eq!(c.group("C0002"), Some(true));
        assert_eq!(c.group("G5"), Some(false), "only in the second copy");
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(header in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_cookie_header(&header);
        }

        #[test]
        fn never_panics_on_cookie_shaped_text(value in "[%0-9A-Fa-fgz+:,;&=C \"\\x{2028}é]{0,200}") {
            let header = format!("OptanonConsent={value}; OptanonConsent=groups={value}");
            let _ = parse_cookie_header(header.as_bytes());
        }

        #[test]
        fn only_onetrust_cookies_make_the_reading(
            pairs in proptest::collection::vec((0..4usize, "[a-zA-Z0-9%=:,&.+-]{0,24}"), 0..8),
            other in "[a-zA-Z0-9%=:,&.+-]{0,24}",
        ) {
            const NAMES: [&str; 4] = ["OptanonConsent", "OptanonAlertBoxClosed", "_ga", "optanonconsent"];
            let header = |with_others: bool| {
                pairs
                    .iter()
                    .filter(|(name, _)| with_others || *name < 2)
                    .map(|(name, value)| format!("{}={value}", NAMES[*name]))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let (full, onetrust_only) = (header(true), header(false));
            let reading = OneTrustReading::of(full.as_bytes());
            // Other cookies, anywhere, leave the reading and what it says as they were.
            prop_assert_eq!(&reading, &OneTrustReading::of(onetrust_only.as_bytes()));
            prop_assert_eq!(reading.cookies(), parse_cookie_header(full.as_bytes()));
            let padded = format!("ajs_anonymous_id={other}; {full}; _gid={other}");
            prop_assert_eq!(&reading, &OneTrustReading::of(padded.as_bytes()));
            // A OneTrust value changed is another reading.
            let changed = format!("{full}; OptanonAlertBoxClosed={other}");
            prop_assert_ne!(&reading, &OneTrustReading::of(changed.as_bytes()));
        }

        #[test]
        fn the_reading_is_every_onetrust_pair_of_the_header_in_order(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("OptanonConsent"), Just("OptanonAlertBoxClosed"), Just("Optanon"),
                    Just("xOptanonConsent"), Just(";"), Just("; "), Just("="), Just(" "),
                    Just("\t"), Just("\""), Just("groups=C0001:1"), Just("a"), Just("é"),
                ],
                0..24,
            ),
        ) {
            let header = parts.concat();
            // Split into every pair, as a header is defined.
            let every: Vec<_> = header
                .as_bytes()
                .split(|&b| b == b';')
                .filter_map(cookie_pair)
                .filter_map(OneTrustReading::onetrust)
                .collect();
            prop_assert_eq!(OneTrustReading::of(header.as_bytes()).pairs, every);
        }

        #[test]
        fn decoding_an_encoded_value_gives_it_back(value in "\\PC{0,40}") {
            let encoded = encode_all(&value);
            prop_assert_eq!(percent_decode(&encoded, false), value);
        }
    }
}
