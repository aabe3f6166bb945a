//! The walkthrough behind `portcullis demo`: the gateway in-process in front of the demo
//! server, driven by `portcullis-client` over in-memory pipes, narrated step by step.

use crate::{tools, DEMO_POLICY, SERVER_NAME};
use portcullis_client::{Client, Era, ErrorKind, Options as ClientOptions};
use portcullis_gateway::relay::system_clock;
use portcullis_gateway::stdio::Caps;
use portcullis_gateway::upstream::stdio::ChildSpec;
use portcullis_gateway::upstream::UpstreamSpec;
use portcullis_gateway::{Caller, Relay, RelayConfig};
use portcullis_policy::Engine;
use portcullis_store::MemoryCounters;
use serde_json::{json, Value};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// The tool the walkthrough rate-limits.
const RUN_TOOL: &str = "ai_invoice_pipeline_run";
/// The tool the policy hides.
const DELETE_TOOL: &str = "odoo_unlink";
/// The tool the policy denies.
const PAY_TOOL: &str = "account_payment_register";
/// How many pipeline runs the walkthrough attempts (one more than the limit).
const RUNS: usize = 11;
/// The vendor bill the pipeline runs on, and the customer invoice the agent tries to pay.
const BILL_ID: i64 = 1;
const INVOICE_ID: i64 = 4;
const INVOICE_NAME: &str = "INV/2025/0107";
/// How long one request may take before the walkthrough gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the walkthrough writes the demo policy, and what the client snippet runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Directory for `demo-policy.json` (created if missing). `None`: `portcullis-demo` in
    /// the system's temporary directory.
    pub policy_dir: Option<PathBuf>,
    /// The program the client configuration snippet launches (`portcullis`).
    pub command: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy_dir: None,
            command: "portcullis".into(),
        }
    }
}

/// What the walkthrough observed, for tests and callers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walkthrough {
    /// Where the demo policy was written (absolute).
    pub policy_path: PathBuf,
    /// The upstream's `serverInfo.name`, as seen through the gateway.
    pub server_name: String,
    /// The protocol version the upstream agreed to.
    pub protocol_version: String,
    /// Tool names in `tools/list` as the agent saw it.
    pub listed_tools: Vec<String>,
    /// Whether the delete tool (`odoo_unlink`) was listed (the policy hides it).
    pub delete_tool_listed: bool,
    /// The rule that denied a direct call to the delete tool (`(hidden)`).
    pub delete_call_rule: Option<String>,
    /// Pipeline runs attempted within one minute.
    pub runs_attempted: usize,
    /// How many of them were allowed and run by the server.
    pub runs_passed: usize,
    /// The rule that denied the first refused run (`/tools/ai_invoice_pipeline_run/limits/0`).
    pub run_denial_rule: Option<String>,
    /// Its message, without the `[POLICY DENIED]` prefix.
    pub run_denial_text: Option<String>,
    /// Its retry hint in seconds.
    pub run_retry_after_secs: Option<u64>,
    /// Whether the payment call was denied by the policy.
    pub payment_denied: bool,
    /// The rule that denied it (`/tools/account_payment_register/deny_if/0`).
    pub payment_rule: Option<String>,
    /// Its message, without the `[POLICY DENIED]` prefix (`Requires human approval.`).
    pub payment_denial_text: Option<String>,
    /// Whether the read after the payment attempt was allowed.
    pub read_allowed: bool,
    /// The invoice's `payment_state` as read back (`not_paid`: the payment never arrived).
    pub invoice_payment_state: Option<String>,
    /// The client configuration snippet that was printed.
    pub config_snippet: String,
}

/// The walkthrough with default [`Options`]: the policy goes to the temporary directory and
/// the snippet names `portcullis`. `argv` starts the demo server (e.g. `[current_exe,
/// "demo-upstream"]`).
pub async fn walkthrough(argv: Vec<String>, out: &mut dyn Write) -> io::Result<Walkthrough> {
    walkthrough_with(&Options::default(), argv, out).await
}

