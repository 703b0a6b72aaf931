//! The tracking proxy's decisions: which events of a request go upstream, and
//! with what consent on them.
//!
//! Each event's effective consent is the request's (its cookie) **and** what
//! the event already carries: a stamped refusal is never upgraded, a stamped
//! grant that the cookie does not back is corrected. Only `integrations` and
//! `context.consent` (and a missing `context.ip`) are rebuilt; every other
//! byte of the event goes upstream as it came. Every forwarded event carries
//! the edge's receipt ([`crate::receipt`]), in every MODE, unless
//! `RECEIPTS = "off"`: one already stamped on it is replaced.

use crate::config::Config;
use crate::consent::{collection, ConsentState, Grants, Resolution, SEGMENT_IO};
use crate::destinations::DestinationSet;
use crate::json::{
    self, bool_text, string_value, write_str, Element, ObjectWriter, ParseError, RawObject, Shape,
};
use crate::onetrust;
use crate::receipt::Receipt;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

/// Segment's limits: 32 KiB per event, 500 KiB per batch request.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
pub const MAX_BODY_BYTES: usize = 500 * 1024;
/// An event's consent names far fewer groups; more is refused rather than
/// weighed (which costs time quadratic in their number).
pub const MAX_STAMPED_GROUPS: usize = 512;

/// What the proxy reads of an event in its one pass over it.
const CONSENT: Shape = Shape::Object(&[("categoryPreferences", Shape::Object(&[]))]);
const EVENT: &[(&str, Shape)] = &[
    ("integrations", Shape::Object(&[])),
    ("context", Shape::Object(&[("consent", CONSENT)])),
];
/// A batch: its own consent fields, and each event read as above, except
/// that an `integrations` or a `context.consent` repeated from the event
/// before is not read again.
const ENVELOPE: &[(&str, Shape)] = &[
    ("integrations", Shape::Object(&[])),
    ("context", Shape::Object(&[("consent", CONSENT)])),
    ("batch", Shape::Array(&Shape::Object(BATCH_EVENT))),
];
const BATCH_EVENT: &[(&str, Shape)] = &[
    ("integrations", Shape::Repeated(&[])),
    ("context", Shape::Object(&[("consent", REPEATED_CONSENT)])),
];
const REPEATED_CONSENT: Shape = Shape::Repeated(&[("categoryPreferences", Shape::Object(&[]))]);

/// The tracking API calls analytics.js and Segment's libraries make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// One event: `t`/`track`, `p`/`page`, `i`/`identify`, `g`/`group`, `a`/`alias`, `s`/`screen`.
    Event,
    /// `b`/`batch`.
    Batch,
    /// `m`: analytics.js metrics; no write key, no personal data, not rewritten.
    Metrics,
}

impl Endpoint {
    /// The endpoint of a `/v1/{name}` path segment, short or long form.
    pub fn from_segment(name: &str) -> Option<Endpoint> {
        match name {
            "t" | "p" | "i" | "g" | "a" | "s" | "track" | "page" | "identify" | "group"
            | "alias" | "screen" => Some(Endpoint::Event),
            "b" | "batch" => Some(Endpoint::Batch),
            "m" => Some(Endpoint::Metrics),
            _ => None,
        }
    }
}

/// Why a request is refused before anything is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    BodyTooLarge { bytes: usize },
    EventTooLarge { index: usize, bytes: usize },
    NotUtf8,
    InvalidJson(String),
    NotAnObject { what: &'static str },
    BatchNotAnArray,
    TooManyGroups,
    MissingWriteKey,
    UnknownWriteKey,
    WriteKeyMismatch,
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BodyTooLarge { .. } | Refusal::EventTooLarge { .. } => 413,
            Refusal::NotUtf8
            | Refusal::InvalidJson(_)
            | Refusal::NotAnObject { .. }
            | Refusal::BatchNotAnArray
            | Refusal::TooManyGroups => 400,
            Refusal::MissingWriteKey | Refusal::UnknownWriteKey | Refusal::WriteKeyMismatch => 403,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::BodyTooLarge { bytes } => write!(
                f,
                "request body is {bytes} bytes; the limit is {MAX_BODY_BYTES}"
            ),
            Refusal::EventTooLarge { index, bytes } => write!(
                f,
                "event {index} is {bytes} bytes; the limit is {MAX_EVENT_BYTES}"
            ),
            Refusal::NotUtf8 => write!(f, "request body is not UTF-8"),
            Refusal::InvalidJson(e) => write!(f, "request body is not valid JSON: {e}"),
            Refusal::NotAnObject { what } => write!(f, "{what} must be a JSON object"),
            Refusal::BatchNotAnArray => write!(f, "batch must be an array of events"),
            Refusal::TooManyGroups => write!(
                f,
                "context.consent names more than {MAX_STAMPED_GROUPS} groups"
            ),
            Refusal::MissingWriteKey => {
                write!(f, "no write key in the body or Authorization header")
            }
            Refusal::UnknownWriteKey => write!(f, "write key is not served here"),
            Refusal::WriteKeyMismatch => write!(
                f,
                "write keys in the body and Authorization header disagree"
            ),
        }
    }
}

/// A tracking request that passed every check, ready to be rewritten.
pub enum Parsed<'b> {
    Metrics(&'b [u8]),
    Event {
        event: RawObject<'b>,
        stamp: Stamp,
        write_key: String,
    },
    Batch {
        envelope: RawObject<'b>,
        envelope_stamp: Stamp,
        /// One per event of the envelope's `batch`, in order.
        stamps: Vec<Rc<Stamp>>,
        write_key: String,
    },
}

impl Parsed<'_> {
    /// The configured write key the request is for (none for metrics).
    pub fn write_key(&self) -> Option<&str> {
        match self {
            Parsed::Metrics(_) => None,
            Parsed::Event { write_key, .. } | Parsed::Batch { write_key, .. } => Some(write_key),
        }
    }
}

/// Checks a tracking request in the documented order (413, then 400, then
/// 403) without forwarding or rewriting anything.
pub fn parse<'b>(
    config: &Config,
    endpoint: Endpoint,
    body: &'b [u8],
    authorization: Option<&str>,
) -> Result<Parsed<'b>, Refusal> {
    let limit = match endpoint {
        Endpoint::Batch => MAX_BODY_BYTES,
        Endpoint::Event | Endpoint::Metrics => MAX_EVENT_BYTES,
    };
    if body.len() > limit {
        return Err(match endpoint {
            Endpoint::Batch => Refusal::BodyTooLarge { bytes: body.len() },
            _ => Refusal::EventTooLarge {
                index: 0,
                bytes: body.len(),
            },
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| Refusal::NotUtf8)?;
    match endpoint {
        Endpoint::Metrics => {
            json::validate(text).map_err(|e| Refusal::InvalidJson(e.to_string()))?;
            Ok(Parsed::Metrics(body))
        }
        Endpoint::Event => {
            let event = parse_object(text, EVENT, "the event")?;
            let stamp = Stamp::read(&event)?;
            let write_key = check_write_keys(config, authorization, [event.get("writeKey")])?;
            Ok(Parsed::Event {
                event,
                stamp,
                write_key,
            })
        }
        Endpoint::Batch => {
            let envelope = parse_object(text, ENVELOPE, "the request body")?;
            let events = envelope.array("batch").ok_or(Refusal::BatchNotAnArray)?;
            if let Some((index, e)) = events
                .iter()
                .enumerate()
                .find(|(_, e)| e.raw.len() > MAX_EVENT_BYTES)
            {
                return Err(Refusal::EventTooLarge {
                    index,
                    bytes: e.raw.len(),
                });
            }
            let stamps = Stamp::read_batch(events)?;
            // Consent stamped on the envelope applies to every event in it.
            let envelope_stamp = Stamp::read(&envelope)?;
            let event_keys = events
                .iter()
                .map(|e| e.object.as_ref().and_then(|o| o.get("writeKey")));
            let write_key = check_write_keys(
                config,
                authorization,
                std::iter::once(envelope.get("writeKey")).chain(event_keys),
            )?;
            Ok(Parsed::Batch {
                envelope,
                envelope_stamp,
                stamps,
                write_key,
            })
        }
    }
}

/// What the proxy sends upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforced {
    /// The body to forward; `None` when every event was dropped.
    pub body: Option<Vec<u8>>,
    pub counts: Counts,
}

/// How many events of a request go upstream, how many were dropped, and
/// what enforcement changed in (or kept on) the forwarded ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub forwarded: usize,
    pub dropped: usize,
    /// Destination keys of `integrations` stamped on (`true`, options) that
    /// the edge set `false`: a stale tab or a tampered client.
    pub corrected: usize,
    /// Stamped refusals that the cookie alone would have granted, kept:
    /// destination keys stamped `false` and groups stamped refused.
    pub kept: usize,
}

