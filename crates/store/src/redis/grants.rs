//! [`RedisGrants`]: the grant store in Redis, so that a grant created, rotated or revoked on
//! any replica (or by the CLI against the same Redis) holds on every replica from the next
//! request on. Each lookup here is one round trip (a script that follows the token's digest
//! to its grant); every change also publishes the grant's id on `P grants:changed` in the
//! same transaction, which [`super::CachedGrants`] listens to.

use super::Redis;
use crate::grants::{admit, by_label, new_grant, token_digest};
use crate::secret::hex;
use crate::{AuthError, Grant, GrantError, GrantStore, Token};
use ::redis::{Connection, RedisResult, Script};
use portcullis_policy::Millis;
use std::collections::HashMap;
use std::sync::LazyLock;

/// Token digest → grant, in one round trip. KEYS[1]: `P gt:<digest>`; ARGV[1]: the prefix
/// (the grant's key is only known once the index is read; a standalone Redis allows that).
static AUTHENTICATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local id = redis.call('GET', KEYS[1])
if not id then return {} end
return redis.call('HGETALL', ARGV[1] .. 'g:' .. id)
"#,
    )
});

/// Grants in a shared Redis (see the key layout in [`super`]).
///
/// Changes are optimistic transactions (`WATCH` the grant or label, read, `MULTI`/`EXEC`,
/// again if another writer came first), so the rules (one live label per server, no rotating
/// or revoking a revoked grant) hold across replicas.
#[derive(Debug)]
pub struct RedisGrants {
    redis: Redis,
}

impl RedisGrants {
    /// Grants on `redis`.
    pub fn new(redis: Redis) -> RedisGrants {
        RedisGrants { redis }
    }

    fn grant_key(&self, id: &str) -> String {
        self.redis.key(&format!("g:{id}"))
    }

    fn token_key(&self, digest: &[u8; 32]) -> String {
        self.redis.key(&format!("gt:{}", hex(digest)))
    }

    fn label_key(&self, server: &str, label: &str) -> String {
        self.redis.key(&format!("gl:{server}:{label}"))
    }

    fn all_key(&self) -> String {
        self.redis.key("grants")
    }

    /// The channel every change of a grant is published on (its id as the message).
    pub(crate) fn channel(&self) -> String {
        changes_channel(&self.redis)
    }

    /// The grant behind a token digest and that grant's current digest, in one round trip.
    pub(crate) fn lookup(&self, digest: &[u8; 32]) -> Result<Option<(Grant, Vec<u8>)>, String> {
        let fields: HashMap<String, String> = self.redis.run(|c| {
            AUTHENTICATE
                .key(self.token_key(digest))
                .arg(self.redis.key(""))
                .invoke(c)
        })?;
        Ok(from_fields(&fields).and_then(|(g, d)| Some((g, unhex(&d)?))))
    }

    /// Runs `f` in a transaction watching `keys`; `f` answers `None` when `EXEC` was aborted
    /// (someone else wrote first), and it runs again.
    fn write<T>(
        &self,
        keys: &[String],
        mut f: impl FnMut(&mut Connection, &mut ::redis::Pipeline) -> RedisResult<Option<T>>,
    ) -> Result<T, GrantError> {
        self.redis
            .run(|c| ::redis::transaction(c, keys, |c, pipe| f(c, pipe)))
            .map_err(GrantError::Store)
    }

    fn read(&self, c: &mut Connection, id: &str) -> RedisResult<Option<(Grant, String)>> {
        let fields: HashMap<String, String> =
            ::redis::cmd("HGETALL").arg(self.grant_key(id)).query(c)?;
        Ok(from_fields(&fields))
    }

    /// Every grant, oldest first (by creation time, then id).
    fn all(&self) -> Result<Vec<Grant>, GrantError> {
        self.redis
            .run(|c| {
                let ids: Vec<String> = ::redis::cmd("ZRANGE")
                    .arg(self.all_key())
                    .arg(0)
                    .arg(-1)
                    .query(c)?;
                let mut p = ::redis::pipe();
                for id in &ids {
                    p.cmd("HGETALL").arg(self.grant_key(id));
                }
                let rows: Vec<HashMap<String, String>> = p.query(c)?;
                Ok(rows
                    .iter()
                    .filter_map(from_fields)
                    .map(|(g, _)| g)
                    .collect())
            })
            .map_err(GrantError::Store)
    }
}

/// `P grants:changed`: where changes of grants are published.
pub(crate) fn changes_channel(redis: &Redis) -> String {
    redis.key("grants:changed")
}

/// A grant (and its token digest, hex) from its hash's fields.
fn from_fields(f: &HashMap<String, String>) -> Option<(Grant, String)> {
    let int = |k: &str| f.get(k).and_then(|v| v.parse::<Millis>().ok());
    Some((
        Grant {
            id: f.get("id")?.clone(),
            label: f.get("label")?.clone(),
            server: f.get("server")?.clone(),
            policy: f.get("policy").cloned(),
            created_at: int("created_at")?,
            expires_at: int("expires_at"),
            revoked_at: int("revoked_at"),
            rotated_at: int("rotated_at"),
        },
        f.get("digest")?.clone(),
    ))
}

/// The hash fields of a grant (absent fields are `None`).
fn to_fields(g: &Grant, digest: &str) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("id", g.id.clone()),
        ("label", g.label.clone()),
        ("server", g.server.clone()),
        ("created_at", g.created_at.to_string()),
        ("digest", digest.to_owned()),
    ];
    for (k, x) in [
        ("expires_at", g.expires_at),
        ("revoked_at", g.revoked_at),
        ("rotated_at", g.rotated_at),
    ] {
        if let Some(x) = x {
            v.push((k, x.to_string()));
        }
    }
    if let Some(p) = &g.policy {
        v.push(("policy", p.clone()));
    }
    v
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    s.len()
        .is_multiple_of(2)
        .then(|| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}

