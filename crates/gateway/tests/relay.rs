//! In-process tests of the relay core: what reaches the upstream, what the client gets back,
//! and how ids, tokens and cancellations are mapped.

use portcullis_gateway::metrics::ListedTools;
use portcullis_gateway::{Caller, Out, Relay, RelayConfig};
use portcullis_policy::{CounterKey, CounterStore, Engine, Scope, Window};
use portcullis_store::MemoryCounters;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// A client line as the face hands it over: parsed.
fn parsed(line: &str) -> portcullis_mcp::Message {
    portcullis_mcp::Message::parse(line).unwrap()
}

const NOON: u64 = 1_795_262_400_000;

fn fixtures() -> &'static Path {
    Box::leak(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .into_boxed_path(),
    )
}

/// A relay bound to one caller, as a stdio connection or a legacy HTTP session is.
struct Bound {
    relay: Relay,
    caller: Caller,
}

impl Bound {
    fn send(&self, line: &str) -> Vec<Out> {
        self.relay.from_client(line, &self.caller)
    }
}

impl std::ops::Deref for Bound {
    type Target = Relay;
    fn deref(&self) -> &Relay {
        &self.relay
    }
}

fn relay_with(policy: Option<&str>, store: Arc<dyn CounterStore>) -> Bound {
    Bound {
        relay: Relay::new(RelayConfig {
            store,
            server: "odoo".into(),
            clock: || NOON,
            audit: true,
            approvals: None,
            on_new_approval: None,
            hold_ms: 0,
        }),
        caller: Caller {
            engine: policy.map(|p| Arc::new(Engine::from_json(p).unwrap())),
            grant_id: "grt_1".into(),
            grant_label: "alice".into(),
            session_id: "s1".into(),
            policy: Some(("odoo".into(), "abc123".into())),
            request_id: None,
            principal: None,
            trace: None,
        },
    }
}

fn relay(policy: &str) -> (Bound, Arc<MemoryCounters>) {
    let store = Arc::new(MemoryCounters::new());
    (relay_with(Some(policy), store.clone()), store)
}

fn client(outs: &[Out]) -> Vec<Value> {
    outs.iter()
        .filter_map(|o| {
            if let Out::Client(l) = o {
                Some(serde_json::from_str(&l.text()).unwrap())
            } else {
                None
            }
        })
        .collect()
}

fn server(outs: &[Out]) -> Vec<Value> {
    outs.iter()
        .filter_map(|o| {
            if let Out::Server(l, _) = o {
                Some(serde_json::from_str(&l.to_json()).unwrap())
            } else {
                None
            }
        })
        .collect()
}

fn policy_bad_inputs() -> String {
    std::fs::read_to_string(fixtures().join("policy-bad-inputs.json")).unwrap()
}

#[test]
fn the_bad_input_corpus_never_reaches_the_upstream() {
    let (r, _) = relay(&policy_bad_inputs());
    let corpus = std::fs::read_to_string(fixtures().join("bad-inputs.jsonl")).unwrap();
    let lines: Vec<&str> = corpus.lines().collect();
    assert!(lines.len() >= 200, "the corpus holds at least 200 inputs");
    for (i, line) in lines.iter().enumerate() {
        let outs = r.send(line);
        assert!(
            server(&outs).is_empty(),
            "line {} reached the upstream: {line}",
            i + 1
        );
        let answers = client(&outs);
        assert_eq!(
            answers.len(),
            1,
            "line {} got {} answers: {line}",
            i + 1,
            answers.len()
        );
        let a = &answers[0];
        let is_error = a.get("error").is_some_and(|e| {
            e["code"].is_i64() && e["message"].as_str().is_some_and(|m| !m.is_empty())
        });
        let is_denial = a["result"]["isError"] == true
            && a["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("[POLICY DENIED] "));
        assert!(
            is_error || is_denial,
            "line {}: unclear answer {a} to {line}",
            i + 1
        );
    }
    assert_eq!(r.in_flight(), 0);
}

#[test]
fn ids_are_mapped_and_restored_exactly() {
    let (r, _) = relay(r#"{"version":"1","default":"allow"}"#);
    for (id, raw) in [
        (json!("7"), "\"7\""),
        (json!(7), "7"),
        (json!("x-1"), "\"x-1\""),
    ] {
        let outs = r.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"t","arguments":{"a":1}}}).to_string());
        let up = server(&outs);
        let up_id = up[0]["id"]
            .as_u64()
            .expect("Portcullis' own integer id upstream");
        let back = r.from_server(&format!(
            r#"{{"jsonrpc":"2.0","id":{up_id},"result":{{"content":[],"x":1.50}}}}"#
        ));
        let Some(Out::Client(line)) = back.iter().find(|o| matches!(o, Out::Client(_))) else {
            panic!()
        };
        let line = line.text();
        assert!(
            line.starts_with(&format!("{{\"jsonrpc\":\"2.0\",\"id\":{raw},")),
            "{line}"
        );
        assert!(line.contains("\"x\":1.50"), "number lexeme kept: {line}");
    }
    // A late or unknown response is dropped, not delivered.
    assert!(r
        .from_server(r#"{"jsonrpc":"2.0","id":999,"result":{}}"#)
        .is_empty());
}

