//! Invented tool definitions, several per category, with the expected category, risk and a
//! piece of the evidence; then the edge cases (thin inputs, name styles, prefixes,
//! contradicting annotations).

mod common;

use common::{annotated, tool};
use portcullis_classify::{classify, Category, Classification, Risk};
use serde_json::{json, Value};

fn check(t: &Value, category: Category, risk: Risk, evidence: &str) -> Classification {
    let c = classify(t, "acme");
    assert_eq!(
        (c.category, c.risk),
        (category, risk),
        "{}: {:#?}",
        c.tool,
        c.evidence
    );
    assert!(
        c.evidence.iter().any(|e| e.contains(evidence)),
        "{}: no evidence containing {evidence:?} in {:#?}",
        c.tool,
        c.evidence
    );
    assert!((0.0..=1.0).contains(&c.confidence));
    c
}

#[test]
fn read_tools() {
    let c = check(
        &tool(
            "fetch_weather_forecast",
            "Returns the forecast for a city.",
            &[("city", "string")],
        ),
        Category::Read,
        Risk::Low,
        "\"fetch\"",
    );
    assert_eq!(c.rule, json!({}));
    assert!(!c.hide);
    check(
        &tool("listShipments", "List shipments for an account.", &[]),
        Category::Read,
        Risk::Low,
        "\"list\"",
    );
    check(
        &tool(
            "inventory.lookup-sku",
            "Look up a SKU in the warehouse catalogue.",
            &[("sku", "string")],
        ),
        Category::Read,
        Risk::Low,
        "namespace prefix `inventory.`",
    );
    check(
        &annotated(
            "describe_cluster",
            "Describe a cluster's nodes and versions.",
            json!({ "readOnlyHint": true }),
        ),
        Category::Read,
        Risk::Low,
        "readOnlyHint: true agrees",
    );
    check(
        &tool(
            "list_payouts",
            "List payouts made to the connected bank account.",
            &[("limit", "integer")],
        ),
        Category::Read,
        Risk::Low,
        "reading financial data stays Read",
    );
}

#[test]
fn write_tools() {
    let c = check(
        &tool(
            "create_ticket",
            "Creates a support ticket.",
            &[("title", "string"), ("body", "string")],
        ),
        Category::Write,
        Risk::Medium,
        "\"create\"",
    );
    assert_eq!(
        c.rule,
        json!({ "limits": [ { "counter": "create_ticket_rate", "window": "minute", "max": 30, "scope": "grant" } ] })
    );
    check(
        &tool(
            "updateCustomerAddress",
            "Update the postal address of a customer.",
            &[],
        ),
        Category::Write,
        Risk::Medium,
        "\"update\"",
    );
    check(
        &tool("rename_folder", "Rename a folder.", &[]),
        Category::Write,
        Risk::Medium,
        "\"rename\"",
    );
    check(
        &tool(
            "translate_labels",
            "Translate the labels of a form.",
            &[("form_id", "integer"), ("dry_run", "boolean")],
        ),
        Category::Write,
        Risk::Medium,
        "`dry_run` (boolean) means calls can change state",
    );
}

#[test]
fn execute_tools() {
    let c = check(
        &tool(
            "run_build_job",
            "Trigger a CI build for a branch.",
            &[("branch", "string")],
        ),
        Category::Execute,
        Risk::High,
        "\"run\"",
    );
    assert_eq!(
        c.rule,
        json!({ "limits": [ { "counter": "run_build_job_rate", "window": "minute", "max": 10, "scope": "grant" } ] })
    );
    check(
        &tool("deployService", "Deploy a service to staging.", &[]),
        Category::Execute,
        Risk::High,
        "\"deploy\"",
    );
    check(
        &tool(
            "invoke_function",
            "Invoke a serverless function with a JSON payload.",
            &[("function_id", "string"), ("payload", "object")],
        ),
        Category::Execute,
        Risk::High,
        "an execute verb",
    );
    check(
        &tool("restart_worker", "Restart a background worker.", &[]),
        Category::Execute,
        Risk::High,
        "\"restart\"",
    );
    // A financial noun on a process run stays Execute (the seeds' reasoning).
    check(
        &tool(
            "invoice_export_run",
            "Run the nightly invoice export job.",
            &[("date", "string")],
        ),
        Category::Execute,
        Risk::High,
        "Execute, not Financial",
    );
}

