//! Editing JSON without re-serializing it. An object is read in one pass as
//! its keys and the raw text of each value; the few nested objects the Worker
//! edits (named by a [`Shape`]) are read in the same pass. Only the fields that
//! change are rebuilt; everything else goes out byte for byte as it came in.
//!
//! The scanner validates JSON as strictly as `serde_json` does (RFC 8259
//! grammar, at most [`MAX_DEPTH`] levels) — it just does not build values —
//! with one deliberate difference: a lone surrogate escape (`"\ud83d"`) is
//! accepted, as `JSON.parse` and Segment's API accept it. analytics.js sends
//! one for a string cut mid-emoji, and refusing it would lose the event.

use rustc_hash::{FxBuildHasher, FxHashMap};
use std::borrow::Cow;
use std::collections::hash_map::Entry as HashEntry;
use std::fmt;
use std::hash::BuildHasher;

/// Nesting deeper than this is refused (as `serde_json` does).
pub const MAX_DEPTH: usize = 128;

/// Which values below an object to read as objects (or arrays of objects) in
/// the same pass; every other value is validated and kept as raw text.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Keep as raw text.
    Raw,
    /// When it is an object: read its entries, these keys with these shapes.
    Object(&'static [(&'static str, Shape)]),
    /// When it is an array: read each element with this shape.
    Array(&'static Shape),
    /// As `Object`, for a value the objects of one array usually repeat byte
    /// for byte (analytics.js stamps every event of a page with the same
    /// `integrations`): text identical to the last one read under this shape
    /// is not read again; its reading is copied.
    Repeated(&'static [(&'static str, Shape)]),
}

/// Why text is not the JSON object that was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Syntax {
        at: usize,
        expected: &'static str,
    },
    TooDeep {
        at: usize,
    },
    /// Valid JSON, but not an object.
    NotAnObject,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Syntax { at, expected } => write!(f, "expected {expected} at byte {at}"),
            ParseError::TooDeep { at } => {
                write!(f, "nested deeper than {MAX_DEPTH} levels at byte {at}")
            }
            ParseError::NotAnObject => write!(f, "not a JSON object"),
        }
    }
}

/// A JSON object as entries in document order. A key that appears twice keeps
/// its first position and its last value, as `JSON.parse` does, so what the
/// Worker rewrites is what the next reader sees.
///
/// Entries are plain spans of the text (no drop glue, one allocation per
/// object): the rare escaped key and the few values read nested sit in side
/// tables, found by index.
#[derive(Debug, Default, Clone)]
pub struct RawObject<'a> {
    slots: Vec<Slot<'a>>,
    /// Keys whose escapes made them differ from the text between the quotes.
    unescaped: Vec<Box<str>>,
    /// Values read as objects or arrays (their shape said so).
    nested: Vec<Nested<'a>>,
}

/// One `"key": value` of an object, as spans of the text.
#[derive(Debug, Clone, Copy)]
struct Slot<'a> {
    /// From the key's opening quote to the value's last byte: valid JSON
    /// for the entry, copied out as is when it is kept.
    text: &'a str,
    /// Where the key literal (quotes included) ends within `text`.
    key_end: usize,
    /// Where the value starts within `text`.
    value_at: usize,
    /// 1 + the index of the unescaped key, or 0 when it has no escapes.
    unescaped: usize,
    /// 1 + the index of the value read nested, or 0.
    nested: usize,
}

/// One entry of a [`RawObject`], as iteration yields it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'o, 'a> {
    key: &'o str,
    slot: &'o Slot<'a>,
}

#[derive(Debug, Clone)]
enum Nested<'a> {
    Object(RawObject<'a>),
    Array(Vec<Element<'a>>),
}

/// An element of an array read with [`Shape::Array`].
#[derive(Debug, Clone)]
pub struct Element<'a> {
    /// The element's text.
    pub raw: &'a str,
    /// The element read as an object, if it is one.
    pub object: Option<RawObject<'a>>,
}

