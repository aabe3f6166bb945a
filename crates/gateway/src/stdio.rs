//! The stdio face: a client that launched `portcullis stdio … -- server…` talks to us on our
//! stdin/stdout; we talk to the server as a child process or over HTTP through an
//! [`Connection`].

use crate::connection::{ClientTx, Connection, ToClient};
use crate::relay::{Caller, Relay};
use crate::upstream::UpstreamSpec;
use portcullis_mcp::{codes, error_line, read_line_capped, Kind, LineError, Message};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Size caps for one connection.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// Longest line accepted from the client (bytes).
    pub client_line: usize,
    /// Longest line accepted from the server (bytes).
    pub server_line: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            client_line: 4 << 20,
            server_line: 64 << 20,
        }
    }
}

/// Runs the stdio gateway until the client closes its input; then stops the server.
pub async fn run<R, W>(
    relay: Arc<Relay>,
    caller: Caller,
    spec: UpstreamSpec,
    audit: Option<crate::events::Events>,
    client_in: R,
    mut client_out: W,
    caps: Caps,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ToClient>();
    let to_client = ClientTx::channel(tx.clone());
    let link = Connection::start(&spec, relay, to_client.clone(), audit).await?;
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let mut buf = out.line.into_text().into_bytes();
            buf.push(b'\n');
            if client_out.write_all(&buf).await.is_err() {
                break;
            }
            // Flush only when nothing else is queued: one syscall for a burst.
            if rx.is_empty() && client_out.flush().await.is_err() {
                break;
            }
        }
        let _ = client_out.flush().await;
    });
    let mut reader = BufReader::new(client_in);
    let mut buf = Vec::new();
    let mut era = Era::Undecided;
    loop {
        match read_line_capped(&mut reader, &mut buf, caps.client_line).await {
            Ok(Some(line)) if line.trim().is_empty() => {}
            Ok(Some(line)) => {
                if let Some(line) = bridge(&link, &mut era, line, &to_client).await {
                    link.from_client(&line, &caller).await;
                }
            }
            Ok(None) | Err(LineError::Io(_)) => break,
            Err(e) => {
                let _ = tx.send(unreadable_line(&e, caps.client_line).into());
            }
        }
    }
    // Client gone: stop the server, then let the writer drain.
    link.shutdown(Duration::from_secs(2)).await;
    drop(link);
    drop(to_client);
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(3), writer).await;
    Ok(())
}

/// `portcullis stdio --all`: every server of the gateway's config behind one endpoint
/// ([`crate::aggregate`]), each called as the local user under that server's own policy.
/// Runs until the client closes its input; then stops every server.
pub async fn run_all<R, W>(
    gw: Arc<crate::http::Gateway>,
    label: &str,
    client_in: R,
    client_out: W,
    caps: Caps,
) -> Result<(), String>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ToClient>();
    let session = format!("stdio-{}", std::process::id());
    let members = gw.local_members(label, &session);
    let agg = gw.aggregate(members, ClientTx::channel(tx.clone())).await?;
    let writer = tokio::spawn(write_lines(rx, client_out));
    let mut reader = BufReader::new(client_in);
    let mut buf = Vec::new();
    loop {
        match read_line_capped(&mut reader, &mut buf, caps.client_line).await {
            Ok(Some(line)) if line.trim().is_empty() => {}
            Ok(Some(line)) => agg.from_client(&line).await,
            Ok(None) | Err(LineError::Io(_)) => break,
            Err(e) => {
                let _ = tx.send(unreadable_line(&e, caps.client_line).into());
            }
        }
    }
    agg.shutdown(Duration::from_secs(2)).await;
    drop(agg);
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(3), writer).await;
    Ok(())
}

/// Writes client-bound lines to `out` until every sender is gone.
async fn write_lines<W: AsyncWrite + Unpin>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<ToClient>,
    mut out: W,
) {
    while let Some(t) = rx.recv().await {
        let mut buf = t.line.into_text().into_bytes();
        buf.push(b'\n');
        if out.write_all(&buf).await.is_err() {
            break;
        }
        if rx.is_empty() && out.flush().await.is_err() {
            break;
        }
    }
    let _ = out.flush().await;
}

/// Whether this connection is bridged (a handshake-era client, a 2026-07-28-only server).
enum Era {
    /// Before the client's first message.
    Undecided,
    /// Lines pass as they are.
    Direct,
    /// Bridged; the `_meta` every request carries.
    Bridged(Value),
}