/// Everything an event's rewrite depends on besides the event.
pub struct Enforcer<'a> {
    config: &'a Config,
    set: &'a DestinationSet,
    state: &'a ConsentState,
    client_ip: Option<&'a str>,
    /// `corrected` and `kept`, summed while the rewrite writes.
    tally: Cell<Counts>,
    /// What the request's consent decides on the set, and its receipt.
    decided: Rc<Decided>,
    /// What the last event of a batch rewritten under the request's own
    /// decisions had.
    repeats: RefCell<Repeats>,
}

/// The loader stamps every event of a page with the same `integrations` and
/// `context.consent`, so the events of a batch usually repeat them byte for
/// byte; the same bytes under the same decisions rewrite the same.
#[derive(Default)]
struct Repeats {
    integrations: Option<Repeat>,
    consent: Option<Repeat>,
}

/// An object as stamped and as rewritten, with what the rewrite counted.
struct Repeat {
    stamped: Vec<u8>,
    rewritten: Vec<u8>,
    counted: Counts,
}

/// What a consent decides on a destination set for an event that states
/// nothing of its own, and the receipt its events carry: the same for every
/// request of a visitor on one list, so the Worker keeps it with the consent.
#[derive(Debug)]
pub struct Decided {
    resolution: Rc<Resolution>,
    /// `context.consent.receipt`; `None` with `RECEIPTS = "off"`.
    receipt: Option<Vec<u8>>,
}

impl Decided {
    pub fn new(config: &Config, set: &DestinationSet, state: &ConsentState) -> Decided {
        Decided {
            resolution: Rc::new(Resolution::of_state(config, set, state)),
            receipt: Receipt::new(config, state, set.rules().digest()).map(|r| r.to_json()),
        }
    }

    /// What the loader embeds.
    pub fn resolution(&self) -> &Rc<Resolution> {
        &self.resolution
    }
}

impl<'a> Enforcer<'a> {
    pub fn new(
        config: &'a Config,
        set: &'a DestinationSet,
        state: &'a ConsentState,
        client_ip: Option<&'a str>,
    ) -> Self {
        let decided = Rc::new(Decided::new(config, set, state));
        Enforcer::with_decided(config, set, state, decided, client_ip)
    }

    /// An enforcer for `state` on `set` whose [`Decided`] is already made
    /// (`Decided::new` of the same three).
    pub fn with_decided(
        config: &'a Config,
        set: &'a DestinationSet,
        state: &'a ConsentState,
        decided: Rc<Decided>,
        client_ip: Option<&'a str>,
    ) -> Self {
        Enforcer {
            config,
            set,
            state,
            client_ip,
            tally: Cell::default(),
            repeats: RefCell::default(),
            decided,
        }
    }

    /// Rewrites a checked request: drops the events whose collection is
    /// refused and stamps the rest.
    pub fn enforce(&self, parsed: Parsed<'_>) -> Enforced {
        let mut enforced = self.enforce_events(parsed);
        let tally = self.tally.take();
        enforced.counts.corrected = tally.corrected;
        enforced.counts.kept = tally.kept;
        enforced
    }

    fn enforce_events(&self, parsed: Parsed<'_>) -> Enforced {
        match parsed {
            Parsed::Metrics(body) => Enforced {
                body: Some(body.to_vec()),
                counts: Counts {
                    forwarded: 1,
                    ..Counts::default()
                },
            },
            Parsed::Event { event, stamp, .. } => {
                let base = self.base(Stamp::default());
                let mut out = Vec::with_capacity(self.output_capacity(1, 4096));
                if self.rewrite_event(&event, &stamp, &base, &mut out, false) {
                    Enforced {
                        body: Some(out),
                        counts: Counts {
                            forwarded: 1,
                            ..Counts::default()
                        },
                    }
                } else {
                    Enforced {
                        body: None,
                        counts: Counts {
                            dropped: 1,
                            ..Counts::default()
                        },
                    }
                }
            }
            Parsed::Batch {
                envelope,
                envelope_stamp,
                stamps,
                ..
            } => self.enforce_batch(&envelope, envelope_stamp, &stamps),
        }
    }

    /// Room for a rewritten body: what came, plus the destination keys and
    /// the receipt.
    fn output_capacity(&self, events: usize, bytes: usize) -> usize {
        let receipt = self.decided.receipt.as_ref().map_or(0, Vec::len);
        bytes + events * (256 + receipt + self.set.destinations().len() * 32)
    }

    fn enforce_batch(
        &self,
        envelope: &RawObject<'_>,
        envelope_stamp: Stamp,
        stamps: &[Rc<Stamp>],
    ) -> Enforced {
        let base = self.base(envelope_stamp);
        // What was rewritten under another request's decisions is not reused.
        self.repeats.take();
        let events = envelope.array("batch").unwrap_or_default();
        let size = events.iter().map(|e| e.raw.len()).sum();
        let mut out = Vec::with_capacity(self.output_capacity(events.len(), size));
        let mut w = ObjectWriter::new(&mut out);
        let (mut forwarded, mut dropped) = (0, 0);
        for entry in envelope.iter() {
            match entry.key() {
                "batch" => {
                    let buf = w.key_of(entry);
                    buf.push(b'[');
                    for (event, stamp) in
                        events.iter().filter_map(|e| e.object.as_ref()).zip(stamps)
                    {
                        let mark = buf.len();
                        if forwarded > 0 {
                            buf.push(b',');
                        }
                        if self.rewrite_event(event, stamp, &base, buf, true) {
                            forwarded += 1;
                        } else {
                            buf.truncate(mark);
                            dropped += 1;
                        }
                    }
                    buf.push(b']');
                }
                // Envelope fields are corrected, never extended.
                "integrations" if envelope.object("integrations").is_some() => self
                    .write_integrations(
                        envelope.object("integrations"),
                        &base,
                        w.key_of(entry),
                        false,
                    ),
                "context" if envelope.object("context").is_some() => self.write_context(
                    envelope.object("context"),
                    &base,
                    w.key_of(entry),
                    false,
                    false,
                ),
                _ => w.entry(entry),
            }
        }
        w.finish();
        if forwarded == 0 {
            // The envelope's corrections went nowhere.
            self.tally.take();
        }
        Enforced {
            body: (forwarded > 0).then_some(out),
            counts: Counts {
                forwarded,
                dropped,
                ..Counts::default()
            },
        }
    }

    /// The decisions under the cookie narrowed by `stamp`.
    fn base(&self, stamp: Stamp) -> Base {
        let resolution = if stamp.is_empty() {
            Rc::clone(&self.decided.resolution)
        } else {
            Rc::new(self.decide(&stamp))
        };
        Base { resolution, stamp }
    }

    /// The decisions under the cookie narrowed by `stamp`, made anew; under
    /// a stamp that states nothing they are [`Decided`]'s.
    fn decide(&self, stamp: &Stamp) -> Resolution {
        let grants = Stamped {
            state: self.state,
            stamp,
        };
        let groups = std::iter::once(self.state.strict_group())
            .chain(self.state.named_groups().iter().map(String::as_str))
            .chain(self.set.groups().iter().map(String::as_str))
            .chain(stamp.stated.iter().map(String::as_str));
        let collect = collection(self.config, &grants) && !stamp.refuses_collection;
        Resolution::new(self.config, self.set, &grants, collect, groups)
    }

    /// Writes the rewritten event into `out`, or returns `false` (writing
    /// nothing) when collection is refused and the event is dropped. With
    /// `repeats`, what the event before had is not rewritten again.
    fn rewrite_event(
        &self,
        event: &RawObject<'_>,
        stamp: &Stamp,
        base: &Base,
        out: &mut Vec<u8>,
        repeats: bool,
    ) -> bool {
        let own;
        let decided = if stamp.within(base) {
            base
        } else {
            // The envelope's groups first, as in `base`: rewritten again, an
            // event then lists its groups in the same order either way.
            own = self.base(base.stamp.merged(stamp));
            &own
        };
        if !decided.resolution.collection {
            return false;
        }
        // Group refusals that mattered; the strict group's is never kept.
        let strict = self.state.strict_group();
        let refused = decided.stamp.denied.iter();
        self.count(
            0,
            refused
                .filter(|g| *g != strict && self.state.granted(g))
                .count(),
        );
        // Only under the request's own decisions: they hold for every event.
        let repeats = repeats && std::ptr::eq(decided, base);
        let (integrations, context) = (event.object("integrations"), event.object("context"));
        let mut w = ObjectWriter::new(out);
        for entry in event.iter() {
            match entry.key() {
                "integrations" if integrations.is_some() => {
                    let out = w.key_of(entry);
                    let write = |out: &mut Vec<u8>| {
                        self.write_integrations(integrations, decided, out, true)
                    };
                    if repeats {
                        self.repeated(|r| &mut r.integrations, entry.value(), out, write)
                    } else {
                        write(out)
                    }
                }
                "context" if context.is_some() => {
                    self.write_context(context, decided, w.key_of(entry), true, repeats)
                }
                // A null one is replaced below.
                "integrations" | "context" => {}
                _ => w.entry(entry),
            }
        }
        let mode = self.config.mode;
        if integrations.is_none() && mode.stamps_integrations() {
            self.write_integrations(None, decided, w.key("integrations"), true);
        }
        if context.is_none()
            && (mode.stamps_context() || self.decided.receipt.is_some() || self.client_ip.is_some())
        {
            self.write_context(None, decided, w.key("context"), true, false);
        }
        w.finish();
        true
    }