impl<'o, 'a> Entry<'o, 'a> {
    pub fn key(self) -> &'o str {
        self.key
    }

    /// The value's text.
    pub fn value(self) -> &'a str {
        slice(self.slot.text, self.slot.value_at, self.slot.text.len())
    }

    /// The key as written, quotes included: valid JSON to copy out as is.
    fn literal(self) -> &'a str {
        slice(self.slot.text, 0, self.slot.key_end)
    }
}

impl<'a> Slot<'a> {
    /// The key between the quotes, as written.
    fn written_key(&self) -> &'a str {
        slice(self.text, 1, self.key_end - 1)
    }
}

/// `text[start..end]` where both ends are known to sit next to an ASCII byte
/// of JSON's grammar (a quote, a bracket, a colon, a value's first or last
/// byte), so they are char boundaries.
#[inline]
fn slice(text: &str, start: usize, end: usize) -> &str {
    debug_assert!(text.is_char_boundary(start) && text.is_char_boundary(end) && start <= end);
    // SAFETY: the scanner only records positions next to ASCII bytes of the
    // JSON grammar in a `str`, and every caller passes such positions: each
    // is a char boundary within `text` (checked in debug builds, and so by
    // every test and fuzz target).
    unsafe { text.get_unchecked(start..end) }
}

impl<'a> RawObject<'a> {
    /// Reads `text` as an object, every value raw.
    pub fn parse(text: &'a str) -> Result<RawObject<'a>, ParseError> {
        RawObject::parse_shaped(text, &[])
    }

    /// Reads `text` as an object, the keys in `fields` with their shapes.
    pub fn parse_shaped(
        text: &'a str,
        fields: &'static [(&'static str, Shape)],
    ) -> Result<RawObject<'a>, ParseError> {
        let mut s = Scanner {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            scratch: Vec::new(),
            repeated: Vec::new(),
        };
        s.ws();
        if s.peek() != Some(b'{') {
            // Tell "valid JSON of another type" from "not JSON".
            s.skip_value(0)?;
            s.end()?;
            return Err(ParseError::NotAnObject);
        }
        let object = s.object(fields, 1)?;
        s.end()?;
        Ok(object)
    }

    /// The raw text of the value at `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.entry(key).map(Entry::value)
    }

    /// The value at `key`, when it was read as an object.
    pub fn object(&self, key: &str) -> Option<&RawObject<'a>> {
        match self.nested_at(key)? {
            Nested::Object(object) => Some(object),
            Nested::Array(_) => None,
        }
    }

    /// The elements at `key`, when it was read as an array.
    pub fn array(&self, key: &str) -> Option<&[Element<'a>]> {
        match self.nested_at(key)? {
            Nested::Array(elements) => Some(elements),
            Nested::Object(_) => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Entry<'_, 'a>> {
        self.slots.iter().map(|slot| Entry {
            key: self.key_of(slot),
            slot,
        })
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn key_of(&self, slot: &Slot<'a>) -> &str {
        match slot.unescaped {
            0 => slot.written_key(),
            n => &self.unescaped[n - 1],
        }
    }

    fn entry(&self, key: &str) -> Option<Entry<'_, 'a>> {
        self.iter().find(|e| same(e.key.as_bytes(), key.as_bytes()))
    }

    fn nested_at(&self, key: &str) -> Option<&Nested<'a>> {
        match self.entry(key)?.slot.nested {
            0 => None,
            n => self.nested.get(n - 1),
        }
    }

    /// Applies duplicate keys: first position, last value (written as the
    /// last one was: the same key either way).
    fn dedupe(&mut self) {
        let repeats = self.repeats();
        if repeats.is_empty() {
            return;
        }
        let mut keep = vec![true; self.slots.len()];
        for &(first, repeat) in &repeats {
            keep[repeat] = false;
            self.slots[first] = self.slots[repeat];
        }
        let mut i = 0;
        self.slots.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }

    /// Each entry whose key an earlier one has, with that earlier one. Up to
    /// [`FILTERED`] entries, a filter of key hashes on the stack sends only
    /// likely repeats to an exact look back: the usual object, with none,
    /// costs a hash per key and no allocation.
    fn repeats(&self) -> Vec<(usize, usize)> {
        let keys = self.slots.iter().map(|slot| self.key_of(slot));
        if self.slots.len() > FILTERED {
            let mut first: FxHashMap<&str, usize> =
                FxHashMap::with_capacity_and_hasher(self.slots.len(), Default::default());
            return keys
                .enumerate()
                .filter_map(|(i, key)| match first.entry(key) {
                    HashEntry::Occupied(at) => Some((*at.get(), i)),
                    HashEntry::Vacant(slot) => {
                        slot.insert(i);
                        None
                    }
                })
                .collect();
        }
        let mut seen = [0u64; FILTER_BITS / 64];
        let mut repeats = Vec::new();
        for (i, key) in keys.enumerate() {
            let bit = FxBuildHasher.hash_one(key) as usize % FILTER_BITS;
            let (word, mask) = (bit / 64, 1u64 << (bit % 64));
            if seen[word] & mask != 0 {
                let earlier = self.slots[..i].iter().position(|s| self.key_of(s) == key);
                repeats.extend(earlier.map(|first| (first, i)));
            }
            seen[word] |= mask;
        }
        repeats
    }
}

/// Objects up to this many entries are checked for repeated keys with a
/// filter (a look back costs at most this many comparisons); larger ones
/// with a hash map.
const FILTERED: usize = 256;
const FILTER_BITS: usize = 4096;

/// Checks that `text` is one JSON value.
pub fn validate(text: &str) -> Result<(), ParseError> {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        scratch: Vec::new(),
        repeated: Vec::new(),
    };
    s.skip_value(0)?;
    s.end()
}

