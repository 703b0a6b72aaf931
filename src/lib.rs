//! consent-edge: OneTrust consent for Segment analytics, enforced at the edge.
//!
//! Every decision lives in a plain module below, tested natively with
//! `cargo test`; the `edge` module (wasm32 only) moves bytes between the
//! Workers runtime and those functions.

pub mod categories;
pub mod cdn;
pub mod config;
pub mod consent;
pub mod cookie;
pub mod cors;
pub mod destinations;
pub mod events;
pub mod handlers;
pub mod http;
pub mod json;
pub mod loader;
pub mod memo;
pub mod metrics;
pub mod onetrust;
pub mod receipt;
pub mod refresh;
pub mod region;
pub mod routes;
pub mod rules;
pub mod time;

#[cfg(target_arch = "wasm32")]
mod edge;
