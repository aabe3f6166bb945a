//! The shapes the relay reads from and writes into messages: the upstream status for the
//! audit trail, the answers to bad input, and `tools/list` pages filtered and recorded.

use super::*;

/// How the upstream answered, for the audit trail: `ok`, `tool_error` (an `isError` result),
/// `error <code>`.
pub(super) fn upstream_status(msg: &Message) -> String {
    if msg.get("error").is_some() {
        let code: Option<i64> = msg.peek_as("error", &["code"]);
        return format!("error {}", code.unwrap_or_default());
    }
    // Peeked, not parsed: a tool's result can be large.
    match msg.peek_as::<bool>("result", &["isError"]) {
        Some(true) => "tool_error".into(),
        _ => "ok".into(),
    }
}

pub(super) fn parse_error_line(e: &ParseError) -> String {
    match e {
        ParseError::NotJson(_) => error_line(
            None,
            codes::PARSE_ERROR,
            &format!("{e}; nothing was forwarded"),
        ),
        ParseError::Batch => error_line(
            None,
            codes::INVALID_REQUEST,
            &format!("{e}; nothing was forwarded"),
        ),
        ParseError::Invalid { id, .. } => error_line(
            id.as_deref(),
            codes::INVALID_REQUEST,
            &format!("{e}; nothing was forwarded"),
        ),
    }
}

/// A tool of a `tools/list` page, as far as its name.
#[derive(serde::Deserialize)]
struct Named {
    name: Option<String>,
}

/// Records the tool names of a `tools/list` result page, as the server sent it.
pub(super) fn record_listed(listed: &ListedTools, server: &str, msg: &Message) {
    #[derive(serde::Deserialize)]
    struct Page {
        tools: Vec<Named>,
    }
    if let Some(page) = msg
        .get("result")
        .and_then(|r| serde_json::from_str::<Page>(r.get()).ok())
    {
        listed.record(server, page.tools.iter().filter_map(|t| t.name.as_deref()));
    }
}

/// Records the `inputSchema` of each tool of a `tools/list` result page, as the server sent
/// it.
pub(super) fn record_schemas(schemas: &ToolSchemas, server: &str, msg: &Message) {
    #[derive(serde::Deserialize)]
    struct Tool {
        name: String,
        #[serde(rename = "inputSchema")]
        input_schema: Value,
    }
    #[derive(serde::Deserialize)]
    struct Page {
        tools: Vec<Value>,
        #[serde(rename = "nextCursor")]
        next_cursor: Option<Value>,
    }
    let Some(page) = msg
        .get("result")
        .and_then(|r| serde_json::from_str::<Page>(r.get()).ok())
    else {
        return;
    };
    for t in page
        .tools
        .into_iter()
        .filter_map(|t| serde_json::from_value::<Tool>(t).ok())
    {
        schemas.record(server, &t.name, &t.input_schema);
    }
    if page.next_cursor.is_none() {
        schemas.set_complete(server, true);
    }
}

/// Removes from a `tools/list` result page the tools `keep` refuses (the policy's
/// [`Engine::is_listed`] — `hide`, and with `hide_denied` the tools it can never allow — and
/// the tools whose pin is not pinned), keeping everything else raw (cursor, `_meta`, each
/// tool's exact JSON).
pub(super) fn filter_tools_list(msg: &mut Message, keep: impl Fn(&str) -> bool) {
    let Some(result) = msg.get("result") else {
        return;
    };
    let Ok(mut fields) =
        serde_json::from_str::<indexmap::IndexMap<String, Box<RawValue>>>(result.get())
    else {
        return;
    };
    let Some(tools) = fields.get("tools") else {
        return;
    };
    let Ok(list) = serde_json::from_str::<Vec<Box<RawValue>>>(tools.get()) else {
        return;
    };
    let before = list.len();
    let kept: Vec<Box<RawValue>> = list
        .into_iter()
        .filter(|t| {
            // A tool whose name cannot be read cannot be policed: drop it.
            serde_json::from_str::<Named>(t.get())
                .ok()
                .and_then(|n| n.name)
                .is_some_and(|n| keep(&n))
        })
        .collect();
    if kept.len() == before {
        return;
    }
    fields.insert(
        "tools".into(),
        raw(serde_json::to_string(&kept).expect("raw")),
    );
    msg.set_raw("result", raw(serde_json::to_string(&fields).expect("raw")));
}
