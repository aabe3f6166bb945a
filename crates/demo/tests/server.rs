//! The demo server over in-memory pipes: handshake, listing, calls, errors, end of input.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

struct Peer {
    w: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    r: BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
}

impl Peer {
    async fn send(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).await.unwrap();
        self.w.write_all(b"\n").await.unwrap();
        self.w.flush().await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).await.unwrap();
        assert!(n > 0, "the server closed its output");
        serde_json::from_str(&line).unwrap()
    }

    async fn ask(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        )
        .await;
        let v = self.recv().await;
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], id, "{v}");
        v
    }

    async fn call(&mut self, id: u64, tool: &str, args: Value) -> Value {
        let v = self
            .ask(id, "tools/call", json!({"name": tool, "arguments": args}))
            .await;
        v["result"].clone()
    }
}

fn start() -> (Peer, tokio::task::JoinHandle<std::io::Result<()>>) {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (tr, tw) = tokio::io::split(theirs);
    let server = tokio::spawn(portcullis_demo::serve(BufReader::new(tr), tw));
    let (r, w) = tokio::io::split(ours);
    (
        Peer {
            w,
            r: BufReader::new(r),
        },
        server,
    )
}

#[tokio::test]
async fn handshake_list_and_calls() {
    let (mut p, server) = start();

    // A dual-era client probes first; a legacy server answers -32601.
    let d = p.ask(1, "server/discover", json!({"_meta": {}})).await;
    assert_eq!(d["error"]["code"], -32601);

    let init = p
        .ask(
            2,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .await;
    let r = &init["result"];
    assert_eq!(
        r["protocolVersion"], "2025-06-18",
        "a supported version is echoed"
    );
    assert_eq!(r["serverInfo"]["name"], "odoo-demo");
    assert!(r["capabilities"]["tools"].is_object());
    p.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .await;

    // An unsupported version gets the newest supported one.
    let again = p
        .ask(
            3,
            "initialize",
            json!({"protocolVersion": "1999-01-01", "capabilities": {}}),
        )
        .await;
    assert_eq!(again["result"]["protocolVersion"], "2025-11-25");

    assert_eq!(p.ask(4, "ping", json!({})).await["result"], json!({}));

    let list = p.ask(5, "tools/list", json!({})).await;
    assert_eq!(list["result"], portcullis_demo::tools());
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for want in [
        "odoo_search_read",
        "odoo_read",
        "ai_invoice_pipeline_summary",
        "odoo_write",
        "ai_invoice_pipeline_run",
        "ai_pipeline_run",
        "account_payment_register",
        "odoo_unlink",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }

    // Reads.
    let s = p
        .call(
            6,
            "odoo_search_read",
            json!({"model": "account.move", "domain": [["payment_state", "=", "not_paid"], ["move_type", "=", "in_invoice"]], "fields": ["name"], "order": "amount_total desc"}),
        )
        .await;
    assert_eq!(s["isError"], false);
    assert_eq!(
        s["structuredContent"]["records"],
        json!([{"id": 1, "name": "BILL/2025/0041"}, {"id": 2, "name": "BILL/2025/0042"}])
    );
    let text: Value = serde_json::from_str(s["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        text, s["structuredContent"],
        "text mirrors structuredContent"
    );

    let sum = p.call(7, "ai_invoice_pipeline_summary", json!({})).await;
    assert_eq!(
        sum["structuredContent"]["by_next_step"],
        json!({"extract": 1, "post": 1, "done": 1})
    );

    // The pipeline: first run extracts, the second is stopped by the guard.
    let run = p
        .call(8, "ai_invoice_pipeline_run", json!({"move_id": 1}))
        .await;
    assert_eq!(run["structuredContent"]["status"], "completed", "{run}");
    assert_eq!(
        run["structuredContent"]["steps"].as_array().unwrap().len(),
        6
    );
    let again = p
        .call(9, "ai_invoice_pipeline_run", json!({"move_id": 1}))
        .await;
    assert_eq!(again["structuredContent"]["status"], "skipped");
    assert_eq!(again["structuredContent"]["run_id"], "run-0002");
    let missing = p.call(10, "ai_invoice_pipeline_run", json!({})).await;
    assert_eq!(missing["isError"], true);
    assert!(missing["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("move_id"));

    let post = p
        .call(
            11,
            "ai_pipeline_run",
            json!({"pipeline": "post", "source_model": "account.move", "source_id": 2}),
        )
        .await;
    assert_eq!(post["structuredContent"]["status"], "completed", "{post}");

    // Write, pay, delete: state changes are visible to later reads.
    let w = p
        .call(
            12,
            "odoo_write",
            json!({"model": "res.partner", "ids": [11], "values": {"email": "new@azure.example"}}),
        )
        .await;
    assert_eq!(w["structuredContent"]["updated"], true, "{w}");
    let pay = p
        .call(
            13,
            "account_payment_register",
            json!({"invoice_id": 4, "amount": 3200, "currency": "eur"}),
        )
        .await;
    assert_eq!(pay["structuredContent"]["payment_state"], "paid", "{pay}");
    let del = p
        .call(
            14,
            "odoo_unlink",
            json!({"model": "account.move", "ids": [3]}),
        )
        .await;
    assert_eq!(del["structuredContent"]["deleted"], true);
    let back = p
        .call(
            15,
            "odoo_read",
            json!({"model": "account.move", "ids": [2, 4], "fields": ["state", "payment_state"]}),
        )
        .await;
    assert_eq!(
        back["structuredContent"]["records"],
        json!([
            {"id": 2, "state": "posted", "payment_state": "not_paid"},
            {"id": 4, "state": "posted", "payment_state": "paid"}
        ])
    );
    let gone = p
        .call(
            16,
            "odoo_read",
            json!({"model": "account.move", "ids": [3]}),
        )
        .await;
    assert_eq!(gone["isError"], true);

    // Protocol errors.
    let unknown_tool = p
        .ask(17, "tools/call", json!({"name": "nope", "arguments": {}}))
        .await;
    assert_eq!(unknown_tool["error"]["code"], -32602);
    let unknown = p.ask(18, "resources/list", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32601);
    p.send("not json").await;
    assert_eq!(p.recv().await["error"]["code"], -32700);

    // End of input ends the server cleanly.
    drop(p);
    server.await.unwrap().unwrap();
}

#[test]
fn tools_are_well_formed_and_deterministic() {
    let a = portcullis_demo::tools();
    assert_eq!(a, portcullis_demo::tools());
    for t in a["tools"].as_array().unwrap() {
        assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()));
        assert_eq!(t["inputSchema"]["type"], "object", "{}", t["name"]);
        for r in t["inputSchema"]["required"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap();
            assert!(t["inputSchema"]["properties"].get(r).is_some(), "{r}");
        }
    }
}
