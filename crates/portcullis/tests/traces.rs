//! Traces of `portcullis serve`, against the real binary: a bad `[telemetry]` key or `OTEL_*`
//! variable stops the start with the reason; with an endpoint, every request's spans reach a
//! real OTLP/HTTP receiver (decoded with the OpenTelemetry project's own protobuf types), an
//! incoming `traceparent` (header or `params._meta`) is continued, and a recording HTTP
//! upstream receives the gateway's upstream-call span as its parent, in the header and in
//! `_meta`, with the caller's `tracestate`. The `OTEL_EXPORTER_OTLP_*` endpoint and header
//! variables reach the receiver. Sampling follows the caller's flag; without telemetry
//! nothing is exported.

mod common;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, Span};
use prost::Message as _;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `serve` on `config` with `env`; it must fail to start. Returns its standard error.
fn refused(test: &Scratch, config: &str, env: &[(&str, &str)]) -> String {
    let path = test.join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(bin())
        .args(["serve", "--config", path.to_str().unwrap(), "--log", "warn"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_TRACES_SAMPLER_ARG")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started: {}", stderr(&out));
    stderr(&out)
}

#[test]
fn bad_telemetry_settings_stop_the_start() {
    let test = Scratch::new("traces-bad-settings");
    let base = format!(
        "[gateway]\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"data\"\n",
        free_port()
    );

    let e = refused(
        &test,
        &format!("{base}[telemetry]\nsampling_ratio = 1.5\n"),
        &[],
    );
    assert!(
        e.contains("telemetry.sampling_ratio") && e.contains("0.0 and 1.0"),
        "{e}"
    );

    let e = refused(
        &test,
        &format!("{base}[telemetry]\notlp_endpoint = \"collector:4318\"\n"),
        &[],
    );
    assert!(
        e.contains("telemetry.otlp_endpoint") && e.contains("http://"),
        "{e}"
    );

    let e = refused(
        &test,
        &base,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_TRACES_SAMPLER_ARG", "half"),
        ],
    );
    assert!(e.contains("OTEL_TRACES_SAMPLER_ARG"), "{e}");

    let e = refused(&test, &base, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "4318")]);
    assert!(e.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");

    let e = refused(
        &test,
        &base,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%0d%0asecret-value",
            ),
        ],
    );
    assert!(
        e.contains("OTEL_EXPORTER_OTLP_HEADERS") && e.contains("authorization"),
        "{e}"
    );
    assert!(!e.contains("secret-value"), "the value is never shown: {e}");
    // Nothing was opened: the start stopped before the data directory was made.
    assert!(!test.join("data").exists());
}

/// One HTTP request as a tiny server saw it: the head lower-cased, the body.
#[derive(Clone, Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(|v| v.trim().to_string())
    }
}

type Handler = Arc<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

/// A minimal HTTP/1.1 server on a free loopback port (keep-alive, Content-Length bodies) that
/// records every request and answers with `handler`. Lives as long as the test process.
fn tiny_server(handler: Handler) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (s, h) = (s.clone(), handler.clone());
            std::thread::spawn(move || serve_conn(conn, &s, &h));
        }
    });
    (port, seen)
}

fn serve_conn(conn: TcpStream, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let req = Seen { head, body };
        seen.lock().unwrap().push(req.clone());
        let (status, answer) = handler(&req);
        let reply = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if w.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// An MCP server of the handshake era over Streamable HTTP (JSON answers): one tool, `echo`;
/// `server/discover` is unknown to it. Records every POST.
fn recording_upstream() -> (u16, Arc<Mutex<Vec<Seen>>>) {
    tiny_server(Arc::new(|req: &Seen| {
        let Ok(m) = serde_json::from_slice::<Value>(&req.body) else {
            return (400, String::new());
        };
        let Some(id) = m.get("id").cloned() else {
            return (202, String::new());
        };
        let answer = match m["method"].as_str().unwrap_or("") {
            "initialize" => json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                "serverInfo": {"name": "rec-http", "version": "1"}}}),
            "tools/list" => json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
                {"name": "echo", "inputSchema": {"type": "object"}}]}}),
            "tools/call" => json!({"jsonrpc": "2.0", "id": id, "result": {
                "content": [{"type": "text", "text": "echoed"}]}}),
            _ => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}}),
        };
        (200, answer.to_string())
    }))
}

