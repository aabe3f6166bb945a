//! The console's pages other than the policy builder: overview, catalogue (and a page per
//! tool), grants, approvals, audit. Each reads and changes through [`crate::ops`].

use super::html::{csrf_field, esc, notice, page, risk_badge, when};
use super::{html_response, or_answer, Console, St};
use crate::ops::audit::AuditQuery;
use crate::ops::OpError;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use portcullis_gateway::relay::system_clock;
use portcullis_store::{Approval, AuditDecision, AuditRecord, Grant};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// The risk levels, lowest first.
const RISKS: [&str; 4] = ["low", "medium", "high", "critical"];

/// An operation's error as a page.
pub(crate) fn error_page(csrf: &str, title: &str, current: &str, e: &OpError) -> Response {
    let mut body = notice("error", &e.message);
    for l in &e.errors {
        let _ = writeln!(
            body,
            "<p class=\"located\"><code>{}</code> {}</p>",
            esc(&l.locator),
            esc(&l.message)
        );
    }
    html_response(
        crate::admin_api::status_of(e.kind),
        page(title, current, Some(csrf), &body),
    )
}

/// Every tool of every server (listed and classified, cached), with the servers that could
/// not be asked and why.
async fn all_tools(st: &Console) -> (Vec<(String, Value)>, Vec<(String, String)>) {
    let mut tools = Vec::new();
    let mut failed = Vec::new();
    for s in st.ops.servers() {
        match st.ops.tools(&s.name, false).await {
            Ok(listed) => {
                for t in listed["tools"].as_array().into_iter().flatten() {
                    tools.push((s.name.clone(), t.clone()));
                }
            }
            Err(e) => failed.push((s.name, e.message)),
        }
    }
    (tools, failed)
}

/// The tool's risk level, lower-case (`low` … `critical`).
fn risk_of(t: &Value) -> String {
    t["classification"]["risk"]
        .as_str()
        .unwrap_or("medium")
        .to_ascii_lowercase()
}

// ---------------------------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------------------------

