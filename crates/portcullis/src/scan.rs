//! `scan`, `init` and `catalog`: list a server's tools, classify each one with
//! `portcullis-classify`, then print a table, write starter policies, or render a catalogue.
//!
//! Tools come from one kind of source per run: a saved `tools/list` result (`--from-file`),
//! a stdio MCP server started for the occasion (`-- CMD ARGS…`), every `[[servers]]` entry of
//! a configuration file (`--config`, the default when `./portcullis.toml` exists), or an HTTP
//! server (`--url`). A source that fails is reported on standard error and the others are
//! still processed; the exit code is then 1. Usage errors exit with 2.
//!
//! Every live server gets the same conversation, through `portcullis-client`: `initialize`
//! (the 2025-11-25 handshake, which dual-era servers accept too),
//! `notifications/initialized`, then `tools/list` until the last page. A stdio server's stray
//! output, exit status and stderr are quoted when it fails; an HTTP server is reached over
//! Streamable HTTP, or legacy HTTP+SSE when the URL's path ends in `/sse`.

use clap::{Args, ValueEnum};
use portcullis_classify::{
    catalog_index_html, catalog_index_markdown, catalog_page_html, catalog_page_markdown,
    classify_all, page_slug, starter_policy, Category, Classification, Preset, Risk,
};
use portcullis_client::{
    truncate, without_userinfo, ChildSpec, Era, ErrorKind, Options, UpstreamSpec,
};
use portcullis_gateway::config::{expand_env, Config};
use portcullis_policy::{lint, Engine};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

/// Width of the WHY column when the terminal's width is unknown or output is not a terminal.
const DEFAULT_WHY: usize = 100;

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

/// Where the tools come from; shared by `scan`, `init` and `catalog`.
#[derive(Args, Debug)]
pub struct SourceArgs {
    /// Scan every `[[servers]]` entry of this configuration file. The default when no other
    /// source is given and ./portcullis.toml exists.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["url", "from_file", "command"])]
    config: Option<PathBuf>,
    /// Scan an MCP server over HTTP: Streamable HTTP (`http://host:port/mcp`), or legacy
    /// HTTP+SSE when the path ends in `/sse`.
    #[arg(long, value_name = "URL", conflicts_with_all = ["from_file", "command"])]
    url: Option<String>,
    /// A header to send to the --url server, as `Name: value` (for example
    /// `Authorization: Bearer ${TOKEN}`: `${VAR}` is read from the environment, which keeps
    /// secrets out of the process list); repeatable.
    // `requires` alone is waived when a source that conflicts with --url is given.
    #[arg(
        long = "header",
        value_name = "NAME: VALUE",
        requires = "url",
        conflicts_with_all = ["config", "from_file", "command"]
    )]
    headers: Vec<String>,
    /// Classify a saved tool list instead of connecting: a `tools/list` result
    /// (`{"tools": [...]}`), a JSON-RPC response wrapping one, or a bare array of tools.
    #[arg(long, value_name = "FILE", conflicts_with = "command")]
    from_file: Option<PathBuf>,
    /// Server name. With --from-file, --url or a command: the name to report and to name files
    /// after (default: the file's name — its directory's for `tools.json` — or the server's own
    /// `serverInfo.name`). With --config: scan only this entry.
    #[arg(long, value_name = "NAME")]
    server: Option<String>,
    /// Seconds each server gets to start, answer `initialize` and list every page of tools.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// A stdio MCP server to start and scan, after `--` (for example
    /// `-- npx -y @modelcontextprotocol/server-everything`).
    #[arg(last = true, value_name = "SERVER_COMMAND")]
    command: Vec<String>,
}

/// `scan` arguments.
#[derive(Args, Debug)]
pub struct ScanArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Print an array of objects, one per server, with every classification in full.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print a Markdown table per server.
    #[arg(long)]
    markdown: bool,
}

/// How strict a starter policy is (every preset denies unlisted tools and hides poisoning
/// suspects).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// Read 60/min; Write needs approval; Execute, Financial and Other denied; Destructive hidden.
    Strict,
    /// Read allowed; Write 30/min; Execute 10/min; Financial needs approval; Destructive hidden.
    Recommended,
    /// Read allowed; Write 60/min; Execute 30/min; Financial needs approval; Destructive denied.
    Permissive,
}

