//! Tracking posts, called from the JS entry (`src/entry.js`) rather than
//! through the async `fetch` handler: the entry reads the headers and the body
//! in JS, one synchronous call here decides the post and hands back what to
//! send upstream (URL, headers packed in one string, body), the entry sends
//! it, and a second call gives the headers of the visitor's answer. Each post
//! crosses into wasm a handful of times instead of once per header, value and
//! request or response part. Nothing here decides anything: the handlers do.

use super::{analytics, answer, config, into_response, lists, log_line, resolve_with, upstream};
use crate::cors::{self, OriginCheck};
use crate::events::{self, Counts, Enforcer};
use crate::handlers::{self, TrackHeaders, UPSTREAM_TIMEOUT_MS};
use crate::http::{pack_headers, Fetched, Reply, UrlParts};
use crate::metrics::{self, Kind};
use crate::routes::{self, Route};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use worker::js_sys::Promise;
use worker::wasm_bindgen_futures::future_to_promise;
use worker::web_sys::{Request, Response};
use worker::{worker_sys, Context, Env};

/// A post to send to Segment, and what its answer to the visitor needs.
#[wasm_bindgen]
pub struct TrackPlan {
    url: String,
    headers: String,
    body: Vec<u8>,
    counts: Counts,
    cors: OriginCheck,
    segment: String,
}

#[wasm_bindgen]
impl TrackPlan {
    /// Where the post goes.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Its headers, as [`pack_headers`] writes them.
    pub fn headers(&self) -> String {
        self.headers.clone()
    }

    /// Its body (taken: asked once).
    pub fn body(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.body)
    }

    /// The deadline for Segment's whole answer, body included.
    pub fn timeout_ms(&self) -> u32 {
        UPSTREAM_TIMEOUT_MS
    }
}

/// A POST, decided. Returns `undefined` when it is not a tracking post (the
/// `fetch` handler answers it), a write key whose destination list this
/// isolate must load first (`track_load_list`, then call again with
/// `list_loaded`), a `Response` when nothing goes upstream, or the
/// [`TrackPlan`] of what to send. `body` is `None` when it could not be read.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn track_post(
    env: Env,
    ctx: worker_sys::Context,
    request: &Request,
    cookie: Option<Vec<u8>>,
    origin: Option<String>,
    sec_gpc: Option<String>,
    authorization: Option<String>,
    content_type: Option<String>,
    retry_count: Option<String>,
    user_agent: Option<String>,
    client_ip: Option<String>,
    body: Option<Vec<u8>>,
    list_loaded: bool,
) -> Result<JsValue, JsValue> {
    let config = config(&env);
    let url = request.url();
    let Some(url) = UrlParts::parse(&url) else {
        return Ok(JsValue::UNDEFINED);
    };
    let Some(Route::Api { endpoint, segment }) = routes::route(&config.path_prefix, url.path)
    else {
        return Ok(JsValue::UNDEFINED);
    };
    let cors = cors::check_origin(&config, origin.as_deref(), &url.origin());
    if matches!(cors, OriginCheck::Forbidden) {
        return answer(cors::preflight(&cors));
    }
    let Some(body) = body else {
        let reply = Reply::error(400, "could not read the request body");
        return answer(cors::with_cors(reply, &cors));
    };
    let parsed = match events::parse(&config, endpoint, &body, authorization.as_deref()) {
        Ok(parsed) => parsed,
        Err(refusal) => {
            let reply = Reply::error(refusal.status(), &refusal.to_string());
            return answer(cors::with_cors(reply, &cors));
        }
    };
    // The post's write key; `/m` carries none.
    let write_key = parsed.write_key().map(str::to_owned);
    let list = match write_key.as_deref() {
        Some(wk) => match lists::cached(wk) {
            Some(list) => list,
            // Loaded and still not fresh: not expected, but never ask twice.
            None if list_loaded => lists::Loaded::failsafe(&config),
            None => return Ok(JsValue::from_str(wk)),
        },
        None => lists::Loaded::failsafe(&config),
    };
    let visitor = resolve_with(&config, request, cookie.as_deref(), sec_gpc.as_deref());
    let state = &visitor.state;
    let decided = visitor.decided(&config, &list);
    let enforcer = Enforcer::with_decided(&config, &list.set, state, decided, client_ip.as_deref());
    let enforced = enforcer.enforce(parsed);
    let counts = enforced.counts;
    if write_key.is_some() && counts.forwarded > 0 {
        // Receipts went out naming these rules.
        lists::store_rules_in_background(&config, &env, &Context::new(ctx), &list.set);
    }
    // Only a tracking call with a write key makes a point (not `/m`).
    if let (Some(dataset), Some(write_key), Some(kind)) = (
        analytics::dataset(&env),
        write_key.as_deref(),
        Kind::of_segment(segment),
    ) {
        let point = metrics::tracking(&config, &list.set, state, kind, write_key, counts);
        analytics::write(&dataset, &point);
    }
    let headers = TrackHeaders {
        content_type: content_type.as_deref(),
        authorization: authorization.as_deref(),
        retry_count: retry_count.as_deref(),
        user_agent: user_agent.as_deref(),
    };
    match handlers::track_forward(&config, endpoint, segment, enforced, headers) {
        Err(reply) => answer(cors::with_cors(reply, &cors)),
        Ok(forward) => Ok(TrackPlan {
            url: forward.url,
            headers: pack_headers(&forward.headers),
            body: forward.body,
            counts,
            cors,
            segment: segment.to_owned(),
        }
        .into()),
    }
}

/// Loads `write_key`'s destination list into this isolate (from KV, or the
/// failsafe while a background fetch fills KV).
#[wasm_bindgen]
pub fn track_load_list(env: Env, ctx: worker_sys::Context, write_key: String) -> Promise {
    future_to_promise(async move {
        let config = config(&env);
        lists::get(&config, &env, &Context::new(ctx), &write_key).await;
        Ok(JsValue::UNDEFINED)
    })
}

/// The headers of the visitor's answer once Segment has answered with
/// `status` (passed through, as its body is), packed as the plan's are.
#[wasm_bindgen]
pub fn track_answer(
    plan: TrackPlan,
    status: u16,
    content_type: Option<String>,
    retry_after: Option<String>,
) -> String {
    let fetched = Fetched {
        status,
        content_type,
        retry_after,
        ..Fetched::default()
    };
    let reply = cors::with_cors(handlers::track_reply(plan.counts, Ok(fetched)), &plan.cors);
    pack_headers(&reply.headers)
}

/// The visitor's answer when Segment could not be reached in time.
#[wasm_bindgen]
pub fn track_failed(plan: TrackPlan, error: JsValue, timed_out: bool) -> Result<Response, JsValue> {
    let failure = upstream::failure(timed_out, error);
    worker::console_error!(
        "{}",
        log_line("upstream.error", &plan.segment, &failure.to_string())
    );
    let reply = handlers::track_reply(plan.counts, Err(failure));
    into_response(cors::with_cors(reply, &plan.cors), None)
}
