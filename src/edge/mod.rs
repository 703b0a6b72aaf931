//! The Workers runtime glue: reads what the pure handlers need from the
//! request, KV and upstream, and turns their [`Reply`] into a `Response`.
//! Nothing here decides anything.

mod lists;
mod upstream;

use crate::config::Config;
use crate::cors::{self, OriginCheck};
use crate::events::{self, Enforcer};
use crate::handlers::{self, KeyHealth, KeyedRoute, TrackHeaders, Visitor};
use crate::http::{FetchFailure, Fetched, Reply, UrlParts};
use crate::refresh::{self, RefreshStatus};
use crate::routes::{self, Method, Route};
use std::rc::Rc;
use worker::{
    event, js_sys, wasm_bindgen::JsValue, Cache, Context, Env, Headers, Request, Response,
    ResponseBuilder, ScheduleContext, ScheduledEvent,
};

thread_local! {
    /// Configuration is read once per isolate.
    static CONFIG: std::cell::OnceCell<Rc<Config>> = const { std::cell::OnceCell::new() };
}

fn config(env: &Env) -> Rc<Config> {
    CONFIG.with(|cell| {
        cell.get_or_init(|| {
            let config = Config::from_vars(|key| var(env, key));
            for error in &config.errors {
                worker::console_error!("{}", config_error_line(error.key(), &error.to_string()));
            }
            Rc::new(config)
        })
        .clone()
    })
}

/// A `[vars]` value as text: strings as they are, TOML tables and booleans as JSON.
fn var(env: &Env, key: &str) -> Option<String> {
    let value = js_sys::Reflect::get(env, &JsValue::from_str(key)).ok()?;
    if value.is_undefined() || value.is_null() {
        return None;
    }
    value
        .as_string()
        .or_else(|| js_sys::JSON::stringify(&value).ok()?.as_string())
}

fn config_error_line(key: &str, message: &str) -> String {
    let mut out = Vec::new();
    let mut w = crate::json::ObjectWriter::new(&mut out);
    w.str("event", "config.error");
    w.str("key", key);
    w.str("message", message);
    w.finish();
    String::from_utf8(out).unwrap_or_default()
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let config = config(&env);
    let reply = handle(&config, &mut req, &env, &ctx).await;
    into_response(reply)
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let config = config(&env);
    let Some(cdn) = config.segment_cdn.as_deref() else {
        worker::console_error!(
            "{}",
            config_error_line(
                "SEGMENT_CDN",
                "refresh skipped: SEGMENT_CDN is misconfigured"
            )
        );
        return;
    };
    let Ok(store) = lists::KvStore::open(&env) else {
        worker::console_error!(
            "{}",
            config_error_line(
                "DESTINATIONS",
                "refresh skipped: no KV binding DESTINATIONS"
            )
        );
        return;
    };
    let results =
        refresh::refresh_all(&upstream::Edge, &store, cdn, &config.write_keys, now_ms()).await;
    for (write_key, status, list) in results {
        worker::console_log!("{}", refresh::log_line(&write_key, &status, "cron"));
        if let Some(list) = list {
            lists::remember(&config, &write_key, list);
        }
    }
}

async fn handle(config: &Rc<Config>, req: &mut Request, env: &Env, ctx: &Context) -> Reply {
    let url = req.inner().url();
    let Some(url) = UrlParts::parse(&url) else {
        return Reply::not_found();
    };
    let Some(route) = routes::route(&config.path_prefix, url.path) else {
        return Reply::not_found();
    };
    let method = Method::parse(&req.inner().method());
    if !route.allows(method) {
        return Reply::method_not_allowed(route.allow());
    }
    match route {
        Route::Healthz => healthz(config, env).await,
        Route::Loader | Route::Consent => {
            let keyed = if route == Route::Loader {
                KeyedRoute::Loader
            } else {
                KeyedRoute::Consent
            };
            let write_key = match handlers::requested_write_key(config, url.query, keyed) {
                Ok(wk) => wk,
                Err(reply) => return reply,
            };
            let list = lists::get(config, env, ctx, write_key).await;
            let cookie = header(req, "cookie").unwrap_or_default();
            let country = req.cf().and_then(|cf| cf.country());
            let visitor = Visitor {
                cookie: cookie.as_bytes(),
                sec_gpc: handlers::is_gpc(header(req, "sec-gpc").as_deref()),
                country: country.as_deref(),
            };
            let state = handlers::resolve(config, visitor);
            if route == Route::Loader {
                handlers::loader(config, &url, write_key, &list.set, &state)
            } else {
                handlers::consent(config, &list.set, &state, list.fetched_at.as_deref())
            }
        }
        Route::Cdn(path) => match handlers::cdn_target(config, path) {
            Err(reply) => reply,
            Ok((kind, upstream_url)) => {
                let fetched = cdn_fetch(&upstream_url, ctx).await;
                handlers::cdn_reply(config, kind, &url, fetched)
            }
        },
        Route::Api { endpoint, segment } => {
            let check = cors::check_origin(config, header(req, "origin").as_deref(), &url.origin());
            let reply = match (&check, method) {
                (OriginCheck::Forbidden, _) => return cors::preflight(&check),
                (_, Method::Options) => return cors::preflight(&check),
                _ => track(config, req, env, ctx, endpoint, segment).await,
            };
            cors::with_cors(reply, &check)
        }
    }
}

