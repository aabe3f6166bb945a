//! Catch-all executors: tools whose effect is chosen by an argument (a model method, a shell
//! command, a SQL statement, code, an HTTP method and URL, another tool's name, or an
//! operation enum). No single category fits them, so the recommendation adds argument rules
//! that only reference arguments the tool's `inputSchema` declares.

use crate::features::Arg;
use regex::Regex;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt;
use std::sync::LazyLock;

/// What kind of catch-all a tool is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CatchAllKind {
    /// An ORM bridge: any method on any model (`execute(model, method, args)`, Odoo
    /// `execute_kw`).
    ModelMethod,
    /// A generic RPC call: a `method` name picks what runs.
    Rpc,
    /// A shell or SSH command.
    Shell,
    /// A raw SQL statement.
    Sql,
    /// Code evaluated by an interpreter (JavaScript, Python, …).
    Code,
    /// A raw HTTP request or API passthrough (method + URL/endpoint).
    Http,
    /// A call forwarded to another tool named in the arguments.
    ToolProxy,
    /// An operation selector whose enum includes destructive operations.
    Operation,
}

impl fmt::Display for CatchAllKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CatchAllKind::ModelMethod => "model-method bridge",
            CatchAllKind::Rpc => "RPC passthrough",
            CatchAllKind::Shell => "shell command runner",
            CatchAllKind::Sql => "raw SQL runner",
            CatchAllKind::Code => "code evaluator",
            CatchAllKind::Http => "HTTP/API passthrough",
            CatchAllKind::ToolProxy => "tool proxy",
            CatchAllKind::Operation => "multi-operation tool",
        })
    }
}

/// A tool whose risk depends on its arguments.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CatchAll {
    /// Which kind.
    pub kind: CatchAllKind,
    /// The declared arguments that decide what happens (empty when the schema declares none:
    /// then no argument rule can be recommended).
    pub selectors: Vec<String>,
    /// What the recommended argument rules do, one line each.
    pub rules: Vec<String>,
}

/// Argument rule entries to merge into a tool's rule object.
#[derive(Clone, Debug, Default)]
pub(crate) struct ArgRules {
    pub require: Vec<Value>,
    pub deny_if: Vec<Value>,
    pub approve_if: Vec<Value>,
}

impl ArgRules {
    pub(crate) fn is_empty(&self) -> bool {
        self.require.is_empty() && self.deny_if.is_empty() && self.approve_if.is_empty()
    }
}

pub(crate) struct Detected {
    pub catch_all: CatchAll,
    pub evidence: Vec<String>,
    pub rules: ArgRules,
    /// The tool claims to be read-only (a SQL runner that says so).
    pub read_only_sql: bool,
}