#[test]
fn unknown_methods_and_fields_pass_unchanged() {
    let (r, _) = relay(r#"{"version":"1","default":"deny"}"#);
    let line = r#"{"jsonrpc":"2.0","id":1,"method":"vendor/custom","params":{"z":1.0,"a":[1e400]},"extra":true}"#;
    let outs = r.send(line);
    let Out::Server(up, _) = &outs[0] else {
        panic!()
    };
    assert_eq!(
        up.to_json(),
        r#"{"jsonrpc":"2.0","id":1,"method":"vendor/custom","params":{"z":1.0,"a":[1e400]},"extra":true}"#
    );
    let n = r#"{"jsonrpc":"2.0","method":"notifications/vendor","params":{"q":0.70}}"#;
    assert_eq!(r.send(n), vec![Out::Server(Box::new(parsed(n)), None)]);
    assert_eq!(r.from_server(n), vec![Out::Client(n.to_string().into())]);
}

#[test]
fn progress_tokens_are_mapped_both_ways_and_forgotten() {
    let (r, _) = relay(r#"{"version":"1","default":"allow"}"#);
    let outs = r.send(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":42,"other":"kept"}}}"#);
    let up = &server(&outs)[0];
    let token = up["params"]["_meta"]["progressToken"].clone();
    assert_ne!(token, json!(42));
    assert_eq!(up["params"]["_meta"]["other"], "kept");
    let p = r.from_server(&json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":token,"progress":0.5,"total":1}}).to_string());
    assert_eq!(client(&p)[0]["params"]["progressToken"], json!(42));
    // An unknown token is not passed on.
    assert!(r.from_server(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"forged","progress":1}}"#).is_empty());
    r.from_server(&format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#,
        up["id"]
    ));
    // After the response the token is gone.
    assert!(r.from_server(&json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":token,"progress":1}}).to_string()).is_empty());
}

#[test]
fn cancellations_are_mapped_and_unknown_ones_dropped() {
    let (r, _) = relay(r#"{"version":"1","default":"allow"}"#);
    let up = server(
        &r.send(r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"slow"}}"#),
    )[0]["id"]
        .clone();
    let outs = r.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c1","reason":"user"}}"#);
    let c = &server(&outs)[0];
    assert_eq!(c["params"]["requestId"], up);
    assert_eq!(c["params"]["reason"], "user");
    assert!(r
        .send(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"nope"}}"#
        )
        .is_empty());
}

#[test]
fn server_requests_get_fresh_ids_even_when_they_collide() {
    let (r, _) = relay(r#"{"version":"1","default":"allow"}"#);
    // The client's id 1 is in flight, and the server sends its own request with id 1.
    r.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ask"}}"#);
    let outs = r.from_server(
        r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{"maxTokens":5}}"#,
    );
    let down = client(&outs)[0]["id"].clone();
    // The server cancels its own request: mapped to our downstream id.
    let c = r.from_server(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
    );
    assert_eq!(client(&c)[0]["params"]["requestId"], down);
    // The client's answer goes back under the server's id.
    let back =
        r.send(&json!({"jsonrpc":"2.0","id":down,"result":{"role":"assistant"}}).to_string());
    assert_eq!(server(&back)[0]["id"], json!(1));
    assert!(
        r.send(&json!({"jsonrpc":"2.0","id":down,"result":{}}).to_string())
            .is_empty(),
        "answered once"
    );
}

#[test]
fn tools_list_pages_lose_hidden_tools_only() {
    let (r, _) =
        relay(r#"{"version":"1","default":"deny","hide":["drop_db"],"tools":{"read":{}}}"#);
    let up = server(
        &r.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"c1"}}"#),
    )[0]
    .clone();
    assert_eq!(up["params"]["cursor"], "c1");
    let page = json!({"jsonrpc":"2.0","id":up["id"],"result":{"tools":[{"name":"read","x":1.0},{"name":"drop_db"},{"name":"write"},{"noname":true}],"nextCursor":"c2","_meta":{"m":1}}});
    let got = &client(&r.from_server(&page.to_string()))[0];
    let names: Vec<&str> = got["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["read", "write"],
        "hidden and unnamed tools go; denied-but-visible stay"
    );
    assert_eq!(got["result"]["nextCursor"], "c2");
    assert_eq!(got["result"]["_meta"]["m"], 1);
    // A page that becomes empty keeps its cursor.
    let up = server(&r.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#))[0]["id"].clone();
    let got = &client(&r.from_server(&json!({"jsonrpc":"2.0","id":up,"result":{"tools":[{"name":"drop_db"}],"nextCursor":"c3"}}).to_string()))[0];
    assert_eq!(got["result"]["tools"], json!([]));
    assert_eq!(got["result"]["nextCursor"], "c3");
}

/// The names of the tools in the client's copy of a `tools/list` page the server answered
/// with `tools`.
fn listed_through(r: &Bound, tools: Value) -> Vec<String> {
    let up = server(&r.send(r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#))[0]["id"].clone();
    let got = &client(
        &r.from_server(&json!({"jsonrpc":"2.0","id":up,"result":{"tools":tools}}).to_string()),
    )[0];
    assert_eq!(got["id"], 9);
    got["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn hide_denied_lists_only_what_the_policy_could_allow_and_decides_as_before() {
    let policy = |mode: &str| {
        json!({"version":"1","default":"deny","hide_denied":true,"mode":mode,"tools":{
            "read":{},
            "pay":{"deny_if":[{"conditions":[{"path":"args.amount","op":"gt","value":500}]}]},
            "wipe":{"deny_if":[{"conditions":[]}]}
        }})
        .to_string()
    };
    let page =
        json!([{"name":"read"},{"name":"pay"},{"name":"wipe"},{"name":"write","inputSchema":{}}]);
    let (r, _) = relay(&policy("enforce"));
    assert_eq!(listed_through(&r, page.clone()), ["read", "pay"]);
    // The calls the listing leaves out are refused by their own rule, never forwarded.
    for (name, rule) in [
        ("write", "(default deny)"),
        ("wipe", "/tools/wipe/deny_if/0"),
    ] {
        let outs = r.send(&format!(
            r#"{{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{{"name":"{name}"}}}}"#
        ));
        assert!(server(&outs).is_empty(), "{name} reached the server");
        let a = &client(&outs)[0];
        assert_eq!(a["result"]["_meta"]["portcullis/decision"]["rule"], rule);
    }
    // Shadow mode only observes: everything stays listed.
    let (r, _) = relay(&policy("shadow"));
    assert_eq!(listed_through(&r, page), ["read", "pay", "wipe", "write"]);
}

#[test]
fn the_names_a_server_lists_are_recorded_for_metrics_and_nothing_else() {
    let listed = Arc::new(ListedTools::default());
    let mut r = relay_with(
        Some(r#"{"version":"1","default":"deny","hide":["drop_db"],"tools":{"read":{}}}"#),
        Arc::new(MemoryCounters::new()),
    );
    r.relay = r.relay.recording_listed(listed.clone());
    // A call names a tool, and a server answers something else with a `tools` member: neither
    // is a listing.
    let up = server(
        &r.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read"}}"#),
    )[0]["id"]
        .clone();
    r.from_server(
        &json!({"jsonrpc":"2.0","id":up,"result":{"content":[],"tools":[{"name":"fake"}]}})
            .to_string(),
    );
    r.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"made_up"}}"#);
    assert!(!listed.contains("odoo", "read") && !listed.contains("odoo", "fake"));
    assert!(!listed.contains("odoo", "made_up"));
    // Every page counts, hidden tools included (the server lists them).
    for (id, tools) in [
        (3, json!([{"name":"read"},{"name":"drop_db"}])),
        (4, json!([{"name":"write"},{"noname":true}])),
    ] {
        let up = server(&r.send(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#
        )))[0]["id"]
            .clone();
        let got = client(
            &r.from_server(&json!({"jsonrpc":"2.0","id":up,"result":{"tools":tools}}).to_string()),
        );
        assert_eq!(got.len(), 1);
    }
    for name in ["read", "drop_db", "write"] {
        assert!(listed.contains("odoo", name), "{name}");
    }
    assert!(!listed.contains("other", "read"), "per server");
}

fn key() -> CounterKey {
    CounterKey::new(Scope::Grant, "grt_1", "c", Window::Minute, None)
}

#[test]
fn json_rpc_errors_refund_and_tool_errors_do_not() {
    let (r, store) = relay(
        r#"{"version":"1","default":"deny","tools":{"t":{"limits":[{"counter":"c","window":"minute","max":2,"scope":"grant"}]}}}"#,
    );
    let call = |id: u32| {
        server(&r.send(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"t"}}}}"#
        )))[0]["id"]
            .clone()
    };
    let used = || store.usage(&key(), Window::Minute, NOON).unwrap().used;
    let a = call(1);
    assert_eq!(used(), 1);
    r.from_server(
        &json!({"jsonrpc":"2.0","id":a,"error":{"code":-32000,"message":"down"}}).to_string(),
    );
    assert_eq!(used(), 0, "a JSON-RPC error means the tool did not run");
    let b = call(2);
    r.from_server(
        &json!({"jsonrpc":"2.0","id":b,"result":{"content":[],"isError":true}}).to_string(),
    );
    assert_eq!(used(), 1, "an isError result stays counted");
}

