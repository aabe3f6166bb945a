//! The policy builder: per server, a row per tool (follow the default, allow, deny, hide,
//! rate-limit, require approval, or custom) with an argument rule built from the tool's
//! `inputSchema`, the `default`, an `all_tools` limit and shadow mode, beside the raw JSON.
//! The script keeps the two in sync both ways and validates as you type ([`validate`]); the
//! preview shows every error at its locator and the diff against the policy in force; saving
//! is [`Ops::put_policy`](crate::ops::Ops::put_policy), the admin API's PUT.

use super::html::{csrf_field, esc, json_block, notice, page, risk_badge};
use super::pages::{error_page, urlenc};
use super::{html_response, or_answer, St};
use crate::ops::policies::validate as validate_doc;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use portcullis_classify::counter_name;
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Calendar windows offered in the rows (any other window is written in the raw JSON).
const WINDOWS: [&str; 6] = ["second", "minute", "hour", "day", "week", "month"];

/// Counter scopes.
const SCOPES: [&str; 4] = ["grant", "server", "global", "session"];

/// `GET /ui/policies`: the servers and their policies.
pub(crate) async fn index(State(st): St, headers: HeaderMap) -> Response {
    let s = or_answer!(st.viewer(&headers));
    let mut body = String::from("<ul class=\"cards\">\n");
    for srv in st.ops.servers() {
        let _ = writeln!(
            body,
            "<li><a href=\"/ui/policies/{}\">{}</a> — {}</li>",
            esc(&urlenc(&srv.name)),
            esc(&srv.name),
            match srv.policy {
                Some(_) => "policy in force",
                None =>
                    "no policy file configured (add policy = \"…\" to the server in the config)",
            }
        );
    }
    body.push_str("</ul>\n");
    html_response(
        StatusCode::OK,
        page("Policies", "Policies", Some(&s.csrf), &body),
    )
}

fn options(values: &[&str], label_empty: Option<&str>) -> String {
    let mut o = String::new();
    if let Some(l) = label_empty {
        let _ = write!(o, "<option value=\"\">{}</option>", esc(l));
    }
    for v in values {
        let _ = write!(o, "<option value=\"{0}\">{0}</option>", esc(v));
    }
    o
}

/// The `args.<name>` paths an `inputSchema` declares at its top level.
fn arg_paths(tool: &Value) -> Vec<String> {
    tool["inputSchema"]["properties"]
        .as_object()
        .map(|p| p.keys().map(|k| format!("args.{k}")).collect())
        .unwrap_or_default()
}

/// One row of the builder.
fn row(server: &str, tool: &Value) -> String {
    let name = tool["name"].as_str().unwrap_or_default();
    let n = esc(name);
    let paths = arg_paths(tool);
    let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let risk = tool["classification"]["risk"].as_str().unwrap_or("medium");
    format!(
        "<tr class=\"rule-row\" data-tool=\"{n}\" data-counter=\"{counter}\">\n\
         <th scope=\"row\"><a href=\"/ui/catalogue/{srv}/{link}\">{n}</a> {badge}</th>\n\
         <td><select class=\"mode\" aria-label=\"Rule for {n}\">\
         <option value=\"default\">follow the default</option><option value=\"allow\">Allow</option>\
         <option value=\"deny\">Deny</option><option value=\"hide\">Hide</option>\
         <option value=\"limit\">Rate-limit</option><option value=\"approve\">Require approval</option>\
         <option value=\"custom\">Custom (raw JSON)</option></select></td>\n\
         <td class=\"limit-cell\"><input class=\"max\" type=\"number\" min=\"1\" value=\"10\" aria-label=\"Most calls of {n}\"> <span>per</span> \
         <select class=\"window\" aria-label=\"Window of {n}\">{windows}</select> \
         <select class=\"scope\" aria-label=\"Scope of {n}\">{scopes}</select> \
         <select class=\"per\" aria-label=\"Counter key of {n}\">{per}</select></td>\n\
         <td class=\"arg-cell\"><select class=\"arg-path\" aria-label=\"Argument of the deny rule of {n}\">{paths}</select> \
         <select class=\"arg-op\" aria-label=\"Operator of the deny rule of {n}\">{ops}</select> \
         <input class=\"arg-value\" aria-label=\"Value of the deny rule of {n}\" placeholder=\"value (JSON or text)\"></td>\n</tr>\n",
        srv = esc(&urlenc(server)),
        link = esc(&urlenc(name)),
        counter = esc(&counter_name(name)),
        badge = risk_badge(risk),
        windows = options(&WINDOWS, None),
        scopes = options(&SCOPES, None),
        per = options(&path_refs, Some("one counter")),
        paths = options(&path_refs, Some("no argument rule")),
        ops = options(portcullis_policy::doc::OPS, None),
    )
}

