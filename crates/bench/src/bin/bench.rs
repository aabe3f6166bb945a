//! `bench`: the same workload direct to `fast-upstream` and through `portcullis`, side by side.
//!
//! One invocation starts `fast-upstream http` once and, per scenario, a `portcullis serve` in
//! front of it (grant auth, the scenario's policy and audit mode); each scenario then runs the
//! workload direct and through the gateway, interleaved, `--runs` times, with the same client
//! and payload, and reports the median of the runs. Workloads: sequential calls (added
//! latency), a closed loop of N sessions (throughput), an open loop at a fixed arrival rate
//! timed from each call's scheduled send (latency under load), the deny path, idle sessions
//! (memory per session), `portcullis stdio` against a direct pipe, and other gateways started
//! by `scripts/bench-peers.sh` (`--peer`). The gateway's CPU per call comes from
//! `/proc/<pid>/stat`. Timings are reported, never asserted.

use clap::{Parser, ValueEnum};
use portcullis_bench::{
    free_port, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, RESULT_MARKER, STATELESS_VERSION,
};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Direct vs gateway latency and throughput, side by side")]
struct Cli {
    /// Short run (smoke test): few calls, short durations, one run.
    #[arg(long)]
    quick: bool,
    /// Write all results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a Markdown report of the results to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// The portcullis binary.
    #[arg(long, default_value = "target/release/portcullis")]
    portcullis: PathBuf,
    /// The fast-upstream binary (default: next to this `bench` binary).
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// Runs of every scenario; the report gives the median and the spread (default 5, quick 1).
    #[arg(long)]
    runs: Option<usize>,
    /// Sequential calls per run (default 10000, quick 300).
    #[arg(long)]
    calls: Option<usize>,
    /// Seconds per closed- or open-loop run (default 5, quick 1).
    #[arg(long)]
    duration: Option<f64>,
    /// Sessions of the closed loop.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Arrival rate of the open loop, calls per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Idle sessions opened to measure memory per session (default 5000, quick 500).
    #[arg(long)]
    idle_sessions: Option<usize>,
    /// CPU layout: `unpinned`; `one-core` (everything on CPU 0); `split` (generator and
    /// upstream on CPU 0, gateway on CPU 1).
    #[arg(long, value_enum, default_value_t = Layout::Unpinned)]
    layout: Layout,
    /// Only scenarios whose name contains this text (repeatable); `=NAME`: only the scenario
    /// named exactly NAME (e.g. `--only "=http c=64 seed/audit=async"`, the SQLite row alone).
    #[arg(long)]
    only: Vec<String>,
    /// Another gateway to compare, started by `scripts/bench-peers.sh start NAME -- <upstream>`
    /// (e.g. `mcp-proxy`, `contextforge`; run `scripts/bench-peers.sh install` first).
    #[arg(long)]
    peer: Vec<String>,
    /// `[gateway] workers` of the gateways (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// The peer launcher script.
    #[arg(long, default_value = "scripts/bench-peers.sh")]
    peer_script: PathBuf,
}

/// Where the processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Layout {
    /// Wherever the scheduler puts them.
    Unpinned,
    /// Generator, upstream and gateway all on CPU 0.
    OneCore,
    /// Generator and upstream on CPU 0, gateway on CPU 1.
    Split,
}

// ---------------------------------------------------------------------------------------------
// Results

/// Latency summary of one side of one run.
#[derive(Clone, Debug, Default)]
struct Side {
    calls: usize,
    errors: usize,
    secs: f64,
    p50: f64,
    p90: f64,
    p99: f64,
}

impl Side {
    fn from(mut lat_ns: Vec<u64>, errors: usize, secs: f64) -> Side {
        lat_ns.sort_unstable();
        let q = |p: f64| -> f64 {
            if lat_ns.is_empty() {
                return f64::NAN;
            }
            let i = ((lat_ns.len() as f64 - 1.0) * p).round() as usize;
            lat_ns[i] as f64 / 1000.0
        };
        Side {
            calls: lat_ns.len(),
            errors,
            secs,
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
        }
    }
    fn throughput(&self) -> f64 {
        self.calls as f64 / self.secs
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// The runs of one side of a scenario, summarised by their median.
#[derive(Clone, Debug, Default)]
struct Runs(Vec<Side>);

impl Runs {
    fn med(&self, f: impl Fn(&Side) -> f64) -> f64 {
        median(self.0.iter().map(f).collect())
    }
    fn p50(&self) -> f64 {
        self.med(|s| s.p50)
    }
    fn p90(&self) -> f64 {
        self.med(|s| s.p90)
    }
    fn p99(&self) -> f64 {
        self.med(|s| s.p99)
    }
    fn tput(&self) -> f64 {
        self.med(Side::throughput)
    }
    fn errors(&self) -> usize {
        self.0.iter().map(|s| s.errors).sum()
    }
    fn json(&self) -> Value {
        let p50: Vec<f64> = self.0.iter().map(|s| s.p50).collect();
        let p99: Vec<f64> = self.0.iter().map(|s| s.p99).collect();
        let tp: Vec<f64> = self.0.iter().map(Side::throughput).collect();
        json!({
            "p50_us": self.p50(), "p90_us": self.p90(), "p99_us": self.p99(),
            "throughput_per_s": self.tput(), "errors": self.errors(),
            "runs": self.0.len(),
            "p50_us_range": spread(&p50), "p99_us_range": spread(&p99),
            "throughput_range": spread(&tp),
            "calls_per_run": self.0.iter().map(|s| s.calls).collect::<Vec<_>>(),
        })
    }
}

/// One scenario: direct and gateway side by side.
#[derive(Debug)]
struct Outcome {
    name: String,
    what: String,
    direct: Runs,
    gateway: Runs,
    /// Gateway CPU µs per call, per run.
    cpu: Vec<f64>,
}

impl Outcome {
    fn ratio(&self) -> f64 {
        self.gateway.tput() / self.direct.tput()
    }
    /// Median gateway CPU per call, µs.
    fn cpu(&self) -> f64 {
        median(self.cpu.clone())
    }
    fn json(&self) -> Value {
        json!({
            "scenario": self.name,
            "what": self.what,
            "direct": self.direct.json(),
            "gateway": self.gateway.json(),
            "added_p50_us": self.gateway.p50() - self.direct.p50(),
            "added_p90_us": self.gateway.p90() - self.direct.p90(),
            "added_p99_us": self.gateway.p99() - self.direct.p99(),
            "throughput_ratio": self.ratio(),
            "gateway_cpu_us_per_call": self.cpu(),
        })
    }
    fn print(&self) {
        let (d, g) = (&self.direct, &self.gateway);
        let errs = d.errors() + g.errors();
        println!(
            "{:<34} direct p50/p99 {:>7.1}/{:>7.1} µs {:>7.0}/s | gateway {:>7.1}/{:>7.1} µs {:>7.0}/s | added p50 {:+7.1} p99 {:+7.1} µs | ratio {:.2} | gw CPU {:.1} µs/call{}",
            self.name, d.p50(), d.p99(), d.tput(), g.p50(), g.p99(), g.tput(),
            g.p50() - d.p50(), g.p99() - d.p99(), self.ratio(), self.cpu(),
            if errs > 0 { format!("  ERRORS direct {} gateway {}", d.errors(), g.errors()) } else { String::new() }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process killed (with its process group) and reaped when dropped.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child's own process group (it was started with
        // process_group(0)), then on the child itself; both only send signals.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(50));
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pins the calling process (and what it spawns later) to one CPU. Only a syscall, so it is
/// also safe between fork and exec.
fn pin_self(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Spawns `cmd` in its own process group, pinned to `cpu` if given.
fn spawn(cmd: &mut Command, cpu: Option<usize>) -> std::io::Result<Proc> {
    cmd.process_group(0);
    if let Some(cpu) = cpu {
        // SAFETY: only async-signal-safe calls (sched_setaffinity) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                pin_self(cpu);
                Ok(())
            });
        }
    }
    cmd.spawn().map(Proc)
}

/// Raises the soft open-files limit to the hard one (idle sessions need one socket each).
fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            return r.rlim_cur;
        }
    }
    1024
}

