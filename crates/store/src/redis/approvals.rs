//! [`RedisApprovals`]: the approval store in Redis, so that a call held on one replica can be
//! approved from any replica or the CLI, and its identical retry passes exactly once wherever
//! it lands, even when two retries race on two replicas.

// `ApprovalError::NotPending` carries the whole approval, as in `crate::approvals` (errors
// are rare and on the admin path).
#![allow(clippy::result_large_err)]

use super::Redis;
use crate::approvals::{answering, new_id, new_request};
use crate::{
    Approval, ApprovalCheck, ApprovalError, ApprovalRequest, ApprovalStatus, ApprovalStore,
};
use ::redis::{Connection, Pipeline, RedisResult};
use portcullis_policy::Millis;

/// Approvals in a shared Redis (see the key layout in [`super`]): each request a JSON
/// string, indexed by fingerprint, by creation time, and in the set of open (pending or
/// approved) ones that expiry scans.
///
/// Every change is an optimistic transaction: `WATCH` the fingerprint's index (or the open
/// set) and every request read, decide in Rust, `MULTI`/`EXEC` the writes, and start again
/// when another replica wrote first. Of two retries racing to consume one approval, the
/// second one's `EXEC` is aborted (the approval it read changed), and its second attempt sees
/// it consumed: exactly one passes.
#[derive(Debug)]
pub struct RedisApprovals {
    redis: Redis,
}

impl RedisApprovals {
    /// Approvals on `redis`.
    pub fn new(redis: Redis) -> RedisApprovals {
        RedisApprovals { redis }
    }

    fn key(&self, id: &str) -> String {
        self.redis.key(&format!("a:{id}"))
    }

    fn fingerprint_key(&self, fp: &str) -> String {
        self.redis.key(&format!("af:{fp}"))
    }

    fn all_key(&self) -> String {
        self.redis.key("approvals")
    }

    fn open_key(&self) -> String {
        self.redis.key("ap:open")
    }

    /// Watches and reads the requests `ids`.
    fn load(&self, c: &mut Connection, ids: &[String], watch: bool) -> RedisResult<Vec<Approval>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        if watch {
            ::redis::cmd("WATCH").arg(&keys).exec(c)?;
        }
        let texts: Vec<Option<String>> = ::redis::cmd("MGET").arg(&keys).query(c)?;
        texts
            .into_iter()
            .flatten()
            .map(|t| serde_json::from_str(&t).map_err(corrupt))
            .collect()
    }

    /// Queues the write of `a` (and keeps the open set in step with its status).
    fn put(&self, pipe: &mut Pipeline, a: &Approval) -> Result<(), ApprovalError> {
        let json = serde_json::to_string(a).map_err(|e| ApprovalError::Store(e.to_string()))?;
        pipe.cmd("SET").arg(self.key(&a.id)).arg(json).ignore();
        let open = matches!(a.status, ApprovalStatus::Pending | ApprovalStatus::Approved);
        pipe.cmd(if open { "SADD" } else { "SREM" })
            .arg(self.open_key())
            .arg(&a.id)
            .ignore();
        Ok(())
    }

    /// Marks what has lapsed among `list` expired (queued on `pipe`); returns those.
    fn expire(
        &self,
        pipe: &mut Pipeline,
        list: &mut [Approval],
        now: Millis,
    ) -> Result<Vec<Approval>, ApprovalError> {
        let mut lapsed = Vec::new();
        for a in list.iter_mut().filter(|a| a.lapsed(now)) {
            a.status = ApprovalStatus::Expired;
            self.put(pipe, a)?;
            lapsed.push(a.clone());
        }
        Ok(lapsed)
    }

    /// Runs `f` in a transaction watching `keys` until its `EXEC` goes through.
    fn write<T>(
        &self,
        keys: &[String],
        mut f: impl FnMut(&mut Connection, &mut Pipeline) -> RedisResult<Result<T, ApprovalError>>,
    ) -> Result<T, ApprovalError> {
        self.redis
            .run(|c| {
                ::redis::transaction(c, keys, |c, pipe| {
                    let out = match f(c, pipe)? {
                        Ok(out) => out,
                        Err(e) => return Ok(Some(Err(e))),
                    };
                    Ok(pipe.query::<Option<()>>(c)?.map(|()| Ok(out)))
                })
            })
            .map_err(ApprovalError::Store)?
    }
}

fn corrupt(e: serde_json::Error) -> ::redis::RedisError {
    ::redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("a stored approval is not readable: {e}"),
    ))
}