#[test]
fn undeliverable_requests_are_answered_and_refunded() {
    let (r, store) = relay(
        r#"{"version":"1","default":"deny","tools":{"t":{"limits":[{"counter":"c","window":"minute","max":2,"scope":"grant"}]}}}"#,
    );
    let outs = r.send(r#"{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{"name":"t"}}"#);
    let Out::Server(_, Some(up)) = outs[0] else {
        panic!()
    };
    let answer = client(&r.undeliverable(up, "restarting"));
    assert_eq!(answer[0]["id"], "q");
    assert_eq!(answer[0]["error"]["code"], -32603);
    assert_eq!(store.usage(&key(), Window::Minute, NOON).unwrap().used, 0);
}

#[test]
fn upstream_loss_answers_everything_in_flight() {
    let (r, _) = relay(r#"{"version":"1","default":"allow"}"#);
    r.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}"#);
    r.send(r#"{"jsonrpc":"2.0","id":"two","method":"tools/list"}"#);
    let answers = client(&r.upstream_lost("exit status 3"));
    let mut ids: Vec<String> = answers.iter().map(|a| a["id"].to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["\"two\"", "1"]);
    assert!(answers.iter().all(|a| a["error"]["message"]
        .as_str()
        .unwrap()
        .contains("exit status 3")));
    assert_eq!(r.in_flight(), 0);
}

#[test]
fn replay_after_restart_reopens_the_session() {
    let (r, _) = relay(r#"{"version":"1","default":"allow"}"#);
    let before = r.replay_after_restart();
    assert!(
        before.iter().all(|o| matches!(o, Out::Audit(..))),
        "nothing to replay before initialize, only the restart recorded: {before:?}"
    );
    let up = server(&r.send(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{}},"clientInfo":{"name":"claude-code","version":"1"}}}"#))[0]["id"].clone();
    r.from_server(&json!({"jsonrpc":"2.0","id":up,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":true}},"serverInfo":{"name":"s","version":"1"}}}).to_string());
    let replay = r.replay_after_restart();
    let up_msgs = server(&replay);
    assert_eq!(up_msgs[0]["method"], "initialize");
    assert_eq!(up_msgs[0]["params"]["capabilities"], json!({"roots":{}}));
    assert_eq!(up_msgs[1]["method"], "notifications/initialized");
    assert_eq!(
        client(&replay)[0]["method"],
        "notifications/tools/list_changed"
    );
    // The replayed initialize's answer is Portcullis' own: swallowed.
    assert!(r
        .from_server(&json!({"jsonrpc":"2.0","id":up_msgs[0]["id"],"result":{}}).to_string())
        .is_empty());
}

#[test]
fn client_name_from_initialize_feeds_session_paths() {
    let (r, _) = relay(
        r#"{"version":"1","default":"deny","tools":{"t":{"require":[{"conditions":[{"path":"session.client_name","op":"eq","value":"claude-code"}],"on_deny":"Only Claude Code."}]}}}"#,
    );
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"t"}}"#;
    assert!(client(&r.send(call))[0]["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Only Claude Code."));
    r.send(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"clientInfo":{"name":"claude-code","version":"1"}}}"#);
    assert_eq!(server(&r.send(call)).len(), 1);
}

#[test]
fn modern_clients_get_result_type_on_denials() {
    let (r, _) = relay(r#"{"version":"1","default":"deny"}"#);
    let a = &client(&r.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#))[0];
    assert_eq!(a["result"]["resultType"], "complete");
    assert_eq!(
        a["result"]["_meta"]["portcullis/decision"]["rule"],
        "(default deny)"
    );
    let a =
        &client(&r.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}"#))
            [0];
    assert!(a["result"].get("resultType").is_none());
}

#[test]
fn no_policy_denies_every_call_and_lists_nothing() {
    let r = relay_with(None, Arc::new(MemoryCounters::new()));
    let a =
        &client(&r.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#))
            [0];
    assert_eq!(
        a["result"]["_meta"]["portcullis/decision"]["rule"],
        "(no policy)"
    );
    let up = server(&r.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#))[0]["id"].clone();
    let got = &client(&r.from_server(
        &json!({"jsonrpc":"2.0","id":up,"result":{"tools":[{"name":"x"}]}}).to_string(),
    ))[0];
    assert_eq!(got["result"]["tools"], json!([]));
}

#[test]
fn shadow_mode_forwards_what_it_would_deny() {
    let (r, _) = relay(r#"{"version":"1","default":"deny","mode":"shadow","hide":["drop"]}"#);
    assert_eq!(
        server(
            &r.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop"}}"#)
        )
        .len(),
        1
    );
    // Broken input is still refused in shadow mode: it cannot be evaluated at all.
    assert!(server(
        &r.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":5}}"#)
    )
    .is_empty());
}

#[test]
fn approval_rules_fail_closed_until_approvals_exist() {
    let (r, _) = relay(
        r#"{"version":"1","default":"deny","tools":{"pay":{"approve_if":[{"conditions":[],"reason":"Money moves."}]}}}"#,
    );
    let a = &client(
        &r.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay"}}"#),
    )[0];
    assert_eq!(a["result"]["isError"], true);
    assert!(a["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Money moves."));
}

fn audits(outs: &[Out]) -> Vec<portcullis_store::AuditRecord> {
    outs.iter()
        .filter_map(|o| {
            if let Out::Audit(r, _) = o {
                Some((**r).clone())
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn every_request_leaves_an_audit_record_before_its_answer() {
    use portcullis_store::AuditDecision;
    let (r, _) = relay(
        r#"{"version":"1","default":"deny","hide":["drop"],"tools":{"t":{"limits":[{"counter":"c","window":"minute","max":5,"scope":"grant"}]}}}"#,
    );
    // A denial: the record comes first, then the answer.
    let outs = r.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope","arguments":{"b":1,"a":2}}}"#);
    assert!(matches!(outs[0], Out::Audit(..)) && matches!(outs[1], Out::Client(_)));
    let rec = &audits(&outs)[0];
    assert_eq!(
        (rec.decision, rec.rule.as_deref(), rec.tool.as_deref()),
        (AuditDecision::Deny, Some("(default deny)"), Some("nope"))
    );
    assert_eq!(
        (
            rec.grant_id.as_deref(),
            rec.grant_label.as_deref(),
            rec.session.as_deref()
        ),
        (Some("grt_1"), Some("alice"), Some("s1"))
    );
    assert_eq!(
        (
            rec.policy_name.as_deref(),
            rec.policy_hash.as_deref(),
            rec.request_id.as_deref()
        ),
        (Some("odoo"), Some("abc123"), Some("1"))
    );
    if let Out::Audit(_, Some(args)) = &outs[0] {
        assert_eq!(
            args,
            &json!({"b":1,"a":2}),
            "the arguments travel with the record (hashed by the log)"
        );
    } else {
        panic!("no args");
    }
    assert_eq!(
        audits(
            &r.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"drop"}}"#)
        )[0]
        .decision,
        AuditDecision::Hidden
    );
    // Forwarded: no record yet; it comes with the answer, with the upstream's status.
    let outs = r.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t"}}"#);
    assert!(audits(&outs).is_empty());
    let up = server(&outs)[0]["id"].clone();
    let back = r.from_server(
        &json!({"jsonrpc":"2.0","id":up,"result":{"content":[],"isError":true}}).to_string(),
    );
    assert!(matches!(back[0], Out::Audit(..)) && matches!(back[1], Out::Client(_)));
    let rec = &audits(&back)[0];
    assert_eq!(
        (rec.decision, rec.upstream_status.as_deref()),
        (AuditDecision::Allow, Some("tool_error"))
    );
    assert_eq!(rec.counters.len(), 1, "the counter consumed is named");
    // Other methods are audited too, and bad input.
    let up = server(&r.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#))[0]["id"].clone();
    let rec = &audits(&r.from_server(
        &json!({"jsonrpc":"2.0","id":up,"error":{"code":-32601,"message":"x"}}).to_string(),
    ))[0];
    assert_eq!(
        (rec.method.as_str(), rec.upstream_status.as_deref()),
        ("tools/list", Some("error -32601"))
    );
    let outs = r.send("not json");
    assert_eq!(audits(&outs)[0].rule.as_deref(), Some("(invalid message)"));
    // A lost upstream: an event says so, and the record of the call in flight.
    r.send(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"t"}}"#);
    let lost = audits(&r.upstream_lost("exit 3"));
    assert_eq!(
        (
            lost[0].method.as_str(),
            lost[0].rule.as_deref(),
            lost[0].message.as_deref()
        ),
        ("(upstream)", Some("(upstream lost)"), Some("exit 3"))
    );
    let rec = &lost[1];
    assert_eq!(
        (rec.decision, rec.upstream_status.as_deref()),
        (AuditDecision::Error, Some("lost: exit 3"))
    );
}

/// A relay checking arguments as `mode` says, with `pay_invoice` limited to 5 a minute and
/// denied above 10000, and the server's listing already seen when `listed`.
fn validating(
    mode: portcullis_gateway::schemas::ValidateArguments,
    listed: bool,
) -> (Bound, Arc<MemoryCounters>) {
    let (mut r, store) = relay(
        r#"{"version":"1","default":"deny","tools":{"pay_invoice":{
            "deny_if":[{"conditions":[{"path":"args.amount","op":"gt","value":10000}],"on_deny":"Too much."}],
            "limits":[{"counter":"c","window":"minute","max":5,"scope":"grant"}]}}}"#,
    );
    r.relay = r.relay.validating(Default::default(), mode);
    if listed {
        // Two pages: the schema is on the second.
        for (id, tools) in [
            (
                100,
                json!([{"name":"read_invoice","inputSchema":{"type":"object"}}]),
            ),
            (
                101,
                json!([{"name":"pay_invoice","inputSchema":{"type":"object",
                    "properties":{"amount":{"type":"integer"}},"required":["amount"]}}]),
            ),
        ] {
            let up = server(&r.send(&format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#
            )))[0]["id"]
                .clone();
            r.from_server(&json!({"jsonrpc":"2.0","id":up,"result":{"tools":tools}}).to_string());
        }
    }
    (r, store)
}

const STRING_AMOUNT: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"pay_invoice","arguments":{"amount":"20000"}}}"#;

#[test]
fn arguments_of_another_type_than_listed_are_refused_under_enforce() {
    use portcullis_gateway::schemas::ValidateArguments::Enforce;
    let (r, store) = validating(Enforce, true);
    let outs = r.send(STRING_AMOUNT);
    assert!(server(&outs).is_empty(), "nothing forwarded: {outs:?}");
    let answer = &client(&outs)[0];
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["error"]["code"], -32602);
    let msg = answer["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("arguments.amount: expected integer, got string") && !msg.contains("20000"),
        "{msg}"
    );
    let rec = &audits(&outs)[0];
    assert_eq!(rec.decision, portcullis_store::AuditDecision::Deny);
    assert_eq!(rec.rule.as_deref(), Some("(invalid arguments)"));
    assert_eq!(
        store.usage(&key(), Window::Minute, NOON).unwrap().used,
        0,
        "nothing charged"
    );
    // The same call with a number is decided by the policy as usual.
    let denied = client(&r.send(
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"pay_invoice","arguments":{"amount":20000}}}"#,
    ));
    assert!(denied[0]["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Too much."));
    let ok = r.send(
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"pay_invoice","arguments":{"amount":20}}}"#,
    );
    assert_eq!(server(&ok).len(), 1);
    assert_eq!(store.usage(&key(), Window::Minute, NOON).unwrap().used, 1);
    // A missing required argument names its place too.
    let missing = client(&r.send(
        r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"pay_invoice"}}"#,
    ));
    assert!(
        missing[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("arguments: \"amount\" is a required property"),
        "{missing:?}"
    );
}