fn wait_port(port: u16, p: &mut Proc, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(st)) = p.0.try_wait() {
            return Err(format!("{what} exited before listening: {st}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{what} did not listen on port {port} within 20 s"))
}

/// Clock ticks per second for `/proc/<pid>/stat`.
fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as f64
    } else {
        100.0
    }
}

/// Parent pid and utime + stime (clock ticks) of a process, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name, field 3 (state) is index 0: ppid (4), utime (14), stime (15).
    let n = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    Some((n(1) as u32, n(11) + n(12)))
}

/// utime + stime of a process, in clock ticks (0 once it is gone).
fn cpu_ticks(pid: u32) -> u64 {
    proc_stat(pid).map_or(0, |(_, ticks)| ticks)
}

/// CPU ticks of `pid` and all its descendants (a peer gateway runs as a launcher script
/// with children).
fn tree_ticks(pid: u32) -> u64 {
    let procs: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| proc_stat(p).map(|(ppid, ticks)| (p, ppid, ticks)))
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(procs.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    procs
        .iter()
        .filter(|p| tree.contains(&p.0))
        .map(|p| p.2)
        .sum()
}

/// Resident set size of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The MCP client side

/// Protocol era a target is driven in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Era {
    /// 2026-07-28: no session, `_meta` per request, `Mcp-Method`/`Mcp-Name` headers.
    Stateless,
    /// 2025-06-18: `initialize`, then calls carrying the `Mcp-Session-Id`.
    Handshake,
}

const HANDSHAKE_VERSION: &str = "2025-06-18";

/// Something to send `tools/call` to.
#[derive(Clone, Debug)]
struct Target {
    url: String,
    headers: Vec<(String, String)>,
    era: Era,
    tool: String,
    arguments: Value,
    /// Text every good answer contains.
    expect: String,
    /// Other URLs serving the same thing (replicas): each session opens on the next of `url`
    /// and these, round robin.
    replicas: Vec<String>,
}

/// The next replica a session opens on.
static NEXT_REPLICA: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Target {
    fn new(url: String, era: Era) -> Target {
        Target {
            replicas: Vec::new(),
            url,
            headers: Vec::new(),
            era,
            tool: TOOL.into(),
            arguments: json!({ "text": "hello from the bench", "mode": "draft" }),
            expect: RESULT_MARKER.into(),
        }
    }
    fn body(&self, id: u64) -> String {
        let mut params = json!({ "name": self.tool, "arguments": self.arguments });
        if self.era == Era::Stateless {
            params["_meta"] =
                json!({ META_PROTOCOL_VERSION: STATELESS_VERSION, META_CLIENT_CAPABILITIES: {} });
        }
        json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params }).to_string()
    }
}

const TOOL: &str = "echo";

/// Scenarios run once, beside the policy × audit matrix (names for `--only`).
const HANDSHAKE: &str = "http c=1 seed/audit=async handshake era";
const MEMORY_COUNTERS: &str = "http c=1 seed/audit=async memory counters";
const WRITE_BEHIND: &str = "write-behind counters";
const METRICS_OFF: &str = "http c=1 seed/audit=async metrics off";
const REDIS_C1: &str = "http c=1 seed/audit=async redis";
const NAIVE_C1: &str = "http c=1 naive proxy";

/// Commands the Redis at `port` has processed (`INFO stats`), read over a plain connection.
fn redis_commands(port: u16) -> Result<u64, String> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("redis: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    c.write_all(b"INFO stats\r\n").map_err(|e| e.to_string())?;
    let mut r = BufReader::new(c);
    let mut head = String::new();
    r.read_line(&mut head).map_err(|e| e.to_string())?;
    let len: usize = head
        .trim()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("redis INFO answered {head:?}"))?;
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| "redis INFO has no total_commands_processed".to_string())
}
const IDLE_MEMORY: &str = "memory per idle session";
const DENY_PATH: &str = "http c=1 deny path";

/// One MCP session of a target: its own HTTP client (so its own keep-alive connection, or a
/// pool of them for the open loop) and, in the handshake era, its session id.
struct Session {
    target: Arc<Target>,
    /// `target.url`, or one of its replicas.
    url: String,
    client: reqwest::Client,
    headers: reqwest::header::HeaderMap,
}

