//! Writes the data points `crate::metrics` builds to the optional Workers
//! Analytics Engine dataset `CONSENT_METRICS`. Without the binding nothing is
//! built; a dataset that throws never fails the request.

use super::log_line;
use crate::metrics::DataPoint;
use std::cell::Cell;
use worker::js_sys::Reflect;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{AnalyticsEngineDataPointBuilder, AnalyticsEngineDataset, Env};

const BINDING: &str = "CONSENT_METRICS";

thread_local! {
    /// A failing dataset is reported once per isolate: a log line per
    /// request would cost more than the metrics.
    static REPORTED: Cell<bool> = const { Cell::new(false) };
    /// The binding's name as a JS string, made once: every tracking post
    /// looks the binding up.
    static NAME: JsValue = JsValue::from_str(BINDING);
}

/// The dataset, when the Worker has the binding.
pub fn dataset(env: &Env) -> Option<AnalyticsEngineDataset> {
    let binding = NAME.with(|name| Reflect::get(env, name)).ok()?;
    (!binding.is_undefined() && !binding.is_null()).then(|| binding.unchecked_into())
}

/// `writeDataPoint`: it only queues the point, so the visitor waits for
/// nothing but this call.
pub fn write(dataset: &AnalyticsEngineDataset, point: &DataPoint) {
    let written = AnalyticsEngineDataPointBuilder::new()
        .indexes([point.index.as_str()])
        .blobs(point.blobs)
        .doubles(point.doubles.iter().copied())
        .write_to(dataset);
    if let Err(error) = written {
        if !REPORTED.replace(true) {
            worker::console_error!("{}", log_line("metrics.error", BINDING, &error.to_string()));
        }
    }
}