    /// Writes what `write` writes for the `stamped` text of one of the
    /// [`Repeats`], or copies what it wrote for the same text before.
    fn repeated(
        &self,
        field: fn(&mut Repeats) -> &mut Option<Repeat>,
        stamped: &str,
        out: &mut Vec<u8>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        if let Some(repeat) = field(&mut self.repeats.borrow_mut()) {
            if json::same(&repeat.stamped, stamped.as_bytes()) {
                out.extend_from_slice(&repeat.rewritten);
                self.count(repeat.counted.corrected, repeat.counted.kept);
                return;
            }
        }
        let (mark, before) = (out.len(), self.tally.get());
        write(out);
        let after = self.tally.get();
        *field(&mut self.repeats.borrow_mut()) = Some(Repeat {
            stamped: stamped.as_bytes().to_vec(),
            rewritten: out[mark..].to_vec(),
            counted: Counts {
                corrected: after.corrected - before.corrected,
                kept: after.kept - before.kept,
                ..Counts::default()
            },
        });
    }

    /// Corrects every key that claims more than the consent allows; with
    /// `extend` (and a MODE that stamps integrations) adds `All`, each known
    /// destination and `Segment.io`.
    fn write_integrations(
        &self,
        integrations: Option<&RawObject<'_>>,
        decided: &Base,
        out: &mut Vec<u8>,
        extend: bool,
    ) {
        let r = &decided.resolution;
        let mut present = vec![false; r.enabled.len()];
        let (mut has_all, mut has_segment) = (false, false);
        let mut next = 0;
        let mut w = ObjectWriter::new(out);
        let (mut corrected, mut kept) = (0, 0);
        for entry in integrations.into_iter().flat_map(RawObject::iter) {
            let stamped_off = is_false(entry.value());
            let allowed = match entry.key() {
                "All" => {
                    has_all = true;
                    // Rebuilt as a boolean: `All` carries no options.
                    w.key_of(entry)
                        .extend_from_slice(bool_text(r.all && !stamped_off));
                    continue;
                }
                SEGMENT_IO => {
                    has_segment = true;
                    r.collection
                }
                key => {
                    let allowed = match self.set.find_from(next, key) {
                        Some(at) => {
                            present[at] = true;
                            next = at + 1;
                            r.enabled[at]
                        }
                        // Not a destination this list maps (or no list yet):
                        // `ALL_DEFAULT` decides, as for an unmapped one.
                        None => r.all,
                    };
                    corrected += usize::from(!allowed && !stamped_off);
                    kept += usize::from(allowed && stamped_off);
                    allowed
                }
            };
            if allowed || stamped_off {
                w.entry(entry);
            } else {
                w.key_of(entry).extend_from_slice(b"false");
            }
        }
        if extend && self.config.mode.stamps_integrations() {
            if !has_all {
                w.bool("All", r.all);
            }
            for ((d, &enabled), _) in self
                .set
                .destinations()
                .iter()
                .zip(&r.enabled)
                .zip(&present)
                .filter(|(_, p)| !**p)
            {
                w.key_literal(&d.key_literal)
                    .extend_from_slice(bool_text(enabled));
            }
            if !has_segment {
                w.bool(SEGMENT_IO, r.collection);
            }
        }
        w.finish();
        self.count(corrected, kept);
    }

    fn count(&self, corrected: usize, kept: usize) {
        let mut tally = self.tally.get();
        tally.corrected += corrected;
        tally.kept += kept;
        self.tally.set(tally);
    }

    /// Rewrites `context.consent` (and adds a missing `context.ip`) in a
    /// context, or writes a new context.
    fn write_context(
        &self,
        context: Option<&RawObject<'_>>,
        decided: &Base,
        out: &mut Vec<u8>,
        extend: bool,
        repeats: bool,
    ) {
        // Under MODE=integrations the receipt alone makes a `consent`.
        let writes_consent =
            extend && (self.config.mode.stamps_context() || self.decided.receipt.is_some());
        let consent = context.and_then(|c| c.object("consent"));
        let mut w = ObjectWriter::new(out);
        let mut has_ip = false;
        for entry in context.into_iter().flat_map(RawObject::iter) {
            match entry.key() {
                "consent" if consent.is_some() => {
                    let out = w.key_of(entry);
                    let write =
                        |out: &mut Vec<u8>| self.write_consent(consent, decided, out, extend);
                    if repeats {
                        self.repeated(|r| &mut r.consent, entry.value(), out, write)
                    } else {
                        write(out)
                    }
                }
                // A null consent is replaced when writing one.
                "consent" if writes_consent => {}
                "ip" => {
                    has_ip = true;
                    w.entry(entry);
                }
                _ => w.entry(entry),
            }
        }
        if writes_consent && consent.is_none() {
            self.write_consent(None, decided, w.key("consent"), true);
        }
        if let (Some(ip), false, true) = (self.client_ip, has_ip, extend) {
            w.str("ip", ip);
        }
        w.finish();
    }

    /// `categoryPreferences` and `onetrust`: replaced whole when stamping
    /// (`extend` under a MODE that stamps context), otherwise only corrected
    /// where they claim a group that is not granted. `receipt`: the edge's,
    /// in place of any stamped one, added with `extend`; none at all (not
    /// even a stamped one) with `RECEIPTS = "off"`.
    fn write_consent(
        &self,
        consent: Option<&RawObject<'_>>,
        decided: &Base,
        out: &mut Vec<u8>,
        extend: bool,
    ) {
        let stamps = extend && self.config.mode.stamps_context();
        let r = &decided.resolution;
        let granted = |g: &str| r.groups.iter().any(|(known, ok)| known == g && *ok);
        let prefs = consent.and_then(|c| c.object("categoryPreferences"));
        let mut w = ObjectWriter::new(out);
        let (mut has_prefs, mut has_onetrust, mut has_receipt) = (false, false, false);
        for entry in consent.into_iter().flat_map(RawObject::iter) {
            match entry.key() {
                "receipt" => {
                    has_receipt = true;
                    if let Some(receipt) = &self.decided.receipt {
                        w.key_of(entry).extend_from_slice(receipt);
                    }
                }
                "categoryPreferences" if stamps || prefs.is_some() => {
                    has_prefs = true;
                    let buf = w.key_of(entry);
                    if stamps {
                        r.write_preferences(buf);
                    } else {
                        let mut p = ObjectWriter::new(buf);
                        for pref in prefs.into_iter().flat_map(RawObject::iter) {
                            p.key_of(pref)
                                .extend_from_slice(bool_text(granted(pref.key())));
                        }
                        p.finish();
                    }
                }
                "onetrust" => {
                    has_onetrust = true;
                    let buf = w.key_of(entry);
                    match (stamps, string_value(entry.value())) {
                        (true, _) => write_str(buf, &r.onetrust()),
                        (false, Some(stamped)) => {
                            write_str(buf, &correct_onetrust(&stamped, granted))
                        }
                        (false, None) => buf.extend_from_slice(entry.value().as_bytes()),
                    }
                }
                _ => w.entry(entry),
            }
        }
        if stamps && !has_prefs {
            r.write_preferences(w.key("categoryPreferences"));
        }
        if stamps && !has_onetrust {
            w.str("onetrust", &r.onetrust());
        }
        if let (Some(receipt), false, true) = (&self.decided.receipt, has_receipt, extend) {
            w.key("receipt").extend_from_slice(receipt);
        }
        w.finish();
    }
}

/// Decisions shared by the events of a request (or made for one event whose
/// stamp restricts more), and the stamp they were made under.
struct Base {
    resolution: Rc<Resolution>,
    stamp: Stamp,
}

/// The consent an event (or a batch envelope) already carries.
#[derive(Debug, Default, Clone)]
pub struct Stamp {
    /// Groups it refuses: `categoryPreferences[g] === false` or `g:0` in `onetrust`.
    denied: Vec<String>,
    /// Groups it states at all.
    stated: Vec<String>,
    /// `integrations["Segment.io"] === false`.
    refuses_collection: bool,
}

impl Stamp {
    /// Reads what an event (or envelope) says of consent; a wrongly shaped
    /// `integrations`, `context`, `consent` or `categoryPreferences` is a 400.
    fn read(object: &RawObject<'_>) -> Result<Stamp, Refusal> {
        let fields = StampFields::of(object)?;
        Stamp::of_consent(fields.refuses_collection, fields.consent())
    }