/// Statements a read-only SQL argument must start with.
pub(crate) const SQL_READ: &str = r"(?i)^\s*(select|with)\b";
/// Data- or schema-changing SQL keywords, and stacked statements.
pub(crate) const SQL_WRITE: &str = r"(?i)(;\s*\S|\b(insert|update|delete|merge|upsert|drop|alter|truncate|create|grant|revoke|copy|call|exec|execute|attach|detach|pragma|vacuum|into)\b)";
/// Shell metacharacters: chaining, pipes, substitution, redirection, new lines.
pub(crate) const SHELL_META: &str = r"[;&|`$<>\r\n]";
/// Commands that destroy, escalate or open a remote shell.
pub(crate) const SHELL_DANGER: &str = r"(?i)(\brm\s+-[a-z]*[rf]|\bmkfs|\bdd\s+if=|\b(shutdown|reboot|halt|poweroff)\b|\bchmod\s+(-R|777)\b|\bchown\s+-R\b|\bsudo\b|\bsu\s|\bgit\s+(push\s.*(-f\b|--force)|reset\s+--hard|clean\s+-[a-z]*f)|\bdrop\s+(database|table)\b|\bkill\s+-9\b|\bncat?\s|/dev/tcp)";
/// Code that reaches the OS, the network, or the page's secrets.
pub(crate) const CODE_DANGER: &str = r"(?i)(\bimport\s+(os|subprocess|shutil|socket|ctypes|pty)\b|\bfrom\s+(os|subprocess|shutil|socket)\s+import\b|__import__|\bsubprocess\b|\bos\.(system|popen|remove|unlink|rmdir|exec|spawn)|shutil\.rmtree|child_process|\brequire\s*\(|process\.(env|exit|kill)|\beval\s*\(|\bexec\s*\(|document\.cookie|localStorage|sessionStorage|XMLHttpRequest|\bfetch\s*\(|sendBeacon|\bnew\s+Function\b)";
/// Method names that delete or destroy.
pub(crate) const METHOD_DANGER: &str = r"(?i)(unlink|delete|destroy|drop|purge|truncate|wipe|erase|remove|terminate|uninstall|shutdown)";
/// Tool names (behind a proxy) that delete, destroy or execute.
pub(crate) const TOOL_DANGER: &str = r"(?i)(delete|remove|destroy|drop|purge|prune|wipe|truncate|kill|terminate|exec|shell|deploy|stop|restart|run)";
/// Hosts and networks a URL passthrough must never reach: loopback, "this host", private
/// and link-local networks (cloud metadata at 169.254.169.254 among them), IPv6 unique-local
/// and link-local. Judged by `url_host_in`, which normalizes every spelling of an address
/// (`127.1`, `2130706433`, `[::ffff:127.0.0.1]`) and denies URLs it cannot judge or whose
/// scheme is not http/https (`file:`, `gopher:`).
pub(crate) const SSRF_HOSTS: &[&str] = &[
    "localhost",
    "*.localhost",
    "127.0.0.0/8",
    "0.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "[::1]/128",
    "[::]/128",
    "[fc00::]/7",
    "[fe80::]/10",
    "metadata.google.internal",
];

/// Odoo methods that delete, post, cancel, reverse, pay, send or archive — the workflow
/// steps that should go through their own tool or a human.
pub(crate) const ODOO_METHODS: &[&str] = &[
    "unlink",
    "action_post",
    "button_cancel",
    "action_cancel",
    "button_draft",
    "action_draft",
    "action_reverse",
    "action_register_payment",
    "action_create_payments",
    "message_post",
    "action_invoice_sent",
    "action_quotation_send",
    "action_archive",
    "toggle_active",
];

/// Odoo models where a generic call changes code, access rights, users or configuration.
pub(crate) const ODOO_MODELS: &[&str] = &[
    "ir.actions.server",
    "ir.cron",
    "base.automation",
    "ir.model",
    "ir.model.fields",
    "ir.model.access",
    "ir.rule",
    "res.users",
    "res.groups",
    "ir.config_parameter",
    "ir.module.module",
];

static CTX_SQL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bsql\b|\bselect\s+(query|queries|statement)|\bpostgres|\bmysql|\bsqlite|clickhouse|duckdb|snowflake|bigquery|\bt-sql\b").unwrap()
});
static CTX_SHELL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(shell|ssh|bash|zsh|terminal|command[- ]line|cli|commands?|powershell|cmd)\b",
    )
    .unwrap()
});
static CTX_CODE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(javascript|js|python|code|script|expression|lua|ruby|typescript|snippet)\b")
        .unwrap()
});
static CTX_HTTP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(http|https|rest|api|endpoint|request|controller|route|graphql)\b").unwrap()
});
static CTX_PROXY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(forward|proxy|proxies|relay|delegate|dispatch)\w*\b[^.]{0,40}\btools?\b|\btool\s+call").unwrap()
});
static CTX_ORM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(execute_kw|call_kw|orm|model\s+method|any\s+(model\s+)?method|odoo)\b")
        .unwrap()
});
static CTX_ODOO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(odoo|execute_kw|call_kw|openerp)\b").unwrap());
static HTTP_METHOD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^(get|head|options|post|put|patch|delete)$").unwrap());

