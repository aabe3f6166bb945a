//! What can go wrong talking to a server: a [`kind`](ErrorKind) to act on and a sentence for
//! people, which names the step that was waiting (`initialize`, `tools/list (page 2)`, …).

use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// Why a conversation with a server failed.
#[derive(Clone, Debug, PartialEq)]
pub enum ErrorKind {
    /// The server could not be started or connected to (no command, a program that does not
    /// start, an invalid header, a legacy SSE stream that refused or named no endpoint).
    Connect,
    /// Nothing answers at the server's address.
    Unreachable,
    /// The server answered a request with this HTTP status and no JSON-RPC answer.
    HttpStatus(u16),
    /// The connection failed or closed while a request waited for its answer.
    Transport,
    /// The server answered with a JSON-RPC error.
    Rpc {
        /// `error.code`, as sent.
        code: Value,
        /// `error.message`.
        message: String,
        /// `error.data`, if any.
        data: Option<Value>,
    },
    /// The server's answer is not what MCP says it should be.
    Protocol,
    /// The time allowed ran out.
    Timeout,
}

/// A failed conversation: its kind and the sentence that explains it.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    kind: Box<ErrorKind>,
    text: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, text: impl Into<String>) -> Error {
        Error {
            kind: Box::new(kind),
            text: text.into(),
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The JSON-RPC error's message, when the server answered with one.
    pub fn rpc_message(&self) -> Option<&str> {
        match self.kind.as_ref() {
            ErrorKind::Rpc { message, .. } => Some(message),
            _ => None,
        }
    }

    /// `step` answered with a JSON-RPC `error` object.
    pub(crate) fn rpc(step: &str, err: &Value) -> Error {
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        let code = err.get("code").cloned().unwrap_or(Value::Null);
        let shown = err.get("code").map(Value::to_string).unwrap_or_default();
        Error::new(
            ErrorKind::Rpc {
                code,
                message: message.to_owned(),
                data: err.get("data").cloned(),
            },
            format!("the server answered {step} with an error: {message} (code {shown})"),
        )
    }

    /// The time ran out (`after` is the bound that did) while `step` waited.
    pub(crate) fn timeout(after: Duration, step: &str) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "timed out after {} s waiting for the answer to {step}",
                after.as_secs_f32()
            ),
        )
    }

    /// A malformed answer.
    pub(crate) fn protocol(text: impl Into<String>) -> Error {
        Error::new(ErrorKind::Protocol, text)
    }

    /// The same error with `more` appended to its sentence.
    pub(crate) fn with_suffix(mut self, more: &str) -> Error {
        self.text.push_str(more);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Error {}