impl PresetArg {
    fn preset(self) -> Preset {
        match self {
            PresetArg::Strict => Preset::Strict,
            PresetArg::Recommended => Preset::Recommended,
            PresetArg::Permissive => Preset::Permissive,
        }
    }
}

/// `init` arguments.
#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// How strict the starter policies are.
    #[arg(long, value_enum, default_value_t = PresetArg::Recommended)]
    preset: PresetArg,
    /// Directory to write `<server>.json` into (created if needed).
    #[arg(long, value_name = "DIR", default_value = "policies")]
    out: PathBuf,
    /// Overwrite policy files that already exist.
    #[arg(long)]
    force: bool,
}

/// `catalog` arguments.
#[derive(Args, Debug)]
pub struct CatalogArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Directory to write `<server>/index.{md,html}` and `<server>/<tool>.{md,html}` into.
    #[arg(long, value_name = "DIR", default_value = "catalog")]
    out: PathBuf,
}

// ---------------------------------------------------------------------------------------------
// Sources and scanning
// ---------------------------------------------------------------------------------------------

/// How to reach one server.
#[derive(Debug)]
enum Origin {
    /// A saved tool list.
    File(PathBuf),
    /// A stdio server: program, arguments and extra environment (values may use `${VAR}`).
    Command {
        argv: Vec<String>,
        env: BTreeMap<String, String>,
    },
    /// An HTTP server: its URL and the headers to send (values may use `${VAR}`).
    Url {
        url: String,
        headers: Vec<(String, String)>,
    },
}

impl Origin {
    /// Where the tools came from, for people.
    fn describe(&self) -> String {
        match self {
            Origin::File(p) => p.display().to_string(),
            Origin::Command { argv, .. } => argv.join(" "),
            Origin::Url { url, .. } => without_userinfo(url),
        }
    }
}

/// Whether a URL can be scanned: `http://` or `https://` followed by a host.
fn check_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    if rest.starts_with(['/', '?', '#']) || rest.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok(())
}

/// Splits a `--header` argument, `Name: value`, into its name and value (both trimmed).
fn parse_header(h: &str) -> Result<(String, String), String> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| format!("--header {h:?}: write it as 'Name: value'"))?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!(
            "--header {h:?}: the header name must be one word before the ':'"
        ));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// One server to scan.
#[derive(Debug)]
struct Target {
    /// Its name (may be replaced by the server's own name, see `named`).
    name: String,
    /// Whether the name was given (`--server`, a config entry) rather than guessed.
    named: bool,
    origin: Origin,
}

/// A server's tools, classified.
struct Listed {
    /// The definitions, in the server's order, one per name.
    tools: Vec<Value>,
    /// Their classifications, highest risk first.
    classes: Vec<Classification>,
}

/// The outcome of scanning one server.
struct Scanned {
    name: String,
    source: String,
    outcome: Result<Listed, String>,
}

/// Names usable as file names and in `/mcp/<name>`: 1-64 of `A-Z a-z 0-9 _ -`.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Makes a valid server name out of anything (other characters become `-`).
fn sanitize_name(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let t: String = mapped.trim_matches('-').chars().take(64).collect();
    if t.is_empty() {
        "server".to_string()
    } else {
        t
    }
}

/// The default name for a saved list: its file stem, or its directory's name for a file
/// called `tools.json`.
fn name_of_file(p: &Path) -> String {
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem == "tools" {
        let dir = p
            .canonicalize()
            .ok()
            .and_then(|c| c.parent().and_then(|d| d.file_name()).map(|d| d.to_owned()));
        if let Some(d) = dir.as_ref().and_then(|d| d.to_str()) {
            return sanitize_name(d);
        }
    }
    sanitize_name(stem)
}

/// The default name for a command before its server has said its own: the program's base name.
fn name_of_command(argv: &[String]) -> String {
    let prog = argv.first().map(String::as_str).unwrap_or("");
    sanitize_name(
        Path::new(prog)
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or(prog),
    )
}

