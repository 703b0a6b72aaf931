//! Destination lists on the request path: an in-isolate cache in front of KV,
//! so a warm isolate reads KV about once a minute per write key, and a single
//! background fetch when a key has no list yet. And the rules snapshots that
//! receipts name: each stored once per isolate, on its first use.

use super::{log_line, now_ms, upstream};
use crate::config::{Config, Receipts};
use crate::destinations::{self, DestinationList, DestinationSet};
use crate::refresh::{self, Snapshot};
use crate::rules::{Rules, SnapshotLedger};
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use worker::{Context, Env};

/// How long a list is used before KV is asked again (KV itself caches as long).
const FRESH_MS: u64 = 60_000;
const KV_CACHE_TTL_SECONDS: u64 = 60;

/// A write key's destinations as the request path uses them.
#[derive(Clone)]
pub struct Loaded {
    pub set: Rc<DestinationSet>,
    /// `None`: no list yet, the `ALL_DEFAULT` failsafe applies. Shared:
    /// every request takes a copy of its list.
    pub fetched_at: Option<Rc<str>>,
    /// Which list this is in this isolate (0: the failsafe): what is cached
    /// from a list is cached under it.
    pub generation: u64,
}

impl Loaded {
    /// No destination known: every one falls to `ALL_DEFAULT`. Made once per
    /// isolate, as its rules digest is.
    pub fn failsafe(config: &Config) -> Loaded {
        FAILSAFE.with(|failsafe| {
            failsafe
                .get_or_init(|| Loaded {
                    set: Rc::new(DestinationSet::new(&[], config)),
                    fetched_at: None,
                    generation: 0,
                })
                .clone()
        })
    }
}

struct Entry {
    loaded: Loaded,
    checked_ms: u64,
}

thread_local! {
    static ENTRIES: RefCell<HashMap<String, Entry>> = RefCell::new(HashMap::new());
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// Keys with a background fetch under way: one per isolate, no stampede.
    static FETCHING: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
    static FAILSAFE: OnceCell<Loaded> = const { OnceCell::new() };
    static SNAPSHOTS: RefCell<SnapshotLedger> = RefCell::new(SnapshotLedger::default());
}

/// The list for `write_key` if this isolate has a fresh one: no KV, no await.
pub fn cached(write_key: &str) -> Option<Loaded> {
    let (loaded, checked_ms) = entry(write_key)?;
    (now_ms().saturating_sub(checked_ms) < FRESH_MS).then_some(loaded)
}

fn entry(write_key: &str) -> Option<(Loaded, u64)> {
    ENTRIES.with(|e| {
        e.borrow()
            .get(write_key)
            .map(|entry| (entry.loaded.clone(), entry.checked_ms))
    })
}

/// The list for `write_key`: from this isolate, else KV, else the failsafe
/// while one background fetch fills KV.
pub async fn get(config: &Rc<Config>, env: &Env, ctx: &Context, write_key: &str) -> Loaded {
    if let Some(loaded) = cached(write_key) {
        return loaded;
    }
    let now = now_ms();
    let cached = entry(write_key);
    let Ok(store) = KvStore::open(env) else {
        return keep(config, write_key, cached, now);
    };
    match store.read(&destinations::kv_key(write_key)).await {
        Ok(Some(raw)) => match DestinationList::from_json(&raw) {
            Ok(list) => remember(config, write_key, list),
            // A stored value that does not read: say so, and fetch a good one.
            Err(e) => {
                worker::console_error!(
                    "{}",
                    super::log_line("kv.corrupt", &refresh::short_key(write_key), &e.to_string())
                );
                fetch_in_background(config, env, ctx, write_key);
                keep(config, write_key, cached, now)
            }
        },
        Ok(None) => {
            fetch_in_background(config, env, ctx, write_key);
            keep(config, write_key, cached, now)
        }
        // KV trouble: keep serving what this isolate had.
        Err(e) => {
            worker::console_error!(
                "{}",
                super::log_line("kv.error", &refresh::short_key(write_key), &e)
            );
            keep(config, write_key, cached, now)
        }
    }
}

/// Keeps the isolate's entry (or the failsafe) for another period.
fn keep(config: &Config, write_key: &str, cached: Option<(Loaded, u64)>, now: u64) -> Loaded {
    let loaded = cached.map_or_else(|| Loaded::failsafe(config), |(loaded, _)| loaded);
    let entry = Entry {
        loaded: loaded.clone(),
        checked_ms: now,
    };
    ENTRIES.with(|e| e.borrow_mut().insert(write_key.to_owned(), entry));
    loaded
}

