//! Any `Cookie` header parses without panicking, into consent that keeps the
//! cookie module's promises; any text percent-decodes without panicking.
#![no_main]

use consent_edge::cookie::{parse_cookie_header, percent_decode};
use libfuzzer_sys::fuzz_target;
use std::borrow::Cow;

fuzz_target!(|data: &[u8]| {
    let cookies = parse_cookie_header(data);
    if let Some(consent) = &cookies.consent {
        // Usable means at least one readable entry; ids are trimmed, non-empty, once each.
        assert!(!consent.groups.is_empty());
        for (i, (id, _)) in consent.groups.iter().enumerate() {
            assert!(!id.is_empty() && id.trim() == id, "{id:?}");
            assert!(!consent.groups[..i].iter().any(|(other, _)| other == id));
        }
    }
    if let Some(country) = &cookies.country {
        assert!(!country.is_empty() && !country.contains(';'));
    }

    if let Ok(text) = std::str::from_utf8(data) {
        for plus_is_space in [false, true] {
            match percent_decode(text, plus_is_space) {
                // Nothing decodable: no valid escape, no `+` to turn into a space.
                Cow::Borrowed(same) => {
                    assert_eq!(same, text);
                    assert!(!(plus_is_space && text.contains('+')));
                }
                // Decoding never grows the text.
                Cow::Owned(decoded) => assert!(decoded.len() <= text.len()),
            }
        }
    }
});