/// `GET /ui/policies/{server}`: the builder.
pub(crate) async fn builder(
    State(st): St,
    headers: HeaderMap,
    Path(server): Path<String>,
) -> Response {
    let s = or_answer!(st.viewer(&headers));
    builder_page(&st, &s.csrf, &server, None, String::new()).await
}

/// The builder page; `text` replaces the policy in force as the starting document.
async fn builder_page(
    st: &super::Console,
    csrf: &str,
    server: &str,
    text: Option<String>,
    top: String,
) -> Response {
    let title = format!("Policy of {server}");
    let policy = match st.ops.policy(server) {
        Ok(p) => p,
        Err(e) => return error_page(csrf, &title, "Policies", &e),
    };
    let text =
        text.unwrap_or_else(|| serde_json::to_string_pretty(&policy.document).unwrap_or_default());
    let mut body = top;
    let (tools, listing_error) = match st.ops.tools(server, false).await {
        Ok(l) => (l["tools"].as_array().cloned().unwrap_or_default(), None),
        Err(e) => (Vec::new(), Some(e.message)),
    };
    if let Some(e) = listing_error {
        body.push_str(&notice(
            "warn",
            &format!("{e} — edit the raw JSON, or retry later for the rows."),
        ));
    }
    let presets: serde_json::Map<String, Value> = match st.ops.recommendations(server).await {
        Ok(list) => list
            .into_iter()
            .map(|(p, v)| (p.as_str().to_owned(), v))
            .collect(),
        Err(_) => serde_json::Map::new(),
    };
    body.push_str(&json_block("presets", &Value::Object(presets.clone())));
    let _ = writeln!(
        body,
        "<p>In force: hash <code>{}</code>. Rows and raw JSON stay in sync; every change is validated as you type. Saving shows the difference first.</p>",
        esc(&policy.hash)
    );
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/ui/policies/{}/preview\" id=\"builder\" data-server=\"{}\">\n{}\n",
        esc(&urlenc(server)),
        esc(server),
        csrf_field(csrf)
    );
    body.push_str("<fieldset class=\"top-controls\"><legend>Whole policy</legend>\n\
        <label>Default <select id=\"b-default\"><option value=\"deny\">deny</option><option value=\"allow\">allow</option></select></label>\n\
        <label class=\"check\"><input type=\"checkbox\" id=\"b-shadow\"> Shadow mode (audit denials, forward anyway)</label>\n\
        <span class=\"all-tools\">All tools: at most <input type=\"number\" id=\"b-all-max\" min=\"1\" aria-label=\"Most calls of all tools\" placeholder=\"no limit\"> per \
        <select id=\"b-all-window\" aria-label=\"Window of the all-tools limit\">");
    body.push_str(&options(&WINDOWS, None));
    body.push_str(
        "</select> <select id=\"b-all-scope\" aria-label=\"Scope of the all-tools limit\">",
    );
    body.push_str(&options(&SCOPES, None));
    body.push_str("</select></span>\n<span class=\"presets\">Start from the recommendation:");
    for p in presets.keys() {
        let _ = write!(
            body,
            " <button type=\"button\" data-preset=\"{0}\">{0}</button>",
            esc(p)
        );
    }
    body.push_str("</span></fieldset>\n<div class=\"builder\">\n<div class=\"rows\"><table>\n<thead><tr><th scope=\"col\">Tool</th><th scope=\"col\">Rule</th><th scope=\"col\">Limit</th><th scope=\"col\">Deny when the argument…</th></tr></thead>\n<tbody>\n");
    for t in &tools {
        body.push_str(&row(server, t));
    }
    let _ = write!(
        body,
        "</tbody></table></div>\n<div class=\"raw\"><label for=\"document\">policy.json</label>\n\
         <textarea id=\"document\" name=\"document\" rows=\"30\" spellcheck=\"false\">{}</textarea>\n\
         <div id=\"validation\" role=\"status\" aria-live=\"polite\"><p id=\"valid-state\"></p><ul id=\"errors\"></ul></div>\n</div>\n</div>\n\
         <button type=\"submit\" id=\"review\">Review the changes</button>\n</form>\n",
        esc(&text)
    );
    html_response(StatusCode::OK, page(&title, "Policies", Some(csrf), &body))
}

#[derive(Deserialize)]
pub(crate) struct DocForm {
    csrf: Option<String>,
    #[serde(default)]
    document: String,
}