/// An OTLP/HTTP traces receiver: every POST body decoded as an `ExportTraceServiceRequest`.
fn otlp_receiver() -> (u16, Arc<Mutex<Vec<Seen>>>) {
    tiny_server(Arc::new(
        |req: &Seen| match ExportTraceServiceRequest::decode(req.body.as_slice()) {
            Ok(_) => (200, String::new()),
            Err(_) => (400, String::new()),
        },
    ))
}

/// The spans received so far, with each batch's `service.name`.
fn spans(received: &Mutex<Vec<Seen>>) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    for req in received.lock().unwrap().iter() {
        assert!(req.head.starts_with("post /v1/traces "), "{}", req.head);
        assert_eq!(
            req.header("content-type").as_deref(),
            Some("application/x-protobuf")
        );
        let r = ExportTraceServiceRequest::decode(req.body.as_slice()).expect("OTLP protobuf");
        for rs in r.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Any::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push((service.clone(), s));
                }
            }
        }
    }
    out
}

fn attr(s: &Span, key: &str) -> Option<String> {
    s.attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Any::StringValue(v) => Some(v.clone()),
            Any::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Waits until `done` holds for what `received` has (10 s at most).
fn wait_for(received: &Mutex<Vec<Seen>>, done: impl Fn(&[(String, Span)]) -> bool) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = spans(received);
        if done(&all) {
            return all.into_iter().map(|(_, s)| s).collect();
        }
        assert!(
            Instant::now() < deadline,
            "spans did not arrive: {:#?}",
            all.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const JSON_SSE: (&str, &str) = ("Accept", "application/json, text/event-stream");
const CT: (&str, &str) = ("Content-Type", "application/json");

/// A handshake session on `/mcp/<server>`: its id.
fn open_session(port: u16, server: &str) -> String {
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    let path = format!("/mcp/{server}");
    let r = http_request(
        port,
        "POST",
        &path,
        &[JSON_SSE, CT],
        init.as_bytes(),
        Duration::from_secs(20),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = r.session_id();
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let r = http_request(
        port,
        "POST",
        &path,
        &[JSON_SSE, CT, ("Mcp-Session-Id", &sid)],
        note.as_bytes(),
        Duration::from_secs(20),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    sid
}

/// A `tools/call` in session `sid`, with extra headers; its JSON answer.
fn call(
    port: u16,
    server: &str,
    sid: &str,
    id: u64,
    params: Value,
    headers: &[(&str, &str)],
) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
    let mut h = vec![JSON_SSE, CT, ("Mcp-Session-Id", sid)];
    h.extend_from_slice(headers);
    let r = http_request(
        port,
        "POST",
        &format!("/mcp/{server}"),
        &h,
        body.to_string().as_bytes(),
        Duration::from_secs(20),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // A JSON answer, or one SSE event carrying it.
    let text = r
        .body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(&r.body)
        .to_string();
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

/// The `tools/call` POSTs the upstream saw for `tool`.
fn upstream_calls(seen: &Mutex<Vec<Seen>>, tool: &str) -> Vec<(Seen, Value)> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|s| {
            let v: Value = serde_json::from_slice(&s.body).ok()?;
            (v["method"] == "tools/call" && v["params"]["name"] == tool).then(|| (s.clone(), v))
        })
        .collect()
}

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{"echo":{"limits":[{"counter":"echoes","window":"60s","max":1000,"scope":"grant"}]}}}"#;

fn http_server(upstream: u16) -> String {
    format!("[[servers]]\nname = \"up\"\nurl = \"http://127.0.0.1:{upstream}/mcp\"\npolicy = \"p.json\"\nauth = \"none\"\n")
}

const TP_HEADER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TP_META: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[test]
fn spans_reach_a_collector_and_the_trace_goes_on_upstream() {
    let test = Scratch::new("traces-export");
    let (otlp, received) = otlp_receiver();
    let (up, upstream) = recording_upstream();
    let gw = serve_in(
        &test,
        &format!(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{otlp}\"\n\n{}",
            http_server(up)
        ),
        &[("p.json", POLICY.to_string())],
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "gw-under-test"),
        ],
        &[],
    );
    let sid = open_session(gw.port, "up");

    // 1. Allowed, with a `traceparent` header: continued, and carried on upstream.
    let a = call(
        gw.port,
        "up",
        &sid,
        10,
        json!({"name": "echo", "arguments": {}}),
        &[("traceparent", TP_HEADER)],
    );
    assert_eq!(a["result"]["content"][0]["text"], "echoed", "{a}");
    // 2. Denied, no context: a new trace, nothing upstream.
    let d = call(
        gw.port,
        "up",
        &sid,
        11,
        json!({"name": "secret", "arguments": {}}),
        &[],
    );
    assert!(
        a["result"].is_object() && d["result"]["isError"] == true,
        "{d}"
    );
    // 3. Allowed, context in `params._meta` only.
    let m = call(
        gw.port,
        "up",
        &sid,
        12,
        json!({"name": "echo", "arguments": {"n": 3}, "_meta": {"traceparent": TP_META}}),
        &[],
    );
    assert_eq!(m["result"]["content"][0]["text"], "echoed", "{m}");

    let header_trace = &TP_HEADER[3..35];
    let meta_trace = &TP_META[3..35];
    let server_span = |all: &[Span], trace: &str| -> Option<Span> {
        all.iter()
            .find(|s| hex(&s.trace_id) == trace && s.kind == SpanKind::Server as i32)
            .cloned()
    };
    let all = wait_for(&received, |all| {
        let spans: Vec<Span> = all.iter().map(|(_, s)| s.clone()).collect();
        server_span(&spans, header_trace).is_some()
            && server_span(&spans, meta_trace).is_some()
            && spans
                .iter()
                .any(|s| attr(s, "portcullis.decision").as_deref() == Some("deny"))
            && spans
                .iter()
                .filter(|s| s.kind == SpanKind::Client as i32)
                .count()
                >= 2
    });
    assert!(spans(&received)
        .iter()
        .all(|(svc, _)| svc == "gw-under-test"));

    // The continued request: the caller's span is its parent, and its children hang off it.
    let req = server_span(&all, header_trace).unwrap();
    assert_eq!(hex(&req.parent_span_id), &TP_HEADER[36..52]);
    assert_eq!(req.name, "tools/call echo");
    assert_eq!(attr(&req, "mcp.method.name").as_deref(), Some("tools/call"));
    assert_eq!(attr(&req, "gen_ai.tool.name").as_deref(), Some("echo"));
    assert_eq!(attr(&req, "portcullis.server").as_deref(), Some("up"));
    assert_eq!(attr(&req, "portcullis.decision").as_deref(), Some("allow"));
    assert_eq!(
        attr(&req, "portcullis.upstream.status").as_deref(),
        Some("ok")
    );
    assert_eq!(
        attr(&req, "portcullis.grant.label").as_deref(),
        Some("local")
    );
    let children: Vec<&Span> = all
        .iter()
        .filter(|s| s.trace_id == req.trace_id && s.parent_span_id == req.span_id)
        .collect();
    let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"portcullis.decide"), "{names:?}");
    assert!(names.contains(&"portcullis.audit.commit"), "{names:?}");
    // The counter reservation, inside the decision.
    let decide = children
        .iter()
        .find(|s| s.name == "portcullis.decide")
        .unwrap();
    let reserve = all
        .iter()
        .find(|s| s.name == "portcullis.reserve" && s.parent_span_id == decide.span_id)
        .expect("a reservation span under the decision");
    assert!(
        reserve.start_time_unix_nano >= decide.start_time_unix_nano
            && reserve.end_time_unix_nano <= decide.end_time_unix_nano
    );
    assert_eq!(attr(reserve, "portcullis.counters").as_deref(), Some("1"));
    // Durable audit (the default): the write-ahead record is committed before the call goes.
    assert!(names.contains(&"portcullis.audit.write_ahead"), "{names:?}");
    let upstream_span = children
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .expect("an upstream-call span");
    assert_eq!(upstream_span.name, "upstream tools/call");
    for c in &children {
        assert!(
            c.start_time_unix_nano >= req.start_time_unix_nano
                && c.end_time_unix_nano <= req.end_time_unix_nano
                && c.start_time_unix_nano <= c.end_time_unix_nano,
            "{} lies outside its parent",
            c.name
        );
    }

    // The upstream saw the gateway's upstream-call span as its parent, in both places.
    let calls = upstream_calls(&upstream, "echo");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let want = format!("00-{header_trace}-{}-01", hex(&upstream_span.span_id));
    assert_eq!(
        calls[0].0.header("traceparent").as_deref(),
        Some(want.as_str())
    );
    assert_eq!(calls[0].1["params"]["_meta"]["traceparent"], want.as_str());
    // The denied call never went upstream; its span starts a trace of its own.
    assert!(upstream_calls(&upstream, "secret").is_empty());
    let denied = all
        .iter()
        .find(|s| attr(s, "portcullis.decision").as_deref() == Some("deny"))
        .unwrap();
    assert!(denied.parent_span_id.is_empty());
    assert_ne!(hex(&denied.trace_id), header_trace);
    assert_eq!(attr(denied, "gen_ai.tool.name").as_deref(), Some("secret"));
    assert!(attr(denied, "portcullis.rule").is_some(), "{denied:?}");
    assert!(!all
        .iter()
        .any(|s| s.trace_id == denied.trace_id && s.kind == SpanKind::Client as i32));

    // The `_meta` context: continued the same way, and replaced by ours upstream (the
    // caller's own arguments untouched).
    let req = server_span(&all, meta_trace).unwrap();
    assert_eq!(hex(&req.parent_span_id), &TP_META[36..52]);
    let up_span = all
        .iter()
        .find(|s| {
            s.trace_id == req.trace_id
                && s.parent_span_id == req.span_id
                && s.kind == SpanKind::Client as i32
        })
        .unwrap();
    let want = format!("00-{meta_trace}-{}-01", hex(&up_span.span_id));
    assert_eq!(
        calls[1].0.header("traceparent").as_deref(),
        Some(want.as_str())
    );
    assert_eq!(calls[1].1["params"]["_meta"]["traceparent"], want.as_str());
    assert_eq!(calls[1].1["params"]["arguments"], json!({"n": 3}));
    drop(gw);
}