#[test]
fn a_denied_call_is_refused_by_the_policy_before_its_schema_is_consulted() {
    use portcullis_gateway::schemas::ValidateArguments::Enforce;
    let (r, _) = validating(Enforce, true);
    let got = client(&r.send(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_invoice","arguments":{"id":"x"}}}"#,
    ));
    assert!(
        got[0]["result"]["isError"] == true,
        "default deny, as before: {got:?}"
    );
}

#[test]
fn under_enforce_a_tool_whose_schema_was_never_listed_is_refused() {
    use portcullis_gateway::schemas::ValidateArguments::Enforce;
    let (r, store) = validating(Enforce, false);
    let outs = r.send(STRING_AMOUNT);
    assert!(server(&outs).is_empty());
    let msg = client(&outs)[0]["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("list the tools (tools/list)"), "{msg}");
    assert_eq!(store.usage(&key(), Window::Minute, NOON).unwrap().used, 0);
    // The link fetches the listing first: a request of the gateway's own, answered, recorded,
    // swallowed; the page's cursor is handed back.
    assert_eq!(
        r.needs_listing(&parsed(STRING_AMOUNT)).as_deref(),
        Some("pay_invoice")
    );
    let (line, up, mut rx) = r.listing_request(None, &parsed(STRING_AMOUNT));
    let req: Value = serde_json::from_str(&line.to_json()).unwrap();
    assert_eq!(
        (req["method"].as_str(), req["id"].as_u64()),
        (Some("tools/list"), Some(up))
    );
    let back = r.from_server(&json!({"jsonrpc":"2.0","id":up,"result":{"tools":[
        {"name":"pay_invoice","inputSchema":{"type":"object","properties":{"amount":{"type":"integer"}}}}],
        "nextCursor":"p2"}}).to_string());
    assert!(
        back.is_empty(),
        "the gateway's own listing is not passed to the client"
    );
    assert_eq!(rx.try_recv().unwrap().as_deref(), Some("p2"));
    assert_eq!(r.needs_listing(&parsed(STRING_AMOUNT)), None);
    let outs = r.send(STRING_AMOUNT);
    assert!(server(&outs).is_empty());
    assert!(client(&outs)[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("arguments.amount"));
}

#[test]
fn under_warn_and_off_mismatched_arguments_are_forwarded() {
    use portcullis_gateway::schemas::ValidateArguments::{Off, Warn};
    let (r, store) = validating(Warn, true);
    let outs = r.send(STRING_AMOUNT);
    let sent = &server(&outs)[0];
    assert_eq!(sent["params"]["arguments"]["amount"], "20000");
    // The call's audit record goes out with its answer.
    let back = r
        .from_server(&json!({"jsonrpc":"2.0","id":sent["id"],"result":{"content":[]}}).to_string());
    let rec = &audits(&back)[0];
    assert_eq!(rec.decision, portcullis_store::AuditDecision::Allow);
    assert_eq!(rec.rule.as_deref(), Some("(invalid arguments)"));
    assert!(rec
        .message
        .as_deref()
        .unwrap()
        .contains("arguments.amount: expected integer"));
    assert_eq!(store.usage(&key(), Window::Minute, NOON).unwrap().used, 1);
    // Not listed yet: forwarded as before.
    let (r, _) = validating(Warn, false);
    assert_eq!(server(&r.send(STRING_AMOUNT)).len(), 1);
    assert_eq!(
        r.needs_listing(&parsed(STRING_AMOUNT)),
        None,
        "only enforce fetches a listing"
    );
    let (r, _) = validating(Off, true);
    let outs = r.send(STRING_AMOUNT);
    let sent = &server(&outs)[0];
    let back = r
        .from_server(&json!({"jsonrpc":"2.0","id":sent["id"],"result":{"content":[]}}).to_string());
    assert_eq!(audits(&back)[0].rule, None);
}

#[test]
fn a_listing_is_fetched_once_until_the_server_says_its_tools_changed() {
    use portcullis_gateway::schemas::ValidateArguments::Enforce;
    let (r, _) = validating(Enforce, true);
    let bogus =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"no_such_tool"}}"#;
    assert_eq!(
        r.needs_listing(&parsed(bogus)),
        None,
        "the whole listing was seen: not a tool"
    );
    r.from_server(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
    assert_eq!(
        r.needs_listing(&parsed(bogus)).as_deref(),
        Some("no_such_tool")
    );
}

/// A 2026-07-28 listen stream: every notification on it, `tools/list_changed` included, reaches
/// the client with the client's own subscription id (the id of its listen request), and one
/// for a subscription that is not this client's is dropped.
#[test]
fn listen_stream_notifications_carry_the_clients_subscription_id() {
    let (r, _) = relay(r#"{"version":"1","default":"allow"}"#);
    let listen = r.send(
        r#"{"jsonrpc":"2.0","id":"L1","method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true}}}"#,
    );
    let up = match &listen[..] {
        [.., Out::Server(_, Some(up))] => *up,
        other => panic!("{other:?}"),
    };
    for method in [
        "notifications/tools/list_changed",
        "notifications/resources/list_changed",
    ] {
        let note = format!(
            r#"{{"jsonrpc":"2.0","method":"{method}","params":{{"_meta":{{"io.modelcontextprotocol/subscriptionId":{up}}}}}}}"#
        );
        let out = client(&r.from_server(&note));
        assert_eq!(out.len(), 1, "{method}: {out:?}");
        assert_eq!(
            out[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L1",
            "{method}: {}",
            out[0]
        );
    }
    let stray = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{{"_meta":{{"io.modelcontextprotocol/subscriptionId":{}}}}}}}"#,
        up + 1000
    );
    assert!(client(&r.from_server(&stray)).is_empty());
}

