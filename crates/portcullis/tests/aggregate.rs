//! One endpoint for many servers (`portcullis stdio --config … --all`, and `/mcp` of `serve`):
//! a real Python `mcp` 2.x client over three different upstreams (our recording fixture,
//! `server-everything`, the demo's Odoo-like server), merged pagination, a call to each, a
//! denial by one server's policy, every bad name refused with nothing reaching any upstream,
//! an upstream down, `tools/list_changed` from one member, shortened names mapped back.
//! Missing peers fail these tests (`scripts/install-peers.sh`).

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A peer these tests cannot run without.
fn need(rel: &str) -> PathBuf {
    let p = repo().join(".peers").join(rel);
    assert!(
        p.exists(),
        "peer .peers/{rel} is missing: run scripts/install-peers.sh"
    );
    p
}

fn python() -> PathBuf {
    need("venv/bin/python")
}

fn everything() -> PathBuf {
    need("node/node_modules/.bin/mcp-server-everything")
}

/// `portcullis stdio --config <dir>/portcullis.toml --all`, its standard error appended to
/// `<dir>/gateway.log`.
fn stdio_all(dir: &Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "exec \"$0\" stdio --config {} --all --log info 2>>{}",
            dir.join("portcullis.toml").display(),
            dir.join("gateway.log").display()
        ),
        bin(),
    ]
}