#[test]
fn destructive_tools() {
    let c = check(
        &tool(
            "delete_project",
            "Permanently deletes a project and all its data.",
            &[("project_id", "string")],
        ),
        Category::Destructive,
        Risk::Critical,
        "a destructive verb",
    );
    assert!(c.hide);
    check(
        &tool("purgeQueue", "Purge every message in a queue.", &[]),
        Category::Destructive,
        Risk::Critical,
        "\"purge\"",
    );
    check(
        &tool("drop-table", "Drop a table from the database.", &[]),
        Category::Destructive,
        Risk::Critical,
        "\"drop\"",
    );
    check(
        &tool("wipe_device", "Factory-reset a managed phone.", &[]),
        Category::Destructive,
        Risk::Critical,
        "\"wipe\"",
    );
    check(
        &tool(
            "artefact_janitor",
            "Remove build artefacts older than a week.",
            &[],
        ),
        Category::Destructive,
        Risk::Critical,
        "leading verb \"remove\"",
    );
}

#[test]
fn financial_tools() {
    let c = check(
        &tool(
            "create_refund",
            "Refund a captured charge.",
            &[
                ("charge_id", "string"),
                ("amount", "integer"),
                ("currency", "string"),
            ],
        ),
        Category::Financial,
        Risk::Critical,
        "Financial",
    );
    assert_eq!(c.rule["approve_if"][0]["conditions"], json!([]));
    assert!(c.rule["approve_if"][0]["reason"].is_string());
    check(
        &tool("pay_invoice", "Pay an open supplier invoice.", &[]),
        Category::Financial,
        Risk::Critical,
        "a payment verb",
    );
    check(
        &tool(
            "transfer_funds",
            "Move money between two accounts.",
            &[
                ("amount", "number"),
                ("currency", "string"),
                ("source_account", "string"),
                ("destination_account", "string"),
            ],
        ),
        Category::Financial,
        Risk::Critical,
        "moves money",
    );
    check(
        &tool(
            "cancel_subscription",
            "Cancel a customer's subscription at the end of the period.",
            &[("subscription_id", "string")],
        ),
        Category::Financial,
        Risk::Critical,
        "acts on money",
    );
    check(
        &tool(
            "submit_order",
            "Submit a basket for fulfilment.",
            &[
                ("basket_id", "string"),
                ("amount", "integer"),
                ("currency", "string"),
            ],
        ),
        Category::Financial,
        Risk::Critical,
        "money-shaped arguments",
    );
}

#[test]
fn other_tools() {
    let c = check(
        &tool("widget_frobnicator", "Frobnicates widgets.", &[]),
        Category::Other,
        Risk::Medium,
        "Other",
    );
    assert!(c.confidence < 0.5);
    check(
        &tool("team_roster", "", &[]),
        Category::Other,
        Risk::Medium,
        "no description",
    );
}

#[test]
fn empty_description_uses_the_name() {
    check(
        &tool("getInvoice", "", &[("invoice_id", "string")]),
        Category::Read,
        Risk::Low,
        "no description",
    );
    check(
        &json!({ "name": "deleteUser" }),
        Category::Destructive,
        Risk::Critical,
        "\"delete\"",
    );
}