impl GrantStore for RedisGrants {
    fn create(
        &self,
        server: &str,
        label: &str,
        policy: Option<&str>,
        expires_at: Option<Millis>,
        now: Millis,
    ) -> Result<(Grant, Token), GrantError> {
        let (grant, token) = new_grant(server, label, policy, expires_at, now)?;
        let digest = token_digest(token.secret());
        let label_key = self.label_key(server, label);
        let taken = self.write(std::slice::from_ref(&label_key), |c, pipe| {
            let live: bool = ::redis::cmd("EXISTS").arg(&label_key).query(c)?;
            if live {
                return Ok(Some(true));
            }
            pipe.cmd("HSET")
                .arg(self.grant_key(&grant.id))
                .arg(to_fields(&grant, &hex(&digest)))
                .ignore()
                .cmd("SET")
                .arg(self.token_key(&digest))
                .arg(&grant.id)
                .ignore()
                .cmd("SET")
                .arg(&label_key)
                .arg(&grant.id)
                .ignore()
                .cmd("ZADD")
                .arg(self.all_key())
                .arg(grant.created_at)
                .arg(&grant.id)
                .ignore()
                .cmd("PUBLISH")
                .arg(self.channel())
                .arg(&grant.id)
                .ignore();
            Ok(pipe.query::<Option<()>>(c)?.map(|()| false))
        })?;
        if taken {
            return Err(GrantError::Duplicate {
                label: label.to_owned(),
                server: server.to_owned(),
            });
        }
        Ok((grant, token))
    }

    fn list(&self, server: Option<&str>) -> Result<Vec<Grant>, GrantError> {
        let mut all = self.all()?;
        all.retain(|g| server.is_none_or(|s| g.covers(s)));
        Ok(all)
    }

    fn get(&self, id_or_label: &str, server: Option<&str>) -> Result<Grant, GrantError> {
        if let Some((g, _)) = self
            .redis
            .run(|c| self.read(c, id_or_label))
            .map_err(GrantError::Store)?
        {
            return match server {
                Some(s) if !g.covers(s) => {
                    Err(GrantError::NotFound(format!("{id_or_label} on server {s}")))
                }
                _ => Ok(g),
            };
        }
        let matches = self
            .list(server)?
            .into_iter()
            .filter(|g| g.label == id_or_label)
            .collect();
        by_label(id_or_label, matches)
    }

    fn rotate(&self, id: &str, now: Millis) -> Result<(Grant, Token), GrantError> {
        let token = Token::generate().map_err(GrantError::Store)?;
        let digest = token_digest(token.secret());
        let key = self.grant_key(id);
        let grant = self.write(std::slice::from_ref(&key), |c, pipe| {
            let Some((mut g, old)) = self.read(c, id)? else {
                return Ok(Some(Err(GrantError::NotFound(id.to_owned()))));
            };
            if g.revoked_at.is_some() {
                return Ok(Some(Err(GrantError::Revoked(g.id))));
            }
            g.rotated_at = Some(now);
            pipe.cmd("DEL")
                .arg(self.redis.key(&format!("gt:{old}")))
                .ignore()
                .cmd("SET")
                .arg(self.token_key(&digest))
                .arg(id)
                .ignore()
                .cmd("HSET")
                .arg(&key)
                .arg("digest")
                .arg(hex(&digest))
                .arg("rotated_at")
                .arg(now)
                .ignore()
                .cmd("PUBLISH")
                .arg(self.channel())
                .arg(id)
                .ignore();
            Ok(pipe.query::<Option<()>>(c)?.map(|()| Ok(g)))
        })??;
        Ok((grant, token))
    }

    fn revoke(&self, id: &str, now: Millis) -> Result<Grant, GrantError> {
        let key = self.grant_key(id);
        self.write(std::slice::from_ref(&key), |c, pipe| {
            let Some((mut g, _)) = self.read(c, id)? else {
                return Ok(Some(Err(GrantError::NotFound(id.to_owned()))));
            };
            if g.revoked_at.is_some() {
                return Ok(Some(Err(GrantError::Revoked(g.id))));
            }
            g.revoked_at = Some(now);
            // The token index stays, so the token is refused as revoked (not unknown).
            pipe.cmd("HSET")
                .arg(&key)
                .arg("revoked_at")
                .arg(now)
                .ignore()
                .cmd("DEL")
                .arg(self.label_key(&g.server, &g.label))
                .ignore()
                .cmd("PUBLISH")
                .arg(self.channel())
                .arg(id)
                .ignore();
            Ok(pipe.query::<Option<()>>(c)?.map(|()| Ok(g)))
        })?
    }

    fn authenticate(&self, token: &str, server: &str, now: Millis) -> Result<Grant, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let digest = token_digest(token);
        let found = self.lookup(&digest).map_err(AuthError::Store)?;
        admit(found, &digest, server, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let g = Grant {
            id: "grt_0123456789abcdef".into(),
            label: "alice".into(),
            server: "odoo".into(),
            policy: None,
            created_at: 1,
            expires_at: Some(2),
            revoked_at: None,
            rotated_at: Some(3),
        };
        let f: HashMap<String, String> = to_fields(&g, "ab")
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(from_fields(&f), Some((g, "ab".to_owned())));
        assert_eq!(unhex("0aff"), Some(vec![10, 255]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