/// Desc-only detection phrases, for definitions without a schema.
static DESC_SQL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(raw\s+sql|sql\s+quer(y|ies)|(execute|executes|run|runs)\s+(raw\s+|arbitrary\s+)?sql)\b").unwrap()
});
static DESC_SHELL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(shell\s+commands?|terminal\s+commands?|via\s+ssh|ssh\s+commands?|bash\s+commands?)\b").unwrap()
});
static DESC_CODE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(execute|executes|run|runs|evaluate|evaluates)\s+(arbitrary\s+)?(javascript|python|js|code|scripts?)\b").unwrap()
});
static DESC_HTTP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(raw\s+http|http\s+requests?|api\s+calls?|api\s+requests?|rest\s+api\s+directly)\b",
    )
    .unwrap()
});

fn find<'a>(args: &'a [Arg], names: &[&str]) -> Option<&'a Arg> {
    args.iter()
        .find(|a| a.path_safe() && names.contains(&a.lname.as_str()))
}

fn cond(arg: &Arg, op: &str, value: Value) -> Value {
    json!({ "path": format!("args.{}", arg.name), "op": op, "value": value })
}

fn entry(conds: Vec<Value>, on_deny: &str) -> Value {
    json!({ "conditions": conds, "on_deny": on_deny })
}

/// Everything the detector looks at.
pub(crate) struct Ctx<'a> {
    pub server: &'a str,
    pub name_tokens: &'a [String],
    pub desc: &'a str,
    pub args: &'a [Arg],
    /// The name or description leads with an execute verb (run, execute, call, eval …).
    pub exec_verb: bool,
    /// The description claims read-only behaviour.
    pub read_only_claim: bool,
}

impl Ctx<'_> {
    fn text(&self) -> String {
        format!("{} {}", self.name_tokens.join(" "), self.desc)
    }
}

/// Recognises a catch-all executor and builds its argument rules.
pub(crate) fn detect(c: &Ctx) -> Option<Detected> {
    if c.args.is_empty() {
        return detect_from_description(c);
    }
    let text = c.text();
    let arg_text = |a: &Arg| format!("{} {}", a.lname, a.desc);

    // A call forwarded to another tool.
    if let Some(tool) = find(c.args, &["tool", "tool_name", "toolname", "target_tool"]) {
        let payload = find(
            c.args,
            &[
                "arguments",
                "args",
                "params",
                "parameters",
                "input",
                "tool_args",
            ],
        );
        if tool.free_string() && (payload.is_some() || CTX_PROXY.is_match(&text)) {
            return Some(tool_proxy(tool, payload));
        }
    }

    let method = find(
        c.args,
        &["method", "method_name", "rpc_method", "function_name"],
    );
    let url = find(c.args, &["url", "uri", "href"]);
    let endpoint = find(
        c.args,
        &["endpoint", "path", "route", "api_path", "resource_path"],
    );

    // An HTTP method selector next to a URL or endpoint.
    if let Some(m) = method {
        let http_enum =
            !m.enum_values.is_empty() && m.enum_values.iter().all(|v| HTTP_METHOD.is_match(v));
        let http_desc = m.desc.contains("http");
        if (url.is_some() || endpoint.is_some())
            && (http_enum || http_desc || CTX_HTTP.is_match(&text))
        {
            return Some(http(Some(m), url.or(endpoint), url));
        }
    }

    // An ORM bridge or an RPC passthrough.
    if let Some(m) = method.filter(|m| m.free_string()) {
        let model = find(c.args, &["model", "model_name", "object", "res_model"]);
        if let Some(model) = model.filter(|a| a.free_string()) {
            let odoo = CTX_ODOO.is_match(&text) || c.server.to_lowercase().contains("odoo");
            return Some(model_method(m, model, odoo));
        }
        let service = find(c.args, &["service", "namespace", "interface", "resource"]);
        if c.exec_verb || service.is_some() || text.to_lowercase().contains("rpc") {
            return Some(rpc(m, service));
        }
    }

    // A request passthrough without a method argument (it decides by URL alone).
    if let Some(u) = url.or(endpoint) {
        let desc_says = DESC_HTTP.is_match(&text) || text.to_lowercase().contains("passthrough");
        if u.free_string() && desc_says && c.exec_verb {
            return Some(http(None, Some(u), url));
        }
    }

    // Raw SQL.
    let sql = c.args.iter().filter(|a| a.path_safe()).find(|a| {
        let named = matches!(
            a.lname.as_str(),
            "sql" | "sql_query" | "sql_statement" | "sqlquery"
        );
        let generic = matches!(a.lname.as_str(), "query" | "statement" | "stmt" | "queries");
        named || generic && (CTX_SQL.is_match(&text) || CTX_SQL.is_match(&arg_text(a)))
    });
    if let Some(a) = sql {
        return Some(sql_runner(a, c.read_only_claim));
    }

    // Shell commands.
    let shell: Vec<&Arg> = c
        .args
        .iter()
        .filter(|a| a.path_safe() && a.free_string())
        .filter(|a| {
            let named = matches!(
                a.lname.as_str(),
                "command"
                    | "cmd"
                    | "commands"
                    | "shell_command"
                    | "custom_command"
                    | "bash"
                    | "shell"
                    | "command_line"
                    | "cmdline"
                    | "cli_command"
            );
            let script = a.lname == "script" && CTX_SHELL.is_match(&format!("{text} {}", a.desc));
            (named || script)
                && (CTX_SHELL.is_match(&text) || CTX_SHELL.is_match(&a.desc) || c.exec_verb)
        })
        .collect();
    if !shell.is_empty() {
        let extra: Vec<&Arg> = c
            .args
            .iter()
            .filter(|a| a.path_safe() && a.free_string())
            .filter(|a| {
                matches!(
                    a.lname.as_str(),
                    "args" | "arguments" | "flags" | "options" | "extra_args"
                )
            })
            .collect();
        return Some(shell_runner(&shell, &extra));
    }

    // Code evaluation.
    let code = c
        .args
        .iter()
        .filter(|a| a.path_safe() && a.free_string())
        .find(|a| {
            matches!(
                a.lname.as_str(),
                "code"
                    | "script"
                    | "javascript"
                    | "js"
                    | "python"
                    | "expression"
                    | "function"
                    | "snippet"
                    | "source_code"
                    | "program"
            ) && (c.exec_verb || text.to_lowercase().contains("eval"))
                && (CTX_CODE.is_match(&text) || CTX_CODE.is_match(&arg_text(a)))
        });
    if let Some(a) = code {
        return Some(code_runner(a));
    }

    // An operation enum that includes destructive operations.
    for a in c.args.iter().filter(|a| a.path_safe() && a.is_string()) {
        let bad: Vec<&String> = a
            .enum_values
            .iter()
            .filter(|v| crate::lexicon::destructive_operation(v))
            .collect();
        if !bad.is_empty() && bad.len() < a.enum_values.len() {
            return Some(operation(a, &bad));
        }
    }
    None
}

