//! `GET {p}/loader.js`, called from the JS entry (`src/entry.js`) in one
//! synchronous call, as tracking posts are: the loader is render-blocking on
//! every page view, and the `fetch` handler's request and response
//! conversions and future-to-promise bridge cost more than rendering it. The
//! entry builds the `Response` from the reply's parts, made into JS values once
//! per rendered loader, not by wasm through a call per header. Nothing here
//! decides anything.

use super::{config, lists, loader, resolve_with, Served};
use crate::handlers::{self, KeyedRoute};
use crate::http::UrlParts;
use crate::routes::{self, Route};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use worker::web_sys::Request;
use worker::Env;

/// The loader's reply as `[status, Headers, body]`, the same JS value for
/// every view of a rendered loader, or `undefined` when the `fetch` handler
/// must answer: another route, a write key whose destination list this
/// isolate has not loaded yet (that needs KV, so an `await`), or a reply the
/// runtime refuses to make into headers (the handler answers that too).
#[wasm_bindgen]
pub fn loader_get(
    env: Env,
    request: &Request,
    cookie: Option<Vec<u8>>,
    sec_gpc: Option<String>,
) -> JsValue {
    let config = config(&env);
    let url = request.url();
    let Some(url) = UrlParts::parse(&url) else {
        return JsValue::UNDEFINED;
    };
    if routes::route(&config.path_prefix, url.path) != Some(Route::Loader) {
        return JsValue::UNDEFINED;
    }
    let write_key = match handlers::requested_write_key(&config, url.query, KeyedRoute::Loader) {
        Ok(write_key) => write_key,
        Err(reply) => {
            return Served::new(reply)
                .js()
                .map_or(JsValue::UNDEFINED, JsValue::from)
        }
    };
    let Some(list) = lists::cached(write_key) else {
        return JsValue::UNDEFINED;
    };
    let visitor = resolve_with(&config, request, cookie.as_deref(), sec_gpc.as_deref());
    let served = loader(&config, &env, &url, write_key, &list, &visitor);
    served.js().map_or(JsValue::UNDEFINED, JsValue::from)
}
