//! The admin API (`/admin/api/…` of `portcullis serve`), driven over raw HTTP against the
//! real binary with the recording fixture server upstream: the admin token (required, wrong,
//! a grant token, generated at first start), servers and classified tools, policies (an
//! invalid PUT changes nothing, a valid one applies to the next MCP call), grants through
//! their whole life with the tokens used on `/mcp/<server>`, the audit of those calls,
//! counters, and the OpenAPI document naming exactly the routes that are served.

mod common;
use common::*;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "pca_test-admin-token-0123456789abcdef";

/// Every route the admin API serves, with its method: the OpenAPI document must describe
/// exactly these, and each must be served (not the fallback's `not_found`).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/admin/api/openapi.json"),
    ("get", "/admin/api/servers"),
    ("get", "/admin/api/servers/{name}/tools"),
    ("get", "/admin/api/policies"),
    ("get", "/admin/api/policies/{name}"),
    ("put", "/admin/api/policies/{name}"),
    ("get", "/admin/api/grants"),
    ("post", "/admin/api/grants"),
    ("post", "/admin/api/grants/{id}/rotate"),
    ("delete", "/admin/api/grants/{id}"),
    ("get", "/admin/api/audit"),
    ("get", "/admin/api/counters/{server}"),
    ("get", "/admin/api/approvals"),
    ("get", "/admin/api/approvals/{id}"),
    ("post", "/admin/api/approvals/{id}/approve"),
    ("post", "/admin/api/approvals/{id}/deny"),
    ("get", "/admin/api/pins"),
    ("get", "/admin/api/pins/{server}/{tool}"),
    ("post", "/admin/api/pins/{server}/{tool}/approve"),
    ("post", "/admin/api/pins/{server}/{tool}/reject"),
];

struct Gw {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Gw {
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.stop();
    }
}

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-admin-api-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `portcullis serve` in `dir` (config and files already written there, or written
/// now) on a free port; `admin_token` is `PORTCULLIS_ADMIN_TOKEN`. Standard error goes to
/// `dir/stderr.log`.
fn serve(dir: &Path, servers: &str, files: &[(&str, String)], admin_token: Option<&str>) -> Gw {
    for (f, text) in files {
        std::fs::write(dir.join(f), text).unwrap();
    }
    let port = free_port();
    let cfg = format!(
        "[gateway]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nmax_body_bytes = 65536\n\n{servers}"
    );
    std::fs::write(dir.join("portcullis.toml"), cfg).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args([
        "serve",
        "--config",
        dir.join("portcullis.toml").to_str().unwrap(),
        "--log",
        "warn",
    ])
    .env("RECORD", dir.join("record.jsonl"))
    .env_remove("PORTCULLIS_ADMIN_TOKEN")
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
    if let Some(t) = admin_token {
        cmd.env("PORTCULLIS_ADMIN_TOKEN", t);
    }
    let child = cmd.spawn().unwrap();
    let mut gw = Gw {
        child,
        port,
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = gw.child.try_wait() {
            panic!("the gateway exited ({status}): {}", gw.stderr());
        }
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    gw.dir = dir.to_path_buf();
    gw
}

/// A minimal HTTP/1.1 request over a fresh connection (Connection: close).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    http_request(port, method, path, headers, body, Duration::from_secs(60))
}

fn admin(gw: &Gw, method: &str, path: &str, body: Option<&Value>) -> Reply {
    admin_as(gw, ADMIN, method, path, body)
}

fn admin_as(gw: &Gw, token: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
    let bearer = format!("Bearer {token}");
    let body = body.map(Value::to_string).unwrap_or_default();
    http(
        gw.port,
        method,
        path,
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

/// One stateless (2026-07-28) `tools/call` through `/mcp/rec` with a grant token.
fn call(gw: &Gw, token: &str, id: u32, tool: &str) -> Reply {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"id":{id}}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    let bearer = format!("Bearer {token}");
    http(
        gw.port,
        "POST",
        "/mcp/rec",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Authorization", &bearer),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", tool),
        ],
        body.as_bytes(),
    )
}