async fn track(
    config: &Rc<Config>,
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    endpoint: events::Endpoint,
    segment: &str,
) -> Reply {
    let Ok(body) = req.bytes().await else {
        return Reply::error(400, "could not read the request body");
    };
    let authorization = header(req, "authorization");
    let parsed = match events::parse(config, endpoint, &body, authorization.as_deref()) {
        Ok(parsed) => parsed,
        Err(refusal) => return Reply::error(refusal.status(), &refusal.to_string()),
    };
    let list = match parsed.write_key() {
        Some(wk) => lists::get(config, env, ctx, wk).await,
        None => lists::Loaded::failsafe(),
    };
    let cookie = header(req, "cookie").unwrap_or_default();
    let country = req.cf().and_then(|cf| cf.country());
    let visitor = Visitor {
        cookie: cookie.as_bytes(),
        sec_gpc: handlers::is_gpc(header(req, "sec-gpc").as_deref()),
        country: country.as_deref(),
    };
    let state = handlers::resolve(config, visitor);
    let client_ip = header(req, "cf-connecting-ip");
    let enforced = Enforcer::new(config, &list.set, &state, client_ip.as_deref()).enforce(parsed);
    let counts = enforced.counts;
    let content_type = header(req, "content-type");
    let retry_count = header(req, "x-retry-count");
    let user_agent = header(req, "user-agent");
    let headers = TrackHeaders {
        content_type: content_type.as_deref(),
        authorization: authorization.as_deref(),
        retry_count: retry_count.as_deref(),
        user_agent: user_agent.as_deref(),
    };
    match handlers::track_forward(config, segment, enforced, headers) {
        Err(reply) => reply,
        Ok(forward) => {
            let fetched =
                upstream::send("POST", &forward.url, &forward.headers, Some(forward.body)).await;
            handlers::track_reply(counts, fetched)
        }
    }
}

/// CDN files come from the Cache API when Segment allows it; settings are
/// cached as Segment sent them (the per-host patch is applied on the way out).
async fn cdn_fetch(upstream_url: &str, ctx: &Context) -> Result<Fetched, FetchFailure> {
    let cache = Cache::default();
    if let Ok(Some(mut hit)) = cache.get(upstream_url, false).await {
        if let Ok(fetched) = upstream::read(&mut hit).await {
            return Ok(fetched);
        }
    }
    let fetched = upstream::send("GET", upstream_url, &[], None).await?;
    if handlers::cdn_cacheable(&fetched) {
        if let Ok(copy) = upstream::response_of(&fetched) {
            let key = upstream_url.to_owned();
            ctx.wait_until(async move {
                let _ = Cache::default().put(key.as_str(), copy).await;
            });
        }
    }
    Ok(fetched)
}

async fn healthz(config: &Rc<Config>, env: &Env) -> Reply {
    let store = lists::KvStore::open(env).ok();
    let mut keys = Vec::with_capacity(config.write_keys.len());
    for wk in &config.write_keys {
        let health = match &store {
            Some(store) => KeyHealth {
                list: store
                    .list(wk)
                    .await
                    .map(|l| (l.destinations.len(), l.fetched_at)),
                last_refresh: store
                    .text(&refresh::status_key(wk))
                    .await
                    .and_then(|raw| serde_json::from_str::<RefreshStatus>(&raw).ok()),
            },
            None => KeyHealth::default(),
        };
        keys.push((wk.as_str(), health));
    }
    handlers::healthz(config, &keys, now_ms())
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn into_response(reply: Reply) -> worker::Result<Response> {
    let headers = Headers::new();
    for (name, value) in &reply.headers {
        headers.append(name, value)?;
    }
    let builder = ResponseBuilder::new()
        .with_status(reply.status)
        .with_headers(headers);
    // 204 and 304 may not carry a body, not even an empty one.
    Ok(if reply.body.is_empty() {
        builder.empty()
    } else {
        builder.fixed(reply.body)
    })
}
