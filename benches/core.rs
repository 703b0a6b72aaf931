//! Micro-benchmarks of the pure core on realistic inputs (bench/fixtures):
//! a 2 KB Cookie header with OneTrust, GA and other cookies, a 100-destination
//! list, an analytics.js track event as the loader stamps it. Plain timing
//! loops, median of several rounds; `cargo bench` runs them.

#[path = "../bench/fixtures.rs"]
mod fixtures;

use consent_edge::consent::Resolution;
use consent_edge::events::Endpoint;
use consent_edge::http::UrlParts;
use consent_edge::metrics::{self, Kind};
use consent_edge::{handlers, loader};
use fixtures::{alternating_batch, batch, Site, TRACK};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Median time per call of `f` over `rounds` rounds of `iterations` calls.
fn time(iterations: u32, rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut per_call: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed() / iterations
        })
        .collect();
    per_call.sort();
    per_call[rounds / 2]
}

fn main() {
    let site = Site::new();
    let (config, set) = (&site.config, &site.set);
    let url = UrlParts::parse("https://shop.example/edge/loader.js").unwrap();

    let resolve = time(20_000, 9, || {
        black_box(handlers::resolve(config, black_box(Site::visitor())));
    });
    let state = site.resolve();

    let loader = time(5_000, 9, || {
        let resolution = Resolution::of_state(config, set, &state);
        let hold_ms = loader::hold_ms(config, &state, &resolution);
        black_box(handlers::loader(
            config,
            &url,
            "wk_bench",
            set,
            &resolution,
            hold_ms,
        ));
    });
    let loader_bytes = handlers::loader(
        config,
        &url,
        "wk_bench",
        set,
        &Resolution::of_state(config, set, &state),
        0,
    )
    .bytes()
    .len();

    let rewrite = |endpoint: Endpoint, body: &[u8]| {
        black_box(site.rewrite(&state, endpoint, body));
    };
    let single = time(5_000, 9, || rewrite(Endpoint::Event, TRACK.as_bytes()));
    // The data point a tracking post adds with metrics on: for the fixture's
    // visitor (decided) and for one without a cookie (undecided: the hold
    // check resolves the list once more).
    let counts = site
        .rewrite(&state, Endpoint::Event, TRACK.as_bytes())
        .counts;
    let undecided = handlers::resolve(config, handlers::Visitor::default());
    let point = |state| {
        time(20_000, 9, || {
            black_box(metrics::tracking(
                config,
                set,
                black_box(state),
                Kind::Track,
                "wk_bench",
                counts,
            ));
        })
    };
    let (point_decided, point_undecided) = (point(&state), point(&undecided));

    // 100 events as the loader stamps them (every destination in `integrations`).
    let stamped = batch(&[TRACK; 100]);
    let stamped_time = time(50, 9, || rewrite(Endpoint::Batch, stamped.as_bytes()));
    // The same, no event repeating the `integrations` of the one before.
    let alternating = alternating_batch();
    let alternating_time = time(50, 9, || rewrite(Endpoint::Batch, alternating.as_bytes()));
    // 500 events: Segment's 500 KiB limit allows ~1 KB each, so a lean event
    // without the destination keys (as a server-side library sends).
    let lean = lean_event();
    let lean_batch = batch(&vec![lean.as_str(); 500]);
    let lean_time = time(50, 9, || rewrite(Endpoint::Batch, lean_batch.as_bytes()));
    let mb_per_s = |bytes: usize, t: Duration| bytes as f64 / t.as_secs_f64() / 1e6;

    println!(
        "cookie parse + resolve (1.9 KB header)        {:>9.2} µs",
        resolve.as_secs_f64() * 1e6
    );
    println!(
        "loader render (100 destinations, {:>5} B)    {:>9.2} µs",
        loader_bytes,
        loader.as_secs_f64() * 1e6
    );
    println!(
        "single event rewrite ({:>5} B)               {:>9.2} µs",
        TRACK.len(),
        single.as_secs_f64() * 1e6
    );
    let post = resolve + single;
    for (label, t) in [("decided", point_decided), ("undecided", point_undecided)] {
        println!(
            "tracking data point, {label:<9} visitor       {:>9.2} µs = {:.1}% of resolve + rewrite",
            t.as_secs_f64() * 1e6,
            100.0 * t.as_secs_f64() / post.as_secs_f64()
        );
    }
    for (label, n, event, body, t) in [
        ("stamped", 100, TRACK, &stamped, stamped_time),
        ("alternating", 100, TRACK, &alternating, alternating_time),
        ("lean", 500, lean.as_str(), &lean_batch, lean_time),
    ] {
        println!(
            "batch rewrite, {n} × {} B {label} events ({:>3} KB) {:>6.2} ms {:>7.1} MB/s",
            event.len(),
            body.len() / 1000,
            t.as_secs_f64() * 1e3,
            mb_per_s(body.len(), t)
        );
    }
}

/// The fixture event without its `integrations`, product list and client
/// hints: ~1 KB.
fn lean_event() -> String {
    let mut event: serde_json::Value = serde_json::from_str(TRACK).unwrap();
    let object = event.as_object_mut().unwrap();
    object.remove("integrations");
    object.remove("_metadata");
    object["properties"]
        .as_object_mut()
        .unwrap()
        .remove("products");
    object["context"]
        .as_object_mut()
        .unwrap()
        .remove("userAgentData");
    event.to_string()
}