/// Writes the demo policy, starts the gateway in-process in front of the demo server started
/// with `argv`, walks through allow / hide / limit / deny as an MCP client, narrates it to
/// `out`, and prints a client configuration snippet. Returns what it observed.
pub async fn walkthrough_with(
    opts: &Options,
    argv: Vec<String>,
    out: &mut dyn Write,
) -> io::Result<Walkthrough> {
    let engine = Engine::from_json(DEMO_POLICY).map_err(|errs| {
        io::Error::other(format!(
            "the built-in demo policy is invalid: {}",
            errs.iter()
                .map(|e| format!("{}: {}", e.locator, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    let policy_path = write_policy(opts.policy_dir.as_deref())?;
    let relay = Arc::new(Relay::new(RelayConfig {
        store: Arc::new(MemoryCounters::new()),
        server: SERVER_NAME.into(),
        clock: system_clock,
        audit: false,
        approvals: None,
        on_new_approval: None,
        hold_ms: 0,
    }));
    let caller = Caller {
        engine: Some(Arc::new(engine)),
        grant_id: "local:demo".into(),
        grant_label: "demo".into(),
        session_id: format!("demo-{}", std::process::id()),
        policy: Some(("demo".into(), "demo".into())),
        request_id: None,
        principal: None,
        trace: None,
    };
    let (client_end, gateway_end) = tokio::io::duplex(1 << 16);
    let (g_in, g_out) = tokio::io::split(gateway_end);
    let gateway = tokio::spawn(portcullis_gateway::stdio::run(
        relay,
        caller,
        UpstreamSpec::Command(ChildSpec {
            argv,
            env: Vec::new(),
        }),
        None,
        g_in,
        g_out,
        Caps::default(),
    ));
    let (c_in, c_out) = tokio::io::split(client_end);
    let mut facts = Walkthrough {
        policy_path,
        ..Default::default()
    };
    // The client side is closed when `drive` returns: the gateway stops the demo server and
    // returns.
    let driven = drive(c_in, c_out, out, &mut facts).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), gateway).await;
    let gateway_result = match stopped {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(io::Error::other(format!("the gateway task failed: {join}"))),
        Err(_) => Err(io::Error::other("the gateway did not stop within 10s")),
    };
    match (driven, gateway_result) {
        // The gateway's own error (e.g. the server command could not start) explains a
        // failed conversation better than "connection closed".
        (Err(_), Err(g)) => Err(g),
        (Err(e), Ok(())) => Err(e),
        (Ok(()), _) => {
            let snippet = config_snippet(&facts.policy_path, &opts.command);
            writeln!(out, "Try it in your MCP client")?;
            writeln!(out, "-------------------------")?;
            writeln!(
                out,
                "Add this to Claude Desktop (claude_desktop_config.json) or Cursor (.cursor/mcp.json):"
            )?;
            writeln!(out)?;
            writeln!(out, "{snippet}")?;
            writeln!(out)?;
            writeln!(
                out,
                "To guard your own server, replace \"{} demo-upstream\" with its command and the",
                opts.command
            )?;
            writeln!(
                out,
                "policy with your own (check it first with `{} validate FILE`).",
                opts.command
            )?;
            out.flush()?;
            facts.config_snippet = snippet;
            Ok(facts)
        }
    }
}

/// The Claude Desktop / Cursor style configuration that runs the demo server behind
/// `command stdio --policy <policy_path>`, pretty-printed.
pub fn config_snippet(policy_path: &Path, command: &str) -> String {
    let v = json!({"mcpServers": {SERVER_NAME: {
        "command": command,
        "args": ["stdio", "--policy", policy_path.display().to_string(), "--", command, "demo-upstream"]
    }}});
    serde_json::to_string_pretty(&v).expect("serializable")
}

fn write_policy(dir: Option<&Path>) -> io::Result<PathBuf> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join("portcullis-demo"),
    };
    let dir = std::path::absolute(&dir)?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join("demo-policy.json");
    // Write beside and rename, so that a concurrent demo never reads half a file.
    let tmp = dir.join(format!(".demo-policy.json.{}", std::process::id()));
    std::fs::write(&tmp, DEMO_POLICY)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
        })?;
    Ok(path)
}

