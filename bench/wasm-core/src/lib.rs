//! One export: rewrite the bench's 100-event batch `n` times.

#[path = "../../fixtures.rs"]
mod fixtures;

use consent_edge::events::Endpoint;
use fixtures::{batch, Site, TRACK};
use std::hint::black_box;

/// Rewrites the batch `n` times; returns the bytes written, so none of it is
/// optimized away.
#[no_mangle]
pub extern "C" fn rewrite_batch(n: u32) -> u32 {
    let site = Site::new();
    let state = site.resolve();
    let body = batch(&[TRACK; 100]);
    let mut written = 0;
    for _ in 0..n {
        let enforced = site.rewrite(&state, Endpoint::Batch, body.as_bytes());
        written += black_box(enforced.body).map_or(0, |b| b.len() as u32);
    }
    written
}
