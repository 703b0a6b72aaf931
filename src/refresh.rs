//! Keeping each write key's destination list fresh: the cron refresh, the
//! one-off fetch when a key has no list yet, and what each attempt leaves
//! behind; and the rules snapshots that receipts name. Written against two
//! small traits so it runs natively in tests.

use crate::destinations::{self, DestinationError, DestinationList};
use crate::http::{FetchFailure, Fetched};
use crate::json::ObjectWriter;
use crate::rules::Rules;
use crate::time::format_rfc3339;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use std::future::Future;

/// GETs a URL. Implementations apply a timeout.
pub trait Upstream {
    fn get(&self, url: &str) -> impl Future<Output = Result<Fetched, FetchFailure>>;
}

/// The KV namespace, as far as refreshing needs it.
pub trait Store {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>, String>>;
    fn put(&self, key: &str, value: String) -> impl Future<Output = Result<(), String>>;
}

/// The outcome of the last refresh attempt, stored beside the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshStatus {
    pub at: String,
    pub ok: bool,
    pub reason: String,
    /// How many destinations the list has after this attempt, if any list.
    #[serde(default)]
    pub destinations: Option<usize>,
}

/// The KV key of a write key's last refresh outcome.
pub fn status_key(write_key: &str) -> String {
    format!("v1:refresh:{write_key}")
}

/// `abc123…`: enough to tell keys apart in logs and /healthz, not enough to use.
pub fn short_key(write_key: &str) -> String {
    let prefix: String = write_key.chars().take(6).collect();
    format!("{prefix}…")
}

/// Fetches both upstream documents and builds the list.
pub async fn fetch_list(
    upstream: &impl Upstream,
    cdn: &str,
    write_key: &str,
    now_ms: u64,
) -> Result<DestinationList, DestinationError> {
    let projects_url = format!("{cdn}/v1/projects/{write_key}/integrations");
    let settings_url = format!("{cdn}/v1/projects/{write_key}/settings");
    let (projects, settings) =
        futures_util::join!(upstream.get(&projects_url), upstream.get(&settings_url));
    let projects = body_of(projects, "integrations")?;
    let settings = body_of(settings, "settings")?;
    destinations::from_upstream(&projects, &settings, now_ms)
}

fn body_of(
    fetched: Result<Fetched, FetchFailure>,
    document: &'static str,
) -> Result<Vec<u8>, DestinationError> {
    match fetched {
        Ok(f) if (200..300).contains(&f.status) => Ok(f.body.unwrap_or_default()),
        Ok(f) => Err(DestinationError::Status {
            document,
            status: f.status,
        }),
        Err(failure) => Err(DestinationError::Network(format!("{document}: {failure}"))),
    }
}

/// Refreshes one write key. A failed attempt never overwrites the last good
/// list; either way the outcome is recorded.
pub async fn refresh_key(
    upstream: &impl Upstream,
    store: &impl Store,
    cdn: &str,
    write_key: &str,
    now_ms: u64,
) -> (RefreshStatus, Option<DestinationList>) {
    let at = format_rfc3339(now_ms);
    let (status, list) = match fetch_list(upstream, cdn, write_key, now_ms).await {
        Ok(list) => match store
            .put(&destinations::kv_key(write_key), list.to_json())
            .await
        {
            Ok(()) => {
                let count = list.destinations.len();
                (
                    RefreshStatus {
                        at,
                        ok: true,
                        reason: format!("{count} destinations"),
                        destinations: Some(count),
                    },
                    Some(list),
                )
            }
            Err(e) => (
                RefreshStatus {
                    at,
                    ok: false,
                    reason: format!("KV write failed: {e}"),
                    destinations: None,
                },
                None,
            ),
        },
        Err(e) => {
            let kept = match store.get(&destinations::kv_key(write_key)).await {
                Ok(Some(raw)) => DestinationList::from_json(&raw)
                    .ok()
                    .map(|l| l.destinations.len()),
                _ => None,
            };
            (
                RefreshStatus {
                    at,
                    ok: false,
                    reason: e.to_string(),
                    destinations: kept,
                },
                None,
            )
        }
    };
    let json = serde_json::to_string(&status).unwrap_or_default();
    // The status is informational: losing it must not fail the refresh.
    let _ = store.put(&status_key(write_key), json).await;
    (status, list)
}

/// What [`store_rules`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    Written,
    /// KV already had it: a snapshot's key is its digest, so it never changes.
    AlreadyStored,
}

/// Puts a rules snapshot in KV under its digest, unless KV has it. A
/// snapshot is never removed: an old receipt's rules stay retrievable.
pub async fn store_rules(store: &impl Store, rules: &Rules) -> Result<Snapshot, String> {
    let key = rules.digest().kv_key();
    if store.get(&key).await?.is_some() {
        return Ok(Snapshot::AlreadyStored);
    }
    store.put(&key, rules.canonical().to_owned()).await?;
    Ok(Snapshot::Written)
}