    /// The stamp of each event of a batch, in order. An event with the same
    /// `context.consent` text (and the same `Segment.io` refusal) as the one
    /// before shares its stamp: the loader stamps every event of a page alike.
    fn read_batch(events: &[Element<'_>]) -> Result<Vec<Rc<Stamp>>, Refusal> {
        let mut last: Option<(bool, Option<&str>, Rc<Stamp>)> = None;
        let mut stamps = Vec::with_capacity(events.len());
        for element in events {
            let event = element.object.as_ref().ok_or(Refusal::NotAnObject {
                what: "each batch event",
            })?;
            let fields = StampFields::of(event)?;
            let (refuses, text) = (fields.refuses_collection, fields.consent.map(|(t, _)| t));
            let repeated = last.as_ref().filter(|(r, t, _)| {
                *r == refuses
                    && match (t, text) {
                        (Some(t), Some(text)) => json::same(t.as_bytes(), text.as_bytes()),
                        (t, text) => t.is_none() && text.is_none(),
                    }
            });
            let stamp = match repeated {
                Some((_, _, stamp)) => Rc::clone(stamp),
                None => Rc::new(Stamp::of_consent(refuses, fields.consent())?),
            };
            last = Some((refuses, text, Rc::clone(&stamp)));
            stamps.push(stamp);
        }
        Ok(stamps)
    }

    /// The stamp of a `context.consent` (checked for its shape).
    fn of_consent(
        refuses_collection: bool,
        consent: Option<&RawObject<'_>>,
    ) -> Result<Stamp, Refusal> {
        let mut stamp = Stamp {
            refuses_collection,
            ..Stamp::default()
        };
        if let Some(consent) = consent {
            if let Some(prefs) = nested(
                consent,
                "categoryPreferences",
                "context.consent.categoryPreferences",
            )? {
                for pref in prefs.iter() {
                    stamp.state(pref.key(), !is_false(pref.value()))?;
                }
            }
            if let Some(stamped) = consent.get("onetrust").and_then(string_value) {
                for (g, granted) in onetrust::entries(&stamped) {
                    stamp.state(g, granted)?;
                }
            }
        }
        Ok(stamp)
    }

    fn state(&mut self, group: &str, granted: bool) -> Result<(), Refusal> {
        if !self.stated.iter().any(|g| g == group) {
            if self.stated.len() == MAX_STAMPED_GROUPS {
                return Err(Refusal::TooManyGroups);
            }
            self.stated.push(group.to_owned());
        }
        if !granted && !self.denied.iter().any(|g| g == group) {
            self.denied.push(group.to_owned());
        }
        Ok(())
    }

    /// States nothing: decisions under it are the consent's own.
    fn is_empty(&self) -> bool {
        self.stated.is_empty() && self.denied.is_empty() && !self.refuses_collection
    }

    /// Whether decisions made for `base` already hold under this stamp: it
    /// names no group they do not state and refuses none they grant.
    fn within(&self, base: &Base) -> bool {
        let stated = &base.resolution.groups;
        !self.refuses_collection
            && self
                .stated
                .iter()
                .all(|g| stated.iter().any(|(k, _)| k == g))
            && self
                .denied
                .iter()
                .all(|g| stated.iter().any(|(k, ok)| k == g && !*ok))
    }

    /// Both stamps at once: every refusal of either.
    fn merged(&self, other: &Stamp) -> Stamp {
        let mut stamp = self.clone();
        for g in &other.stated {
            if !stamp.stated.contains(g) {
                stamp.stated.push(g.clone());
            }
        }
        for g in &other.denied {
            if !stamp.denied.contains(g) {
                stamp.denied.push(g.clone());
            }
        }
        stamp.refuses_collection |= other.refuses_collection;
        stamp
    }
}

/// What an event's (or envelope's) stamp is read from.
struct StampFields<'o, 't> {
    /// `integrations["Segment.io"] === false`.
    refuses_collection: bool,
    /// `context.consent`: its text and its reading.
    consent: Option<(&'t str, &'o RawObject<'t>)>,
}

impl<'o, 't> StampFields<'o, 't> {
    /// A wrongly shaped `integrations`, `context` or `consent` is a 400.
    fn of(object: &'o RawObject<'t>) -> Result<Self, Refusal> {
        let integrations = nested(object, "integrations", "integrations")?;
        let context = nested(object, "context", "context")?;
        let consent = match context {
            Some(context) => nested(context, "consent", "context.consent")?
                .zip(context.get("consent"))
                .map(|(consent, text)| (text, consent)),
            None => None,
        };
        Ok(StampFields {
            refuses_collection: integrations
                .and_then(|i| i.get(SEGMENT_IO))
                .is_some_and(is_false),
            consent,
        })
    }

    fn consent(&self) -> Option<&'o RawObject<'t>> {
        self.consent.map(|(_, consent)| consent)
    }
}

/// A consent state narrowed by a stamp.
struct Stamped<'a> {
    state: &'a ConsentState,
    stamp: &'a Stamp,
}

impl Grants for Stamped<'_> {
    fn granted(&self, group: &str) -> bool {
        // The strict group cannot be refused, not even by a stamp.
        group == self.state.strict_group()
            || (self.state.granted(group) && !self.stamp.denied.iter().any(|g| g == group))
    }
}

/// A stamped groups string with every grant the consent does not back turned
/// into a refusal, rebuilt from its well-formed entries only: a malformed one
/// (`C0004:1:1`) could still read as a grant to a Destination Filter.
fn correct_onetrust(stamped: &str, granted: impl Fn(&str) -> bool) -> String {
    onetrust::write(onetrust::entries(stamped).map(|(g, stamped)| (g, stamped && granted(g))))
}

fn parse_object<'t>(
    text: &'t str,
    shape: &'static [(&'static str, Shape)],
    what: &'static str,
) -> Result<RawObject<'t>, Refusal> {
    RawObject::parse_shaped(text, shape).map_err(|e| match e {
        ParseError::NotAnObject => Refusal::NotAnObject { what },
        other => Refusal::InvalidJson(other.to_string()),
    })
}

/// The object at `key`: `None` when absent or null, a 400 when not an object.
fn nested<'o, 't>(
    object: &'o RawObject<'t>,
    key: &str,
    what: &'static str,
) -> Result<Option<&'o RawObject<'t>>, Refusal> {
    match object.get(key) {
        None | Some("null") => Ok(None),
        Some(_) => object
            .object(key)
            .map(Some)
            .ok_or(Refusal::NotAnObject { what }),
    }
}

fn is_false(raw: &str) -> bool {
    raw == "false"
}

/// Every write key the request names must be the same configured one.
fn check_write_keys<'t>(
    config: &Config,
    authorization: Option<&str>,
    body_keys: impl IntoIterator<Item = Option<&'t str>>,
) -> Result<String, Refusal> {
    let mut found: Option<String> = match authorization {
        Some(header) => Some(basic_auth_user(header).ok_or(Refusal::UnknownWriteKey)?),
        None => None,
    };
    for raw in body_keys.into_iter().flatten() {
        let key = string_value(raw).ok_or(Refusal::UnknownWriteKey)?;
        match &found {
            Some(known) if *known != key => return Err(Refusal::WriteKeyMismatch),
            Some(_) => {}
            None => found = Some(key.into_owned()),
        }
    }
    match found {
        None => Err(Refusal::MissingWriteKey),
        Some(key) if config.knows_write_key(&key) => Ok(key),
        Some(_) => Err(Refusal::UnknownWriteKey),
    }
}

