//! [`RedisCounters`]: counters in Redis, shared by every replica that uses the same Redis and
//! prefix. A reservation of all the limits of a call is one Lua script (one round trip,
//! `EVALSHA`), and so is a refund; both are atomic on the server, so replicas never see a
//! half-charged call.

use super::{num, Redis};
use crate::batch::Batcher;
use crate::logic::{self, Bucket, Cells};
use ::redis::{ErrorKind, RedisResult, Script, ScriptInvocation, ServerErrorKind, Value};
use portcullis_policy::counters::rolling_retry_after;
use portcullis_policy::{
    CounterKey, CounterStore, Deferred, Held, Millis, Reply, Reservation, ReserveError, Ticket,
    Usage, Window,
};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

/// How long a counter key outlives its window in Redis. Keys expire by Redis's clock while
/// windows follow the callers' clocks, which may disagree by a little between replicas: a
/// replica whose clock lags must still see the newer bucket (the "later stored bucket wins"
/// rule of `logic`). A dead key that lingers is harmless (the rules treat it as dead).
const EXPIRY_GRACE_MS: Millis = 60_000;

/// Lua numbers are doubles: every amount, maximum and sum the script handles stays at or
/// below 2^52, so sums of two are exact. A larger `max` is as good as unlimited.
const LIMIT: u64 = 1 << 52;

/// The reservation script. It RESTATES the rules of `crate::logic` (calendar_state: the
/// stored bucket if it is the current one or a later one, else a fresh one; rolling_instant:
/// stamp `max(now, newest charge)`; first_live: `t + 1 - len`; fits: `used + need <= max`)
/// because an atomic check-and-charge in one round trip must run on the server. The calendar
/// math (bucket bounds), the `need` of a key named twice and the retry arithmetic stay in
/// Rust. The contract suite (`tests/contract.rs`), run against memory, SQLite and Redis
/// alike, is the proof that they agree.
///
/// KEYS[i]: the counter of reservation i. ARGV: now, grace, nonce, then six per reservation:
/// kind (`c` calendar, `r` rolling), amount, need, max, and for `c` the bucket of `now`
/// (start, end), for `r` the window length and 0.
/// Returns `{1, at_1 … at_n}` (bucket start or charge stamp) when everything was charged;
/// `{0, index, 'c', start, end, used}` or `{0, index, 'r', ts_1, amount_1, …}` (the live
/// charges, oldest first) when reservation `index` (0-based) did not fit: nothing charged.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now, grace, nonce = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local function d(x) return string.format('%d', x) end
local function arg(i, j) return ARGV[3 + (i - 1) * 6 + j] end
local function bucket(key, start, stop)
  local s = redis.call('HMGET', key, 'b', 'e', 'u')
  local b = tonumber(s[1])
  if b == start then return b, stop, tonumber(s[3]) end
  if b ~= nil and b > start then return b, tonumber(s[2]), tonumber(s[3]) end
  return start, stop, 0
end
local function charges(key)
  local m = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local out, sum = {}, 0
  for j = 1, #m, 2 do
    local a = tonumber(string.match(m[j], '^(%d+):'))
    sum = sum + a
    out[#out + 1] = m[j + 1]
    out[#out + 1] = d(a)
  end
  return out, sum
end
local at = {}
for i = 1, #KEYS do
  local kind, need, max = arg(i, 1), tonumber(arg(i, 3)), tonumber(arg(i, 4))
  if kind == 'c' then
    local b, e, u = bucket(KEYS[i], tonumber(arg(i, 5)), tonumber(arg(i, 6)))
    if u + need > max then return {0, i - 1, 'c', d(b), d(e), d(u)} end
    at[i] = b
  else
    local len = tonumber(arg(i, 5))
    local t = now
    local newest = redis.call('ZREVRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    if newest[2] and tonumber(newest[2]) > t then t = tonumber(newest[2]) end
    local first = t + 1 - len
    if first < 0 then first = 0 end
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. d(first))
    local live, sum = charges(KEYS[i])
    if sum + need > max then
      local out = {0, i - 1, 'r'}
      for j = 1, #live do out[#out + 1] = live[j] end
      return out
    end
    at[i] = t
  end
end
local out = {1}
for i = 1, #KEYS do
  local kind, amount = arg(i, 1), tonumber(arg(i, 2))
  if kind == 'c' then
    local b, e, u = bucket(KEYS[i], tonumber(arg(i, 5)), tonumber(arg(i, 6)))
    redis.call('HSET', KEYS[i], 'b', d(b), 'e', d(e), 'u', d(u + amount))
    redis.call('PEXPIRE', KEYS[i], d(math.max(e - now, 0) + grace))
  else
    redis.call('ZADD', KEYS[i], d(at[i]), d(amount) .. ':' .. nonce .. ':' .. i)
    redis.call('PEXPIRE', KEYS[i], d(math.max(at[i] + tonumber(arg(i, 5)) - now, 0) + grace))
  end
  out[#out + 1] = d(at[i])
end
return out
"#,
    )
});

