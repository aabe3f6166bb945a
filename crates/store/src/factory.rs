//! The one place a deployment's stores are chosen: `[store]` in `portcullis.toml` (or the
//! stdio face's `--data-dir`) becomes counters, grants, approvals, pins and the audit log behind
//! their traits. `serve`, `stdio`, the CLI and the admin API all open their state here.

use crate::{
    ApprovalStore, AuditLog, AuditMode, CachedGrants, GrantStore, MemoryCounters, PinStore, Redis,
    RedisApprovals, RedisCounters, RedisGrants, RedisPins, RedisSessions, SessionStore,
    SqliteApprovals, SqliteCounters, SqliteGrants, SqlitePins, WriteBehindCounters, APPROVALS_FILE,
    PINS_FILE,
};
use portcullis_policy::{CounterStore, Millis};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where counters live.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CounterBackend {
    /// `counters.db` in the data dir: exact across restarts and across processes sharing it.
    #[default]
    Sqlite,
    /// A hash map in this process: the fastest, forgotten on restart, exact within one
    /// process only.
    Memory,
    /// `counters.db` in the data dir, decided in memory and written behind (every 20 ms):
    /// as fast as memory, kept across restarts (a crash forgets at most the last 20 ms of
    /// charges), and owned by one process (a second one sharing the data dir fails to start).
    #[serde(rename = "write-behind")]
    WriteBehind,
}

/// `[store]`: the state backend of a gateway.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `"sqlite"` (default), `"write-behind"` or `"memory"`.
    #[serde(default)]
    pub counters: CounterBackend,
    /// A shared Redis for several replicas: `redis://[user:password@]host:port/db`, or
    /// `rediss://…` for TLS (rustls). When set, counters live there (`counters` is ignored).
    #[serde(default)]
    pub url: Option<String>,
    /// The prefix of every key in that Redis (default `portcullis:`), so that several
    /// gateways can share one Redis.
    #[serde(default)]
    pub prefix: Option<String>,
    /// How long a shared handshake-era session lives unused (`"1h"` by default); only with
    /// `url`.
    #[serde(default)]
    pub session_ttl: Option<String>,
}

/// The stores of a running gateway, each behind its trait.
#[derive(Clone)]
pub struct Stores {
    /// Rate limits and quotas.
    pub counters: Arc<dyn CounterStore>,
    /// Grants (bearer tokens → identity and policy).
    pub grants: Arc<dyn GrantStore>,
    /// Approval requests of `approve_if` calls.
    pub approvals: Arc<dyn ApprovalStore>,
    /// Tool pins (definitions as approved; quarantined changes).
    pub pins: Arc<dyn PinStore>,
    /// Handshake-era sessions shared by the replicas (with `url` only; without it, each
    /// gateway keeps its sessions in memory).
    pub sessions: Option<Arc<dyn SessionStore>>,
}

