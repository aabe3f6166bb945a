//! The stdio face: a client that launched `portcullis stdio … -- server…` talks to us on our
//! stdin/stdout; we talk to the server as a child process or over HTTP through an
//! [`Upstream`].

use crate::relay::{Caller, Relay};
use crate::upstream::{Upstream, UpstreamSpec};
use portcullis_mcp::{codes, error_line, read_line_capped, LineError};
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
    audit: Option<crate::upstream::AuditSink>,
    client_in: R,
    mut client_out: W,
    caps: Caps,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let link = Upstream::start(&spec, relay, tx.clone(), audit).await?;
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            let mut buf = line.into_bytes();
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
    loop {
        match read_line_capped(&mut reader, &mut buf, caps.client_line).await {
            Ok(Some(line)) if line.trim().is_empty() => {}
            Ok(Some(line)) => link.from_client(&line, &caller).await,
            Ok(None) | Err(LineError::Io(_)) => break,
            Err(LineError::TooLong(n)) => {
                let msg = format!(
                    "message of {n} bytes exceeds the {}-byte limit; nothing was forwarded",
                    caps.client_line
                );
                let _ = tx.send(error_line(None, codes::INVALID_REQUEST, &msg));
            }
            Err(LineError::NotUtf8) => {
                let _ = tx.send(error_line(
                    None,
                    codes::PARSE_ERROR,
                    "message is not UTF-8; nothing was forwarded",
                ));
            }
        }
    }
    // Client gone: stop the server, then let the writer drain.
    link.shutdown(Duration::from_secs(2)).await;
    drop(link);
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(3), writer).await;
    Ok(())
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
