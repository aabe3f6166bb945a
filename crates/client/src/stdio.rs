//! Line-delimited JSON-RPC over pipes: a stdio server started as a child process (in its own
//! process group, stopped with the gateway's EOF → SIGTERM → SIGKILL), or any byte stream
//! the caller already has. For a child, what it wrote besides JSON-RPC — a first stray line
//! on stdout, the last lines of stderr, its exit status — is kept to explain a failure
//! ([`Closed`]).

use crate::error::{Error, ErrorKind};
use crate::truncate;
use portcullis_gateway::upstream::stdio::{send, stop, ChildSpec, SharedStdin};
use portcullis_policy::sync::LockExt;
use serde_json::Value;
use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, Lines};
use tokio::process::Child;
use tokio::task::JoinHandle;

/// How long a child gets to exit after its input is closed (then SIGTERM, the same again,
/// then SIGKILL).
const GRACE: Duration = Duration::from_millis(500);
/// How many of the last stderr lines are kept, and how long each may be.
const STDERR_LINES: usize = 3;
const STDERR_LINE_CHARS: usize = 200;
/// How much of a stray stdout line is kept.
const STRAY_CHARS: usize = 160;

/// What a stdio server left behind once the connection is closed; empty for other transports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closed {
    /// The child's exit status, when it closed its output on its own.
    pub exit_status: Option<ExitStatus>,
    /// The first line it wrote to stdout that was not a JSON object (a server logging to
    /// stdout), cut to 160 characters.
    pub stray_output: Option<String>,
    /// The last non-blank lines of its stderr (at most 3, each cut to 200 characters).
    pub stderr_tail: Vec<String>,
}

impl Closed {
    /// `err` with what the server left behind appended: `(exit status)`, `; it wrote non-JSON
    /// to stdout: "…"`, `; its stderr ended with: a / b`.
    pub fn annotate(&self, err: Error) -> Error {
        let mut more = String::new();
        if let Some(status) = &self.exit_status {
            more.push_str(&format!(" ({status})"));
        }
        if let Some(j) = &self.stray_output {
            more.push_str(&format!("; it wrote non-JSON to stdout: {j:?}"));
        }
        if !self.stderr_tail.is_empty() {
            more.push_str(&format!(
                "; its stderr ended with: {}",
                self.stderr_tail.join(" / ")
            ));
        }
        err.with_suffix(&more)
    }
}

/// A started child: its process, its stdin (shared with the gateway's helpers), and the task
/// that keeps the end of its stderr.
struct ChildEnd {
    child: Child,
    stdin: SharedStdin,
    stderr_task: Option<JoinHandle<()>>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

/// Where lines go.
enum Writer {
    Child(ChildEnd),
    Stream(Box<dyn AsyncWrite + Send + Unpin>),
}

/// Line-delimited JSON-RPC in both directions.
pub(crate) struct LineWire {
    lines: Lines<BufReader<Box<dyn AsyncRead + Send + Unpin>>>,
    writer: Writer,
    /// The first line of output that was not a JSON object, if any.
    stray: Option<String>,
    /// Whether the server closed its output.
    closed: bool,
}

impl LineWire {
    /// Starts the child (piped stdio, its own process group, killed if dropped).
    pub(crate) fn spawn(spec: &ChildSpec) -> Result<LineWire, Error> {
        let (program, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| Error::new(ErrorKind::Connect, "the server command is empty"))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            Error::new(ErrorKind::Connect, format!("cannot start {program:?}: {e}"))
        })?;
        let stdin: SharedStdin = Arc::new(tokio::sync::Mutex::new(child.stdin.take()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let stderr_task = child.stderr.take().map(|err| {
            let tail = tail.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if l.trim().is_empty() {
                        continue;
                    }
                    let mut t = tail.lock_or_recover();
                    if t.len() == STDERR_LINES {
                        t.pop_front();
                    }
                    t.push_back(truncate(l.trim_end(), STDERR_LINE_CHARS));
                }
            })
        });
        Ok(LineWire::new(
            Box::new(stdout),
            Writer::Child(ChildEnd {
                child,
                stdin,
                stderr_task,
                tail,
            }),
        ))
    }

    /// Over a stream the caller already has.
    pub(crate) fn stream(
        reader: Box<dyn AsyncRead + Send + Unpin>,
        writer: Box<dyn AsyncWrite + Send + Unpin>,
    ) -> LineWire {
        LineWire::new(reader, Writer::Stream(writer))
    }

    fn new(reader: Box<dyn AsyncRead + Send + Unpin>, writer: Writer) -> LineWire {
        LineWire {
            lines: BufReader::new(reader).lines(),
            writer,
            stray: None,
            closed: false,
        }
    }

    /// Writes one message line.
    pub(crate) async fn send(&mut self, msg: &Value, step: &str) -> Result<(), Error> {
        let line = msg.to_string();
        let sent = match &mut self.writer {
            Writer::Child(c) => send(&c.stdin, &line).await,
            Writer::Stream(w) => {
                let mut buf = line.into_bytes();
                buf.push(b'\n');
                match w.write_all(&buf).await {
                    Ok(()) => w.flush().await,
                    Err(e) => Err(e),
                }
            }
        };
        sent.map_err(|e| {
            Error::new(
                ErrorKind::Transport,
                format!("cannot write to the server while waiting for {step} (did it exit?): {e}"),
            )
        })
    }

    /// The next JSON object from the server; blank lines are skipped and the first line that
    /// is not a JSON object is remembered.
    pub(crate) async fn recv(&mut self, step: &str) -> Result<Value, Error> {
        loop {
            let line = match self.lines.next_line().await {
                Ok(Some(l)) => l,
                Ok(None) => {
                    self.closed = true;
                    return Err(Error::new(
                        ErrorKind::Transport,
                        format!("the server closed its output before answering {step}"),
                    ));
                }
                Err(e) => {
                    return Err(Error::new(
                        ErrorKind::Transport,
                        format!("cannot read the server's output: {e}"),
                    ))
                }
            };
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            match serde_json::from_str(trimmed) {
                Ok(v @ Value::Object(_)) => return Ok(v),
                _ => {
                    if self.stray.is_none() {
                        self.stray = Some(truncate(trimmed, STRAY_CHARS));
                    }
                }
            }
        }
    }

    /// Closes the server's input; a child is stopped (EOF, then SIGTERM and SIGKILL to its
    /// process group after a short grace) and the end of its stderr collected.
    pub(crate) async fn close(self) -> Closed {
        let mut closed = Closed {
            stray_output: self.stray,
            ..Closed::default()
        };
        match self.writer {
            Writer::Stream(mut w) => {
                let _ = w.shutdown().await;
            }
            Writer::Child(mut c) => {
                stop(&mut c.child, &c.stdin, GRACE).await;
                if let Some(task) = c.stderr_task {
                    let _ = tokio::time::timeout(Duration::from_millis(300), task).await;
                }
                if self.closed {
                    closed.exit_status = c.child.try_wait().ok().flatten();
                }
                closed.stderr_tail = c.tail.lock_or_recover().iter().cloned().collect();
            }
        }
        closed
    }
}