/// The default name for a URL before its server has said its own: its host (and port).
fn name_of_url(url: &str) -> String {
    let plain = without_userinfo(url);
    let rest = plain.split_once("://").map_or(plain.as_str(), |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    sanitize_name(&rest[..end])
}

/// Resolves the source arguments into servers to scan. An `Err` is a usage error (exit 2).
fn targets(s: &SourceArgs) -> Result<Vec<Target>, String> {
    if s.config.is_none() {
        if let Some(n) = &s.server {
            if !valid_name(n) {
                return Err(format!(
                    "--server {n:?}: a name is 1-64 characters of A-Z a-z 0-9 _ -"
                ));
            }
        }
    }
    if let Some(url) = &s.url {
        check_url(url).map_err(|e| format!("--url {e}"))?;
        let headers = s
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(vec![Target {
            name: s.server.clone().unwrap_or_else(|| name_of_url(url)),
            named: s.server.is_some(),
            origin: Origin::Url {
                url: url.clone(),
                headers,
            },
        }]);
    }
    if let Some(f) = &s.from_file {
        return Ok(vec![Target {
            name: s.server.clone().unwrap_or_else(|| name_of_file(f)),
            named: s.server.is_some(),
            origin: Origin::File(f.clone()),
        }]);
    }
    if !s.command.is_empty() {
        return Ok(vec![Target {
            name: s
                .server
                .clone()
                .unwrap_or_else(|| name_of_command(&s.command)),
            named: s.server.is_some(),
            origin: Origin::Command {
                argv: s.command.clone(),
                env: BTreeMap::new(),
            },
        }]);
    }
    let path = match &s.config {
        Some(p) => p.clone(),
        None => {
            let p = PathBuf::from("portcullis.toml");
            if !p.exists() {
                return Err("nothing to scan: give --config FILE, --from-file FILE, or a server command after `--` (there is no ./portcullis.toml here)".into());
            }
            p
        }
    };
    let cfg = Config::load(&path)?;
    let mut out = Vec::new();
    for srv in &cfg.servers {
        if s.server.as_ref().is_some_and(|n| *n != srv.name) {
            continue;
        }
        let origin = match (&srv.command, &srv.url) {
            (Some(argv), _) => Origin::Command {
                argv: argv.clone(),
                env: srv.env.clone(),
            },
            (None, Some(u)) => Origin::Url {
                url: u.clone(),
                headers: srv
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            (None, None) => continue, // refused by Config::load
        };
        out.push(Target {
            name: srv.name.clone(),
            named: true,
            origin,
        });
    }
    if out.is_empty() {
        let names: Vec<&str> = cfg.servers.iter().map(|x| x.name.as_str()).collect();
        return Err(match &s.server {
            Some(n) => format!(
                "{}: no server named {n:?} (servers: {})",
                path.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
            None => format!("{}: no [[servers]] to scan", path.display()),
        });
    }
    Ok(out)
}

/// A one-line progress indicator on standard error, shown only when several servers are
/// scanned and standard error is a terminal.
struct Progress {
    on: bool,
    total: usize,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            on: total > 1 && std::io::stderr().is_terminal(),
            total,
        }
    }

    fn show(&self, i: usize, name: &str) {
        if self.on {
            let mut e = std::io::stderr();
            let _ = write!(e, "\r\x1b[K[{}/{}] scanning {name}…", i + 1, self.total);
            let _ = e.flush();
        }
    }

    fn clear(&self) {
        if self.on {
            let mut e = std::io::stderr();
            let _ = write!(e, "\r\x1b[K");
            let _ = e.flush();
        }
    }
}

/// Scans every target in turn, with progress; failures are kept, not fatal.
fn scan_all(targets: Vec<Target>, timeout: Duration) -> Vec<Scanned> {
    let progress = Progress::new(targets.len());
    let mut out = Vec::new();
    for (i, t) in targets.into_iter().enumerate() {
        progress.show(i, &t.name);
        let source = t.origin.describe();
        let mut name = t.name.clone();
        let outcome = list_tools(&t, timeout).map(|(tools, own_name)| {
            if !t.named {
                if let Some(n) = own_name {
                    name = sanitize_name(&n);
                }
            }
            let tools = dedupe(tools, &name);
            let classes = classify_all(&tools, &name);
            Listed { tools, classes }
        });
        out.push(Scanned {
            name,
            source,
            outcome,
        });
    }
    progress.clear();
    out
}

/// Keeps the first definition of each name; drops entries without a name (with a warning).
pub(crate) fn dedupe(tools: Vec<Value>, server: &str) -> Vec<Value> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(tools.len());
    let mut unnamed = 0;
    for t in tools {
        match t.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => {
                if seen.insert(n.to_string()) {
                    out.push(t);
                } else {
                    eprintln!("warning: {server}: tool {n:?} is listed twice; the second definition is ignored");
                }
            }
            _ => unnamed += 1,
        }
    }
    if unnamed > 0 {
        eprintln!(
            "warning: {server}: {unnamed} entr{} without a name ignored",
            if unnamed == 1 { "y" } else { "ies" }
        );
    }
    out
}

