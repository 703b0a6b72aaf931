//! Calls to Segment: one `fetch` under a deadline (`AbortSignal.timeout`)
//! that covers the whole answer, body included, so a slow upstream cannot hold
//! a visitor's request open.

use crate::handlers::UPSTREAM_TIMEOUT_MS;
use crate::http::{FetchFailure, Fetched};
use crate::refresh;
use worker::js_sys::{self, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{AbortSignal, Headers, RequestInit, Response, WorkerGlobalScope};

/// The runtime's `fetch`, for the destination list refresh.
pub struct Edge;

impl refresh::Upstream for Edge {
    async fn get(&self, url: &str) -> Result<Fetched, FetchFailure> {
        let (mut head, response) = send("GET", url, &[], None).await?;
        head.body = Some(read_body(&response).await?);
        Ok(head)
    }
}

/// A deadline for one upstream call.
pub struct Deadline(AbortSignal);

impl Deadline {
    pub fn start() -> Deadline {
        Deadline(AbortSignal::timeout_with_u32(UPSTREAM_TIMEOUT_MS))
    }

    fn failure(&self, error: JsValue) -> FetchFailure {
        if self.0.aborted() {
            FetchFailure::Timeout
        } else {
            FetchFailure::Unreachable(error.as_string().unwrap_or_else(|| format!("{error:?}")))
        }
    }
}

/// Sends a request; the answer's body is left in the returned `Response`.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&'static str, String)],
    body: Option<Vec<u8>>,
) -> Result<(Fetched, Response), FetchFailure> {
    let deadline = Deadline::start();
    let init = RequestInit::new();
    init.set_method(method);
    let request_headers = Headers::new().map_err(|e| deadline.failure(e))?;
    for (name, value) in headers {
        request_headers
            .set(name, value)
            .map_err(|e| deadline.failure(e))?;
    }
    init.set_headers(&request_headers);
    if let Some(body) = body {
        init.set_body(&Uint8Array::from(body.as_slice()));
    }
    init.set_signal(Some(&deadline.0));
    let global: WorkerGlobalScope = js_sys::global().unchecked_into();
    let response: Response = JsFuture::from(global.fetch_with_str_and_init(url, &init))
        .await
        .map_err(|e| deadline.failure(e))?
        .unchecked_into();
    Ok((head(&response), response))
}

/// Status and the headers that are passed on; the body is not read.
pub fn head(response: &Response) -> Fetched {
    let header = |name: &str| response.headers().get(name).ok().flatten();
    Fetched {
        status: response.status(),
        content_type: header("content-type"),
        cache_control: header("cache-control"),
        retry_after: header("retry-after"),
        body: None,
    }
}

/// Reads the whole body (still under the call's deadline).
pub async fn read_body(response: &Response) -> Result<Vec<u8>, FetchFailure> {
    let unreadable = |e: JsValue| {
        FetchFailure::Unreachable(
            e.as_string()
                .unwrap_or_else(|| "body could not be read".to_owned()),
        )
    };
    let buffer = JsFuture::from(response.array_buffer().map_err(unreadable)?)
        .await
        .map_err(unreadable)?;
    Ok(Uint8Array::new(&buffer).to_vec())
}