/// W3C `tracestate` travels with the `traceparent` it came with — from the headers, or from
/// `params._meta` (which wins, state and all) — to the upstream's header and `_meta`, and onto
/// the exported spans; a `_meta` context without a state sends none on. The collector is
/// named by `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (a full URL) and every post carries the
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (percent-decoded), which replace the generic list.
#[test]
fn tracestate_travels_with_its_context_and_collector_headers_ride_on_every_post() {
    let test = Scratch::new("traces-tracestate");
    let (otlp, received) = otlp_receiver();
    let (up, upstream) = recording_upstream();
    let traces_url = format!("http://127.0.0.1:{otlp}/v1/traces");
    let gw = serve_in(
        &test,
        &http_server(up),
        &[("p.json", POLICY.to_string())],
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces_url),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-generic=never-sent"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "authorization=Bearer%20collector-secret , x-tenant=t1%2Cblue",
            ),
        ],
        &[],
    );
    let sid = open_session(gw.port, "up");
    const STATE: &str = "rojo=00f067aa0ba902b7,congo=t61rcwkgmze";
    // 1. Headers: traceparent and tracestate (two lines, joined as HTTP joins them).
    let a = call(
        gw.port,
        "up",
        &sid,
        10,
        json!({"name": "echo", "arguments": {}}),
        &[
            ("traceparent", TP_HEADER),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("tracestate", "congo=t61rcwkgmze"),
        ],
    );
    assert_eq!(a["result"]["content"][0]["text"], "echoed", "{a}");
    // 2. Both: `_meta` wins, with its own state.
    call(
        gw.port,
        "up",
        &sid,
        11,
        json!({"name": "echo", "arguments": {}, "_meta": {"traceparent": TP_META, "tracestate": "vendor=meta-state"}}),
        &[
            ("traceparent", TP_HEADER),
            ("tracestate", "rojo=header-state"),
        ],
    );
    // 3. `_meta` context without a state, a header state beside it: none goes on.
    call(
        gw.port,
        "up",
        &sid,
        12,
        json!({"name": "echo", "arguments": {}, "_meta": {"traceparent": TP_META}}),
        &[
            ("traceparent", TP_HEADER),
            ("tracestate", "rojo=header-state"),
        ],
    );
    let calls = upstream_calls(&upstream, "echo");
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[0].0.header("tracestate").as_deref(), Some(STATE));
    assert_eq!(calls[0].1["params"]["_meta"]["tracestate"], STATE);
    assert!(calls[0]
        .0
        .header("traceparent")
        .unwrap()
        .contains(&TP_HEADER[3..35]));
    assert_eq!(
        calls[1].0.header("tracestate").as_deref(),
        Some("vendor=meta-state")
    );
    assert_eq!(
        calls[1].1["params"]["_meta"]["tracestate"],
        "vendor=meta-state"
    );
    assert!(calls[1]
        .0
        .header("traceparent")
        .unwrap()
        .contains(&TP_META[3..35]));
    assert_eq!(calls[2].0.header("tracestate"), None, "{:?}", calls[2].0);
    assert!(calls[2].1["params"]["_meta"].get("tracestate").is_none());

    // The spans of the header's trace carry its state; the collector got our headers.
    let all = wait_for(&received, |all| {
        all.iter()
            .any(|(_, s)| hex(&s.trace_id) == TP_HEADER[3..35] && s.kind == SpanKind::Server as i32)
    });
    let req = all
        .iter()
        .find(|s| hex(&s.trace_id) == TP_HEADER[3..35] && s.kind == SpanKind::Server as i32)
        .unwrap();
    assert_eq!(req.trace_state, STATE);
    assert!(all
        .iter()
        .filter(|s| s.trace_id == req.trace_id)
        .all(|s| s.trace_state == STATE));
    let posts = received.lock().unwrap().clone();
    assert!(!posts.is_empty());
    for p in &posts {
        assert!(p.head.starts_with("post /v1/traces "), "{}", p.head);
        // (The tiny server lower-cases what it saw.)
        assert_eq!(
            p.header("authorization").as_deref(),
            Some("bearer collector-secret")
        );
        assert_eq!(p.header("x-tenant").as_deref(), Some("t1,blue"));
        assert_eq!(p.header("x-generic"), None, "the traces list replaces it");
        assert_eq!(
            p.header("content-type").as_deref(),
            Some("application/x-protobuf")
        );
    }
    assert!(
        !gw.stderr().contains("collector-secret"),
        "header values are never logged"
    );
}

