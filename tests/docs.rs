//! The configuration reference cannot drift from the code: every key the
//! code reads is documented in the README (with its default) and present in
//! wrangler.toml's [vars], and nothing else is.

use consent_edge::config::{Config, KEYS};
use std::cell::RefCell;

fn read(path: &str) -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + path).unwrap()
}

#[test]
fn keys_lists_exactly_what_the_code_reads() {
    let asked = RefCell::new(Vec::new());
    Config::from_vars(|key| {
        asked.borrow_mut().push(key.to_owned());
        None
    });
    let mut asked = asked.into_inner();
    asked.sort();
    let mut listed: Vec<String> = KEYS.iter().map(|(k, _, _)| k.to_string()).collect();
    listed.sort();
    assert_eq!(asked, listed);
}

#[test]
fn readme_documents_every_key_with_its_default() {
    let readme = read("README.md");
    let table = readme
        .split("<!-- config-reference")
        .nth(1)
        .expect("README has the config reference");
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| `")).collect();
    for (key, default, _) in KEYS {
        let row = rows
            .iter()
            .find(|r| r.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("{key} is not documented in README.md"));
        let documented = row.split('|').nth(2).unwrap().trim().trim_matches('`');
        let expected = if default.is_empty() {
            "(empty)"
        } else {
            default
        };
        assert_eq!(documented, expected, "README default of {key}");
    }
    let documented: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.split('`').nth(1))
        .filter(|k| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    for key in documented {
        assert!(
            KEYS.iter().any(|(k, _, _)| *k == key),
            "README documents {key}, which the code does not read"
        );
    }
}

#[test]
fn wrangler_toml_sets_every_key_to_its_default() {
    let toml = read("wrangler.toml");
    let vars = toml
        .split("\n[vars]\n")
        .nth(1)
        .expect("wrangler.toml has [vars]");
    for (key, default, _) in KEYS {
        let line = vars
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} is missing from wrangler.toml [vars]"));
        let value = line.split_once(" = ").unwrap().1.trim_matches('"');
        let expected = if *key == "WRITE_KEYS" { "" } else { default };
        assert_eq!(value, expected, "wrangler.toml default of {key}");
    }
}