/// The user of `Authorization: Basic base64(user:password)`, as analytics.js
/// sends the write key.
pub fn basic_auth_user(header: &str) -> Option<String> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
    Some(user.to_owned())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::RequestSignals;
    use crate::cookie::parse_cookie_header;
    use crate::destinations::Destination;
    use serde_json::{json, Value};

    const WK: &str = "wk_live";
    const AUTH: &str = "Basic d2tfbGl2ZTo="; // base64("wk_live:")

    struct Fixture {
        config: Config,
        set: DestinationSet,
        state: ConsentState,
    }

    fn fixture(vars: &[(&str, &str)], cookie: &str) -> Fixture {
        let config = Config::from_vars(|key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .or_else(|| (key == "WRITE_KEYS").then(|| format!("{WK},other_key")))
        });
        let d = |name: &str, category: &str| Destination {
            name: name.into(),
            creation_name: name.into(),
            category: category.into(),
            consent_categories: vec![],
        };
        let set = DestinationSet::new(
            &[
                d("GA4", "Analytics"),
                d("Ads", "Advertising"),
                d("Odd", "Other"),
            ],
            &config,
        );
        let state = ConsentState::resolve(
            &config,
            &parse_cookie_header(cookie.as_bytes()),
            RequestSignals::default(),
        );
        Fixture { config, set, state }
    }

    const ANALYTICS_ONLY: &str = "OptanonConsent=groups=C0001:1,C0002:1,C0004:0";

    impl Fixture {
        fn enforce(
            &self,
            endpoint: Endpoint,
            body: &str,
            auth: Option<&str>,
        ) -> Result<Enforced, Refusal> {
            self.enforce_ip(endpoint, body, auth, None)
        }

        fn enforce_ip(
            &self,
            endpoint: Endpoint,
            body: &str,
            auth: Option<&str>,
            ip: Option<&str>,
        ) -> Result<Enforced, Refusal> {
            let parsed = parse(&self.config, endpoint, body.as_bytes(), auth)?;
            Ok(Enforcer::new(&self.config, &self.set, &self.state, ip).enforce(parsed))
        }

        /// The receipt every forwarded event of this fixture carries.
        fn receipt(&self) -> Value {
            json!({"v": 1, "source": "cookie", "decidedAt": null, "gpc": false, "country": null,
                   "rules": self.set.rules().digest().to_string()})
        }

        /// A batch as forwarded, parsed.
        fn batch_out(&self, body: &str) -> Value {
            let enforced = self.enforce(Endpoint::Batch, body, None).unwrap();
            serde_json::from_slice(&enforced.body.unwrap()).unwrap()
        }

        /// The single event as forwarded, parsed.
        fn track(&self, event: Value) -> Option<Value> {
            let enforced = self
                .enforce(Endpoint::Event, &event.to_string(), Some(AUTH))
                .unwrap();
            enforced.body.map(|b| serde_json::from_slice(&b).unwrap())
        }
    }

    fn event(extra: Value) -> Value {
        let mut e = json!({
            "type": "track", "event": "Signed Up", "writeKey": WK,
            "properties": {"plan": "pro", "price": 1.5},
            "messageId": "m-1", "anonymousId": "a-1"
        });
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    }

    #[test]
    fn both_mode_stamps_integrations_and_context() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let out = f
            .track(event(
                json!({"context": {"page": {"path": "/"}, "library": {"name": "analytics.js"}}}),
            ))
            .unwrap();
        assert_eq!(
            out["integrations"],
            json!({"All": false, "GA4": true, "Ads": false, "Odd": false, "Segment.io": true})
        );
        assert_eq!(
            out["context"]["consent"]["categoryPreferences"],
            json!({"C0001": true, "C0002": true, "C0004": false})
        );
        assert_eq!(
            out["context"]["consent"]["onetrust"],
            "C0001:1,C0002:1,C0004:0"
        );
        assert_eq!(
            out["context"]["page"],
            json!({"path": "/"}),
            "other context fields kept"
        );
        assert_eq!(out["context"]["library"]["name"], "analytics.js");
        assert_eq!(out["properties"], json!({"plan": "pro", "price": 1.5}));
        assert_eq!(
            (out["event"].as_str(), out["messageId"].as_str()),
            (Some("Signed Up"), Some("m-1"))
        );
    }

    #[test]
    fn untouched_fields_go_out_byte_for_byte() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let body = r#"{"type":"track","writeKey":"wk_live","properties":{"n" : 1.50,"u":"\u00e9\n","big":12345678901234567890},"traits":[ 1 , 2 ]}"#;
        let out = f
            .enforce(Endpoint::Event, body, None)
            .unwrap()
            .body
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(r#""properties":{"n" : 1.50,"u":"\u00e9\n","big":12345678901234567890}"#),
            "{out}"
        );
        assert!(out.contains(r#""traits":[ 1 , 2 ]"#), "{out}");
        assert!(out.starts_with(r#"{"type":"track","writeKey":"wk_live","#));
    }

    #[test]
    fn a_tampered_client_is_corrected() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let out = f
            .track(event(json!({"integrations": {
                "All": true, "Ads": true, "GA4": {"measurementId": "G-1"}, "Custom": true, "Odd": false, "Segment.io": true
            }})))
            .unwrap();
        assert_eq!(
            out["integrations"],
            json!({"All": false, "Ads": false, "GA4": {"measurementId": "G-1"}, "Custom": false, "Odd": false, "Segment.io": true}),
            "a destination the list does not know follows ALL_DEFAULT"
        );
        let keys: Vec<_> = out["integrations"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys.len(), 6, "no key added twice: {keys:?}");
    }

    #[test]
    fn an_options_object_for_a_denied_destination_becomes_false() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let out = f
            .track(event(json!({"integrations": {"Ads": {"pixelId": "1"}}})))
            .unwrap();
        assert_eq!(out["integrations"]["Ads"], false);
    }

    #[test]
    fn stamped_refusals_are_never_upgraded() {
        let f = fixture(&[], ANALYTICS_ONLY);
        for stamp in [
            json!({"context": {"consent": {"categoryPreferences": {"C0002": false}}}}),
            json!({"context": {"consent": {"onetrust": "C0001:1,C0002:0"}}}),
        ] {
            let out = f.track(event(stamp.clone())).unwrap();
            assert_eq!(out["integrations"]["GA4"], false, "{stamp}");
            assert_eq!(
                out["context"]["consent"]["categoryPreferences"]["C0002"], false,
                "{stamp}"
            );
            assert_eq!(
                out["context"]["consent"]["onetrust"], "C0001:1,C0002:0,C0004:0",
                "{stamp}"
            );
        }
        let out = f
            .track(event(json!({"integrations": {"GA4": false, "All": false}})))
            .unwrap();
        assert_eq!(
            (
                out["integrations"]["GA4"].as_bool(),
                out["integrations"]["All"].as_bool()
            ),
            (Some(false), Some(false))
        );
    }

    #[test]
    fn stamped_grants_beyond_the_cookie_are_corrected() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let out = f
            .track(event(json!({"context": {"consent": {
                "categoryPreferences": {"C0004": true, "C0009": true, "C0002": "yes"},
                "onetrust": "C0004:1,C0009:1",
                "other": 1
            }}})))
            .unwrap();
        let consent = &out["context"]["consent"];
        assert_eq!(
            consent["categoryPreferences"],
            json!({"C0001": true, "C0002": true, "C0004": false, "C0009": false})
        );
        assert_eq!(consent["onetrust"], "C0001:1,C0002:1,C0004:0,C0009:0");
        assert_eq!(consent["other"], 1);
        assert_eq!(out["integrations"]["Ads"], false);
    }

    #[test]
    fn the_strict_group_cannot_be_refused_by_a_stamp() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let out = f
            .track(event(
                json!({"context": {"consent": {"categoryPreferences": {"C0001": false}}}}),
            ))
            .unwrap();
        assert_eq!(
            out["context"]["consent"]["categoryPreferences"]["C0001"],
            true
        );
    }

    #[test]
    fn integrations_mode_adds_only_the_receipt_to_context_but_corrects_it() {
        let f = fixture(&[("MODE", "integrations")], ANALYTICS_ONLY);
        let out = f.track(event(json!({}))).unwrap();
        assert_eq!(
            out["context"],
            json!({"consent": {"receipt": f.receipt()}}),
            "{out}"
        );
        assert_eq!(out["integrations"]["GA4"], true);
        let out = f
            .track(event(json!({"context": {"consent": {"categoryPreferences": {"C0004": true, "C0002": true}, "onetrust": "C0002:1,C0004:1,junk"}}})))
            .unwrap();
        assert_eq!(
            out["context"]["consent"],
            json!({"categoryPreferences": {"C0004": false, "C0002": true}, "onetrust": "C0002:1,C0004:0", "receipt": f.receipt()})
        );
        let f = fixture(
            &[("MODE", "integrations"), ("RECEIPTS", "off")],
            ANALYTICS_ONLY,
        );
        assert!(f.track(event(json!({}))).unwrap().get("context").is_none());
    }

    #[test]
    fn context_mode_adds_no_destination_keys_but_corrects_them() {
        let f = fixture(&[("MODE", "context")], ANALYTICS_ONLY);
        let out = f.track(event(json!({}))).unwrap();
        assert!(out.get("integrations").is_none(), "{out}");
        assert_eq!(
            out["context"]["consent"]["onetrust"],
            "C0001:1,C0002:1,C0004:0"
        );
        let out = f
            .track(event(json!({"integrations": {"Ads": true, "All": true}})))
            .unwrap();
        assert_eq!(out["integrations"], json!({"Ads": false, "All": false}));
    }

    #[test]
    fn unmapped_destinations_follow_all_default() {
        let f = fixture(&[("ALL_DEFAULT", "true")], ANALYTICS_ONLY);
        let out = f
            .track(event(json!({"integrations": {"Custom": {"x": 1}}})))
            .unwrap();
        assert_eq!(out["integrations"]["Custom"], json!({"x": 1}));
        assert_eq!(
            (
                out["integrations"]["All"].as_bool(),
                out["integrations"]["Odd"].as_bool()
            ),
            (Some(true), Some(true))
        );
    }

    #[test]
    fn refused_collection_drops_the_event() {
        let f = fixture(&[("OPT_IN", "false")], ANALYTICS_ONLY);
        assert_eq!(f.track(event(json!({}))), None);
        let f = fixture(&[("COLLECTION_GROUP", "C0003")], ANALYTICS_ONLY);
        assert_eq!(f.track(event(json!({}))), None);
        let f = fixture(&[], ANALYTICS_ONLY);
        assert_eq!(
            f.track(event(json!({"integrations": {"Segment.io": false}}))),
            None
        );
        let f = fixture(&[("COLLECTION_GROUP", "C0002")], ANALYTICS_ONLY);
        assert!(f.track(event(json!({}))).is_some());
        assert_eq!(
            f.track(event(
                json!({"context": {"consent": {"categoryPreferences": {"C0002": false}}}})
            )),
            None
        );
    }

    fn batch(events: Vec<Value>, extra: Value) -> String {
        let mut b = json!({"batch": events, "writeKey": WK, "sentAt": "2026-11-25T10:00:00.000Z"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b.to_string()
    }

    #[test]
    fn a_batch_forwards_the_kept_events_as_one_batch() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let body = batch(
            vec![
                event(json!({"messageId": "keep-1"})),
                event(json!({"messageId": "drop", "integrations": {"Segment.io": false}})),
                event(
                    json!({"messageId": "keep-2", "context": {"consent": {"categoryPreferences": {"C0002": false}}}}),
                ),
            ],
            json!({}),
        );
        let enforced = f.enforce(Endpoint::Batch, &body, Some(AUTH)).unwrap();
        assert_eq!(
            enforced.counts,
            Counts {
                forwarded: 2,
                dropped: 1,
                corrected: 0,
                // keep-2 refuses C0002, which the cookie grants.
                kept: 1,
            }
        );
        let out: Value = serde_json::from_slice(&enforced.body.unwrap()).unwrap();
        let ids: Vec<_> = out["batch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["messageId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["keep-1", "keep-2"]);
        assert_eq!(out["batch"][0]["integrations"]["GA4"], true);
        assert_eq!(out["batch"][1]["integrations"]["GA4"], false);
        assert_eq!(out["sentAt"], "2026-11-25T10:00:00.000Z");
    }

    #[test]
    fn the_consents_own_decisions_are_those_of_an_event_that_states_nothing() {
        for (vars, cookie) in [
            (&[][..], ANALYTICS_ONLY),
            (&[][..], ""),
            (
                &[("CONSENT_MODEL", "opt-out")][..],
                "OptanonConsent=groups=C0004:0",
            ),
            (
                &[("ALL_DEFAULT", "true"), ("RECEIPTS", "off")][..],
                "OptanonConsent=groups=C0001:1,C0003:1,X9:1",
            ),
        ] {
            let f = fixture(vars, cookie);
            let enforcer = Enforcer::new(&f.config, &f.set, &f.state, None);
            let decided = Decided::new(&f.config, &f.set, &f.state);
            assert_eq!(
                **decided.resolution(),
                enforcer.decide(&Stamp::default()),
                "{cookie}"
            );
        }
    }

    #[test]
    fn repeated_stamps_rewrite_as_each_event_alone() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let stamped = json!({"All": false, "Segment.io": true, "GA4": true, "Ads": true});
        let tampered = json!({"Ads": true, "Odd": true, "GA4": false});
        let consent = json!({"categoryPreferences": {"C0001": true, "C0002": true, "C0004": false},
                             "onetrust": "C0001:1,C0002:1,C0004:0"});
        let claims = json!({"categoryPreferences": {"C0004": true}, "onetrust": "C0004:1"});
        let on = |page: &str, consent: &Value| json!({"page": {"path": page}, "consent": consent});
        let events = vec![
            event(
                json!({"messageId": "1", "integrations": stamped, "context": on("/a", &consent)}),
            ),
            event(
                json!({"messageId": "2", "integrations": stamped, "context": on("/b", &consent)}),
            ),
            event(
                json!({"messageId": "3", "integrations": tampered, "context": on("/b", &claims)}),
            ),
            event(json!({"messageId": "4", "integrations": stamped, "context": on("/c", &claims)})),
            // Its own refusal decides it: not the request's decisions.
            event(json!({"messageId": "5", "integrations": stamped,
                         "context": on("/c", &json!({"categoryPreferences": {"C0002": false}}))})),
            event(
                json!({"messageId": "6", "integrations": stamped, "context": on("/d", &consent)}),
            ),
            event(json!({"messageId": "7", "integrations": tampered})),
            // The same consent as the one before, collection refused: dropped.
            event(json!({"messageId": "8", "integrations": {"Segment.io": false}})),
            event(
                json!({"messageId": "9", "integrations": stamped, "context": on("/e", &consent)}),
            ),
        ];
        let body = batch(events.clone(), json!({}));
        let enforced = f.enforce(Endpoint::Batch, &body, None).unwrap();
        let out: Value = serde_json::from_slice(enforced.body.as_ref().unwrap()).unwrap();
        let (mut counts, mut forwarded) = (Counts::default(), vec![]);
        for e in events {
            let alone = f
                .enforce(Endpoint::Event, &e.to_string(), Some(AUTH))
                .unwrap();
            forwarded.extend(
                alone
                    .body
                    .map(|b| serde_json::from_slice::<Value>(&b).unwrap()),
            );
            counts.forwarded += alone.counts.forwarded;
            counts.dropped += alone.counts.dropped;
            counts.corrected += alone.counts.corrected;
            counts.kept += alone.counts.kept;
        }
        assert_eq!(out["batch"], Value::Array(forwarded));
        assert_eq!(enforced.counts, counts);
        assert_eq!(counts.dropped, 1);
        assert_eq!(out["batch"][4]["integrations"]["GA4"], false, "own refusal");
        assert_eq!(out["batch"][5]["integrations"]["GA4"], true, "shared again");
    }

    #[test]
    fn a_batch_of_dropped_events_sends_nothing() {
        let f = fixture(&[("OPT_IN", "false")], ANALYTICS_ONLY);
        let enforced = f
            .enforce(
                Endpoint::Batch,
                &batch(vec![event(json!({})), event(json!({}))], json!({})),
                None,
            )
            .unwrap();
        assert_eq!(
            enforced,
            Enforced {
                body: None,
                counts: Counts {
                    dropped: 2,
                    ..Counts::default()
                }
            }
        );
    }

    /// The counts of one single event under `ANALYTICS_ONLY` (GA4 and Odd
    /// are on the list; C0002 granted, C0004 refused).
    fn counts_of(f: &Fixture, extra: Value) -> Counts {
        let body = event(extra).to_string();
        f.enforce(Endpoint::Event, &body, Some(AUTH))
            .unwrap()
            .counts
    }

    #[test]
    fn corrected_grants_are_destination_keys_stamped_on_that_the_edge_switched_off() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let tampered = json!({"integrations": {
            "All": true, "GA4": true, "Ads": true, "Odd": {"opt": 1},
            "Unlisted": true, "Segment.io": true
        }});
        // Ads (C0004 refused), Odd and Unlisted (ALL_DEFAULT false); `All`
        // and `Segment.io` are not destinations; GA4 is allowed.
        assert_eq!(
            counts_of(&f, tampered),
            Counts {
                forwarded: 1,
                corrected: 3,
                ..Counts::default()
            }
        );
        let honest = json!({"integrations": {"GA4": true, "Ads": false, "Odd": false}});
        assert_eq!(counts_of(&f, honest).corrected, 0);
        assert_eq!(
            counts_of(&f, json!({})),
            counts_of(&f, json!({"integrations": null}))
        );
    }

    #[test]
    fn kept_refusals_are_those_the_cookie_alone_would_have_granted() {
        let f = fixture(&[], ANALYTICS_ONLY);
        // GA4 is granted by the cookie: its `false` mattered. Ads is refused
        // by the cookie anyway.
        let keys = json!({"integrations": {"GA4": false, "Ads": false, "All": false}});
        assert_eq!(counts_of(&f, keys).kept, 1);
        // C0002 refused on the event (twice, one group); C0004 and the strict
        // group do not count. GA4's `false` follows from C0002: not counted again.
        let groups = json!({
            "integrations": {"GA4": false},
            "context": {"consent": {
                "categoryPreferences": {"C0001": false, "C0002": false, "C0004": false},
                "onetrust": "C0002:0"
            }}
        });
        assert_eq!(
            counts_of(&f, groups),
            Counts {
                forwarded: 1,
                kept: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn dropped_events_count_nothing_but_the_drop() {
        let f = fixture(&[("COLLECTION_GROUP", "C0004")], ANALYTICS_ONLY);
        let tampered = json!({"integrations": {"Ads": true, "GA4": false}});
        assert_eq!(
            counts_of(&f, tampered),
            Counts {
                dropped: 1,
                ..Counts::default()
            }
        );
        // A batch whose every event is dropped: its envelope's corrections went nowhere.
        let body = batch(
            vec![event(json!({}))],
            json!({"integrations": {"Ads": true}}),
        );
        let counts = f.enforce(Endpoint::Batch, &body, None).unwrap().counts;
        assert_eq!(counts.corrected, 0);
    }

    #[test]
    fn batch_counts_sum_over_events_and_the_envelope_counts_once() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let body = batch(
            vec![
                event(json!({"integrations": {"Ads": true}})),
                event(json!({"integrations": {"Ads": true, "Odd": true, "GA4": false}})),
                event(json!({"integrations": {"Segment.io": false, "Ads": true}})),
            ],
            json!({"integrations": {"Ads": true}}),
        );
        let enforced = f.enforce(Endpoint::Batch, &body, None).unwrap();
        assert_eq!(
            enforced.counts,
            Counts {
                forwarded: 2,
                dropped: 1,
                corrected: 4,
                kept: 1,
            }
        );
        // An envelope's group refusal narrows, and counts for, each event.
        let refusing = batch(
            vec![event(json!({})), event(json!({}))],
            json!({"context": {"consent": {"onetrust": "C0002:0"}}}),
        );
        let counts = f.enforce(Endpoint::Batch, &refusing, None).unwrap().counts;
        assert_eq!((counts.forwarded, counts.kept), (2, 2));
        // The same enforcer twice: each request counts its own.
        let parsed = parse(&f.config, Endpoint::Batch, body.as_bytes(), None).unwrap();
        let enforcer = Enforcer::new(&f.config, &f.set, &f.state, None);
        let again = parse(&f.config, Endpoint::Batch, body.as_bytes(), None).unwrap();
        assert_eq!(enforcer.enforce(parsed).counts, enforced.counts);
        assert_eq!(enforcer.enforce(again).counts, enforced.counts);
    }

    #[test]
    fn envelope_consent_is_corrected_and_its_refusals_apply_to_every_event() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let body = batch(
            vec![event(json!({}))],
            json!({"integrations": {"All": true, "Ads": true}, "context": {"consent": {"categoryPreferences": {"C0002": false, "C0004": true}}, "app": "x"}}),
        );
        let out: Value = serde_json::from_slice(
            &f.enforce(Endpoint::Batch, &body, None)
                .unwrap()
                .body
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            out["integrations"],
            json!({"All": false, "Ads": false}),
            "corrected, not extended"
        );
        assert_eq!(
            out["context"],
            json!({"consent": {"categoryPreferences": {"C0002": false, "C0004": false}}, "app": "x"})
        );
        assert_eq!(
            out["batch"][0]["integrations"]["GA4"], false,
            "the envelope refused C0002"
        );
    }

    #[test]
    fn client_ip_is_added_only_when_missing() {
        let f = fixture(
            &[("MODE", "integrations"), ("RECEIPTS", "off")],
            ANALYTICS_ONLY,
        );
        let send = |e: Value| -> Value {
            let body = f
                .enforce_ip(Endpoint::Event, &e.to_string(), None, Some("203.0.113.9"))
                .unwrap()
                .body
                .unwrap();
            serde_json::from_slice(&body).unwrap()
        };
        assert_eq!(
            send(event(json!({})))["context"],
            json!({"ip": "203.0.113.9"})
        );
        assert_eq!(
            send(event(json!({"context": {"ip": "198.51.100.1"}})))["context"]["ip"],
            "198.51.100.1"
        );
    }

    #[test]
    fn duplicate_keys_cannot_smuggle_consent() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let body = r#"{"writeKey":"wk_live","integrations":{"Ads":false},"integrations":{"Ads":true},"context":{"consent":{"categoryPreferences":{"C0004":true,"C0004":true}}}}"#;
        let out = String::from_utf8(
            f.enforce(Endpoint::Event, body, None)
                .unwrap()
                .body
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out.matches("\"integrations\"").count(), 1, "{out}");
        let value: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["integrations"]["Ads"], false);
        assert_eq!(
            value["context"]["consent"]["categoryPreferences"]["C0004"],
            false
        );
    }

    #[test]
    fn rewriting_is_idempotent() {
        for mode in ["both", "integrations", "context"] {
            let f = fixture(&[("MODE", mode)], ANALYTICS_ONLY);
            let first = f
                .enforce_ip(
                    Endpoint::Event,
                    &event(json!({"integrations": {"Ads": true}, "context": {"consent": {"receipt": {"v": 0}}}}))
                        .to_string(),
                    None,
                    Some("192.0.2.1"),
                )
                .unwrap()
                .body
                .unwrap();
            let second = f
                .enforce_ip(
                    Endpoint::Event,
                    std::str::from_utf8(&first).unwrap(),
                    None,
                    Some("192.0.2.1"),
                )
                .unwrap()
                .body
                .unwrap();
            assert_eq!(
                String::from_utf8(first).unwrap(),
                String::from_utf8(second).unwrap(),
                "{mode}"
            );
        }
    }

    #[test]
    fn every_forwarded_event_carries_the_edges_receipt_in_every_mode() {
        for mode in ["both", "context", "integrations"] {
            let f = fixture(&[("MODE", mode)], ANALYTICS_ONLY);
            let out = f
                .track(event(json!({"context": {"page": {"path": "/"}}})))
                .unwrap();
            assert_eq!(out["context"]["consent"]["receipt"], f.receipt(), "{mode}");
            assert_eq!(out["context"]["page"], json!({"path": "/"}), "{mode}");
            let body = batch(
                vec![
                    event(json!({})),
                    event(json!({"context": {"consent": null, "app": {"name": "x"}}})),
                ],
                json!({}),
            );
            let out = f.batch_out(&body);
            for e in out["batch"].as_array().unwrap() {
                assert_eq!(e["context"]["consent"]["receipt"], f.receipt(), "{mode}");
            }
            assert_eq!(out["batch"][1]["context"]["app"], json!({"name": "x"}));
            assert!(
                out.get("context").is_none(),
                "{mode}: the envelope is not extended"
            );
        }
    }

    #[test]
    fn the_receipt_follows_the_consent_fields_as_rendered_once() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let out = f
            .enforce(Endpoint::Event, &event(json!({})).to_string(), None)
            .unwrap()
            .body
            .unwrap();
        let expected = format!(
            r#""onetrust":"C0001:1,C0002:1,C0004:0","receipt":{{"v":1,"source":"cookie","decidedAt":null,"gpc":false,"country":null,"rules":"{}"}}}}"#,
            f.set.rules().digest()
        );
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains(&expected), "{out}");
    }

    #[test]
    fn a_stamped_receipt_is_replaced_by_the_edges() {
        let forged = json!({"v": 1, "source": "choice", "decidedAt": "2020-01-01T00:00:00.000Z",
                            "gpc": false, "country": "US", "rules": "0000000000000000", "extra": true});
        for mode in ["both", "context", "integrations"] {
            let f = fixture(&[("MODE", mode)], ANALYTICS_ONLY);
            for stamped in [forged.clone(), json!("yes"), Value::Null, json!([1])] {
                let out = f
                    .track(event(
                        json!({"context": {"consent": {"receipt": stamped.clone(), "other": 1}}}),
                    ))
                    .unwrap();
                let consent = &out["context"]["consent"];
                assert_eq!(consent["receipt"], f.receipt(), "{mode}: {stamped}");
                assert_eq!(consent["other"], 1, "{mode}");
            }
            let body = batch(
                vec![
                    event(json!({"context": {"consent": {"receipt": forged.clone()}}})),
                    event(json!({})),
                ],
                json!({"context": {"consent": {"receipt": forged.clone()}}}),
            );
            let out = f.batch_out(&body);
            assert_eq!(
                out["context"]["consent"]["receipt"],
                f.receipt(),
                "{mode}: the envelope's is corrected"
            );
            for e in out["batch"].as_array().unwrap() {
                assert_eq!(e["context"]["consent"]["receipt"], f.receipt(), "{mode}");
            }
            let first = serde_json::to_string(&out).unwrap();
            let again = f.batch_out(&first);
            assert_eq!(again, out, "{mode}: idempotent");
        }
    }

    #[test]
    fn receipts_off_stamps_none_and_keeps_none_stamped() {
        let f = fixture(&[("RECEIPTS", "off")], ANALYTICS_ONLY);
        let out = f
            .track(event(
                json!({"context": {"consent": {"receipt": {"v": 1, "source": "choice"}}}}),
            ))
            .unwrap();
        assert!(out["context"]["consent"].get("receipt").is_none(), "{out}");
        assert_eq!(
            out["context"]["consent"]["onetrust"],
            "C0001:1,C0002:1,C0004:0"
        );
        let out = f.track(event(json!({}))).unwrap();
        assert!(out["context"]["consent"].get("receipt").is_none(), "{out}");
    }

    #[test]
    fn with_id_the_receipt_names_the_consent_record() {
        let cookie = format!("{ANALYTICS_ONLY}&interactionCount=2&consentId=0f6e-42; OptanonAlertBoxClosed=2026-11-23T09:00:00.000Z");
        let f = fixture(&[("RECEIPTS", "with-id")], &cookie);
        let out = f.track(event(json!({}))).unwrap();
        assert_eq!(
            out["context"]["consent"]["receipt"],
            json!({"v": 1, "source": "choice", "decidedAt": "2026-11-23T09:00:00.000Z", "gpc": false,
                   "country": null, "rules": f.set.rules().digest().to_string(), "consentId": "0f6e-42"})
        );
    }

    #[test]
    fn a_batch_rewritten_twice_is_unchanged() {
        // The event's refusal of the strict group does not hold, so it is
        // decided on its own the first time and with the envelope's decisions
        // the second: both must list the stamped groups in the same order.
        let f = fixture(&[], ANALYTICS_ONLY);
        let body = batch(
            vec![event(
                json!({"context": {"consent": {"onetrust": "C0001:0,C0009:1"}}}),
            )],
            json!({"context": {"consent": {"categoryPreferences": {"C0008": false, "C0009": false}}}}),
        );
        let rewrite = |body: &str| {
            let out = f
                .enforce(Endpoint::Batch, body, None)
                .unwrap()
                .body
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        let first = rewrite(&body);
        assert!(
            first.contains(r#""onetrust":"C0001:1,C0002:1,C0004:0,C0008:0,C0009:0""#),
            "{first}"
        );
        assert_eq!(rewrite(&first), first);
    }

    #[test]
    fn refusals_in_the_documented_order() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let status = |endpoint, body: &str, auth| {
            f.enforce(endpoint, body, auth)
                .map(|_| 200)
                .unwrap_or_else(|r| r.status())
        };
        let big_event =
            event(json!({"properties": {"pad": "x".repeat(MAX_EVENT_BYTES)}})).to_string();
        assert_eq!(status(Endpoint::Event, &big_event, Some(AUTH)), 413);
        assert_eq!(
            status(
                Endpoint::Batch,
                &batch(
                    vec![event(json!({})), serde_json::from_str(&big_event).unwrap()],
                    json!({})
                ),
                None
            ),
            413
        );
        let huge: Vec<Value> = (0..20)
            .map(|_| event(json!({"properties": {"pad": "x".repeat(30_000)}})))
            .collect();
        assert_eq!(status(Endpoint::Batch, &batch(huge, json!({})), None), 413);
        assert_eq!(
            status(
                Endpoint::Event,
                &format!("{}{{", "x".repeat(40_000)),
                Some("Basic bm9wZTo=")
            ),
            413,
            "413 before 400"
        );
        assert_eq!(
            status(Endpoint::Event, "{not json", Some("Basic bm9wZTo=")),
            400,
            "400 before 403"
        );
        assert_eq!(status(Endpoint::Event, "[1]", None), 400);
        assert_eq!(
            status(
                Endpoint::Event,
                r#"{"writeKey":"wk_live","context":"x"}"#,
                None
            ),
            400
        );
        assert_eq!(
            status(
                Endpoint::Event,
                r#"{"writeKey":"wk_live","integrations":[]}"#,
                None
            ),
            400
        );
        assert_eq!(
            status(
                Endpoint::Event,
                r#"{"writeKey":"wk_live","context":{"consent":{"categoryPreferences":1}}}"#,
                None
            ),
            400
        );
        assert_eq!(
            status(
                Endpoint::Batch,
                r#"{"batch":{"a":1},"writeKey":"wk_live"}"#,
                None
            ),
            400
        );
        assert_eq!(
            status(Endpoint::Batch, r#"{"writeKey":"wk_live"}"#, None),
            400
        );
        assert_eq!(
            status(
                Endpoint::Batch,
                r#"{"batch":[1],"writeKey":"wk_live"}"#,
                None
            ),
            400
        );
        assert_eq!(status(Endpoint::Event, "\u{0}", None), 400);
        let invalid_utf8 = parse(&f.config, Endpoint::Event, b"{\"a\":\"\xff\"}", None);
        assert_eq!(invalid_utf8.err(), Some(Refusal::NotUtf8));
    }

    #[test]
    fn only_configured_write_keys_are_forwarded() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let status = |body: &str, auth| {
            f.enforce(Endpoint::Event, body, auth)
                .map(|_| 200)
                .unwrap_or_else(|r| r.status())
        };
        assert_eq!(status(r#"{"type":"track"}"#, None), 403, "no key at all");
        assert_eq!(status(r#"{"writeKey":"stranger"}"#, None), 403);
        assert_eq!(status(r#"{"writeKey":7}"#, None), 403);
        assert_eq!(
            status(r#"{"type":"track"}"#, Some(AUTH)),
            200,
            "Basic auth alone"
        );
        assert_eq!(
            status(r#"{"writeKey":"other_key"}"#, Some(AUTH)),
            403,
            "body and auth disagree"
        );
        assert_eq!(
            status(r#"{"writeKey":"wk_live"}"#, Some("Bearer wk_live")),
            403
        );
        assert_eq!(status(r#"{"writeKey":"wk_live"}"#, Some("Basic !!!")), 403);
        let mixed = batch(
            vec![event(json!({})), event(json!({"writeKey": "other_key"}))],
            json!({}),
        );
        assert_eq!(
            f.enforce(Endpoint::Batch, &mixed, None).unwrap_err(),
            Refusal::WriteKeyMismatch
        );
    }

    #[test]
    fn metrics_are_forwarded_unchanged() {
        let f = fixture(&[("OPT_IN", "false")], "");
        let body =
            r#"{"series":[{"type":"Counter","metric":"analytics_js.invoke","value":1,"tags":{}}]}"#;
        let enforced = f.enforce(Endpoint::Metrics, body, None).unwrap();
        assert_eq!(enforced.body.unwrap(), body.as_bytes());
        assert_eq!(
            f.enforce(Endpoint::Metrics, "nope", None)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn basic_auth_decodes_analytics_js_headers() {
        assert_eq!(
            basic_auth_user("Basic d2tfbGl2ZTo=").as_deref(),
            Some("wk_live")
        );
        assert_eq!(
            basic_auth_user("basic d2tfbGl2ZQ").as_deref(),
            Some("wk_live")
        );
        assert_eq!(basic_auth_user("Basic"), None);
        assert_eq!(basic_auth_user("Basic ***"), None);
    }

    #[test]
    fn endpoints_short_and_long() {
        for name in [
            "t", "p", "i", "g", "a", "s", "track", "page", "identify", "group", "alias", "screen",
        ] {
            assert_eq!(
                Endpoint::from_segment(name),
                Some(Endpoint::Event),
                "{name}"
            );
        }
        assert_eq!(Endpoint::from_segment("b"), Some(Endpoint::Batch));
        assert_eq!(Endpoint::from_segment("batch"), Some(Endpoint::Batch));
        assert_eq!(Endpoint::from_segment("m"), Some(Endpoint::Metrics));
        assert_eq!(Endpoint::from_segment("x"), None);
    }

    #[test]
    fn an_event_naming_too_many_groups_is_refused() {
        let f = fixture(&[], ANALYTICS_ONLY);
        let prefs: serde_json::Map<String, Value> = (0..=MAX_STAMPED_GROUPS)
            .map(|i| (format!("G{i}"), json!(true)))
            .collect();
        let body =
            event(json!({"context": {"consent": {"categoryPreferences": prefs}}})).to_string();
        assert_eq!(
            f.enforce(Endpoint::Event, &body, None).unwrap_err(),
            Refusal::TooManyGroups
        );
        let prefs: serde_json::Map<String, Value> = (0..MAX_STAMPED_GROUPS - 10)
            .map(|i| (format!("G{i}"), json!(false)))
            .collect();
        let body =
            event(json!({"context": {"consent": {"categoryPreferences": prefs}}})).to_string();
        assert!(f.enforce(Endpoint::Event, &body, None).is_ok());
    }

    /// Found by fuzzing: a group id that carries the string's own separators
    /// must not let the groups string claim a grant.
    #[test]
    fn group_ids_cannot_inject_grants_into_the_groups_string() {
        for mode in ["both", "context", "integrations"] {
            let f = fixture(&[("MODE", mode)], ANALYTICS_ONLY);
            let injected = event(json!({"context": {"consent": {
                "categoryPreferences": {"C0004:1,X": true, " C0009": true},
                "onetrust": "C0004:1:1,C0005:1 ,C0006 :1"
            }}}));
            let body = f
                .enforce(Endpoint::Event, &injected.to_string(), None)
                .unwrap()
                .body
                .unwrap();
            let out: Value = serde_json::from_slice(&body).unwrap();
            let onetrust = out["context"]["consent"]["onetrust"].as_str().unwrap();
            for grant in ["C0004:1", "C0005:1", "C0006:1", "C0009:1"] {
                assert!(!onetrust.contains(grant), "{mode}: {onetrust}");
            }
            let again = f
                .enforce(Endpoint::Event, std::str::from_utf8(&body).unwrap(), None)
                .unwrap()
                .body
                .unwrap();
            assert_eq!(body, again, "{mode}: idempotent");
        }
    }
}
