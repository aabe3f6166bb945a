//! A stdio upstream: the MCP server as a child process.
//!
//! The child runs in its own process group (so that its own children die with it), its
//! stderr is logged line by line, and it is restarted with exponential back-off after a
//! crash. Shutdown closes its stdin, waits, then sends SIGTERM and finally SIGKILL to the
//! group — some servers (server-everything) ignore end of input.

use super::{BoxFuture, Inbound, Inbox, Transport};
use portcullis_mcp::{read_line_capped, LineError, Message};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

/// How to start the server.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment (upstream credentials).
    pub env: Vec<(String, String)>,
}

/// The writable end of the child, shared by whoever sends to it; `None` while the child is
/// down.
pub type SharedStdin = Arc<Mutex<Option<ChildStdin>>>;

/// A running child.
pub struct Running {
    /// The process.
    pub child: Child,
    /// Its stdout, to read messages from.
    pub stdout: ChildStdout,
}

/// Starts the child in its own process group with piped stdio; its stderr is forwarded to
/// the log. The child's stdin is put into `stdin`.
pub fn spawn(spec: &ChildSpec, stdin: &mut Option<ChildStdin>) -> std::io::Result<Running> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("no server command given"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {program:?}: {e}")))?;
    *stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped");
    if let Some(err) = child.stderr.take() {
        let name = program.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                tracing::info!(target: "upstream", "[{name}] {l}");
            }
        });
    }
    Ok(Running { child, stdout })
}

/// Writes one message line to the child. Errors mean the child is gone.
pub async fn send(stdin: &SharedStdin, line: &str) -> std::io::Result<()> {
    let mut guard = stdin.lock().await;
    let w = guard.as_mut().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotConnected, "the server is restarting")
    })?;
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    w.write_all(&buf).await?;
    w.flush().await
}

/// Stops a child: close stdin, wait `grace`, SIGTERM the group, wait `grace`, SIGKILL.
pub async fn stop(child: &mut Child, stdin: &SharedStdin, grace: Duration) {
    stdin.lock().await.take(); // EOF
    if tokio::time::timeout(grace, child.wait()).await.is_ok() {
        return;
    }
    if let Some(pid) = child.id() {
        signal_group(pid, libc::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
        signal_group(pid, libc::SIGKILL);
    }
    let _ = child.kill().await;
    let _ = child.wait().await;
}

fn signal_group(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals the process group we created for the child.
    unsafe {
        libc::kill(-(pid as libc::pid_t), sig);
    }
}

/// Back-off between restarts: 100 ms doubling to 5 s; reset after a child that lived 30 s.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(100),
        }
    }
}

impl Backoff {
    /// The wait before the next start, given how long the last child lived.
    pub fn wait(&mut self, lived: Duration) -> Duration {
        if lived > Duration::from_secs(30) {
            self.next = Duration::from_millis(100);
        }
        let w = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(5));
        w
    }
}

/// A supervised stdio upstream: lines go to the child's stdin; the child's output goes to
/// the inbox. A crashed child is reported ([`Inbound::Lost`]), restarted with back-off, and
/// announced ([`Inbound::Restarted`]) so that its owner can open the session again.
pub struct StdioTransport {
    stdin: SharedStdin,
    inbox: Inbox,
    shutting: AtomicBool,
    child: Mutex<Option<Child>>,
    server_line_cap: usize,
    /// Counts the children that came back (each after its session was replayed): a message
    /// sent while the child is down waits for the next one.
    generation: tokio::sync::watch::Sender<u64>,
}

/// Longest a message waits for a crashed child to come back before it is refused (a restart
/// takes the back-off — 100 ms at first — plus the server's start-up).
pub const RESTART_WAIT: Duration = Duration::from_secs(5);

