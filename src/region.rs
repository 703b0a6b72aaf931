//! Which countries the `geo` consent model treats as opt-in.

/// EU-27, their own-code outermost regions, the rest of the EEA, the UK and its
/// Crown dependencies, Switzerland, and the aliases OneTrust and others use.
const OPT_IN_COUNTRIES: &[&str] = &[
    // EU-27
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
    // outermost regions and territories with their own ISO code
    "RE", "GF", "GP", "MQ", "YT", "MF", "AX",
    // EEA, Switzerland, the UK and its dependencies
    "IS", "LI", "NO", "CH", "GB", "JE", "GG", "IM", "GI",
    // aliases: UK for GB, EL for GR (EU usage), EU itself
    "UK", "EL", "EU",
];

/// Codes that mean "country unknown" (Cloudflare uses `XX` and `T1` for Tor).
const UNKNOWN_COUNTRIES: &[&str] = &["XX", "T1"];

/// The upper-case two-letter code of a known country; `None` when the
/// country is missing, malformed (not two ASCII letters) or unknown (`XX`).
pub fn country_code(country: Option<&str>) -> Option<String> {
    let code = country?.trim();
    let well_formed = code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic());
    let code = code.to_ascii_uppercase();
    (well_formed && !UNKNOWN_COUNTRIES.contains(&code.as_str())).then_some(code)
}

/// Whether a visitor from `code` (a [`country_code`]) gets the opt-in model
/// under `geo`. An unknown country (`None`) is opt-in: fail closed.
pub fn is_opt_in_code(code: Option<&str>) -> bool {
    code.is_none_or(|code| OPT_IN_COUNTRIES.contains(&code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_opt_in_country(country: Option<&str>) -> bool {
        is_opt_in_code(country_code(country).as_deref())
    }

    #[test]
    fn eu_eea_uk_ch_are_opt_in() {
        for code in [
            "DE", "FR", "ie", "GB", "UK", "CH", "NO", "IS", "LI", "EL", "RE", "AX", "JE",
        ] {
            assert!(is_opt_in_country(Some(code)), "{code}");
        }
    }

    #[test]
    fn elsewhere_is_opt_out() {
        for code in ["US", "CA", "BR", "JP", "AU", "IN", "TR", "RU", "us"] {
            assert!(!is_opt_in_country(Some(code)), "{code}");
        }
    }

    #[test]
    fn country_codes_are_known_two_letter_codes_upper_cased() {
        assert_eq!(country_code(Some(" de ")).as_deref(), Some("DE"));
        assert_eq!(country_code(Some("US")).as_deref(), Some("US"));
        assert_eq!(country_code(Some("UK")).as_deref(), Some("UK"));
        for unknown in [
            None,
            Some(""),
            Some("XX"),
            Some("xx"),
            Some("T1"),
            Some("USA"),
            Some("D€"),
        ] {
            assert_eq!(country_code(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn unknown_or_malformed_is_opt_in() {
        for code in [
            None,
            Some(""),
            Some("XX"),
            Some("T1"),
            Some("USA"),
            Some("1"),
            Some("D€"),
        ] {
            assert!(is_opt_in_country(code), "{code:?}");
        }
    }
}
