//! The `portcullis` binary end to end: exit codes, locators on standard error, `--json`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run portcullis")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn validate_accepts_the_examples() {
    for f in [
        "examples/policies/odoo.json",
        "examples/policies/refunds.json",
        "examples/policies/ai_pipeline_run.json",
    ] {
        let o = run(&["validate", f]);
        assert!(o.status.success(), "{f}: {}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("ok — default deny"));
    }
}

#[test]
fn validate_lists_every_error_with_its_locator_and_fails() {
    let p = scratch(
        "bad.json",
        r#"{"version":"1","default":"deny","tools":{"create_refund":{"deny_if":[{"conditions":[{"path":"args.amount","op":"gt","value":1},{"path":"args.amount","op":"gte ","value":2}]}],"limits":[{"counter":"c","window":"minutes","max":1,"scope":"grant"}]}}}"#,
    );
    let o = run(&["validate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("tools.create_refund.deny_if[0].conditions[1].op: unknown op \"gte \" (did you mean \"gte\"?)"), "{err}");
    assert!(err.contains("tools.create_refund.limits[0].window: unknown window \"minutes\" (did you mean \"minute\"?)"), "{err}");
    assert!(err.contains("2 errors"), "{err}");

    let o = run(&["validate", "--json", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["errors"][0]["locator"],
        "tools.create_refund.deny_if[0].conditions[1].op"
    );
}

#[test]
fn validate_missing_file_says_so() {
    let o = run(&["validate", "no/such/policy.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read no/such/policy.json"));
}

#[test]
fn validate_against_a_tool_list_finds_typos() {
    let tools = scratch(
        "tools.json",
        r#"{"tools":[{"name":"create_refund","inputSchema":{"type":"object","properties":{"amount":{"type":"integer"},"lines":{"type":"array","items":{"type":"object","properties":{"qty":{"type":"integer"}}}}}}},{"name":"list_customers","inputSchema":{"type":"object"}}]}"#,
    );
    let policy = scratch(
        "typos.json",
        r#"{"version":"1","default":"deny","hide":["delete_customers"],"tools":{"list_customer":{},"list_customers":{"deny_if":[{"conditions":[{"path":"args.anything","op":"exists","value":true}]}]},"create_refund":{"deny_if":[{"conditions":[{"path":"args.amout","op":"gt","value":1},{"path":"args.lines[0].qty","op":"gt","value":1},{"path":"args.lines[0].qyt","op":"gt","value":1}]}]}}}"#,
    );
    let o = run(&[
        "validate",
        policy.to_str().unwrap(),
        "--tools",
        tools.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("tools.list_customer: no tool named \"list_customer\" on this server (did you mean \"list_customers\"?)"), "{err}");
    assert!(
        err.contains("hide[0]: no tool named \"delete_customers\""),
        "{err}"
    );
    assert!(err.contains("tools.create_refund.deny_if[0].conditions[0].path: args.amout: field \"amout\" is not declared (did you mean \"amount\"?)"), "{err}");
    assert!(
        err.contains("conditions[2].path: args.lines[0].qyt: field \"qyt\" is not declared"),
        "{err}"
    );
    assert!(
        !err.contains("conditions[1].path"),
        "a declared nested path is fine: {err}"
    );
    assert!(
        !err.contains("args.anything"),
        "a schema without properties says nothing: {err}"
    );
    assert!(err.contains("4 findings"), "{err}");
}

#[test]
fn validate_against_a_tool_list_names_the_operator_for_paths_and_urls() {
    let tools = scratch(
        "fs-tools.json",
        r#"{"tools":[
            {"name":"read_file","inputSchema":{"type":"object","properties":{"path":{"type":"string"}}}},
            {"name":"read_files","inputSchema":{"type":"object","properties":{"paths":{"type":"array","items":{"type":"string"}}}}},
            {"name":"fetch","inputSchema":{"type":"object","properties":{"target":{"type":"string","format":"uri"},"mode":{"type":"string"}}}}]}"#,
    );
    let policy = scratch(
        "spelling.json",
        r#"{"version":"1","default":"deny","tools":{
            "read_file":{"deny_if":[{"conditions":[{"path":"args.path","op":"regex","value":"^/etc/"}]},
                                    {"conditions":[{"path":"args.path","op":"path_under","value":"/etc"}]}]},
            "read_files":{"deny_if":[{"conditions":[{"path":"args.paths[*]","op":"contains","value":"/etc"}]}]},
            "fetch":{"require":[{"conditions":[{"path":"args.target","op":"eq","value":"https://example.com/"},
                                               {"path":"args.mode","op":"eq","value":"get"}]}]}}}"#,
    );
    let o = run(&[
        "validate",
        policy.to_str().unwrap(),
        "--tools",
        tools.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("tools.read_file.deny_if[0].conditions[0].op: args.path looks like a file path (by its name \"path\"), but \"regex\" compares its spelling, which a respelling such as \"/srv/app/../../etc/passwd\" slips past; use path_under or path_not_under instead"), "{err}");
    assert!(
        err.contains(
            "tools.read_files.deny_if[0].conditions[0].op: args.paths[*] looks like a file path"
        ),
        "{err}"
    );
    assert!(err.contains("tools.fetch.require[0].conditions[0].op: args.target looks like a URL (its inputSchema says format: uri), but \"eq\" compares its spelling"), "{err}");
    assert!(
        err.contains("use url_host_in or url_host_not_in instead"),
        "{err}"
    );
    assert!(
        !err.contains("deny_if[1]"),
        "path_under is what it should be: {err}"
    );
    assert!(
        !err.contains("conditions[1]"),
        "args.mode is neither: {err}"
    );
    assert!(err.contains("3 findings"), "{err}");
}

