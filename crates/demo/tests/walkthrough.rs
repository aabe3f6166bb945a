//! The walkthrough end to end: the gateway in-process, the demo server as a child process.

use portcullis_demo::{walkthrough_with, Options, DEMO_POLICY};

#[tokio::test]
async fn the_walkthrough_shows_limit_hide_and_deny() {
    let dir = std::env::temp_dir().join(format!("portcullis-demo-test-{}", std::process::id()));
    let argv = vec![env!("CARGO_BIN_EXE_portcullis-demo-upstream").to_owned()];
    let mut out = Vec::new();
    let opts = Options {
        policy_dir: Some(dir.clone()),
        ..Options::default()
    };
    let w = walkthrough_with(&opts, argv, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    println!("{text}");

    assert_eq!(w.server_name, "odoo-demo");
    assert_eq!(w.runs_attempted, 11);
    assert_eq!(w.runs_passed, 10, "{text}");
    assert_eq!(
        w.run_denial_rule.as_deref(),
        Some("/tools/ai_invoice_pipeline_run/limits/0")
    );
    let retry = w.run_retry_after_secs.expect("a retry hint");
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(w
        .run_denial_text
        .as_deref()
        .unwrap()
        .contains("ai_invoice_pipeline_run_rate"));
    assert!(!w.delete_tool_listed);
    assert!(!w.listed_tools.is_empty());
    assert_eq!(w.delete_call_rule.as_deref(), Some("(hidden)"));
    assert!(w.payment_denied);
    assert_eq!(
        w.payment_rule.as_deref(),
        Some("/tools/account_payment_register/deny_if/0")
    );
    assert_eq!(
        w.payment_denial_text.as_deref(),
        Some("Requires human approval.")
    );
    assert!(w.read_allowed);
    assert_eq!(w.invoice_payment_state.as_deref(), Some("not_paid"));

    // The policy file and the snippet that names it.
    assert_eq!(w.policy_path, dir.join("demo-policy.json"));
    assert_eq!(
        std::fs::read_to_string(&w.policy_path).unwrap(),
        DEMO_POLICY
    );
    let snippet: serde_json::Value = serde_json::from_str(&w.config_snippet).unwrap();
    assert_eq!(
        snippet["mcpServers"]["odoo-demo"],
        serde_json::json!({
            "command": "portcullis",
            "args": ["stdio", "--policy", w.policy_path.display().to_string(), "--", "portcullis", "demo-upstream"]
        })
    );
    assert!(text.contains(&w.config_snippet));
    assert!(text.contains("Requires human approval."));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_server_that_cannot_start_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("portcullis-demo-bad-{}", std::process::id()));
    let opts = Options {
        policy_dir: Some(dir.clone()),
        ..Options::default()
    };
    let mut out = Vec::new();
    let err = walkthrough_with(
        &opts,
        vec!["/nonexistent/portcullis-demo-upstream".into()],
        &mut out,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("cannot start"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