/// The client's line as it goes on, or None when it was answered (or dropped) here. The
/// first message decides: a handshake-era `initialize` to an HTTP server whose
/// `server/discover` lists only stateless versions starts the bridge (see [`crate::bridge`]).
async fn bridge(
    link: &std::sync::Arc<Connection>,
    era: &mut Era,
    line: String,
    to_client: &ClientTx,
) -> Option<String> {
    let answer = |id: &serde_json::value::RawValue, result: &Value| {
        let _ = to_client.send(
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{result}}}",
                id.get()
            )
            .into(),
        );
    };
    match era {
        Era::Direct => Some(line),
        Era::Undecided => {
            *era = Era::Direct;
            let Some(h) = link.http() else {
                return Some(line);
            };
            let Ok(msg) = Message::parse(&line) else {
                return Some(line); // the relay answers bad input
            };
            if msg.method() != Some("initialize") || msg.kind() != Kind::Request {
                return Some(line);
            }
            let Some(discover) = h.discover().await.filter(crate::bridge::modern_only) else {
                return Some(line); // a handshake-era (or dual-era) server: no bridge
            };
            let init = msg.value("params").unwrap_or(Value::Null);
            let (meta, result) = crate::bridge::session(&init, &discover, "upstream");
            tracing::info!(
                "the server speaks only 2026-07-28: this handshake-era client is bridged"
            );
            answer(msg.id().expect("request"), &result);
            *era = Era::Bridged(meta);
            None
        }
        Era::Bridged(meta) => {
            let Ok(mut msg) = Message::parse(&line) else {
                return Some(line); // the relay answers bad input
            };
            let method = msg.method().unwrap_or_default().to_owned();
            match msg.kind() {
                Kind::Request if crate::bridge::answered_here(&method) => {
                    answer(msg.id().expect("request"), &serde_json::json!({}));
                    None
                }
                Kind::Request => {
                    let p = crate::bridge::with_meta(msg.value("params"), meta);
                    msg.set_value("params", &p);
                    Some(msg.to_json())
                }
                Kind::Notification if crate::bridge::dropped(&method) => None,
                _ => Some(line),
            }
        }
    }
}

/// Our own stdin and stdout as non-blocking async streams when they are pipes or sockets (what
/// an MCP client gives a server), so that no read or write goes through tokio's blocking
/// thread pool (a thread hand-off per line); a terminal or file falls back to tokio's
/// `stdin()`/`stdout()`.
pub fn std_streams() -> (
    Box<dyn AsyncRead + Unpin + Send>,
    Box<dyn AsyncWrite + Unpin + Send>,
) {
    use tokio::net::unix::pipe;
    let input: Box<dyn AsyncRead + Unpin + Send> = match dup_std(std::io::stdin().as_fd()) {
        Some(Std::Fifo(f)) => pipe::Receiver::from_file(f)
            .map_or_else(|_| Box::new(tokio::io::stdin()) as _, |r| Box::new(r) as _),
        Some(Std::Socket(s)) => Box::new(s),
        None => Box::new(tokio::io::stdin()),
    };
    let output: Box<dyn AsyncWrite + Unpin + Send> = match dup_std(std::io::stdout().as_fd()) {
        Some(Std::Fifo(f)) => pipe::Sender::from_file(f)
            .map_or_else(|_| Box::new(tokio::io::stdout()) as _, |w| Box::new(w) as _),
        Some(Std::Socket(s)) => Box::new(s),
        None => Box::new(tokio::io::stdout()),
    };
    (input, output)
}

use std::os::fd::AsFd;

enum Std {
    Fifo(std::fs::File),
    Socket(tokio::net::UnixStream),
}

/// A duplicate of a standard descriptor, when it is a pipe or a Unix socket.
fn dup_std(fd: std::os::fd::BorrowedFd<'_>) -> Option<Std> {
    use std::os::unix::fs::FileTypeExt;
    let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
    let kind = file.metadata().ok()?.file_type();
    if kind.is_fifo() {
        Some(Std::Fifo(file))
    } else if kind.is_socket() {
        let s = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(file));
        s.set_nonblocking(true).ok()?;
        tokio::net::UnixStream::from_std(s).ok().map(Std::Socket)
    } else {
        None
    }
}

/// The answer to a client line that could not be read as one (too long, not UTF-8): nothing
/// of it is forwarded. Both stdio faces (one server, `--all`) answer so.
fn unreadable_line(e: &LineError, cap: usize) -> String {
    match e {
        LineError::TooLong(n) => error_line(
            None,
            codes::INVALID_REQUEST,
            &format!("message of {n} bytes exceeds the {cap}-byte limit; nothing was forwarded"),
        ),
        _ => error_line(
            None,
            codes::PARSE_ERROR,
            "message is not UTF-8; nothing was forwarded",
        ),
    }
}