#[test]
fn camel_kebab_and_prefixes() {
    check(
        &tool("deleteUser", "Deletes a user.", &[]),
        Category::Destructive,
        Risk::Critical,
        "name `deleteUser` contains \"delete\"",
    );
    check(
        &tool("getInvoice", "Get an invoice by id.", &[]),
        Category::Read,
        Risk::Low,
        "name `getInvoice` contains \"get\"",
    );
    check(
        &tool("create-webhook", "Create a webhook.", &[]),
        Category::Write,
        Risk::Medium,
        "\"create\"",
    );
    let c = check(
        &tool("main__delete_user", "Delete a user.", &[]),
        Category::Destructive,
        Risk::Critical,
        "namespace prefix `main__` stripped",
    );
    assert_eq!(c.tool, "main__delete_user", "the listed name is kept");
    assert!(
        c.rule_for(portcullis_classify::Preset::Permissive)
            .is_some(),
        "permissive lists destructive tools (denied)"
    );
    check(
        &tool("server.get_invoice", "Get an invoice.", &[]),
        Category::Read,
        Risk::Low,
        "namespace prefix `server.`",
    );
    // `pull_request` is a noun, `auth_status` too.
    check(
        &tool("pull_request_read", "Get a pull request.", &[]),
        Category::Read,
        Risk::Low,
        "\"read\"",
    );
}

#[test]
fn routine_state_is_not_destructive() {
    check(
        &tool("clear_cache", "Clear the response cache.", &[]),
        Category::Write,
        Risk::Medium,
        "routine state",
    );
    check(
        &tool("web_logout", "Destroy the web session and log out.", &[]),
        Category::Write,
        Risk::Medium,
        "routine state",
    );
}

#[test]
fn annotations_that_contradict_the_name() {
    // A claim of safety never lowers the verdict.
    let c = check(
        &annotated(
            "delete_record",
            "Delete a record.",
            json!({ "readOnlyHint": true }),
        ),
        Category::Destructive,
        Risk::Critical,
        "readOnlyHint: true contradicts",
    );
    assert!(c.hide);
    check(
        &annotated(
            "run_migration",
            "Run pending database migrations.",
            json!({ "readOnlyHint": true, "destructiveHint": false }),
        ),
        Category::Execute,
        Risk::High,
        "a claim of safety never lowers",
    );
    check(
        &annotated(
            "drop_index",
            "Drop an index.",
            json!({ "destructiveHint": false }),
        ),
        Category::Destructive,
        Risk::Critical,
        "destructiveHint: false contradicts",
    );
    // An admission of danger wins.
    check(
        &annotated(
            "get_report",
            "Get the monthly report.",
            json!({ "readOnlyHint": false, "destructiveHint": true }),
        ),
        Category::Destructive,
        Risk::Critical,
        "admission of danger wins",
    );
    check(
        &annotated(
            "create_note",
            "Create a note.",
            json!({ "readOnlyHint": false, "destructiveHint": true }),
        ),
        Category::Write,
        Risk::High,
        "risk raised to High",
    );
    check(
        &annotated(
            "fetch_items",
            "Fetch items.",
            json!({ "readOnlyHint": false }),
        ),
        Category::Write,
        Risk::Medium,
        "readOnlyHint: false",
    );
    // The only signal.
    check(
        &annotated("gizmo", "", json!({ "readOnlyHint": true })),
        Category::Read,
        Risk::Low,
        "only signal",
    );
    check(
        &annotated(
            "list_things",
            "List things.",
            json!({ "openWorldHint": true, "idempotentHint": true }),
        ),
        Category::Read,
        Risk::Low,
        "openWorldHint: true",
    );
}

#[test]
fn read_only_claims() {
    // The name reads, the description runs, and claims read-only: Read, but Medium.
    check(
        &tool(
            "query_logs",
            "Execute read-only queries over the log store.",
            &[],
        ),
        Category::Read,
        Risk::Low,
        "which reads: Read",
    );
    check(
        &tool(
            "find_rows",
            "Execute read-only statements against the table store.",
            &[],
        ),
        Category::Read,
        Risk::Medium,
        "nothing checks the claim",
    );
    // The name runs: the claim does not lower it.
    check(
        &tool("run_probe", "Execute a read-only probe.", &[]),
        Category::Execute,
        Risk::High,
        "nothing enforces it",
    );
}