impl StdioTransport {
    /// Starts the child and its supervisor.
    pub async fn start(
        spec: ChildSpec,
        inbox: Inbox,
        server_line_cap: usize,
    ) -> std::io::Result<Arc<dyn Transport>> {
        let mut slot = None;
        let first = spawn(&spec, &mut slot)?;
        let t = Arc::new(StdioTransport {
            stdin: Arc::new(Mutex::new(slot)),
            inbox,
            shutting: AtomicBool::new(false),
            child: Mutex::new(None),
            server_line_cap,
            generation: tokio::sync::watch::Sender::new(0),
        });
        let s = t.clone();
        tokio::spawn(async move { s.supervise(spec, first).await });
        Ok(t)
    }

    async fn supervise(self: Arc<Self>, spec: ChildSpec, first: Running) {
        let mut running = Some(first);
        let mut backoff = Backoff::default();
        while let Some(Running { child, stdout }) = running.take() {
            let started = Instant::now();
            *self.child.lock().await = Some(child);
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                match read_line_capped(&mut reader, &mut buf, self.server_line_cap).await {
                    Ok(Some(line)) => {
                        if let Some(m) = Inbound::message(&line, None) {
                            self.inbox.put(m).await;
                        }
                    }
                    Ok(None) | Err(LineError::Io(_)) => break,
                    Err(LineError::TooLong(n)) => tracing::error!(
                        "dropped a {n}-byte line from the server (cap {})",
                        self.server_line_cap
                    ),
                    Err(LineError::NotUtf8) => {
                        tracing::warn!("dropped a non-UTF-8 line from the server")
                    }
                }
            }
            self.stdin.lock().await.take();
            if let Some(mut c) = self.child.lock().await.take() {
                let status = c
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                if !self.shutting.load(Ordering::SeqCst) {
                    tracing::warn!("the server exited ({status})");
                }
            }
            self.inbox
                .put(Inbound::Lost("the server process exited".into()))
                .await;
            let mut lived = started.elapsed();
            while running.is_none() && !self.shutting.load(Ordering::SeqCst) {
                if self.inbox.is_orphaned() {
                    return; // nobody would read the new child
                }
                let wait = backoff.wait(lived);
                lived = Duration::ZERO;
                tracing::warn!("restarting the server in {wait:?}");
                tokio::time::sleep(wait).await;
                if self.shutting.load(Ordering::SeqCst) {
                    break;
                }
                let mut slot = None;
                match spawn(&spec, &mut slot) {
                    Ok(r) => {
                        *self.stdin.lock().await = slot;
                        running = Some(r);
                        // The session is opened again first; then waiting messages go.
                        self.inbox.put(Inbound::Restarted).await;
                        self.generation.send_modify(|g| *g += 1);
                    }
                    Err(e) => tracing::error!("{e}"),
                }
            }
        }
    }
}

impl Transport for StdioTransport {
    fn send(
        &self,
        msg: Box<Message>,
        _up: Option<u64>,
        _extra: Vec<(String, String)>,
    ) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let line = msg.to_json();
            let deadline = tokio::time::Instant::now() + RESTART_WAIT;
            loop {
                let mut back = self.generation.subscribe();
                match send(&self.stdin, &line).await {
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotConnected
                            && !self.shutting.load(Ordering::SeqCst) =>
                    {
                        // The child is down: wait (bounded) for it to come back.
                        match tokio::time::timeout_at(deadline, back.changed()).await {
                            Ok(Ok(())) => continue,
                            _ => {
                                return Err(std::io::Error::new(
                                    e.kind(),
                                    format!(
                                    "the server is restarting and did not come back within {} s",
                                    RESTART_WAIT.as_secs()
                                ),
                                ))
                            }
                        }
                    }
                    r => return r,
                }
            }
        })
    }

    /// Stops the child (stdin EOF, then SIGTERM, then SIGKILL) and the supervisor.
    fn shutdown(&self, grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.shutting.store(true, Ordering::SeqCst);
            self.generation.send_modify(|g| *g += 1); // nobody waits for a restart now
            let child = self.child.lock().await.take();
            if let Some(mut c) = child {
                stop(&mut c, &self.stdin, grace).await;
            } else {
                self.stdin.lock().await.take();
            }
        })
    }
}