/// The refund script, restating `logic::refund`: calendar units go back only into the very
/// bucket charged, never below zero; a rolling charge is removed as one member of that stamp
/// and amount. KEYS[i]: the counter of ticket entry i; ARGV: three per entry: kind, at,
/// amount.
static REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for i = 1, #KEYS do
  local kind, at, amount = ARGV[(i - 1) * 3 + 1], ARGV[(i - 1) * 3 + 2], ARGV[(i - 1) * 3 + 3]
  if kind == 'c' then
    local s = redis.call('HMGET', KEYS[i], 'b', 'u')
    if s[1] == at and tonumber(s[2]) > 0 then
      local u = tonumber(s[2]) - tonumber(amount)
      if u < 0 then u = 0 end
      redis.call('HSET', KEYS[i], 'u', string.format('%d', u))
    end
  else
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[i], at, at)) do
      if string.match(m, '^(%d+):') == amount then
        redis.call('ZREM', KEYS[i], m)
        break
      end
    end
  end
end
return 1
"#,
    )
});

/// Counter store in Redis: exact across every replica sharing the Redis and prefix.
///
/// Keys expire on their own (a calendar bucket after its end, a rolling log after its newest
/// charge leaves the window, each plus `EXPIRY_GRACE_MS`), so Redis holds the live
/// counters only. Any Redis failure is a [`ReserveError::Store`]: the relay denies the call
/// (fail closed), and nothing is assumed charged.
///
/// Reservations of the request path ([`CounterStore::reserve_later`]) made while another is
/// pending go through a thread of their own that sends every reservation queued meanwhile
/// in one pipeline (one round trip for them all; each still its own atomic script), so that
/// under load request threads do not wait for the network; a lone one is made at once.
pub struct RedisCounters {
    core: Arc<Core>,
    /// The pipelining thread, started by the first deferred reservation.
    batcher: OnceLock<Batcher>,
}

impl fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCounters")
            .field("redis", &self.core.redis)
            .finish()
    }
}

/// What the store and its pipelining thread share.
struct Core {
    redis: Redis,
    /// This store's part of each rolling charge's member name (with `seq`), so that two
    /// charges of one stamp and amount stay two members, also across replicas.
    nonce: String,
    seq: AtomicU64,
    /// Reservations of `reserve_later` made or queued and not yet answered.
    pending: AtomicUsize,
}

impl RedisCounters {
    /// Counters on `redis`.
    pub fn new(redis: Redis) -> Result<RedisCounters, String> {
        let bytes = crate::secret::random_bytes::<8>()?;
        Ok(RedisCounters {
            core: Arc::new(Core {
                redis,
                nonce: crate::secret::hex(&bytes),
                seq: AtomicU64::new(0),
                pending: AtomicUsize::new(0),
            }),
            batcher: OnceLock::new(),
        })
    }
}

fn store_err(e: String) -> ReserveError {
    ReserveError::Store(e)
}

impl Core {
    fn key(&self, key: &CounterKey, window: Window) -> String {
        let kind = if window.rolling().is_some() {
            "r:"
        } else {
            "c:"
        };
        self.redis.key(&format!("{kind}{}", key.as_str()))
    }

