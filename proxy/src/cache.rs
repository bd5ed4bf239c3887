//! The stage response cache (AWS's stage cache): where entries live, what their keys are,
//! flushing, and one backend call per key at a time.
//!
//! ```text
//!  ResponseCache (one per process, outside Runtime: reloads keep the entries)
//!   ├─ without --redis-url: per stage id a LocalStage: quick_cache (weighted by entry bytes,
//!   │    bounded by the stage's budget), an epoch bumped by each flush
//!   ├─ with --redis-url: entries in Redis, `portico:c:<stage>:<key hex>:<generation>`, with
//!   │    the entry's TTL; a flush bumps `portico:cg:<stage>` (the generation), so every
//!   │    replica's next lookup misses; a Redis that does not answer is a miss, never an error
//!   └─ inflight: per key, the one request filling it (the others wait for it: coalescing)
//! ```
//!
//! Keys ([`key`]) are SHA-256 over the stage, the flush token from the config (a change of
//! the Stage's `portico.dev/flush-cache` annotation flushes every replica), the namespace,
//! the HTTP method and the cache key parameters' values. An entry is the integration's
//! answer: status, headers and body ([`Entry`]). With `cacheDataEncrypted` the Redis value is
//! AES-256-GCM sealed with the process's key (`--cache-encryption-key-file`).

use crate::shared_state::{RedisStore, SharedState, StoreError, User};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Largest integration answer (body bytes) that is cached (AWS's limit).
pub const MAX_ENTRY_BYTES: usize = 1_048_576;

/// A cache key: SHA-256 of the parts that tell answers apart.
pub type Key = [u8; 32];

/// One cached answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The integration's status.
    pub status: StatusCode,
    /// Its headers (hop-by-hop ones already gone).
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl Entry {
    /// Bytes the entry holds (its weight against the budget).
    fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        (self.body.len() + headers + 64) as u64
    }

    /// Serialises the entry (Redis value): status, header count, then each name and value,
    /// then the body, lengths as big-endian u32.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.weight() as usize);
        out.extend_from_slice(&self.status.as_u16().to_be_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for (n, v) in &self.headers {
            for part in [n.as_str().as_bytes(), v.as_bytes()] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part);
            }
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// The inverse of [`Entry::encode`]; `None` for bytes it did not write.
    pub fn decode(raw: &[u8]) -> Option<Entry> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let s = raw.get(at..at.checked_add(n)?)?;
            at += n;
            Some(s)
        };
        let status = u16::from_be_bytes(take(2)?.try_into().ok()?);
        let count = u32::from_be_bytes(take(4)?.try_into().ok()?);
        let mut headers = HeaderMap::new();
        for _ in 0..count {
            let n = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
            let name = HeaderName::from_bytes(take(n)?).ok()?;
            let n = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
            let value = HeaderValue::from_bytes(take(n)?).ok()?;
            headers.append(name, value);
        }
        Some(Entry {
            status: StatusCode::from_u16(status).ok()?,
            headers,
            body: Bytes::copy_from_slice(raw.get(at..)?),
        })
    }
}

