//! OAuth 2.1 at the gateway (the MCP authorization spec: the gateway as a resource server),
//! against a real authorization server (the npm `oidc-provider`, started on loopback by
//! `tests/peers/oidc_provider.mjs`) and real MCP clients: the Protected Resource Metadata, the
//! challenges, tokens judged by the policy their principal maps to, every bad token refused,
//! audited and kept from the upstream, and the Python SDK's own OAuth client signing in.

mod common;
use base64::Engine as _;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The running authorization server and the keys it wrote.
struct Provider {
    _bg: Bg,
    port: u16,
    issuer: String,
    keys: Value,
}

/// Starts oidc-provider on a free port (`None` when the peer is not installed).
fn provider(dir: &Path) -> Option<Provider> {
    peer("node/node_modules/oidc-provider/package.json")?;
    let port = free_port();
    let keys_path = dir.join("keys.json");
    let mut child = Command::new("node")
        .arg(repo().join("crates/portcullis/tests/peers/oidc_provider.mjs"))
        .arg(port.to_string())
        .arg(&keys_path)
        .current_dir(repo().join(".peers/node"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "oidc-provider did not start");
    // Whatever it prints later is drained: a closed pipe would end it.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let keys: Value = serde_json::from_str(&std::fs::read_to_string(keys_path).unwrap()).unwrap();
    Some(Provider {
        _bg: Bg(child),
        port,
        issuer: format!("http://127.0.0.1:{port}"),
        keys,
    })
}

impl Provider {
    /// An access token by client credentials, for `resource`.
    fn client_token(&self, client: &str, scope: &str, resource: &str) -> String {
        let body = format!(
            "grant_type=client_credentials&client_id={client}&client_secret={client}-secret&scope={scope}&resource={resource}"
        );
        let r = http_request(
            self.port,
            "POST",
            "/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
            Duration::from_secs(10),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// Revokes `token` at the provider (RFC 7009), as its client.
    fn revoke(&self, client: &str, token: &str) {
        let body = format!("token={token}&client_id={client}&client_secret={client}-secret");
        let r = http_request(
            self.port,
            "POST",
            "/token/revocation",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
            Duration::from_secs(10),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// A token signed with the issuer's own key (or, `rogue`, a key it never published).
    fn forge(&self, claims: &Value, rogue: bool) -> String {
        let (kid, der) = if rogue {
            ("rogue_kid", "rogue_der")
        } else {
            ("kid", "der")
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(self.keys[der].as_str().unwrap())
            .unwrap();
        let mut h = Header::new(Algorithm::RS256);
        h.kid = self.keys[kid].as_str().map(str::to_owned);
        h.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_rsa_der(&der)).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The gateway in front of the recording fixture: `rec` (`auth = "oauth"`, scope `mcp:tools`)
/// and `admin` (`auth = "oauth+grant"`, scope `mcp:admin`); the client `svc-reader` gets the
/// policy `reader` (and so does `svc-opaque`, whose tokens are opaque: the gateway introspects
/// them), the group `staff` the policy `staff`, anyone else nothing.
fn gateway(dir: &Path, idp: &Provider) -> Served {
    let port = free_port();
    let fixture = fixture_server();
    let cfg = format!(
        r#"
[oauth]
issuer = "{issuer}"
public_url = "http://127.0.0.1:{port}"
scopes_supported = ["mcp:tools", "mcp:admin"]
leeway_secs = 5

[oauth.introspection]
client_id = "gateway"
client_secret = "gateway-secret"
cache_secs = 0

[[oauth.rules]]
client_id = "svc-reader"
policy = "reader"

[[oauth.rules]]
client_id = "svc-opaque"
policy = "reader"

[[oauth.rules]]
group = "staff"
policy = "staff"

[policies]
reader = "reader.json"
staff = "staff.json"

[[servers]]
name = "rec"
command = ["python3", "{fixture}"]
auth = "oauth"
required_scopes = ["mcp:tools"]

[[servers]]
name = "admin"
command = ["python3", "{fixture}"]
auth = "oauth+grant"
required_scopes = ["mcp:admin"]
"#,
        issuer = idp.issuer
    );
    let limit = json!([{"counter": "reads", "window": "60s", "max": 2, "scope": "grant"}]);
    let reader = json!({"version": "1", "default": "deny", "hide": ["delete_invoice"],
        "tools": {"read_invoice": {"limits": limit}}});
    let staff = json!({"version": "1", "default": "deny",
        "tools": {"read_invoice": {"limits": limit}, "pay_invoice": {"require": [{
            "conditions": [{"path": "principal.subject", "op": "in", "value": ["alice"]}],
            "on_deny": "only alice signs payments"}]}}});
    serve_at(
        port,
        dir,
        &cfg,
        &[
            ("reader.json", reader.to_string()),
            ("staff.json", staff.to_string()),
        ],
        &[],
        &[],
    )
}

const CT: (&str, &str) = ("Content-Type", "application/json");
const ACCEPT: (&str, &str) = ("Accept", "application/json, text/event-stream");

/// POSTs an `initialize` naming `marker` (so the upstream's record shows whether it arrived).
fn post(gw: &Served, path: &str, token: Option<&str>, marker: &str) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![CT, ACCEPT];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"{marker}","version":"1"}}}}}}"#
    );
    http_request(
        gw.port,
        "POST",
        path,
        &headers,
        body.as_bytes(),
        Duration::from_secs(20),
    )
}