    /// The reservation script's invocation for `reqs` at `now`.
    fn invocation(&self, reqs: &[Reservation], now: Millis) -> ScriptInvocation<'static> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut inv = RESERVE.prepare_invoke();
        inv.arg(num(now))
            .arg(num(EXPIRY_GRACE_MS))
            .arg(format!("{}.{seq}", self.nonce));
        for (index, r) in reqs.iter().enumerate() {
            let need = logic::need_of(reqs, index);
            let max = r.max.min(LIMIT);
            let need_c = if need > r.max {
                max + 1
            } else {
                need.min(LIMIT)
            };
            inv.key(self.key(&r.key, r.window));
            match r.window {
                Window::Rolling(len) => inv
                    .arg("r")
                    .arg(num(r.amount.min(LIMIT)))
                    .arg(num(need_c))
                    .arg(num(max))
                    .arg(num(len))
                    .arg("0"),
                window => {
                    let (start, end) = logic::calendar_bounds(window, now);
                    inv.arg("c")
                        .arg(num(r.amount.min(LIMIT)))
                        .arg(num(need_c))
                        .arg(num(max))
                        .arg(num(start))
                        .arg(num(end))
                }
            };
        }
        inv
    }

    /// One reservation, on this thread.
    fn reserve(&self, reqs: &[Reservation], now: Millis) -> Result<Ticket, ReserveError> {
        let inv = self.invocation(reqs, now);
        let reply: Vec<Value> = self.redis.run(|c| inv.invoke(c)).map_err(store_err)?;
        ticket(reqs, now, &reply)
    }

    /// A batch of reservations in one pipeline (one round trip), each its own script run;
    /// their results in the order of `jobs`. A script Redis has lost (restarted, flushed) is
    /// refused with `NOSCRIPT` (it did not run): it is loaded and those reservations are sent
    /// again. A failure to send or read fails the whole batch, closed, after one timeout at
    /// most (the connection is dropped and the cool-off starts, as for a single call).
    fn reserve_batch(&self, jobs: &[Deferred]) -> Vec<Result<Ticket, ReserveError>> {
        let invs: Vec<ScriptInvocation<'static>> = jobs
            .iter()
            .map(|j| self.invocation(&j.reqs, j.now))
            .collect();
        let answers = self.redis.run(|c| {
            let all: Vec<usize> = (0..invs.len()).collect();
            let mut out = exchange(c, &invs, &all)?;
            let lost: Vec<usize> = (0..out.len())
                .filter(|&i| matches!(&out[i], Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)))
                .collect();
            if !lost.is_empty() {
                RESERVE.load(c)?;
                for (i, answer) in lost.iter().zip(exchange(c, &invs, &lost)?) {
                    out[*i] = answer;
                }
            }
            Ok(out)
        });
        match answers {
            Err(e) => jobs.iter().map(|_| Err(store_err(e.clone()))).collect(),
            Ok(out) => jobs
                .iter()
                .zip(out)
                .map(|(j, answer)| match answer {
                    Ok(Value::Array(reply)) => ticket(&j.reqs, j.now, &reply),
                    Ok(_) => Err(bad_reply()),
                    Err(e) => Err(store_err(self.redis.describe(&e))),
                })
                .collect(),
        }
    }
}