/// The key of one request: `parts` are the stage id, the flush token, the namespace, the
/// HTTP method, then per cache key parameter its name and values. Each part is length
/// prefixed, so no two different lists hash alike by concatenation.
pub fn key<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Key {
    // One buffer, one digest call: an `update` per part would hash a block per part.
    let mut buf = Vec::with_capacity(256);
    for p in parts {
        buf.extend_from_slice(&(p.len() as u64).to_be_bytes());
        buf.extend_from_slice(p);
    }
    ring::digest::digest(&ring::digest::SHA256, &buf)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

fn hex(key: &Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// An entry in process, with when it expires.
#[derive(Clone, Debug)]
struct Stored {
    entry: Arc<Entry>,
    expires: Instant,
}

#[derive(Clone, Debug)]
struct Weigh;

impl quick_cache::Weighter<Key, Stored> for Weigh {
    fn weight(&self, _key: &Key, v: &Stored) -> u64 {
        v.entry.weight()
    }
}

/// One stage's entries in process.
#[derive(Debug)]
struct LocalStage {
    budget: u64,
    /// Bumped by each flush: a fill that started before it does not store.
    epoch: AtomicU64,
    entries: quick_cache::sync::Cache<Key, Stored, Weigh>,
}

impl LocalStage {
    fn new(budget: u64) -> Self {
        // quick_cache wants an estimate of the entry count: assume ~4 KiB entries.
        let items = usize::try_from(budget / 4096)
            .unwrap_or(usize::MAX)
            .clamp(16, 1 << 20);
        LocalStage {
            budget,
            epoch: AtomicU64::new(0),
            entries: quick_cache::sync::Cache::with_weighter(items, budget, Weigh),
        }
    }
}

/// Where a lookup's answer would be stored: captured at the miss, so that a flush between
/// the miss and the store wins.
#[derive(Clone, Debug)]
pub struct Slot(Place, Arc<str>);

#[derive(Clone, Debug)]
enum Place {
    /// In process, under this key, if the stage's epoch is still this one.
    Local {
        stage: Arc<LocalStage>,
        epoch: u64,
        key: Key,
    },
    /// In Redis, under this key (the generation included).
    Redis(String),
    /// Nowhere (Redis gave no answer: the request goes on uncached).
    Nowhere,
}

/// What a lookup found; either way, where a fill of the key stores (a refresh replaces a
/// live entry).
#[derive(Debug)]
pub enum Lookup {
    /// A live entry.
    Hit(Arc<Entry>, Slot),
    /// None.
    Miss(Slot),
}

/// What a request that missed does about the other requests missing the same key.
#[derive(Debug)]
pub enum Turn {
    /// It calls the integration; the others wait until the guard is dropped.
    Lead(FillGuard),
    /// Another request is calling it: wait for that one, then look again.
    Wait(watch::Receiver<()>),
}

/// Held by the request filling a key; dropping it wakes the requests waiting on the key.
#[derive(Debug)]
pub struct FillGuard {
    inflight: Arc<Mutex<HashMap<Key, watch::Receiver<()>>>>,
    key: Key,
    _done: watch::Sender<()>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        // Removed before the sender goes (with this guard): a request that found the
        // receiver under the lock is woken by the drop; one that comes later finds no
        // receiver and looks the cache up again.
        self.inflight
            .lock()
            .expect("never poisoned")
            .remove(&self.key);
    }
}

/// Sealing of entries in Redis (`cacheDataEncrypted`).
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

/// Marks of a Redis value: sealed or plain.
const PLAIN: u8 = 0;
const SEALED: u8 = 1;

impl Sealer {
    /// A sealer with a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        Sealer {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key")),
            rng: SystemRandom::new(),
        }
    }

    /// A sealer with a random key (entries it seals can be read by this process only).
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        SystemRandom::new().fill(&mut k).expect("system randomness");
        Sealer::new(&k)
    }

    /// Parses a key file: 64 hex digits (surrounding whitespace ignored).
    pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
        let t = text.trim();
        if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "expected 64 hex digits (32 bytes, e.g. `openssl rand -hex 32`), found {} characters",
                t.len()
            ));
        }
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).expect("checked hex");
        }
        Ok(k)
    }

    /// `SEALED`, nonce, ciphertext and tag; `aad` (the Redis key) binds it to its place.
    fn seal(&self, plain: Vec<u8>, aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("system randomness");
        let mut buf = plain;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .expect("sealing in memory does not fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out
    }

    fn open(&self, raw: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let nonce: [u8; NONCE_LEN] = raw.get(1..1 + NONCE_LEN)?.try_into().ok()?;
        let mut buf = raw.get(1 + NONCE_LEN..)?.to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

/// The process's response cache.
#[derive(Debug)]
pub struct ResponseCache {
    local: RwLock<HashMap<Arc<str>, Arc<LocalStage>>>,
    shared: SharedState,
    sealer: Sealer,
    inflight: Arc<Mutex<HashMap<Key, watch::Receiver<()>>>>,
    /// `portico_cache_size_bytes{stage}`: bytes held in process per stage.
    size: prometheus::IntGaugeVec,
}

const LOOKUP: &str = r"
local g = redis.call('GET', KEYS[1]) or '0'
return {g, redis.call('GET', ARGV[1] .. ':' .. g)}
";

impl ResponseCache {
    /// A cache over `shared` (Redis when it has a store, else in process), sealing with
    /// `sealer`, reporting the bytes it holds per stage in `size` (label `stage`).
    pub fn new(shared: SharedState, sealer: Sealer, size: prometheus::IntGaugeVec) -> Self {
        ResponseCache {
            local: RwLock::default(),
            shared,
            sealer,
            inflight: Arc::default(),
            size,
        }
    }

    /// A cache in process with an unregistered gauge (tests).
    pub fn in_process() -> Self {
        let size = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("unregistered", "unregistered"),
            &["stage"],
        )
        .expect("valid metric");
        ResponseCache::new(SharedState::default(), Sealer::random(), size)
    }

    fn report_size(&self, stage: &str, s: &LocalStage) {
        let bytes = i64::try_from(s.entries.weight()).unwrap_or(i64::MAX);
        self.size.with_label_values(&[stage]).set(bytes);
    }

    /// Whether entries live in Redis.
    pub fn is_shared(&self) -> bool {
        self.shared.redis.is_some()
    }

    fn redis(&self) -> Option<&Arc<RedisStore>> {
        self.shared.redis.as_ref()
    }

    /// The in-process store of `stage`, made (or remade, when its budget changed) here.
    fn local_stage(&self, stage: &Arc<str>, budget: u64) -> Arc<LocalStage> {
        if let Some(s) = self.local.read().expect("never poisoned").get(stage)
            && s.budget == budget
        {
            return s.clone();
        }
        let mut all = self.local.write().expect("never poisoned");
        let s = all
            .entry(stage.clone())
            .or_insert_with(|| Arc::new(LocalStage::new(budget)));
        if s.budget != budget {
            // AWS: changing the size recreates the cache (its entries are lost).
            *s = Arc::new(LocalStage::new(budget));
        }
        s.clone()
    }

    /// Looks `key` up in `stage`'s cache (budget `budget` bytes in process).
    pub async fn lookup(&self, stage: &Arc<str>, budget: u64, key: &Key) -> Lookup {
        let Some(redis) = self.redis() else {
            let s = self.local_stage(stage, budget);
            let epoch = s.epoch.load(Ordering::Acquire);
            let found = s.entries.get(key);
            let slot = Slot(
                Place::Local {
                    stage: s.clone(),
                    epoch,
                    key: *key,
                },
                stage.clone(),
            );
            return match found {
                Some(v) if v.expires > Instant::now() => Lookup::Hit(v.entry, slot),
                Some(_) => {
                    s.entries.remove(key);
                    Lookup::Miss(slot)
                }
                None => Lookup::Miss(slot),
            };
        };
        let entry_key = format!("portico:c:{stage}:{}", hex(key));
        let gen_key = format!("portico:cg:{stage}");
        let reply = redis
            .run(|mut conn| {
                let (gen_key, entry_key) = (gen_key.clone(), entry_key.clone());
                async move {
                    redis::Script::new(LOOKUP)
                        .key(gen_key)
                        .arg(entry_key)
                        .invoke_async::<(String, Option<Vec<u8>>)>(&mut conn)
                        .await
                }
            })
            .await;
        match reply {
            Ok((generation, value)) => {
                let full = format!("{entry_key}:{generation}");
                let found = value.and_then(|raw| self.unseal(&raw, full.as_bytes()));
                let slot = Slot(Place::Redis(full), stage.clone());
                match found {
                    Some(e) => Lookup::Hit(Arc::new(e), slot),
                    None => Lookup::Miss(slot),
                }
            }
            Err(e) => {
                self.failed(&e);
                Lookup::Miss(Slot(Place::Nowhere, stage.clone()))
            }
        }
    }

    fn unseal(&self, raw: &[u8], aad: &[u8]) -> Option<Entry> {
        match *raw.first()? {
            PLAIN => Entry::decode(&raw[1..]),
            SEALED => Entry::decode(&self.sealer.open(raw, aad)?),
            _ => None,
        }
    }

    fn failed(&self, e: &StoreError) {
        // The cache's failure rule: whatever --redis-failure-mode says for counters, a
        // cache that does not answer is a miss (the decision is not asked for).
        let _ = self.shared.failed(User::Cache, e);
    }

    /// Stores `entry` where `slot` says, for `ttl` (sealed when `encrypted`, in Redis), then
    /// lets the requests waiting on the key go (`guard`). In process this happens before it
    /// returns; a Redis write is sent from a task of its own.
    pub fn put(
        self: &Arc<Self>,
        slot: Slot,
        entry: Entry,
        ttl: Duration,
        encrypted: bool,
        guard: Option<FillGuard>,
    ) {
        let stage_name = slot.1.clone();
        match slot.0 {
            Place::Nowhere => {}
            Place::Local { stage, epoch, key } => {
                // A flush since the miss: this answer may predate it.
                if stage.epoch.load(Ordering::Acquire) == epoch && entry.weight() <= stage.budget {
                    let expires = Instant::now() + ttl;
                    stage.entries.insert(
                        key,
                        Stored {
                            entry: Arc::new(entry),
                            expires,
                        },
                    );
                    self.report_size(&stage_name, &stage);
                }
            }
            Place::Redis(full) => {
                let me = self.clone();
                tokio::spawn(async move {
                    me.store_redis(full, entry, ttl, encrypted).await;
                    drop(guard);
                });
                return;
            }
        }
        drop(guard);
    }

    async fn store_redis(&self, full: String, entry: Entry, ttl: Duration, encrypted: bool) {
        let Some(redis) = self.redis() else { return };
        let plain = entry.encode();
        let value = if encrypted {
            self.sealer.seal(plain, full.as_bytes())
        } else {
            let mut v = Vec::with_capacity(plain.len() + 1);
            v.push(PLAIN);
            v.extend_from_slice(&plain);
            v
        };
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let reply = redis
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(full)
                    .arg(value)
                    .arg("PX")
                    .arg(ms)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
        if let Err(e) = reply {
            self.failed(&e);
        }
    }

    /// Whose turn it is to fill `key`: the first request that missed it leads, the others
    /// wait for it.
    pub fn turn(&self, key: Key) -> Turn {
        let mut inflight = self.inflight.lock().expect("never poisoned");
        if let Some(rx) = inflight.get(&key) {
            return Turn::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        inflight.insert(key, rx);
        Turn::Lead(FillGuard {
            inflight: self.inflight.clone(),
            key,
            _done: tx,
        })
    }

    /// Flushes `stage`'s cache (AWS FlushStageCache): in process here, and with Redis for
    /// every replica (the stage's generation goes up). Says where.
    pub async fn flush(&self, stage: &str) -> Result<&'static str, StoreError> {
        let local = self
            .local
            .read()
            .expect("never poisoned")
            .get(stage)
            .cloned();
        if let Some(s) = local {
            s.epoch.fetch_add(1, Ordering::AcqRel);
            s.entries.clear();
            self.report_size(stage, &s);
        }
        let Some(redis) = self.redis() else {
            return Ok("process");
        };
        let gen_key = format!("portico:cg:{stage}");
        redis
            .run(|mut conn| async move {
                redis::cmd("INCR")
                    .arg(gen_key)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await?;
        Ok("redis")
    }

    /// Bytes held in process by `stage`'s entries.
    pub fn local_bytes(&self, stage: &str) -> u64 {
        self.local
            .read()
            .expect("never poisoned")
            .get(stage)
            .map_or(0, |s| s.entries.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &'static str) -> Entry {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-multi", HeaderValue::from_static("1"));
        headers.append("x-multi", HeaderValue::from_static("2"));
        Entry {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn entries_survive_encoding_and_sealing_and_refuse_tampering() {
        let e = entry("{\"a\":1}");
        assert_eq!(Entry::decode(&e.encode()), Some(e.clone()));
        assert_eq!(Entry::decode(&e.encode()[..5]), None);
        let sealer = Sealer::random();
        let sealed = sealer.seal(e.encode(), b"portico:c:k:0");
        assert!(
            !sealed.windows(7).any(|w| w == b"{\"a\":1}"),
            "the body is not in clear"
        );
        let mut cache = ResponseCache::in_process();
        cache.sealer = sealer;
        assert_eq!(cache.unseal(&sealed, b"portico:c:k:0"), Some(e));
        // Another key (place) or another process's key: not readable, a miss.
        assert_eq!(cache.unseal(&sealed, b"portico:c:other:0"), None);
        let other = ResponseCache::in_process();
        assert_eq!(other.unseal(&sealed, b"portico:c:k:0"), None);
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(cache.unseal(&flipped, b"portico:c:k:0"), None);
    }

    #[test]
    fn key_files_hold_64_hex_digits() {
        let k = Sealer::parse_key(&format!("{}\n", "0f".repeat(32))).unwrap();
        assert_eq!(k, [0x0f; 32]);
        assert!(
            Sealer::parse_key("abc")
                .unwrap_err()
                .contains("64 hex digits")
        );
        assert!(Sealer::parse_key(&"zz".repeat(32)).is_err());
    }

    /// In process: a stored entry is a hit until its TTL, a flush empties the stage and
    /// also refuses a fill that missed before it, and the budget bounds what is held.
    #[tokio::test]
    async fn local_entries_expire_flush_and_stay_within_the_budget() {
        let cache = Arc::new(ResponseCache::in_process());
        let stage: Arc<str> = Arc::from("stage/default/prod");
        let k = key([b"a".as_slice()]);
        let Lookup::Miss(slot) = cache.lookup(&stage, 1 << 20, &k).await else {
            panic!("empty cache")
        };
        cache.put(slot, entry("one"), Duration::from_secs(60), false, None);
        let Lookup::Hit(e, _) = cache.lookup(&stage, 1 << 20, &k).await else {
            panic!("stored")
        };
        assert_eq!(e.body, "one");
        // Expired: a miss.
        let Lookup::Hit(_, slot) = cache.lookup(&stage, 1 << 20, &k).await else {
            panic!()
        };
        cache.put(slot, entry("two"), Duration::ZERO, false, None);
        assert!(matches!(
            cache.lookup(&stage, 1 << 20, &k).await,
            Lookup::Miss(_)
        ));
        // A fill that missed before a flush does not store after it.
        let Lookup::Miss(before) = cache.lookup(&stage, 1 << 20, &k).await else {
            panic!()
        };
        assert_eq!(cache.flush(&stage).await.unwrap(), "process");
        cache.put(before, entry("old"), Duration::from_secs(60), false, None);
        assert!(matches!(
            cache.lookup(&stage, 1 << 20, &k).await,
            Lookup::Miss(_)
        ));
        // The budget: 64 KiB of ~1 KiB entries holds at most 64 KiB.
        let body: &'static str = Box::leak("x".repeat(1000).into_boxed_str());
        for i in 0..500u32 {
            let k = key([i.to_be_bytes().as_slice()]);
            let Lookup::Miss(slot) = cache.lookup(&stage, 65536, &k).await else {
                panic!()
            };
            cache.put(slot, entry(body), Duration::from_secs(60), false, None);
        }
        let held = cache.local_bytes(&stage);
        assert!(held > 0 && held <= 65536, "{held} bytes held");
    }

    /// Coalescing: the first request to miss a key leads; the others wait until its guard
    /// goes, and the key is free again afterwards.
    #[tokio::test]
    async fn one_request_fills_a_key_and_the_others_wait_for_it() {
        let cache = ResponseCache::in_process();
        let k = key([b"k".as_slice()]);
        let Turn::Lead(guard) = cache.turn(k) else {
            panic!("first")
        };
        let Turn::Wait(mut rx) = cache.turn(k) else {
            panic!("second waits")
        };
        let waiter = tokio::spawn(async move { rx.changed().await.is_err() });
        drop(guard);
        assert!(waiter.await.unwrap(), "woken by the leader's end");
        assert!(matches!(cache.turn(k), Turn::Lead(_)));
    }
}