impl Session {
    async fn open(target: Arc<Target>, pool: usize) -> Result<Session, String> {
        let url = match target.replicas.len() {
            0 => target.url.clone(),
            n => {
                let i = NEXT_REPLICA.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (n + 1);
                if i == 0 {
                    target.url.clone()
                } else {
                    target.replicas[i - 1].clone()
                }
            }
        };
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(pool)
            .build()
            .map_err(|e| e.to_string())?;
        let mut headers = reqwest::header::HeaderMap::new();
        fn put(h: &mut reqwest::header::HeaderMap, k: &str, v: &str) {
            if let (Ok(k), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                reqwest::header::HeaderValue::from_str(v),
            ) {
                h.insert(k, v);
            }
        }
        let mut set = |k: &str, v: &str| put(&mut headers, k, v);
        set("content-type", "application/json");
        set("accept", "application/json, text/event-stream");
        for (k, v) in &target.headers {
            set(k, v);
        }
        match target.era {
            Era::Stateless => {
                set("mcp-protocol-version", STATELESS_VERSION);
                set("mcp-method", "tools/call");
                set("mcp-name", &target.tool);
            }
            Era::Handshake => {
                let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                    "protocolVersion": HANDSHAKE_VERSION, "capabilities": {},
                    "clientInfo": {"name": "portcullis-bench", "version": "0"}}});
                let r = client
                    .post(&url)
                    .headers(headers.clone())
                    .body(init.to_string())
                    .send()
                    .await
                    .map_err(|e| format!("initialize {url}: {e}"))?;
                let status = r.status();
                let sid = r
                    .headers()
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = r.text().await.unwrap_or_default();
                if !status.is_success() {
                    return Err(format!("initialize {url}: {status} {body}"));
                }
                let version = body
                    .find("\"protocolVersion\":\"")
                    .map(|i| &body[i + 19..])
                    .and_then(|s| s.split('"').next())
                    .unwrap_or(HANDSHAKE_VERSION)
                    .to_owned();
                if let Some(sid) = sid {
                    put(&mut headers, "mcp-session-id", &sid);
                }
                put(&mut headers, "mcp-protocol-version", &version);
                client
                    .post(&url)
                    .headers(headers.clone())
                    .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
                    .send()
                    .await
                    .map_err(|e| format!("notifications/initialized: {e}"))?;
            }
        }
        Ok(Session {
            target,
            url,
            client,
            headers,
        })
    }

    /// One `tools/call`; true when the answer is the expected one.
    async fn call(&self, id: u64) -> bool {
        let r = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(self.target.body(id))
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(b) => {
                    let s = String::from_utf8_lossy(&b);
                    s.contains(&self.target.expect)
                        && (self.target.expect != RESULT_MARKER || !s.contains("\"isError\":true"))
                }
                Err(_) => false,
            },
            _ => false,
        }
    }
}

async fn seq(t: Arc<Target>, warmup: usize, calls: usize) -> Result<Side, String> {
    let s = Session::open(t, 1).await?;
    let w = Instant::now();
    for i in 0..warmup {
        if w.elapsed() > SEQ_TIME_CAP / 4 {
            break;
        }
        s.call(i as u64).await;
    }
    let mut lat = Vec::with_capacity(calls);
    let mut errors = 0;
    let start = Instant::now();
    for i in 0..calls {
        if start.elapsed() > SEQ_TIME_CAP {
            break; // a slow peer: fewer calls rather than minutes per run
        }
        let t = Instant::now();
        let ok = s.call(i as u64).await;
        lat.push(t.elapsed().as_nanos() as u64);
        errors += usize::from(!ok);
    }
    Ok(Side::from(lat, errors, start.elapsed().as_secs_f64()))
}

/// Longest a sequential HTTP run goes on, whatever `--calls` says.
const SEQ_TIME_CAP: Duration = Duration::from_secs(20);

/// Warm-up calls per session of the closed loop.
const CLOSED_WARMUP: u64 = 10;

async fn closed(t: Arc<Target>, conns: usize, secs: f64) -> Result<Side, String> {
    let barrier = Arc::new(tokio::sync::Barrier::new(conns));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let t = t.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let s = Session::open(t, 1).await;
            if let Ok(s) = &s {
                for i in 0..CLOSED_WARMUP {
                    s.call(i).await;
                }
            }
            barrier.wait().await;
            let s = s?;
            let deadline = Instant::now() + Duration::from_secs_f64(secs);
            let (mut lat, mut errors, mut id) = (Vec::new(), 0, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = s.call(id).await;
                lat.push(t.elapsed().as_nanos() as u64);
                errors += usize::from(!ok);
                id += 1;
            }
            Ok::<_, String>((lat, errors))
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await.map_err(|e| e.to_string())??;
        lat.extend(l);
        errors += e;
    }
    Ok(Side::from(lat, errors, secs))
}

/// Open loop: call `i` is due at `start + i / rate`; its latency counts from then, so a
/// stall delays every call behind it (no coordinated omission). A plain thread paces the
/// sends (its sleep is precise to tens of µs; tokio's timer rounds up to whole ms) and hands
/// each call to the runtime.
async fn open_loop(t: Arc<Target>, rate: f64, secs: f64) -> Result<Side, String> {
    let s = Arc::new(Session::open(t, 1024).await?);
    for i in 0..200 {
        s.call(i).await;
    }
    let n = (rate * secs) as u64;
    let handle = tokio::runtime::Handle::current();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now() + Duration::from_millis(10);
    let pacer = std::thread::spawn(move || {
        for i in 0..n {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let s = s.clone();
            let tx = tx.clone();
            handle.spawn(async move {
                let ok = s.call(i).await;
                let _ = tx.send((due.elapsed().as_nanos() as u64, ok));
            });
        }
    });
    let (mut lat, mut errors) = (Vec::with_capacity(n as usize), 0);
    while lat.len() < n as usize {
        let Some((l, ok)) = rx.recv().await else {
            break;
        };
        lat.push(l);
        errors += usize::from(!ok);
    }
    pacer.join().map_err(|_| "the pacing thread panicked")?;
    Ok(Side::from(lat, errors, start.elapsed().as_secs_f64()))
}