#[test]
fn sampling_follows_the_caller_and_telemetry_off_exports_nothing() {
    // Ratio 0: new traces are not exported, but still propagated (flag 00); a caller's
    // sampled context is followed (parent-based).
    let test = Scratch::new("traces-sampling");
    let (otlp, received) = otlp_receiver();
    let (up, upstream) = recording_upstream();
    let gw = serve_in(
        &test,
        &format!(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{otlp}\"\nsampling_ratio = 0.0\n\n{}",
            http_server(up)
        ),
        &[("p.json", POLICY.to_string())],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
        &[],
    );
    let sid = open_session(gw.port, "up");
    call(
        gw.port,
        "up",
        &sid,
        10,
        json!({"name": "echo", "arguments": {}}),
        &[],
    );
    let unsampled = TP_HEADER.replace("-01", "-00");
    call(
        gw.port,
        "up",
        &sid,
        11,
        json!({"name": "echo", "arguments": {}}),
        &[("traceparent", &unsampled)],
    );
    call(
        gw.port,
        "up",
        &sid,
        12,
        json!({"name": "echo", "arguments": {}}),
        &[("traceparent", TP_HEADER)],
    );
    let all = wait_for(&received, |all| {
        all.iter().any(|(_, s)| s.kind == SpanKind::Server as i32)
    });
    std::thread::sleep(Duration::from_millis(500));
    let all_now = spans(&received);
    assert!(all.len() <= all_now.len());
    assert!(
        all_now
            .iter()
            .all(|(_, s)| hex(&s.trace_id) == TP_HEADER[3..35]),
        "only the sampled caller's trace is exported: {:?}",
        all_now
            .iter()
            .map(|(_, s)| (&s.name, hex(&s.trace_id)))
            .collect::<Vec<_>>()
    );
    let calls = upstream_calls(&upstream, "echo");
    assert_eq!(calls.len(), 3);
    let tps: Vec<String> = calls
        .iter()
        .map(|(s, _)| s.header("traceparent").unwrap())
        .collect();
    assert!(
        tps[0].ends_with("-00") && !tps[0].contains(&TP_HEADER[3..35]),
        "{tps:?}"
    );
    assert!(
        tps[1].ends_with("-00") && tps[1].contains(&TP_HEADER[3..35]),
        "{tps:?}"
    );
    assert!(
        tps[2].ends_with("-01") && tps[2].contains(&TP_HEADER[3..35]),
        "{tps:?}"
    );
    drop(gw);

    // Off: no endpoint anywhere — nothing reaches a receiver, and the upstream gets the
    // caller's message without a context of ours.
    let test = Scratch::new("traces-off");
    let (_, received) = otlp_receiver();
    let (up, upstream) = recording_upstream();
    let gw = serve_in(
        &test,
        &http_server(up),
        &[("p.json", POLICY.to_string())],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
        &[],
    );
    let sid = open_session(gw.port, "up");
    call(
        gw.port,
        "up",
        &sid,
        10,
        json!({"name": "echo", "arguments": {}}),
        &[("traceparent", TP_HEADER)],
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(received.lock().unwrap().is_empty());
    let calls = upstream_calls(&upstream, "echo");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0.header("traceparent"), None);
    assert!(
        calls[0].1["params"].get("_meta").is_none(),
        "{}",
        calls[0].1
    );
    assert!(
        !gw.stderr().contains("traces: exporting"),
        "{}",
        gw.stderr()
    );
}