/// Refreshes every key concurrently.
pub async fn refresh_all(
    upstream: &impl Upstream,
    store: &impl Store,
    cdn: &str,
    write_keys: &[String],
    now_ms: u64,
) -> Vec<(String, RefreshStatus, Option<DestinationList>)> {
    let runs = write_keys.iter().map(|wk| async move {
        let (status, list) = refresh_key(upstream, store, cdn, wk, now_ms).await;
        (wk.clone(), status, list)
    });
    join_all(runs).await
}

/// One structured log line per refresh attempt (for `wrangler tail`): no
/// personal data, the write key shortened.
pub fn log_line(write_key: &str, status: &RefreshStatus, trigger: &str) -> String {
    let mut out = Vec::with_capacity(160);
    let mut w = ObjectWriter::new(&mut out);
    w.str("event", "destinations.refresh");
    w.str("trigger", trigger);
    w.str("writeKey", &short_key(write_key));
    w.bool("ok", status.ok);
    w.str("reason", &status.reason);
    if let Some(n) = status.destinations {
        w.key("destinations")
            .extend_from_slice(n.to_string().as_bytes());
    }
    w.str("at", &status.at);
    w.finish();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_executor::block_on;
    use std::cell::RefCell;
    use std::collections::HashMap;

    const CDN: &str = "https://cdn.test";

    #[derive(Default)]
    struct MemoryStore {
        values: RefCell<HashMap<String, String>>,
        fail_writes: bool,
        puts: RefCell<usize>,
    }

    impl Store for MemoryStore {
        async fn get(&self, key: &str) -> Result<Option<String>, String> {
            Ok(self.values.borrow().get(key).cloned())
        }
        async fn put(&self, key: &str, value: String) -> Result<(), String> {
            if self.fail_writes {
                return Err("quota exceeded".into());
            }
            *self.puts.borrow_mut() += 1;
            self.values.borrow_mut().insert(key.to_owned(), value);
            Ok(())
        }
    }

    /// Answers by URL; anything unlisted is a refused connection. Counts calls.
    #[derive(Default)]
    struct FakeUpstream {
        answers: HashMap<String, Result<Fetched, FetchFailure>>,
        calls: RefCell<Vec<String>>,
    }

    fn ok(body: &str) -> Result<Fetched, FetchFailure> {
        Ok(Fetched {
            status: 200,
            body: Some(body.as_bytes().to_vec()),
            ..Fetched::default()
        })
    }

    impl FakeUpstream {
        fn serve(mut self, wk: &str, projects: &str, settings: &str) -> Self {
            self.answers
                .insert(format!("{CDN}/v1/projects/{wk}/integrations"), ok(projects));
            self.answers
                .insert(format!("{CDN}/v1/projects/{wk}/settings"), ok(settings));
            self
        }
    }

    impl Upstream for FakeUpstream {
        async fn get(&self, url: &str) -> Result<Fetched, FetchFailure> {
            self.calls.borrow_mut().push(url.to_owned());
            self.answers
                .get(url)
                .cloned()
                .unwrap_or_else(|| Err(FetchFailure::Unreachable("connection refused".into())))
        }
    }

    const PROJECTS: &str =
        r#"[{"name":"GA4","category":"Analytics"},{"name":"Ads","category":"Advertising"}]"#;
    const SETTINGS: &str = r#"{"integrations":{"Segment.io":{"apiKey":"k"}}}"#;

    fn stored(store: &MemoryStore, wk: &str) -> Option<DestinationList> {
        store
            .values
            .borrow()
            .get(&destinations::kv_key(wk))
            .map(|raw| DestinationList::from_json(raw).unwrap())
    }

    #[test]
    fn a_good_refresh_stores_the_list_and_its_status() {
        let upstream = FakeUpstream::default().serve("wk1", PROJECTS, SETTINGS);
        let store = MemoryStore::default();
        let (status, list) = block_on(refresh_key(
            &upstream,
            &store,
            CDN,
            "wk1",
            1_795_600_496_000,
        ));
        assert!(status.ok, "{status:?}");
        assert_eq!(status.destinations, Some(2));
        assert_eq!(list.as_ref().unwrap().destinations.len(), 2);
        assert_eq!(stored(&store, "wk1"), list);
        let saved: RefreshStatus =
            serde_json::from_str(&store.values.borrow()[&status_key("wk1")]).unwrap();
        assert_eq!(saved, status);
        assert_eq!(saved.at, "2026-11-25T09:54:56Z");
    }

    #[test]
    fn a_failed_refresh_keeps_the_last_good_list() {
        let store = MemoryStore::default();
        let good = FakeUpstream::default().serve("wk1", PROJECTS, SETTINGS);
        block_on(refresh_key(&good, &store, CDN, "wk1", 1_000));
        let before = stored(&store, "wk1");

        let failures = [
            FakeUpstream::default(),
            FakeUpstream::default().serve("wk1", "<html>502</html>", SETTINGS),
            FakeUpstream::default().serve("wk1", r#"{"error":"nope"}"#, SETTINGS),
            FakeUpstream::default().serve("wk1", PROJECTS, "[]"),
        ];
        for upstream in &failures {
            let (status, list) = block_on(refresh_key(upstream, &store, CDN, "wk1", 2_000));
            assert!(!status.ok);
            assert_eq!(list, None);
            assert_eq!(status.destinations, Some(2), "the kept list is reported");
            assert_eq!(stored(&store, "wk1"), before, "{}", status.reason);
        }
        let mut status_upstream = FakeUpstream::default().serve("wk1", PROJECTS, SETTINGS);
        status_upstream.answers.insert(
            format!("{CDN}/v1/projects/wk1/integrations"),
            Ok(Fetched {
                status: 503,
                ..ok("busy").unwrap()
            }),
        );
        let (status, _) = block_on(refresh_key(&status_upstream, &store, CDN, "wk1", 3_000));
        assert_eq!(status.reason, "integrations answered HTTP 503");
        assert_eq!(stored(&store, "wk1"), before);
        let mut slow = FakeUpstream::default().serve("wk1", PROJECTS, SETTINGS);
        slow.answers.insert(
            format!("{CDN}/v1/projects/wk1/settings"),
            Err(FetchFailure::Timeout),
        );
        let (status, _) = block_on(refresh_key(&slow, &store, CDN, "wk1", 3_000));
        assert_eq!(status.reason, "network error: settings: timed out");
    }

    #[test]
    fn an_empty_list_is_a_good_list() {
        let store = MemoryStore::default();
        let upstream = FakeUpstream::default().serve("wk1", "[]", r#"{"integrations":{}}"#);
        let (status, list) = block_on(refresh_key(&upstream, &store, CDN, "wk1", 0));
        assert!(status.ok);
        assert_eq!(list.unwrap().destinations, []);
    }

    #[test]
    fn a_kv_write_failure_is_a_failed_refresh() {
        let store = MemoryStore {
            fail_writes: true,
            ..Default::default()
        };
        let upstream = FakeUpstream::default().serve("wk1", PROJECTS, SETTINGS);
        let (status, list) = block_on(refresh_key(&upstream, &store, CDN, "wk1", 0));
        assert!(!status.ok && status.reason.contains("quota exceeded"));
        assert_eq!(list, None);
    }

    #[test]
    fn refresh_all_covers_every_key_independently() {
        let upstream = FakeUpstream::default()
            .serve("wk1", PROJECTS, SETTINGS)
            .serve("wk3", "[]", SETTINGS);
        let store = MemoryStore::default();
        let keys: Vec<String> = ["wk1", "wk2", "wk3"].map(String::from).to_vec();
        let results = block_on(refresh_all(&upstream, &store, CDN, &keys, 0));
        let oks: Vec<_> = results
            .iter()
            .map(|(wk, s, _)| (wk.as_str(), s.ok))
            .collect();
        assert_eq!(oks, [("wk1", true), ("wk2", false), ("wk3", true)]);
        assert_eq!(upstream.calls.borrow().len(), 6, "two documents per key");
        assert!(stored(&store, "wk2").is_none());
    }

    #[test]
    fn a_rules_snapshot_is_written_once_under_its_digest() {
        let rules = Rules::new(&crate::config::Config::for_test(&[]), &[]);
        let store = MemoryStore::default();
        assert_eq!(block_on(store_rules(&store, &rules)), Ok(Snapshot::Written));
        assert_eq!(
            block_on(store_rules(&store, &rules)),
            Ok(Snapshot::AlreadyStored)
        );
        assert_eq!(*store.puts.borrow(), 1);
        let key = format!("v1:rules:{}", rules.digest());
        assert_eq!(store.values.borrow()[&key], rules.canonical());
        let failing = MemoryStore {
            fail_writes: true,
            ..Default::default()
        };
        assert!(block_on(store_rules(&failing, &rules)).is_err());
    }

    #[test]
    fn log_lines_are_json_without_the_full_key() {
        let status = RefreshStatus {
            at: "2026-11-25T09:54:56Z".into(),
            ok: false,
            reason: "network error: \"x\"".into(),
            destinations: None,
        };
        let line = log_line("abcdefghijklmnop", &status, "cron");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["writeKey"], "abcdef…");
        assert_eq!(value["ok"], false);
        assert!(!line.contains("abcdefghij"));
    }
}
