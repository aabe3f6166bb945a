//! Three `portcullis serve` replicas sharing one Redis (`[store] url`), each with its own
//! port, data dir and upstream (the recording fixture): one set of limits across the
//! replicas, a grant revoked by the CLI refused by every replica at once, and a Redis that
//! goes away answered with a clear error and nothing forwarded, until it comes back.

mod common;
use common::*;
use portcullis_bench::redis_server::RedisServer;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "tok-ops-0123456789";

/// `portcullis <args> --config <dir>/portcullis.toml` with `env`.
fn cli(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(dir.join("portcullis.toml"))
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// A stateless `tools/call` of `read_invoice` on server `server` of the replica at `port`.
fn call(port: u16, server: &str, bearer: &str, id: usize) -> Reply {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"read_invoice","arguments":{{"id":{id}}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    let auth = format!("Bearer {bearer}");
    http_request(
        port,
        "POST",
        &format!("/mcp/{server}"),
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Authorization", auth.as_str()),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "read_invoice"),
        ],
        body.as_bytes(),
        Duration::from_secs(30),
    )
}

/// How many `tools/call` requests reached the upstreams of `replicas` (their record files).
fn forwarded(replicas: &[Served]) -> usize {
    replicas
        .iter()
        .map(|r| {
            std::fs::read_to_string(r.dir.join("record.jsonl"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|m| m["method"] == "tools/call")
                .count()
        })
        .sum()
}

#[test]
fn three_replicas_share_limits_grants_and_fail_closed_without_redis() {
    let Some(mut redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let env = [
        ("PORTCULLIS_TEST_REDIS", url.as_str()),
        ("PORTCULLIS_TEST_TOKEN", TOKEN),
    ];
    let fixture = fixture_server();
    // Server `rec` admits grants (the default); `tok` a static token, so that its calls reach
    // the relay (and the counters) without a grant lookup.
    let servers = format!(
        "[store]\nurl = \"${{PORTCULLIS_TEST_REDIS}}\"\nprefix = \"replicas:\"\n\n\
         [[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{fixture}\"]\npolicy = \"p.json\"\n\n\
         [[servers]]\nname = \"tok\"\ncommand = [\"python3\", \"{fixture}\"]\npolicy = \"p.json\"\n\
         auth = \"token\"\ntokens = [{{ label = \"ops\", token = \"${{PORTCULLIS_TEST_TOKEN}}\" }}]\n"
    );
    let policy = json!({"version":"1","default":"deny","tools":{"read_invoice":{
        "limits":[{"counter":"calls","window":"60s","max":10,"scope":"grant"}]}}});
    let replicas: Vec<Served> = (0..3)
        .map(|i| {
            let dir = scratch(&format!("replica-{i}"));
            serve_in(&dir, &servers, &[("p.json", policy.to_string())], &env, &[])
        })
        .collect();

    // A grant made with the CLI against the shared Redis (through replica 0's config).
    let out = cli(
        &replicas[0].dir,
        &env,
        &[
            "grant", "create", "--server", "rec", "--label", "agent", "--policy", "rec", "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grant: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = grant["token"].as_str().unwrap().to_owned();

    // 1,000 concurrent calls spread over the three replicas, against max 10 per 60 s.
    const CALLS: usize = 1_000;
    const THREADS: usize = 40;
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    let started = Instant::now();
    let answers: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (ports, token) = (&ports, &token);
                s.spawn(move || {
                    (t..CALLS)
                        .step_by(THREADS)
                        .map(|i| call(ports[i % ports.len()], "rec", token, i))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    eprintln!("{CALLS} calls in {:?}", started.elapsed());
    assert_eq!(answers.len(), CALLS);
    let passed = answers
        .iter()
        .filter(|r| r.status == 200 && r.body.contains("called read_invoice"))
        .count();
    let limited: Vec<&Reply> = answers
        .iter()
        .filter(|r| r.status == 200 && r.body.contains("[POLICY DENIED]"))
        .collect();
    assert_eq!(passed, 10, "exactly max passes across the replicas");
    assert_eq!(
        passed + limited.len(),
        CALLS,
        "every other answer is a denial"
    );
    assert!(
        limited.iter().all(|r| !r.body.contains("limit store")),
        "denied by the limit, not by a store failure"
    );
    assert_eq!(forwarded(&replicas), 10, "counted at the upstreams");

    // Revoked with the CLI (through replica 2's config): every replica refuses the grant as
    // soon as the change reaches it over pub/sub (a few milliseconds; on a loaded machine the
    // watcher thread may run a little later, so allow a second). Meanwhile nothing is
    // forwarded: the limit is spent.
    let out = cli(&replicas[2].dir, &env, &["grant", "revoke", "agent"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, r) in replicas.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(1);
        let a = loop {
            let a = call(r.port, "rec", &token, 2_000 + i);
            if a.status == 401 || Instant::now() >= deadline {
                break a;
            }
            assert!(
                a.body.contains("[POLICY DENIED]"),
                "replica {i}: {}",
                a.body
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(a.status, 401, "replica {i}: {}", a.body);
        assert!(a.body.contains("revoked_grant"), "replica {i}: {}", a.body);
    }
    assert_eq!(
        forwarded(&replicas),
        10,
        "nothing forwarded after the revocation"
    );

    // Redis gone: a grant cannot be checked (503 at the door), a limit cannot be reserved
    // (a policy denial saying so); nothing is forwarded.
    // Until a replica's grant watcher notices the lost subscription (at once on a closed
    // connection, within the trust window at worst) its cache may still answer the revoked
    // grant from memory: still a refusal, never a forwarded call.
    redis.kill();
    for (i, r) in replicas.iter().enumerate() {
        let deadline =
            Instant::now() + portcullis_store::redis::TRUST_WINDOW + Duration::from_secs(1);
        let a = loop {
            let a = call(r.port, "rec", &token, 3_000 + i);
            if a.status != 401 || Instant::now() >= deadline {
                break a;
            }
            assert!(a.body.contains("revoked_grant"), "replica {i}: {}", a.body);
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(a.status, 503, "replica {i}: {}", a.body);
        assert!(a.body.contains("store"), "replica {i}: {}", a.body);
        let a = call(r.port, "tok", TOKEN, 3_100 + i);
        if i == 0 {
            eprintln!("without Redis: {}", a.body);
        }
        // Refused by the first store the call needs: the pins (when the tool's pin is due a
        // re-read) or the limits; both live in the same Redis.
        assert!(
            a.body
                .contains("[POLICY DENIED] the limit store is unavailable")
                || a.body
                    .contains("[POLICY DENIED] The pin of read_invoice could not be read"),
            "replica {i}: {} {}",
            a.status,
            a.body
        );
    }
    assert_eq!(forwarded(&replicas), 10, "nothing forwarded without Redis");

    // Back (empty: nothing was saved): every replica reconnects by itself.
    redis.restart();
    for (i, r) in replicas.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let a = call(r.port, "tok", TOKEN, 4_000 + i);
            if a.body.contains("called read_invoice") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {i} did not recover: {}",
                a.body
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(forwarded(&replicas), 13);
}

/// Top-level commands Redis received while `f` ran, as `MONITOR` shows them (a script's own
/// commands, marked `lua`, are not round trips and are left out; nor is `PING`, the grant
/// cache watcher's heartbeat on its subscription, sent once a second whatever the traffic).
fn commands_during(redis: &RedisServer, f: impl FnOnce()) -> Vec<String> {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::{Arc, Mutex};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    s.write_all(b"MONITOR\r\n").unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut ok = String::new();
    reader.read_line(&mut ok).unwrap();
    assert!(ok.starts_with("+OK"), "{ok}");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let t = std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    f();
    // MONITOR streams asynchronously: a marker command ends the window.
    let mut marker = std::net::TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    marker.write_all(b"ECHO end-of-window\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("end-of-window"))
    {
        assert!(Instant::now() < deadline, "MONITOR fell silent");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = t.join();
    let lines = seen.lock().unwrap().clone();
    lines
        .into_iter()
        .take_while(|l| !l.contains("end-of-window"))
        .filter(|l| !l.contains(" lua] "))
        .map(|l| {
            // `<time> [<db> <client>] "COMMAND" "arg" …` → COMMAND
            l.split('"').nth(1).unwrap_or_default().to_ascii_uppercase()
        })
        .filter(|c| c != "PING")
        .collect()
}

#[test]
fn one_round_trip_per_allowed_call_for_the_counters() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let env = [
        ("PORTCULLIS_TEST_REDIS", url.as_str()),
        ("PORTCULLIS_TEST_TOKEN", TOKEN),
    ];
    let fixture = fixture_server();
    let servers = format!(
        "[store]\nurl = \"${{PORTCULLIS_TEST_REDIS}}\"\n\n\
         [[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{fixture}\"]\npolicy = \"p.json\"\n\n\
         [[servers]]\nname = \"tok\"\ncommand = [\"python3\", \"{fixture}\"]\npolicy = \"p.json\"\n\
         auth = \"token\"\ntokens = [{{ label = \"ops\", token = \"${{PORTCULLIS_TEST_TOKEN}}\" }}]\n"
    );
    // Two limits on the call: still one reservation, one script.
    let policy = json!({"version":"1","default":"deny","tools":{"read_invoice":{"limits":[
        {"counter":"calls","window":"60s","max":100,"scope":"grant"},
        {"counter":"daily","window":"day","max":1000,"scope":"server"}]}}});
    let gw = serve_in(
        &scratch("round-trips"),
        &servers,
        &[("p.json", policy.to_string())],
        &env,
        &[],
    );
    let out = cli(
        &gw.dir,
        &env,
        &[
            "grant", "create", "--server", "rec", "--label", "agent", "--policy", "rec", "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grant: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = grant["token"].as_str().unwrap().to_owned();
    let passes = |server: &str, bearer: &str, id: usize| {
        let a = call(gw.port, server, bearer, id);
        assert!(a.body.contains("called read_invoice"), "{}", a.body);
    };
    // Warm-up: the scripts are loaded once per Redis (NOSCRIPT, SCRIPT LOAD).
    passes("tok", TOKEN, 1);
    passes("rec", &token, 2);

    const N: usize = 5;
    let static_token = commands_during(&redis, || {
        for i in 0..N {
            passes("tok", TOKEN, 10 + i);
        }
    });
    assert_eq!(
        static_token,
        vec!["EVALSHA"; N],
        "one script per allowed call"
    );
    let granted = commands_during(&redis, || {
        for i in 0..N {
            passes("rec", &token, 20 + i);
        }
    });
    // A grant's call, its grant cached since the warm-up: the reservation only. The cache is
    // emptied by a published change, never by a timer, so nothing is re-read per call.
    assert_eq!(
        granted,
        vec!["EVALSHA"; N],
        "one script per allowed call: {granted:?}"
    );

    // A handshake-era session (shared on Redis): each request also reads and refreshes the
    // session's record, so that a session ended on any replica is refused on every other.
    let post = |sid: Option<&str>, body: &str| {
        let auth = format!("Bearer {TOKEN}");
        let mut h = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Authorization", auth.as_str()),
        ];
        if let Some(s) = sid {
            h.push(("Mcp-Session-Id", s));
        }
        http_request(
            gw.port,
            "POST",
            "/mcp/tok",
            &h,
            body.as_bytes(),
            Duration::from_secs(30),
        )
    };
    let init = post(
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"rt","version":"1"}}}"#,
    );
    let sid = init.session_id();
    post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    let session_call = |i: usize| {
        let r = post(
            Some(&sid),
            &format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"read_invoice","arguments":{{"id":{i}}}}}}}"#
            ),
        );
        assert!(r.body.contains("called read_invoice"), "{}", r.body);
    };
    session_call(30);
    let in_session = commands_during(&redis, || {
        for i in 0..N {
            session_call(40 + i);
        }
    });
    assert_eq!(
        in_session,
        ["GETEX", "EVALSHA"].repeat(N),
        "the session's record, then the reservation: {in_session:?}"
    );
    eprintln!(
        "round trips per allowed call: {} (static token), {} (grant), {} (handshake-era session)",
        static_token.len() / N,
        granted.len() / N,
        in_session.len() / N
    );
}

/// `method path` on the admin API of the replica at `port`.
fn admin(port: u16, method: &str, path: &str) -> Reply {
    let auth = format!("Bearer {ADMIN}");
    http_request(
        port,
        method,
        &format!("/admin/api{path}"),
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        b"",
        Duration::from_secs(10),
    )
}

const ADMIN: &str = "pca-admin-token-0123456789";

/// Each replica caches the grants it has seen; a rotation or revocation made on one replica
/// (its admin API) empties every cache, so the others refuse the old token on their very next
/// request, and a Redis that goes away makes them read through (503), never trust the cache.
#[test]
fn a_grant_changed_on_one_replica_is_refused_by_the_others_on_the_next_request() {
    let Some(mut redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let env = [
        ("PORTCULLIS_TEST_REDIS", url.as_str()),
        ("PORTCULLIS_ADMIN_TOKEN", ADMIN),
    ];
    let fixture = fixture_server();
    let servers = format!(
        "[store]\nurl = \"${{PORTCULLIS_TEST_REDIS}}\"\n\n\
         [[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{fixture}\"]\npolicy = \"p.json\"\n"
    );
    let policy = json!({"version":"1","default":"deny","tools":{"read_invoice":{}}});
    let replicas: Vec<Served> = (0..3)
        .map(|i| {
            let dir = scratch(&format!("cache-{i}"));
            serve_in(&dir, &servers, &[("p.json", policy.to_string())], &env, &[])
        })
        .collect();
    let out = cli(
        &replicas[0].dir,
        &env,
        &[
            "grant", "create", "--server", "rec", "--label", "agent", "--policy", "rec", "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let grant: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = grant["grant"]["id"]
        .as_str()
        .or(grant["id"].as_str())
        .unwrap()
        .to_owned();
    let token = grant["token"].as_str().unwrap().to_owned();
    let passes = |i: usize, bearer: &str, n: usize| {
        let a = call(replicas[i].port, "rec", bearer, n);
        assert!(
            a.status == 200 && a.body.contains("called read_invoice"),
            "replica {i}: {} {}",
            a.status,
            a.body
        );
    };
    // Every replica has the grant cached.
    for n in 0..6 {
        passes(n % 3, &token, n);
    }

    // A change made on one replica reaches the others' caches over pub/sub when their
    // watcher thread reads it: at once on an idle host, a moment later on a CPU-starved one.
    // `refused` waits up to a second for the refusal; what passed before it arrived is
    // counted, so the upstream's count below stays exact.
    let mut early = 0;
    let mut refused = |i: usize, bearer: &str, n: usize, reason: &str| {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let a = call(replicas[i].port, "rec", bearer, n);
            if a.status == 401 || Instant::now() >= deadline {
                assert_eq!(a.status, 401, "replica {i}: {}", a.body);
                assert!(a.body.contains(reason), "replica {i}: {}", a.body);
                return;
            }
            assert!(
                a.body.contains("called read_invoice"),
                "replica {i}: {}",
                a.body
            );
            early += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // Rotated on replica 0: the old token is refused by 1 and 2, the new one passes.
    let r = admin(replicas[0].port, "POST", &format!("/grants/{id}/rotate"));
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.json()["token"].as_str().unwrap().to_owned();
    for i in [1, 2] {
        refused(i, &token, 100 + i, "unknown");
    }
    for n in 0..6 {
        passes(n % 3, &new, 200 + n);
    }

    // Revoked on replica 1: 0 and 2 refuse it.
    let r = admin(replicas[1].port, "DELETE", &format!("/grants/{id}"));
    assert_eq!(r.status, 200, "{}", r.body);
    for i in [0, 2] {
        refused(i, &new, 300 + i, "revoked_grant");
    }
    let early = early;

    // A fresh grant, cached everywhere; then Redis goes away: no replica answers from its
    // cache (the subscription is lost, lookups read through and fail: 503).
    let out = cli(
        &replicas[2].dir,
        &env,
        &[
            "grant", "create", "--server", "rec", "--label", "other", "--policy", "rec", "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let other: Value = serde_json::from_slice(&out.stdout).unwrap();
    let other = other["token"].as_str().unwrap().to_owned();
    for n in 0..6 {
        passes(n % 3, &other, 400 + n);
    }
    redis.kill();
    // Each replica's watcher turns its cache off when it reads the closed subscription: at
    // once on an idle host, a moment later on a CPU-starved one (the CI failure). A valid
    // grant admitted in that moment is safe (no grant can change while Redis is away), but
    // this test is about what happens after, so it gives the watchers that moment.
    std::thread::sleep(Duration::from_millis(500));
    for (i, r) in replicas.iter().enumerate() {
        let a = call(r.port, "rec", &other, 500 + i);
        assert_eq!(a.status, 503, "replica {i}: {}", a.body);
    }
    assert_eq!(
        forwarded(&replicas),
        18 + early,
        "nothing forwarded without Redis"
    );
}

/// A stateless `tools/call` of `tool` with `args` on server `rec` of the replica at `port`.
fn call_tool(port: u16, bearer: &str, id: &str, tool: &str, args: &Value) -> Reply {
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args,
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    let auth = format!("Bearer {bearer}");
    http_request(
        port,
        "POST",
        "/mcp/rec",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Authorization", auth.as_str()),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", tool),
        ],
        body.to_string().as_bytes(),
        Duration::from_secs(30),
    )
}

/// The text of a `tools/call` answer.
fn answer_text(r: &Reply) -> String {
    r.json()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A call held for approval on replica A, approved with the CLI, then retried identically on
/// B and C at the same instant: exactly one retry is forwarded (counted at the upstreams),
/// the other is held again (the approval was consumed). Several rounds, so that the race is
/// run more than once.
#[test]
fn an_approved_call_retried_on_two_replicas_at_once_passes_exactly_once() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let env = [("PORTCULLIS_TEST_REDIS", url.as_str())];
    let fixture = fixture_server();
    let servers = format!(
        "[store]\nurl = \"${{PORTCULLIS_TEST_REDIS}}\"\n\n\
         [[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{fixture}\"]\npolicy = \"p.json\"\n"
    );
    let policy = json!({"version":"1","default":"deny","tools":{"pay_invoice":{
        "approve_if":[{"conditions":[],"reason":"Money moves."}]}}});
    let replicas: Vec<Served> = (0..3)
        .map(|i| {
            let dir = scratch(&format!("approval-race-{i}"));
            serve_in(&dir, &servers, &[("p.json", policy.to_string())], &env, &[])
        })
        .collect();
    let out = cli(
        &replicas[0].dir,
        &env,
        &[
            "grant", "create", "--server", "rec", "--label", "agent", "--policy", "rec", "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let grant: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = grant["token"].as_str().unwrap().to_owned();
    let (a, b, c) = (replicas[0].port, replicas[1].port, replicas[2].port);

    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        let args = json!({"id": round, "amount": 250});
        // Held on A: not forwarded, an approval id in the answer.
        let held = call_tool(a, &token, &format!("a{round}"), "pay_invoice", &args);
        assert_eq!(held.status, 200, "{}", held.body);
        assert!(
            answer_text(&held).starts_with("[APPROVAL REQUIRED]"),
            "{}",
            held.body
        );
        let id = held.json()["result"]["_meta"]["portcullis/approval"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(forwarded(&replicas), round, "nothing forwarded while held");

        // Approved by an operator with the CLI (another process, the same Redis).
        let out = cli(
            &replicas[0].dir,
            &env,
            &["approvals", "approve", &id, "--by", "dave"],
        );
        assert!(out.status.success(), "{}", stderr(&out));

        // The identical call, raced on B and C.
        let gate = std::sync::Barrier::new(2);
        let (rb, rc) = std::thread::scope(|s| {
            let go = |port: u16, name: &'static str| {
                let (gate, token, args) = (&gate, &token, &args);
                s.spawn(move || {
                    gate.wait();
                    call_tool(port, token, &format!("{name}{round}"), "pay_invoice", args)
                })
            };
            let (hb, hc) = (go(b, "b"), go(c, "c"));
            (hb.join().unwrap(), hc.join().unwrap())
        });
        let texts = [answer_text(&rb), answer_text(&rc)];
        let passed = texts
            .iter()
            .filter(|t| t.starts_with("called pay_invoice"))
            .count();
        let held_again = texts
            .iter()
            .filter(|t| t.starts_with("[APPROVAL REQUIRED]"))
            .count();
        assert_eq!(
            (passed, held_again),
            (1, 1),
            "round {round}: one retry passes, the other is held: {texts:?}"
        );
        assert_eq!(
            forwarded(&replicas),
            round + 1,
            "round {round}: exactly one forwarded, counted at the upstreams"
        );
    }
}
