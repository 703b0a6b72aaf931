//! The core's per-request work as plain wasm exports, for timing in V8
//! without a runtime around it.

#[path = "../../fixtures.rs"]
mod fixtures;

use consent_edge::events::Endpoint;
use fixtures::{alternating_batch, batch, Site, TRACK};
use std::hint::black_box;

thread_local! {
    /// Built once, as the Worker builds its config and list once per isolate.
    static SITE: Site = Site::new();
}

/// Rewrites the bench's 100-event batch `n` times; returns the bytes written,
/// so none of it is optimized away.
#[no_mangle]
pub extern "C" fn rewrite_batch(n: u32) -> u32 {
    rewrite_times(&batch(&[TRACK; 100]), n)
}

/// As [`rewrite_batch`], no event repeating the `integrations` of the one
/// before.
#[no_mangle]
pub extern "C" fn rewrite_alternating_batch(n: u32) -> u32 {
    rewrite_times(&alternating_batch(), n)
}

fn rewrite_times(body: &str, n: u32) -> u32 {
    SITE.with(|site| {
        let state = site.resolve();
        (0..n)
            .map(|_| written(site.rewrite(&state, Endpoint::Batch, body.as_bytes()).body))
            .sum()
    })
}

/// What one tracking post costs the core: the cookie resolved, the event
/// rewritten.
#[no_mangle]
pub extern "C" fn track(n: u32) -> u32 {
    SITE.with(|site| {
        (0..n)
            .map(|_| {
                let state = site.resolve();
                written(site.rewrite(&state, Endpoint::Event, TRACK.as_bytes()).body)
            })
            .sum()
    })
}

fn written(body: Option<Vec<u8>>) -> u32 {
    black_box(body).map_or(0, |b| b.len() as u32)
}