/// Lists one target's tools, and the server's own name when it said one.
fn list_tools(t: &Target, timeout: Duration) -> Result<(Vec<Value>, Option<String>), String> {
    let spec = match &t.origin {
        Origin::File(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not JSON: {e}", p.display()))?;
            let tools = lint::tools_of(&v).ok_or_else(|| {
                format!(
                    "{}: expected a tools/list result ({{\"tools\": [...]}}), a JSON-RPC response wrapping one, or an array of tools",
                    p.display()
                )
            })?;
            return Ok((tools.clone(), None));
        }
        Origin::Url { url, headers } => {
            check_url(url)?;
            let mut expanded = Vec::with_capacity(headers.len());
            for (k, v) in headers {
                expanded.push((
                    k.clone(),
                    expand_env(v).map_err(|e| format!("header {k}: {e}"))?,
                ));
            }
            UpstreamSpec::for_url(url.clone(), expanded)
        }
        Origin::Command { argv, env } => {
            let mut vars = Vec::with_capacity(env.len());
            for (k, v) in env {
                vars.push((
                    k.clone(),
                    expand_env(v).map_err(|e| format!("env.{k}: {e}"))?,
                ));
            }
            UpstreamSpec::Command(ChildSpec {
                argv: argv.clone(),
                env: vars,
            })
        }
    };
    runtime()?.block_on(list_live(&spec, timeout))
}

/// A single-threaded runtime for one server's conversation; dropping it ends every task the
/// conversation left behind.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Lists a live server's tools with `portcullis-client` — the 2025-11-25 handshake (which
/// dual-era servers accept too), then every page — and its own name; the server is stopped
/// or its session ended afterwards. A failure is said for people (see [`explain`]).
pub(crate) async fn list_live(
    spec: &UpstreamSpec,
    timeout: Duration,
) -> Result<(Vec<Value>, Option<String>), String> {
    let opts = Options {
        client_name: "portcullis-scan".into(),
        era: Era::Handshake,
        timeout: Some(timeout),
        request_timeout: None,
        ..Options::default()
    };
    match portcullis_client::list_tools(spec, &opts).await {
        Ok(l) => Ok((l.tools, l.server_name)),
        Err(e) => Err(explain(&e)),
    }
}

/// A client error as `scan` reports it: a refused or failed HTTP exchange that mentions HTTP
/// 401 or 403 says how to send credentials.
fn explain(e: &portcullis_client::Error) -> String {
    match e.kind() {
        ErrorKind::Connect | ErrorKind::HttpStatus(_) | ErrorKind::Transport => {
            with_auth_hint(e.to_string())
        }
        _ => e.to_string(),
    }
}

/// Adds how to send credentials to an error that reports HTTP 401 or 403.
fn with_auth_hint(text: String) -> String {
    if text.contains("HTTP 401") || text.contains("HTTP 403") {
        format!("{text}; if the server needs credentials, send them with --header 'Authorization: Bearer ${{TOKEN}}' (headers = {{ ... }} in a configuration file)")
    } else {
        text
    }
}

/// Reports failures on stderr and returns the exit code: 0 when every source was scanned.
fn report_failures(scanned: &[Scanned]) -> ExitCode {
    let failed: Vec<&Scanned> = scanned.iter().filter(|s| s.outcome.is_err()).collect();
    for s in &failed {
        if let Err(e) = &s.outcome {
            eprintln!("error: {}: {e}", s.name);
        }
    }
    if failed.is_empty() {
        return ExitCode::SUCCESS;
    }
    if scanned.len() > 1 {
        let names: Vec<&str> = failed.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "{} of {} servers scanned; failed: {}",
            scanned.len() - failed.len(),
            scanned.len(),
            names.join(", ")
        );
    }
    ExitCode::FAILURE
}

// ---------------------------------------------------------------------------------------------
// scan
// ---------------------------------------------------------------------------------------------