fn drive(target: &[String], actions: &Value) -> Value {
    let mut args = vec!["auto".to_string(), "--".to_string()];
    args.extend(target.iter().cloned());
    run_driver(&python(), "aggregate_client.py", &args, actions, &[])
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

fn audited(data: &Path) -> Vec<Value> {
    let out = Command::new(bin())
        .args(["audit", "--data-dir"])
        .arg(data)
        .args(["--json", "--limit", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `tools/call` names the recording fixture received.
fn recorded_calls(record: &Path) -> Vec<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["method"] == "tools/call")
        .map(|m| m["params"]["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Three servers: `rec` (the recording fixture, 3 tools a page, `delete_invoice` denied by
/// its policy), `everything` (server-everything) and `odoo` (the demo server).
fn three_servers(dir: &Path) -> PathBuf {
    let record = dir.join("rec.jsonl");
    write(
        dir,
        "rec.json",
        &json!({"version":"1","default":"allow","tools":{"delete_invoice":{"deny_if":[{"conditions":[],"on_deny":"Invoices are never deleted through the gateway."}]}}}),
    );
    write(dir, "open.json", &json!({"version":"1","default":"allow"}));
    let config = format!(
        r#"[gateway]
data_dir = "data"

[[servers]]
name = "rec"
command = ["python3", "{fixture}"]
policy = "rec.json"
env = {{ RECORD = "{record}", PAGE_SIZE = "3" }}

[[servers]]
name = "everything"
command = ["{everything}", "stdio"]
policy = "open.json"

[[servers]]
name = "odoo"
command = ["{bin}", "demo-upstream"]
policy = "open.json"
"#,
        fixture = fixture_server(),
        record = record.display(),
        everything = everything().display(),
        bin = bin(),
    );
    std::fs::write(dir.join("portcullis.toml"), config).unwrap();
    record
}

#[test]
fn stdio_all_merges_three_servers_routes_each_call_and_judges_it_by_its_servers_policy() {
    let dir = scratch("agg-three");
    let record = three_servers(&dir);
    let out = drive(
        &stdio_all(&dir),
        &json!([
            {"op":"pages","list":"tools"},
            {"op":"call","name":"rec__read_invoice","args":{"id":7}},
            {"op":"call","name":"everything__echo","args":{"message":"through the aggregate"}},
            {"op":"call","name":"odoo__ai_invoice_pipeline_summary","args":{}},
            {"op":"call","name":"rec__delete_invoice","args":{"id":7}},
            {"op":"pages","list":"prompts"},
            {"op":"prompt","name":"everything__simple-prompt"},
            {"op":"pages","list":"resources"},
            {"op":"read","uri":"demo://resource/static/document/architecture.md"}
        ]),
    );
    assert_eq!(out["protocol_version"], "2025-11-25");
    assert_eq!(out["capabilities"]["tools"]["listChanged"], true);
    let r = out["results"].as_array().unwrap();
    // Merged pagination: every server's pages in turn, the fixture's 3 per page.
    let pages: Vec<Vec<String>> = serde_json::from_value(r[0]["pages"].clone()).unwrap();
    let all: Vec<&String> = pages.iter().flatten().collect();
    assert!(pages.len() >= 5, "{pages:?}");
    assert!(pages.iter().all(|p| p.len() <= 14), "{pages:?}");
    for p in &pages {
        let servers: std::collections::BTreeSet<&str> =
            p.iter().map(|n| n.split("__").next().unwrap()).collect();
        assert_eq!(servers.len(), 1, "a page holds one server's page: {p:?}");
    }
    let rec_pages: Vec<&Vec<String>> = pages.iter().filter(|p| p[0].starts_with("rec__")).collect();
    assert_eq!(rec_pages.len(), 3, "the fixture's three pages: {pages:?}");
    assert!(rec_pages.iter().all(|p| p.len() == 3));
    for want in [
        "rec__read_invoice",
        "everything__echo",
        "odoo__ai_invoice_pipeline_summary",
        "rec__delete_invoice",
    ] {
        assert!(all.iter().any(|n| *n == want), "{want} listed: {all:?}");
    }
    assert!(all.iter().all(|n| valid_name(n)), "{all:?}");
    let uniq: std::collections::BTreeSet<&&String> = all.iter().collect();
    assert_eq!(uniq.len(), all.len(), "no name twice");
    let echo = r[0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "everything__echo")
        .unwrap();
    assert_eq!(echo["_meta"]["portcullis/server"], "everything");
    assert_eq!(echo["_meta"]["portcullis/name"], "echo");
    // A call to each server, under its own name there.
    assert_eq!(text(&r[1]), "called read_invoice with {\"id\":7}");
    assert_eq!(text(&r[2]), "Echo: through the aggregate");
    assert_eq!(r[3]["isError"], false, "{}", r[3]);
    // rec's policy denies; nothing reaches rec.
    assert_eq!(r[4]["isError"], true);
    assert!(text(&r[4]).starts_with("[POLICY DENIED]"), "{}", r[4]);
    assert_eq!(
        r[4]["_meta"]["portcullis/decision"]["rule"],
        "/tools/delete_invoice/deny_if/0"
    );
    assert_eq!(recorded_calls(&record), ["read_invoice"]);
    // Prompts renamed and routed back; resources keep their URIs and are routed by them.
    let prompts: Vec<Vec<String>> = serde_json::from_value(r[5]["pages"].clone()).unwrap();
    assert!(
        prompts
            .concat()
            .contains(&"everything__simple-prompt".to_string()),
        "{prompts:?}"
    );
    assert!(r[6]["messages"].is_array(), "{}", r[6]);
    let uris: Vec<Vec<String>> = serde_json::from_value(r[7]["pages"].clone()).unwrap();
    assert!(uris
        .concat()
        .contains(&"demo://resource/static/document/architecture.md".to_string()));
    assert!(
        r[8]["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Architecture"),
        "{}",
        r[8]
    );
    // The audit log has each call under its own server, as the server's own endpoint would.
    let audit = audited(&dir.join("data"));
    let of = |server: &str, tool: &str| {
        audit
            .iter()
            .find(|a| a["server"] == server && a["tool"] == tool && a["method"] == "tools/call")
            .unwrap_or_else(|| panic!("no record of {server}/{tool}: {audit:?}"))
            .clone()
    };
    assert_eq!(of("rec", "read_invoice")["decision"], "allow");
    assert_eq!(of("everything", "echo")["decision"], "allow");
    assert_eq!(of("rec", "delete_invoice")["decision"], "deny");
}

#[test]
fn stdio_all_refuses_every_bad_name_and_cursor_with_nothing_upstream() {
    let dir = scratch("agg-bad");
    let record = three_servers(&dir);
    let long = format!("rec__{}", "x".repeat(70));
    let bad = [
        "nosuch__read_invoice",
        "read_invoice",
        "rec",
        "rec__",
        "__read_invoice",
        "bad name",
        "rec__read.invoice",
        long.as_str(),
        "rec__no_such_tool",
        "Rec__read_invoice",
    ];
    let mut actions: Vec<Value> = bad
        .iter()
        .map(|n| json!({"op":"call","name":n,"args":{"id":1}}))
        .collect();
    actions.push(json!({"op":"page","list":"tools","cursor":"forged"}));
    actions.push(json!({"op":"page","list":"prompts","cursor":"eyJzIjowfQ.0000"}));
    actions.push(json!({"op":"read","uri":"file:///etc/passwd"}));
    actions.push(json!({"op":"prompt","name":"everything__no-such-prompt-__x"}));
    actions.push(json!({"op":"call","name":"rec__read_invoice","args":{"id":1}}));
    let out = drive(&stdio_all(&dir), &Value::Array(actions));
    let r = out["results"].as_array().unwrap();
    let expect = [
        "no server with the prefix \"nosuch\"",
        "is not a name of this gateway",
        "is not a name of this gateway",
        "is not a name of this gateway",
        "is not a name of this gateway",
        "is not a name of this gateway",
        "is not a name of this gateway",
        "is not a name of this gateway",
        "",
        "no server with the prefix \"Rec\"",
    ];
    for (i, want) in expect.iter().enumerate() {
        if want.is_empty() {
            continue;
        }
        let e = r[i]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {}", bad[i], r[i]));
        assert!(
            e.contains(want) && e.contains("nothing was forwarded"),
            "{}: {e}",
            bad[i]
        );
    }
    // A plain name the server never listed is the server's to refuse: pinning lists first and
    // refuses it without forwarding.
    assert!(
        r[8].get("error").is_some() || r[8]["isError"] == true,
        "{}",
        r[8]
    );
    let n = bad.len();
    assert!(
        r[n]["error"].as_str().unwrap().contains("invalid cursor"),
        "{}",
        r[n]
    );
    assert!(
        r[n + 1]["error"]
            .as_str()
            .unwrap()
            .contains("invalid cursor"),
        "{}",
        r[n + 1]
    );
    assert!(
        r[n + 2]["error"]
            .as_str()
            .unwrap()
            .contains("was not listed by any server"),
        "{}",
        r[n + 2]
    );
    assert!(r[n + 3].get("error").is_some(), "{}", r[n + 3]);
    // The one good call afterwards is the only call the fixture ever saw.
    assert_eq!(text(&r[n + 4]), "called read_invoice with {\"id\":1}");
    assert_eq!(recorded_calls(&record), ["read_invoice"]);
    let audit = audited(&dir.join("data"));
    let unknown = audit
        .iter()
        .filter(|a| a["rule"] == "(unknown name)")
        .count();
    assert!(unknown >= 8, "bad names audited: {audit:?}");
}

#[test]
fn stdio_all_with_an_upstream_down_serves_the_others_and_fails_its_calls_fast() {
    let dir = scratch("agg-down");
    let record = dir.join("rec.jsonl");
    let tools = dir.join("tools.json");
    let long = format!("export_{}", "ledger_lines_".repeat(6));
    std::fs::write(
        &tools,
        json!({"tools":[
            {"name":"read_invoice","inputSchema":{"type":"object"}},
            {"name": long,"inputSchema":{"type":"object"}},
            {"name":"files.read","inputSchema":{"type":"object"}}
        ]})
        .to_string(),
    )
    .unwrap();
    write(&dir, "open.json", &json!({"version":"1","default":"allow"}));
    let config = format!(
        r#"[gateway]
data_dir = "data"

[[servers]]
name = "rec"
command = ["python3", "{fixture}"]
policy = "open.json"
env = {{ RECORD = "{record}", TOOLS_JSON = "{tools}", WATCH_TOOLS = "1" }}

[[servers]]
name = "gone"
command = ["/nonexistent/mcp-server"]
policy = "open.json"

[[servers]]
name = "dies"
command = ["false"]
policy = "open.json"
"#,
        fixture = fixture_server(),
        record = record.display(),
        tools = tools.display(),
    );
    std::fs::write(dir.join("portcullis.toml"), config).unwrap();
    let changed = json!({"tools":[
        {"name":"read_invoice","inputSchema":{"type":"object"}},
        {"name":"added_later","inputSchema":{"type":"object"}}
    ]});
    let out = drive(
        &stdio_all(&dir),
        &json!([
            {"op":"pages","list":"tools"},
            {"op":"call","name":"gone__anything","args":{}},
            {"op":"call","name":"dies__anything","args":{}},
            {"op":"call","name":"rec__read_invoice","args":{"id":3}},
            {"op":"write","path":tools.display().to_string(),"text":changed.to_string()},
            {"op":"sleep","seconds":2},
            {"op":"pages","list":"tools"},
            {"op":"call","name":"rec__added_later","args":{}}
        ]),
    );
    let r = out["results"].as_array().unwrap();
    let first: Vec<String> = serde_json::from_value::<Vec<Vec<String>>>(r[0]["pages"].clone())
        .unwrap()
        .concat();
    assert!(
        first
            .iter()
            .all(|n| n.starts_with("rec__") && valid_name(n)),
        "{first:?}"
    );
    assert_eq!(first.len(), 3, "{first:?}");
    assert!(first.contains(&"rec__read_invoice".to_string()));
    // The long and the dotted name are shortened with a hash, and map back on call.
    let shortened: Vec<&String> = first.iter().filter(|n| *n != "rec__read_invoice").collect();
    assert_eq!(shortened.len(), 2);
    assert!(shortened.iter().all(|n| n.len() <= 64), "{shortened:?}");
    for (i, name) in ["gone", "dies"].iter().enumerate() {
        let e = r[1 + i]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", r[1 + i]));
        assert!(
            e.contains(&format!("server \"{name}\" is unavailable")),
            "{e}"
        );
        assert!(
            r[1 + i]["_seconds"].as_f64().unwrap() < 3.0,
            "fails fast: {}",
            r[1 + i]
        );
    }
    assert_eq!(text(&r[3]), "called read_invoice with {\"id\":3}");
    // The fixture's list changed: the client heard it, and the new listing has the new tool.
    let notes: Vec<String> = serde_json::from_value(out["notifications"].clone()).unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n == "notifications/tools/list_changed"),
        "{notes:?}"
    );
    let second: Vec<String> = serde_json::from_value::<Vec<Vec<String>>>(r[6]["pages"].clone())
        .unwrap()
        .concat();
    assert_eq!(second, ["rec__read_invoice", "rec__added_later"]);
    assert_eq!(text(&r[7]), "called added_later with {}");
    assert_eq!(recorded_calls(&record), ["read_invoice", "added_later"]);
    // Logged, and audited.
    let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap();
    assert!(log.contains("server \"gone\" is down"), "{log}");
    assert!(log.contains("server \"dies\" is down"), "{log}");
    let audit = audited(&dir.join("data"));
    for name in ["gone", "dies"] {
        assert!(
            audit.iter().any(|a| a["server"] == name
                && a["method"] == "(aggregate)"
                && a["decision"] == "error"
                && a["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("is down")),
            "{name}: {audit:?}"
        );
    }
}

#[test]
fn stdio_all_calls_a_shortened_name_under_the_servers_own_name() {
    let dir = scratch("agg-long");
    let record = dir.join("rec.jsonl");
    let tools = dir.join("tools.json");
    let long = format!("export_{}", "ledger_lines_".repeat(6));
    std::fs::write(
        &tools,
        json!({"tools":[
            {"name": long,"inputSchema":{"type":"object"}},
            {"name":"files.read","inputSchema":{"type":"object"}}
        ]})
        .to_string(),
    )
    .unwrap();
    write(&dir, "open.json", &json!({"version":"1","default":"allow"}));
    std::fs::write(
        dir.join("portcullis.toml"),
        format!(
            "[gateway]\ndata_dir = \"data\"\n\n[[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{}\"]\npolicy = \"open.json\"\nenv = {{ RECORD = \"{}\", TOOLS_JSON = \"{}\" }}\n",
            fixture_server(),
            record.display(),
            tools.display()
        ),
    )
    .unwrap();
    let listed = drive(&stdio_all(&dir), &json!([{"op":"pages","list":"tools"}]));
    let names: Vec<String> =
        serde_json::from_value::<Vec<Vec<String>>>(listed["results"][0]["pages"].clone())
            .unwrap()
            .concat();
    assert_eq!(names.len(), 2, "{names:?}");
    // A new client calls the shortened names without listing: the gateway learns them.
    let out = drive(
        &stdio_all(&dir),
        &json!(names
            .iter()
            .map(|n| json!({"op":"call","name":n,"args":{}}))
            .collect::<Vec<_>>()),
    );
    let r = out["results"].as_array().unwrap();
    assert_eq!(text(&r[0]), format!("called {long} with {{}}"));
    assert_eq!(text(&r[1]), "called files.read with {}");
    assert_eq!(recorded_calls(&record), [long.as_str(), "files.read"]);
}

/// `portcullis grant create … --json` against the gateway's config: the token.
fn grant(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(["grant", "create"])
        .args(args)
        .args(["--json", "--config"])
        .arg(dir.join("portcullis.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

fn drive_http(port: u16, path: &str, token: &str, actions: &Value) -> Value {
    drive_http_in("auto", port, path, token, actions)
}

fn drive_http_in(mode: &str, port: u16, path: &str, token: &str, actions: &Value) -> Value {
    let args = vec![
        mode.to_string(),
        "--url".to_string(),
        format!("http://127.0.0.1:{port}{path}"),
        "--token".to_string(),
        token.to_string(),
    ];
    run_driver(&python(), "aggregate_client.py", &args, actions, &[])
}

#[test]
fn http_mcp_is_the_aggregate_of_the_servers_a_grant_names() {
    let dir = scratch("agg-http");
    let servers = format!(
        r#"[[servers]]
name = "rec"
command = ["python3", "{fixture}"]
policy = "rec.json"
env = {{ PAGE_SIZE = "4" }}

[[servers]]
name = "everything"
command = ["{everything}", "stdio"]
policy = "open.json"

[[servers]]
name = "odoo"
command = ["{bin}", "demo-upstream"]
policy = "open.json"
"#,
        fixture = fixture_server(),
        everything = everything().display(),
        bin = bin(),
    );
    let rec_policy = json!({"version":"1","default":"allow","tools":{"delete_invoice":{"deny_if":[{"conditions":[],"on_deny":"Invoices are never deleted through the gateway."}]}}});
    let gw = serve_in(
        &dir,
        &servers,
        &[
            ("rec.json", rec_policy.to_string()),
            (
                "open.json",
                json!({"version":"1","default":"allow"}).to_string(),
            ),
        ],
        &[],
        &[],
    );
    let two = grant(
        &dir,
        &[
            "--server",
            "rec",
            "--server",
            "everything",
            "--label",
            "two",
        ],
    );
    let one = grant(&dir, &["--server", "odoo", "--label", "one"]);
    let all = grant(&dir, &["--all-servers", "--label", "all"]);
    // A grant of two servers: their tools only, each call judged by its server's policy.
    let out = drive_http(
        gw.port,
        "/mcp",
        &two,
        &json!([
            {"op":"pages","list":"tools"},
            {"op":"call","name":"rec__read_invoice","args":{"id":5}},
            {"op":"call","name":"everything__echo","args":{"message":"over http"}},
            {"op":"call","name":"rec__delete_invoice","args":{"id":5}},
            {"op":"call","name":"odoo__odoo_read","args":{"model":"res.partner","ids":[1]}},
            {"op":"call","name":"everything__trigger-sampling-request","args":{"prompt":"hi","maxTokens":5}}
        ]),
    );
    assert_eq!(
        out["protocol_version"], "2025-11-25",
        "a dual-era client takes the handshake"
    );
    let r = out["results"].as_array().unwrap();
    let pages: Vec<Vec<String>> = serde_json::from_value(r[0]["pages"].clone()).unwrap();
    let names = pages.concat();
    assert!(names.iter().any(|n| n.starts_with("rec__")), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("everything__")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("odoo__")), "{names:?}");
    assert!(pages
        .iter()
        .filter(|p| p[0].starts_with("rec__"))
        .all(|p| p.len() <= 4));
    assert_eq!(text(&r[1]), "called read_invoice with {\"id\":5}");
    assert_eq!(text(&r[2]), "Echo: over http");
    assert!(text(&r[3]).starts_with("[POLICY DENIED]"), "{}", r[3]);
    let e = r[4]["error"].as_str().unwrap_or_default();
    assert!(e.contains("no server with the prefix \"odoo\""), "{}", r[4]);
    assert!(text(&r[5]).contains("sampled-by-test"), "{}", r[5]);
    let record = std::fs::read_to_string(dir.join("record.jsonl")).unwrap_or_default();
    assert!(
        !record.contains("delete_invoice\""),
        "the denied call never reached rec"
    );
    // A single-server grant (as before lists existed) sees its one server through /mcp, and
    // still works on /mcp/<server>; the grant of every server sees all three.
    let out = drive_http(
        gw.port,
        "/mcp",
        &one,
        &json!([{"op":"pages","list":"tools"}]),
    );
    let names = serde_json::from_value::<Vec<Vec<String>>>(out["results"][0]["pages"].clone())
        .unwrap()
        .concat();
    assert!(
        !names.is_empty() && names.iter().all(|n| n.starts_with("odoo__")),
        "{names:?}"
    );
    let out = drive_http(
        gw.port,
        "/mcp/rec",
        &two,
        &json!([{"op":"call","name":"read_invoice","args":{"id":6}}]),
    );
    assert_eq!(
        text(&out["results"][0]),
        "called read_invoice with {\"id\":6}"
    );
    let out = drive_http(
        gw.port,
        "/mcp",
        &all,
        &json!([{"op":"pages","list":"tools"}]),
    );
    let names = serde_json::from_value::<Vec<Vec<String>>>(out["results"][0]["pages"].clone())
        .unwrap()
        .concat();
    for p in ["rec__", "everything__", "odoo__"] {
        assert!(names.iter().any(|n| n.starts_with(p)), "{p}: {names:?}");
    }
    // A 2026-07-28 client of the same endpoint: stateless requests, the same names and rules.
    let out = drive_http_in(
        "2026-07-28",
        gw.port,
        "/mcp",
        &two,
        &json!([
            {"op":"pages","list":"tools"},
            {"op":"call","name":"rec__read_invoice","args":{"id":8}},
            {"op":"call","name":"everything__echo","args":{"message":"stateless"}},
            {"op":"call","name":"rec__delete_invoice","args":{"id":8}},
            {"op":"call","name":"odoo__odoo_read","args":{"model":"res.partner","ids":[1]}}
        ]),
    );
    assert_eq!(out["protocol_version"], "2026-07-28");
    let r = out["results"].as_array().unwrap();
    let names = serde_json::from_value::<Vec<Vec<String>>>(r[0]["pages"].clone())
        .unwrap()
        .concat();
    assert!(
        names.contains(&"rec__read_invoice".to_string()),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("odoo__")), "{names:?}");
    assert_eq!(text(&r[1]), "called read_invoice with {\"id\":8}");
    assert_eq!(text(&r[2]), "Echo: stateless");
    assert!(text(&r[3]).starts_with("[POLICY DENIED]"), "{}", r[3]);
    assert!(
        r[4]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no server with the prefix"),
        "{}",
        r[4]
    );
    let record = std::fs::read_to_string(dir.join("record.jsonl")).unwrap_or_default();
    assert!(
        !record.contains("delete_invoice\""),
        "the denied call never reached rec"
    );
    // Refused at the door: no token, an unknown one; another server's grant on /mcp/<server>.
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}).to_string();
    let post = |auth: Option<&str>, path: &str| {
        let mut h = vec![
            ("content-type", "application/json".to_string()),
            ("accept", "application/json, text/event-stream".to_string()),
        ];
        if let Some(t) = auth {
            h.push(("authorization", format!("Bearer {t}")));
        }
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http_request(
            gw.port,
            "POST",
            path,
            &h,
            init.as_bytes(),
            std::time::Duration::from_secs(30),
        )
    };
    assert_eq!(post(None, "/mcp").status, 401);
    assert_eq!(post(Some("pcx_0000"), "/mcp").status, 401);
    assert_eq!(post(Some(&one), "/mcp/rec").status, 403);
    assert_eq!(post(Some(&two), "/mcp").status, 200);
    // Stateless requests whose headers do not repeat their body, or a method the era removed:
    // refused by the aggregated endpoint with the same checks as /mcp/<server>, before any
    // member sees them.
    let meta = json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28",
        "io.modelcontextprotocol/clientCapabilities":{}});
    let call = json!({"jsonrpc":"2.0","id":9,"method":"tools/call",
        "params":{"name":"rec__read_invoice","arguments":{"id":4242},"_meta":meta}})
    .to_string();
    let ping = json!({"jsonrpc":"2.0","id":10,"method":"ping","params":{"_meta":meta}}).to_string();
    let bearer = format!("Bearer {two}");
    let stateless = |body: &str, extra: &[(&str, &str)]| {
        let mut h = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("authorization", bearer.as_str()),
        ];
        h.extend_from_slice(extra);
        http_request(
            gw.port,
            "POST",
            "/mcp",
            &h,
            body.as_bytes(),
            std::time::Duration::from_secs(30),
        )
    };
    let v = ("mcp-protocol-version", "2026-07-28");
    for (body, extra, status, code, says) in [
        (
            &call,
            vec![],
            400,
            -32020,
            "MCP-Protocol-Version header is missing",
        ),
        (
            &call,
            vec![v, ("mcp-method", "tools/list")],
            400,
            -32020,
            "Mcp-Method",
        ),
        (
            &call,
            vec![
                v,
                ("mcp-method", "tools/call"),
                ("mcp-name", "rec__delete_invoice"),
            ],
            400,
            -32020,
            "Mcp-Name",
        ),
        (
            &ping,
            vec![v, ("mcp-method", "ping")],
            404,
            -32601,
            "does not exist",
        ),
    ] {
        let r = stateless(body, &extra);
        assert_eq!(r.status, status, "{extra:?}: {}", r.body);
        let e = r.json();
        assert_eq!(e["error"]["code"], code, "{e}");
        let message = e["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{extra:?}: {message}");
    }
    let record = std::fs::read_to_string(dir.join("record.jsonl")).unwrap_or_default();
    assert!(!record.contains("4242"), "a refused request reached rec");
}

#[test]
fn the_inspector_cli_lists_and_calls_through_stdio_all() {
    let inspector = need("node/node_modules/.bin/mcp-inspector");
    let dir = scratch("agg-inspector");
    let record = three_servers(&dir);
    // The Inspector takes `--config` for its own: the gateway's command line goes in a script.
    let script = dir.join("all.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' stdio --config '{}' --all\n",
            bin(),
            dir.join("portcullis.toml").display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let script = script.display().to_string();
    let target = [script.as_str()];
    let listed = {
        let out = Command::new("timeout")
            .arg("120")
            .arg(&inspector)
            .arg("--cli")
            .args(target)
            .args(["--method", "tools/list"])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        serde_json::from_str::<Value>(s.trim())
            .unwrap_or_else(|e| panic!("{e}: {s} {}", stderr(&out)))
    };
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"everything__echo"), "{names:?}");
    assert!(names.iter().all(|n| valid_name(n)), "{names:?}");
    let ok = inspector_call(&inspector, &target, "everything__echo", "message=inspected");
    assert_eq!(text(&ok), "Echo: inspected");
    // The Inspector sends `key=value` arguments as strings: a tool of the fixture taking any.
    let failed = inspector_call(&inspector, &target, "rec__fail_tool", "note=x");
    assert_eq!(
        failed["isError"], true,
        "the fixture's own isError: {failed}"
    );
    assert!(!text(&failed).starts_with("[POLICY DENIED]"), "{failed}");
    let denied = inspector_call(&inspector, &target, "rec__delete_invoice", "id=4");
    assert_eq!(denied["isError"], true);
    assert!(text(&denied).starts_with("[POLICY DENIED]"), "{denied}");
    assert_eq!(recorded_calls(&record), ["fail_tool"]);
}