/// A client failure as an I/O error (a timeout keeps its kind).
fn io_error(e: portcullis_client::Error) -> io::Error {
    let kind = match e.kind() {
        ErrorKind::Timeout => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}

/// Calls a tool through the gateway; a JSON-RPC error is an outcome, anything else fails the
/// walkthrough.
async fn call(client: &mut Client, tool: &str, args: Value) -> io::Result<Outcome> {
    match client.call_tool(tool, args).await {
        Ok(result) => Ok(Outcome::of(&result)),
        Err(e) => match e.rpc_message() {
            Some(m) => Ok(Outcome::Error(m.to_owned())),
            None => Err(io_error(e)),
        },
    }
}

/// How a `tools/call` ended, seen from the client.
#[derive(Debug)]
enum Outcome {
    /// Forwarded and answered by the server; its structured result.
    Allowed(Value),
    /// Answered by Portcullis: rule, message (no prefix), retry hint.
    Denied {
        rule: String,
        text: String,
        retry: Option<u64>,
    },
    /// Forwarded; the tool reported an error.
    ToolError(String),
    /// A JSON-RPC error.
    Error(String),
}

impl Outcome {
    /// The outcome of a `tools/call` result.
    fn of(r: &Value) -> Outcome {
        let text = r["content"][0]["text"].as_str().unwrap_or("").to_owned();
        if let Some(d) = r.pointer("/_meta/portcullis~1decision") {
            return Outcome::Denied {
                rule: d["rule"].as_str().unwrap_or("?").to_owned(),
                text: text
                    .strip_prefix("[POLICY DENIED] ")
                    .unwrap_or(&text)
                    .to_owned(),
                retry: d["retryAfterSeconds"].as_u64(),
            };
        }
        if r["isError"] == json!(true) {
            return Outcome::ToolError(text);
        }
        Outcome::Allowed(r.get("structuredContent").cloned().unwrap_or(Value::Null))
    }

    /// One line for the narration.
    fn describe(&self) -> String {
        match self {
            Outcome::Allowed(_) => "allowed".into(),
            Outcome::Denied { rule, text, .. } => {
                // Pseudo-rules like "(hidden)" read as a reason; pointers as a rule.
                let by = if rule.starts_with('(') {
                    format!("denied {rule}")
                } else {
                    format!("denied by rule {rule}")
                };
                format!("{by}:\n{}", indent(text, 6))
            }
            Outcome::ToolError(t) => format!("forwarded, but the tool failed: {t}"),
            Outcome::Error(t) => format!("error: {t}"),
        }
    }
}

fn indent(text: &str, n: usize) -> String {
    wrap(text, 88 - n)
        .into_iter()
        .map(|l| format!("{}{l}", " ".repeat(n)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Greedy word wrap.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

async fn drive(
    from_gateway: impl AsyncRead + Send + Unpin + 'static,
    to_gateway: impl AsyncWrite + Send + Unpin + 'static,
    out: &mut dyn Write,
    facts: &mut Walkthrough,
) -> io::Result<()> {
    writeln!(out, "Portcullis demo")?;
    writeln!(out, "---------------")?;
    writeln!(
        out,
        "Portcullis sits between an AI agent and an MCP server and decides every tool call."
    )?;
    writeln!(
        out,
        "Here the server is a demo Odoo with fake invoices, and this program plays the agent."
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Demo policy (written to {}):",
        facts.policy_path.display()
    )?;
    for (what, rule) in [
        (
            "odoo_search_read, odoo_read, ai_invoice_pipeline_summary",
            "allowed",
        ),
        ("odoo_write", "30 calls a minute"),
        (
            "ai_invoice_pipeline_run, ai_pipeline_run",
            "10 calls a minute each",
        ),
        ("account_payment_register", "denied: needs a human"),
        ("odoo_unlink", "hidden"),
        ("any other tool", "denied (default: deny)"),
    ] {
        writeln!(out, "  {what:<57} {rule}")?;
    }
    writeln!(out)?;
    out.flush()?;

    // 1. Handshake.
    let opts = ClientOptions {
        client_name: "portcullis-demo".into(),
        era: Era::Handshake,
        request_timeout: Some(REQUEST_TIMEOUT),
        ..ClientOptions::default()
    };
    let mut client = Client::over_lines(from_gateway, to_gateway, &opts)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Rpc { .. } => {
                io::Error::other(format!("the demo server refused to initialize: {e}"))
            }
            _ => io_error(e),
        })?;
    let info = client.server_info().cloned().unwrap_or_default();
    facts.server_name = info["name"].as_str().unwrap_or("?").to_owned();
    facts.protocol_version = client.protocol_version().to_owned();
    writeln!(out, "1. Connect")?;
    writeln!(
        out,
        "   Connected to {} {} through Portcullis (MCP {}).",
        facts.server_name,
        info["version"].as_str().unwrap_or(""),
        facts.protocol_version
    )?;
    writeln!(out)?;
    out.flush()?;

    // 2. The list, without the hidden tool; then the hidden tool called anyway.
    let listed = client.list_tools().await.map_err(io_error)?;
    facts.listed_tools = listed
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    facts.delete_tool_listed = facts.listed_tools.iter().any(|t| t == DELETE_TOOL);
    let offered = tools()["tools"].as_array().map_or(0, Vec::len);
    writeln!(out, "2. List the tools")?;
    writeln!(
        out,
        "   The server offers {offered} tools; the agent sees {}:",
        facts.listed_tools.len()
    )?;
    writeln!(out, "{}", indent(&facts.listed_tools.join(", "), 3))?;
    let delete = call(
        &mut client,
        DELETE_TOOL,
        json!({"model": "account.move", "ids": [INVOICE_ID]}),
    )
    .await?;
    if let Outcome::Denied { rule, .. } = &delete {
        facts.delete_call_rule = Some(rule.clone());
    }
    if facts.delete_tool_listed {
        writeln!(out, "   {DELETE_TOOL} (delete) is listed. Calling it:")?;
    } else {
        writeln!(
            out,
            "   {DELETE_TOOL} (delete) is hidden: the agent never learns it exists. Calling it anyway:"
        )?;
    }
    writeln!(out, "   {}", delete.describe())?;
    writeln!(out)?;
    out.flush()?;

    // 3. Eleven pipeline runs within one calendar minute.
    writeln!(
        out,
        "3. Run the invoice pipeline {RUNS} times in one minute ({RUN_TOOL}, limit 10)"
    )?;
    let into_minute = system_clock() % 60_000;
    if into_minute > 55_000 {
        let wait = 60_000 - into_minute + 20;
        writeln!(
            out,
            "   (waiting {}s for the next minute, so that all {RUNS} calls fall in the same one)",
            wait.div_ceil(1000)
        )?;
        out.flush()?;
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    let mut outcomes = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        outcomes.push(call(&mut client, RUN_TOOL, json!({"move_id": BILL_ID})).await?);
    }
    facts.runs_attempted = RUNS;
    facts.runs_passed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Allowed(_)))
        .count();
    if let Some(Outcome::Denied { rule, text, retry }) = outcomes
        .iter()
        .find(|o| matches!(o, Outcome::Denied { .. }))
    {
        facts.run_denial_rule = Some(rule.clone());
        facts.run_denial_text = Some(text.clone());
        facts.run_retry_after_secs = *retry;
    }
    // Consecutive allowed calls on one line; everything else call by call.
    let mut i = 0;
    while i < outcomes.len() {
        if let Outcome::Allowed(first) = &outcomes[i] {
            let start = i;
            while i < outcomes.len() && matches!(outcomes[i], Outcome::Allowed(_)) {
                i += 1;
            }
            let calls = if i - start == 1 {
                format!("call {}", start + 1)
            } else {
                format!("calls {}-{}", start + 1, i)
            };
            let bill = first["move"].as_str().unwrap_or("the bill");
            writeln!(
                out,
                "   {calls:<11} allowed: the server ran the pipeline on {bill}"
            )?;
        } else {
            let calls = format!("call {}", i + 1);
            let d = outcomes[i].describe();
            writeln!(out, "   {calls:<11} {d}")?;
            i += 1;
        }
    }
    writeln!(out)?;
    out.flush()?;

    // 4. A payment.
    writeln!(out, "4. Pay invoice {INVOICE_NAME} in full ({PAY_TOOL})")?;
    let pay = call(
        &mut client,
        PAY_TOOL,
        json!({"invoice_id": INVOICE_ID, "amount": 3200.0, "currency": "EUR"}),
    )
    .await?;
    if let Outcome::Denied { rule, text, .. } = &pay {
        facts.payment_denied = true;
        facts.payment_rule = Some(rule.clone());
        facts.payment_denial_text = Some(text.clone());
    }
    writeln!(out, "   {}", pay.describe())?;
    writeln!(out)?;
    out.flush()?;

    // 5. A read, which also shows the payment never arrived.
    writeln!(out, "5. Read invoice {INVOICE_NAME} back (odoo_read)")?;
    let read = call(
        &mut client,
        "odoo_read",
        json!({"model": "account.move", "ids": [INVOICE_ID],
               "fields": ["name", "partner_id", "amount_total", "currency_id", "payment_state"]}),
    )
    .await?;
    match &read {
        Outcome::Allowed(v) => {
            facts.read_allowed = true;
            let r = &v["records"][0];
            facts.invoice_payment_state = r["payment_state"].as_str().map(str::to_owned);
            writeln!(
                out,
                "   allowed: {}, {}, {:.2} {}, payment_state {}",
                r["name"].as_str().unwrap_or("?"),
                r["partner_id"][1].as_str().unwrap_or("?"),
                r["amount_total"].as_f64().unwrap_or(0.0),
                r["currency_id"][1].as_str().unwrap_or(""),
                r["payment_state"].as_str().unwrap_or("?")
            )?;
            if facts.payment_denied && facts.invoice_payment_state.as_deref() == Some("not_paid") {
                writeln!(
                    out,
                    "   Still unpaid: the denied payment never reached the server."
                )?;
            }
        }
        other => writeln!(out, "   {}", other.describe())?,
    }
    writeln!(out)?;
    out.flush()?;
    client.close().await;
    Ok(())
}