/// `GET /ui/`: servers with health and tools by risk; the last hour; what needs attention.
pub(crate) async fn overview(State(st): St, headers: HeaderMap) -> Response {
    let s = or_answer!(st.viewer(&headers));
    let mut body = String::new();
    let (tools, failed) = all_tools(&st).await;
    body.push_str("<section aria-labelledby=\"h-servers\"><h2 id=\"h-servers\">Servers</h2>\n<table>\n<thead><tr><th scope=\"col\">Server</th><th scope=\"col\">Transport</th><th scope=\"col\">Policy</th><th scope=\"col\">Health</th>");
    for r in RISKS {
        let _ = write!(body, "<th scope=\"col\">{}</th>", risk_badge(r));
    }
    body.push_str("</tr></thead>\n<tbody>\n");
    for srv in st.ops.servers() {
        let health = match failed.iter().find(|(n, _)| *n == srv.name) {
            Some((_, why)) => format!(
                "<span class=\"bad\">unreachable</span> <small>{}</small>",
                esc(why)
            ),
            None => "<span class=\"good\">listing</span>".into(),
        };
        let _ = write!(
            body,
            "<tr><th scope=\"row\"><a href=\"/ui/catalogue?server={0}\">{1}</a></th><td data-label=\"Transport\">{2}</td><td data-label=\"Policy\">{3}</td><td data-label=\"Health\">{health}</td>",
            esc(&urlenc(&srv.name)),
            esc(&srv.name),
            srv.transport,
            match &srv.policy {
                Some(_) => format!("<a href=\"/ui/policies/{}\">edit</a>", esc(&urlenc(&srv.name))),
                None => "<span class=\"bad\">none: every call denied</span>".into(),
            }
        );
        for r in RISKS {
            let n = tools
                .iter()
                .filter(|(sv, t)| *sv == srv.name && risk_of(t) == r)
                .count();
            let _ = write!(body, "<td data-label=\"{r} risk\">{n}</td>");
        }
        body.push_str("</tr>\n");
    }
    body.push_str("</tbody></table></section>\n");

    // The last hour, from the audit log.
    let hour = st
        .ops
        .audit(AuditQuery {
            since: Some("1h".into()),
            limit: Some(0),
            ..AuditQuery::default()
        })
        .await;
    body.push_str("<section aria-labelledby=\"h-hour\"><h2 id=\"h-hour\">The last hour</h2>\n");
    match hour {
        Ok(recs) => {
            let calls = recs.iter().filter(|r| r.method == "tools/call");
            let n = |d: AuditDecision| {
                recs.iter()
                    .filter(|r| r.method == "tools/call" && r.decision == d)
                    .count()
            };
            let _ = writeln!(
                body,
                "<dl class=\"stats\"><div><dt>Calls</dt><dd>{}</dd></div><div><dt>Denied</dt><dd>{}</dd></div><div><dt>Held for approval</dt><dd>{}</dd></div><div><dt>Shadow denials</dt><dd>{}</dd></div></dl>",
                calls.count(),
                n(AuditDecision::Deny) + n(AuditDecision::Hidden),
                n(AuditDecision::Approval),
                n(AuditDecision::ShadowDeny)
            );
            let reloads: Vec<&AuditRecord> = recs
                .iter()
                .filter(|r| r.method == "(reload)" && r.decision == AuditDecision::Error)
                .collect();
            body.push_str("</section>\n<section aria-labelledby=\"h-attention\"><h2 id=\"h-attention\">Needs attention</h2>\n<ul>\n");
            let pending = st
                .ops
                .approvals(Some("pending"))
                .await
                .map(|l| l.len())
                .unwrap_or(0);
            let _ = writeln!(
                body,
                "<li><a href=\"/ui/approvals\">{pending} pending approval{}</a></li>",
                if pending == 1 { "" } else { "s" }
            );
            // Tools awaiting an operator (quarantined or new under strict pinning); none
            // when this gateway keeps no pins.
            let review = st
                .ops
                .pins(None, None)
                .await
                .map(|l| {
                    l.iter()
                        .filter(|p| {
                            matches!(
                                p.state,
                                portcullis_store::PinState::Quarantined
                                    | portcullis_store::PinState::Pending
                            )
                        })
                        .count()
                })
                .unwrap_or(0);
            let _ = writeln!(
                body,
                "<li{}><a href=\"/ui/pins\">{review} tool{} awaiting review (quarantined or new)</a></li>",
                if review > 0 { " class=\"bad\"" } else { "" },
                if review == 1 { "" } else { "s" }
            );
            if reloads.is_empty() {
                body.push_str("<li>No failed reloads in the last hour.</li>\n");
            }
            for r in reloads {
                let _ = writeln!(
                    body,
                    "<li class=\"bad\">Reload failed at {}: {}</li>",
                    when(r.time),
                    esc(r.message.as_deref().unwrap_or(""))
                );
            }
            body.push_str("</ul>\n");
        }
        Err(e) => body.push_str(&notice("warn", &e.message)),
    }
    body.push_str("</section>\n");
    html_response(
        StatusCode::OK,
        page("Overview", "Overview", Some(&s.csrf), &body),
    )
}

/// Percent-encodes a path segment or query value.
pub(crate) fn urlenc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

// ---------------------------------------------------------------------------------------------
// Catalogue
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub(crate) struct CatalogueQuery {
    server: Option<String>,
    category: Option<String>,
    risk: Option<String>,
    q: Option<String>,
}

/// A `<select>` of `options` named `name` with `current` chosen; the first entry is "any".
fn select(name: &str, label: &str, options: &[String], current: Option<&str>) -> String {
    let mut o = format!("<label>{label} <select name=\"{name}\"><option value=\"\">any</option>");
    for v in options {
        let sel = if Some(v.as_str()) == current {
            " selected"
        } else {
            ""
        };
        let _ = write!(o, "<option{sel}>{}</option>", esc(v));
    }
    o.push_str("</select></label>\n");
    o
}