impl StoreConfig {
    /// Refuses what cannot work: a URL that is not `redis://` or `rediss://`, a prefix
    /// without a URL.
    pub fn check(&self) -> Result<(), String> {
        self.session_ttl()?;
        if self.session_ttl.is_some() && self.url.is_none() {
            return Err(
                "store.session_ttl is set without store.url: sessions are shared only \
                        through a Redis; set store.url or remove store.session_ttl"
                    .into(),
            );
        }
        match (&self.url, &self.prefix) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(
                "store.prefix is set without store.url: the prefix names keys in a shared \
                 Redis; set store.url = \"redis://host:6379/0\" or remove store.prefix"
                    .into(),
            ),
            (Some(u), _) => {
                if u.starts_with("redis://") || u.starts_with("rediss://") {
                    self.redis().map(drop)
                } else {
                    Err(format!(
                        "store.url must start with redis:// or rediss:// (TLS), got {:?}",
                        u.split_once("://")
                            .map_or("a URL without a scheme", |(s, _)| s)
                    ))
                }
            }
        }
    }

    /// `session_ttl` as a duration (the default when unset).
    pub fn session_ttl(&self) -> Result<std::time::Duration, String> {
        match self.session_ttl.as_deref() {
            None => Ok(crate::DEFAULT_SESSION_TTL),
            Some(t) => portcullis_policy::window::parse_duration(t)
                .filter(|ms| *ms > 0)
                .map(std::time::Duration::from_millis)
                .ok_or_else(|| {
                    format!("store.session_ttl {t:?} is not a duration such as \"30m\" or \"1h\"")
                }),
        }
    }

    /// The shared Redis, when `url` is set.
    pub fn redis(&self) -> Result<Option<Redis>, String> {
        self.url
            .as_deref()
            .map(|u| {
                Redis::new(
                    u,
                    self.prefix
                        .as_deref()
                        .unwrap_or(crate::redis::DEFAULT_PREFIX),
                )
            })
            .transpose()
    }

    /// Opens every store: in the shared Redis when `url` is set, else in `data_dir`. The data
    /// dir is created (mode 0700) either way: the audit log stays per replica there.
    pub fn open(&self, data_dir: &Path) -> Result<Stores, String> {
        self.check()?;
        create_data_dir(data_dir)?;
        let absent = || format!("no store in {}", data_dir.display());
        // A serving gateway caches grants (emptied on every change, see `CachedGrants`); the
        // CLI's short-lived commands read through.
        let redis = self.connected()?;
        let grants: Arc<dyn GrantStore> = match &redis {
            Some(redis) => Arc::new(CachedGrants::new(redis.clone())),
            None => self.open_grants(data_dir, true)?.ok_or_else(absent)?,
        };
        let sessions = redis.map(|r| Arc::new(RedisSessions::new(r)) as Arc<dyn SessionStore>);
        Ok(Stores {
            counters: self.open_counters(Some(data_dir))?,
            grants,
            approvals: self.open_approvals(data_dir, true)?.ok_or_else(absent)?,
            pins: self.open_pins(data_dir, true)?.ok_or_else(absent)?,
            sessions,
        })
    }

    /// The pin store: the shared Redis's, or `pins.db` in `data_dir` (`None` as for
    /// [`StoreConfig::open_grants`]).
    pub fn open_pins(
        &self,
        data_dir: &Path,
        create: bool,
    ) -> Result<Option<Arc<dyn PinStore>>, String> {
        if let Some(redis) = self.connected()? {
            return Ok(Some(Arc::new(RedisPins::new(redis))));
        }
        if !create && !data_dir.join(PINS_FILE).exists() {
            return Ok(None);
        }
        create_data_dir(data_dir)?;
        open_pins(data_dir).map(Some)
    }

    /// The grant store: the shared Redis's, or `grants.db` in `data_dir` (`None` when that
    /// file does not exist and `create` is false: the CLI's read-only commands say so).
    pub fn open_grants(
        &self,
        data_dir: &Path,
        create: bool,
    ) -> Result<Option<Arc<dyn GrantStore>>, String> {
        if let Some(redis) = self.connected()? {
            return Ok(Some(Arc::new(RedisGrants::new(redis))));
        }
        if !create && !data_dir.join(crate::grants::GRANTS_FILE).exists() {
            return Ok(None);
        }
        create_data_dir(data_dir)?;
        open_grants(data_dir).map(Some)
    }

    /// The approval store: the shared Redis's, or `approvals.db` in `data_dir` (`None` as for
    /// [`StoreConfig::open_grants`]).
    pub fn open_approvals(
        &self,
        data_dir: &Path,
        create: bool,
    ) -> Result<Option<Arc<dyn ApprovalStore>>, String> {
        if let Some(redis) = self.connected()? {
            return Ok(Some(Arc::new(RedisApprovals::new(redis))));
        }
        if !create && !data_dir.join(APPROVALS_FILE).exists() {
            return Ok(None);
        }
        create_data_dir(data_dir)?;
        open_approvals(data_dir).map(Some)
    }

    /// Where grants and approvals live, for messages: the Redis, or the data dir.
    pub fn place(&self, data_dir: &Path) -> String {
        match self.redis() {
            Ok(Some(r)) => format!("{r}"),
            _ => format!("the data directory {}", data_dir.display()),
        }
    }

    /// The shared Redis, checked to answer (a wrong address or password fails here, at
    /// start, rather than on the first call).
    fn connected(&self) -> Result<Option<Redis>, String> {
        self.check()?;
        let redis = self.redis()?;
        if let Some(r) = &redis {
            r.ping()?;
        }
        Ok(redis)
    }

    /// The counter store: in memory when so configured or when there is no data dir.
    pub fn open_counters(&self, data_dir: Option<&Path>) -> Result<Arc<dyn CounterStore>, String> {
        if let Some(redis) = self.connected()? {
            return Ok(Arc::new(RedisCounters::new(redis)?));
        }
        match (self.counters, data_dir) {
            (CounterBackend::Memory, _) | (_, None) => Ok(Arc::new(MemoryCounters::new())),
            (CounterBackend::Sqlite, Some(dir)) => {
                let path = dir.join(COUNTERS_FILE);
                Ok(Arc::new(
                    SqliteCounters::open(&path).map_err(|e| cannot_open(&path, e))?,
                ))
            }
            (CounterBackend::WriteBehind, Some(dir)) => {
                let path = dir.join(COUNTERS_FILE);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as Millis);
                Ok(Arc::new(
                    WriteBehindCounters::open(&path, now).map_err(|e| cannot_open(&path, e))?,
                ))
            }
        }
    }
}

