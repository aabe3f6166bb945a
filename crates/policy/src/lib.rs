//! # portcullis-policy
//!
//! The policy engine of Portcullis: it reads PolicyLayer's policy JSON v1 (plus Portcullis'
//! marked extensions), validates it with a locator on every error, compiles it into an
//! [`Engine`], and decides tool calls.
//!
//! This crate is pure: no I/O, no async, no clock. Time is an argument; counters are reached
//! through the [`CounterStore`] trait that the `portcullis-store` crate implements.

pub mod counters;
pub mod window;

pub use counters::{CounterKey, CounterStore, Held, Reservation, ReserveError, Ticket, Usage};
pub use window::{Millis, Scope, Window};