#[test]
fn stdio_all_reaches_an_http_member_beside_a_stdio_one() {
    // A Python `mcp` 2.x server over Streamable HTTP (dual-era: reached with the handshake)
    // and the recording fixture over stdio, behind one endpoint.
    let dir = scratch("agg-py2http");
    let py_record = dir.join("py.jsonl");
    let port = free_port();
    let _server = Bg(Command::new(python())
        .arg(repo().join("crates/portcullis/tests/peers/server2_http.py"))
        .arg(port.to_string())
        .env("RECORD", &py_record)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap());
    wait_port(port);
    let record = dir.join("rec.jsonl");
    write(
        &dir,
        "py.json",
        &json!({"version":"1","default":"allow","tools":{"drop_table":{"deny_if":[{"conditions":[],"on_deny":"No dropping."}]}}}),
    );
    write(&dir, "open.json", &json!({"version":"1","default":"allow"}));
    std::fs::write(
        dir.join("portcullis.toml"),
        format!(
            "[gateway]\ndata_dir = \"data\"\n\n[[servers]]\nname = \"py\"\nurl = \"http://127.0.0.1:{port}/mcp\"\npolicy = \"py.json\"\n\n[[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{}\"]\npolicy = \"open.json\"\nenv = {{ RECORD = \"{}\" }}\n",
            fixture_server(),
            record.display()
        ),
    )
    .unwrap();
    let out = drive(
        &stdio_all(&dir),
        &json!([
            {"op":"pages","list":"tools"},
            {"op":"call","name":"py__add","args":{"a":2,"b":40}},
            {"op":"call","name":"py__drop_table","args":{"name":"invoices"}},
            {"op":"call","name":"rec__read_invoice","args":{"id":9}}
        ]),
    );
    let r = out["results"].as_array().unwrap();
    let names = serde_json::from_value::<Vec<Vec<String>>>(r[0]["pages"].clone())
        .unwrap()
        .concat();
    for want in [
        "py__add",
        "py__drop_table",
        "py__slow_count",
        "rec__read_invoice",
    ] {
        assert!(names.iter().any(|n| n == want), "{want}: {names:?}");
    }
    assert_eq!(text(&r[1]), "42");
    assert!(
        text(&r[2]).starts_with("[POLICY DENIED] No dropping."),
        "{}",
        r[2]
    );
    assert_eq!(text(&r[3]), "called read_invoice with {\"id\":9}");
    let calls = std::fs::read_to_string(&py_record).unwrap_or_default();
    assert!(
        calls.contains("\"add\"") && !calls.contains("drop_table"),
        "{calls}"
    );
}
