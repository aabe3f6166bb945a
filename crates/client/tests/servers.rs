//! The client against real servers: the demo server (`portcullis-demo-upstream`) over stdio,
//! and `fast-upstream` over stdio and Streamable HTTP in both eras. Their binaries are taken
//! from this build's target directory (`cargo test -p portcullis-client -p portcullis-demo`
//! builds the demo's; `cargo build -p portcullis-bench` the bench's); a missing one fails the
//! test, it is never skipped.

use portcullis_client::{list_tools, ChildSpec, Client, Era, ErrorKind, Options, UpstreamSpec};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A binary of this workspace, next to the test binary's `deps/` directory.
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p portcullis-demo -p portcullis-bench --bins)",
        path.display()
    );
    path
}

fn command(name: &str, args: &[&str]) -> UpstreamSpec {
    let mut argv = vec![bin(name).display().to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    UpstreamSpec::Command(ChildSpec {
        argv,
        env: Vec::new(),
    })
}

fn opts(era: Era) -> Options {
    Options {
        client_name: "client-test".into(),
        era,
        timeout: Some(Duration::from_secs(30)),
        ..Options::default()
    }
}

fn names(tools: &[Value]) -> Vec<String> {
    tools
        .iter()
        .map(|t| t["name"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// `fast-upstream http` on a free port, killed when dropped.
struct FastHttp {
    child: Child,
    port: u16,
}

impl FastHttp {
    fn start() -> FastHttp {
        let port = portcullis_bench::free_port();
        let mut child = Command::new(bin("fast-upstream"))
            .args(["http", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start fast-upstream");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("fast-upstream exited ({status})");
            }
            assert!(Instant::now() < deadline, "fast-upstream never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        FastHttp { child, port }
    }

    fn spec(&self) -> UpstreamSpec {
        UpstreamSpec::for_url(
            format!("http://127.0.0.1:{}/mcp", self.port),
            vec![("X-Test".into(), "1".into())],
        )
    }
}

impl Drop for FastHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_demo_server_over_stdio_lists_and_calls() {
    let spec = command("portcullis-demo-upstream", &[]);
    let mut c = Client::connect(&spec, &opts(Era::Handshake)).await.unwrap();
    assert_eq!(c.era(), Era::Handshake);
    assert_eq!(c.server_name(), Some("odoo-demo"));
    assert_eq!(c.protocol_version(), "2025-11-25");

    let tools = c.list_tools().await.unwrap();
    assert_eq!(
        names(&tools),
        [
            "odoo_search_read",
            "odoo_read",
            "ai_invoice_pipeline_summary",
            "odoo_write",
            "ai_invoice_pipeline_run",
            "ai_pipeline_run",
            "account_payment_register",
            "odoo_unlink"
        ]
    );

    let read = c
        .call_tool(
            "odoo_read",
            json!({"model": "account.move", "ids": [4], "fields": ["name", "payment_state"]}),
        )
        .await
        .unwrap();
    assert_eq!(read["isError"], false, "{read}");
    assert_eq!(
        read["structuredContent"]["records"][0]["name"],
        "INV/2025/0107"
    );
    assert_eq!(
        read["structuredContent"]["records"][0]["payment_state"],
        "not_paid"
    );

    let unknown = c.call_tool("no_such_tool", json!({})).await.unwrap_err();
    assert!(
        matches!(unknown.kind(), ErrorKind::Rpc { code, .. } if code == &json!(-32602)),
        "{unknown:?}"
    );
    assert!(
        unknown.to_string().starts_with(
            "the server answered tools/call (no_such_tool) with an error: Unknown tool"
        ),
        "{unknown}"
    );
    assert_eq!(c.close().await, Default::default());
}

#[tokio::test]
async fn auto_falls_back_to_initialize_for_a_handshake_only_server() {
    let listing = list_tools(&command("portcullis-demo-upstream", &[]), &opts(Era::Auto))
        .await
        .unwrap();
    assert_eq!(listing.server_name.as_deref(), Some("odoo-demo"));
    assert!(names(&listing.tools).contains(&"account_payment_register".to_owned()));
}

#[tokio::test]
async fn fast_upstream_over_stdio() {
    let mut c = Client::connect(&command("fast-upstream", &["stdio"]), &opts(Era::Handshake))
        .await
        .unwrap();
    assert_eq!(c.server_name(), Some("fast-upstream"));
    assert_eq!(
        names(&c.list_tools().await.unwrap()),
        ["echo", "ai_invoice_pipeline_run"]
    );
    let r = c.call_tool("echo", json!({"text": "hi"})).await.unwrap();
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with(portcullis_bench::RESULT_MARKER),
        "{r}"
    );
    c.close().await;
}

#[tokio::test]
async fn fast_upstream_over_http_in_both_eras() {
    let server = FastHttp::start();
    for (asked, spoken, version) in [
        (Era::Handshake, Era::Handshake, "2025-11-25"),
        (Era::Stateless, Era::Stateless, "2026-07-28"),
        (Era::Auto, Era::Stateless, "2026-07-28"),
    ] {
        let mut c = Client::connect(&server.spec(), &opts(asked)).await.unwrap();
        assert_eq!(c.era(), spoken, "{asked:?}");
        assert_eq!(c.protocol_version(), version, "{asked:?}");
        assert_eq!(c.server_name(), Some("fast-upstream"), "{asked:?}");
        assert_eq!(
            names(&c.list_tools().await.unwrap()),
            ["echo", "ai_invoice_pipeline_run"],
            "{asked:?}"
        );
        let r = c
            .call_tool("ai_invoice_pipeline_run", json!({"move_id": 1}))
            .await
            .unwrap();
        assert_eq!(r["isError"], false, "{asked:?}: {r}");
        assert!(
            r["content"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with(portcullis_bench::RESULT_MARKER),
            "{asked:?}: {r}"
        );
        let e = c.call_tool("nope", json!({})).await.unwrap_err();
        assert_eq!(e.rpc_message(), Some("unknown tool \"nope\""), "{asked:?}");
        c.close().await;
    }
}

#[tokio::test]
async fn a_stdio_server_that_dies_is_explained() {
    let spec = UpstreamSpec::Command(ChildSpec {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "read line; echo 'starting up'; echo 'fatal: no config' >&2; exit 3".into(),
        ],
        env: Vec::new(),
    });
    let e = match Client::connect(&spec, &opts(Era::Handshake)).await {
        Ok(_) => panic!("the handshake cannot succeed"),
        Err(e) => e,
    };
    assert_eq!(e.kind(), &ErrorKind::Transport);
    let text = e.to_string();
    assert!(
        text.starts_with(
            "the server closed its output before answering initialize (exit status: 3)"
        ),
        "{text}"
    );
    assert!(
        text.contains("; it wrote non-JSON to stdout: \"starting up\""),
        "{text}"
    );
    assert!(
        text.ends_with("; its stderr ended with: fatal: no config"),
        "{text}"
    );
}

#[tokio::test]
async fn an_address_nobody_listens_on_is_unreachable() {
    // Streamable HTTP fails its first request; legacy SSE fails to open its stream.
    for url in [
        "http://127.0.0.1:1/mcp",
        "http://user:secret@127.0.0.1:1/sse",
    ] {
        let spec = UpstreamSpec::for_url(url.into(), Vec::new());
        let e = match Client::connect(&spec, &opts(Era::Handshake)).await {
            Ok(_) => panic!("nothing listens on port 1"),
            Err(e) => e,
        };
        assert_eq!(e.kind(), &ErrorKind::Unreachable, "{url}");
        let text = e.to_string();
        let path = &url[url.rfind('/').unwrap()..];
        assert!(
            text.starts_with(&format!("cannot reach http://127.0.0.1:1{path}: ")),
            "{text}"
        );
        assert!(text.contains("refused"), "the TCP probe's reason: {text}");
    }
}
