//! The console's tool pins page: the tools awaiting an operator (quarantined, pending,
//! rejected) with what changed and the decisions, then every pin. Reads and decides through
//! [`crate::ops`] (`ops/pins.rs`), the admin API's code path.

use super::html::{csrf_field, esc, notice, page, when};
use super::pages::{error_page, urlenc};
use super::{html_response, or_answer, Console, St};
use crate::pins_cli::changes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use portcullis_store::{Pin, PinState};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;

/// Who decides from the console.
const CONSOLE_APPROVER: &str = "console";

/// `GET /ui/pins`.
pub(crate) async fn pins(State(st): St, headers: HeaderMap) -> Response {
    let s = or_answer!(st.viewer(&headers));
    pins_page(&st, &s.csrf, String::new()).await
}

fn show(v: &Option<serde_json::Value>) -> String {
    v.as_ref()
        .map_or_else(|| "(absent)".to_owned(), |v| v.to_string())
}

/// One card: the tool, why, the changed members, the decisions.
fn card(o: &mut String, p: &Pin, csrf: &str) {
    let (server, tool) = (esc(&urlenc(&p.server)), esc(&urlenc(&p.tool)));
    let _ = write!(
        o,
        "<article class=\"approval\"><h3><code>{}</code> on {} <small>{}</small></h3>\n<p>{}</p>\n",
        esc(&p.tool),
        esc(&p.server),
        esc(p.state.as_str()),
        esc(p.reason.as_deref().unwrap_or(""))
    );
    if !p.findings.is_empty() {
        o.push_str("<ul>\n");
        for f in &p.findings {
            let _ = writeln!(o, "<li>{}</li>", esc(f));
        }
        o.push_str("</ul>\n");
    }
    let diff = changes(p);
    if !diff.is_empty() {
        o.push_str("<table>\n<thead><tr><th scope=\"col\">Member</th><th scope=\"col\">Approved</th><th scope=\"col\">Listed now</th></tr></thead>\n<tbody>\n");
        for c in &diff {
            let _ = writeln!(
                o,
                "<tr><td><code>{}</code></td><td><pre class=\"args\">{}</pre></td><td><pre class=\"args\">{}</pre></td></tr>",
                esc(&c.field),
                esc(&show(&c.old)),
                esc(&show(&c.new))
            );
        }
        o.push_str("</tbody></table>\n");
    }
    let csrf_f = csrf_field(csrf);
    let _ = writeln!(
        o,
        "<form method=\"post\" action=\"/ui/pins/{server}/{tool}/approve\" class=\"inline\">{csrf_f}<button type=\"submit\">Approve this definition</button></form>"
    );
    if p.state.awaits_review() {
        let _ = writeln!(
            o,
            "<form method=\"post\" action=\"/ui/pins/{server}/{tool}/reject\" class=\"inline\">{csrf_f}<button type=\"submit\" class=\"danger\">Reject</button></form>"
        );
    }
    o.push_str("</article>\n");
}

async fn pins_page(st: &Arc<Console>, csrf: &str, top: String) -> Response {
    let all = match st.ops.pins(None, None).await {
        Ok(p) => p,
        Err(e) => return error_page(csrf, "Tool pins", "Pins", &e),
    };
    let mut body = top;
    let waiting: Vec<&Pin> = all.iter().filter(|p| p.state != PinState::Pinned).collect();
    let _ = writeln!(
        body,
        "<section aria-labelledby=\"h-review\"><h2 id=\"h-review\">Awaiting review ({})</h2>",
        waiting.len()
    );
    if waiting.is_empty() {
        body.push_str("<p>Every listed tool is on its approved definition.</p>\n");
    }
    for p in waiting {
        card(&mut body, p, csrf);
    }
    body.push_str("</section>\n<section aria-labelledby=\"h-all\"><h2 id=\"h-all\">All pins</h2>\n<table>\n<thead><tr><th scope=\"col\">Server</th><th scope=\"col\">Tool</th><th scope=\"col\">State</th><th scope=\"col\">Updated</th><th scope=\"col\">Decided by</th><th scope=\"col\">Hash</th></tr></thead>\n<tbody>\n");
    for p in &all {
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&p.server),
            esc(&p.tool),
            esc(p.state.as_str()),
            when(p.updated_at),
            esc(p.decided_by.as_deref().unwrap_or("")),
            esc(p.hash.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</tbody></table></section>\n");
    html_response(StatusCode::OK, page("Tool pins", "Pins", Some(csrf), &body))
}

#[derive(Deserialize)]
pub(crate) struct PinForm {
    csrf: Option<String>,
}

async fn decide(
    st: Arc<Console>,
    headers: HeaderMap,
    server: String,
    tool: String,
    f: PinForm,
    approve: bool,
) -> Response {
    let s = or_answer!(st.changer(&headers, f.csrf.as_deref()));
    let top = match st
        .ops
        .decide_pin(&server, &tool, CONSOLE_APPROVER, approve)
        .await
    {
        Ok(p) if approve => notice(
            "ok",
            &format!(
                "Approved the listed definition of {} on {}: its calls pass from the next one.",
                p.tool, p.server
            ),
        ),
        Ok(p) => notice(
            "ok",
            &format!(
                "Rejected the listed definition of {} on {}: refused while the server lists it.",
                p.tool, p.server
            ),
        ),
        Err(e) => notice("error", &e.message),
    };
    pins_page(&st, &s.csrf, top).await
}

/// `POST /ui/pins/{server}/{tool}/approve`.
pub(crate) async fn approve(
    State(st): St,
    headers: HeaderMap,
    Path((server, tool)): Path<(String, String)>,
    Form(f): Form<PinForm>,
) -> Response {
    decide(st, headers, server, tool, f, true).await
}

/// `POST /ui/pins/{server}/{tool}/reject`.
pub(crate) async fn reject(
    State(st): St,
    headers: HeaderMap,
    Path((server, tool)): Path<(String, String)>,
    Form(f): Form<PinForm>,
) -> Response {
    decide(st, headers, server, tool, f, false).await
}