fn servers_toml() -> String {
    format!(
        "[[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{}\"]\npolicy = \"rec.json\"\n\n[policies]\nlimited = \"limited.json\"\n",
        fixture_server()
    )
}

fn start(name: &str) -> Gw {
    let rec = json!({"version":"1","default":"deny","tools":{"read_invoice":{}}});
    let limited = json!({"version":"1","default":"deny","tools":{"read_invoice":{"limits":[
        {"counter":"reads","window":"hour","max":5,"scope":"grant"},
        {"counter":"all_reads","window":"day","max":100,"scope":"server"},
        {"counter":"per_session","window":"minute","max":9,"scope":"session"}
    ]}}});
    serve(
        &test_dir(name),
        &servers_toml(),
        &[
            ("rec.json", rec.to_string()),
            ("limited.json", limited.to_string()),
        ],
        Some(ADMIN),
    )
}

#[test]
fn admin_token_is_required_and_grant_tokens_never_work() {
    let gw = start("auth");
    let r = http(gw.port, "GET", "/admin/api/servers", &[], b"");
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "admin_token_required");
    assert!(r.json()["message"].as_str().unwrap().contains("Bearer"));

    let r = admin_as(
        &gw,
        "pca_wrong-token-000000000000",
        "GET",
        "/admin/api/servers",
        None,
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "admin_token_invalid");

    // A live grant token opens /mcp/rec but never the admin API.
    let created = admin(
        &gw,
        "POST",
        "/admin/api/grants",
        Some(&json!({"server": "rec", "label": "alice", "policy": "rec"})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let token = created.json()["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("pcx_"), "{token}");
    let r = admin_as(&gw, &token, "GET", "/admin/api/grants", None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "admin_token_invalid");
    assert!(r.body.contains("grant token"), "{}", r.body);
    let r = call(&gw, &token, 1, "read_invoice");
    assert!(r.body.contains("called read_invoice"), "{}", r.body);

    // The MCP face's Host rule applies here too.
    let bearer = format!("Bearer {ADMIN}");
    let r = http(
        gw.port,
        "GET",
        "/admin/api/servers",
        &[("Host", "evil.example"), ("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = http(
        gw.port,
        "GET",
        "/admin/api/servers",
        &[
            ("Origin", "http://evil.example"),
            ("Authorization", &bearer),
        ],
        b"",
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // Unknown routes under /admin/api need the token too, then say 404.
    let r = http(gw.port, "GET", "/admin/api/nothing", &[], b"");
    assert_eq!(r.status, 401, "{}", r.body);
    let r = admin(&gw, "GET", "/admin/api/nothing", None);
    assert_eq!(r.status, 404, "{}", r.body);
    // The rest of the gateway is untouched by the admin routes.
    assert_eq!(http(gw.port, "GET", "/healthz", &[], b"").status, 200);
    let r = http(gw.port, "GET", "/elsewhere", &[], b"");
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(!r.body.contains("admin"), "{}", r.body);
}

#[test]
fn admin_token_made_at_first_start_printed_once_stored_hashed() {
    let dir = test_dir("firststart");
    let servers = servers_toml();
    let files = [
        (
            "rec.json",
            json!({"version":"1","default":"deny"}).to_string(),
        ),
        (
            "limited.json",
            json!({"version":"1","default":"deny"}).to_string(),
        ),
    ];
    let mut gw = serve(&dir, &servers, &files, None);
    let log = gw.stderr();
    let token = log
        .split_whitespace()
        .find(|w| w.starts_with("pca_"))
        .unwrap_or_else(|| panic!("no token printed: {log}"))
        .to_string();
    assert_eq!(token.len(), 4 + 64, "{token}");
    assert!(log.contains("store it now"), "{log}");
    let stored = std::fs::read_to_string(dir.join("data/admin.token.sha256")).unwrap();
    assert!(!stored.contains(&token[4..]), "the token itself is stored");
    assert_eq!(stored.trim().len(), 64);
    let r = admin_as(&gw, &token, "GET", "/admin/api/servers", None);
    assert_eq!(r.status, 200, "{}", r.body);
    gw.stop();
    drop(gw);

    // Second start: the token is not printed again and still works.
    let gw = serve(&dir, &servers, &[], None);
    assert!(!gw.stderr().contains("pca_"), "{}", gw.stderr());
    let r = admin_as(&gw, &token, "GET", "/admin/api/servers", None);
    assert_eq!(r.status, 200, "{}", r.body);
    drop(gw);

    // PORTCULLIS_ADMIN_TOKEN replaces it.
    let gw = serve(&dir, &servers, &[], Some(ADMIN));
    assert_eq!(
        admin_as(&gw, &token, "GET", "/admin/api/servers", None).status,
        401
    );
    assert_eq!(admin(&gw, "GET", "/admin/api/servers", None).status, 200);
}

#[test]
fn servers_and_classified_tools() {
    let gw = start("tools");
    let r = admin(&gw, "GET", "/admin/api/servers", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!([{"name": "rec", "transport": "stdio", "policy": "rec", "auth": "grant"}])
    );

    let r = admin(&gw, "GET", "/admin/api/servers/rec/tools", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["server"], "rec");
    assert_eq!(v["cached"], false);
    let tools = v["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 9, "{v}");
    for t in tools {
        let c = &t["classification"];
        assert_eq!(c["tool"], t["name"], "{t}");
        assert!(c["category"].is_string(), "{t}");
        assert!(c["risk"].is_string(), "{t}");
        assert!(c["evidence"].is_array(), "{t}");
        assert!(c["rule"].is_object(), "{t}");
        assert!(t["inputSchema"].is_object(), "{t}");
    }
    let by_name = |n: &str| tools.iter().find(|t| t["name"] == n).unwrap().clone();
    assert_eq!(by_name("read_invoice")["hidden_by_policy"], false);
    let delete = by_name("delete_invoice");
    assert_ne!(
        delete["classification"]["risk"],
        by_name("read_invoice")["classification"]["risk"],
        "deleting is riskier than reading: {delete}"
    );

    // Cached: the server is not started again.
    let before = std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap_or_default();
    let r = admin(&gw, "GET", "/admin/api/servers/rec/tools", None);
    assert_eq!(r.json()["cached"], true);
    let after = std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap_or_default();
    assert_eq!(before, after, "a cached list asks the server nothing");
    let r = admin(
        &gw,
        "GET",
        "/admin/api/servers/rec/tools?refresh=true",
        None,
    );
    assert_eq!(r.json()["cached"], false);

    let r = admin(&gw, "GET", "/admin/api/servers/nope/tools", None);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"], "unknown_server");
}

#[test]
fn policies_get_put_validate_and_apply_to_the_next_call() {
    let gw = start("policies");
    let r = admin(&gw, "GET", "/admin/api/policies", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["limited", "rec"]);
    let r = admin(&gw, "GET", "/admin/api/policies/rec", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let old = r.json();
    assert_eq!(old["document"]["default"], "deny");
    let old_hash = old["hash"].as_str().unwrap().to_string();
    assert_eq!(
        admin(&gw, "GET", "/admin/api/policies/nope", None).status,
        404
    );

    let created = admin(
        &gw,
        "POST",
        "/admin/api/grants",
        Some(&json!({"server": "rec", "label": "alice", "policy": "rec"})),
    );
    let token = created.json()["token"].as_str().unwrap().to_string();
    let r = call(&gw, &token, 1, "pay_invoice");
    assert!(r.body.contains("(default deny)"), "{}", r.body);

    // Invalid: 422 with every error located; nothing written, nothing changed.
    let bad = json!({"version": "1", "default": "sometimes", "tools": {"pay_invoice": {"limits": [{"counter": "c", "window": "fortnight", "max": 1}]}}});
    let r = admin(&gw, "PUT", "/admin/api/policies/rec", Some(&bad));
    assert_eq!(r.status, 422, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"], "invalid_policy");
    let errors = v["errors"].as_array().unwrap();
    assert!(errors.len() >= 2, "{v}");
    let locators: Vec<&str> = errors
        .iter()
        .map(|e| e["locator"].as_str().unwrap())
        .collect();
    assert!(locators.contains(&"default"), "{locators:?}");
    assert!(
        locators.iter().any(|l| l.starts_with("tools.pay_invoice")),
        "{locators:?}"
    );
    let r = admin(&gw, "PUT", "/admin/api/policies/rec", None);
    assert_eq!(r.status, 422, "an empty body is not a policy: {}", r.body);
    std::thread::sleep(Duration::from_millis(1500)); // let the file watcher look too
    let r = call(&gw, &token, 2, "pay_invoice");
    assert!(r.body.contains("(default deny)"), "{}", r.body);
    assert_eq!(
        admin(&gw, "GET", "/admin/api/policies/rec", None).json()["hash"],
        old_hash.as_str()
    );

    // Valid: written and in force for the very next call.
    let good = json!({"version": "1", "default": "deny", "tools": {"read_invoice": {}, "pay_invoice": {}}});
    let r = admin(&gw, "PUT", "/admin/api/policies/rec", Some(&good));
    assert_eq!(r.status, 200, "{}", r.body);
    let new_hash = r.json()["hash"].as_str().unwrap().to_string();
    assert_ne!(new_hash, old_hash);
    let r = call(&gw, &token, 3, "pay_invoice");
    assert!(r.body.contains("called pay_invoice"), "{}", r.body);
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(gw.dir.join("rec.json")).unwrap()).unwrap();
    assert_eq!(on_disk, good);
    let r = admin(&gw, "GET", "/admin/api/policies/rec", None);
    assert_eq!(r.json()["hash"], new_hash.as_str());
    assert!(r.json()["document"]["tools"]["pay_invoice"].is_object());
    // Only configured names can be written.
    let r = admin(&gw, "PUT", "/admin/api/policies/other", Some(&good));
    assert_eq!(r.status, 404, "{}", r.body);
}

#[test]
fn grants_audit_and_counters() {
    let gw = start("grants");
    // Create.
    let r = admin(
        &gw,
        "POST",
        "/admin/api/grants",
        Some(&json!({"server": "rec", "label": "bob", "policy": "limited", "expires": "30d"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    let id = v["grant"]["id"].as_str().unwrap().to_string();
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["grant"]["status"], "active");
    assert!(v["grant"]["expires_at"].is_u64(), "{v}");
    assert!(v.get("warning").is_none(), "{v}");
    // Errors: unknown server, duplicate label, bad expiry, bad body.
    let r = admin(
        &gw,
        "POST",
        "/admin/api/grants",
        Some(&json!({"server": "nope", "label": "x"})),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = admin(
        &gw,
        "POST",
        "/admin/api/grants",
        Some(&json!({"server": "rec", "label": "bob", "policy": "limited"})),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let r = admin(
        &gw,
        "POST",
        "/admin/api/grants",
        Some(&json!({"server": "rec", "label": "carol", "expires": "someday"})),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let r = admin(
        &gw,
        "POST",
        "/admin/api/grants",
        Some(&json!({"server": "rec"})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // Without a policy: created, with a warning.
    let r = admin(
        &gw,
        "POST",
        "/admin/api/grants",
        Some(&json!({"server": "rec", "label": "nopolicy"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.json()["warning"].is_string(), "{}", r.body);

    // The token works on /mcp/rec; two limited calls.
    for i in 1..=2 {
        let r = call(&gw, &token, i, "read_invoice");
        assert!(r.body.contains("called read_invoice"), "{}", r.body);
    }
    let r = call(&gw, &token, 3, "pay_invoice");
    assert!(r.body.contains("(default deny)"), "{}", r.body);

    // List: never tokens.
    let r = admin(&gw, "GET", "/admin/api/grants?server=rec", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(&token), "a token in the list");
    assert!(!r.body.contains("\"token\""), "{}", r.body);
    let list = r.json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["id"] == id.as_str()));
    assert_eq!(
        admin(&gw, "GET", "/admin/api/grants?server=other", None).json(),
        json!([])
    );

    // Counters after the limited calls.
    let r = admin(
        &gw,
        "GET",
        &format!("/admin/api/counters/rec?grant={id}"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = r.json();
    assert_eq!(c["policy"]["name"], "limited", "{c}");
    assert_eq!(c["grant"], id.as_str());
    let limit = |counter: &str| {
        c["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["counter"] == counter)
            .unwrap_or_else(|| panic!("no {counter}: {c}"))
            .clone()
    };
    assert_eq!(limit("reads")["used"], 2, "{c}");
    assert_eq!(limit("reads")["remaining"], 3, "{c}");
    assert!(limit("reads")["resets_at"].is_u64(), "{c}");
    assert_eq!(limit("all_reads")["used"], 2, "{c}");
    assert!(limit("per_session")["used"].is_null(), "{c}");
    assert!(limit("per_session")["note"].is_string(), "{c}");
    // By label too; without a grant, the grant-scoped one says what to give.
    let r = admin(&gw, "GET", "/admin/api/counters/rec?grant=bob", None);
    assert_eq!(r.json()["grant"], id.as_str(), "{}", r.body);
    let r = admin(&gw, "GET", "/admin/api/counters/rec", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["policy"]["name"], "rec", "{}", r.body);
    assert_eq!(
        admin(&gw, "GET", "/admin/api/counters/nope", None).status,
        404
    );

    // Audit: the records of those calls.
    let r = admin(
        &gw,
        "GET",
        &format!("/admin/api/audit?since=1h&grant={id}&tool=read_invoice"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let records = r.json()["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 2, "{records:?}");
    for rec in &records {
        assert_eq!(rec["decision"], "allow");
        assert_eq!(rec["server"], "rec");
        assert_eq!(rec["grant_label"], "bob");
    }
    let r = admin(
        &gw,
        "GET",
        "/admin/api/audit?decision=denied&server=rec",
        None,
    );
    let denied = r.json()["records"].as_array().unwrap().clone();
    assert!(
        denied.iter().any(|x| x["tool"] == "pay_invoice"),
        "{denied:?}"
    );
    let r = admin(&gw, "GET", "/admin/api/audit?limit=1", None);
    assert_eq!(r.json()["records"].as_array().unwrap().len(), 1);
    let r = admin(&gw, "GET", "/admin/api/audit?decision=maybe", None);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = admin(&gw, "GET", "/admin/api/audit?since=whenever", None);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("since"), "{}", r.body);

    // Rotate: the old token is refused, the new one works.
    let r = admin(&gw, "POST", &format!("/admin/api/grants/{id}/rotate"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let new_token = r.json()["token"].as_str().unwrap().to_string();
    assert_ne!(new_token, token);
    assert_eq!(call(&gw, &token, 4, "read_invoice").status, 401);
    let r = call(&gw, &new_token, 5, "read_invoice");
    assert!(r.body.contains("called read_invoice"), "{}", r.body);

    // Revoke: refused from the next request on; a second revoke is a conflict.
    let r = admin(&gw, "DELETE", &format!("/admin/api/grants/{id}"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "revoked");
    assert_eq!(call(&gw, &new_token, 6, "read_invoice").status, 401);
    let r = admin(&gw, "DELETE", &format!("/admin/api/grants/{id}"), None);
    assert_eq!(r.status, 409, "{}", r.body);
    let r = admin(
        &gw,
        "DELETE",
        "/admin/api/grants/grt_0000000000000000",
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"], "grant_not_found");
}

#[test]
fn openapi_document_lists_exactly_the_served_routes() {
    let gw = start("openapi");
    // No token needed for the document itself.
    let r = http(gw.port, "GET", "/admin/api/openapi.json", &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (p, item) in paths {
        for (m, op) in item.as_object().unwrap() {
            documented.push((m.clone(), p.clone()));
            assert!(op["responses"].is_object(), "{m} {p}: no responses");
            assert!(op["operationId"].is_string(), "{m} {p}: no operationId");
        }
    }
    documented.sort();
    let mut implemented: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    implemented.sort();
    assert_eq!(
        documented, implemented,
        "the document and the router differ"
    );
    // Every $ref resolves.
    let text = r.body.clone();
    for part in text.split("\"$ref\": \"#/components/").skip(1) {
        let target = part.split('"').next().unwrap();
        let mut at = &doc["components"];
        for seg in target.split('/') {
            at = &at[seg];
        }
        assert!(!at.is_null(), "dangling $ref {target}");
    }
    // And every listed route is really served (not the fallback's 404 `not_found`).
    for (m, p) in ROUTES {
        let path = p
            .replace("{name}", "rec")
            .replace("{server}", "rec")
            .replace("{tool}", "read_invoice")
            .replace("{id}", "grt_0000000000000000");
        let body = match *m {
            "put" => Some(json!({"version": "1", "default": "deny"})),
            "post" if !p.contains("{id}") => Some(json!({"server": "rec", "label": "route-check"})),
            _ => None,
        };
        let r = admin(&gw, &m.to_uppercase(), &path, body.as_ref());
        assert!(
            !(r.status == 404 && r.body.contains("\"not_found\"")) && r.status != 405,
            "{m} {path} is not served: {} {}",
            r.status,
            r.body
        );
    }
}

/// A pending approval request made through the store, as the gateway would.
fn pending_approval(data_dir: &Path, fp: &str, tool: &str) -> String {
    approval_made_ago(data_dir, fp, tool, 0)
}

/// [`pending_approval`] as if made `ago_ms` ago (it lapses 15 minutes after).
fn approval_made_ago(data_dir: &Path, fp: &str, tool: &str, ago_ms: u64) -> String {
    use portcullis_store::{ApprovalCheck, ApprovalRequest, ApprovalStore, SqliteApprovals};
    std::fs::create_dir_all(data_dir).unwrap();
    let store = SqliteApprovals::open(data_dir.join(portcullis_store::APPROVALS_FILE)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - ago_ms;
    let req = ApprovalRequest {
        fingerprint: fp.into(),
        grant_id: "grt_00000000000000aa".into(),
        grant_label: "bob".into(),
        server: "rec".into(),
        tool: tool.into(),
        args: json!({"amount": 5000}),
        rule: format!("/tools/{tool}/approve_if/0"),
        reason: "large payment".into(),
        timeout_ms: 15 * 60_000,
    };
    match store.check(&req, now).unwrap() {
        ApprovalCheck::Pending { approval, .. } => approval.id,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lapsed_request_is_shown_expired_and_its_expiry_audited_and_counted_once() {
    let gw = start("approvals-expiry");
    let data = gw.dir.join("data");
    let a = approval_made_ago(&data, "fp-old", "pay_invoice", 16 * 60_000);

    // Reading it (the list, the request, a metrics scrape) shows it expired, and must not
    // swallow its expiry: these reads used to mark it expired without an audit record.
    let r = admin(&gw, "GET", "/admin/api/approvals?status=expired", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[0]["id"], a.as_str(), "{}", r.body);
    let r = admin(&gw, "GET", "/admin/api/approvals", None);
    assert_eq!(r.json(), json!([]), "nothing pending: {}", r.body);
    let r = admin(&gw, "GET", &format!("/admin/api/approvals/{a}"), None);
    assert_eq!(r.json()["status"], "expired", "{}", r.body);
    let m = admin(&gw, "GET", "/metrics", None);
    assert!(
        !m.body
            .contains(r#"portcullis_approvals_pending{server="rec"} 1"#),
        "{}",
        m.body
    );

    // The gateway's sweep expires it with no call asking: one audit record, counted once.
    let deadline = Instant::now() + Duration::from_secs(15);
    let expired_line = r#"portcullis_approvals_total{server="rec",event="expired"} 1"#;
    loop {
        let m = admin(&gw, "GET", "/metrics", None);
        if m.body.lines().any(|l| l == expired_line) {
            break;
        }
        assert!(Instant::now() < deadline, "no {expired_line} in {}", m.body);
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = admin(&gw, "GET", "/admin/api/audit?decision=approval", None);
    let expiries: Vec<Value> = r.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["message"] == format!("expired {a}").as_str())
        .cloned()
        .collect();
    assert_eq!(expiries.len(), 1, "{}", r.body);
    assert_eq!(expiries[0]["tool"], "pay_invoice");
    assert_eq!(expiries[0]["rule"], "/tools/pay_invoice/approve_if/0");
    assert_eq!(expiries[0]["grant_label"], "bob");
}

#[test]
fn approvals_list_show_approve_deny_and_audit() {
    let gw = start("approvals");
    let data = gw.dir.join("data");
    let a = pending_approval(&data, "fp-a", "pay_invoice");
    let b = pending_approval(&data, "fp-b", "refund");

    let r = admin(&gw, "GET", "/admin/api/approvals", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let ids: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [b.clone(), a.clone()], "newest first");

    let r = admin(&gw, "GET", &format!("/admin/api/approvals/{a}"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["args"], json!({"amount": 5000}));
    assert_eq!(r.json()["status"], "pending");

    let r = admin(
        &gw,
        "POST",
        &format!("/admin/api/approvals/{a}/approve"),
        Some(&json!({"by": "alice", "valid_for": "5m"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "approved");
    assert_eq!(v["decided_by"], "alice");
    assert_eq!(
        v["valid_until"].as_u64().unwrap() - v["decided_at"].as_u64().unwrap(),
        300_000
    );

    // Deciding again: 409 with the current status.
    let r = admin(
        &gw,
        "POST",
        &format!("/admin/api/approvals/{a}/deny"),
        Some(&json!({"reason": "too late"})),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["error"], "approval_not_pending");
    assert!(r.json()["message"].as_str().unwrap().contains("approved"));

    // A denial needs a reason.
    let r = admin(
        &gw,
        "POST",
        &format!("/admin/api/approvals/{b}/deny"),
        Some(&json!({"reason": " "})),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let r = admin(&gw, "POST", &format!("/admin/api/approvals/{b}/deny"), None);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = admin(
        &gw,
        "POST",
        &format!("/admin/api/approvals/{b}/deny"),
        Some(&json!({"reason": "not this supplier", "by": "carol"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["decision_reason"], "not this supplier");

    let r = admin(&gw, "GET", "/admin/api/approvals", None);
    assert_eq!(r.json(), json!([]), "nothing pending any more");
    let r = admin(&gw, "GET", "/admin/api/approvals?status=all", None);
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    let r = admin(&gw, "GET", "/admin/api/approvals?status=denied", None);
    assert_eq!(r.json()[0]["id"], b.as_str());
    let r = admin(&gw, "GET", "/admin/api/approvals?status=maybe", None);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = admin(
        &gw,
        "GET",
        "/admin/api/approvals/apr_ffffffffffffffff",
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"], "approval_not_found");
    let r = admin(
        &gw,
        "POST",
        &format!("/admin/api/approvals/{a}/approve"),
        Some(&json!({"valid_for": "soon"})),
    );
    assert_eq!(r.status, 422, "{}", r.body);

    // Both decisions are in the audit log.
    let r = admin(&gw, "GET", "/admin/api/audit?decision=approval", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let records = r.json()["records"].as_array().unwrap().clone();
    let messages: Vec<&str> = records
        .iter()
        .filter(|x| x["method"] == "(approval)")
        .map(|x| x["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.contains(&format!("approved {a} by alice").as_str()),
        "{messages:?}"
    );
    assert!(
        messages.contains(&format!("denied {b} by carol: not this supplier").as_str()),
        "{messages:?}"
    );
    let rec = records.iter().find(|x| x["tool"] == "refund").unwrap();
    assert_eq!(rec["rule"], "/tools/refund/approve_if/0");
    assert_eq!(rec["grant_label"], "bob");
    assert_eq!(rec["server"], "rec");
    // The decisions went through the gateway's event sink: its metrics counted them too.
    let m = admin(&gw, "GET", "/metrics", None);
    assert_eq!(m.status, 200, "{}", m.body);
    for line in [
        r#"portcullis_approvals_total{server="rec",event="approved"} 1"#,
        r#"portcullis_approvals_total{server="rec",event="denied"} 1"#,
        // Both were decided: nothing waits.
        r#"portcullis_approvals_pending{server="rec"} 0"#,
    ] {
        assert!(m.body.lines().any(|l| l == line), "{line} in {}", m.body);
    }
}