/// A relay judging listings against pins in memory (tofu, poisoning warn).
fn pinned(policy: &str) -> (Bound, Arc<portcullis_gateway::pinned::ToolPins>) {
    use portcullis_gateway::pinned::{PinSettings, ToolPins};
    let (mut r, _) = relay(policy);
    let pins = Arc::new(ToolPins::new(
        Arc::new(portcullis_store::SqlitePins::open_in_memory().unwrap()),
        None,
    ));
    r.relay = r.relay.pinning(pins.clone(), PinSettings::default());
    (r, pins)
}

/// The client's view of a listing of `tools` passed through `r`.
fn list_through(r: &Bound, id: u64, tools: Value) -> (Vec<String>, Vec<Out>) {
    let up = server(&r.send(&format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#
    )))[0]["id"]
        .clone();
    let outs =
        r.from_server(&json!({"jsonrpc":"2.0","id":up,"result":{"tools":tools}}).to_string());
    let names = client(&outs)[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    (names, outs)
}

#[test]
fn a_tool_whose_definition_changed_is_hidden_from_the_listing_and_its_call_denied_in_process() {
    let (r, _) = pinned(r#"{"version":"1","default":"allow"}"#);
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"read_invoice","arguments":{}}}"#;
    // Never listed: the link must list first.
    assert_eq!(
        r.needs_listing(&parsed(call)).as_deref(),
        Some("read_invoice")
    );
    let v1 = json!([{"name":"read_invoice","description":"Reads."},{"name":"pay_invoice","description":"Pays."}]);
    let (names, _) = list_through(&r, 1, v1);
    assert_eq!(names, ["read_invoice", "pay_invoice"]);
    assert_eq!(r.needs_listing(&parsed(call)), None);
    assert_eq!(server(&r.send(call)).len(), 1, "pinned: forwarded");

    let v2 = json!([{"name":"read_invoice","description":"Reads and mails."},{"name":"pay_invoice","description":"Pays."}]);
    let (names, outs) = list_through(&r, 2, v2);
    assert_eq!(names, ["pay_invoice"]);
    let rec = &audits(&outs)[0];
    assert_eq!(rec.method, "(pin)");
    assert_eq!(rec.rule.as_deref(), Some("(pin quarantined)"));

    let outs = r.send(&call.replace("\"id\":9", "\"id\":10"));
    assert!(server(&outs).is_empty(), "nothing forwarded: {outs:?}");
    let answer = &client(&outs)[0]["result"];
    assert_eq!(answer["isError"], true);
    assert!(answer["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("[POLICY DENIED] The definition of read_invoice changed since it was approved (description)"));
    let rec = &audits(&outs)[0];
    assert_eq!(rec.decision, portcullis_store::AuditDecision::Deny);
    assert_eq!(rec.rule.as_deref(), Some("(pin quarantined)"));

    // The server says its tools changed: the next call waits for a listing again.
    r.from_server(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
    assert_eq!(
        r.needs_listing(&parsed(call)).as_deref(),
        Some("read_invoice")
    );
}

/// A store that makes reservations later, when the test says so: the reply is kept until
/// [`Later::answer`] charges the memory counters beneath and hands it the result.
#[derive(Default)]
struct Later {
    counters: MemoryCounters,
    waiting: std::sync::Mutex<
        Vec<(
            Vec<portcullis_policy::Reservation>,
            u64,
            portcullis_policy::Reply,
        )>,
    >,
}

impl Later {
    fn answer(&self) -> usize {
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap());
        let n = waiting.len();
        for (reqs, now, reply) in waiting {
            let r = self.counters.reserve(&reqs, now);
            reply(reqs, r);
        }
        n
    }
}

impl CounterStore for Later {
    fn reserve(
        &self,
        reqs: &[portcullis_policy::Reservation],
        now: u64,
    ) -> Result<portcullis_policy::Ticket, portcullis_policy::ReserveError> {
        self.counters.reserve(reqs, now)
    }
    fn refund(
        &self,
        t: &portcullis_policy::Ticket,
        now: u64,
    ) -> Result<(), portcullis_policy::ReserveError> {
        self.counters.refund(t, now)
    }
    fn usage(
        &self,
        key: &CounterKey,
        window: Window,
        now: u64,
    ) -> Result<portcullis_policy::Usage, portcullis_policy::ReserveError> {
        self.counters.usage(key, window, now)
    }
    fn defers(&self) -> bool {
        true
    }
    fn reserve_later(
        &self,
        reqs: Vec<portcullis_policy::Reservation>,
        now: u64,
        reply: portcullis_policy::Reply,
    ) {
        self.waiting.lock().unwrap().push((reqs, now, reply));
    }
}

/// A `tools/call` whose counters a store charges later is forwarded once they are charged;
/// one dropped before that (its client went away) is not forwarded, and the store's charge
/// is given back rather than kept for a call that never ran.
#[test]
fn a_call_dropped_while_its_counters_are_charged_gets_them_back() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let store = Arc::new(Later::default());
    let policy = r#"{"version":"1","default":"deny","tools":{"read_invoice":{"limits":[{"counter":"reads","window":"minute","max":5,"scope":"grant"}]}}}"#;
    let Bound { relay, caller } = relay_with(Some(policy), store.clone());
    let key = CounterKey::new(Scope::Grant, "grt_1", "reads", Window::Minute, None);
    let used = || store.usage(&key, Window::Minute, NOON).unwrap().used;
    let call = |id: u32| {
        parsed(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"read_invoice","arguments":{{}}}}}}"#
        ))
    };
    let mut cx = Context::from_waker(Waker::noop());
    // Waited for: pending until the store answers, then forwarded with the charge kept.
    let mut kept = std::pin::pin!(relay.from_client_message_deferred(call(1), &caller));
    assert!(kept.as_mut().poll(&mut cx).is_pending());
    assert_eq!(store.answer(), 1);
    match kept.as_mut().poll(&mut cx) {
        Poll::Ready(outs) => assert!(
            outs.iter().any(|o| matches!(o, Out::Server(..))),
            "{outs:?}"
        ),
        Poll::Pending => panic!("still waiting after the store answered"),
    }
    assert_eq!(used(), 1);
    // Dropped while waiting: the store's later charge is refunded.
    let mut dropped = Box::pin(relay.from_client_message_deferred(call(2), &caller));
    assert!(dropped.as_mut().poll(&mut cx).is_pending());
    drop(dropped);
    assert_eq!(store.answer(), 1);
    assert_eq!(used(), 1, "the dropped call's charge was given back");
    assert_eq!(relay.in_flight(), 1, "only the first call went upstream");
}