/// `portcullis scan`: list and classify every tool, then print a table, JSON or Markdown.
pub fn scan(a: &ScanArgs) -> Result<ExitCode, String> {
    let targets = targets(&a.source)?;
    let scanned = scan_all(targets, Duration::from_secs(a.source.timeout));
    let mut out = String::new();
    if a.json {
        let list: Vec<Value> = scanned.iter().map(json_of).collect();
        out = serde_json::to_string_pretty(&list).expect("serializable") + "\n";
    } else if a.markdown {
        for (i, s) in scanned.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            markdown_of(s, &mut out);
        }
    } else {
        let style = Style::detect();
        let mut first = true;
        for s in &scanned {
            if let Ok(l) = &s.outcome {
                if !first {
                    out.push('\n');
                }
                first = false;
                table_of(s, l, &style, &mut out);
            }
        }
    }
    out!("{out}");
    let _ = crate::out::Stdout.flush();
    Ok(report_failures(&scanned))
}

/// Counts per category (in display order, zeros left out), catch-alls and poisoning suspects.
fn summary(classes: &[Classification]) -> String {
    let mut parts = Vec::new();
    for cat in Category::ALL {
        let n = classes.iter().filter(|c| c.category == cat).count();
        if n > 0 {
            parts.push(format!("{n} {cat}"));
        }
    }
    let mut s = format!(
        "{} tool{}",
        classes.len(),
        if classes.len() == 1 { "" } else { "s" }
    );
    if !parts.is_empty() {
        let _ = write!(s, ": {}", parts.join(", "));
    }
    let catch = classes.iter().filter(|c| c.catch_all.is_some()).count();
    let poison = classes.iter().filter(|c| c.is_poisoning_suspect()).count();
    if catch > 0 {
        let _ = write!(
            s,
            "; {catch} catch-all executor{}",
            if catch == 1 { "" } else { "s" }
        );
    }
    if poison > 0 {
        let _ = write!(
            s,
            "; {poison} poisoning suspect{} (hidden by every preset)",
            if poison == 1 { "" } else { "s" }
        );
    }
    s
}

/// The flags of a tool: `catch-all`, `poisoning`, or both joined by a comma.
fn flags(c: &Classification) -> String {
    let mut f = Vec::new();
    if c.catch_all.is_some() {
        f.push("catch-all");
    }
    if c.is_poisoning_suspect() {
        f.push("poisoning");
    }
    f.join(",")
}

/// The evidence shown in the WHY column: the deciding reason (for a poisoning suspect its
/// first finding: field, sign and the text found), not merely the first item found, which is
/// often one that was overruled. `--json` keeps every item.
fn why(c: &Classification) -> &str {
    c.reason()
}

/// Terminal styling: ANSI colour when standard output is a terminal and `NO_COLOR` is not set,
/// and the width available for the table.
struct Style {
    color: bool,
    width: Option<usize>,
}

impl Style {
    fn detect() -> Style {
        let tty = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: tty && !no_color,
            width: if tty { terminal_width() } else { None },
        }
    }

    /// `text` padded to `width`, then coloured (so padding stays aligned).
    fn paint(&self, text: &str, width: usize, code: &str) -> String {
        let padded = format!("{text:<width$}");
        if self.color && !code.is_empty() {
            format!("\x1b[{code}m{padded}\x1b[0m")
        } else {
            padded
        }
    }
}

/// The terminal's width: `$COLUMNS`, else `stty size` on the controlling terminal; `None`
/// when neither knows.
fn terminal_width() -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
    {
        return Some(n);
    }
    let tty = std::fs::File::open("/dev/tty").ok()?;
    let out = std::process::Command::new("stty")
        .arg("size")
        .stdin(tty)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    // A pseudo-terminal nobody sized reports 0 columns: unknown.
    text.split_whitespace()
        .nth(1)?
        .parse()
        .ok()
        .filter(|&n: &usize| n > 0)
}

fn risk_color(r: Risk) -> &'static str {
    match r {
        Risk::Critical => "1;31",
        Risk::High => "31",
        Risk::Medium => "33",
        Risk::Low => "32",
    }
}