/// Opens `n` idle sessions on their own keep-alive connections (an `initialize` each in the
/// handshake era, one `tools/call` each in the stateless era) and returns the RSS growth of
/// `pid` per session, in KiB. The connections stay open until the measurement is taken.
fn idle_sessions(t: &Target, pid: u32, n: usize) -> Result<f64, String> {
    let addr = t
        .url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .ok_or("idle sessions need an http:// URL")?
        .to_owned();
    let path = t.url[7 + addr.len()..].to_owned();
    let extra: String = t
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let open_one = |i: usize| -> Result<TcpStream, String> {
        let (body, head) = match t.era {
            Era::Handshake => (
                json!({"jsonrpc":"2.0","id":i,"method":"initialize","params":{
                    "protocolVersion": HANDSHAKE_VERSION, "capabilities": {},
                    "clientInfo": {"name": "idle", "version": "0"}}})
                .to_string(),
                String::new(),
            ),
            Era::Stateless => (
                t.body(i as u64),
                format!("MCP-Protocol-Version: {STATELESS_VERSION}\r\nMcp-Method: tools/call\r\nMcp-Name: {}\r\n", t.tool),
            ),
        };
        let mut s = TcpStream::connect(&addr).map_err(|e| format!("connect: {e}"))?;
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{head}{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("\"result\"") {
            let k = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
            if k == 0 {
                return Err(format!(
                    "connection closed: {}",
                    String::from_utf8_lossy(&got)
                ));
            }
            got.extend_from_slice(&buf[..k]);
        }
        Ok(s)
    };
    let mut held = Vec::with_capacity(n);
    for i in 0..20 {
        held.push(open_one(i)?);
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib(pid);
    for i in 0..n {
        held.push(open_one(100 + i)?);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    drop(held);
    Ok((after as f64 - before as f64) / n as f64)
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Policies: `seed` (the seed rule, never triggered) and `args` (argument rules too).
fn write_policies(dir: &Path) -> Result<(), String> {
    let limit = |counter: &str| json!([{ "counter": counter, "window": "minute", "max": 100_000_000, "scope": "grant" }]);
    let seed = json!({
        "version": "1",
        "default": "deny",
        "tools": {
            "ai_invoice_pipeline_run": { "limits": limit("ai_invoice_pipeline_run_rate") },
            "echo": { "limits": limit("echo_rate") }
        }
    });
    let args = json!({
        "version": "1",
        "default": "deny",
        "tools": {
            "ai_invoice_pipeline_run": {
                "require": [ { "conditions": [ { "path": "args.move_id", "op": "gt", "value": 0 } ],
                               "on_deny": "move_id must be a positive id." } ],
                "limits": limit("ai_invoice_pipeline_run_rate")
            },
            "echo": {
                "require": [ { "conditions": [ { "path": "args.text", "op": "exists", "value": true } ],
                               "on_deny": "text is required." } ],
                "deny_if": [
                    { "conditions": [ { "path": "args.mode", "op": "in", "value": ["delete", "post", "pay"] } ],
                      "on_deny": "This mode is not allowed." },
                    { "conditions": [ { "path": "args.text", "op": "regex", "value": "^rm " } ],
                      "on_deny": "No shell commands." }
                ],
                "limits": limit("echo_rate")
            }
        }
    });
    for (name, doc) in [("seed", seed), ("args", args)] {
        std::fs::write(dir.join(format!("{name}.json")), doc.to_string())
            .map_err(|e| format!("write policy: {e}"))?;
    }
    Ok(())
}

/// A running `portcullis serve` with one grant.
struct Gateway {
    proc: Proc,
    port: u16,
    token: String,
}

struct Harness {
    portcullis: PathBuf,
    upstream: PathBuf,
    naive: PathBuf,
    dir: PathBuf,
    runs: usize,
    calls: usize,
    warmup: usize,
    secs: f64,
    conns: usize,
    rate: f64,
    idle: usize,
    tck: f64,
    gateway_cpu: Option<usize>,
    workers: usize,
    only: Vec<String>,
    st: tokio::runtime::Runtime,
    mt: tokio::runtime::Runtime,
}

impl Harness {
    fn wanted(&self, name: &str) -> bool {
        self.only.is_empty()
            || self.only.iter().any(|o| match o.strip_prefix('=') {
                Some(exact) => name == exact,
                None => name.contains(o.as_str()),
            })
    }

    /// Starts `portcullis serve` with `server_toml` as its one server, creates a grant carrying
    /// the server's policy and returns the gateway with the grant's token.
    fn gateway(
        &self,
        tag: &str,
        audit: &str,
        gateway_toml: &str,
        server_toml: &str,
        serve_args: &[&str],
    ) -> Result<Gateway, String> {
        let port = free_port();
        let data = self.dir.join(format!("data-{tag}"));
        let cfg = format!(
            "[gateway]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {:?}\naudit = \"{audit}\"\nworkers = {}\n{gateway_toml}\n[[servers]]\nname = \"bench\"\n{server_toml}",
            data.display().to_string(),
            self.workers,
        );
        let path = self.dir.join(format!("portcullis-{tag}.toml"));
        std::fs::write(&path, cfg).map_err(|e| format!("write config: {e}"))?;
        // One label per gateway: replicas on one Redis share their grants.
        let label = format!("bench-{tag}");
        let out = Command::new(&self.portcullis)
            .args(["grant", "create", "--server", "bench", "--label", &label])
            .args(["--policy", "bench", "--json", "--config"])
            .arg(&path)
            .output()
            .map_err(|e| format!("portcullis grant create: {e}"))?;
        let grant: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "portcullis grant create: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let token = grant["token"]
            .as_str()
            .ok_or("grant create printed no token")?
            .to_owned();
        let log = std::fs::File::create(self.dir.join(format!("gateway-{tag}.log")))
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.portcullis);
        cmd.args(["serve", "--log", "warn"])
            .args(serve_args)
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut proc = spawn(&mut cmd, self.gateway_cpu)
            .map_err(|e| format!("spawn {}: {e}", self.portcullis.display()))?;
        wait_port(port, &mut proc, "portcullis serve")?;
        Ok(Gateway { proc, port, token })
    }

    fn via(&self, gw: &Gateway, era: Era) -> Target {
        let mut t = Target::new(format!("http://127.0.0.1:{}/mcp/bench", gw.port), era);
        t.headers
            .push(("authorization".into(), format!("Bearer {}", gw.token)));
        t
    }

    /// Runs `work` on `direct` and on `via` alternately, `runs` times; the gateway's CPU per
    /// call is measured around each gateway run (`extra` calls outside the timed part, such
    /// as warm-ups, are counted in).
    #[allow(clippy::too_many_arguments)]
    fn side_by_side(
        &self,
        name: String,
        what: &str,
        direct: &Target,
        via: &Target,
        gw_pid: u32,
        extra: usize,
        work: &dyn Fn(Arc<Target>) -> Result<Side, String>,
    ) -> Result<Outcome, String> {
        let mut o = Outcome {
            name,
            what: what.into(),
            direct: Runs::default(),
            gateway: Runs::default(),
            cpu: Vec::new(),
        };
        for _ in 0..self.runs {
            o.direct.0.push(work(Arc::new(direct.clone()))?);
            let c0 = tree_ticks(gw_pid);
            let g = work(Arc::new(via.clone()))?;
            let ticks = tree_ticks(gw_pid).saturating_sub(c0);
            o.cpu
                .push(ticks as f64 / self.tck * 1e6 / (g.calls + extra).max(1) as f64);
            o.gateway.0.push(g);
        }
        o.print();
        Ok(o)
    }

    fn seq_work(&self) -> impl Fn(Arc<Target>) -> Result<Side, String> + '_ {
        move |t| self.st.block_on(seq(t, self.warmup, self.calls))
    }

    fn closed_work(&self) -> impl Fn(Arc<Target>) -> Result<Side, String> + '_ {
        move |t| self.mt.block_on(closed(t, self.conns, self.secs))
    }

    fn open_work(&self) -> impl Fn(Arc<Target>) -> Result<Side, String> + '_ {
        move |t| self.mt.block_on(open_loop(t, self.rate, self.secs))
    }

    /// The c=1 (sequential) and c=N (closed loop) rows named `names`, those wanted, of the
    /// same `what` through `via` (process `pid`) beside `direct`.
    fn c1_and_cn(
        &self,
        names: &[String; 2],
        what: &str,
        direct: &Target,
        via: &Target,
        pid: u32,
        out: &mut Outcomes,
    ) -> Result<(), String> {
        if self.wanted(&names[0]) {
            out.push(self.side_by_side(
                names[0].clone(),
                &format!("sequential {what}"),
                direct,
                via,
                pid,
                self.warmup,
                &self.seq_work(),
            )?);
        }
        if self.wanted(&names[1]) {
            out.push(self.side_by_side(
                names[1].clone(),
                &format!("closed loop, {} sessions, {what}", self.conns),
                direct,
                via,
                pid,
                CLOSED_WARMUP as usize * self.conns,
                &self.closed_work(),
            )?);
        }
        Ok(())
    }

    fn http(&self, up_port: u16, up_pid: u32, out: &mut Outcomes) -> Result<(), String> {
        let up = format!("url = \"http://127.0.0.1:{up_port}/mcp\"\nauth = \"grant\"\n");
        let direct = Target::new(format!("http://127.0.0.1:{up_port}/mcp"), Era::Stateless);
        for policy in ["seed", "args"] {
            for audit in ["async", "durable"] {
                let tag = format!("{policy}/audit={audit}");
                let names = [
                    format!("http c=1 {tag}"),
                    format!("http c={} {tag}", self.conns),
                    format!("http open {}/s {tag}", self.rate),
                ];
                let extras: &[&str] = match (policy, audit) {
                    ("seed", "async") => &[
                        HANDSHAKE,
                        MEMORY_COUNTERS,
                        WRITE_BEHIND,
                        METRICS_OFF,
                        IDLE_MEMORY,
                    ],
                    ("args", "async") => &[DENY_PATH],
                    _ => &[],
                };
                // The write-behind rows (seed, async): the c=1 and c=N rows, on counters
                // written behind.
                let wb = [
                    format!("{} {WRITE_BEHIND}", names[0]),
                    format!("{} {WRITE_BEHIND}", names[1]),
                ];
                let wb_wanted = extras.contains(&WRITE_BEHIND) && wb.iter().any(|n| self.wanted(n));
                if !names.iter().any(|n| self.wanted(n))
                    && !extras.iter().any(|n| self.wanted(n))
                    && !wb_wanted
                {
                    continue;
                }
                let gw = self.gateway(
                    &format!("{policy}-{audit}"),
                    audit,
                    "",
                    &format!("{up}policy = \"{policy}.json\"\n"),
                    &[],
                )?;
                let via = self.via(&gw, Era::Stateless);
                let what = format!("tools/call `echo`, 2026-07-28 era, grant auth, {policy} policy (limit never reached), audit {audit}");
                let pair = [names[0].clone(), names[1].clone()];
                self.c1_and_cn(&pair, &what, &direct, &via, gw.proc.pid(), out)?;
                if policy == "seed" && self.wanted(&names[2]) {
                    out.push(self.side_by_side(
                        names[2].clone(),
                        &format!("open loop at {}/s, {what}", self.rate),
                        &direct,
                        &via,
                        gw.proc.pid(),
                        200,
                        &self.open_work(),
                    )?);
                }
                if extras.contains(&DENY_PATH) && self.wanted(DENY_PATH) {
                    // The deny path: a call the argument rules refuse never reaches the upstream.
                    let mut deny = via.clone();
                    deny.arguments = json!({ "text": "rm -rf /", "mode": "draft" });
                    deny.expect = "[POLICY DENIED]".into();
                    out.push(self.side_by_side(
                        DENY_PATH.into(),
                        "sequential calls the `args` policy denies (`deny_if` regex): answered by the gateway, no upstream hop; direct = an allowed call to the upstream",
                        &direct,
                        &deny,
                        gw.proc.pid(),
                        self.warmup,
                        &self.seq_work(),
                    )?);
                }
                if extras.contains(&HANDSHAKE) {
                    if self.wanted(HANDSHAKE) {
                        let d = Target::new(direct.url.clone(), Era::Handshake);
                        let v = self.via(&gw, Era::Handshake);
                        out.push(self.side_by_side(
                            HANDSHAKE.into(),
                            "sequential tools/call `echo` in the 2025-06-18 era (`initialize`, then calls with the Mcp-Session-Id), grant auth, seed policy (limit never reached), audit async",
                            &d,
                            &v,
                            gw.proc.pid(),
                            self.warmup,
                            &self.seq_work(),
                        )?);
                    }
                    if self.wanted(MEMORY_COUNTERS) {
                        let mem = self.gateway(
                            "seed-async-memory",
                            audit,
                            "",
                            &format!("{up}policy = \"seed.json\"\n"),
                            &["--memory-counters"],
                        )?;
                        let v = self.via(&mem, Era::Stateless);
                        out.push(self.side_by_side(
                            MEMORY_COUNTERS.into(),
                            &format!("sequential {what}, counters in memory (`serve --memory-counters`) instead of SQLite"),
                            &direct,
                            &v,
                            mem.proc.pid(),
                            self.warmup,
                            &self.seq_work(),
                        )?);
                    }
                    if wb_wanted {
                        // The counters decided in memory and written behind to counters.db:
                        // beside `http c=1 seed/audit=async` (one SQLite transaction a call).
                        let wbg = self.gateway(
                            "seed-async-write-behind",
                            audit,
                            "",
                            &format!(
                                "{up}policy = \"seed.json\"\n\n[store]\ncounters = \"write-behind\"\n"
                            ),
                            &[],
                        )?;
                        let v = self.via(&wbg, Era::Stateless);
                        let how = "counters decided in memory and written behind to counters.db (`[store] counters = \"write-behind\"`)";
                        self.c1_and_cn(
                            &wb,
                            &format!("{what}, {how}"),
                            &direct,
                            &v,
                            wbg.proc.pid(),
                            out,
                        )?;
                    }
                    if self.wanted(METRICS_OFF) {
                        // The same gateway without its metrics sink: the row beside
                        // `http c=1 seed/audit=async` (metrics on) is what metrics cost.
                        let bare = self.gateway(
                            "seed-async-nometrics",
                            audit,
                            "metrics = false\n",
                            &format!("{up}policy = \"seed.json\"\n"),
                            &[],
                        )?;
                        let v = self.via(&bare, Era::Stateless);
                        out.push(self.side_by_side(
                            METRICS_OFF.into(),
                            &format!("sequential {what}, `[gateway] metrics = false` (compare with the metrics-on row `http c=1 seed/audit=async`)"),
                            &direct,
                            &v,
                            bare.proc.pid(),
                            self.warmup,
                            &self.seq_work(),
                        )?);
                    }
                    if self.wanted(IDLE_MEMORY) {
                        for era in [Era::Handshake, Era::Stateless] {
                            let v = self.via(&gw, era);
                            let d = Target::new(direct.url.clone(), era);
                            let g = idle_sessions(&v, gw.proc.pid(), self.idle)?;
                            let u = idle_sessions(&d, up_pid, self.idle)?;
                            let line = format!(
                                "memory per idle {} session ({} sessions, RSS delta): gateway {g:.1} KiB, upstream {u:.1} KiB",
                                if era == Era::Handshake { "handshake-era" } else { "stateless-era keep-alive" },
                                self.idle
                            );
                            println!("{line}");
                            out.notes.push((line, json!({"era": format!("{era:?}"), "sessions": self.idle, "gateway_kib_per_session": g, "upstream_kib_per_session": u})));
                        }
                    }
                }
            }
        }
        self.naive(up_port, &direct, out)?;
        self.redis(&up, &direct, out)
    }

    fn naive_cn(&self) -> String {
        format!("http c={} naive proxy", self.conns)
    }

    /// The floor: `naive-proxy` (axum in front, reqwest behind, nothing else) at c=1 and c=N,
    /// beside the direct calls, so the gateway rows can be read against what the same HTTP
    /// stack costs with no auth, parse, policy, counters or audit.
    fn naive(&self, up_port: u16, direct: &Target, out: &mut Outcomes) -> Result<(), String> {
        let names = [NAIVE_C1.to_string(), self.naive_cn()];
        if !names.iter().any(|n| self.wanted(n)) {
            return Ok(());
        }
        let port = free_port();
        let mut cmd = Command::new(&self.naive);
        cmd.args(["--port", &port.to_string()])
            .args(["--upstream", &format!("http://127.0.0.1:{up_port}/mcp")])
            .args(["--workers", &self.workers.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut proc = spawn(&mut cmd, self.gateway_cpu)
            .map_err(|e| format!("spawn {}: {e}", self.naive.display()))?;
        wait_port(port, &mut proc, "naive-proxy")?;
        let via = Target::new(format!("http://127.0.0.1:{port}/mcp"), Era::Stateless);
        let what = "tools/call `echo`, 2026-07-28 era, through `naive-proxy` (axum + reqwest pass-through: no auth, parse, policy, counters or audit)";
        self.c1_and_cn(&names, what, direct, &via, proc.pid(), out)?;
        Ok(())
    }

    /// The counters, grants and approvals on a shared Redis (`[store] url`): one replica at
    /// c=1 and c=N, three replicas at c=N (sessions spread round robin), and the commands
    /// Redis executed per allowed call (`INFO stats` before and after a sequential run; a
    /// script's inner commands count too, so this is not the round-trip count).
    fn redis(&self, up: &str, direct: &Target, out: &mut Outcomes) -> Result<(), String> {
        let names = [REDIS_C1.to_string(), self.redis_cn(), self.redis_cn3()];
        if !names.iter().any(|n| self.wanted(n)) {
            return Ok(());
        }
        let redis = portcullis_bench::redis_server::RedisServer::start(&[])
            .ok_or("redis-server is not installed (Debian: apt-get install redis-server)")?;
        let store = format!("\n[store]\nurl = \"{}\"\n", redis.url());
        let server = format!("{up}policy = \"seed.json\"\n");
        let replicas: Vec<Gateway> = (0..3)
            .map(|i| self.gateway(&format!("redis-{i}"), "async", &store, &server, &[]))
            .collect::<Result<_, _>>()?;
        let one = self.via(&replicas[0], Era::Stateless);
        let what = "tools/call `echo`, 2026-07-28 era, grant auth, seed policy (limit never reached), audit async, counters and grants on Redis";
        let closed_extra = CLOSED_WARMUP as usize * self.conns;
        if self.wanted(REDIS_C1) {
            let before = redis_commands(redis.port())?;
            let calls_before = self.warmup + self.calls;
            out.push(self.side_by_side(
                REDIS_C1.into(),
                &format!("sequential {what}"),
                direct,
                &one,
                replicas[0].proc.pid(),
                self.warmup,
                &self.seq_work(),
            )?);
            let per_call = (redis_commands(redis.port())? - before) as f64
                / (calls_before * self.runs).max(1) as f64;
            let line = format!(
                "Redis commands executed per allowed call, those inside the counters script included (round trips: crates/portcullis/tests/replicas.rs), {REDIS_C1}: {per_call:.2}"
            );
            println!("{line}");
            out.notes
                .push((line, json!({"redis_commands_per_call": per_call})));
        }
        if self.wanted(&names[1]) {
            out.push(self.side_by_side(
                names[1].clone(),
                &format!("closed loop, {} sessions, {what}", self.conns),
                direct,
                &one,
                replicas[0].proc.pid(),
                closed_extra,
                &self.closed_work(),
            )?);
        }
        if self.wanted(&names[2]) {
            let mut three = one.clone();
            three.replicas = replicas[1..]
                .iter()
                .map(|g| self.via(g, Era::Stateless).url)
                .collect();
            out.push(self.side_by_side(
                names[2].clone(),
                &format!("closed loop, {} sessions spread over three replicas, {what}; gateway CPU of the first replica only (a third of the calls)", self.conns),
                direct,
                &three,
                replicas[0].proc.pid(),
                closed_extra / 3,
                &self.closed_work(),
            )?);
        }
        Ok(())
    }

    fn redis_cn(&self) -> String {
        format!("http c={} seed/audit=async redis", self.conns)
    }

    fn redis_cn3(&self) -> String {
        format!("http c={} seed/audit=async redis 3 replicas", self.conns)
    }

    fn stdio(&self, out: &mut Outcomes) -> Result<(), String> {
        for policy in ["seed", "args"] {
            let name = format!("stdio c=1 {policy}");
            if !self.wanted(&name) {
                continue;
            }
            let mut o = Outcome {
                name,
                what: format!("sequential tools/call over pipes: `portcullis stdio --policy {policy}.json -- fast-upstream stdio` vs `fast-upstream stdio` alone; memory counters, no audit"),
                direct: Runs::default(),
                gateway: Runs::default(),
                cpu: Vec::new(),
            };
            for _ in 0..self.runs {
                let mut direct = Command::new(&self.upstream);
                direct.arg("stdio");
                let (d, _) = stdio_seq(direct, None, self.warmup, self.calls)?;
                o.direct.0.push(d);
                let mut via = Command::new(&self.portcullis);
                via.arg("stdio")
                    .arg("--policy")
                    .arg(self.dir.join(format!("{policy}.json")))
                    .arg("--")
                    .arg(&self.upstream)
                    .arg("stdio");
                let (g, ticks) = stdio_seq(via, self.gateway_cpu, self.warmup, self.calls)?;
                o.cpu
                    .push(ticks as f64 / self.tck * 1e6 / g.calls.max(1) as f64);
                o.gateway.0.push(g);
            }
            o.print();
            out.push(o);
        }
        Ok(())
    }

    /// Other gateways in front of `fast-upstream stdio`, beside Portcullis in the same shape
    /// (stdio upstream, handshake-era client, no policy work beyond what each does by default).
    fn peers(
        &self,
        peers: &[String],
        script: &Path,
        up_port: u16,
        out: &mut Outcomes,
    ) -> Result<(), String> {
        let name_c1 = |name: &str| format!("peers c=1 {name}");
        let name_cn = |name: &str| format!("peers c={} {name}", self.conns);
        let any_wanted = std::iter::once("portcullis")
            .chain(peers.iter().map(String::as_str))
            .any(|n| self.wanted(&name_c1(n)) || self.wanted(&name_cn(n)));
        if !any_wanted {
            return Ok(()); // start nothing
        }
        let direct = Target::new(format!("http://127.0.0.1:{up_port}/mcp"), Era::Handshake);
        let cmd = format!(
            "command = [{:?}, \"stdio\"]\nauth = \"grant\"\npolicy = \"seed.json\"\n",
            self.upstream.display().to_string()
        );
        // Each target with the process (tree) that serves it, kept alive until the end.
        let mut targets: Vec<(String, Target, Proc)> = Vec::new();
        let gw = self.gateway("peers", "durable", "", &cmd, &[])?;
        targets.push(("portcullis".into(), self.via(&gw, Era::Handshake), gw.proc));
        for name in peers {
            match start_peer(script, name, &self.upstream, self.gateway_cpu) {
                Ok((proc, t)) => targets.push((name.clone(), t, proc)),
                Err(e) => {
                    let line = format!("peer {name}: could not be started: {e}");
                    println!("{line}");
                    out.notes.push((line, json!({"peer": name, "error": e})));
                }
            }
        }
        for (name, target, proc) in &targets {
            let pid = proc.pid();
            let what = format!("{name} in front of `fast-upstream stdio`, 2025-06-18 era session; direct = `fast-upstream http` (same answers, no hop)");
            let n = name_c1(name);
            if self.wanted(&n) {
                out.push(self.side_by_side(
                    n,
                    &format!("sequential calls, {what}"),
                    &direct,
                    target,
                    pid,
                    self.warmup,
                    &self.seq_work(),
                )?);
            }
            let n = name_cn(name);
            if self.wanted(&n) {
                out.push(self.side_by_side(
                    n,
                    &format!("closed loop, {} sessions, {what}", self.conns),
                    &direct,
                    target,
                    pid,
                    CLOSED_WARMUP as usize * self.conns,
                    &self.closed_work(),
                )?);
            }
        }
        Ok(())
    }
}

/// Starts a peer gateway with the launcher script; it prints `READY <url>` with optional
/// tab-separated `HEADER <name>: <value>` and `TOOL <name>` fields, or `FAILED <reason>`.
fn start_peer(
    script: &Path,
    name: &str,
    upstream: &Path,
    cpu: Option<usize>,
) -> Result<(Proc, Target), String> {
    let mut cmd = Command::new(script);
    cmd.args(["start", name, "--"])
        .arg(upstream)
        .arg("stdio")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut proc = spawn(&mut cmd, cpu).map_err(|e| format!("{}: {e}", script.display()))?;
    let stdout = proc.0.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(180))
        .map_err(|_| "no READY line within 180 s".to_string())?;
    let line = line.trim_end();
    let Some(rest) = line.strip_prefix("READY ") else {
        return Err(if line.is_empty() {
            "the launcher exited without a READY line".into()
        } else {
            line.to_string()
        });
    };
    let mut fields = rest.split('\t');
    let url = fields.next().unwrap_or_default().trim().to_owned();
    let mut t = Target::new(url, Era::Handshake);
    for f in fields {
        if let Some(h) = f.strip_prefix("HEADER ") {
            if let Some((k, v)) = h.split_once(':') {
                t.headers.push((k.trim().into(), v.trim().into()));
            }
        } else if let Some(tool) = f.strip_prefix("TOOL ") {
            t.tool = tool.trim().into();
        }
    }
    Ok((proc, t))
}

/// Line round trips over a child's stdin/stdout; returns the summary and the child's CPU ticks
/// spent on the measured calls.
fn stdio_seq(
    mut cmd: Command,
    cpu: Option<usize>,
    warmup: usize,
    calls: usize,
) -> Result<(Side, u64), String> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut p = spawn(&mut cmd, cpu).map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let pid = p.pid();
    let mut stdin = p.0.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(p.0.stdout.take().expect("stdout"));
    let mut line = String::new();
    let mut round_trip = |msg: &str, id: Option<u64>| -> Result<bool, String> {
        stdin
            .write_all(msg.as_bytes())
            .and_then(|_| stdin.write_all(b"\n"))
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("write to child: {e}"))?;
        let Some(id) = id else { return Ok(true) };
        loop {
            line.clear();
            if stdout.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("child closed its stdout".into());
            }
            let v: Value = serde_json::from_str(&line).map_err(|e| format!("bad line: {e}"))?;
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                return Ok(line.contains(RESULT_MARKER) && !line.contains("\"isError\":true"));
            }
        }
    };
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":HANDSHAKE_VERSION,"capabilities":{},"clientInfo":{"name":"bench","version":"0"}}});
    round_trip(&init.to_string(), Some(0))?;
    round_trip(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        None,
    )?;
    let call = |id: u64| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
            "name":TOOL,"arguments":{"text":"hello from the bench","mode":"draft"}}})
        .to_string()
    };
    for i in 0..warmup as u64 {
        round_trip(&call(i + 1), Some(i + 1))?;
    }
    let mut lat = Vec::with_capacity(calls);
    let mut errors = 0;
    let c0 = cpu_ticks(pid);
    let start = Instant::now();
    for i in 0..calls as u64 {
        let id = 1_000_000 + i;
        let msg = call(id);
        let t = Instant::now();
        let ok = round_trip(&msg, Some(id))?;
        lat.push(t.elapsed().as_nanos() as u64);
        errors += usize::from(!ok);
    }
    let secs = start.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid) - c0;
    Ok((Side::from(lat, errors, secs), ticks))
}