#[test]
fn a_dead_collector_never_fails_a_request_and_is_reported_once() {
    let test = Scratch::new("traces-dead-collector");
    let (up, upstream) = recording_upstream();
    let gw = serve_in(
        &test,
        &format!(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}\"\n\n{}",
            free_port(),
            http_server(up)
        ),
        &[("p.json", POLICY.to_string())],
        &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
        &[],
    );
    let sid = open_session(gw.port, "up");
    for id in 10..16 {
        let a = call(
            gw.port,
            "up",
            &sid,
            id,
            json!({"name": "echo", "arguments": {}}),
            &[],
        );
        assert_eq!(a["result"]["content"][0]["text"], "echoed", "{a}");
        std::thread::sleep(Duration::from_millis(120));
    }
    assert_eq!(upstream_calls(&upstream, "echo").len(), 6);
    let log = gw.stderr();
    assert_eq!(
        log.matches("trace export to").count(),
        1,
        "one warning for several failed batches: {log}"
    );
}

#[test]
fn spans_still_waiting_are_posted_when_the_gateway_stops() {
    let test = Scratch::new("traces-flush");
    let (otlp, received) = otlp_receiver();
    let (up, _upstream) = recording_upstream();
    let mut gw = serve_in(
        &test,
        &format!(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{otlp}\"\n\n{}",
            http_server(up)
        ),
        &[("p.json", POLICY.to_string())],
        // Far longer than the test: only the stop posts them.
        &[("OTEL_BSP_SCHEDULE_DELAY", "600000")],
        &[],
    );
    let sid = open_session(gw.port, "up");
    call(
        gw.port,
        "up",
        &sid,
        10,
        json!({"name": "echo", "arguments": {}}),
        &[("traceparent", TP_HEADER)],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        received.lock().unwrap().is_empty(),
        "posted before the stop"
    );
    terminate(&mut gw.child, Duration::from_secs(10));
    let all = spans(&received);
    assert!(
        all.iter().any(|(_, s)| hex(&s.trace_id) == TP_HEADER[3..35] && s.kind == SpanKind::Server as i32),
        "{all:?}"
    );
}