/// Maps a fresh list and makes it this isolate's current one.
pub fn remember(config: &Config, write_key: &str, list: DestinationList) -> Loaded {
    let generation = GENERATION.with(|g| {
        g.set(g.get() + 1);
        g.get()
    });
    let loaded = Loaded {
        set: Rc::new(DestinationSet::new(&list.destinations, config)),
        fetched_at: Some(list.fetched_at.into()),
        generation,
    };
    let entry = Entry {
        loaded: loaded.clone(),
        checked_ms: now_ms(),
    };
    ENTRIES.with(|e| e.borrow_mut().insert(write_key.to_owned(), entry));
    loaded
}

fn fetch_in_background(config: &Rc<Config>, env: &Env, ctx: &Context, write_key: &str) {
    let first = FETCHING.with(|f| f.borrow_mut().insert(write_key.to_owned()));
    let (Some(cdn), true, Ok(store)) = (config.segment_cdn.clone(), first, KvStore::open(env))
    else {
        return;
    };
    let (config, write_key) = (config.clone(), write_key.to_owned());
    ctx.wait_until(async move {
        let (status, list) =
            refresh::refresh_key(&upstream::Edge, &store, &cdn, &write_key, now_ms()).await;
        worker::console_log!(
            "{}",
            refresh::log_line(&write_key, &status, "first-request")
        );
        if let Some(list) = list {
            remember(&config, &write_key, list);
        }
        FETCHING.with(|f| f.borrow_mut().remove(&write_key));
    });
}

/// Stores the snapshot of `set`'s rules in the background if this is their
/// first use in this isolate.
pub fn store_rules_in_background(
    config: &Config,
    env: &Env,
    ctx: &Context,
    set: &Rc<DestinationSet>,
) {
    if !claim(config, set.rules()) {
        return;
    }
    match KvStore::open(env) {
        Ok(store) => {
            let set = set.clone();
            ctx.wait_until(async move { store_claimed(&store, set.rules()).await });
        }
        Err(e) => settle(set.rules(), Err(e.to_string())),
    }
}

/// Stores the snapshot of `rules` now (the cron), unless this isolate has.
pub async fn store_rules_now(config: &Config, store: &KvStore, rules: &Rules) {
    if claim(config, rules) {
        store_claimed(store, rules).await;
    }
}

/// Whether this caller is to store `rules`' snapshot: receipts are on and
/// the ledger says so.
fn claim(config: &Config, rules: &Rules) -> bool {
    config.receipts != Receipts::Off
        && SNAPSHOTS.with(|ledger| ledger.borrow_mut().claim(rules.digest(), now_ms()))
}

async fn store_claimed(store: &KvStore, rules: &Rules) {
    let result = refresh::store_rules(store, rules).await;
    settle(rules, result);
}

fn settle(rules: &Rules, result: Result<Snapshot, String>) {
    let digest = rules.digest();
    SNAPSHOTS.with(|ledger| ledger.borrow_mut().settle(digest, result.is_ok(), now_ms()));
    match result {
        Ok(Snapshot::Written) => worker::console_log!(
            "{}",
            log_line("rules.stored", &digest.to_string(), "rules snapshot stored")
        ),
        Ok(Snapshot::AlreadyStored) => {}
        Err(e) => worker::console_error!("{}", log_line("rules.error", &digest.to_string(), &e)),
    }
}

/// The `DESTINATIONS` KV namespace.
pub struct KvStore(worker::KvStore);

impl KvStore {
    pub fn open(env: &Env) -> worker::Result<KvStore> {
        Ok(KvStore(env.kv("DESTINATIONS")?))
    }

    async fn read(&self, key: &str) -> Result<Option<String>, String> {
        self.0
            .get(key)
            .cache_ttl(KV_CACHE_TTL_SECONDS)
            .text()
            .await
            .map_err(|e| e.to_string())
    }

    /// A value, or `None` when absent or unreadable (for reports).
    pub async fn text(&self, key: &str) -> Option<String> {
        self.read(key).await.ok().flatten()
    }

    pub async fn list(&self, write_key: &str) -> Option<DestinationList> {
        DestinationList::from_json(&self.text(&destinations::kv_key(write_key)).await?).ok()
    }
}

impl refresh::Store for KvStore {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.read(key).await
    }

    async fn put(&self, key: &str, value: String) -> Result<(), String> {
        self.0
            .put(key, value)
            .map_err(|e| e.to_string())?
            .execute()
            .await
            .map_err(|e| e.to_string())
    }
}