fn detect_from_description(c: &Ctx) -> Option<Detected> {
    let text = c.text();
    let kind = if DESC_SQL.is_match(&text) {
        CatchAllKind::Sql
    } else if DESC_SHELL.is_match(&text) {
        CatchAllKind::Shell
    } else if DESC_CODE.is_match(&text) {
        CatchAllKind::Code
    } else if DESC_HTTP.is_match(&text) && c.exec_verb {
        CatchAllKind::Http
    } else if CTX_ORM.is_match(&text) && text.to_lowercase().contains("method") && c.exec_verb {
        CatchAllKind::ModelMethod
    } else {
        return None;
    };
    Some(Detected {
        catch_all: CatchAll {
            kind,
            selectors: Vec::new(),
            rules: vec![
                "none: the definition declares no arguments, so no argument rule can be written"
                    .to_string(),
            ],
        },
        evidence: vec![format!(
            "catch-all ({kind}) by its description; the definition declares no arguments to constrain"
        )],
        rules: ArgRules::default(),
        read_only_sql: kind == CatchAllKind::Sql && c.read_only_claim,
    })
}

fn tool_proxy(tool: &Arg, payload: Option<&Arg>) -> Detected {
    let rules = ArgRules {
        deny_if: vec![entry(
            vec![cond(tool, "regex", json!(TOOL_DANGER))],
            "This proxy does not forward tools that delete, execute or deploy; call them through a rule of their own.",
        )],
        ..Default::default()
    };
    let via = payload
        .map(|p| format!(" with arguments in {}", p.describe()))
        .unwrap_or_default();
    Detected {
        catch_all: CatchAll {
            kind: CatchAllKind::ToolProxy,
            selectors: vec![tool.name.clone()],
            rules: vec![format!(
                "deny when `{}` names a tool that deletes, executes or deploys",
                tool.name
            )],
        },
        evidence: vec![format!(
            "catch-all: argument {} names another tool to call{via} — the proxied tool, not this one, decides the effect",
            tool.describe()
        )],
        rules,
        read_only_sql: false,
    }
}

