//! The `portcullis` command. Thin by design: argument parsing and output formatting only;
//! every decision lives in the library crates.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc instead of the system allocator: the request path allocates per call in many
/// threads, where glibc's malloc costs the most (see the README's performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[macro_use]
mod out;

mod admin;
mod admin_api;
mod approvals_cli;
mod commands;
mod console;
mod ops;
mod pins_cli;
mod scan;

/// Portcullis: a policy gateway for MCP tool calls.
#[derive(Parser)]
#[command(name = "portcullis", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a policy document; print every error with its locator.
    Validate(commands::ValidateArgs),
    /// Print the JSON Schema of the policy document (for editor completion).
    Schema,
    /// Translate an Intercept YAML policy into a policy v1 document.
    ImportIntercept(commands::ImportArgs),
    /// Evaluate one tool call against a policy and explain the decision (dry run).
    Check(commands::CheckArgs),
    /// Wrap one stdio MCP server for a stdio client: `portcullis stdio --policy P -- cmd…`.
    Stdio(commands::StdioArgs),
    /// Run the HTTP gateway: each configured server at `/mcp/<name>` (Streamable HTTP, both eras).
    Serve(commands::ServeArgs),
    /// Connect to servers (or read a saved tool list), list every tool and classify its risk:
    /// a table sorted by risk, `--json` or `--markdown`.
    Scan(scan::ScanArgs),
    /// Scan, then write a starter policy per server from the risk classes (default deny;
    /// `--preset strict|recommended|permissive`).
    Init(scan::InitArgs),
    /// Scan, then render the tool catalogue: one page per tool and an index per server, in
    /// Markdown and HTML.
    Catalog(scan::CatalogArgs),
    /// Manage grants: `create` (prints the token once), `list`, `rotate`, `revoke`.
    Grant(admin::GrantArgs),
    /// Query the audit log (`--since 1h --decision denied --json`), export it as JSON Lines
    /// (`--export FILE`), or apply retention (`audit retain --older-than 30d`).
    Audit(admin::AuditArgs),
    /// The approval queue: `list` (pending by default), `show ID`, `approve ID`,
    /// `deny ID --reason TEXT`; each decision is audited.
    Approvals(approvals_cli::ApprovalsArgs),
    /// Tool pins: `list` (`--json`), `diff SERVER TOOL` (approved vs listed, member by
    /// member), `approve SERVER TOOL` (re-pins), `reject SERVER TOOL`; each decision audited.
    Pins(pins_cli::PinsArgs),
    /// Walk through Portcullis in front of a demo Odoo-like server, then print a client config.
    Demo(commands::DemoArgs),
    /// The demo's Odoo-like MCP server on stdio (used by `demo` and its client snippet).
    #[command(hide = true)]
    DemoUpstream,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(a) => commands::validate(&a),
        Command::Schema => {
            out!("{}", portcullis_policy::JSON_SCHEMA);
            Ok(ExitCode::SUCCESS)
        }
        Command::ImportIntercept(a) => commands::import_intercept(&a),
        Command::Check(a) => commands::check(&a),
        Command::Stdio(a) => commands::stdio(a),
        Command::Serve(a) => commands::serve(a),
        Command::Scan(a) => scan::scan(&a),
        Command::Init(a) => scan::init(&a),
        Command::Catalog(a) => scan::catalog(&a),
        Command::Grant(a) => admin::grant(a),
        Command::Audit(a) => admin::audit(a),
        Command::Approvals(a) => approvals_cli::approvals(a),
        Command::Pins(a) => pins_cli::pins(a),
        Command::Demo(a) => commands::demo(a),
        Command::DemoUpstream => commands::demo_upstream(),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}
