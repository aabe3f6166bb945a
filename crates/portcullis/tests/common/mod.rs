//! Helpers shared by the binary's integration tests: where things are, real peers under
//! `.peers/`, background processes, and the Python peer drivers.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The `portcullis` binary under test.
pub fn bin() -> String {
    env!("CARGO_BIN_EXE_portcullis").to_string()
}

/// A peer installed by `scripts/install-peers.sh`. Missing: `None` with a "skipped" line, or a
/// failure when `PORTCULLIS_REQUIRE_PEERS=1` (the test command sets it).
pub fn peer(rel: &str) -> Option<PathBuf> {
    let p = repo().join(".peers").join(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("PORTCULLIS_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("peer {rel} is missing: run scripts/install-peers.sh");
    }
    eprintln!("skipped: .peers/{rel} not installed (scripts/install-peers.sh)");
    None
}

/// A program of the system (a Debian package `scripts/test.sh` installs) on `PATH`. Missing:
/// `None` with a "skipped" line, or a failure when `PORTCULLIS_REQUIRE_PEERS=1`, as for
/// [`peer`].
pub fn system_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(p) = std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
    {
        return Some(p);
    }
    if std::env::var("PORTCULLIS_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{name} is missing: scripts/test.sh installs it (apt-get install {name})");
    }
    eprintln!("skipped: {name} is not installed (apt-get install {name})");
    None
}

