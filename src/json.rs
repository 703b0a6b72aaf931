//! Editing JSON without re-serializing it: an object is read as its keys and
//! the raw text of each value, so only the fields that change are rebuilt and
//! everything else goes out byte for byte as it came in.

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// A JSON object as `(key, raw value)` pairs in document order. A key that
/// appears twice keeps its first position and its last value, as
/// `JSON.parse` does, so what we rewrite is what the next reader sees.
#[derive(Debug, Default)]
pub struct RawObject<'a> {
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawObject<'a> {
    /// Parses `text` as an object; `None` for anything else.
    pub fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// Parses a raw value as an object; `None` if it is not one.
    pub fn from_raw(raw: &'a RawValue) -> Option<Self> {
        Self::parse(raw.get())
    }

    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|&(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_ref(), *v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn dedupe(&mut self) {
        let n = self.entries.len();
        // Small objects (the usual event) are checked pairwise, without hashing.
        let entries = &self.entries;
        if n <= 16 && !(1..n).any(|i| entries[..i].iter().any(|(k, _)| *k == entries[i].0)) {
            return;
        }
        let mut keep = vec![true; n];
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(n);
        let mut moves = Vec::new();
        for (i, (key, _)) in self.entries.iter().enumerate() {
            if let Some(&at) = first.get(key.as_ref()) {
                keep[i] = false;
                moves.push((at, i));
            } else {
                first.insert(key.as_ref(), i);
            }
        }
        if moves.is_empty() {
            return;
        }
        for (at, from) in moves {
            self.entries[at].1 = self.entries[from].1;
        }
        let mut i = 0;
        self.entries.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
}

/// A key borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<RawObject<'de>, M::Error> {
                let mut object = RawObject {
                    entries: Vec::with_capacity(map.size_hint().unwrap_or(8)),
                };
                while let Some((Key(key), value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    object.entries.push((key, value));
                }
                object.dedupe();
                Ok(object)
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
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

    /// Starts a field; the caller writes its value into the returned buffer.
    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    pub fn raw(&mut self, key: &str, value: &RawValue) {
        self.key(key).extend_from_slice(value.get().as_bytes());
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.key(key).extend_from_slice(text);
    }

    pub fn str(&mut self, key: &str, value: &str) {
        let out = self.key(key);
        write_str(out, value);
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Makes JSON text safe inside a `<script>` and a JS string context: `<`, `>`,
/// `&`, `'`, U+2028 and U+2029 become `\u` escapes. These characters only occur
/// inside JSON strings, where the escapes mean the same.
pub fn script_safe(json: &str) -> Cow<'_, str> {
    let needs = |c: char| matches!(c, '<' | '>' | '&' | '\'' | '\u{2028}' | '\u{2029}');
    if !json.contains(needs) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\'' => out.push_str("\\u0027"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_raw_values_and_order() {
        let text = r#"{"b": [1, 2 ,3], "a":{"x" : 1.50}, "c\n": "é\u00e9"}"#;
        let object = RawObject::parse(text).unwrap();
        let keys: Vec<_> = object.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "a", "c\n"]);
        assert_eq!(object.get("a").unwrap().get(), r#"{"x" : 1.50}"#);
        assert_eq!(object.get("b").unwrap().get(), "[1, 2 ,3]");
    }

    #[test]
    fn duplicate_keys_keep_first_position_and_last_value() {
        let object = RawObject::parse(r#"{"a":1,"b":2,"a":3,"c":4,"b":5}"#).unwrap();
        let pairs: Vec<_> = object
            .iter()
            .map(|(k, v)| (k.to_owned(), v.get().to_owned()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a".into(), "3".into()),
                ("b".into(), "5".into()),
                ("c".into(), "4".into())
            ]
        );
        // Escaped spellings of the same key are the same key.
        let object = RawObject::parse(r#"{"All":true,"\u0041ll":false}"#).unwrap();
        assert_eq!(object.len(), 1);
        assert_eq!(object.get("All").unwrap().get(), "false");
    }

    #[test]
    fn rejects_non_objects() {
        for text in ["[]", "1", "\"x\"", "null", "{", "{\"a\":}", ""] {
            assert!(RawObject::parse(text).is_none(), "{text}");
        }
    }

    #[test]
    fn writer_builds_valid_json() {
        let mut out = Vec::new();
        let mut w = ObjectWriter::new(&mut out);
        w.str("s", "q\"\\\n\u{1}é");
        w.bool("t", true);
        w.raw(
            "r",
            RawValue::from_string("[1,{}]".into()).unwrap().as_ref(),
        );
        w.finish();
        let text = String::from_utf8(out).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["s"], "q\"\\\n\u{1}é");
        assert_eq!(value["t"], true);
        assert_eq!(value["r"], serde_json::json!([1, {}]));
    }

    #[test]
    fn script_safe_escapes_breakouts_and_keeps_meaning() {
        let hostile = "</script><script>alert('x')</script>&\u{2028}\u{2029}";
        let json = serde_json::to_string(&serde_json::json!({ "v": hostile })).unwrap();
        let safe = script_safe(&json);
        for bad in ["<", ">", "&", "'", "\u{2028}", "\u{2029}"] {
            assert!(!safe.contains(bad), "{bad:?} in {safe}");
        }
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["v"], hostile);
    }
}