/// The counters' file name in the data dir.
pub const COUNTERS_FILE: &str = "counters.db";

/// Creates the data dir (and its parents) readable by its owner only.
pub fn create_data_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the data dir {}: {e}", dir.display()))
}

/// The grant store of a data dir.
pub fn open_grants(data_dir: &Path) -> Result<Arc<dyn GrantStore>, String> {
    let path = data_dir.join(crate::grants::GRANTS_FILE);
    Ok(Arc::new(
        SqliteGrants::open(&path).map_err(|e| cannot_open(&path, e))?,
    ))
}

/// The approval store of a data dir.
pub fn open_approvals(data_dir: &Path) -> Result<Arc<dyn ApprovalStore>, String> {
    let path = data_dir.join(APPROVALS_FILE);
    Ok(Arc::new(
        SqliteApprovals::open(&path).map_err(|e| cannot_open(&path, e))?,
    ))
}

/// The pin store of a data dir.
pub fn open_pins(data_dir: &Path) -> Result<Arc<dyn PinStore>, String> {
    let path = data_dir.join(PINS_FILE);
    Ok(Arc::new(
        SqlitePins::open(&path).map_err(|e| cannot_open(&path, e))?,
    ))
}

/// The audit log of a data dir, in `mode`.
pub fn open_audit(data_dir: &Path, mode: AuditMode) -> Result<AuditLog, String> {
    let path = data_dir.join(crate::audit::AUDIT_FILE);
    AuditLog::open(&path, mode)
        .map_err(|e| format!("cannot open the audit log {}: {e}", path.display()))
}

fn cannot_open(path: &Path, e: impl std::fmt::Display) -> String {
    format!("cannot open {}: {e}", PathBuf::from(path).display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_sqlite_and_urls_are_checked() {
        let cfg: StoreConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg.counters, CounterBackend::Sqlite);
        cfg.check().unwrap();
        let redis: StoreConfig = serde_json::from_str(r#"{"url":"redis://127.0.0.1/0"}"#).unwrap();
        redis.check().unwrap();
        let tls: StoreConfig =
            serde_json::from_str(r#"{"url":"rediss://u:p@cache.example:6380/1","prefix":"a:"}"#)
                .unwrap();
        tls.check().unwrap();
        let http: StoreConfig = serde_json::from_str(r#"{"url":"http://127.0.0.1/"}"#).unwrap();
        let e = http.check().unwrap_err();
        assert!(e.contains("redis://") && e.contains("\"http\""), "{e}");
        let prefix: StoreConfig = serde_json::from_str(r#"{"prefix":"a:"}"#).unwrap();
        assert!(prefix.check().unwrap_err().contains("store.url"));
        // Nothing listens on port 1: the start fails with the place, not later per call.
        let down: StoreConfig = serde_json::from_str(r#"{"url":"redis://127.0.0.1:1/0"}"#).unwrap();
        let Err(e) = down.open_counters(None) else {
            panic!("opened a Redis nobody runs")
        };
        assert!(e.contains("127.0.0.1:1"), "{e}");
        let ttl: StoreConfig =
            serde_json::from_str(r#"{"url":"redis://127.0.0.1/0","session_ttl":"30m"}"#).unwrap();
        assert_eq!(
            ttl.session_ttl().unwrap(),
            std::time::Duration::from_secs(1800)
        );
        assert_eq!(cfg.session_ttl().unwrap(), crate::DEFAULT_SESSION_TTL);
        let no_url: StoreConfig = serde_json::from_str(r#"{"session_ttl":"30m"}"#).unwrap();
        assert!(no_url.check().unwrap_err().contains("store.url"));
        let bad_ttl: StoreConfig =
            serde_json::from_str(r#"{"url":"redis://127.0.0.1/0","session_ttl":"soon"}"#).unwrap();
        assert!(bad_ttl.check().unwrap_err().contains("session_ttl"));
        let bad = serde_json::from_str::<StoreConfig>(r#"{"counters":"disk"}"#).unwrap_err();
        assert!(bad.to_string().contains("unknown variant"), "{bad}");
    }

    #[test]
    fn opens_every_store_in_the_data_dir() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let stores = StoreConfig::default().open(&dir.join("data")).unwrap();
        for f in [
            COUNTERS_FILE,
            crate::grants::GRANTS_FILE,
            APPROVALS_FILE,
            PINS_FILE,
        ] {
            assert!(dir.join("data").join(f).exists(), "{f}");
        }
        assert!(stores.grants.list(None).unwrap().is_empty());
        assert!(stores.pins.list(None).unwrap().is_empty());
        let mem = StoreConfig {
            counters: CounterBackend::Memory,
            ..StoreConfig::default()
        };
        mem.open_counters(Some(dir)).unwrap();
    }
}