fn http(method: Option<&Arg>, target: Option<&Arg>, url: Option<&Arg>) -> Detected {
    let mut rules = ArgRules::default();
    let mut lines = Vec::new();
    let mut selectors = Vec::new();
    if let Some(m) = method {
        selectors.push(m.name.clone());
        let declared: Vec<String> = m.enum_values.clone();
        let pick = |names: &[&str]| -> Vec<Value> {
            if declared.is_empty() {
                names
                    .iter()
                    .flat_map(|n| [json!(n), json!(n.to_lowercase())])
                    .collect()
            } else {
                declared
                    .iter()
                    .filter(|v| names.iter().any(|n| n.eq_ignore_ascii_case(v)))
                    .map(|v| json!(v))
                    .collect()
            }
        };
        let deletes = pick(&["DELETE"]);
        if !deletes.is_empty() {
            rules.deny_if.push(entry(
                vec![cond(m, "in", Value::Array(deletes))],
                "DELETE requests through the raw API passthrough are denied.",
            ));
            lines.push(format!("deny `{}` DELETE", m.name));
        }
        let writes = pick(&["POST", "PUT", "PATCH"]);
        if !writes.is_empty() {
            rules.approve_if.push(json!({
                "conditions": [cond(m, "in", Value::Array(writes))],
                "reason": "A write request through the raw API passthrough needs a human approval."
            }));
            lines.push(format!("approval for `{}` POST/PUT/PATCH", m.name));
        }
        let default_writes = m.default.as_ref().and_then(Value::as_str).is_some_and(|d| {
            !matches!(d.to_ascii_uppercase().as_str(), "GET" | "HEAD" | "OPTIONS")
        });
        if default_writes {
            rules.approve_if.push(json!({
                "conditions": [cond(m, "exists", json!(false))],
                "reason": "Without a method this passthrough sends a write request; it needs a human approval."
            }));
            lines.push(format!(
                "approval when `{}` is left to its write default",
                m.name
            ));
        }
    }
    if let Some(u) = url.filter(|u| u.free_string()) {
        rules.deny_if.push(entry(
            vec![cond(u, "url_host_in", json!(SSRF_HOSTS))],
            "Requests to local files, localhost or private networks are denied.",
        ));
        lines.push(format!(
            "deny `{}` pointing at local files or private networks",
            u.name
        ));
    }
    if let Some(t) = target {
        if !selectors.contains(&t.name) {
            selectors.push(t.name.clone());
        }
    }
    let what = match (method, target) {
        (Some(m), Some(t)) => format!(
            "argument {} with {} sends any request the agent composes",
            m.describe(),
            t.describe()
        ),
        (None, Some(t)) => format!("argument {} is sent as a raw request", t.describe()),
        _ => "the description says it sends raw requests".to_string(),
    };
    Detected {
        catch_all: CatchAll {
            kind: CatchAllKind::Http,
            selectors,
            rules: lines,
        },
        evidence: vec![format!("catch-all (HTTP/API passthrough): {what}")],
        rules,
        read_only_sql: false,
    }
}