impl ApprovalStore for RedisApprovals {
    fn check(&self, req: &ApprovalRequest, now: Millis) -> Result<ApprovalCheck, ApprovalError> {
        let id = new_id()?;
        let fp_key = self.fingerprint_key(&req.fingerprint);
        self.write(std::slice::from_ref(&fp_key), |c, pipe| {
            let ids: Vec<String> = ::redis::cmd("SMEMBERS").arg(&fp_key).query(c)?;
            let list = self.load(c, &ids, true)?;
            Ok((|| {
                // Lapsed ones are left for `expire_lapsed` (and its audit records):
                // `answering` reads the times itself.
                Ok(match answering(&list, now).cloned() {
                    Some(mut a) if a.status == ApprovalStatus::Approved => {
                        a.status = ApprovalStatus::Consumed;
                        a.consumed_at = Some(now);
                        self.put(pipe, &a)?;
                        ApprovalCheck::Approved(a)
                    }
                    Some(a) if a.status == ApprovalStatus::Denied => ApprovalCheck::Denied(a),
                    Some(a) => ApprovalCheck::Pending {
                        approval: a,
                        new: false,
                    },
                    None => {
                        let a = new_request(req, id.clone(), now);
                        self.put(pipe, &a)?;
                        pipe.cmd("SADD").arg(&fp_key).arg(&a.id).ignore();
                        pipe.cmd("ZADD")
                            .arg(self.all_key())
                            .arg(a.created_at)
                            .arg(&a.id)
                            .ignore();
                        ApprovalCheck::Pending {
                            approval: a,
                            new: true,
                        }
                    }
                })
            })())
        })
    }

    fn expire_lapsed(&self, now: Millis) -> Result<Vec<Approval>, ApprovalError> {
        let open = self.open_key();
        self.write(std::slice::from_ref(&open), |c, pipe| {
            let ids: Vec<String> = ::redis::cmd("SMEMBERS").arg(&open).query(c)?;
            let mut list = self.load(c, &ids, true)?;
            Ok(self.expire(pipe, &mut list, now))
        })
    }

    fn list(
        &self,
        status: Option<ApprovalStatus>,
        now: Millis,
    ) -> Result<Vec<Approval>, ApprovalError> {
        // Read only: lapsed ones are shown expired, written by `expire_lapsed`.
        let all = self
            .redis
            .run(|c| {
                let ids: Vec<String> = ::redis::cmd("ZREVRANGE")
                    .arg(self.all_key())
                    .arg(0)
                    .arg(-1)
                    .query(c)?;
                self.load(c, &ids, false)
            })
            .map_err(ApprovalError::Store)?;
        Ok(all
            .into_iter()
            .map(|a| a.as_of(now))
            .filter(|a| status.is_none_or(|s| a.status == s))
            .collect())
    }

    fn get(&self, id: &str) -> Result<Approval, ApprovalError> {
        self.redis
            .run(|c| self.load(c, &[id.to_owned()], false))
            .map_err(ApprovalError::Store)?
            .pop()
            .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))
    }

    fn approve(
        &self,
        id: &str,
        by: &str,
        valid_for_ms: Millis,
        now: Millis,
    ) -> Result<Approval, ApprovalError> {
        self.decide(id, now, |a| {
            a.status = ApprovalStatus::Approved;
            a.decided_at = Some(now);
            a.decided_by = Some(by.to_owned());
            a.valid_until = Some(now.saturating_add(valid_for_ms));
        })
    }

    fn deny(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Approval, ApprovalError> {
        self.decide(id, now, |a| {
            a.status = ApprovalStatus::Denied;
            a.decided_at = Some(now);
            a.decided_by = Some(by.to_owned());
            a.decision_reason = Some(reason.to_owned());
        })
    }
}

impl RedisApprovals {
    /// Applies a human's decision to the pending, unexpired request `id`.
    fn decide(
        &self,
        id: &str,
        now: Millis,
        f: impl Fn(&mut Approval),
    ) -> Result<Approval, ApprovalError> {
        let key = self.key(id);
        self.write(std::slice::from_ref(&key), |c, pipe| {
            let found = self.load(c, &[id.to_owned()], false)?.pop();
            Ok((|| {
                let mut a = found
                    .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?
                    .as_of(now);
                if a.status != ApprovalStatus::Pending {
                    return Err(ApprovalError::NotPending(a));
                }
                f(&mut a);
                self.put(pipe, &a)?;
                Ok(a)
            })())
        })
    }
}
