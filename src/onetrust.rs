//! OneTrust's groups string, `C0001:1,C0002:0,…`: the `groups` field of the
//! `OptanonConsent` cookie, and the `context.consent.onetrust` value that
//! Destination Filters match with "contains C0002:1".

/// The `ID:V` entries of a groups string: `ID` and `V` trimmed, `ID`
/// non-empty, `V` `1` (granted) or `0` (refused); anything else is skipped.
pub fn entries(s: &str) -> impl Iterator<Item = (&str, bool)> {
    s.split(',').filter_map(|entry| {
        let (id, value) = entry.split_once(':')?;
        let id = id.trim();
        match value.trim() {
            "1" if !id.is_empty() => Some((id, true)),
            "0" if !id.is_empty() => Some((id, false)),
            _ => None,
        }
    })
}

/// Writes a groups string. An id that the format cannot carry (one with a
/// `,` or `:`, or surrounding space) is left out: written, it could make the
/// string claim a grant it does not hold (`X:0` after an id `C0004:1,X`).
pub fn write<'g>(groups: impl IntoIterator<Item = (&'g str, bool)>) -> String {
    let mut s = String::new();
    for (id, granted) in groups.into_iter().filter(|(id, _)| representable(id)) {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(id);
        s.push_str(if granted { ":1" } else { ":0" });
    }
    s
}

fn representable(id: &str) -> bool {
    !id.is_empty() && id.trim() == id && !id.contains([',', ':'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_entries_as_onetrust_writes_them() {
        let read: Vec<_> = entries(" C0001 : 1 ,C0002:0,STACK42:1,bad,:1,C0003:2,C0004:").collect();
        assert_eq!(read, [("C0001", true), ("C0002", false), ("STACK42", true)]);
    }

    #[test]
    fn writes_only_what_reads_back_the_same() {
        let groups = [
            ("C0001", true),
            ("C0004:1,X", false),
            (" C0009", false),
            ("", true),
            ("SSPD_BG", true),
        ];
        let written = write(groups);
        assert_eq!(written, "C0001:1,SSPD_BG:1");
        assert_eq!(
            entries(&written).collect::<Vec<_>>(),
            [("C0001", true), ("SSPD_BG", true)]
        );
        assert!(!written.contains("C0004:1"));
    }
}
