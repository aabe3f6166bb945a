//! Upstream transports: how Portcullis reaches an MCP server.

pub mod stdio;