/// Sends the invocations `which` of `invs` as one pipeline and reads their answers (a server
/// error is that script's answer), stopping at the first answer that cannot be read: the
/// redis crate's own pipeline reads on after a failure, one timeout per command, so a hung
/// Redis would hold a batch of a hundred for fifty seconds.
fn exchange(
    c: &mut ::redis::Connection,
    invs: &[ScriptInvocation<'static>],
    which: &[usize],
) -> RedisResult<Vec<RedisResult<Value>>> {
    let mut pipe = ::redis::pipe();
    for &i in which {
        pipe.invoke_script(&invs[i]);
    }
    c.send_packed_command(&pipe.get_packed_pipeline())?;
    which
        .iter()
        .map(|_| c.recv_response().map(Value::extract_error))
        .collect()
}

/// The ticket (or the refusal) the reservation script's `reply` stands for.
fn ticket(reqs: &[Reservation], now: Millis, reply: &[Value]) -> Result<Ticket, ReserveError> {
    let ints = |vs: &[Value]| vs.iter().map(int).collect::<Result<Vec<u64>, _>>();
    match reply.split_first() {
        Some((ok, ats)) if int(ok)? == 1 && ats.len() == reqs.len() => Ok(Ticket {
            held: reqs
                .iter()
                .zip(ints(ats)?)
                .map(|(r, at)| Held {
                    key: r.key.clone(),
                    window: r.window,
                    at,
                    amount: r.amount,
                })
                .collect(),
        }),
        Some((_, [index, kind, rest @ ..])) => {
            let index = usize::try_from(int(index)?).map_err(|_| bad_reply())?;
            let r = reqs.get(index).ok_or_else(bad_reply)?;
            let need = logic::need_of(reqs, index);
            let rest = ints(rest)?;
            let retry_after_ms = match (text(kind)?.as_str(), r.window, rest.as_slice()) {
                ("c", _, &[start, end, used]) => {
                    logic::calendar_retry_after(&Bucket { start, end, used }, need, r.max, now)
                }
                ("r", Window::Rolling(len), live) => {
                    let live: Vec<(Millis, u64)> =
                        live.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                    rolling_retry_after(&live, len, r.max, need, now)
                }
                _ => return Err(bad_reply()),
            };
            Err(ReserveError::Exhausted {
                index,
                retry_after_ms,
            })
        }
        _ => Err(bad_reply()),
    }
}

impl CounterStore for RedisCounters {
    fn reserve(&self, reqs: &[Reservation], now: Millis) -> Result<Ticket, ReserveError> {
        if reqs.is_empty() {
            return Ok(Ticket::default());
        }
        self.core.reserve(reqs, now)
    }

    fn defers(&self) -> bool {
        true
    }

    /// The only reservation pending: made at once, on the caller's thread (a lone call pays
    /// no hand-over to another thread and back). Others pending: queued for the pipelining
    /// thread, so that while one caller's thread waits for Redis, every other's goes on.
    fn reserve_later(&self, reqs: Vec<Reservation>, now: Millis, reply: Reply) {
        if reqs.is_empty() {
            return reply(reqs, Ok(Ticket::default()));
        }
        if self.core.pending.fetch_add(1, Ordering::AcqRel) == 0 {
            let r = self.core.reserve(&reqs, now);
            self.core.pending.fetch_sub(1, Ordering::AcqRel);
            return reply(reqs, r);
        }
        let batcher = self.batcher.get_or_init(|| {
            let core = Arc::clone(&self.core);
            Batcher::start("redis-counters", move |jobs| {
                let results = core.reserve_batch(jobs);
                core.pending.fetch_sub(jobs.len(), Ordering::AcqRel);
                results
            })
        });
        batcher.queue(Deferred { reqs, now, reply });
    }

    fn refund(&self, ticket: &Ticket, _now: Millis) -> Result<(), ReserveError> {
        if ticket.held.is_empty() {
            return Ok(());
        }
        let mut inv = REFUND.prepare_invoke();
        for h in &ticket.held {
            inv.key(self.core.key(&h.key, h.window))
                .arg(if h.window.rolling().is_some() {
                    "r"
                } else {
                    "c"
                })
                .arg(num(h.at))
                .arg(num(h.amount.min(LIMIT)));
        }
        self.core
            .redis
            .run(|c| inv.invoke::<Value>(c))
            .map(drop)
            .map_err(store_err)
    }

    fn usage(&self, key: &CounterKey, window: Window, now: Millis) -> Result<Usage, ReserveError> {
        let k = self.core.key(key, window);
        let mut snap = Snapshot::default();
        if window.rolling().is_some() {
            let members: Vec<(String, f64)> = self
                .core
                .redis
                .run(|c| {
                    ::redis::cmd("ZRANGE")
                        .arg(&k)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query(c)
                })
                .map_err(store_err)?;
            for (member, score) in members {
                let amount = member
                    .split(':')
                    .next()
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(bad_reply)?;
                snap.events.push((score as Millis, amount));
            }
        } else {
            let (b, u): (Option<u64>, Option<u64>) = self
                .core
                .redis
                .run(|c| ::redis::cmd("HMGET").arg(&k).arg("b").arg("u").query(c))
                .map_err(store_err)?;
            snap.bucket = b.zip(u);
        }
        // The rules of what a call at `now` would see live once, in `logic`.
        logic::usage(&mut snap, key, window, now)
    }
}

fn bad_reply() -> ReserveError {
    ReserveError::Store("redis: unexpected answer from the counter script".into())
}

fn int(v: &Value) -> Result<u64, ReserveError> {
    match v {
        Value::Int(i) => u64::try_from(*i).map_err(|_| bad_reply()),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad_reply),
        _ => Err(bad_reply()),
    }
}

