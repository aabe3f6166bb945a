//! Handshake-era sessions shared by the replicas of one gateway (`[store] url`): the replica
//! that opens a session records what continuing it needs ([`SharedSession`]); a request with
//! that `Mcp-Session-Id` on any replica finds the record (refreshing its TTL), and a replica
//! without an upstream connection for it opens one and replays the client's `initialize`
//! and `notifications/initialized` (a bridged session rides the server's shared stateless
//! connection instead). Each replica thus has its own upstream session (a stdio child, or an
//! HTTP upstream session) for the same client session. `DELETE` ends the record everywhere;
//! a replica that still holds a connection for a session the store no longer knows drops it
//! at that session's next request, which gets 404.
//!
//! Every request of a shared session reads its record (one round trip, `GETEX`), so that a
//! session ended or expired anywhere is refused everywhere. When the store cannot answer,
//! the request is refused with 503; nothing is forwarded. At most once a minute (or once
//! per TTL, if shorter; on a request), a sweep closes this replica's connections of sessions the store no longer has
//! (ended on another replica, or expired), so a client that moved on leaves no upstream
//! child behind for longer than its session's TTL.

use super::runtime::ServerRt;
use super::session::Session;
use super::{random_hex, rpc_status, Gateway};
use crate::relay::Caller;
use axum::http::StatusCode;
use axum::response::Response;
use portcullis_mcp::{codes, error_line, Message};
use portcullis_policy::sync::LockExt;
use portcullis_store::{SessionStore, SharedSession};
use std::sync::Arc;
use std::time::Duration;

/// The shared session store of a gateway, with the TTL of unused sessions.
pub(super) struct Shared {
    store: Arc<dyn SessionStore>,
    ttl: Duration,
    /// Resumptions on this replica, one at a time (two requests of one session arriving
    /// together must not open two upstream sessions).
    resuming: tokio::sync::Mutex<()>,
    /// When the last sweep started.
    swept: std::sync::Mutex<std::time::Instant>,
}

/// How often a replica looks for connections of sessions that ended elsewhere.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Shared {
    pub(super) fn new(store: Arc<dyn SessionStore>, ttl: Duration) -> Shared {
        Shared {
            store,
            ttl,
            resuming: tokio::sync::Mutex::new(()),
            swept: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }
}

/// Closes this replica's connections of shared sessions the store no longer has; runs on its
/// own task, at most once per [`SWEEP_EVERY`] (or per TTL, when that is shorter).
fn sweep(gw: &Arc<Gateway>, sh: &Shared) {
    {
        let mut last = sh.swept.lock_or_recover();
        if last.elapsed() < SWEEP_EVERY.min(sh.ttl) {
            return;
        }
        *last = std::time::Instant::now();
    }
    let gw = gw.clone();
    tokio::spawn(async move {
        let Some(sh) = gw.shared.get() else { return };
        let ids = gw.rt.shared_ids();
        let Ok(live) = sh.store.live(&ids) else {
            return;
        };
        for (id, live) in ids.iter().zip(live) {
            if !live {
                close_here(&gw, id);
            }
        }
    });
}

/// Forgets session `id` on this replica and closes its upstream connection.
fn close_here(gw: &Gateway, id: &str) {
    if let Some(s) = gw.rt.end(id) {
        if s.bridged.is_none() {
            let conn = s.conn.clone();
            tokio::spawn(async move { conn.link.shutdown(Duration::from_secs(2)).await });
        }
    }
}

/// The key of a new session's `scope = "session"` counters (the same on every replica).
pub(super) fn counter_key() -> String {
    format!("session-{}", random_hex(8))
}

/// The session `id` for a request of `caller` to `srv`: this replica's, or one opened on
/// another replica and resumed here; `None` when no replica knows it (or it belongs to
/// another server or caller): the caller answers 404.
pub(super) async fn find(
    gw: &Arc<Gateway>,
    srv: &Arc<ServerRt>,
    caller: &Caller,
    id: &str,
) -> Result<Option<Arc<Session>>, Box<Response>> {
    let local = gw.rt.session(id);
    // A session answers only its own server and grant.
    let owned = |s: &Session| s.server.name == srv.name && s.caller.grant_id == caller.grant_id;
    let Some(sh) = gw.shared.get() else {
        return Ok(local.filter(|s| owned(s)));
    };
    if let Some(s) = &local {
        if !s.shared {
            return Ok(local.filter(|s| owned(s)));
        }
    }
    sweep(gw, sh);
    let record = sh.store.touch(id, sh.ttl).map_err(|e| unavailable(&e))?;
    let Some(record) = record else {
        // Ended or expired elsewhere: this replica lets its connection go too.
        if local.is_some() {
            close_here(gw, id);
        }
        return Ok(None);
    };
    if record.server != srv.name || record.grant_id != caller.grant_id {
        return Ok(None);
    }
    if let Some(s) = local {
        return Ok(Some(s));
    }
    let _one = sh.resuming.lock().await;
    if let Some(s) = gw.rt.session(id) {
        return Ok(Some(s));
    }
    let s = resume(gw, srv, caller, record).await?;
    gw.rt.open(id.to_owned(), s.clone());
    tracing::debug!(server = %srv.name, "session resumed from the shared store");
    Ok(Some(s))
}