fn model_method(method: &Arg, model: &Arg, odoo: bool) -> Detected {
    let mut rules = ArgRules::default();
    let mut lines = Vec::new();
    if odoo {
        rules.deny_if.push(entry(
            vec![cond(
                method,
                "in",
                json!(ODOO_METHODS),
            )],
            "Deleting, posting, cancelling, paying, sending or archiving through the generic executor is denied; use the dedicated tool or ask for an approval.",
        ));
        lines.push(format!(
            "deny `{}` in [{}]",
            method.name,
            ODOO_METHODS.join(", ")
        ));
    }
    rules.deny_if.push(entry(
        vec![cond(method, "regex", json!(METHOD_DANGER))],
        "Methods that delete or destroy records are denied through the generic executor.",
    ));
    lines.push(format!(
        "deny `{}` matching delete/destroy/drop/unlink/…",
        method.name
    ));
    if odoo {
        rules.deny_if.push(entry(
            vec![cond(model, "in", json!(ODOO_MODELS))],
            "Security-sensitive models (server actions, scheduled jobs, access rights, users, system parameters, modules) are denied through the generic executor.",
        ));
        lines.push(format!(
            "deny `{}` in security-sensitive models ({})",
            model.name,
            ODOO_MODELS.join(", ")
        ));
    }
    Detected {
        catch_all: CatchAll {
            kind: CatchAllKind::ModelMethod,
            selectors: vec![model.name.clone(), method.name.clone()],
            rules: lines,
        },
        evidence: vec![format!(
            "catch-all: arguments {} and {} call any method on any model — a read, an update or a deletion depending on the arguments",
            model.describe(),
            method.describe()
        )],
        rules,
        read_only_sql: false,
    }
}

fn rpc(method: &Arg, service: Option<&Arg>) -> Detected {
    let rules = ArgRules {
        deny_if: vec![entry(
            vec![cond(method, "regex", json!(METHOD_DANGER))],
            "Methods that delete or destroy are denied through the generic RPC call.",
        )],
        ..Default::default()
    };
    let mut selectors = vec![method.name.clone()];
    let on = match service {
        Some(s) => {
            selectors.insert(0, s.name.clone());
            format!(" on the service in {}", s.describe())
        }
        None => String::new(),
    };
    Detected {
        catch_all: CatchAll {
            kind: CatchAllKind::Rpc,
            selectors,
            rules: vec![format!(
                "deny `{}` matching delete/destroy/drop/…",
                method.name
            )],
        },
        evidence: vec![format!(
            "catch-all: argument {} picks the remote method to run{on}",
            method.describe()
        )],
        rules,
        read_only_sql: false,
    }
}

fn sql_runner(a: &Arg, read_only_claim: bool) -> Detected {
    let mut rules = ArgRules::default();
    let mut lines = Vec::new();
    if a.free_string() {
        rules.require.push(entry(
            vec![cond(a, "regex", json!(SQL_READ))],
            "Only SELECT (or WITH … SELECT) statements are allowed.",
        ));
        rules.deny_if.push(entry(
            vec![cond(a, "regex", json!(SQL_WRITE))],
            "Statements that change data or schema, or several statements at once, are denied.",
        ));
        lines.push(format!("require `{}` to start with SELECT or WITH", a.name));
        lines.push(format!(
            "deny `{}` containing data-changing keywords or a second statement",
            a.name
        ));
    } else {
        lines.push(format!(
            "none: `{}` is not a plain string, so policy v1 cannot check each statement",
            a.name
        ));
    }
    let claim = if read_only_claim {
        "; the description claims read-only, the rule makes the gateway check it"
    } else {
        ""
    };
    Detected {
        catch_all: CatchAll {
            kind: CatchAllKind::Sql,
            selectors: vec![a.name.clone()],
            rules: lines,
        },
        evidence: vec![format!(
            "catch-all: argument {} is a raw SQL statement — a SELECT or a DROP TABLE alike{claim}",
            a.describe()
        )],
        rules,
        read_only_sql: read_only_claim,
    }
}