/// `POST /ui/validate {csrf, document}`: `{errors: [{locator, message}]}` (for the script).
pub(crate) async fn validate(
    State(st): St,
    headers: HeaderMap,
    Form(f): Form<DocForm>,
) -> Response {
    or_answer!(st.changer(&headers, f.csrf.as_deref()));
    let body = json!({ "errors": validate_doc(&f.document) }).to_string();
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A line diff of `old` and `new` (longest common subsequence) as `(' '|'-'|'+', line)`.
pub(crate) fn diff_lines<'a>(old: &'a str, new: &'a str) -> Vec<(char, &'a str)> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        // Too large to align: everything out, everything in.
        return a
            .iter()
            .map(|l| ('-', *l))
            .chain(b.iter().map(|l| ('+', *l)))
            .collect();
    }
    // lcs[i][j]: the common length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push(('-', a[i]));
            i += 1;
        } else {
            out.push(('+', b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| ('-', *l)));
    out.extend(b[j..].iter().map(|l| ('+', *l)));
    out
}

/// `POST /ui/policies/{server}/preview`: every error at its locator, the diff against the
/// policy in force, and the save button when the document is valid.
pub(crate) async fn preview(
    State(st): St,
    headers: HeaderMap,
    Path(server): Path<String>,
    Form(f): Form<DocForm>,
) -> Response {
    let s = or_answer!(st.changer(&headers, f.csrf.as_deref()));
    preview_page(&st, &s.csrf, &server, &f.document, None)
}

fn preview_page(
    st: &super::Console,
    csrf: &str,
    server: &str,
    text: &str,
    failure: Option<&crate::ops::OpError>,
) -> Response {
    let title = format!("Review the policy of {server}");
    let current = match st.ops.policy(server) {
        Ok(p) => serde_json::to_string_pretty(&p.document).unwrap_or_default(),
        Err(e) => return error_page(csrf, &title, "Policies", &e),
    };
    let errors = validate_doc(text);
    let mut body = String::new();
    if let Some(e) = failure {
        body.push_str(&notice("error", &e.message));
    }
    if errors.is_empty() {
        body.push_str(&notice("ok", "The document is valid."));
    } else {
        body.push_str(&notice(
            "error",
            &format!(
                "{} error{}: fix them before saving.",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            ),
        ));
        body.push_str("<ul class=\"errors\" id=\"preview-errors\">\n");
        for e in &errors {
            let _ = writeln!(
                body,
                "<li><code>{}</code> {}</li>",
                esc(&e.locator),
                esc(&e.message)
            );
        }
        body.push_str("</ul>\n");
    }
    // Compare like with like: the new text pretty-printed when it parses.
    let new = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned());
    let diff = diff_lines(&current, &new);
    let changed = diff.iter().filter(|(k, _)| *k != ' ').count();
    let _ = writeln!(
        body,
        "<h2>Changes ({changed} line{})</h2>\n<pre class=\"diff\" id=\"diff\">",
        if changed == 1 { "" } else { "s" }
    );
    for (k, l) in diff {
        let class = match k {
            '+' => "add",
            '-' => "del",
            _ => "same",
        };
        // The newline inside the span: a block span followed by one would show a blank line.
        let _ = write!(body, "<span class=\"{class}\">{k} {}\n</span>", esc(l));
    }
    body.push_str("</pre>\n");
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/ui/policies/{0}/save\" id=\"save-form\">{1}\n\
         <label for=\"document\">policy.json</label>\n<textarea id=\"document\" name=\"document\" rows=\"16\" spellcheck=\"false\">{2}</textarea>\n\
         <button type=\"submit\" formaction=\"/ui/policies/{0}/preview\">Check again</button> ",
        esc(&urlenc(server)),
        csrf_field(csrf),
        esc(text)
    );
    if errors.is_empty() {
        body.push_str("<button type=\"submit\" id=\"save\">Save and reload</button>");
    }
    let _ = writeln!(
        body,
        " <a href=\"/ui/policies/{}\">Discard</a></form>",
        esc(&urlenc(server))
    );
    let status = if errors.is_empty() && failure.is_none() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    html_response(status, page(&title, "Policies", Some(csrf), &body))
}

/// `POST /ui/policies/{server}/save`: the admin API's PUT — validate, write atomically,
/// reload; then the builder with the policy now in force.
pub(crate) async fn save(
    State(st): St,
    headers: HeaderMap,
    Path(server): Path<String>,
    Form(f): Form<DocForm>,
) -> Response {
    let s = or_answer!(st.changer(&headers, f.csrf.as_deref()));
    match st.ops.put_policy(&server, &f.document).await {
        Ok((_, hash)) => {
            let top = notice(
                "ok",
                &format!(
                    "Saved and reloaded: policy {server} {hash} is in force from the next request."
                ),
            );
            builder_page(&st, &s.csrf, &server, None, top).await
        }
        Err(e) => preview_page(&st, &s.csrf, &server, &f.document, Some(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_keeps_common_lines_and_marks_the_rest() {
        let d = diff_lines("a\nb\nc", "a\nx\nc\nd");
        assert_eq!(
            d,
            vec![(' ', "a"), ('-', "b"), ('+', "x"), (' ', "c"), ('+', "d")]
        );
    }
}