/// The value of a JSON string literal (`"a\nb"` → `a⏎b`); `None` if `raw` is
/// not a string.
pub fn string_value(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// Where the first byte that ends a plain run inside a string sits: a quote,
/// a backslash or a control character. Eight bytes at a time: strings are
/// most of an event's bytes.
fn special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // A lane's high bit is set where the byte is `"`, `\` or below 0x20;
        // bytes of 0x80 and up (UTF-8) are masked out by `!word`.
        let quote = (word ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
        let backslash = (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
        let control = word.wrapping_sub(ONES * 0x20);
        let hits = (quote | backslash | control) & !word & HIGHS;
        if hits != 0 {
            // Borrows can only set lanes above a true hit, so the lowest is exact.
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|n| at + n)
}

/// `a == b`, eight bytes at a time. In wasm, `==` on strings calls a
/// byte-by-byte `memcmp`; keys are compared for every `integrations` entry.
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    match a.len() {
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        n => {
            // Whole words, then the last eight bytes (overlapping the last word).
            (0..n / 8).all(|i| word(a, i * 8) == word(b, i * 8)) && word(a, n - 8) == word(b, n - 8)
        }
    }
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// The entries of the objects being read, innermost last: each object
    /// takes its own out in one exact allocation when it closes.
    scratch: Vec<Slot<'a>>,
    /// The last object read under each [`Shape::Repeated`] met so far.
    repeated: Vec<Repeated<'a>>,
}

/// An object read under a [`Shape::Repeated`], and what it was read as.
struct Repeated<'a> {
    text: &'a str,
    fields: &'static [(&'static str, Shape)],
    depth: usize,
    object: RawObject<'a>,
}

impl<'a> Scanner<'a> {
    fn error(&self, expected: &'static str) -> ParseError {
        ParseError::Syntax {
            at: self.pos,
            expected,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8, expected: &'static str) -> Result<(), ParseError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn end(&mut self) -> Result<(), ParseError> {
        self.ws();
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(self.error("the end of the input"))
        }
    }

