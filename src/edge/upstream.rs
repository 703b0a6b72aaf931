//! Calls to Segment: one `fetch` under a deadline (`AbortSignal.timeout`)
//! that covers the whole answer, body included, so a slow upstream cannot hold
//! a visitor's request open.

use crate::handlers::UPSTREAM_TIMEOUT_MS;
use crate::http::{FetchFailure, Fetched};
use crate::refresh;
use worker::js_sys::{self, ArrayBuffer, Promise, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{AbortSignal, Headers, RequestInit, Response, WorkerGlobalScope};

/// The runtime's `fetch`, for the destination list refresh.
pub struct Edge;

impl refresh::Upstream for Edge {
    async fn get(&self, url: &str) -> Result<Fetched, FetchFailure> {
        let answer = send("GET", url, &[], None).await?;
        let body = answer.bytes().await?;
        Ok(Fetched {
            body: Some(body),
            ..answer.head
        })
    }
}

/// An upstream answer whose body has not been read yet.
pub struct Answer {
    pub head: Fetched,
    pub response: Response,
    deadline: AbortSignal,
}

impl Answer {
    /// Reads the whole body into JS memory, still under the call's deadline.
    pub async fn buffer(&self) -> Result<ArrayBuffer, FetchFailure> {
        let read = self
            .response
            .array_buffer()
            .map_err(|e| failure(self.deadline.aborted(), e))?;
        let buffer = JsFuture::from(read)
            .await
            .map_err(|e| failure(self.deadline.aborted(), e))?;
        Ok(buffer.unchecked_into())
    }

    /// Reads the whole body into the Worker.
    pub async fn bytes(&self) -> Result<Vec<u8>, FetchFailure> {
        Ok(Uint8Array::new(&self.buffer().await?.into()).to_vec())
    }
}

/// Why a call failed: its deadline passed, or anything else went wrong.
pub fn failure(timed_out: bool, error: JsValue) -> FetchFailure {
    if timed_out {
        FetchFailure::Timeout
    } else {
        FetchFailure::Unreachable(error.as_string().unwrap_or_else(|| format!("{error:?}")))
    }
}

/// Sends a request; the answer's body is left unread.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&'static str, String)],
    body: Option<Vec<u8>>,
) -> Result<Answer, FetchFailure> {
    let (sent, deadline) = start(method, url, headers, body)?;
    let response: Response = JsFuture::from(sent)
        .await
        .map_err(|e| failure(deadline.aborted(), e))?
        .unchecked_into();
    Ok(Answer {
        head: head(&response),
        response,
        deadline,
    })
}

/// Starts a `fetch` under its deadline: the runtime's promise of the answer.
pub fn start(
    method: &str,
    url: &str,
    headers: &[(&'static str, String)],
    body: Option<Vec<u8>>,
) -> Result<(Promise, AbortSignal), FetchFailure> {
    let deadline = AbortSignal::timeout_with_u32(UPSTREAM_TIMEOUT_MS);
    let init = RequestInit::new();
    init.set_method(method);
    let request_headers = Headers::new().map_err(|e| failure(deadline.aborted(), e))?;
    for (name, value) in headers {
        request_headers
            .set(name, value)
            .map_err(|e| failure(deadline.aborted(), e))?;
    }
    init.set_headers(&request_headers);
    if let Some(body) = body {
        init.set_body(&Uint8Array::from(body.as_slice()));
    }
    init.set_signal(Some(&deadline));
    let global: WorkerGlobalScope = js_sys::global().unchecked_into();
    Ok((global.fetch_with_str_and_init(url, &init), deadline))
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