/// `GET /ui/catalogue?server=&category=&risk=&q=`: every tool of every server.
pub(crate) async fn catalogue(
    State(st): St,
    headers: HeaderMap,
    Query(f): Query<CatalogueQuery>,
) -> Response {
    let s = or_answer!(st.viewer(&headers));
    let (tools, failed) = all_tools(&st).await;
    let nonempty = |o: &Option<String>| o.clone().filter(|v| !v.is_empty());
    let (fs, fc, fr, fq) = (
        nonempty(&f.server),
        nonempty(&f.category),
        nonempty(&f.risk),
        nonempty(&f.q).map(|q| q.to_lowercase()),
    );
    let servers: Vec<String> = st.ops.servers().into_iter().map(|s| s.name).collect();
    let mut categories: Vec<String> = tools
        .iter()
        .filter_map(|(_, t)| t["classification"]["category"].as_str().map(str::to_owned))
        .collect();
    categories.sort();
    categories.dedup();
    let risks: Vec<String> = RISKS.iter().map(|r| r.to_string()).collect();
    let mut body = String::from(
        "<form method=\"get\" action=\"/ui/catalogue\" class=\"filters\" role=\"search\">\n",
    );
    body.push_str(&select("server", "Server", &servers, fs.as_deref()));
    body.push_str(&select("category", "Category", &categories, fc.as_deref()));
    body.push_str(&select("risk", "Risk", &risks, fr.as_deref()));
    let _ = write!(
        body,
        "<label>Search <input type=\"search\" name=\"q\" value=\"{}\"></label>\n<button type=\"submit\">Filter</button></form>\n",
        esc(f.q.as_deref().unwrap_or(""))
    );
    for (name, why) in &failed {
        body.push_str(&notice("warn", &format!("{name}: {why}")));
    }
    body.push_str("<table class=\"catalogue\">\n<thead><tr><th scope=\"col\">Tool</th><th scope=\"col\">Server</th><th scope=\"col\">Category</th><th scope=\"col\">Risk</th><th scope=\"col\">Evidence</th></tr></thead>\n<tbody>\n");
    let mut shown = 0;
    for (server, t) in &tools {
        let c = &t["classification"];
        let name = t["name"].as_str().unwrap_or_default();
        let category = c["category"].as_str().unwrap_or("other");
        let desc = t["description"].as_str().unwrap_or_default();
        if fs.as_deref().is_some_and(|v| v != server)
            || fc.as_deref().is_some_and(|v| v != category)
            || fr.as_deref().is_some_and(|v| v != risk_of(t))
            || fq.as_deref().is_some_and(|q| {
                !name.to_lowercase().contains(q) && !desc.to_lowercase().contains(q)
            })
        {
            continue;
        }
        shown += 1;
        // The deciding item in bold; the others as found.
        let reason = c["reason"].as_str().unwrap_or_default();
        let evidence: Vec<String> = c["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|e| {
                if e == reason {
                    format!("<li><strong>{}</strong></li>", esc(e))
                } else {
                    format!("<li>{}</li>", esc(e))
                }
            })
            .collect();
        let _ = writeln!(
            body,
            "<tr><th scope=\"row\"><a href=\"/ui/catalogue/{}/{}\">{}</a>{}<div class=\"desc\">{}</div></th><td>{}</td><td>{}</td><td>{}</td><td><ul class=\"evidence\">{}</ul></td></tr>",
            esc(&urlenc(server)),
            esc(&urlenc(name)),
            esc(name),
            if t["hidden_by_policy"] == json!(true) { " <span class=\"tag\">hidden</span>" } else { "" },
            esc(desc),
            esc(server),
            esc(category),
            risk_badge(&risk_of(t)),
            evidence.join("")
        );
    }
    body.push_str("</tbody></table>\n");
    let _ = writeln!(body, "<p>{shown} of {} tools.</p>", tools.len());
    html_response(
        StatusCode::OK,
        page("Catalogue", "Catalogue", Some(&s.csrf), &body),
    )
}

