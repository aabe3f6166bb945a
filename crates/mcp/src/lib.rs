//! # portcullis-mcp
//!
//! MCP on the wire, held raw. A [`Message`] keeps every top-level member as the exact bytes
//! the peer sent (`serde_json::value::RawValue`), so numbers (`1.0`, `0.7`, 2^64), key order and
//! unknown fields survive forwarding byte for byte; only what a gateway must rewrite — ids,
//! progress tokens, cancellation ids, `_meta` — is touched. Typed views are parsed on demand
//! where policy needs them (`tools/call` params).

pub mod error;
pub mod framing;
pub mod message;

pub use error::{codes, denial_result, error_line, ProtocolError};
pub use framing::{read_line_capped, LineError};
pub use message::{Kind, Message, ParseError};

/// The `_meta` key under which a modern (2026-07-28) request carries its protocol version.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The latest protocol revision of each era Portcullis speaks.
pub const LEGACY_LATEST: &str = "2025-11-25";
/// The stateless era's revision.
pub const MODERN: &str = "2026-07-28";
