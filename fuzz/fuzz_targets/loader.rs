//! Whatever the write key, cookie and destination names, the loader's data
//! block is JSON that cannot end the `<script>` or a JS string it sits in.
//!
//! Input: a byte choosing MODE and `page`, then NUL-separated fields: the
//! write key, the `Cookie` header, then destination names.
#![no_main]

mod common;

use consent_edge::config::{Config, Mode};
use consent_edge::consent::{ConsentState, RequestSignals, Resolution};
use consent_edge::cookie::parse_cookie_header;
use consent_edge::destinations::{Destination, DestinationSet};
use consent_edge::loader::{hold_ms, render, LoaderInput, Origin};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

/// The file the loader renders from, split where the data goes.
const TEMPLATE: &str = include_str!("../../static/loader.min.js");
const MARKER: &str = "EDGE_DATA";

fuzz_target!(|data: &[u8]| {
    let Some((&choice, data)) = data.split_first() else {
        return;
    };
    let mode = [Mode::Both, Mode::Integrations, Mode::Context][usize::from(choice % 3)];
    let mut fields = data.split(|&b| b == 0);
    let write_key = String::from_utf8_lossy(fields.next().unwrap_or_default());
    let cookie = fields.next().unwrap_or_default();
    let names: Vec<String> = fields
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();

    static CONFIG: OnceLock<Config> = OnceLock::new();
    let config = CONFIG.get_or_init(|| common::config(&[("ALL_DEFAULT", "true")]));
    let list: Vec<Destination> = names
        .iter()
        .map(|name| Destination {
            name: name.clone(),
            creation_name: name.clone(),
            category: "Analytics".into(),
            consent_categories: vec![],
        })
        .collect();
    let set = DestinationSet::new(&list, config);
    let state = ConsentState::resolve(
        config,
        &parse_cookie_header(cookie),
        RequestSignals::default(),
    );
    let resolution = Resolution::of_state(config, &set, &state);
    let origin = Origin {
        scheme: "https",
        host: "shop.example",
        prefix: "/edge",
    };
    let page = choice & 0x80 != 0;
    let js = render(&LoaderInput {
        write_key: &write_key,
        origin,
        mode,
        page,
        set: &set,
        resolution: &resolution,
        hold_ms: hold_ms(config, &state, &resolution),
    });

    let (head, tail) = TEMPLATE
        .split_once(MARKER)
        .expect("the template has its marker");
    let js = std::str::from_utf8(&js).expect("the loader is UTF-8");
    assert!(js.starts_with(head) && js.ends_with(tail));
    let block = &js[head.len()..js.len() - tail.len()];
    assert!(!block.to_ascii_lowercase().contains("</script"));
    for bad in ['<', '>', '&', '\'', '\u{2028}', '\u{2029}'] {
        assert!(!block.contains(bad), "{bad:?} in {block}");
    }
    let value: Value = serde_json::from_str(block).expect("the data block is JSON");
    assert_eq!(value["writeKey"], *write_key);
    assert_eq!(value["page"], page);
    let integrations = &value["consent"]["integrations"];
    for name in &names {
        assert!(integrations.get(name).is_some(), "{name:?} is not listed");
    }
});