#[test]
fn validate_the_odoo_example_against_the_real_odoo_tool_list() {
    let tools = repo().join("../shared/fixtures/odoo-claude-mcp/tools.json");
    if !tools.exists() {
        eprintln!("skipped: ../shared/fixtures not found");
        return;
    }
    let o = run(&[
        "validate",
        "examples/policies/odoo.json",
        "--tools",
        tools.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A seed policy checked against the real list: its one tool exists.
    let o = run(&[
        "validate",
        "examples/policies/ai_invoice_pipeline_run.json",
        "--tools",
        tools.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn schema_prints_the_json_schema() {
    let o = run(&["schema"]);
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["properties"]["version"]["const"], "1");
}

#[test]
fn check_explains_a_rate_limit() {
    let o = run(&[
        "check",
        "--policy",
        "examples/policies/ai_invoice_pipeline_run.json",
        "--tool",
        "ai_invoice_pipeline_run",
        "--times",
        "11",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "the 11th call is denied");
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 11);
    assert!(lines[..10].iter().all(|l| l["decision"] == "allow"));
    assert_eq!(lines[10]["decision"], "deny");
    assert_eq!(lines[10]["rule"], "/tools/ai_invoice_pipeline_run/limits/0");
}

#[test]
fn check_explains_path_and_element_decisions() {
    let policy = scratch(
        "paths.json",
        r#"{"version":"1","default":"deny","tools":{
            "read_file":{"deny_if":[{"conditions":[{"path":"args.path","op":"path_under","value":"/etc"}]}]},
            "read_files":{"require":[{"conditions":[{"path":"args.paths[*]","op":"path_under","value":"/srv/app"}]}]}}}"#,
    );
    let check = |tool: &str, args: &str| {
        let o = run(&[
            "check",
            "--policy",
            policy.to_str().unwrap(),
            "--tool",
            tool,
            "--args",
            args,
        ]);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    // The issue's example: a regex on spelling let it through; the meaning does not.
    let (code, out) = check("read_file", r#"{"path":"/srv/app/../../etc/passwd"}"#);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("DENY — /tools/read_file/deny_if/0: Denied by rule /tools/read_file/deny_if/0 (args.path path_under \"/etc\"): args.path (\"/srv/app/../../etc/passwd\") normalizes to \"/etc/passwd\"."),
        "{out}"
    );
    let (code, out) = check("read_file", r#"{"path":"/srv/app/x"}"#);
    assert_eq!((code, out.trim()), (Some(0), "call 1: ALLOW"));
    // Which element, and its normalized form.
    let (code, out) = check(
        "read_files",
        r#"{"paths":["/srv/app/a","/srv/app/./../b"]}"#,
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("args.paths[1] (\"/srv/app/./../b\") normalizes to \"/srv/b\""),
        "{out}"
    );
    // What cannot be judged is denied, and says why.
    let (code, out) = check("read_files", r#"{"paths":[]}"#);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("args.paths is empty"), "{out}");
}

#[test]
fn import_intercept_translates_and_the_result_validates() {
    let yaml = scratch(
        "intercept.yaml",
        "version: \"1\"\ndefault: deny\ntools:\n  read_file:\n    rules: []\n  delete_customer:\n    rules:\n      - name: block\n        action: deny\n        on_deny: \"No deletions\"\n",
    );
    let out = yaml.with_extension("json");
    let o = run(&[
        "import-intercept",
        yaml.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["validate", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        v["tools"]["delete_customer"]["deny_if"][0]["on_deny"],
        "No deletions"
    );
}

#[test]
fn import_intercept_fixtures() {
    let dir = repo().join("tests/data/intercept-policies");
    assert!(
        dir.is_dir(),
        "test data {} is missing; it is part of the repository",
        dir.display()
    );
    for ok in ["valid_policy.yaml", "default_deny_policy.yaml"] {
        let o = run(&["import-intercept", dir.join(ok).to_str().unwrap()]);
        assert!(o.status.success(), "{ok}: {}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        portcullis_policy::doc::from_value(&v).unwrap();
    }
    for bad in ["invalid_schema.yaml", "invalid_policy.yaml"] {
        let o = run(&["import-intercept", dir.join(bad).to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(o.stdout.is_empty(), "{bad}: nothing on stdout");
        assert!(stderr(&o).contains("nothing was translated"), "{bad}");
    }
}

#[test]
fn demo_walks_through_allow_limit_hide_deny_and_prints_a_snippet() {
    let dir = std::env::temp_dir().join(format!("portcullis-cli-demo-{}", std::process::id()));
    let o = run(&["demo", "--dir", dir.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(out.contains("calls 1-10  allowed"), "{out}");
    assert!(
        out.contains("call 11     denied by rule /tools/ai_invoice_pipeline_run/limits/0"),
        "{out}"
    );
    assert!(out.contains("odoo_unlink (delete) is hidden"), "{out}");
    assert!(out.contains("Requires human approval."), "{out}");
    assert!(out.contains("\"mcpServers\""), "{out}");
    // The snippet's policy file exists and validates.
    let o = run(&["validate", dir.join("demo-policy.json").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    // stderr is a pipe here, as when a service's logs go to a file. The server exits at once,
    // which the gateway logs as a warning while the client (our open stdin) is still there.
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["stdio", "--no-policy", "--log", "debug", "--", "true"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("WARN"), "a log line was written: {log}");
    assert!(!log.contains('\u{1b}'), "no ANSI escape in: {log:?}");
}