#[test]
fn classify_all_sorts_by_risk_then_name() {
    let tools = vec![
        tool("b_list", "List b.", &[]),
        tool("a_delete", "Delete a.", &[]),
        tool("a_list", "List a.", &[]),
        tool("z_run", "Run z.", &[]),
    ];
    let names: Vec<String> = portcullis_classify::classify_all(&tools, "s")
        .into_iter()
        .map(|c| c.tool)
        .collect();
    assert_eq!(names, ["a_delete", "z_run", "a_list", "b_list"]);
}

#[test]
fn serializes_with_plain_names() {
    let c = classify(&tool("list_x", "List x.", &[]), "srv");
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["category"], "Read");
    assert_eq!(v["risk"], "Low");
    assert_eq!(v["server"], "srv");
    assert_eq!(v["reason"], c.reason());
    assert!(v["reason"].as_str().unwrap().contains("\"list\""));
    assert_eq!(Category::Read.to_string(), "Read");
    assert!(Risk::Low < Risk::Medium && Risk::High < Risk::Critical);
}

/// Issue 12's patterns: messages sent outside, code fetched or shipped, reports, stopping an
/// agent, starting a transfer, and an ERP's business records and ledger.
#[test]
fn what_a_call_reaches_beyond_its_verb() {
    // Messages to people outside are Execute/High (this was Write/Medium before issue 12).
    check(
        &tool(
            "send_sms",
            "Send a text message to a phone number.",
            &[("to", "string"), ("body", "string")],
        ),
        Category::Execute,
        Risk::High,
        "sends a message to people or systems outside",
    );
    check(
        &tool("chat_post_message", "Post a message to a channel.", &[]),
        Category::Execute,
        Risk::High,
        "\"post\" with \"chat\"",
    );
    check(
        &tool(
            "notify_customer",
            "Email the customer about their order.",
            &[],
        ),
        Category::Execute,
        Risk::High,
        "\"notify\" with \"email\"",
    );
    // A refresh notification to the user's own view is not a message to anyone.
    check(
        &tool(
            "ui_refresh",
            "Send a refresh notification to the user's browser tab.",
            &[],
        ),
        Category::Write,
        Risk::Medium,
        "\"send\"",
    );
    // Code fetched, installed, loaded or shipped.
    check(
        &tool(
            "repo_clone",
            "Clone a Git repository into the workspace.",
            &[],
        ),
        Category::Execute,
        Risk::High,
        "runs git against a remote",
    );
    check(
        &tool("module_install", "Install an addon module.", &[]),
        Category::Execute,
        Risk::High,
        "installing software",
    );
    check(
        &tool(
            "plugins_reload",
            "Reload plugin steps from the plugins directory.",
            &[],
        ),
        Category::Execute,
        Risk::High,
        "loads code into the running server",
    );
    check(
        &tool(
            "apply_migration",
            "Apply a SQL migration to the database.",
            &[],
        ),
        Category::Execute,
        Risk::High,
        "changes a deployment",
    );
    check(
        &tool(
            "restore_instance",
            "Restore an instance from a snapshot.",
            &[],
        ),
        Category::Execute,
        Risk::High,
        "a live service",
    );
    // Reports are reads, with or without a read verb.
    check(
        &tool(
            "receivables_aging",
            "Aging table of open receivables by partner.",
            &[],
        ),
        Category::Read,
        Risk::Low,
        "a report about something",
    );
    check(
        &tool("run_seo_audit", "Run an SEO audit of the page.", &[]),
        Category::Read,
        Risk::Low,
        "runs an audit, which reads",
    );
    // Stopping or unenrolling an agent, disabling an account.
    check(
        &tool("stop_agent", "Stop the endpoint agent on a host.", &[]),
        Category::Destructive,
        Risk::Critical,
        "cuts off an agent's protection",
    );
    check(
        &tool("unenroll_device", "Unenroll a device from management.", &[]),
        Category::Destructive,
        Risk::Critical,
        "\"unenroll\"",
    );
    check(
        &tool("disable_user_account", "Disable a user account.", &[]),
        Category::Destructive,
        Risk::Critical,
        "a person's access",
    );
    check(
        &tool("suspend_account", "Suspend a customer account.", &[]),
        Category::Destructive,
        Risk::Critical,
        "applied to \"account\"",
    );
    // Starting a transfer moves money.
    check(
        &tool(
            "initiate_transfer",
            "Start a transfer between two ledgers.",
            &[],
        ),
        Category::Financial,
        Risk::Critical,
        "a transfer of money",
    );
    // Credentials and access.
    check(
        &tool(
            "connection_add",
            "Add a connection.",
            &[("url", "string"), ("password", "string")],
        ),
        Category::Write,
        Risk::High,
        "`password` (string) is a secret",
    );
    check(
        &tool("create_db_user", "Create a database user.", &[]),
        Category::Write,
        Risk::High,
        "a new way in",
    );
    check(
        &tool(
            "get_connection_string",
            "Return the database connection string.",
            &[],
        ),
        Category::Read,
        Risk::High,
        "whoever reads the answer can sign in",
    );
    check(
        &tool(
            "get_env",
            "Returns all environment variables of the server.",
            &[],
        ),
        Category::Read,
        Risk::High,
        "it returns environment variables",
    );
    check(
        &tool(
            "update_many",
            "Update all documents that match the filter.",
            &[],
        ),
        Category::Write,
        Risk::High,
        "bulk change",
    );
}