/// A session of another replica, continued here: an upstream connection of this replica,
/// opened with the client's own `initialize`.
async fn resume(
    gw: &Gateway,
    srv: &Arc<ServerRt>,
    caller: &Caller,
    record: SharedSession,
) -> Result<Arc<Session>, Box<Response>> {
    let mut caller = caller.clone();
    caller.session_id = record.counter_key.clone();
    let session = |conn, bridged| {
        Arc::new(Session {
            server: srv.clone(),
            caller: caller.clone(),
            conn,
            bridged,
            shared: true,
            legacy: false,
        })
    };
    if let Some(meta) = record.bridged {
        let conn = srv
            .modern
            .get_or_try_init(|| gw.connect(srv))
            .await
            .map_err(|e| bad_gateway(&format!("cannot reach the upstream server: {e}")))?;
        return Ok(session(conn.clone(), Some(meta)));
    }
    let conn = gw
        .connect(srv)
        .await
        .map_err(|e| bad_gateway(&format!("cannot start the upstream server: {e}")))?;
    let Ok(mut init) = Message::parse(&record.initialize) else {
        return Err(bad_gateway(
            "the session's stored initialize is not readable",
        ));
    };
    let rid = format!("\"portcullis-resume-{}\"", random_hex(8));
    init.set_id(&serde_json::value::RawValue::from_string(rid.clone()).expect("a JSON string"));
    let mut rx = conn.router.wait_for(&rid, None);
    conn.link.from_client(&init.to_json(), &caller).await;
    let mut accepted = false;
    while let Ok(Some(l)) = tokio::time::timeout(gw.timeout, rx.recv()).await {
        if l.is_response() {
            accepted = l.msg.get("result").is_some();
            break;
        }
    }
    conn.router.forget(&rid);
    if !accepted {
        conn.link.shutdown(Duration::from_secs(2)).await;
        return Err(bad_gateway(
            "the upstream server did not accept the session's initialize on this replica",
        ));
    }
    conn.link
        .from_client(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            &caller,
        )
        .await;
    Ok(session(conn, None))
}

/// Records a session just opened here, so that every replica can continue it; when the
/// store refuses, the session is closed here too and the client gets 503.
pub(super) async fn record(
    gw: &Gateway,
    id: &str,
    s: &Session,
    initialize: &str,
) -> Result<(), Box<Response>> {
    let Some(sh) = gw.shared.get() else {
        return Ok(());
    };
    let rec = SharedSession {
        server: s.server.name.clone(),
        grant_id: s.caller.grant_id.clone(),
        counter_key: s.caller.session_id.clone(),
        initialize: initialize.to_owned(),
        bridged: s.bridged.clone(),
    };
    if let Err(e) = sh.store.put(id, &rec, sh.ttl) {
        gw.rt.end(id);
        if s.bridged.is_none() {
            s.conn.link.shutdown(Duration::from_secs(2)).await;
        }
        return Err(unavailable(&e));
    }
    Ok(())
}

/// Ends session `id` on every replica (its record); this replica's connection is the
/// caller's to close.
pub(super) fn end(gw: &Gateway, id: &str) -> Result<(), Box<Response>> {
    match gw.shared.get() {
        Some(sh) => sh.store.end(id).map_err(|e| unavailable(&e)),
        None => Ok(()),
    }
}

/// 503: the shared session store did not answer; nothing was forwarded.
fn unavailable(e: &str) -> Box<Response> {
    tracing::warn!("session store: {e}");
    Box::new(rpc_status(
        StatusCode::SERVICE_UNAVAILABLE,
        error_line(
            None,
            codes::INTERNAL_ERROR,
            "the session store is unavailable; nothing was forwarded, retry later",
        ),
    ))
}

fn bad_gateway(why: &str) -> Box<Response> {
    Box::new(rpc_status(
        StatusCode::BAD_GATEWAY,
        error_line(None, codes::INTERNAL_ERROR, why),
    ))
}