/// What the recording fixture received.
fn upstream_saw(gw: &Served) -> String {
    std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap_or_default()
}

/// The audit log, every record.
fn audit(gw: &Served) -> Vec<Value> {
    let out = Command::new(bin())
        .args(["audit", "--json", "--limit", "0", "--config"])
        .arg(gw.dir.join("portcullis.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(a)) => a,
        _ => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    }
}

/// The `WWW-Authenticate` line of a reply (the head is lower-cased).
fn challenge(r: &Reply) -> String {
    r.headers
        .lines()
        .find_map(|l| l.strip_prefix("www-authenticate: "))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn protected_resource_metadata_and_the_challenge() {
    let dir = Scratch::new("oauth-prm");
    let Some(idp) = provider(&dir) else { return };
    let gw = gateway(&dir, &idp);
    let base = format!("http://127.0.0.1:{}", gw.port);

    let r = http_request(
        gw.port,
        "GET",
        "/.well-known/oauth-protected-resource/mcp/rec",
        &[],
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.json();
    assert_eq!(doc["resource"], format!("{base}/mcp/rec"));
    assert_eq!(doc["authorization_servers"], json!([idp.issuer]));
    assert_eq!(doc["scopes_supported"], json!(["mcp:tools", "mcp:admin"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert!(r.headers.contains("access-control-allow-origin: *"));
    // Two servers use OAuth: the root form names neither (the path form is the address the
    // challenge gives).
    let root = http_request(
        gw.port,
        "GET",
        "/.well-known/oauth-protected-resource",
        &[],
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(root.status, 404);
    let none = http_request(
        gw.port,
        "GET",
        "/.well-known/oauth-protected-resource/mcp/nope",
        &[],
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(none.status, 404);

    // No token: 401, and the challenge names the metadata and the scope needed.
    let r = post(&gw, "/mcp/rec", None, "no-token");
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        challenge(&r),
        format!("bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp/rec\", scope=\"mcp:tools\"")
    );
    assert_eq!(r.json()["error"], "missing_token");
    // The token in the query string: refused, even a valid one.
    let good = idp.client_token("svc-reader", "mcp:tools", &format!("{base}/mcp/rec"));
    let r = post(
        &gw,
        &format!("/mcp/rec?access_token={good}"),
        None,
        "query-token",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        challenge(&r).contains("error=\"invalid_request\""),
        "{}",
        challenge(&r)
    );
    assert!(upstream_saw(&gw).is_empty(), "{}", upstream_saw(&gw));
    let records = audit(&gw);
    for rule in ["(oauth: missing_token)", "(oauth: invalid_request)"] {
        assert!(
            records
                .iter()
                .any(|r| r["rule"] == rule && r["decision"] == "deny"),
            "no audit record {rule}: {records:#?}"
        );
    }
}

#[test]
fn bad_tokens_are_refused_audited_and_never_reach_the_upstream() {
    let dir = Scratch::new("oauth-bad");
    let Some(idp) = provider(&dir) else { return };
    let gw = gateway(&dir, &idp);
    let resource = format!("http://127.0.0.1:{}/mcp/rec", gw.port);
    let t = now();
    let claims = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = json!({"iss": idp.issuer, "sub": "mallory", "aud": resource,
            "client_id": "svc-reader", "scope": "mcp:tools", "iat": t, "exp": t + 300});
        f(c.as_object_mut().unwrap());
        c
    };
    // The control: a forged token with good claims and the issuer's key is accepted, so each
    // refusal below is for the one thing changed.
    let control = idp.forge(&claims(&|_| {}), false);
    assert_eq!(post(&gw, "/mcp/rec", Some(&control), "control").status, 200);

    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt"})),
        b64(&claims(&|_| {}))
    );
    let other_resource = format!("http://127.0.0.1:{}/mcp/admin", gw.port);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad-aud",
            idp.client_token("svc-reader", "mcp:tools", &other_resource),
            "audience is not this resource",
        ),
        (
            "bad-iss",
            idp.forge(
                &claims(&|c| {
                    c.insert("iss".into(), json!("http://127.0.0.1:1"));
                }),
                false,
            ),
            "not issued by",
        ),
        (
            "expired",
            idp.forge(
                &claims(&|c| {
                    c.insert("exp".into(), json!(t - 120));
                }),
                false,
            ),
            "expired",
        ),
        (
            "not-yet",
            idp.forge(
                &claims(&|c| {
                    c.insert("nbf".into(), json!(t + 120));
                }),
                false,
            ),
            "not valid yet",
        ),
        ("alg-none", unsigned, "alg none"),
        (
            "rogue-key",
            idp.forge(&claims(&|_| {}), true),
            "publishes no signing key with kid",
        ),
        (
            "rogue-key-issuer-kid",
            {
                // The issuer's kid on a token signed with another key.
                let der = base64::engine::general_purpose::STANDARD
                    .decode(idp.keys["rogue_der"].as_str().unwrap())
                    .unwrap();
                let mut h = Header::new(Algorithm::RS256);
                h.kid = idp.keys["kid"].as_str().map(str::to_owned);
                jsonwebtoken::encode(&h, &claims(&|_| {}), &EncodingKey::from_rsa_der(&der))
                    .unwrap()
            },
            "signature does not verify",
        ),
        ("garbage", "not.a.jwt".into(), "header"),
        ("grant-token", "pcx_0123".into(), "grant tokens"),
    ];
    for (marker, token, says) in &cases {
        let r = post(&gw, "/mcp/rec", Some(token), marker);
        assert_eq!(r.status, 401, "{marker}: {}", r.body);
        let c = challenge(&r);
        assert!(c.contains("error=\"invalid_token\""), "{marker}: {c}");
        assert!(
            c.contains(&format!(
                "resource_metadata=\"http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp/rec\"",
                gw.port
            )),
            "{marker}: {c}"
        );
        let msg = r.json()["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(says), "{marker}: {msg}");
    }
    let seen = upstream_saw(&gw);
    for (marker, ..) in &cases {
        assert!(
            !seen.contains(marker),
            "{marker} reached the upstream: {seen}"
        );
    }
    assert!(seen.contains("control"));
    let records = audit(&gw);
    let refusals = records
        .iter()
        .filter(|r| r["rule"] == "(oauth: invalid_token)" && r["server"] == "rec")
        .count();
    assert_eq!(
        refusals,
        cases.len(),
        "one audit record per refusal: {records:#?}"
    );
}

#[test]
fn tokens_are_judged_by_the_policy_their_principal_maps_to() {
    let (Some(py), dir) = (peer("venv/bin/python"), Scratch::new("oauth-policy")) else {
        return;
    };
    let Some(idp) = provider(&dir) else { return };
    let gw = gateway(&dir, &idp);
    let url = format!("http://127.0.0.1:{}/mcp/rec", gw.port);
    let drive = |token: &str, actions: &Value| {
        run_driver(
            &py,
            "client2.py",
            &[
                "auto".into(),
                "--url".into(),
                url.clone(),
                "--token".into(),
                token.into(),
            ],
            actions,
            &[],
        )
    };
    let read = json!({"op": "call", "name": "read_invoice", "args": {"id": 1}});
    let pay = json!({"op": "call", "name": "pay_invoice", "args": {"id": 1, "amount": 5}});

    // A real token of the provider (client credentials): the rule for client svc-reader
    // gives it the reader policy: delete_invoice hidden, pay_invoice denied, two reads.
    let reader = idp.client_token("svc-reader", "mcp:tools", &url);
    let out = drive(
        &reader,
        &json!([{"op": "list_tools"}, read, read, read, pay]),
    );
    let r = out["results"].as_array().unwrap();
    let names: Vec<&str> = r[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"read_invoice") && !names.contains(&"delete_invoice"),
        "{names:?}"
    );
    assert_eq!(text(&r[1]), "called read_invoice with {\"id\":1}");
    assert_eq!(r[2]["isError"], false);
    assert!(text(&r[3]).contains("allows 2 in any 1m"), "{}", r[3]);
    assert!(text(&r[4]).starts_with("[POLICY DENIED]"), "{}", r[4]);

    // alice (group staff, signed by the issuer) gets the staff policy and her own counter.
    let t = now();
    let alice = |client: &str, scope: &str, aud: &str| {
        idp.forge(
            &json!({"iss": idp.issuer, "sub": "alice", "aud": aud, "client_id": client,
                "scope": scope, "groups": ["staff"], "iat": t, "exp": t + 300}),
            false,
        )
    };
    let out = drive(&alice("app", "mcp:tools", &url), &json!([read, pay]));
    assert_eq!(
        text(&out["results"][0]),
        "called read_invoice with {\"id\":1}"
    );
    assert_eq!(
        text(&out["results"][1]),
        "called pay_invoice with {\"amount\":5,\"id\":1}"
    );

    // bob is staff too, but the policy's principal.subject condition keeps him from paying.
    let bob = idp.forge(
        &json!({"iss": idp.issuer, "sub": "bob", "aud": url, "client_id": "app",
            "scope": "mcp:tools", "groups": ["staff"], "iat": t, "exp": t + 300}),
        false,
    );
    let out = drive(&bob, &json!([read, pay]));
    assert_eq!(
        text(&out["results"][0]),
        "called read_invoice with {\"id\":1}"
    );
    let denied = text(&out["results"][1]);
    assert!(
        denied.starts_with("[POLICY DENIED]") && denied.contains("only alice signs payments"),
        "{denied}"
    );

    // No rule for the client stranger: 403, audited.
    let stranger = idp.client_token("stranger", "mcp:tools", &url);
    let r = post(&gw, "/mcp/rec", Some(&stranger), "stranger");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "no_policy");
    // A token without the server's scope: 403 insufficient_scope naming it.
    let admin_url = format!("http://127.0.0.1:{}/mcp/admin", gw.port);
    let r = post(
        &gw,
        "/mcp/admin",
        Some(&alice("app", "mcp:tools", &admin_url)),
        "no-scope",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let c = challenge(&r);
    assert!(
        c.contains("error=\"insufficient_scope\"") && c.contains("scope=\"mcp:admin\""),
        "{c}"
    );
    assert!(c.contains("resource_metadata="), "{c}");
    // With it, admin answers; a grant token works there too (auth = "oauth+grant").
    let r = post(
        &gw,
        "/mcp/admin",
        Some(&alice("app", "mcp:tools mcp:admin", &admin_url)),
        "scoped",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let out = Command::new(bin())
        .args([
            "grant", "create", "--server", "admin", "--label", "ops", "--policy", "staff",
            "--json", "--config",
        ])
        .arg(gw.dir.join("portcullis.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let grant: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let token = grant["token"].as_str().unwrap();
    assert_eq!(post(&gw, "/mcp/admin", Some(token), "grant").status, 200);
    let seen = upstream_saw(&gw);
    assert!(
        !seen.contains("stranger") && !seen.contains("no-scope"),
        "{seen}"
    );
    assert!(
        !seen.contains("Bearer"),
        "the client's token never goes upstream: {seen}"
    );

    // The audit names issuer, subject and client; the counters are per principal.
    let records = audit(&gw);
    let reads = |sub: &str| {
        records
            .iter()
            .filter(|r| r["tool"] == "read_invoice" && r["subject"] == sub)
            .collect::<Vec<_>>()
    };
    let svc = reads("svc-reader");
    assert_eq!(svc.len(), 3, "{records:#?}");
    assert!(svc.iter().all(|r| r["issuer"] == idp.issuer.as_str()
        && r["client_id"] == "svc-reader"
        && r["grant_label"] == "oauth:svc-reader"
        && r["policy_name"] == "reader"));
    let a = reads("alice");
    assert_eq!(
        (a.len(), &a[0]["decision"], &a[0]["policy_name"]),
        (1, &json!("allow"), &json!("staff"))
    );
    assert_ne!(a[0]["grant_id"], svc[0]["grant_id"]);
    for (rule, sub) in [
        ("(oauth: no_policy)", "stranger"),
        ("(oauth: insufficient_scope)", "alice"),
    ] {
        assert!(
            records
                .iter()
                .any(|r| r["rule"] == rule && r["subject"] == sub),
            "no audit record {rule}: {records:#?}"
        );
    }
}

#[test]
fn the_python_sdk_signs_in_with_pkce_and_calls_through_the_gateway() {
    let (Some(py), dir) = (peer("venv/bin/python"), Scratch::new("oauth-sdk")) else {
        return;
    };
    let Some(idp) = provider(&dir) else { return };
    let gw = gateway(&dir, &idp);
    let url = format!("http://127.0.0.1:{}/mcp/rec", gw.port);
    // The SDK starts without a token: the 401 names the metadata, which names the provider;
    // it registers, signs alice in (authorization code + PKCE, resource = the server) and
    // retries. alice is in the group staff: the staff policy judges her calls.
    let out = run_driver(
        &py,
        "oauth_client.py",
        std::slice::from_ref(&url),
        &json!([{"op": "list_tools"},
            {"op": "call", "name": "pay_invoice", "args": {"id": 2, "amount": 1}},
            {"op": "call", "name": "delete_invoice", "args": {"id": 2}}]),
        &[],
    );
    assert_eq!(out["prm_resource"], url);
    let r = out["results"].as_array().unwrap();
    assert!(
        r[0]["tools"].as_array().is_some_and(|t| !t.is_empty()),
        "{out}"
    );
    assert_eq!(
        text(&r[1]),
        "called pay_invoice with {\"amount\":1,\"id\":2}",
        "{out}"
    );
    assert!(text(&r[2]).starts_with("[POLICY DENIED]"), "{out}");
    let client = out["client_id"].as_str().unwrap();
    let records = audit(&gw);
    assert!(
        records.iter().any(|r| r["tool"] == "pay_invoice"
            && r["decision"] == "allow"
            && r["subject"] == "alice"
            && r["client_id"] == client
            && r["issuer"] == idp.issuer.as_str()
            && r["policy_name"] == "staff"),
        "{records:#?}"
    );
    // The SDK's first, tokenless request was refused at the door and audited.
    assert!(records
        .iter()
        .any(|r| r["rule"] == "(oauth: missing_token)"));
    assert!(!upstream_saw(&gw).contains("Bearer"));
}

#[test]
fn opaque_tokens_are_introspected_at_the_issuer() {
    let (Some(py), dir) = (peer("venv/bin/python"), Scratch::new("oauth-opaque")) else {
        return;
    };
    let Some(idp) = provider(&dir) else { return };
    let gw = gateway(&dir, &idp);
    let url = format!("http://127.0.0.1:{}/mcp/rec", gw.port);
    // svc-opaque's tokens are opaque (not JWTs): only the introspection endpoint knows them.
    let opaque = idp.client_token("svc-opaque", "mcp:tools", &url);
    assert_ne!(
        opaque.split('.').count(),
        3,
        "the provider issued a JWT: {opaque}"
    );
    let read = json!({"op": "call", "name": "read_invoice", "args": {"id": 7}});
    let out = run_driver(
        &py,
        "client2.py",
        &[
            "auto".into(),
            "--url".into(),
            url.clone(),
            "--token".into(),
            opaque.clone(),
        ],
        &json!([read]),
        &[],
    );
    assert_eq!(
        text(&out["results"][0]),
        "called read_invoice with {\"id\":7}",
        "{out}"
    );
    // A token for another resource is active but not for this one; a revoked one is inactive;
    // an invented one is unknown: each 401, audited, and none reaches the upstream.
    let admin_url = format!("http://127.0.0.1:{}/mcp/admin", gw.port);
    let elsewhere = idp.client_token("svc-opaque", "mcp:tools", &admin_url);
    let revoked = idp.client_token("svc-opaque", "mcp:tools", &url);
    idp.revoke("svc-opaque", &revoked);
    for (marker, token, says) in [
        (
            "opaque-elsewhere",
            elsewhere.as_str(),
            "audience is not this resource",
        ),
        ("opaque-revoked", revoked.as_str(), "not active"),
        ("opaque-invented", "invented-opaque-token", "not active"),
    ] {
        let r = post(&gw, "/mcp/rec", Some(token), marker);
        assert_eq!(r.status, 401, "{marker}: {}", r.body);
        assert!(
            challenge(&r).contains("error=\"invalid_token\""),
            "{marker}"
        );
        let msg = r.json()["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(says), "{marker}: {msg}");
        assert!(
            !upstream_saw(&gw).contains(marker),
            "{marker} reached the upstream"
        );
    }
    let records = audit(&gw);
    assert!(
        records.iter().any(|r| r["tool"] == "read_invoice"
            && r["decision"] == "allow"
            && r["client_id"] == "svc-opaque"
            && r["policy_name"] == "reader"),
        "{records:#?}"
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r["rule"] == "(oauth: invalid_token)")
            .count(),
        3,
        "{records:#?}"
    );
}