/// The table for one scanned server.
fn table_of(s: &Scanned, l: &Listed, style: &Style, out: &mut String) {
    let _ = writeln!(out, "{} — {}", s.name, s.source);
    let tool_w = l
        .classes
        .iter()
        .map(|c| c.tool.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 48);
    let flag_w = l
        .classes
        .iter()
        .map(|c| flags(c).len())
        .max()
        .unwrap_or(0)
        .max(4);
    let used = 8 + 2 + 11 + 2 + tool_w + 2 + flag_w + 2;
    let why_w = match style.width {
        Some(w) => w.saturating_sub(used).max(20),
        None => DEFAULT_WHY,
    };
    let header = format!(
        "{:<8}  {:<11}  {:<tool_w$}  {:<flag_w$}  WHY",
        "RISK", "CATEGORY", "TOOL", "FLAG"
    );
    let _ = writeln!(out, "{}", style.paint(&header, 0, "1"));
    for c in &l.classes {
        let f = flags(c);
        let flag_color = if c.is_poisoning_suspect() {
            "1;35"
        } else {
            "36"
        };
        let _ = writeln!(
            out,
            "{}  {:<11}  {:<tool_w$}  {}  {}",
            style.paint(c.risk.as_str(), 8, risk_color(c.risk)),
            c.category.as_str(),
            c.tool,
            style.paint(&f, flag_w, if f.is_empty() { "" } else { flag_color }),
            truncate(&one_line(why(c)), why_w)
        );
    }
    let _ = writeln!(out, "{}: {}", s.name, summary(&l.classes));
}

/// Collapses whitespace (newlines included) to single spaces.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `--json` object for one server.
fn json_of(s: &Scanned) -> Value {
    match &s.outcome {
        Ok(l) => {
            let mut counts = Map::new();
            for cat in Category::ALL {
                let n = l.classes.iter().filter(|c| c.category == cat).count();
                counts.insert(cat.as_str().into(), json!(n));
            }
            json!({
                "server": s.name,
                "source": s.source,
                "ok": true,
                "tools": l.classes.len(),
                "counts": counts,
                "classifications": l.classes,
            })
        }
        Err(e) => json!({"server": s.name, "source": s.source, "ok": false, "error": e}),
    }
}