/// fsync latency of the disk under the data dir: 256 B appended and `sync_data`ed, 300 times.
fn fsync_us(dir: &Path) -> (f64, f64) {
    let path = dir.join("fsync-probe");
    let Ok(mut f) = std::fs::File::create(&path) else {
        return (f64::NAN, f64::NAN);
    };
    let rec = [b'x'; 256];
    let mut lat = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        if f.write_all(&rec).and_then(|_| f.sync_data()).is_err() {
            break;
        }
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let s = Side::from(lat, 0, 1.0);
    (s.p50, s.p99)
}

/// All outcomes plus free-form measurements (memory, failed peers).
#[derive(Default)]
struct Outcomes {
    scenarios: Vec<Outcome>,
    notes: Vec<(String, Value)>,
}

impl Outcomes {
    fn push(&mut self, o: Outcome) {
        self.scenarios.push(o);
    }
}

fn markdown(out: &Outcomes, machine: &str, setup: &str) -> String {
    let mut s = format!("{machine}\n\n{setup}\n\n| scenario | direct p50 / p99 µs | gateway p50 / p99 µs | **added p50 / p99 µs** | direct calls/s | gateway calls/s | **ratio** | gateway CPU µs/call |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for o in &out.scenarios {
        let (d, g) = (&o.direct, &o.gateway);
        s += &format!(
            "| {} | {:.0} / {:.0} | {:.0} / {:.0} | **{:+.0} / {:+.0}** | {:.0} | {:.0} | **{:.2}** | {:.0} |\n",
            o.name,
            d.p50(),
            d.p99(),
            g.p50(),
            g.p99(),
            g.p50() - d.p50(),
            g.p99() - d.p99(),
            d.tput(),
            g.tput(),
            o.ratio(),
            o.cpu()
        );
        if d.errors() + g.errors() > 0 {
            s += &format!(
                "| ↳ errors: direct {}, gateway {} | | | | | | | |\n",
                d.errors(),
                g.errors()
            );
        }
    }
    if !out.notes.is_empty() {
        s += "\n";
        for (line, _) in &out.notes {
            s += &format!("- {line}\n");
        }
    }
    s += "\nScenarios:\n\n";
    for o in &out.scenarios {
        s += &format!("- `{}`: {}\n", o.name, o.what);
    }
    s
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One line about the machine: CPU model, CPUs, kernel, virtualisation, commit.
fn machine() -> (String, Value) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let vm = cpuinfo.contains(" hypervisor");
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    let commit = if dirty {
        format!("{commit} + local changes")
    } else {
        commit
    };
    let line = format!(
        "Machine: {model}, {cpus} CPUs, {}, Linux {kernel}; commit {commit}, release build.",
        if vm { "virtual machine" } else { "bare metal" }
    );
    (
        line,
        json!({"cpu": model, "cpus": cpus, "vm": vm, "kernel": kernel, "commit": commit}),
    )
}