    /// A string at `pos` (on its quote): its span, quotes included, and
    /// whether it has escapes.
    fn string(&mut self) -> Result<(usize, usize, bool), ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut escaped = false;
        loop {
            let Some(n) = special(&self.bytes[self.pos..]) else {
                self.pos = self.bytes.len();
                return Err(self.error("the end of a string"));
            };
            self.pos += n;
            match self.bytes[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Ok((start, self.pos, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            let hex = self.bytes.get(self.pos + 1..self.pos + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.error("four hex digits after \\u"));
                            }
                            self.pos += 5;
                        }
                        _ => return Err(self.error("an escape sequence")),
                    }
                }
                _ => return Err(self.error("no control character in a string")),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), ParseError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("a digit after '.'"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("a digit in the exponent"));
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8], expected: &'static str) -> Result<(), ParseError> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    /// A string, number, `true`, `false` or `null` at `pos`.
    fn scalar(&mut self) -> Result<(), ParseError> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal(b"true", "a value"),
            Some(b'f') => self.literal(b"false", "a value"),
            Some(b'n') => self.literal(b"null", "a value"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("a value")),
        }
    }

    /// A key and its colon, at a quote.
    fn key(&mut self) -> Result<(usize, usize, bool), ParseError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("a key"));
        }
        let span = self.string()?;
        self.ws();
        self.eat(b':', "':'")?;
        self.ws();
        Ok(span)
    }

    /// Skips one value of any kind, validating it. Iterative, so hostile
    /// nesting costs no stack; `depth` is how deep the value already sits.
    fn skip_value(&mut self, depth: usize) -> Result<(), ParseError> {
        self.ws();
        // Most values are scalars: no stack of open containers for them.
        if !matches!(self.peek(), Some(b'{' | b'[')) {
            return self.scalar();
        }
        let mut open = [0u8; MAX_DEPTH];
        let mut len = 0;
        loop {
            self.ws();
            match self.peek() {
                Some(bracket @ (b'{' | b'[')) => {
                    if depth + len >= MAX_DEPTH {
                        return Err(ParseError::TooDeep { at: self.pos });
                    }
                    self.pos += 1;
                    self.ws();
                    let close = if bracket == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                    } else {
                        open[len] = bracket;
                        len += 1;
                        if bracket == b'{' {
                            self.key()?;
                        }
                        continue;
                    }
                }
                _ => self.scalar()?,
            }
            // A value is complete: close what it completes, or move to the next one.
            loop {
                if len == 0 {
                    return Ok(());
                }
                self.ws();
                let container = open[len - 1];
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if container == b'{' {
                            self.ws();
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if container == b'{' => {
                        self.pos += 1;
                        len -= 1;
                    }
                    Some(b']') if container == b'[' => {
                        self.pos += 1;
                        len -= 1;
                    }
                    _ => {
                        return Err(self.error(if container == b'{' {
                            "',' or '}'"
                        } else {
                            "',' or ']'"
                        }))
                    }
                }
            }
        }
    }

    /// A value with a shape, at `pos`.
    fn shaped(&mut self, shape: Shape, depth: usize) -> Result<Option<Nested<'a>>, ParseError> {
        match (shape, self.peek()) {
            (Shape::Object(fields), Some(b'{')) => {
                Ok(Some(Nested::Object(self.object(fields, depth + 1)?)))
            }
            (Shape::Array(element), Some(b'[')) => {
                Ok(Some(Nested::Array(self.array(*element, depth + 1)?)))
            }
            (Shape::Repeated(fields), Some(b'{')) => {
                Ok(Some(Nested::Object(self.repeated(fields, depth + 1)?)))
            }
            _ => {
                self.skip_value(depth)?;
                Ok(None)
            }
        }
    }

    /// An object at `pos` read under a [`Shape::Repeated`]. The same bytes
    /// read under the same shape at the same depth are the same object, read
    /// to the same end: the scanner looks at nothing else.
    fn repeated(
        &mut self,
        fields: &'static [(&'static str, Shape)],
        depth: usize,
    ) -> Result<RawObject<'a>, ParseError> {
        let at = self
            .repeated
            .iter()
            .position(|r| std::ptr::eq(r.fields, fields) && r.depth == depth);
        if let Some(last) = at.map(|at| &self.repeated[at]) {
            let here = self.bytes.get(self.pos..self.pos + last.text.len());
            if here.is_some_and(|here| same(here, last.text.as_bytes())) {
                self.pos += last.text.len();
                return Ok(last.object.clone());
            }
        }
        let start = self.pos;
        let object = self.object(fields, depth)?;
        let read = Repeated {
            text: slice(self.text, start, self.pos),
            fields,
            depth,
            object: object.clone(),
        };
        match at {
            Some(at) => self.repeated[at] = read,
            None => self.repeated.push(read),
        }
        Ok(object)
    }

    /// An object at `pos` (on its brace), `depth` levels deep.
    fn object(
        &mut self,
        fields: &'static [(&'static str, Shape)],
        depth: usize,
    ) -> Result<RawObject<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep { at: self.pos });
        }
        self.pos += 1;
        let mut object = RawObject::default();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(object);
        }
        let first = self.scratch.len();
        loop {
            let (start, end, escaped) = self.key()?;
            let unescaped = if escaped {
                let key = serde_json::from_str::<String>(&self.text[start..end]).map_err(|_| {
                    ParseError::Syntax {
                        at: start,
                        expected: "a valid key",
                    }
                })?;
                object.unescaped.push(key.into_boxed_str());
                object.unescaped.len()
            } else {
                0
            };
            let key = match object.unescaped.last() {
                Some(key) if escaped => key,
                _ => slice(self.text, start + 1, end - 1),
            };
            let shape = fields
                .iter()
                .find(|(name, _)| same(name.as_bytes(), key.as_bytes()))
                .map_or(Shape::Raw, |&(_, shape)| shape);
            let value_at = self.pos;
            let nested = match self.shaped(shape, depth)? {
                Some(nested) => {
                    object.nested.push(nested);
                    object.nested.len()
                }
                None => 0,
            };
            self.scratch.push(Slot {
                text: slice(self.text, start, self.pos),
                key_end: end - start,
                value_at: value_at - start,
                unescaped,
                nested,
            });
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.error("',' or '}'")),
            }
        }
        object.slots = self.scratch.split_off(first);
        object.dedupe();
        Ok(object)
    }

    fn array(&mut self, element: Shape, depth: usize) -> Result<Vec<Element<'a>>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep { at: self.pos });
        }
        self.pos += 1;
        let mut elements = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(elements);
        }
        loop {
            self.ws();
            let start = self.pos;
            let object = match self.shaped(element, depth)? {
                Some(Nested::Object(object)) => Some(object),
                _ => None,
            };
            elements.push(Element {
                raw: &self.text[start..self.pos],
                object,
            });
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(elements);
                }
                _ => return Err(self.error("',' or ']'")),
            }
        }
    }
}