#[test]
fn the_stdio_face_continues_a_meta_context_from_the_otel_variables() {
    let test = Scratch::new("traces-stdio");
    let (otlp, received) = otlp_receiver();
    let policy = test.join("p.json");
    std::fs::write(
        &policy,
        r#"{"version":"1","default":"deny","tools":{"read_invoice":{}}}"#,
    )
    .unwrap();
    let record = test.join("record.jsonl");
    let mut child = Command::new(bin())
        .args([
            "stdio",
            "--policy",
            policy.to_str().unwrap(),
            "--log",
            "warn",
            "--",
        ])
        .args(["python3", &fixture_server()])
        .env("RECORD", &record)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{otlp}"),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "read_invoice", "arguments": {"id": 1}, "_meta": {"traceparent": TP_META}}}),
    ];
    for l in &lines {
        writeln!(stdin, "{l}").unwrap();
    }
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut answered = false;
    for _ in 0..10 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if serde_json::from_str::<Value>(&line).is_ok_and(|v| v["id"] == 2) {
            answered = true;
            break;
        }
    }
    assert!(answered, "no answer to the call");
    drop(stdin);
    assert!(wait_exit(&mut child, Duration::from_secs(10)));
    // Posted at the end (the batch delay is far longer than the test).
    let all: Vec<Span> = spans(&received).into_iter().map(|(_, s)| s).collect();
    let req = all
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32 && s.name == "tools/call read_invoice")
        .unwrap_or_else(|| panic!("{all:?}"));
    assert_eq!(hex(&req.trace_id), &TP_META[3..35]);
    assert_eq!(hex(&req.parent_span_id), &TP_META[36..52]);
    let up = all
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32 && s.parent_span_id == req.span_id)
        .unwrap();
    let recorded = std::fs::read_to_string(&record).unwrap();
    let call: Value = recorded
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["method"] == "tools/call")
        .unwrap();
    assert_eq!(
        call["params"]["_meta"]["traceparent"],
        format!("00-{}-{}-01", &TP_META[3..35], hex(&up.span_id))
    );
}
