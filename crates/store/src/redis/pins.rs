//! [`RedisPins`]: the pin store in Redis, so that every replica judges a tool by the same pin
//! and an approval from the CLI or any replica's admin API applies everywhere.

// `PinError::NotQuarantined` carries the whole pin, as in `crate::pins`.
#![allow(clippy::result_large_err)]

use super::Redis;
use crate::pins::{parse, stored, Pin, PinError, PinStore};

/// Pins in a shared Redis: one hash (`P pins`), field `["server","tool"]` (JSON, so that no
/// name can collide with another), value the pin's JSON. A save is a `WATCH`/`MULTI`
/// compare-and-set on the pin's version.
#[derive(Debug)]
pub struct RedisPins {
    redis: Redis,
}

impl RedisPins {
    /// Pins on `redis`.
    pub fn new(redis: Redis) -> RedisPins {
        RedisPins { redis }
    }

    fn key(&self) -> String {
        self.redis.key("pins")
    }
}

fn field(server: &str, tool: &str) -> String {
    serde_json::json!([server, tool]).to_string()
}

impl PinStore for RedisPins {
    fn get(&self, server: &str, tool: &str) -> Result<Option<Pin>, PinError> {
        let text: Option<String> = self
            .redis
            .run(|c| {
                ::redis::cmd("HGET")
                    .arg(self.key())
                    .arg(field(server, tool))
                    .query(c)
            })
            .map_err(PinError::Store)?;
        text.as_deref().map(parse).transpose()
    }

    fn list(&self, server: Option<&str>) -> Result<Vec<Pin>, PinError> {
        let texts: Vec<String> = self
            .redis
            .run(|c| ::redis::cmd("HVALS").arg(self.key()).query(c))
            .map_err(PinError::Store)?;
        let mut pins = texts
            .iter()
            .map(|t| parse(t))
            .collect::<Result<Vec<Pin>, PinError>>()?;
        pins.retain(|p| server.is_none_or(|s| p.server == s));
        pins.sort_by(|a, b| (&a.server, &a.tool).cmp(&(&b.server, &b.tool)));
        Ok(pins)
    }

    fn save(&self, pin: &Pin) -> Result<Pin, PinError> {
        let (p, text) = stored(pin)?;
        let key = self.key();
        let f = field(&pin.server, &pin.tool);
        let out = self
            .redis
            .run(|c| {
                ::redis::transaction(c, std::slice::from_ref(&key), |c, pipe| {
                    let found: Option<String> = ::redis::cmd("HGET").arg(&key).arg(&f).query(c)?;
                    let version = match found.as_deref().map(parse) {
                        None => 0,
                        Some(Ok(old)) => old.version,
                        Some(Err(e)) => return Ok(Some(Err(e))),
                    };
                    if version != pin.version {
                        // Nothing queued: the transaction ends without writing.
                        return Ok(Some(Err(PinError::Conflict)));
                    }
                    pipe.cmd("HSET").arg(&key).arg(&f).arg(&text).ignore();
                    Ok(pipe.query::<Option<()>>(c)?.map(|()| Ok(p.clone())))
                })
            })
            .map_err(PinError::Store)?;
        out
    }
}