fn run(cli: Cli) -> Result<(), String> {
    let upstream = match cli.upstream.clone() {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("fast-upstream"),
    };
    let naive = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("naive-proxy");
    for (what, p) in [
        ("portcullis", &cli.portcullis),
        ("fast-upstream", &upstream),
        ("naive-proxy", &naive),
    ] {
        if !p.exists() {
            return Err(format!("{what} binary not found at {} (build with cargo build --release -p portcullis -p portcullis-bench)", p.display()));
        }
    }
    let portcullis = std::fs::canonicalize(&cli.portcullis).map_err(|e| e.to_string())?;
    let (machine_line, machine_json) = machine(); // before pinning narrows what it sees
    let upstream = std::fs::canonicalize(&upstream).map_err(|e| e.to_string())?;
    let gateway_cpu = match cli.layout {
        Layout::Unpinned => None,
        Layout::OneCore => {
            pin_self(0);
            None
        }
        Layout::Split => {
            pin_self(0);
            Some(1)
        }
    };
    let nofile = raise_nofile();
    let dir = std::env::temp_dir().join(format!("portcullis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    write_policies(&dir)?;
    let threads = |b: &mut tokio::runtime::Builder| b.enable_all().build();
    let h = Harness {
        portcullis,
        upstream: upstream.clone(),
        naive,
        dir: dir.clone(),
        runs: cli.runs.unwrap_or(if cli.quick { 1 } else { 5 }).max(1),
        calls: cli.calls.unwrap_or(if cli.quick { 300 } else { 10_000 }),
        warmup: if cli.quick { 50 } else { 1000 },
        secs: cli.duration.unwrap_or(if cli.quick { 1.0 } else { 5.0 }),
        conns: cli.connections.max(1),
        rate: cli.rate,
        idle: cli
            .idle_sessions
            .unwrap_or(if cli.quick { 500 } else { 5000 })
            .min(nofile.saturating_sub(200) as usize / 2),
        tck: clk_tck(),
        gateway_cpu,
        workers: cli.workers,
        only: cli.only.clone(),
        // c=1 runs on a current-thread runtime (no cross-thread wake-ups in the client); the
        // loops on a multi-thread one.
        st: threads(&mut tokio::runtime::Builder::new_current_thread())
            .map_err(|e| e.to_string())?,
        mt: threads(&mut tokio::runtime::Builder::new_multi_thread()).map_err(|e| e.to_string())?,
    };
    let (fsync_p50, fsync_p99) = fsync_us(&dir);
    let layout = match cli.layout {
        Layout::Unpinned => "unpinned",
        Layout::OneCore => "one core (everything on CPU 0)",
        Layout::Split => "split (generator and upstream on CPU 0, gateway on CPU 1)",
    };
    let setup = format!(
        "Setup: loopback, layout {layout}; `fast-upstream` answers a ~200 B `tools/call` with a ~150 B result; \
         {} sequential calls per run after {} warm-up; closed loop {} sessions × {} s; open loop {}/s × {} s; \
         median of {} run(s), direct and gateway interleaved; gateway `portcullis serve` with grant auth. \
         fsync of 256 B on this disk: p50 {fsync_p50:.0} µs, p99 {fsync_p99:.0} µs (a durable audit commit waits for one).",
        h.calls, h.warmup, h.conns, h.secs, h.rate, h.secs, h.runs
    );
    println!("{machine_line}\n{setup}");

    let up_port = free_port();
    let mut cmd = Command::new(&upstream);
    cmd.args(["http", "--port", &up_port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut up = spawn(&mut cmd, None).map_err(|e| format!("spawn {}: {e}", upstream.display()))?;
    wait_port(up_port, &mut up, "fast-upstream http")?;

    let mut out = Outcomes::default();
    let r = h
        .http(up_port, up.pid(), &mut out)
        .and_then(|_| h.stdio(&mut out))
        .and_then(|_| h.peers(&cli.peer, &cli.peer_script, up_port, &mut out));
    drop(up);
    r?;

    let md = markdown(&out, &machine_line, &setup);
    if let Some(p) = &cli.json {
        let doc = json!({
            "machine": machine_json,
            "setup": {
                "text": setup, "layout": layout, "runs": h.runs, "calls": h.calls, "warmup": h.warmup,
                "connections": h.conns, "seconds": h.secs, "rate": h.rate, "clk_tck": h.tck,
                "quick": cli.quick, "fsync_p50_us": fsync_p50, "fsync_p99_us": fsync_p99,
            },
            "scenarios": out.scenarios.iter().map(Outcome::json).collect::<Vec<_>>(),
            "notes": out.notes.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        });
        write_file(p, &serde_json::to_string_pretty(&doc).expect("json"))?;
    }
    if let Some(p) = &cli.markdown {
        write_file(p, &md)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
