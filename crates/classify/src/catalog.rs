//! Catalogue pages: one page per tool (risk badge, what it does, why it needs a policy, the
//! reasoning from its definition, the recommended `policy.json`, how to rate-limit it, how to
//! block it) and an index per server, in Markdown and HTML.
//!
//! Every text that comes from a tool definition is untrusted: HTML pages escape it, and
//! Markdown pages escape `<`, `>` and `&` so that a renderer cannot turn it into markup.

use crate::policy::{counter_name, deny_all, per_minute, tool_policy};
use crate::{Category, Classification, Risk};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// A file-name-safe slug for a tool's page (`[A-Za-z0-9_.-]`, other characters become `_`).
pub fn page_slug(tool: &str) -> String {
    let s: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.trim_start_matches('.') {
        "" => "_".to_string(),
        t => t.to_string(),
    }
}

/// Escapes text for HTML element content and attribute values.
fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes text for Markdown prose: markup characters and HTML become literal.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '[' | ']' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// A fenced block whose fence is longer than any backtick run in the content.
fn md_block(lang: &str, s: &str) -> String {
    let fence = "`".repeat((longest_run(s, '`') + 1).max(3));
    format!("{fence}{lang}\n{s}\n{fence}\n")
}

fn longest_run(s: &str, ch: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for c in s.chars() {
        if c == ch {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON values serialize")
}

fn description_of(tool: &Value) -> String {
    tool.get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The sections of a page, as plain text (escaped by the renderer).
struct Page {
    badge: String,
    what: Vec<String>,
    why: Vec<String>,
    policy: String,
    policy_note: String,
    limit_intro: String,
    limit: String,
    limit_note: String,
    block_intro: String,
    block: String,
    block_note: String,
}

fn page(c: &Classification, tool: &Value) -> Page {
    let t = &c.tool;
    let s = &c.server;
    let mut what = Vec::new();
    what.push(match c.category {
        Category::Read => format!("Agents call {t} to look things up on {s}. By its definition it returns data and changes nothing."),
        Category::Write => format!("Agents call {t} to create or change data on {s}. Every call leaves something different behind."),
        Category::Execute => format!("Agents call {t} to start work on {s}: a process, a job, a command or code. The arguments decide what actually happens, and the effects can outlast the call."),
        Category::Destructive => format!("Agents call {t} to remove or destroy things on {s}. What it removes may not come back."),
        Category::Financial => format!("Agents call {t} to move money or change billing on {s}."),
        Category::Other => format!("Nothing in the definition of {t} says plainly what it does on {s}. Read it before you allow it."),
    });
    if let Some(ca) = &c.catch_all {
        what.push(format!(
            "It is a catch-all ({}): one tool for many actions, chosen by its arguments.",
            ca.kind
        ));
    }

    let mut why = Vec::new();
    why.push(match c.category {
        Category::Read => "Reads are the least dangerous calls, but they still carry data out of the server. Allow the tool, and keep it out of reach of agents that should not see that data.".to_string(),
        Category::Write => "A write is cheap for an agent to repeat. A loop or a misunderstanding turns one update into hundreds, so the rule caps how many calls a grant gets per minute.".to_string(),
        Category::Execute => "Running something is the most open-ended thing an agent can do: the result depends on the arguments and on what runs downstream. The rule keeps the tool usable but caps it, so a runaway agent cannot fire it dozens of times a minute.".to_string(),
        Category::Destructive => "A deletion cannot be rate-limited into safety: one call is enough. The rule hides the tool, so agents neither see it nor can call it.".to_string(),
        Category::Financial => "Money moved by mistake is hard to get back. The rule lets an agent ask, and a human decide, for every call.".to_string(),
        Category::Other => "An unclassified tool is treated like a write until someone has looked at it: usable, capped, and worth a review.".to_string(),
    });
    // What makes this tool's case its own: the deciding evidence.
    let base = c.category.base_risk();
    if !c.is_poisoning_suspect() && !c.reason().is_empty() {
        if c.risk > base {
            why.push(format!(
                "It is rated {} rather than the {} a {} tool starts from: {}.",
                c.risk,
                base,
                c.category,
                c.reason()
            ));
        } else {
            why.push(format!("What decided it: {}.", c.reason()));
        }
    }
    if let Some(ca) = &c.catch_all {
        if ca.rules.is_empty() || ca.selectors.is_empty() {
            why.push("Its definition declares no arguments, so no argument rule can narrow it; consider denying it until the server publishes a schema.".to_string());
        } else {
            why.push(format!(
                "A plain cap would allow ten harmful calls a minute, and hiding it would take every harmless call with it. The recommended rule therefore checks the arguments: {}.",
                ca.rules.join("; ")
            ));
        }
    }
    if c.is_poisoning_suspect() {
        why.push("Its definition contains text addressed to the model rather than to you (see the findings below). A description reaches the model whether or not the tool is called, so the rule hides it until the definition has been reviewed.".to_string());
    }
    if c.category == Category::Financial {
        why.push("PolicyLayer's own catalogue blocks Financial tools with an unconditional deny_if and the message \"Requires human approval.\"; Portcullis recommends approve_if instead, so the call can go through once a human says yes.".to_string());
    }

    let doc = tool_policy(c);
    let policy = pretty(&doc);
    let policy_note = if c.hide {
        format!("{t} is removed from the tool list and denied if called anyway. Everything else on the server is denied unless you list it.")
    } else if c.category == Category::Read && c.rule == json!({}) {
        format!("{t} is allowed as is. Everything else on the server is denied unless you list it.")
    } else if let Some(max) = c.rule["limits"][0]["max"].as_u64() {
        let args = if c.rule.get("deny_if").is_some() || c.rule.get("require").is_some() {
            " and checked argument by argument"
        } else {
            ""
        };
        format!("{t} stays usable, but capped at {max} calls a minute per grant{args}: a runaway agent cannot fire it dozens of times. Everything else on the server is denied unless you list it.")
    } else if c.rule.get("approve_if").is_some() {
        format!("{t} waits for a human approval on every call; once approved, the identical call goes through once. Everything else on the server is denied unless you list it.")
    } else {
        format!("{t} stays usable within the rule above. Everything else on the server is denied unless you list it.")
    };

    let max = match c.category {
        Category::Execute => 10,
        Category::Read => 60,
        _ => 30,
    };
    let limit = pretty(&json!({ t.clone(): { "limits": [per_minute(t, max)] } }));
    let limit_intro = format!(
        "Add a limits entry to the tool's rule. Counter {} allows {max} calls per calendar minute for each grant (token); window may be \"minute\", \"hour\" or \"day\".",
        counter_name(t)
    );
    let id_arg = tool
        .get("inputSchema")
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .and_then(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .find(|n| n.ends_with("_id") || *n == "id")
        });
    let limit_note = match id_arg {
        Some(id) => format!("To cap it per record instead, add \"per\": \"args.{id}\" (a Portcullis extension): each {id} gets its own counter."),
        None => "Other scopes are Portcullis extensions: \"session\" (per connection), \"server\" (all grants together), \"global\".".to_string(),
    };

    let block = pretty(
        &json!({ "hide": [t], "tools": { t.clone(): { "deny_if": [deny_all("This tool is blocked by policy.")] } } }),
    );
    let block_intro = "To block it, list it under hide: it disappears from tools/list and any call is denied. To keep it visible but refuse every call, give it an unconditional deny_if (an entry with no conditions) and an on_deny message for the agent.".to_string();
    let block_note = "Use one of the two; hide wins if both are present. With \"default\": \"deny\", leaving the tool out of tools denies it as well.".to_string();

    let badge = format!("{} risk", c.risk);
    Page {
        badge,
        what,
        why,
        policy,
        policy_note,
        limit_intro,
        limit,
        limit_note,
        block_intro,
        block,
        block_note,
    }
}

/// A catalogue page for one tool, in Markdown. `tool` is the definition it was classified
/// from (its description is quoted).
pub fn catalog_page_markdown(c: &Classification, tool: &Value) -> String {
    let p = page(c, tool);
    let desc = description_of(tool);
    let mut o = String::new();
    let _ = writeln!(o, "# {}\n", md(&c.tool));
    let _ = writeln!(
        o,
        "**{}** · {} · server {} · confidence {:.2}{}{}\n",
        p.badge.to_uppercase(),
        c.category,
        md(&c.server),
        c.confidence,
        if c.catch_all.is_some() {
            " · catch-all"
        } else {
            ""
        },
        if c.is_poisoning_suspect() {
            " · **poisoning suspect**"
        } else {
            ""
        }
    );
    if desc.is_empty() {
        o.push_str("> (no description)\n\n");
    } else {
        for line in desc.lines() {
            let _ = writeln!(o, "> {}", md(line));
        }
        o.push('\n');
    }
    let _ = writeln!(o, "## What {} does on {}\n", md(&c.tool), md(&c.server));
    for w in &p.what {
        let _ = writeln!(o, "{}\n", md(w));
    }
    let _ = writeln!(o, "## Why {} needs a policy\n", md(&c.tool));
    for w in &p.why {
        let _ = writeln!(o, "{}\n", md(w));
    }
    let _ = writeln!(o, "## From the tool's definition\n");
    for e in &c.evidence {
        let _ = writeln!(o, "- {}", md(e));
    }
    o.push('\n');
    if c.is_poisoning_suspect() {
        let _ = writeln!(o, "### Poisoning findings\n");
        for f in &c.poisoning {
            let _ = writeln!(o, "- {}", md(f));
        }
        o.push('\n');
    }
    let _ = writeln!(o, "## Recommended policy\n");
    o.push_str("policy.json\n\n");
    o.push_str(&md_block("json", &p.policy));
    let _ = writeln!(o, "\n{}\n", md(&p.policy_note));
    let _ = writeln!(o, "## How to rate-limit {}\n", md(&c.tool));
    let _ = writeln!(o, "{}\n", md(&p.limit_intro));
    o.push_str(&md_block("json", &p.limit));
    let _ = writeln!(o, "\n{}\n", md(&p.limit_note));
    let _ = writeln!(o, "## How to block {}\n", md(&c.tool));
    let _ = writeln!(o, "{}\n", md(&p.block_intro));
    o.push_str(&md_block("json", &p.block));
    let _ = writeln!(o, "\n{}", md(&p.block_note));
    o
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.5}\
pre{background:#f5f5f5;padding:1rem;overflow-x:auto}\
.badge{display:inline-block;padding:.1rem .6rem;border-radius:.3rem;color:#fff;font-weight:600}\
.risk-low{background:#2e7d32}.risk-medium{background:#f9a825;color:#000}.risk-high{background:#ef6c00}.risk-critical{background:#c62828}\
.poison{color:#c62828;font-weight:600}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}";

fn risk_class(r: Risk) -> &'static str {
    match r {
        Risk::Low => "risk-low",
        Risk::Medium => "risk-medium",
        Risk::High => "risk-high",
        Risk::Critical => "risk-critical",
    }
}

/// A catalogue page for one tool, as a standalone HTML document. All text taken from the tool
/// definition is escaped.
pub fn catalog_page_html(c: &Classification, tool: &Value) -> String {
    let p = page(c, tool);
    let desc = description_of(tool);
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{} — {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        html(&c.tool),
        html(&c.server)
    );
    let _ = writeln!(
        o,
        "<p><span class=\"badge {}\">{}</span> {} · server {} · confidence {:.2}{}{}</p>",
        risk_class(c.risk),
        html(&p.badge),
        c.category,
        html(&c.server),
        c.confidence,
        if c.catch_all.is_some() {
            " · catch-all"
        } else {
            ""
        },
        if c.is_poisoning_suspect() {
            " · <span class=\"poison\">poisoning suspect</span>"
        } else {
            ""
        }
    );
    let _ = writeln!(o, "<h1>{}</h1>", html(&c.tool));
    if desc.is_empty() {
        o.push_str("<blockquote><p>(no description)</p></blockquote>\n");
    } else {
        let _ = writeln!(
            o,
            "<blockquote><p>{}</p></blockquote>",
            html(&desc).replace('\n', "<br>")
        );
    }
    let _ = writeln!(
        o,
        "<h2>What {} does on {}</h2>",
        html(&c.tool),
        html(&c.server)
    );
    for w in &p.what {
        let _ = writeln!(o, "<p>{}</p>", html(w));
    }
    let _ = writeln!(o, "<h2>Why {} needs a policy</h2>", html(&c.tool));
    for w in &p.why {
        let _ = writeln!(o, "<p>{}</p>", html(w));
    }
    o.push_str("<h2>From the tool's definition</h2>\n<ul>\n");
    for e in &c.evidence {
        let _ = writeln!(o, "<li>{}</li>", html(e));
    }
    o.push_str("</ul>\n");
    if c.is_poisoning_suspect() {
        o.push_str("<h3 class=\"poison\">Poisoning findings</h3>\n<ul>\n");
        for f in &c.poisoning {
            let _ = writeln!(o, "<li>{}</li>", html(f));
        }
        o.push_str("</ul>\n");
    }
    let _ = writeln!(
        o,
        "<h2>Recommended policy</h2>\n<p>policy.json</p>\n<pre><code>{}</code></pre>\n<p>{}</p>",
        html(&p.policy),
        html(&p.policy_note)
    );
    let _ = writeln!(
        o,
        "<h2>How to rate-limit {}</h2>\n<p>{}</p>\n<pre><code>{}</code></pre>\n<p>{}</p>",
        html(&c.tool),
        html(&p.limit_intro),
        html(&p.limit),
        html(&p.limit_note)
    );
    let _ = writeln!(
        o,
        "<h2>How to block {}</h2>\n<p>{}</p>\n<pre><code>{}</code></pre>\n<p>{}</p>",
        html(&c.tool),
        html(&p.block_intro),
        html(&p.block),
        html(&p.block_note)
    );
    o.push_str("</body>\n</html>\n");
    o
}

fn counts(classes: &[Classification]) -> String {
    let mut parts = Vec::new();
    for r in [Risk::Critical, Risk::High, Risk::Medium, Risk::Low] {
        let n = classes.iter().filter(|c| c.risk == r).count();
        if n > 0 {
            parts.push(format!("{n} {r}"));
        }
    }
    let hidden = classes.iter().filter(|c| c.hide).count();
    format!(
        "{} tools: {}; {hidden} hidden by the recommended policy",
        classes.len(),
        parts.join(", ")
    )
}

fn flags(c: &Classification) -> String {
    let mut f = Vec::new();
    if let Some(ca) = &c.catch_all {
        f.push(format!("catch-all ({})", ca.kind));
    }
    if c.is_poisoning_suspect() {
        f.push("poisoning suspect".to_string());
    }
    if c.hide {
        f.push("hidden".to_string());
    }
    f.join(", ")
}

/// An index page for a server's tools, in Markdown: one row per tool (in the order given),
/// linking to `<slug>.md`.
pub fn catalog_index_markdown(server: &str, classes: &[Classification]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {} — tool catalogue\n", md(server));
    let _ = writeln!(o, "{}\n", md(&counts(classes)));
    o.push_str("| Tool | Risk | Category | Confidence | Flags | What it does |\n|---|---|---|---|---|---|\n");
    for c in classes {
        let _ = writeln!(
            o,
            "| [{}]({}.md) | {} | {} | {:.2} | {} | {} |",
            md(&c.tool),
            page_slug(&c.tool),
            c.risk,
            c.category,
            c.confidence,
            md(&flags(c)),
            md(&c.summary)
        );
    }
    o
}

/// An index page for a server's tools, as a standalone HTML document linking to
/// `<slug>.html`. All tool-provided text is escaped.
pub fn catalog_index_html(server: &str, classes: &[Classification]) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{} — tool catalogue</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{} — tool catalogue</h1>\n<p>{}</p>\n",
        html(server),
        html(server),
        html(&counts(classes))
    );
    o.push_str("<table>\n<thead><tr><th>Tool</th><th>Risk</th><th>Category</th><th>Confidence</th><th>Flags</th><th>What it does</th></tr></thead>\n<tbody>\n");
    for c in classes {
        let _ = writeln!(
            o,
            "<tr><td><a href=\"{}.html\">{}</a></td><td><span class=\"badge {}\">{}</span></td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
            html(&page_slug(&c.tool)),
            html(&c.tool),
            risk_class(c.risk),
            c.risk,
            c.category,
            c.confidence,
            html(&flags(c)),
            html(&c.summary)
        );
    }
    o.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    o
}