fn text(v: &Value) -> Result<String, ReserveError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| bad_reply()),
        Value::SimpleString(s) => Ok(s.clone()),
        _ => Err(bad_reply()),
    }
}

/// One counter as read from Redis, for `logic::usage` (read-only).
#[derive(Default)]
struct Snapshot {
    bucket: Option<(Millis, u64)>,
    /// Rolling charges, oldest first.
    events: Vec<(Millis, u64)>,
}

impl Cells for Snapshot {
    fn bucket(&mut self, _: &CounterKey) -> Result<Option<(Millis, u64)>, ReserveError> {
        Ok(self.bucket)
    }

    fn update_bucket(
        &mut self,
        _: &CounterKey,
        _: impl FnOnce(Option<(Millis, u64)>) -> Option<Bucket>,
    ) -> Result<(), ReserveError> {
        Err(read_only())
    }

    fn newest_event(&mut self, _: &CounterKey) -> Result<Option<Millis>, ReserveError> {
        Ok(self.events.last().map(|&(ts, _)| ts))
    }

    fn live_sum(&mut self, key: &CounterKey, first_live: Millis) -> Result<u64, ReserveError> {
        Ok(self
            .live_events(key, first_live)?
            .iter()
            .fold(0, |s: u64, &(_, a)| s.saturating_add(a)))
    }

    fn live_events(
        &mut self,
        _: &CounterKey,
        first_live: Millis,
    ) -> Result<Vec<(Millis, u64)>, ReserveError> {
        Ok(self
            .events
            .iter()
            .copied()
            .filter(|&(ts, _)| ts >= first_live)
            .collect())
    }

    fn push_event(
        &mut self,
        _: &CounterKey,
        _: Millis,
        _: u64,
        _: Millis,
    ) -> Result<(), ReserveError> {
        Err(read_only())
    }

    fn remove_event(&mut self, _: &CounterKey, _: Millis, _: u64) -> Result<(), ReserveError> {
        Err(read_only())
    }
}

fn read_only() -> ReserveError {
    ReserveError::Store("redis: a usage snapshot is read-only".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_bench::redis_server::RedisServer;

    /// A pipelined batch that Redis refuses with `NOSCRIPT` (its script cache flushed: none
    /// of the scripts ran) loads the script and sends those reservations again: each is
    /// charged once.
    #[test]
    fn a_batch_refused_for_a_lost_script_is_sent_again() {
        let Some(server) = RedisServer::start(&[]) else {
            return;
        };
        let store = RedisCounters::new(Redis::new(&server.url(), "batch:").unwrap()).unwrap();
        let key = CounterKey::from_stored("calls".into());
        let r = Reservation {
            key: key.clone(),
            window: Window::Day,
            max: 100,
            amount: 1,
        };
        let now = 1_795_348_800_000;
        store.reserve(std::slice::from_ref(&r), now).unwrap(); // the script is loaded
        server.flush_scripts();
        let jobs: Vec<Deferred> = (0..10)
            .map(|_| Deferred {
                reqs: vec![r.clone()],
                now,
                reply: Box::new(|_, _| {}),
            })
            .collect();
        for (i, res) in store.core.reserve_batch(&jobs).into_iter().enumerate() {
            res.unwrap_or_else(|e| panic!("reservation {i}: {e}"));
        }
        assert_eq!(store.usage(&key, Window::Day, now).unwrap().used, 11);
    }
}