/// `GET /ui/catalogue/{server}/{tool}`: the catalogue page of one tool (what it does, why it
/// needs a policy, its definition, the recommended rule, how to limit or block it).
pub(crate) async fn tool_page(
    State(st): St,
    headers: HeaderMap,
    Path((server, tool)): Path<(String, String)>,
) -> Response {
    let s = or_answer!(st.viewer(&headers));
    let listed = match st.ops.tools(&server, false).await {
        Ok(l) => l,
        Err(e) => return error_page(&s.csrf, "Catalogue", "Catalogue", &e),
    };
    let Some(t) = listed["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == json!(tool))
    else {
        let e = OpError::new(
            crate::ops::Kind::NotFound,
            "unknown_tool",
            format!("{server:?} lists no tool named {tool:?}"),
        );
        return error_page(&s.csrf, "Catalogue", "Catalogue", &e);
    };
    let c = portcullis_classify::classify(t, &server);
    // The classifier's own page (every text from the definition escaped there), without its
    // document frame and inline style: the console's frame and stylesheet hold it.
    let full = portcullis_classify::catalog_page_html(&c, t);
    let inner = full
        .split_once("<body>")
        .and_then(|(_, b)| b.rsplit_once("</body>"))
        .map(|(b, _)| b)
        .unwrap_or_default();
    let body = format!(
        "<p><a href=\"/ui/catalogue?server={}\">← {}</a> · <a href=\"/ui/policies/{}\">edit the policy</a></p>\n<article class=\"tool-page\">{inner}</article>",
        esc(&urlenc(&server)),
        esc(&server),
        esc(&urlenc(&server))
    );
    html_response(
        StatusCode::OK,
        page(
            &format!("{tool} · {server}"),
            "Catalogue",
            Some(&s.csrf),
            &body,
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Grants
// ---------------------------------------------------------------------------------------------

fn grants_table(grants: &[Grant], csrf: &str) -> String {
    let now = system_clock();
    let mut o = String::from("<table>\n<thead><tr><th scope=\"col\">Label</th><th scope=\"col\">Id</th><th scope=\"col\">Server</th><th scope=\"col\">Policy</th><th scope=\"col\">Status</th><th scope=\"col\">Expires</th><th scope=\"col\">Created</th><th scope=\"col\">Actions</th></tr></thead>\n<tbody>\n");
    for g in grants {
        let status = g.status(now).as_str();
        let actions = if status == "revoked" {
            String::new()
        } else {
            format!(
                "<form method=\"post\" action=\"/ui/grants/{0}/rotate\" class=\"inline\">{1}<button type=\"submit\" aria-label=\"Rotate the token of {2}\">Rotate</button></form> \
                 <form method=\"post\" action=\"/ui/grants/{0}/revoke\" class=\"inline\">{1}<button type=\"submit\" class=\"danger\" aria-label=\"Revoke {2}\">Revoke</button></form>",
                esc(&urlenc(&g.id)),
                csrf_field(csrf),
                esc(&g.label)
            )
        };
        let _ = writeln!(
            o,
            "<tr data-grant=\"{}\"><th scope=\"row\">{}</th><td data-label=\"Id\"><code>{}</code></td><td data-label=\"Server\">{}</td><td data-label=\"Policy\">{}</td><td data-label=\"Status\" class=\"status-{status}\">{status}</td><td data-label=\"Expires\">{}</td><td data-label=\"Created\">{}</td><td>{actions}</td></tr>",
            esc(&g.label),
            esc(&g.label),
            esc(&g.id),
            esc(&g.server),
            esc(g.policy.as_deref().unwrap_or("(none)")),
            g.expires_at.map(when).unwrap_or_else(|| "never".into()),
            when(g.created_at)
        );
    }
    o.push_str("</tbody></table>\n");
    o
}

/// `GET /ui/grants`: the create form and every grant.
pub(crate) async fn grants(State(st): St, headers: HeaderMap) -> Response {
    let s = or_answer!(st.viewer(&headers));
    grants_page(&st, &s.csrf, String::new(), StatusCode::OK)
}

fn grants_page(st: &Console, csrf: &str, top: String, status: StatusCode) -> Response {
    let mut body = top;
    let servers = st.ops.servers();
    let policies = st.ops.policies();
    body.push_str("<section aria-labelledby=\"h-new\"><h2 id=\"h-new\">New grant</h2>\n<form method=\"post\" action=\"/ui/grants\" class=\"grid\">\n");
    body.push_str(&csrf_field(csrf));
    body.push_str(
        "<label for=\"g-server\">Server</label><select id=\"g-server\" name=\"server\" required>",
    );
    for sv in &servers {
        let _ = write!(body, "<option>{}</option>", esc(&sv.name));
    }
    body.push_str("</select>\n<label for=\"g-label\">Label</label><input id=\"g-label\" name=\"label\" required placeholder=\"claude-desktop-alice\">\n<label for=\"g-policy\">Policy</label><select id=\"g-policy\" name=\"policy\"><option value=\"\">the server's own</option>");
    for (p, _) in &policies {
        let _ = write!(body, "<option>{}</option>", esc(p));
    }
    body.push_str("</select>\n<label for=\"g-expires\">Expires</label><input id=\"g-expires\" name=\"expires\" placeholder=\"30d, or 2027-01-31\">\n<button type=\"submit\">Create grant</button>\n</form></section>\n");
    body.push_str("<section aria-labelledby=\"h-grants\"><h2 id=\"h-grants\">Grants</h2>\n");
    match st.ops.grants(None) {
        Ok(list) => body.push_str(&grants_table(&list, csrf)),
        Err(e) => body.push_str(&notice("error", &e.message)),
    }
    body.push_str("</section>\n");
    html_response(status, page("Grants", "Grants", Some(csrf), &body))
}

#[derive(Deserialize)]
pub(crate) struct GrantForm {
    csrf: Option<String>,
    server: String,
    label: String,
    #[serde(default)]
    policy: String,
    #[serde(default)]
    expires: String,
}

/// The page part that shows a new token once, with client snippets to copy.
fn token_shown(host: &str, g: &Grant, token: &str, verb: &str, warning: Option<&str>) -> String {
    let url = format!("http://{host}/mcp/{}", g.server);
    let auth = format!("Bearer {token}");
    let claude = json!({"mcpServers": {&g.server: {
        "command": "npx",
        "args": ["-y", "mcp-remote", url, "--header", format!("Authorization:{auth}")]
    }}});
    let cursor =
        json!({"mcpServers": {&g.server: {"url": url, "headers": {"Authorization": auth}}}});
    let vscode = json!({"servers": {&g.server: {"type": "http", "url": url, "headers": {"Authorization": auth}}}});
    let mut o = format!(
        "<section class=\"token\" aria-labelledby=\"h-token\"><h2 id=\"h-token\">Grant {} {verb}</h2>\n",
        esc(&g.label)
    );
    if let Some(w) = warning {
        o.push_str(&notice("warn", w));
    }
    let _ = write!(
        o,
        "<p>This token is shown <strong>once</strong>; only its digest is kept.</p>\n\
         <p><label for=\"new-token\">Token</label> <input id=\"new-token\" readonly value=\"{}\" size=\"60\"> <button type=\"button\" data-copy=\"new-token\">Copy</button></p>\n",
        esc(token)
    );
    for (id, name, v) in [
        (
            "snip-claude",
            "Claude Desktop (claude_desktop_config.json)",
            claude,
        ),
        ("snip-cursor", "Cursor (.cursor/mcp.json)", cursor),
        ("snip-vscode", "VS Code (.vscode/mcp.json)", vscode),
    ] {
        let text = serde_json::to_string_pretty(&v).unwrap_or_default();
        let _ = write!(
            o,
            "<h3>{name}</h3>\n<pre id=\"{id}\">{}</pre><button type=\"button\" data-copy=\"{id}\">Copy</button>\n",
            esc(&text)
        );
    }
    o.push_str("</section>\n");
    o
}

fn host_of(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned()
}

/// `POST /ui/grants`: creates a grant and shows its token once.
pub(crate) async fn grant_create(
    State(st): St,
    headers: HeaderMap,
    Form(f): Form<GrantForm>,
) -> Response {
    let s = or_answer!(st.changer(&headers, f.csrf.as_deref()));
    let opt = |v: &str| Some(v.trim()).filter(|v| !v.is_empty()).map(str::to_owned);
    // "The server's own" (the empty choice) is the server's policy, as `portcullis grant
    // create` without --policy; a server without one gets a grant that denies every call, and
    // the page says so.
    let policy = opt(&f.policy).or_else(|| {
        st.ops
            .servers()
            .into_iter()
            .find(|s| s.name == f.server.trim())
            .and_then(|s| s.policy)
    });
    match st.ops.create_grant(
        f.server.trim(),
        f.label.trim(),
        policy.as_deref(),
        opt(&f.expires).as_deref(),
    ) {
        Ok(i) => {
            let top = token_shown(
                &host_of(&headers),
                &i.grant,
                i.token.secret(),
                "created",
                i.warning.as_deref(),
            );
            grants_page(&st, &s.csrf, top, StatusCode::CREATED)
        }
        Err(e) => grants_page(
            &st,
            &s.csrf,
            notice("error", &e.message),
            crate::admin_api::status_of(e.kind),
        ),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /ui/grants/{id}/rotate`: a new token, shown once.
pub(crate) async fn grant_rotate(
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = or_answer!(st.changer(&headers, f.csrf.as_deref()));
    match st.ops.rotate_grant(&id) {
        Ok(i) => {
            let top = token_shown(
                &host_of(&headers),
                &i.grant,
                i.token.secret(),
                "rotated",
                None,
            );
            grants_page(&st, &s.csrf, top, StatusCode::OK)
        }
        Err(e) => grants_page(
            &st,
            &s.csrf,
            notice("error", &e.message),
            crate::admin_api::status_of(e.kind),
        ),
    }
}

/// `POST /ui/grants/{id}/revoke`: revokes; its token is refused from the next request on.
pub(crate) async fn grant_revoke(
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = or_answer!(st.changer(&headers, f.csrf.as_deref()));
    let top = match st.ops.revoke_grant(&id) {
        Ok(g) => notice(
            "ok",
            &format!(
                "Grant {} is revoked; its token is refused from the next request on.",
                g.label
            ),
        ),
        Err(e) => notice("error", &e.message),
    };
    grants_page(&st, &s.csrf, top, StatusCode::OK)
}

// ---------------------------------------------------------------------------------------------
// Approvals
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub(crate) struct FragmentQuery {
    /// `1`: only the live part of the page (for the script's polling).
    #[serde(default)]
    fragment: Option<String>,
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The pending queue: one card per request with its arguments and the two decisions.
fn queue(pending: &[Approval], csrf: &str) -> String {
    let ids: Vec<&str> = pending.iter().map(|a| a.id.as_str()).collect();
    let mut o = format!(
        "<section id=\"queue\" aria-labelledby=\"h-queue\" aria-live=\"polite\" data-live=\"/ui/approvals?fragment=1\" data-ids=\"{}\"><h2 id=\"h-queue\">Pending ({})</h2>\n",
        esc(&ids.join(",")),
        pending.len()
    );
    if pending.is_empty() {
        o.push_str("<p>Nothing waits for a decision.</p>\n");
    }
    for a in pending {
        let id = esc(&urlenc(&a.id));
        let _ = write!(
            o,
            "<article class=\"approval\" data-approval=\"{}\"><h3><code>{}</code> on {} <small>by grant {}</small></h3>\n\
             <p>{}</p><p><small>Requested {} · expires {} · rule <code>{}</code></small></p>\n\
             <pre class=\"args\">{}</pre>\n\
             <form method=\"post\" action=\"/ui/approvals/{id}/approve\" class=\"inline\">{csrf_f}\
             <label>Valid for <input name=\"valid_for\" value=\"10m\" size=\"5\"></label> <button type=\"submit\">Approve</button></form>\n\
             <form method=\"post\" action=\"/ui/approvals/{id}/deny\" class=\"inline\">{csrf_f}\
             <label>Reason <input name=\"reason\" required></label> <button type=\"submit\" class=\"danger\">Deny</button></form>\n</article>\n",
            esc(&a.id),
            esc(&a.tool),
            esc(&a.server),
            esc(&a.grant_label),
            esc(&a.reason),
            when(a.created_at),
            when(a.expires_at),
            esc(&a.rule),
            esc(&pretty(&a.args)),
            csrf_f = csrf_field(csrf),
        );
    }
    o.push_str("</section>\n");
    o
}

/// `GET /ui/approvals`: the queue (updated live by the script) and the history.
pub(crate) async fn approvals(
    State(st): St,
    headers: HeaderMap,
    Query(q): Query<FragmentQuery>,
) -> Response {
    let s = or_answer!(st.viewer(&headers));
    approvals_page(&st, &s.csrf, q.fragment.is_some(), String::new()).await
}

async fn approvals_page(st: &Arc<Console>, csrf: &str, fragment: bool, top: String) -> Response {
    let pending = match st.ops.approvals(Some("pending")).await {
        Ok(p) => p,
        Err(e) => return error_page(csrf, "Approvals", "Approvals", &e),
    };
    if fragment {
        return html_response(StatusCode::OK, queue(&pending, csrf));
    }
    let mut body = top;
    body.push_str(&queue(&pending, csrf));
    body.push_str("<section aria-labelledby=\"h-history\"><h2 id=\"h-history\">History</h2>\n<table>\n<thead><tr><th scope=\"col\">Id</th><th scope=\"col\">Tool</th><th scope=\"col\">Grant</th><th scope=\"col\">Status</th><th scope=\"col\">Decided</th><th scope=\"col\">By</th><th scope=\"col\">Reason</th></tr></thead>\n<tbody>\n");
    if let Ok(all) = st.ops.approvals(Some("all")).await {
        for a in all
            .iter()
            .filter(|a| a.decided_at.is_some() || a.status.to_string() != "pending")
            .take(100)
        {
            let _ = writeln!(
                body,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.id),
                esc(&a.tool),
                esc(&a.grant_label),
                esc(&a.status.to_string()),
                a.decided_at.map(when).unwrap_or_default(),
                esc(a.decided_by.as_deref().unwrap_or("")),
                esc(a.decision_reason.as_deref().unwrap_or(""))
            );
        }
    }
    body.push_str("</tbody></table></section>\n");
    html_response(
        StatusCode::OK,
        page("Approvals", "Approvals", Some(csrf), &body),
    )
}

/// Who decides from the console.
const CONSOLE_APPROVER: &str = "console";

#[derive(Deserialize)]
pub(crate) struct ApproveForm {
    csrf: Option<String>,
    #[serde(default)]
    valid_for: String,
}

/// `POST /ui/approvals/{id}/approve`.
pub(crate) async fn approve(
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ApproveForm>,
) -> Response {
    let s = or_answer!(st.changer(&headers, f.csrf.as_deref()));
    let valid = Some(f.valid_for.trim()).filter(|v| !v.is_empty());
    let top = match st.ops.approve(&id, CONSOLE_APPROVER, valid).await {
        Ok(a) => notice(
            "ok",
            &format!(
                "Approved {} ({} on {}): the identical retry passes once.",
                a.id, a.tool, a.server
            ),
        ),
        Err(e) => notice("error", &e.message),
    };
    approvals_page(&st, &s.csrf, false, top).await
}

#[derive(Deserialize)]
pub(crate) struct DenyForm {
    csrf: Option<String>,
    #[serde(default)]
    reason: String,
}

/// `POST /ui/approvals/{id}/deny`.
pub(crate) async fn deny(
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<DenyForm>,
) -> Response {
    let s = or_answer!(st.changer(&headers, f.csrf.as_deref()));
    let top = match st.ops.deny(&id, CONSOLE_APPROVER, &f.reason).await {
        Ok(a) => notice(
            "ok",
            &format!("Denied {}: the agent is told the reason.", a.id),
        ),
        Err(e) => notice("error", &e.message),
    };
    approvals_page(&st, &s.csrf, false, top).await
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub(crate) struct AuditForm {
    #[serde(flatten)]
    q: BTreeMap<String, String>,
}

/// The audit query of a form (empty fields absent), and the `fragment` flag.
fn audit_query(f: &AuditForm) -> Result<(AuditQuery, bool), String> {
    let mut m = f.q.clone();
    let fragment = m.remove("fragment").is_some();
    let v = serde_json::to_value(&m).map_err(|e| e.to_string())?;
    let mut q: AuditQuery = serde_json::from_value(v).map_err(|e| e.to_string())?;
    q.limit = None;
    Ok((q.without_empty(), fragment))
}

fn records_rows(recs: &[AuditRecord]) -> String {
    let mut o = String::new();
    for r in recs {
        let _ = writeln!(
            o,
            "<tr><td class=\"nowrap\">{}</td><td class=\"nowrap\">{}</td><td>{}</td><td>{}</td><td class=\"d-{}\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
            when(r.time),
            esc(r.grant_label.as_deref().unwrap_or("")),
            esc(&r.server),
            esc(r.tool.as_deref().unwrap_or(&r.method)),
            r.decision.as_str(),
            r.decision.as_str(),
            esc(r.rule.as_deref().unwrap_or("")),
            esc(r.message.as_deref().unwrap_or(""))
        );
    }
    o
}

/// `GET /ui/audit?since=&until=&grant=&server=&tool=&decision=`: the newest 100 matching
/// records; the script's live tail reloads the rows.
pub(crate) async fn audit(
    State(st): St,
    headers: HeaderMap,
    Query(f): Query<AuditForm>,
) -> Response {
    let s = or_answer!(st.viewer(&headers));
    let (q, fragment, recs) = match audit_query(&f) {
        Ok((q, fragment)) => {
            let recs = st.ops.audit(q.clone()).await;
            (q, fragment, recs)
        }
        Err(e) => (
            AuditQuery::default(),
            false,
            Err(OpError::new(
                crate::ops::Kind::BadRequest,
                "invalid_query",
                e,
            )),
        ),
    };
    if fragment {
        return html_response(
            StatusCode::OK,
            recs.map(|r| records_rows(&r)).unwrap_or_default(),
        );
    }
    let field = |name: &str, label: &str, v: &Option<String>, ph: &str| {
        format!(
            "<label>{label} <input name=\"{name}\" value=\"{}\" placeholder=\"{ph}\"></label>\n",
            esc(v.as_deref().unwrap_or(""))
        )
    };
    let mut body = String::from(
        "<form method=\"get\" action=\"/ui/audit\" class=\"filters\" id=\"audit-filter\">\n",
    );
    body.push_str(&field("since", "Since", &q.since, "1h"));
    body.push_str(&field("until", "Until", &q.until, "2026-12-06T18:00"));
    body.push_str(&field("grant", "Grant", &q.grant, "id or label"));
    body.push_str(&field("server", "Server", &q.server, ""));
    body.push_str(&field("tool", "Tool", &q.tool, ""));
    let decisions: Vec<String> = AuditDecision::ALL
        .iter()
        .map(|d| d.as_str().to_owned())
        .collect();
    body.push_str(&select(
        "decision",
        "Decision",
        &decisions,
        q.decision.as_deref(),
    ));
    let qs: Vec<String> =
        f.q.iter()
            .filter(|(k, v)| *k != "fragment" && !v.is_empty())
            .map(|(k, v)| format!("{}={}", urlenc(k), urlenc(v)))
            .collect();
    let _ = writeln!(
        body,
        "<button type=\"submit\">Filter</button> <a class=\"button\" href=\"/ui/audit/export?{}\" download>Export JSONL</a> \
         <label class=\"check\"><input type=\"checkbox\" id=\"live-tail\"> Live tail</label></form>",
        esc(&qs.join("&"))
    );
    match recs {
        Ok(recs) => {
            let _ = write!(
                body,
                "<table><thead><tr><th scope=\"col\">Time</th><th scope=\"col\">Grant</th><th scope=\"col\">Server</th><th scope=\"col\">Tool</th><th scope=\"col\">Decision</th><th scope=\"col\">Rule</th><th scope=\"col\">Message</th></tr></thead>\n<tbody id=\"audit-rows\" data-live=\"/ui/audit?{}\">\n{}</tbody></table>\n",
                esc(&qs.iter().cloned().chain(["fragment=1".to_owned()]).collect::<Vec<_>>().join("&")),
                records_rows(&recs)
            );
        }
        Err(e) => body.push_str(&notice("error", &e.message)),
    }
    html_response(StatusCode::OK, page("Audit", "Audit", Some(&s.csrf), &body))
}

/// `GET /ui/audit/export?…`: every matching record as JSON Lines (a download).
pub(crate) async fn audit_export(
    State(st): St,
    headers: HeaderMap,
    Query(f): Query<AuditForm>,
) -> Response {
    let s = or_answer!(st.viewer(&headers));
    let q = match audit_query(&f) {
        Ok((q, _)) => q,
        Err(e) => {
            let e = OpError::new(crate::ops::Kind::BadRequest, "invalid_query", e);
            return error_page(&s.csrf, "Audit", "Audit", &e);
        }
    };
    match st.ops.audit_export(q).await {
        Ok(bytes) => {
            let mut r = bytes.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jsonl"),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"portcullis-audit.jsonl\""),
            );
            r
        }
        Err(e) => error_page(&s.csrf, "Audit", "Audit", &e),
    }
}
