//! # portcullis-gateway
//!
//! The request path. [`relay::Relay`] is the transport-agnostic core of one downstream
//! connection: it parses each message, decides `tools/call` with the policy engine and the
//! counter store, filters `tools/list`, maps ids, progress tokens and cancellations between
//! the two id spaces, and says what to send where. Transports ([`stdio`] for the client side,
//! [`upstream::stdio`] for a child-process server) only move lines.

pub mod aggregate;
mod bridge;
pub mod config;
pub mod connection;
pub mod definition;
pub mod events;
pub mod gather;
pub mod http;
pub mod metrics;
pub mod otlp;
pub mod pinned;
pub mod pinning;
pub mod relay;
mod resume;
pub mod schemas;
pub mod spans;
pub mod stdio;
pub mod traces;
pub mod upstream;
pub mod webhook;

pub use connection::Connection;
pub use relay::{Caller, Out, Relay, RelayConfig};
