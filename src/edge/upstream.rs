//! Calls to Segment: one `fetch` with a deadline covering the whole answer,
//! body included, so a slow upstream cannot hold a visitor's request open.

use crate::handlers::UPSTREAM_TIMEOUT_MS;
use crate::http::{FetchFailure, Fetched};
use crate::refresh;
use futures_util::future::{select, Either};
use std::time::Duration;
use worker::{
    js_sys, AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, Response,
    ResponseBuilder,
};

/// The runtime's `fetch`, for the destination list refresh.
pub struct Edge;

impl refresh::Upstream for Edge {
    async fn get(&self, url: &str) -> Result<Fetched, FetchFailure> {
        send("GET", url, &[], None).await
    }
}

pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&'static str, String)],
    body: Option<Vec<u8>>,
) -> Result<Fetched, FetchFailure> {
    let unreachable = |e: worker::Error| FetchFailure::Unreachable(e.to_string());
    let request_headers = Headers::new();
    for (name, value) in headers {
        request_headers.set(name, value).map_err(unreachable)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::from(method.to_owned()))
        .with_headers(request_headers);
    if let Some(body) = body {
        init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    }
    let request = Request::new_with_init(url, &init).map_err(unreachable)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let exchange = async {
        let mut response = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(unreachable)?;
        read(&mut response).await
    };
    let deadline = Delay::from(Duration::from_millis(u64::from(UPSTREAM_TIMEOUT_MS)));
    let outcome = match select(Box::pin(exchange), deadline).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => {
            controller.abort();
            Err(FetchFailure::Timeout)
        }
    };
    outcome
}

/// Status, the headers that are passed on, and the body.
pub async fn read(response: &mut Response) -> Result<Fetched, FetchFailure> {
    let header = |name: &str| response.headers().get(name).ok().flatten();
    let (content_type, cache_control, retry_after) = (
        header("content-type"),
        header("cache-control"),
        header("retry-after"),
    );
    let body = response
        .bytes()
        .await
        .map_err(|e| FetchFailure::Unreachable(e.to_string()))?;
    Ok(Fetched {
        status: response.status_code(),
        content_type,
        cache_control,
        retry_after,
        body,
    })
}

/// A response to store in the Cache API.
pub fn response_of(fetched: &Fetched) -> worker::Result<Response> {
    let headers = Headers::new();
    for (name, value) in [
        ("content-type", &fetched.content_type),
        ("cache-control", &fetched.cache_control),
    ] {
        if let Some(value) = value {
            headers.set(name, value)?;
        }
    }
    Ok(ResponseBuilder::new()
        .with_status(fetched.status)
        .with_headers(headers)
        .fixed(fetched.body.clone()))
}