/// Escapes text for a Markdown table cell.
fn md_cell(s: &str) -> String {
    one_line(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
}

/// The `--markdown` section for one server.
fn markdown_of(s: &Scanned, out: &mut String) {
    let _ = writeln!(out, "## {}\n", md_cell(&s.name));
    let _ = writeln!(out, "Source: {}\n", md_cell(&s.source));
    match &s.outcome {
        Err(e) => {
            let _ = writeln!(out, "**Scan failed:** {}", md_cell(e));
        }
        Ok(l) => {
            let _ = writeln!(out, "{}\n", md_cell(&summary(&l.classes)));
            out.push_str("| Risk | Category | Tool | Flags | Why |\n|---|---|---|---|---|\n");
            for c in &l.classes {
                let tool = if c.tool.contains('`') {
                    md_cell(&c.tool)
                } else {
                    format!("`{}`", c.tool.replace('|', "\\|"))
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    c.risk,
                    c.category,
                    tool,
                    flags(c),
                    md_cell(why(c))
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------------

/// What a starter policy does with its tools.
#[derive(Default, Debug, PartialEq, Eq)]
struct Tally {
    allowed: usize,
    limited: usize,
    approval: usize,
    denied: usize,
    hidden: usize,
}

impl Tally {
    /// Sorts each listed tool by the strongest thing its rule does: an unconditional deny,
    /// an unconditional approval, a rate limit, or nothing (argument checks aside).
    fn of(policy: &Value) -> Tally {
        let mut t = Tally {
            hidden: policy
                .get("hide")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
            ..Tally::default()
        };
        let unconditional = |rule: &Value, key: &str| {
            rule.get(key).and_then(Value::as_array).is_some_and(|es| {
                es.iter().any(|e| {
                    e.get("conditions")
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty)
                })
            })
        };
        if let Some(tools) = policy.get("tools").and_then(Value::as_object) {
            for rule in tools.values() {
                if unconditional(rule, "deny_if") {
                    t.denied += 1;
                } else if unconditional(rule, "approve_if") {
                    t.approval += 1;
                } else if rule
                    .get("limits")
                    .and_then(Value::as_array)
                    .is_some_and(|l| !l.is_empty())
                {
                    t.limited += 1;
                } else {
                    t.allowed += 1;
                }
            }
        }
        t
    }

    fn add(&mut self, o: &Tally) {
        self.allowed += o.allowed;
        self.limited += o.limited;
        self.approval += o.approval;
        self.denied += o.denied;
        self.hidden += o.hidden;
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} allowed, {} limited, {} need approval, {} hidden",
            self.allowed, self.limited, self.approval, self.hidden
        )?;
        if self.denied > 0 {
            write!(f, ", {} denied", self.denied)?;
        }
        Ok(())
    }
}

/// `portcullis init`: scan, then write a validated starter policy per server.
pub fn init(a: &InitArgs) -> Result<ExitCode, String> {
    let targets = targets(&a.source)?;
    let preset = a.preset.preset();
    let scanned = scan_all(targets, Duration::from_secs(a.source.timeout));
    let mut failed = false;
    let mut total = Tally::default();
    let mut written = 0;
    for s in &scanned {
        let Ok(l) = &s.outcome else { continue };
        match write_policy(s, l, preset, a) {
            Ok((path, tally)) => {
                outln!(
                    "wrote {} — {} preset, {}: {tally}",
                    path.display(),
                    preset.as_str(),
                    plural(l.classes.len(), "tool")
                );
                total.add(&tally);
                written += 1;
            }
            Err(e) => {
                eprintln!("error: {}: {e}", s.name);
                failed = true;
            }
        }
    }
    if written > 0 {
        let totals = if written > 1 {
            format!("; in all: {total}")
        } else {
            String::new()
        };
        outln!(
            "{} written to {} (default deny: a tool not listed is denied){totals}",
            plural(written, "policy"),
            a.out.display()
        );
        outln!("Review before use; check a policy against its server's tools with `portcullis validate FILE --tools TOOLS.json`.");
    }
    let code = report_failures(&scanned);
    Ok(if failed { ExitCode::FAILURE } else { code })
}

/// `n thing` or `n things` (`policy` → `policies`).
fn plural(n: usize, word: &str) -> String {
    match (n, word.strip_suffix('y')) {
        (1, _) => format!("1 {word}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {word}s"),
    }
}

/// Builds, validates and writes one server's starter policy; returns its path and tally.
fn write_policy(
    s: &Scanned,
    l: &Listed,
    preset: Preset,
    a: &InitArgs,
) -> Result<(PathBuf, Tally), String> {
    let path = a.out.join(format!("{}.json", s.name));
    if path.exists() && !a.force {
        return Err(format!(
            "{} exists; not overwritten (pass --force to replace it)",
            path.display()
        ));
    }
    let mut policy = starter_policy(&l.classes, preset);
    if l.classes.is_empty() {
        policy["description"] = json!(format!(
            "Starter policy ({} preset) for server {:?}: the server lists no tools, so everything is denied.",
            preset.as_str(),
            s.name
        ));
    }
    let text = serde_json::to_string_pretty(&policy).expect("serializable") + "\n";
    let engine = Engine::from_json(&text).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(
            "the generated policy does not validate, nothing written (please report this): {}",
            list.join("; ")
        )
    })?;
    for w in lint::lint(engine.doc(), &l.tools) {
        eprintln!("warning: {}: generated policy: {w}", s.name);
    }
    std::fs::create_dir_all(&a.out)
        .map_err(|e| format!("cannot create {}: {e}", a.out.display()))?;
    let tmp = a.out.join(format!(".{}.json.tmp", s.name));
    std::fs::write(&tmp, &text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })?;
    Ok((path, Tally::of(&policy)))
}

// ---------------------------------------------------------------------------------------------
// catalog
// ---------------------------------------------------------------------------------------------

/// `portcullis catalog`: scan, then write an index and one page per tool, in Markdown and
/// HTML, per server.
pub fn catalog(a: &CatalogArgs) -> Result<ExitCode, String> {
    let targets = targets(&a.source)?;
    let scanned = scan_all(targets, Duration::from_secs(a.source.timeout));
    let mut failed = false;
    let mut pages = 0;
    let mut servers = 0;
    for s in &scanned {
        let Ok(l) = &s.outcome else { continue };
        match write_catalog(s, l, &a.out) {
            Ok(n) => {
                outln!(
                    "wrote {}: index + {} (Markdown and HTML)",
                    a.out.join(&s.name).display(),
                    plural(n, "tool page")
                );
                pages += n;
                servers += 1;
            }
            Err(e) => {
                eprintln!("error: {}: {e}", s.name);
                failed = true;
            }
        }
    }
    if servers > 0 {
        let open = match (servers, scanned.iter().find(|s| s.outcome.is_ok())) {
            (1, Some(s)) => a.out.join(&s.name).join("index.html"),
            _ => a.out.join("<server>").join("index.html"),
        };
        outln!(
            "{} and {} server index{} written; open {}",
            plural(pages, "tool page"),
            servers,
            if servers == 1 { "" } else { "es" },
            open.display()
        );
    }
    let code = report_failures(&scanned);
    Ok(if failed { ExitCode::FAILURE } else { code })
}

