//! The web console (`/ui` of `portcullis serve`) over raw HTTP against the real binary with
//! the recording fixture server upstream (one tool's description carries markup): sign-in
//! with the admin token (a wrong one refused, the session cookie HttpOnly and SameSite=Strict,
//! the token in no URL), the Content-Security-Policy, markup from a server rendered inert, a
//! state change without the CSRF token refused with nothing changed, and the builder's save
//! going through the admin API's PUT path (an invalid document shows every locator and
//! changes nothing; a valid one is in force for the next MCP call).

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

const ADMIN: &str = "pca_console-test-token-0123456789abcdef";

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn req(port: u16, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> Reply {
    let c = cookie.map(|c| format!("portcullis_console={c}"));
    let mut h: Vec<(&str, &str)> = Vec::new();
    if let Some(c) = &c {
        h.push(("Cookie", c));
    }
    if form.is_some() {
        h.push(("Content-Type", "application/x-www-form-urlencoded"));
    }
    let body = form.unwrap_or("");
    http_request(
        port,
        method,
        path,
        &h,
        body.as_bytes(),
        Duration::from_secs(60),
    )
}

fn csrf_of(page: &str) -> String {
    let (_, rest) = page
        .split_once("name=\"csrf-token\" content=\"")
        .expect("a signed-in page carries its CSRF token");
    rest.split('"').next().unwrap().to_string()
}

#[test]
fn sign_in_csrf_csp_escaping_and_the_builder_save_path() {
    let dir = scratch("console");
    let tools = json!({"tools": [
        {"name": "read_invoice", "description": "Read one invoice. <script>alert('pwned')</script><img src=x onerror=alert(1)>",
         "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        {"name": "delete_invoice", "description": "Delete an invoice.",
         "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}}}
    ]});
    let policy = json!({"version": "1", "default": "deny", "tools": {"read_invoice": {}}});
    let gw = serve_rec(&dir, &tools, &policy, ADMIN);
    let port = gw.port;

    // Not signed in: to the sign-in page.
    let r = req(port, "GET", "/ui/", None, None);
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.headers.contains("location: /ui/login"));
    // A wrong token, and a grant-shaped one, are refused.
    let r = req(
        port,
        "POST",
        "/ui/login",
        None,
        Some("token=pca_wrong-token-0000000000000000"),
    );
    assert_eq!(r.status, 401);
    assert!(!r.headers.contains("set-cookie"));
    // The right one opens a session: cookie HttpOnly, SameSite=Strict; no token in the URL.
    let r = req(
        port,
        "POST",
        "/ui/login",
        None,
        Some(&format!("token={}", enc(ADMIN))),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.headers.contains("location: /ui/\r\n") || r.headers.ends_with("location: /ui/"));
    let line = r
        .headers
        .lines()
        .find(|l| l.starts_with("set-cookie: portcullis_console="))
        .expect("a session cookie");
    assert!(
        line.contains("httponly") && line.contains("samesite=strict"),
        "{line}"
    );
    assert!(!line.contains(&ADMIN.to_ascii_lowercase()));
    let cookie = line["set-cookie: portcullis_console=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();

    // Every page answers with the strict CSP; the catalogue shows the markup as text.
    let r = req(port, "GET", "/ui/catalogue", Some(&cookie), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .headers
        .contains("content-security-policy: default-src 'none'; script-src 'self'"));
    // No referrer to other sites; the console's own posts keep their Origin (not "null").
    assert!(r.headers.contains("referrer-policy: same-origin"));
    assert!(
        r.body
            .contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<script>alert"));
    assert!(!r.body.contains("<img src=x"));
    let r = req(
        port,
        "GET",
        "/ui/catalogue/rec/read_invoice",
        Some(&cookie),
        None,
    );
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("<script>alert") && r.body.contains("&lt;script&gt;"));
    for page in [
        "/ui/",
        "/ui/policies/rec",
        "/ui/grants",
        "/ui/approvals",
        "/ui/pins",
        "/ui/audit",
    ] {
        let r = req(port, "GET", page, Some(&cookie), None);
        assert_eq!(r.status, 200, "{page}: {}", r.body);
        assert!(r.headers.contains("content-security-policy"), "{page}");
        assert!(!r.body.contains(ADMIN), "{page} shows the admin token");
    }
    let csrf = csrf_of(&req(port, "GET", "/ui/grants", Some(&cookie), None).body);

    // A state change without the CSRF token (or with a wrong one) is refused; nothing made.
    for form in ["server=rec&label=x", "server=rec&label=x&csrf=0000"] {
        let r = req(port, "POST", "/ui/grants", Some(&cookie), Some(form));
        assert_eq!(r.status, 403, "{form}: {}", r.body);
    }
    let grants = http_request(
        port,
        "GET",
        "/admin/api/grants",
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        b"",
        Duration::from_secs(30),
    )
    .json();
    assert_eq!(grants, json!([]));
    // With it, the grant is made and its token shown once, with the client snippets.
    let r = req(
        port,
        "POST",
        "/ui/grants",
        Some(&cookie),
        Some(&format!(
            "csrf={csrf}&server=rec&label=alice&policy=rec&expires=30d"
        )),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r
        .body
        .split("value=\"pcx_")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let token = format!("pcx_{token}");
    assert!(
        r.body.contains("Claude Desktop")
            && r.body.contains("VS Code")
            && r.body.contains("Cursor")
    );

    // The builder's save: an invalid document shows every locator and changes nothing.
    let bad =
        json!({"version": "1", "default": "maybe", "tools": {"read_invoice": {"deny_iff": []}}})
            .to_string();
    let r = req(
        port,
        "POST",
        "/ui/policies/rec/save",
        Some(&cookie),
        Some(&format!("csrf={csrf}&document={}", enc(&bad))),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("<code>default</code>") && r.body.contains("tools.read_invoice.deny_iff"),
        "{}",
        r.body
    );
    // A valid one, hiding delete_invoice and denying read_invoice for id 7, is in force.
    let good = json!({"version": "1", "default": "deny", "hide": ["delete_invoice"], "tools": {"read_invoice": {"deny_if": [
        {"conditions": [{"path": "args.id", "op": "eq", "value": 7}], "on_deny": "Invoice 7 is off limits."}]}}}).to_string();
    let r = req(
        port,
        "POST",
        "/ui/policies/rec/preview",
        Some(&cookie),
        Some(&format!("csrf={csrf}&document={}", enc(&good))),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("class=\"add\">+") && r.body.contains("delete_invoice"));
    let r = req(
        port,
        "POST",
        "/ui/policies/rec/save",
        Some(&cookie),
        Some(&format!("csrf={csrf}&document={}", enc(&good))),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Saved and reloaded"), "{}", r.body);
    let call = |id: u32| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_invoice", "arguments": {"id": id},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}).to_string();
        let auth = format!("Bearer {token}");
        http_request(
            port,
            "POST",
            "/mcp/rec",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
                ("MCP-Protocol-Version", "2026-07-28"),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "read_invoice"),
            ],
            body.as_bytes(),
            Duration::from_secs(60),
        )
    };
    let denied = call(7);
    assert!(
        denied.body.contains("Invoice 7 is off limits."),
        "{}",
        denied.body
    );
    let allowed = call(1);
    assert!(!allowed.body.contains("POLICY DENIED"), "{}", allowed.body);

    // Revoked from the console: the token's next request is refused with 401.
    let id = grants_id(port);
    let r = req(
        port,
        "POST",
        &format!("/ui/grants/{id}/revoke"),
        Some(&cookie),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(call(1).status, 401);
}

fn grants_id(port: u16) -> String {
    let g = http_request(
        port,
        "GET",
        "/admin/api/grants",
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        b"",
        Duration::from_secs(30),
    )
    .json();
    g[0]["id"].as_str().unwrap().to_string()
}