/// Writes an object field by field into a byte buffer.
pub struct ObjectWriter<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> ObjectWriter<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, empty: true }
    }

    fn separate(&mut self) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
    }

    /// Starts a field; the caller writes its value into the returned buffer.
    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        self.separate();
        write_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    /// Starts a field named as `entry` is, its key copied as written.
    pub fn key_of(&mut self, entry: Entry<'_, '_>) -> &mut Vec<u8> {
        self.key_literal(entry.literal())
    }

    /// Starts a field whose key is already a JSON string literal.
    pub fn key_literal(&mut self, literal: &str) -> &mut Vec<u8> {
        self.separate();
        self.out.extend_from_slice(literal.as_bytes());
        self.out.push(b':');
        self.out
    }

    /// Copies `entry` as it came.
    pub fn entry(&mut self, entry: Entry<'_, '_>) {
        self.separate();
        self.out.extend_from_slice(entry.slot.text.as_bytes());
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.key(key).extend_from_slice(bool_text(value));
    }

    pub fn str(&mut self, key: &str, value: &str) {
        let out = self.key(key);
        write_str(out, value);
    }

    /// A string, or `null` for `None`.
    pub fn str_or_null(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(value) => self.str(key, value),
            None => self.key(key).extend_from_slice(b"null"),
        }
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }
}