/// A running `portcullis serve`, stopped on drop.
pub struct Served {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Served {
    /// What the gateway wrote to standard error.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// Starts `portcullis serve` in `dir` on a free port with `servers` (TOML `[[servers]]`
/// blocks), `files` written beside its config, and `env` set; the recording fixture logs to
/// `dir/record.jsonl`, standard error goes to `dir/stderr.log`; `args` are added to the
/// command line (the log level is `warn` unless `RUST_LOG` is in `env`). Returns once it
/// listens.
pub fn serve_in(
    dir: &Path,
    servers: &str,
    files: &[(&str, String)],
    env: &[(&str, &str)],
    args: &[&str],
) -> Served {
    serve_at(free_port(), dir, servers, files, env, args)
}

/// `serve` in front of the recording fixture as server `rec`, listing `tools` (its
/// `TOOLS_JSON`), under `policy` (`rec.json`), with the admin token `admin`.
pub fn serve_rec(
    dir: &Path,
    tools: &serde_json::Value,
    policy: &serde_json::Value,
    admin: &str,
) -> Served {
    let servers = format!(
        "[[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{}\"]\npolicy = \"rec.json\"\nenv = {{ TOOLS_JSON = \"{}\" }}\n",
        fixture_server(),
        dir.join("tools.json").display()
    );
    serve_in(
        dir,
        &servers,
        &[
            ("tools.json", tools.to_string()),
            ("rec.json", policy.to_string()),
        ],
        &[("PORTCULLIS_ADMIN_TOKEN", admin)],
        &[],
    )
}

/// [`serve_in`] on a port the caller chose (a config that names the gateway's own address,
/// such as `[oauth] public_url`).
pub fn serve_at(
    port: u16,
    dir: &Path,
    servers: &str,
    files: &[(&str, String)],
    env: &[(&str, &str)],
    args: &[&str],
) -> Served {
    for (f, text) in files {
        std::fs::write(dir.join(f), text).unwrap();
    }
    let cfg = format!(
        "[gateway]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nmax_body_bytes = 65536\n\n{servers}"
    );
    std::fs::write(dir.join("portcullis.toml"), cfg).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args([
        "serve",
        "--config",
        dir.join("portcullis.toml").to_str().unwrap(),
        "--log",
        "warn",
    ])
    .args(args)
    .env("RECORD", dir.join("record.jsonl"))
    .env_remove("PORTCULLIS_ADMIN_TOKEN")
    .env_remove("RUST_LOG")
    .envs(env.iter().copied())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
    let mut gw = Served {
        child: cmd.spawn().unwrap(),
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
    gw
}

/// Our recording fixture server (logs every line it receives to `$RECORD`).
pub fn fixture_server() -> String {
    repo()
        .join("crates/gateway/tests/fixtures/recording_server.py")
        .display()
        .to_string()
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A background process, killed and reaped on drop.
pub struct Bg(pub std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on (right now), for a child process to bind (see
/// [`portcullis_bench::free_port`] for why the probe never listens).
pub fn free_port() -> u16 {
    portcullis_bench::free_port()
}

/// For a test whose calls must fall in one calendar minute (the seed policy's limit is "10
/// per minute", UTC-aligned): if less than `need` is left of the current minute, waits for
/// the next one, so that a minute boundary cannot reset the count halfway.
pub fn clear_of_minute_boundary(need: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let left = Duration::from_secs(60) - Duration::from_millis((now.as_millis() % 60_000) as u64);
    if left < need {
        std::thread::sleep(left + Duration::from_millis(50));
    }
}

/// Waits until something accepts connections on `port` (20 s at most).
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a Python peer driver (`tests/peers/<script>`) with `args`, feeding `actions` on stdin,
/// under `timeout 120` so a hung peer fails the test instead of stalling CI; returns its JSON.
pub fn run_driver(
    python: &Path,
    script: &str,
    args: &[String],
    actions: &Value,
    env: &[(&str, String)],
) -> Value {
    let mut cmd = Command::new("timeout");
    cmd.arg("120")
        .arg(python)
        .arg(repo().join("crates/portcullis/tests/peers").join(script))
        .args(args);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(actions.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "driver {script} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The first text content of a tool result.
pub fn text(r: &Value) -> &str {
    r["content"][0]["text"].as_str().unwrap_or_default()
}

/// Calls `tool` with one `--tool-arg` through the Inspector CLI against `target` (a URL and
/// transport, or a command) and parses its stdout. Its connection set-up (spawning a Node
/// process, which spawns ours, which spawns a server) can miss its own deadline on a loaded
/// 2-core machine, so a run without JSON output is retried twice before failing.
pub fn inspector_call(inspector: &Path, target: &[&str], tool: &str, arg: &str) -> Value {
    let mut args = vec!["--cli"];
    args.extend_from_slice(target);
    args.extend_from_slice(&[
        "--method",
        "tools/call",
        "--tool-name",
        tool,
        "--tool-arg",
        arg,
    ]);
    let mut last = String::new();
    for _ in 0..3 {
        let out = Command::new("timeout")
            .arg("120")
            .arg(inspector)
            .args(&args)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        if let Ok(v) = serde_json::from_str(s.trim()) {
            return v;
        }
        last = format!("{s}\n{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("the Inspector gave no JSON in 3 attempts: {last}");
}

extern "C" {
    /// kill(2), to send SIGTERM (graceful shutdown) or SIGKILL (a crash) to a gateway.
    #[link_name = "kill"]
    pub fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Waits up to `within` for `child` to exit; true if it did.
pub fn wait_exit(child: &mut Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// SIGTERM (a gateway's graceful shutdown also stops its upstream children), up to `grace`
/// to exit, then SIGKILL; reaped either way.
pub fn terminate(child: &mut Child, grace: Duration) {
    // SAFETY: kill(2) only sends a signal to our own child.
    unsafe {
        libc_kill(child.id() as i32, 15);
    }
    if !wait_exit(child, grace) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// An HTTP answer: status, the head lower-cased, the body.
pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Reply {
    /// The body as JSON (panics with the status and body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// The `Mcp-Session-Id` header (panics with the status and body if there is none).
    pub fn session_id(&self) -> String {
        self.headers
            .lines()
            .find_map(|l| l.strip_prefix("mcp-session-id: "))
            .unwrap_or_else(|| panic!("no session id: {} {}", self.status, self.body))
            .trim()
            .to_string()
    }
}

/// A minimal HTTP/1.1 request over a fresh connection (Connection: close); the answer is read
/// for at most `read_timeout`.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    read_timeout: Duration,
) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(read_timeout)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// A command's standard output, lossily decoded.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's standard error, lossily decoded.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh scratch directory for one test (see [`scratch`]), removed when the test ends.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates it, empty.
    pub fn new(test: &str) -> Scratch {
        Scratch(scratch(test))
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
