//! The web console in a real browser: headless Chromium driven through chromedriver's W3C
//! WebDriver API against a real `portcullis serve` with the recording fixture upstream. Signs
//! in with the admin token; builds a policy in the builder (a 10-per-minute limit, a hidden
//! tool, a deny rule on an argument, an approval) and saves it, and the Python `mcp` client
//! proves the gateway enforces exactly that; approves a held call from the approvals page (its
//! retry passes once); revokes the grant from the grants page (its next request: 401); shows
//! markup from a server and from an agent as inert text. Takes a PNG of every page (1280 px,
//! and the overview at 390 px); `PORTCULLIS_UPDATE_SCREENSHOTS=1` writes them to
//! `docs/console/`, else they stay in the test's scratch directory.
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium` and `chromium-driver`; fails, not
//! skips, without them) and `.peers/` (scripts/install-peers.sh). `scripts/test.sh` installs
//! both.

mod common;
mod webdriver;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use webdriver::{png_size, required_program, Browser};

const ADMIN: &str = "pca_browser-test-token-0123456789abcdef";

/// Inert markup in a tool description: if the console ever rendered it, the script or the
/// handler would set `window.__portcullis_xss` and the elements would be in the DOM.
const MARKUP: &str = "<script>window.__portcullis_xss = 1</script><img src=x onerror=\"window.__portcullis_xss = 2\"><b id=\"injected\">bold</b>";

/// Markup an agent puts in a call's arguments (shown on the approvals page).
const ARG_MARKUP: &str = "<script>window.__portcullis_xss = 3</script>";

/// Where the screenshots go.
fn shots_dir(scratch: &Path) -> PathBuf {
    if std::env::var("PORTCULLIS_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let d = repo().join("docs/console");
        std::fs::create_dir_all(&d).unwrap();
        d
    } else {
        let d = scratch.join("screenshots");
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

/// A PNG of the whole current page, `width` CSS pixels wide, as `dir/<name>.png`.
fn shoot(b: &Browser, dir: &Path, name: &str, width: u32) {
    // A short viewport first, so that the height measured is the content's, not the window's.
    b.emulate(width, 300);
    let h = b
        .exec(
            "return Math.ceil(document.documentElement.scrollHeight)",
            json!([]),
        )
        .as_u64()
        .unwrap_or(900) as u32;
    b.emulate(width, h.clamp(300, 4000));
    let png = b.screenshot();
    b.stop_emulating();
    assert_eq!(png_size(&png).0, width, "{name}: the screenshot's width");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Nothing from `MARKUP` or `ARG_MARKUP` ran or became an element.
fn assert_inert(b: &Browser, page: &str) {
    let v = b.exec(
        "return [typeof window.__portcullis_xss, \
                 document.querySelectorAll('main script, main img, #injected').length]",
        json!([]),
    );
    assert_eq!(v, json!(["undefined", 0]), "{page}: markup came alive");
}

/// A text result's first text.
fn text_of(r: &Value) -> &str {
    r["content"][0]["text"].as_str().unwrap_or_default()
}

/// The Python `mcp` 2.x client against `/mcp/rec` with `token`, running `actions`.
fn mcp_client(python: &Path, port: u16, token: &str, actions: Value) -> Vec<Value> {
    let args = vec![
        "auto".to_string(),
        "--url".into(),
        format!("http://127.0.0.1:{port}/mcp/rec"),
        "--token".into(),
        token.to_string(),
    ];
    let out = run_driver(python, "client2.py", &args, &actions, &[]);
    out["results"].as_array().cloned().unwrap_or_default()
}

#[test]
fn the_console_in_headless_chromium() {
    let chromium = required_program("chromium");
    let chromedriver = required_program("chromedriver");
    let python = repo().join(".peers/venv/bin/python");
    assert!(
        python.exists(),
        ".peers/venv/bin/python is missing: run scripts/install-peers.sh (or scripts/test.sh)"
    );

    let dir = Scratch::new("browser");
    let tools = json!({"tools": [
        {"name": "read_invoice", "description": "Read one invoice.",
         "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        {"name": "search_invoices", "description": "Search the invoices of a customer.",
         "inputSchema": {"type": "object", "properties": {"customer": {"type": "string"}, "text": {"type": "string"}}}},
        {"name": "delete_invoice", "description": "Delete an invoice.",
         "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        {"name": "pay_invoice", "description": "Pay an invoice.",
         "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}, "amount": {"type": "number"}, "memo": {"type": "string"}}}},
        {"name": "render_note", "description": format!("Render a note. {MARKUP}"),
         "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}
    ]});
    let policy = json!({"version": "1", "default": "deny", "tools": {"render_note": {}}});
    let gw = serve_rec(&dir, &tools, &policy, ADMIN);
    let port = gw.port;
    let base = format!("http://127.0.0.1:{port}");
    let shots = shots_dir(&dir);
    // Declared after the gateway and the scratch directory: dropped (killed) before them.
    let b = Browser::start(&chromium, &chromedriver, free_port(), &dir, 1280, 900);

    // 1. Sign in with the admin token; the session cookie is out of the script's reach.
    b.goto(&format!("{base}/ui/"));
    assert!(b.url().ends_with("/ui/login"), "{}", b.url());
    shoot(&b, &shots, "login", 1280);
    b.fill("#token", "pca_not-the-admin-token-000000000000");
    b.click("form.login button[type=submit]");
    assert!(b.text(".notice.error").contains("not the admin token"));
    b.fill("#token", ADMIN);
    b.click("form.login button[type=submit]");
    b.wait_for(
        "the overview",
        "return location.pathname === '/ui/' && document.querySelector('h1').textContent === 'Overview'",
    );
    assert_eq!(b.exec("return document.cookie", json!([])), json!(""));

    // A grant for the agent, made in the grants page; its token is shown once.
    b.goto(&format!("{base}/ui/grants"));
    b.fill("#g-label", "agent-alice");
    b.fill("#g-expires", "30d");
    b.click("form.grid button[type=submit]");
    let token = b.property("#new-token", "value");
    let token = token.as_str().unwrap_or_default().to_string();
    assert!(token.starts_with("pcx_"), "{token}");
    assert!(b.text("#snip-vscode").contains(&token));
    shoot(&b, &shots, "grants", 1280);

    // 2. The policy builder: read_invoice 10 per minute, delete_invoice hidden, search_invoices
    //    allowed but denied for customer ACME, pay_invoice held for approval.
    b.goto(&format!("{base}/ui/policies"));
    shoot(&b, &shots, "policies", 1280);
    b.click("a[href='/ui/policies/rec']");
    let valid =
        "return document.getElementById('builder').getAttribute('data-checked') === 'valid'";
    b.wait_for("the policy in force to validate", valid);
    let row = |tool: &str, control: &str| format!("tr.rule-row[data-tool=\"{tool}\"] {control}");
    b.choose(&row("read_invoice", "select.mode"), "limit");
    b.fill(&row("read_invoice", "input.max"), "10");
    b.choose(&row("read_invoice", "select.window"), "minute");
    b.choose(&row("read_invoice", "select.scope"), "grant");
    b.choose(&row("delete_invoice", "select.mode"), "hide");
    b.choose(&row("search_invoices", "select.mode"), "allow");
    b.choose(&row("search_invoices", "select.arg-path"), "args.customer");
    b.choose(&row("search_invoices", "select.arg-op"), "eq");
    b.fill(&row("search_invoices", "input.arg-value"), "ACME");
    b.choose(&row("pay_invoice", "select.mode"), "approve");
    b.wait_for("the built policy to validate", valid);
    let built: Value = serde_json::from_str(
        b.property("#document", "value")
            .as_str()
            .expect("the raw JSON"),
    )
    .expect("the raw JSON parses");
    assert_eq!(built["default"], "deny", "{built:#}");
    assert_eq!(built["hide"], json!(["delete_invoice"]), "{built:#}");
    assert_eq!(
        built["tools"]["read_invoice"],
        json!({"limits": [{"counter": "read_invoice_rate", "window": "minute", "max": 10, "scope": "grant"}]}),
        "{built:#}"
    );
    assert_eq!(
        built["tools"]["search_invoices"]["deny_if"][0]["conditions"],
        json!([{"path": "args.customer", "op": "eq", "value": "ACME"}]),
        "{built:#}"
    );
    assert_eq!(
        built["tools"]["pay_invoice"]["approve_if"][0]["conditions"],
        json!([]),
        "{built:#}"
    );
    assert_eq!(built["tools"]["render_note"], json!({}), "kept: {built:#}");
    assert!(built["tools"].get("delete_invoice").is_none(), "{built:#}");
    shoot(&b, &shots, "policy-builder", 1280);
    b.click("#review");
    b.wait_for(
        "the review page",
        "return document.querySelector('h1').textContent.startsWith('Review the policy')",
    );
    assert!(
        b.text("#diff").contains("+   \"hide\": ["),
        "{}",
        b.text("#diff")
    );
    shoot(&b, &shots, "policy-review", 1280);
    b.click("#save");
    b.wait_for(
        "the save",
        "var n = document.querySelector('.notice.ok'); return !!n && n.textContent.startsWith('Saved and reloaded')",
    );
    // The builder, reloaded from the saved document, shows the same rows.
    for (tool, control, want) in [
        ("read_invoice", "select.mode", "limit"),
        ("read_invoice", "input.max", "10"),
        ("read_invoice", "select.window", "minute"),
        ("delete_invoice", "select.mode", "hide"),
        ("search_invoices", "select.mode", "allow"),
        ("search_invoices", "select.arg-path", "args.customer"),
        ("search_invoices", "input.arg-value", "ACME"),
        ("pay_invoice", "select.mode", "approve"),
        ("render_note", "select.mode", "allow"),
    ] {
        assert_eq!(
            b.property(&row(tool, control), "value"),
            json!(want),
            "{tool} {control}"
        );
    }
    // What is in force is what the builder built.
    let in_force = http_request(
        port,
        "GET",
        "/admin/api/policies/rec",
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        b"",
        Duration::from_secs(30),
    )
    .json();
    assert_eq!(in_force["document"], built);

    // ...and a real MCP client meets exactly that. The limit counts calendar minutes (UTC):
    // the eleven calls must not straddle one.
    clear_of_minute_boundary(Duration::from_secs(12));
    let mut actions = vec![json!({"op": "list_tools"})];
    for id in 1..=11 {
        actions.push(json!({"op": "call", "name": "read_invoice", "args": {"id": id}}));
    }
    actions.extend([
        json!({"op": "call", "name": "search_invoices", "args": {"customer": "ACME"}}),
        json!({"op": "call", "name": "search_invoices", "args": {"customer": "Globex"}}),
        json!({"op": "call", "name": "delete_invoice", "args": {"id": 1}}),
        json!({"op": "call", "name": "pay_invoice", "args": {"id": 7, "amount": 500, "memo": ARG_MARKUP}}),
    ]);
    let r = mcp_client(&python, port, &token, json!(actions));
    let listed: Vec<&str> = r[0]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{:#}", r[0]))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(!listed.contains(&"delete_invoice"), "hidden: {listed:?}");
    for t in [
        "read_invoice",
        "search_invoices",
        "pay_invoice",
        "render_note",
    ] {
        assert!(listed.contains(&t), "{t} listed: {listed:?} {:#}", r[0]);
    }
    for (i, call) in r[1..=10].iter().enumerate() {
        assert!(
            text_of(call).starts_with("called read_invoice"),
            "call {} of 10 passes: {call:#}",
            i + 1
        );
    }
    let eleventh = &r[11];
    assert_eq!(eleventh["isError"], true, "{eleventh:#}");
    assert!(
        text_of(eleventh).starts_with("[POLICY DENIED]") && text_of(eleventh).contains("10"),
        "the 11th call is over the limit: {eleventh:#}"
    );
    assert_eq!(r[12]["isError"], true, "{:#}", r[12]);
    assert!(
        text_of(&r[12]).contains("Refused: args.customer eq ACME."),
        "{:#}",
        r[12]
    );
    assert!(
        text_of(&r[13]).starts_with("called search_invoices"),
        "{:#}",
        r[13]
    );
    assert_eq!(r[14]["isError"], true, "{:#}", r[14]);
    assert!(
        text_of(&r[14]).starts_with("[POLICY DENIED]"),
        "{:#}",
        r[14]
    );
    assert!(
        text_of(&r[15]).starts_with("[APPROVAL REQUIRED] A human approves each call."),
        "{:#}",
        r[15]
    );
    let pay_calls = || {
        std::fs::read_to_string(dir.join("record.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"tools/call\"") && l.contains("\"pay_invoice\""))
            .count()
    };
    assert_eq!(pay_calls(), 0, "held, not forwarded");

    // 3. The approvals page shows the held call (its markup inert); approve it.
    b.goto(&format!("{base}/ui/approvals"));
    b.find("article.approval");
    let id = b
        .exec(
            "return document.querySelector('article.approval').getAttribute('data-approval')",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(id.starts_with("apr_"), "{id}");
    assert!(
        b.text("article.approval pre.args").contains(ARG_MARKUP),
        "the arguments show as text"
    );
    assert_inert(&b, "approvals");
    shoot(&b, &shots, "approvals", 1280);
    b.click(&format!(
        "article[data-approval=\"{id}\"] form[action$=\"/approve\"] button[type=submit]"
    ));
    b.wait_for(
        "the approval",
        "var n = document.querySelector('.notice.ok'); return !!n && n.textContent.startsWith('Approved')",
    );
    assert!(
        b.find_all("article.approval").is_empty(),
        "the queue is empty"
    );
    // The identical retry passes once; the one after is held again.
    let retry = json!({"op": "call", "name": "pay_invoice", "args": {"id": 7, "amount": 500, "memo": ARG_MARKUP}});
    let r = mcp_client(&python, port, &token, json!([retry, retry]));
    assert!(
        text_of(&r[0]).starts_with("called pay_invoice"),
        "{:#}",
        r[0]
    );
    assert!(
        text_of(&r[1]).starts_with("[APPROVAL REQUIRED]"),
        "{:#}",
        r[1]
    );
    assert_eq!(pay_calls(), 1, "forwarded exactly once");

    // 5. Markup in a tool description renders as inert, visible text.
    b.goto(&format!("{base}/ui/catalogue"));
    let desc = b.text("tr:has(a[href='/ui/catalogue/rec/render_note']) .desc");
    assert!(desc.contains(MARKUP), "shown as text: {desc}");
    assert_inert(&b, "catalogue");
    assert!(b
        .text("tr:has(a[href='/ui/catalogue/rec/delete_invoice'])")
        .contains("hidden"));
    shoot(&b, &shots, "catalogue", 1280);
    b.click("a[href='/ui/catalogue/rec/render_note']");
    b.wait_for(
        "the tool page",
        "return location.pathname === '/ui/catalogue/rec/render_note'",
    );
    assert!(
        b.text("main")
            .contains("<script>window.__portcullis_xss = 1</script>"),
        "{}",
        b.text("main")
    );
    assert_inert(&b, "tool page");
    shoot(&b, &shots, "tool", 1280);

    b.goto(&format!("{base}/ui/audit"));
    let rows = b.text("#audit-rows");
    assert!(
        rows.contains("read_invoice") && rows.contains("deny"),
        "{rows}"
    );
    shoot(&b, &shots, "audit", 1280);

    b.goto(&format!("{base}/ui/"));
    // 11 + 2 + 1 + 1 calls, then 2 retries; denied: the 11th, ACME, the hidden tool; held:
    // the first payment and the retry after the approved one.
    let stats = b.exec(
        "return Array.from(document.querySelectorAll('dl.stats div')).map(d => d.textContent)",
        json!([]),
    );
    assert_eq!(
        stats,
        json!([
            "Calls17",
            "Denied3",
            "Held for approval2",
            "Shadow denials0"
        ])
    );
    shoot(&b, &shots, "overview", 1280);
    shoot(&b, &shots, "overview-mobile", 390);

    // 4. Revoke the grant in the grants page: its next request gets 401.
    b.goto(&format!("{base}/ui/grants"));
    b.click("tr[data-grant=\"agent-alice\"] form[action$=\"/revoke\"] button[type=submit]");
    b.wait_for(
        "the revocation",
        "var n = document.querySelector('.notice.ok'); return !!n && n.textContent.includes('is revoked')",
    );
    assert_eq!(
        b.text("tr[data-grant=\"agent-alice\"] td.status-revoked"),
        "revoked"
    );
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_invoice", "arguments": {"id": 1},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}).to_string();
    let after = http_request(
        port,
        "POST",
        "/mcp/rec",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "read_invoice"),
        ],
        body.as_bytes(),
        Duration::from_secs(30),
    );
    assert_eq!(after.status, 401, "{}", after.body);
}