fn shell_runner(cmds: &[&Arg], extra: &[&Arg]) -> Detected {
    let mut rules = ArgRules::default();
    let mut lines = Vec::new();
    for a in cmds.iter().chain(extra) {
        rules.deny_if.push(entry(
            vec![cond(a, "regex", json!(SHELL_META))],
            "Shell metacharacters (; & | ` $ < > and new lines) are denied: one command per call, no chaining, substitution or redirection.",
        ));
        lines.push(format!("deny shell metacharacters in `{}`", a.name));
    }
    for a in cmds {
        rules.deny_if.push(entry(
            vec![cond(a, "regex", json!(SHELL_DANGER))],
            "Destructive or privilege-raising commands (rm -rf, mkfs, dd, shutdown, sudo, force pushes, reverse shells) are denied.",
        ));
        lines.push(format!(
            "deny destructive or privilege-raising commands in `{}`",
            a.name
        ));
    }
    let names: Vec<String> = cmds.iter().map(|a| a.describe()).collect();
    let mut evidence = vec![format!(
        "catch-all: argument {} is a shell command — any program the remote user may run",
        names.join(", ")
    )];
    if !extra.is_empty() {
        let e: Vec<String> = extra.iter().map(|a| a.describe()).collect();
        evidence.push(format!(
            "argument {} is appended to the command line",
            e.join(", ")
        ));
    }
    Detected {
        catch_all: CatchAll {
            kind: CatchAllKind::Shell,
            selectors: cmds.iter().chain(extra).map(|a| a.name.clone()).collect(),
            rules: lines,
        },
        evidence,
        rules,
        read_only_sql: false,
    }
}

fn code_runner(a: &Arg) -> Detected {
    let rules = ArgRules {
        deny_if: vec![entry(
            vec![cond(a, "regex", json!(CODE_DANGER))],
            "Code that reaches the operating system, the network or stored secrets is denied (a tripwire, not a sandbox).",
        )],
        ..Default::default()
    };
    Detected {
        catch_all: CatchAll {
            kind: CatchAllKind::Code,
            selectors: vec![a.name.clone()],
            rules: vec![format!(
                "deny `{}` using OS, process, network or storage APIs",
                a.name
            )],
        },
        evidence: vec![format!(
            "catch-all: argument {} is code the tool evaluates — it can do anything its interpreter can",
            a.describe()
        )],
        rules,
        read_only_sql: false,
    }
}

fn operation(a: &Arg, bad: &[&String]) -> Detected {
    let values: Vec<Value> = bad.iter().map(|v| json!(v)).collect();
    let list: Vec<&str> = bad.iter().map(|s| s.as_str()).collect();
    let rules = ArgRules {
        deny_if: vec![entry(
            vec![cond(a, "in", Value::Array(values))],
            "Destructive operations of this tool are denied; the others stay available.",
        )],
        ..Default::default()
    };
    Detected {
        catch_all: CatchAll {
            kind: CatchAllKind::Operation,
            selectors: vec![a.name.clone()],
            rules: vec![format!("deny `{}` in [{}]", a.name, list.join(", "))],
        },
        evidence: vec![format!(
            "catch-all: argument {} selects the operation, and its values include {}",
            a.describe(),
            list.iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )],
        rules,
        read_only_sql: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile_and_match() {
        let sql_read = Regex::new(SQL_READ).unwrap();
        let sql_write = Regex::new(SQL_WRITE).unwrap();
        assert!(sql_read.is_match("  select * from t"));
        assert!(sql_read.is_match("WITH x AS (SELECT 1) SELECT * FROM x"));
        assert!(!sql_read.is_match("DROP TABLE t"));
        assert!(sql_write.is_match("SELECT 1; DROP TABLE t"));
        assert!(sql_write.is_match("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"));
        assert!(!sql_write.is_match("SELECT created_at, updated_by FROM t WHERE x = 1;"));
        let meta = Regex::new(SHELL_META).unwrap();
        assert!(meta.is_match("ls; rm -rf /"));
        assert!(meta.is_match("echo $(id)"));
        assert!(!meta.is_match("git status --short"));
        let danger = Regex::new(SHELL_DANGER).unwrap();
        assert!(danger.is_match("rm -rf /opt"));
        assert!(danger.is_match("git push origin main --force"));
        assert!(!danger.is_match("systemctl status odoo"));
        let m = Regex::new(METHOD_DANGER).unwrap();
        assert!(m.is_match("unlink"));
        assert!(!m.is_match("action_confirm"));
        for h in SSRF_HOSTS {
            portcullis_policy::norm::HostPattern::parse(h).unwrap();
        }
        Regex::new(CODE_DANGER).unwrap();
        Regex::new(TOOL_DANGER).unwrap();
    }
}
