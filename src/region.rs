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

/// Whether a visitor from `country` gets the opt-in model under `geo`.
/// Unknown, missing or malformed codes are opt-in: fail closed.
pub fn is_opt_in_country(country: Option<&str>) -> bool {
    let Some(code) = country.map(str::trim) else {
        return true;
    };
    let well_formed = code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic());
    if !well_formed {
        return true;
    }
    let code = code.to_ascii_uppercase();
    UNKNOWN_COUNTRIES.contains(&code.as_str()) || OPT_IN_COUNTRIES.contains(&code.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

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
