//! The demo MCP server on stdin/stdout, as its own program (tests use it as the upstream; the
//! `portcullis` binary offers the same server as `portcullis demo-upstream`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    portcullis_demo::serve_stdio().await
}
