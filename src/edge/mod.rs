//! The Workers runtime glue: reads what the pure handlers need from the
//! request, KV and upstream, and turns their [`Reply`] into a `Response`.
//! Nothing here decides anything. It works on the runtime's own
//! `Request`/`Response` objects so that bodies cross into wasm only when the
//! Worker must read them.

mod analytics;
mod lists;
mod loader_route;
mod track;
mod upstream;

use crate::config::{Config, ConsentModel};
use crate::consent::ConsentState;
use crate::cors::{self, OriginCheck};
use crate::events::Decided;
use crate::handlers::{self, KeyHealth, KeyedRoute, LoaderKey, Visitor, VisitorKey};
use crate::http::{Body, FetchFailure, Fetched, Reply, UrlParts};
use crate::json::ObjectWriter;
use crate::loader;
use crate::memo::Memo;
use crate::metrics;
use crate::refresh::{self, RefreshStatus, Store};
use crate::routes::{self, Method, Route};
use crate::rules::{Rules, RulesDigest};
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use worker::js_sys::{self, Array, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{self, Headers, ResponseInit};
use worker::{event, Cache, Context, Env, ScheduleContext, ScheduledEvent};

thread_local! {
    /// Configuration is read once per isolate.
    static CONFIG: std::cell::OnceCell<Rc<Config>> = const { std::cell::OnceCell::new() };
    /// Rendered loaders: visitors who resolve alike get the same script.
    static LOADERS: RefCell<Memo<LoaderKey, Rc<Served>>> = const { RefCell::new(Memo::new(64)) };
    /// Visitors' consent: a page's loader and events carry the same cookies.
    static VISITORS: RefCell<Memo<VisitorKey, Rc<Resolved>>> = const { RefCell::new(Memo::new(64)) };
}

/// A visitor's consent, and what it decides on the last list it came with.
struct Resolved {
    state: ConsentState,
    /// By the list's generation in this isolate.
    decided: RefCell<Option<(u64, Rc<Decided>)>>,
}

impl Resolved {
    fn decided(&self, config: &Config, list: &lists::Loaded) -> Rc<Decided> {
        let mut decided = self.decided.borrow_mut();
        match &*decided {
            Some((generation, made)) if *generation == list.generation => made.clone(),
            _ => {
                let made = Rc::new(Decided::new(config, &list.set, &self.state));
                *decided = Some((list.generation, made.clone()));
                made
            }
        }
    }
}

/// A rendered loader. Its status, headers and body are made into one JS
/// value once, on the first view the entry serves: every `Response` copies them.
/// The headers are a `Headers` object: the runtime converts a list of pairs
/// anew for every `Response`, at about twice what copying a `Headers` costs it.
struct Served {
    reply: Reply,
    js: OnceCell<Array>,
}

impl Served {
    fn new(reply: Reply) -> Served {
        Served {
            reply,
            js: OnceCell::new(),
        }
    }

    /// `[status, Headers, body]`, the body a `Uint8Array` (empty for none);
    /// an error when the runtime refuses a header.
    fn js(&self) -> Result<&Array, JsValue> {
        if let Some(js) = self.js.get() {
            return Ok(js);
        }
        let headers = Headers::new()?;
        for (name, value) in &self.reply.headers {
            headers.append(name, value)?;
        }
        let body = Uint8Array::from(self.reply.bytes());
        Ok(self
            .js
            .get_or_init(|| Array::of3(&self.reply.status.into(), &headers, &body)))
    }
}

fn config(env: &Env) -> Rc<Config> {
    CONFIG.with(|cell| {
        cell.get_or_init(|| {
            let config = Config::from_vars(|key| var(env, key));
            for error in &config.errors {
                worker::console_error!(
                    "{}",
                    log_line("config.error", error.key(), &error.to_string())
                );
            }
            Rc::new(config)
        })
        .clone()
    })
}

/// A `[vars]` value as text: strings as they are, TOML tables and booleans as JSON.
fn var(env: &Env, key: &str) -> Option<String> {
    let value = Reflect::get(env, &JsValue::from_str(key)).ok()?;
    if value.is_undefined() || value.is_null() {
        return None;
    }
    value
        .as_string()
        .or_else(|| js_sys::JSON::stringify(&value).ok()?.as_string())
}

/// One structured line for `wrangler tail`: never a cookie, an IP or a full write key.
fn log_line(event: &str, subject: &str, message: &str) -> String {
    let mut out = Vec::new();
    let mut w = ObjectWriter::new(&mut out);
    w.str("event", event);
    w.str("subject", subject);
    w.str("message", message);
    w.finish();
    String::from_utf8(out).unwrap_or_default()
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    let config = config(&env);
    let (reply, passed) = handle(&config, &req, &env, &ctx).await;
    Ok(into_response(reply, passed)?)
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let config = config(&env);
    let Some(cdn) = config.segment_cdn.as_deref() else {
        worker::console_error!(
            "{}",
            log_line(
                "refresh.skipped",
                "SEGMENT_CDN",
                "SEGMENT_CDN is misconfigured"
            )
        );
        return;
    };
    let Ok(store) = lists::KvStore::open(&env) else {
        worker::console_error!(
            "{}",
            log_line(
                "refresh.skipped",
                "DESTINATIONS",
                "no KV binding named DESTINATIONS"
            )
        );
        return;
    };
    let results =
        refresh::refresh_all(&upstream::Edge, &store, cdn, &config.write_keys, now_ms()).await;
    for (write_key, status, list) in results {
        worker::console_log!("{}", refresh::log_line(&write_key, &status, "cron"));
        // The rules each key's events are stamped with from now on: stored,
        // so that every digest /healthz shows can be looked up.
        let rules = match list {
            Some(list) => lists::remember(&config, &write_key, list)
                .set
                .rules()
                .clone(),
            None => {
                let kept = store.list(&write_key).await;
                Rules::new(
                    &config,
                    kept.map(|l| l.destinations).as_deref().unwrap_or_default(),
                )
            }
        };
        lists::store_rules_now(&config, &store, &rules).await;
    }
}

/// The reply, and the upstream body it may pass on (read whole first, so
/// that a body cut short is a failure, not a file).
async fn handle(
    config: &Rc<Config>,
    req: &web_sys::Request,
    env: &Env,
    ctx: &Context,
) -> (Reply, Option<js_sys::ArrayBuffer>) {
    let url = req.url();
    let Some(url) = UrlParts::parse(&url) else {
        return (Reply::not_found(), None);
    };
    let Some(route) = routes::route(&config.path_prefix, url.path) else {
        return (Reply::not_found(), None);
    };
    let method = Method::parse(&req.method());
    if !route.allows(method) {
        return (Reply::method_not_allowed(route.allow()), None);
    }
    match route {
        Route::Healthz => (healthz(config, env).await, None),
        Route::Loader | Route::Consent => {
            let keyed = if route == Route::Loader {
                KeyedRoute::Loader
            } else {
                KeyedRoute::Consent
            };
            let write_key = match handlers::requested_write_key(config, url.query, keyed) {
                Ok(wk) => wk,
                Err(reply) => return (reply, None),
            };
            let list = lists::get(config, env, ctx, write_key).await;
            let visitor = resolve(config, req);
            let reply = if route == Route::Loader {
                loader(config, env, &url, write_key, &list, &visitor)
                    .reply
                    .clone()
            } else {
                // It shows a receipt naming these rules.
                lists::store_rules_in_background(config, env, ctx, &list.set);
                handlers::consent(
                    config,
                    &list.set,
                    &visitor.state,
                    list.fetched_at.as_deref(),
                )
            };
            (reply, None)
        }
        Route::Rules(digest) => (rules(env, digest).await, None),
        Route::Cdn(path) => match handlers::cdn_target(config, path) {
            Err(reply) => (reply, None),
            Ok((kind, upstream_url)) => match cdn_fetch(&upstream_url, ctx).await {
                Err(failure) => (handlers::cdn_reply(config, kind, &url, Err(failure)), None),
                Ok((head, buffer)) => {
                    let (fetched, passed) = if handlers::cdn_needs_body(kind, &head) {
                        let body = Uint8Array::new(&buffer).to_vec();
                        (
                            Fetched {
                                body: Some(body),
                                ..head
                            },
                            None,
                        )
                    } else {
                        (head, Some(buffer))
                    };
                    (handlers::cdn_reply(config, kind, &url, Ok(fetched)), passed)
                }
            },
        },
        // Tracking posts arrive through `track::track_post`; this answers the rest.
        Route::Api { .. } => {
            let check = cors::check_origin(config, header(req, "origin").as_deref(), &url.origin());
            if matches!(check, OriginCheck::Forbidden) || method == Method::Options {
                (cors::preflight(&check), None)
            } else {
                (
                    Reply::error(500, "tracking posts are answered by the entry module"),
                    None,
                )
            }
        }
    }
}

fn loader(
    config: &Config,
    env: &Env,
    url: &UrlParts<'_>,
    write_key: &str,
    list: &lists::Loaded,
    visitor: &Resolved,
) -> Rc<Served> {
    let (state, decided) = (&visitor.state, visitor.decided(config, list));
    let resolution = decided.resolution();
    let hold_ms = loader::hold_ms(config, state, resolution);
    if let Some(dataset) = analytics::dataset(env) {
        let point = metrics::loader(config, state, resolution, hold_ms > 0, write_key);
        analytics::write(&dataset, &point);
    }
    let key = LoaderKey::new(url, write_key, list.generation, resolution.clone(), hold_ms);
    LOADERS.with(|memo| {
        memo.borrow_mut().get_or_insert_with(key, |key| {
            let reply = handlers::loader(
                config,
                url,
                write_key,
                &list.set,
                &key.resolution,
                key.hold_ms,
            );
            Rc::new(Served::new(reply))
        })
    })
}

fn resolve(config: &Config, req: &web_sys::Request) -> Rc<Resolved> {
    let cookie = header(req, "cookie");
    let sec_gpc = header(req, "sec-gpc");
    resolve_with(
        config,
        req,
        cookie.as_deref().map(str::as_bytes),
        sec_gpc.as_deref(),
    )
}

/// The visitor's consent from header values already read: resolved once per
/// isolate for the same OneTrust cookies and signals.
fn resolve_with(
    config: &Config,
    req: &web_sys::Request,
    cookie: Option<&[u8]>,
    sec_gpc: Option<&str>,
) -> Rc<Resolved> {
    // `request.cf` is rebuilt on every read; only the geo model needs it.
    let country = (config.consent_model == ConsentModel::Geo)
        .then(|| Reflect::get(req, &JsValue::from_str("cf")).ok())
        .flatten()
        .filter(|cf| cf.is_object())
        .and_then(|cf| Reflect::get(&cf, &JsValue::from_str("country")).ok())
        .and_then(|c| c.as_string());
    let visitor = Visitor {
        cookie: cookie.unwrap_or_default(),
        sec_gpc: handlers::is_gpc(sec_gpc),
        country: country.as_deref(),
    };
    VISITORS.with(|memo| {
        memo.borrow_mut()
            .get_or_insert_with(VisitorKey::of(visitor), |key| {
                Rc::new(Resolved {
                    state: key.resolve(config),
                    decided: RefCell::default(),
                })
            })
    })
}

/// CDN files come from the Cache API when Segment allows it; settings are
/// cached as Segment sent them (the per-host patch is applied on the way out).
/// A body is read whole before it is served or cached: one cut short by the
/// deadline is then a 504, never a truncated file kept for a year.
async fn cdn_fetch(
    upstream_url: &str,
    ctx: &Context,
) -> Result<(Fetched, js_sys::ArrayBuffer), FetchFailure> {
    let cache = Cache::default();
    if let Ok(Some(hit)) = cache.get(upstream_url, false).await {
        let hit = web_sys::Response::from(hit);
        if let Ok(read) = hit.array_buffer() {
            if let Ok(buffer) = JsFuture::from(read).await {
                return Ok((upstream::head(&hit), buffer.unchecked_into()));
            }
        }
    }
    let answer = upstream::send("GET", upstream_url, &[], None).await?;
    let buffer = answer.buffer().await?;
    if handlers::cdn_cacheable(&answer.head) {
        if let Ok(copy) = response_of(&answer.head, &buffer) {
            let key = upstream_url.to_owned();
            ctx.wait_until(async move {
                let _ = Cache::default()
                    .put(key.as_str(), worker::Response::from(copy))
                    .await;
            });
        }
    }
    Ok((answer.head, buffer))
}

/// A response holding `buffer`, with the headers the cache keys its lifetime on.
fn response_of(head: &Fetched, buffer: &js_sys::ArrayBuffer) -> Result<web_sys::Response, JsValue> {
    let headers = Headers::new()?;
    for (name, value) in [
        ("content-type", &head.content_type),
        ("cache-control", &head.cache_control),
    ] {
        if let Some(value) = value {
            headers.set(name, value)?;
        }
    }
    let init = ResponseInit::new();
    init.set_status(head.status);
    init.set_headers(&headers);
    web_sys::Response::new_with_opt_buffer_source_and_init(Some(buffer), &init)
}

/// `{p}/rules/{digest}`: the snapshot as KV holds it.
async fn rules(env: &Env, digest: RulesDigest) -> Reply {
    let stored = match lists::KvStore::open(env) {
        Ok(store) => store.get(&digest.kv_key()).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = &stored {
        worker::console_error!("{}", log_line("kv.error", "rules", e));
    }
    handlers::rules(digest, stored)
}

async fn healthz(config: &Rc<Config>, env: &Env) -> Reply {
    let store = lists::KvStore::open(env).ok();
    let mut keys = Vec::with_capacity(config.write_keys.len());
    for wk in &config.write_keys {
        let health = match &store {
            Some(store) => {
                let list = store.list(wk).await;
                let destinations = list.as_ref().map_or(&[][..], |l| &l.destinations);
                KeyHealth {
                    rules: Some(Rules::new(config, destinations).digest()),
                    list: list.map(|l| (l.destinations.len(), l.fetched_at)),
                    last_refresh: store
                        .text(&refresh::status_key(wk))
                        .await
                        .and_then(|raw| serde_json::from_str::<RefreshStatus>(&raw).ok()),
                }
            }
            None => KeyHealth::default(),
        };
        keys.push((wk.as_str(), health));
    }
    handlers::healthz(config, &keys, analytics::dataset(env).is_some(), now_ms())
}

fn header(req: &web_sys::Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// A reply for the JS entry's synchronous calls.
fn answer(reply: Reply) -> Result<JsValue, JsValue> {
    into_response(reply, None).map(JsValue::from)
}

/// The runtime response for a reply, with the upstream body it passes on.
fn into_response(
    reply: Reply,
    passed: Option<js_sys::ArrayBuffer>,
) -> Result<web_sys::Response, JsValue> {
    let headers = Headers::new()?;
    for (name, value) in &reply.headers {
        headers.append(name, value)?;
    }
    let init = ResponseInit::new();
    init.set_status(reply.status);
    init.set_headers(&headers);
    match (reply.body, passed) {
        (Body::Upstream, Some(buffer)) => {
            web_sys::Response::new_with_opt_buffer_source_and_init(Some(&buffer), &init)
        }
        // 204 and 304 may not carry a body, not even an empty one.
        (Body::Bytes(bytes), _) if !bytes.is_empty() => {
            web_sys::Response::new_with_opt_buffer_source_and_init(
                Some(&Uint8Array::from(bytes.as_slice())),
                &init,
            )
        }
        _ => web_sys::Response::new_with_opt_str_and_init(None, &init),
    }
}
