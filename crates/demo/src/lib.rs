//! # portcullis-demo
//!
//! Everything behind `portcullis demo`:
//!
//! - [`serve`] / [`serve_stdio`]: a small, self-contained MCP server that looks like the Odoo
//!   Claude MCP server from the seeds — reads, a write, the two pipeline tools, a payment tool
//!   and a delete tool — over a handful of fake invoices kept in memory. Its tool list is
//!   [`tools`].
//! - [`DEMO_POLICY`]: a policy in the seeds' style for that server.
//! - [`walkthrough`]: starts the gateway in-process in front of the demo server, drives it as
//!   an MCP client, narrates what happens, and prints a client configuration snippet.

mod server;
mod walk;

pub use server::{serve, serve_stdio, tools, SERVER_NAME, SUPPORTED_VERSIONS};
pub use walk::{config_snippet, walkthrough, walkthrough_with, Options, Walkthrough};

/// The demo policy: PolicyLayer's catalogue rules for the demo server's tools.
///
/// `default: deny`; the reads are allowed; `odoo_write` is capped at 30 calls a minute and
/// both pipeline tools at 10 a minute per grant (exactly the seeds' rule); the delete tool is
/// hidden; the payment tool is always denied with "Requires human approval.", as PolicyLayer's
/// catalogue does for Financial tools.
pub const DEMO_POLICY: &str = r#"{
  "version": "1",
  "description": "Portcullis demo: an Odoo-like server. Reads pass, writes and pipeline runs are rate-capped, deletes are hidden, payments need a human.",
  "default": "deny",
  "hide": ["odoo_unlink"],
  "tools": {
    "odoo_search_read": {},
    "odoo_read": {},
    "ai_invoice_pipeline_summary": {},
    "odoo_write": {
      "limits": [
        { "counter": "odoo_write_rate", "window": "minute", "max": 30, "scope": "grant" }
      ]
    },
    "ai_invoice_pipeline_run": {
      "limits": [
        { "counter": "ai_invoice_pipeline_run_rate", "window": "minute", "max": 10, "scope": "grant" }
      ]
    },
    "ai_pipeline_run": {
      "limits": [
        { "counter": "ai_pipeline_run_rate", "window": "minute", "max": 10, "scope": "grant" }
      ]
    },
    "account_payment_register": {
      "deny_if": [
        { "conditions": [], "on_deny": "Requires human approval." }
      ]
    }
  }
}
"#;