pub fn bool_text(value: bool) -> &'static [u8] {
    if value {
        b"true"
    } else {
        b"false"
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !(b < 0x20 || b == b'"' || b == b'\\') {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Makes JSON text safe inside a `<script>` and a JS string context: `<`, `>`,
/// `&`, `'`, U+2028 and U+2029 become `\u` escapes. These characters only occur
/// inside JSON strings, where the escapes mean the same.
pub fn script_safe(json: &str) -> Cow<'_, str> {
    // U+2028 and U+2029 are E2 80 A8 and E2 80 A9 in UTF-8.
    let special = |b: u8| matches!(b, b'<' | b'>' | b'&' | b'\'' | 0xE2);
    let bytes = json.as_bytes();
    if !bytes.iter().any(|&b| special(b)) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let escape = match bytes[i] {
            b'<' => "\\u003c",
            b'>' => "\\u003e",
            b'&' => "\\u0026",
            b'\'' => "\\u0027",
            0xE2 if bytes.get(i + 1) == Some(&0x80) && bytes.get(i + 2) == Some(&0xA8) => "\\u2028",
            0xE2 if bytes.get(i + 1) == Some(&0x80) && bytes.get(i + 2) == Some(&0xA9) => "\\u2029",
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&json[start..i]);
        out.push_str(escape);
        i += if bytes[i] == 0xE2 { 3 } else { 1 };
        start = i;
    }
    out.push_str(&json[start..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(object: &RawObject<'_>) -> Vec<(String, String)> {
        object
            .iter()
            .map(|e| (e.key().to_owned(), e.value().to_owned()))
            .collect()
    }

    #[test]
    fn keeps_raw_values_and_order() {
        let text = r#"{"b": [1, 2 ,3], "a":{"x" : 1.50}, "c\n": "é\u00e9"}"#;
        let object = RawObject::parse(text).unwrap();
        let keys: Vec<_> = object.iter().map(Entry::key).collect();
        assert_eq!(keys, ["b", "a", "c\n"]);
        assert_eq!(object.get("a").unwrap(), r#"{"x" : 1.50}"#);
        assert_eq!(object.get("b").unwrap(), "[1, 2 ,3]");
        assert_eq!(object.iter().nth(2).unwrap().literal(), r#""c\n""#);
    }

    #[test]
    fn shapes_read_nested_objects_in_the_same_pass() {
        const SHAPE: &[(&str, Shape)] = &[
            ("context", Shape::Object(&[("consent", Shape::Object(&[]))])),
            ("batch", Shape::Array(&Shape::Object(&[]))),
        ];
        let text = r#"{"context":{"page":{"a":1},"consent":{"x":true}},"batch":[{"t":1}, 2, {"t":3}],"other":{"k":1}}"#;
        let object = RawObject::parse_shaped(text, SHAPE).unwrap();
        let consent = object.object("context").unwrap().object("consent").unwrap();
        assert_eq!(consent.get("x"), Some("true"));
        assert!(
            object.object("context").unwrap().object("page").is_none(),
            "not in the shape: raw"
        );
        assert_eq!(
            object.get("context").unwrap(),
            r#"{"page":{"a":1},"consent":{"x":true}}"#
        );
        let batch = object.array("batch").unwrap();
        assert_eq!(
            batch.iter().map(|e| e.raw).collect::<Vec<_>>(),
            [r#"{"t":1}"#, "2", r#"{"t":3}"#]
        );
        assert_eq!(batch[2].object.as_ref().unwrap().get("t"), Some("3"));
        assert!(batch[1].object.is_none());
        assert!(object.object("other").is_none());
    }

    #[test]
    fn duplicate_keys_keep_first_position_and_last_value() {
        let object = RawObject::parse(r#"{"a":1,"b":2,"a":3,"c":4,"b":5}"#).unwrap();
        assert_eq!(
            pairs(&object),
            [
                ("a".into(), "3".into()),
                ("b".into(), "5".into()),
                ("c".into(), "4".into())
            ]
        );
        // Escaped spellings of the same key are the same key.
        let object = RawObject::parse(r#"{"All":true,"\u0041ll":false}"#).unwrap();
        assert_eq!(object.len(), 1);
        assert_eq!(object.get("All").unwrap(), "false");
        // The nested object read is the last one too.
        const SHAPE: &[(&str, Shape)] = &[("i", Shape::Object(&[]))];
        let object =
            RawObject::parse_shaped(r#"{"i":{"a":true},"x":1,"i":{"a":false}}"#, SHAPE).unwrap();
        assert_eq!(object.object("i").unwrap().get("a"), Some("false"));
        let many: String = (0..40).map(|i| format!(r#""k{}":{i},"#, i % 20)).collect();
        let text = format!("{{{many}\"end\":0}}");
        let object = RawObject::parse(&text).unwrap();
        assert_eq!(object.len(), 21);
        assert_eq!(object.get("k3"), Some("23"));
    }

    #[test]
    fn tells_other_json_from_broken_json() {
        for text in ["[]", "1", "\"x\"", "null", " true "] {
            assert_eq!(
                RawObject::parse(text).unwrap_err(),
                ParseError::NotAnObject,
                "{text}"
            );
        }
        for text in [
            "{",
            "{\"a\":}",
            "",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":1} x",
            "{a:1}",
            "[1,]",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":tru}",
            "{\"a\":\"\\u12\"}",
            "{'a':1}",
        ] {
            assert!(
                matches!(RawObject::parse(text), Err(ParseError::Syntax { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            RawObject::parse(&deep),
            Err(ParseError::TooDeep { .. })
        ));
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(RawObject::parse(&ok).is_ok());
    }

    #[test]
    fn lone_surrogates_are_accepted_as_javascript_does() {
        let object = RawObject::parse(r#"{"name":"cut \ud83d","n":1}"#).unwrap();
        assert_eq!(object.get("n"), Some("1"));
        assert!(
            serde_json::from_str::<serde_json::Value>(r#"{"name":"cut \ud83d"}"#).is_err(),
            "serde_json would refuse it"
        );
    }

    #[test]
    fn string_values() {
        assert_eq!(string_value(r#""plain""#).as_deref(), Some("plain"));
        assert_eq!(string_value(r#""a\nb\u0041""#).as_deref(), Some("a\nbA"));
        assert_eq!(string_value("12"), None);
    }

    #[test]
    fn writer_builds_valid_json() {
        let source = RawObject::parse(r#"{"k\"ey": [1,{}]}"#).unwrap();
        let mut out = Vec::new();
        let mut w = ObjectWriter::new(&mut out);
        w.str("s", "q\"\\\n\u{1}é");
        w.bool("t", true);
        w.entry(source.iter().next().unwrap());
        w.finish();
        let text = String::from_utf8(out).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["s"], "q\"\\\n\u{1}é");
        assert_eq!(value["t"], true);
        assert_eq!(value["k\"ey"], serde_json::json!([1, {}]));
    }

    #[test]
    fn script_safe_escapes_breakouts_and_keeps_meaning() {
        let hostile = "</script><script>alert('x')</script>&\u{2028}\u{2029}â€¨";
        let json = serde_json::to_string(&serde_json::json!({ "v": hostile })).unwrap();
        let safe = script_safe(&json);
        for bad in ["<", ">", "&", "'", "\u{2028}", "\u{2029}"] {
            assert!(!safe.contains(bad), "{bad:?} in {safe}");
        }
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["v"], hostile);
    }

    /// JSON-ish text: mostly valid, often broken in small ways.
    fn jsonish() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("fals".to_owned()),
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
            "-?0[0-9]",
            // (no surrogate escapes: see the module comment)
            "\"([a-z]|\\\\[nrt\"\\\\/bf]|\\\\u00[0-9a-fA-F]{2}|\\\\u[0-9a-cA-C][0-9a-fA-F]{3}|\\\\x|\\x01|é){0,20}\"",
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec(("[a-c]{1,2}", inner.clone()), 0..4).prop_map(|v| {
                    let fields: Vec<String> = v
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\" : {v}"))
                        .collect();
                    format!("{{ {} }}", fields.join(","))
                }),
                (inner.clone(), "[,:\\]} ]").prop_map(|(v, junk)| format!("{v}{junk}")),
            ]
        })
    }

    proptest! {
        #[test]
        fn finds_the_first_special_byte_as_a_plain_search_does(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff, Just(b'a')],
                0..40,
            ),
            plain in 0usize..40,
        ) {
            // A run of plain bytes first, so hits land in every lane of a word.
            let text: Vec<u8> = std::iter::repeat_n(b'x', plain).chain(bytes).collect();
            let naive = text.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            prop_assert_eq!(special(&text), naive);
        }

        #[test]
        fn compares_keys_as_equality_does(
            a in "[ab\u{e9}]{0,20}",
            flip in proptest::option::of(0usize..24),
        ) {
            // Equal, or one byte away, at every length and position.
            let mut b = a.clone().into_bytes();
            if let Some(at) = flip.filter(|&at| at < b.len()) {
                b[at] ^= 1;
            }
            let b = String::from_utf8_lossy(&b).into_owned();
            prop_assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b);
        }

        #[test]
        fn a_repeated_shape_reads_as_the_object_shape_does(
            pool in proptest::collection::vec(jsonish(), 1..4),
            picks in proptest::collection::vec((0usize..4, 0usize..4), 1..8),
        ) {
            // Elements drawn from a small pool, so texts repeat, interleave,
            // and some are not objects or not JSON at all; two repeated
            // shapes in each element.
            let elements: Vec<String> = picks
                .iter()
                .map(|&(i, j)| {
                    let (i, j) = (&pool[i % pool.len()], &pool[j % pool.len()]);
                    format!("{{\"i\":{i},\"j\":{{\"k\":{j}}},\"n\":1}}")
                })
                .collect();
            let text = format!("{{\"b\":[{}]}}", elements.join(","));
            const OBJECT: &[(&str, Shape)] = &[(
                "b",
                Shape::Array(&Shape::Object(&[
                    ("i", Shape::Object(&[])),
                    ("j", Shape::Object(&[("k", Shape::Object(&[]))])),
                ])),
            )];
            const REPEATED: &[(&str, Shape)] = &[(
                "b",
                Shape::Array(&Shape::Object(&[
                    ("i", Shape::Repeated(&[])),
                    ("j", Shape::Repeated(&[("k", Shape::Object(&[]))])),
                ])),
            )];
            let read = |fields: &'static [(&'static str, Shape)]| {
                RawObject::parse_shaped(&text, fields).map(|o| {
                    o.array("b").unwrap().iter().map(|e| {
                        let element = e.object.as_ref().unwrap();
                        let j = element.object("j").unwrap();
                        (
                            e.raw.to_owned(),
                            element.object("i").map(pairs),
                            pairs(j),
                            j.object("k").map(pairs),
                        )
                    }).collect::<Vec<_>>()
                })
            };
            prop_assert_eq!(read(OBJECT), read(REPEATED));
        }

        #[test]
        fn validates_exactly_as_serde_json_does(text in jsonish()) {
            let ours = validate(&text).is_ok();
            let serde = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            prop_assert_eq!(ours, serde, "{}", text);
        }

        #[test]
        fn objects_read_as_serde_json_reads_them(text in jsonish()) {
            let wrapped = format!("{{\"v\":{text},\"w\":1}}");
            if let Ok(object) = RawObject::parse(&wrapped) {
                let value: serde_json::Value = serde_json::from_str(&wrapped).unwrap();
                let raw: serde_json::Value = serde_json::from_str(object.get("v").unwrap()).unwrap();
                prop_assert_eq!(&raw, &value["v"]);
            }
        }
    }
}