#[test]
fn in_an_erp_the_data_raises_the_level() {
    let erp = |t: &Value| classify(t, "acme-erp");
    // A generic record write in an ERP (model + values) is High.
    let c = erp(&tool(
        "record_create",
        "Create one or more records.",
        &[("model", "string"), ("values", "object")],
    ));
    assert_eq!(
        (c.category, c.risk),
        (Category::Write, Risk::High),
        "{:#?}",
        c.evidence
    );
    assert!(
        c.reason().contains("the data's domain raises the level"),
        "{}",
        c.reason()
    );
    // A write to stock records is High; outside an ERP the same words stay Medium.
    let t = tool(
        "stock_quantity_set",
        "Set the on-hand stock quantity of a product.",
        &[],
    );
    assert_eq!(erp(&t).risk, Risk::High);
    assert_eq!(classify(&t, "notes").risk, Risk::Medium);
    // Posting a journal entry, valuing stock: Financial.
    let c = erp(&tool(
        "stock_value_close",
        "Create an inventory valuation journal entry for a stock move.",
        &[],
    ));
    assert_eq!(
        (c.category, c.risk),
        (Category::Financial, Risk::Critical),
        "{:#?}",
        c.evidence
    );
    assert!(c.reason().contains("ledger"), "{}", c.reason());
    // Reads stay reads, and a translation of a label is no business record.
    assert_eq!(
        erp(&tool(
            "stock_report",
            "Stock aging report by warehouse.",
            &[]
        ))
        .category,
        Category::Read
    );
    assert_eq!(
        erp(&tool(
            "label_translate",
            "Write translations for a field.",
            &[]
        ))
        .risk,
        Risk::Medium
    );
}

#[test]
fn the_reason_is_the_deciding_evidence() {
    // The name says write, the description destroys: the description decides.
    let c = classify(
        &tool("connection_disconnect", "Remove a saved connection.", &[]),
        "acme",
    );
    assert_eq!(c.category, Category::Destructive);
    assert!(c.reason().contains("\"remove\""), "{}", c.reason());
    assert!(!c.reason().contains("a write verb"), "{}", c.reason());
    // A raised risk is explained by what raised it.
    let c = classify(
        &tool(
            "cert_refresh",
            "Re-fetch the peer certificate and overwrite the pinned copy.",
            &[],
        ),
        "acme",
    );
    assert_eq!(c.risk, Risk::High);
    assert!(c.reason().contains("access control"), "{}", c.reason());
    // Every reason is one of the evidence items.
    for (server, _, t) in common::corpus() {
        let c = classify(&t, &server);
        assert!(
            c.evidence.iter().any(|e| e == c.reason()),
            "{}: {}",
            c.tool,
            c.reason()
        );
    }
}