/// Writes one server's catalogue; returns the number of tool pages (each in both formats).
fn write_catalog(s: &Scanned, l: &Listed, out: &Path) -> Result<usize, String> {
    let dir = out.join(&s.name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |name: String, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    let by_name: HashMap<&str, &Value> = l
        .tools
        .iter()
        .filter_map(|t| Some((t.get("name")?.as_str()?, t)))
        .collect();
    let mut slugs: HashMap<String, &str> = HashMap::new();
    let mut n = 0;
    for c in &l.classes {
        let slug = page_slug(&c.tool);
        if slug == "index" {
            eprintln!(
                "warning: {}: tool {:?} has no page of its own: its file name is the index's",
                s.name, c.tool
            );
            continue;
        }
        if let Some(other) = slugs.insert(slug.clone(), &c.tool) {
            eprintln!(
                "warning: {}: tools {other:?} and {:?} share the page {slug}.md; the second wins",
                s.name, c.tool
            );
        }
        let def = by_name
            .get(c.tool.as_str())
            .copied()
            .unwrap_or(&Value::Null);
        write(format!("{slug}.md"), catalog_page_markdown(c, def))?;
        write(format!("{slug}.html"), catalog_page_html(c, def))?;
        n += 1;
    }
    write(
        "index.md".into(),
        catalog_index_markdown(&s.name, &l.classes),
    )?;
    write("index.html".into(), catalog_index_html(&s.name, &l.classes))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            sanitize_name("example-servers/everything"),
            "example-servers-everything"
        );
        assert_eq!(sanitize_name("../.."), "server");
        assert!(valid_name("odoo_2-x"));
        assert!(!valid_name("a b"));
        assert_eq!(
            name_of_command(&["/usr/bin/python3".into(), "x.py".into()]),
            "python3"
        );
    }

    #[test]
    fn urls_and_headers() {
        assert_eq!(
            name_of_url("https://u:p@mcp.example.com/mcp"),
            "mcp-example-com"
        );
        assert_eq!(name_of_url("http://127.0.0.1:8765/sse"), "127-0-0-1-8765");
        assert!(check_url("HTTP://h/mcp").is_ok());
        assert!(check_url("ftp://h/mcp").is_err());
        assert!(check_url("http:///mcp").is_err());
        assert_eq!(
            parse_header(" Authorization :  Bearer a:b ").unwrap(),
            ("Authorization".into(), "Bearer a:b".into())
        );
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("two words: x").is_err());
    }

    #[test]
    fn authentication_refusals_say_how_to_send_credentials() {
        let text =
            with_auth_hint("the server answered initialize with HTTP 401 Unauthorized".to_string());
        assert!(
            text.starts_with("the server answered initialize with HTTP 401 Unauthorized; "),
            "{text}"
        );
        assert!(
            text.contains("--header 'Authorization: Bearer ${TOKEN}'"),
            "{text}"
        );
        let other =
            "the server's event stream ended (while waiting for the answer to tools/list (page 1))";
        assert_eq!(with_auth_hint(other.to_string()), other);
    }

    #[test]
    fn tally_sorts_rules() {
        let p = json!({
            "hide": ["d"],
            "tools": {
                "r": {},
                "w": {"limits": [{"counter": "w_rate", "window": "minute", "max": 30, "scope": "grant"}]},
                "f": {"approve_if": [{"conditions": [], "reason": "x"}]},
                "x": {"deny_if": [{"conditions": [], "on_deny": "no"}]},
                "s": {"deny_if": [{"conditions": [{"path": "args.sql", "op": "regex", "value": "x"}]}]}
            }
        });
        assert_eq!(
            Tally::of(&p),
            Tally {
                allowed: 2,
                limited: 1,
                approval: 1,
                denied: 1,
                hidden: 1
            }
        );
        assert_eq!(plural(2, "policy"), "2 policies");
        assert_eq!(plural(1, "policy"), "1 policy");
    }
}
