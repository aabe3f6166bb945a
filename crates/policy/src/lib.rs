//! # portcullis-policy
//!
//! The policy engine of Portcullis: it reads PolicyLayer's policy JSON v1 (plus Portcullis'
//! marked extensions), validates it with a locator on every error, compiles it into an
//! [`Engine`], and decides tool calls.
//!
//! This crate is pure: no I/O, no async, no clock. Time is an argument; counters are reached
//! through the [`CounterStore`] trait that the `portcullis-store` crate implements.

pub mod counters;
pub mod sync;
pub mod window;

pub use counters::{
    CounterKey, CounterStore, Deferred, Held, KeyTemplate, Reply, Reservation, ReserveError,
    Ticket, Usage,
};
pub use window::{Millis, Scope, Window};
pub mod doc;
pub mod engine;
pub mod json;
pub mod lint;
pub mod norm;
pub mod path;

pub use doc::{parse, PolicyDoc, ValidationError};
pub use engine::{ApprovalNeed, Call, Check, Decision, Denial, Engine, Identity, LimitPlan};

/// The JSON Schema of the policy document, for editors and `portcullis schema`.
pub const JSON_SCHEMA: &str = include_str!("../schema/policy-v1.schema.json");
