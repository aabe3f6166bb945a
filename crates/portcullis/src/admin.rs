//! `portcullis grant …` and `portcullis audit …`: the grant store and the audit log of a data
//! directory, from the command line. Both find the data directory through `--config FILE`
//! (its `[gateway] data_dir`, default `./portcullis.toml`) or `--data-dir DIR`.

use clap::{Args, Subcommand};
use portcullis_gateway::config::Config;
use portcullis_policy::window::{parse_duration, rfc3339};
use portcullis_policy::Millis;
use portcullis_store::audit::AUDIT_FILE;
use portcullis_store::grants::{check_label, check_server_list, GRANTS_FILE};
use portcullis_store::{
    AuditDecision, AuditFilter, AuditLog, AuditMode, AuditRecord, Grant, GrantError, GrantStore,
    Token,
};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use time::{Date, Month, Time, UtcDateTime};

/// Where the stores are: shared by `grant` and `audit`.
#[derive(Args)]
pub struct StoreArgs {
    /// Configuration file; its `[gateway] data_dir` holds the stores [default: ./portcullis.toml].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data directory itself (instead of the config's `data_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// `portcullis grant …` arguments.
#[derive(Args)]
pub struct GrantArgs {
    #[command(subcommand)]
    cmd: GrantCmd,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum GrantCmd {
    /// Create a grant: a bearer token for one agent on one server (or several, or all: for
    /// the aggregated endpoint `/mcp`). Prints the token once.
    Create {
        /// The server the grant may use (a `[[servers]]` name of the config); repeat it for a
        /// grant of several servers.
        #[arg(long, required_unless_present = "all_servers")]
        server: Vec<String>,
        /// A grant of every configured server (now and later).
        #[arg(long, conflicts_with = "server")]
        all_servers: bool,
        /// Who holds it, e.g. alice-laptop or ci-runner.
        #[arg(long)]
        label: String,
        /// Name of the policy the grant carries. Default: the server's own policy (its
        /// `policy =` in the config, registered under the server's name); for a grant of
        /// several servers, each server's own.
        #[arg(long, conflicts_with = "no_policy")]
        policy: Option<String>,
        /// A grant with no policy: every call through it is denied with rule `(no policy)`.
        #[arg(long)]
        no_policy: bool,
        /// Expiry: a duration from now (30d, 12h, 2w) or a UTC date/time (2027-01-31,
        /// 2027-01-31T18:00:00Z). Default: never.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        /// Print the grant and its token as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List grants (never their tokens).
    List {
        /// Only the grants of this server.
        #[arg(long)]
        server: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Replace a grant's token; the old one is refused from the next request on.
    Rotate {
        /// Grant id (grt_…) or label.
        grant: String,
        /// The grant's server, when the label is used on several servers.
        #[arg(long)]
        server: Option<String>,
        /// Print the grant and its new token as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant; its token is refused from the next request on.
    Revoke {
        /// Grant id (grt_…) or label.
        grant: String,
        /// The grant's server, when the label is used on several servers.
        #[arg(long)]
        server: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `portcullis audit …` arguments.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    cmd: Option<AuditCmd>,
    #[command(flatten)]
    query: AuditQuery,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Delete the records older than a duration (retention).
    Retain {
        /// Age beyond which records are deleted, e.g. 30d, 12w.
        #[arg(long, value_name = "AGE")]
        older_than: String,
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Filters and output of `portcullis audit`.
#[derive(Args)]
struct AuditQuery {
    /// Records since: a duration ago (1h, 30m, 7d) or a UTC date/time (2026-11-22,
    /// 2026-11-22T09:00:00Z).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Records before: a duration ago or a UTC date/time.
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// Records of this grant (id or label).
    #[arg(long)]
    grant: Option<String>,
    /// Records of this tool.
    #[arg(long)]
    tool: Option<String>,
    /// Records with this decision: allow, deny (denied), hidden, approval, error, shadow_deny.
    #[arg(long)]
    decision: Option<String>,
    /// Records of this server.
    #[arg(long)]
    server: Option<String>,
    /// At most this many, the most recent [default: 100 when printing; all when exporting;
    /// 0 = all].
    #[arg(long)]
    limit: Option<usize>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Write the matching records as JSON Lines to this file ("-": standard output).
    #[arg(long, value_name = "FILE.jsonl")]
    export: Option<PathBuf>,
}

/// Default number of records printed by `portcullis audit`.
const DEFAULT_LIMIT: usize = 100;

pub(crate) fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// The data directory and, when there is one, the configuration.
pub(crate) struct Place {
    pub(crate) data_dir: PathBuf,
    config: Option<(PathBuf, Config)>,
}

impl Place {
    pub(crate) fn find(a: &StoreArgs) -> Result<Place, String> {
        let (path, explicit) = match &a.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from("portcullis.toml"), false),
        };
        let config = if path.exists() {
            Some((path.clone(), Config::load(&path)?))
        } else if explicit {
            return Err(format!(
                "the config file {} does not exist; give an existing file with --config, or \
                 the data directory with --data-dir DIR",
                path.display()
            ));
        } else {
            None
        };
        let data_dir = match (&a.data_dir, &config) {
            (Some(d), _) => d.clone(),
            (None, Some((_, c))) => c.resolve(&c.gateway.data_dir),
            (None, None) => {
                let d = PathBuf::from("./portcullis-data");
                eprintln!(
                    "note: no ./portcullis.toml here; using the data directory {} (give \
                     --config FILE or --data-dir DIR to use another)",
                    d.display()
                );
                d
            }
        };
        Ok(Place { data_dir, config })
    }

    /// The `[store]` of the configuration (the default: the data directory's files).
    pub(crate) fn store(&self) -> portcullis_store::StoreConfig {
        self.config
            .as_ref()
            .map(|(_, c)| c.store.clone())
            .unwrap_or_default()
    }

    /// Where the grants and approvals live, for messages (a shared Redis, or the data dir).
    pub(crate) fn where_(&self) -> String {
        self.store().place(&self.data_dir)
    }

    /// Opens the grant store (through the factory: the shared Redis when `[store] url` is
    /// set), creating the data directory and file only if `create`.
    fn grants(&self, create: bool) -> Result<Option<Arc<dyn GrantStore>>, String> {
        self.store().open_grants(&self.data_dir, create)
    }

    /// Refuses a server the configuration does not name (when there is a configuration).
    /// The policy a grant of `server` carries by default: the server's own (registered under
    /// the server's name), when the config gives it one.
    fn server_policy(&self, server: &str) -> Option<String> {
        let (_, cfg) = self.config.as_ref()?;
        cfg.servers
            .iter()
            .find(|s| s.name == server && s.policy.is_some())
            .map(|s| s.name.clone())
    }

    fn check_server(&self, server: &str) -> Result<(), String> {
        let Some((path, cfg)) = &self.config else {
            return Ok(());
        };
        if cfg.servers.iter().any(|s| s.name == server) {
            return Ok(());
        }
        let known: Vec<&str> = cfg.servers.iter().map(|s| s.name.as_str()).collect();
        Err(if known.is_empty() {
            format!(
                "{} has no [[servers]]; add the server \"{server}\" there first",
                path.display()
            )
        } else {
            format!(
                "{} has no server \"{server}\"; known servers: {}. Use one of them, or add a \
                 [[servers]] entry named \"{server}\"",
                path.display(),
                known.join(", ")
            )
        })
    }

    /// The URL a client uses for `server`, for the config snippet.
    fn server_url(&self, server: &str) -> String {
        let listen = self
            .config
            .as_ref()
            .and_then(|(_, c)| c.listen_addr().ok())
            .map(|a| {
                if a.ip().is_unspecified() {
                    format!("<gateway-host>:{}", a.port())
                } else {
                    a.to_string()
                }
            })
            .unwrap_or_else(|| "127.0.0.1:8480".into());
        // A grant of several servers is for the aggregated endpoint.
        if server == portcullis_store::grants::ALL_SERVERS || server.contains(',') {
            format!("http://{listen}/mcp")
        } else {
            format!("http://{listen}/mcp/{server}")
        }
    }
}

/// `portcullis grant …`.
pub fn grant(a: GrantArgs) -> Result<ExitCode, String> {
    let place = Place::find(&a.store)?;
    let now = now_ms();
    match a.cmd {
        GrantCmd::Create {
            server: servers,
            all_servers,
            label,
            policy,
            no_policy,
            expires,
            json,
        } => {
            for s in &servers {
                place.check_server(s)?;
            }
            let server = if all_servers {
                portcullis_store::grants::ALL_SERVERS.to_owned()
            } else {
                servers.join(",")
            };
            // Checked before the data directory is created for them.
            check_server_list(&server).map_err(|e| e.to_string())?;
            let several = all_servers || servers.len() > 1;
            check_label(&label).map_err(|e| e.to_string())?;
            let expires_at = expires
                .as_deref()
                .map(|e| parse_when(e, now, true, "--expires"))
                .transpose()?;
            if expires_at.is_some_and(|t| t <= now) {
                return Err(
                    "--expires is in the past; give a duration (30d) or a future date".into(),
                );
            }
            let policy = match (policy, no_policy) {
                (Some(p), _) => Some(p),
                (None, true) => None,
                (None, false) if several => Some(portcullis_store::grants::OWN_POLICY.to_owned()),
                (None, false) => Some(place.server_policy(&server).ok_or_else(|| {
                    format!(
                        "the server \"{server}\" has no policy of its own in the config; give \
                         --policy NAME (a [policies] name), or --no-policy for a grant that \
                         denies every call"
                    )
                })?),
            };
            let store = place.grants(true)?.expect("created");
            let (g, token) = store
                .create(&server, &label, policy.as_deref(), expires_at, now)
                .map_err(|e| e.to_string())?;
            print_token(&place, "Created", &g, &token, json, now);
            Ok(ExitCode::SUCCESS)
        }
        GrantCmd::List { server, json } => {
            let grants = match place.grants(false)? {
                Some(s) => s.list(server.as_deref()).map_err(|e| e.to_string())?,
                None => Vec::new(),
            };
            if json {
                let list: Vec<Value> = grants.iter().map(|g| grant_json(g, now)).collect();
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else if grants.is_empty() {
                eprintln!(
                    "no grants{} in {}; create one with `portcullis grant create --server NAME \
                     --label LABEL --policy NAME`",
                    server
                        .as_deref()
                        .map(|s| format!(" of server \"{s}\""))
                        .unwrap_or_default(),
                    place.where_()
                );
            } else {
                print_grants(&grants, now);
            }
            Ok(ExitCode::SUCCESS)
        }
        GrantCmd::Rotate {
            grant,
            server,
            json,
        } => {
            let store = existing_grants(&place)?;
            let g = store
                .get(&grant, server.as_deref())
                .map_err(|e| grant_error(e, &place))?;
            let (g, token) = store.rotate(&g.id, now).map_err(|e| e.to_string())?;
            print_token(&place, "Rotated", &g, &token, json, now);
            Ok(ExitCode::SUCCESS)
        }
        GrantCmd::Revoke {
            grant,
            server,
            json,
        } => {
            let store = existing_grants(&place)?;
            let g = store
                .get(&grant, server.as_deref())
                .map_err(|e| grant_error(e, &place))?;
            let g = store.revoke(&g.id, now).map_err(|e| e.to_string())?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&grant_json(&g, now)).unwrap_or_default()
                );
            } else {
                outln!(
                    "Revoked grant {} (\"{}\", server \"{}\"). Its token is refused from the \
                     next request on; no restart is needed.",
                    g.id,
                    g.label,
                    g.server
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Creates a directory (and its parents) readable by its owner only, where that exists: the
/// stores hold the audit log's HMAC key and possibly argument values.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

fn existing_grants(place: &Place) -> Result<Arc<dyn GrantStore>, String> {
    place.grants(false)?.ok_or_else(|| {
        format!(
            "there are no grants in {} (no {GRANTS_FILE}); check --config / --data-dir, or \
             create one with `portcullis grant create`",
            place.data_dir.display()
        )
    })
}

fn grant_error(e: GrantError, place: &Place) -> String {
    match e {
        GrantError::NotFound(_) => format!("{e} ({})", place.where_()),
        other => other.to_string(),
    }
}

/// A grant as JSON, with its status at `now`.
pub(crate) fn grant_json(g: &Grant, now: Millis) -> Value {
    let mut v = serde_json::to_value(g).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("status".into(), json!(g.status(now).as_str()));
    }
    v
}

fn print_token(place: &Place, verb: &str, g: &Grant, token: &Token, json: bool, now: Millis) {
    if json {
        let out = json!({ "grant": grant_json(g, now), "token": token.secret() });
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    let policy = match &g.policy {
        Some(p) if p == portcullis_store::grants::OWN_POLICY => "each server's own policy".into(),
        Some(p) => format!("policy \"{p}\""),
        None => "no policy".into(),
    };
    let expires = g
        .expires_at
        .map(|t| format!("expires {}", rfc3339(t)))
        .unwrap_or_else(|| "does not expire".into());
    outln!(
        "{verb} grant {} (\"{}\") for server \"{}\", {policy}, {expires}.",
        g.id,
        g.label,
        g.server
    );
    outln!();
    outln!("Token (store it now; it is not shown again):");
    outln!();
    outln!("    {}", token.secret());
    outln!();
    outln!(
        "Client configuration (Streamable HTTP), e.g. in .mcp.json or the client's MCP settings:"
    );
    outln!();
    let key = if g.server.contains(',') || g.server == portcullis_store::grants::ALL_SERVERS {
        "portcullis".to_owned()
    } else {
        g.server.clone()
    };
    let snippet = json!({
        "mcpServers": {
            key: {
                "type": "http",
                "url": place.server_url(&g.server),
                "headers": { "Authorization": format!("Bearer {}", token.secret()) }
            }
        }
    });
    outln!(
        "{}",
        serde_json::to_string_pretty(&snippet).unwrap_or_default()
    );
    if verb == "Rotated" {
        outln!();
        outln!("The previous token is refused from the next request on.");
    }
    if g.policy.is_none() {
        eprintln!(
            "warning: this grant carries no policy, so every call through it is denied with \
             rule \"(no policy)\"; revoke it and create it again with --policy NAME"
        );
    }
}

fn print_grants(grants: &[Grant], now: Millis) {
    let rows: Vec<[String; 7]> = grants
        .iter()
        .map(|g| {
            [
                g.id.clone(),
                g.label.clone(),
                g.server.clone(),
                g.policy.clone().unwrap_or_else(|| "(none)".into()),
                g.status(now).as_str().into(),
                rfc3339(g.created_at),
                g.expires_at.map(rfc3339).unwrap_or_else(|| "never".into()),
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "LABEL", "SERVER", "POLICY", "STATUS", "CREATED", "EXPIRES",
        ],
        &rows,
    );
}

/// Prints rows under a header, columns padded to their widest cell.
pub(crate) fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut width = header.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < N {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            } else {
                s.push_str(c);
            }
        }
        outln!("{}", s.trim_end());
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
}

/// `portcullis audit …`.
pub fn audit(a: AuditArgs) -> Result<ExitCode, String> {
    let place = Place::find(&a.store)?;
    let path = place.data_dir.join(AUDIT_FILE);
    if !path.exists() {
        return Err(format!(
            "no audit log at {} yet: the gateway writes it when it serves requests; check \
             --config / --data-dir",
            path.display()
        ));
    }
    let log = AuditLog::open(&path, AuditMode::Durable).map_err(|e| e.to_string())?;
    let now = now_ms();
    if let Some(AuditCmd::Retain {
        older_than,
        dry_run,
    }) = a.cmd
    {
        let age = parse_duration(&older_than).ok_or_else(|| {
            format!("--older-than {older_than:?}: give a duration such as 30d, 12w or 24h")
        })?;
        let cutoff = now.saturating_sub(age);
        if dry_run {
            let n = log
                .count(&AuditFilter {
                    until: Some(cutoff),
                    ..AuditFilter::default()
                })
                .map_err(|e| e.to_string())?;
            outln!(
                "{n} records are older than {older_than} (before {}); nothing deleted (--dry-run)",
                rfc3339(cutoff)
            );
        } else {
            let n = log.retain(cutoff).map_err(|e| e.to_string())?;
            outln!(
                "Deleted {n} records older than {older_than} (before {}).",
                rfc3339(cutoff)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let q = &a.query;
    let mut filter = audit_filter(
        q.since.as_deref(),
        q.until.as_deref(),
        q.grant.clone(),
        q.tool.clone(),
        q.decision.as_deref(),
        q.server.clone(),
        now,
        "--",
    )?;
    if let Some(file) = &q.export {
        filter.limit = q.limit.filter(|&n| n > 0);
        let n = if file.as_os_str() == "-" {
            let mut out = std::io::BufWriter::new(crate::out::Stdout);
            log.export_jsonl(&mut out, &filter)
        } else {
            let f = std::fs::File::create(file)
                .map_err(|e| format!("cannot create {}: {e}", file.display()))?;
            let mut out = std::io::BufWriter::new(f);
            log.export_jsonl(&mut out, &filter)
        }
        .map_err(|e| e.to_string())?;
        if file.as_os_str() != "-" {
            eprintln!("exported {n} records to {}", file.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    filter.limit = match q.limit {
        Some(0) => None,
        Some(n) => Some(n),
        None => Some(DEFAULT_LIMIT),
    };
    let records = log.query(&filter).map_err(|e| e.to_string())?;
    if q.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&records).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        eprintln!("no audit records match");
        return Ok(ExitCode::SUCCESS);
    }
    print_records(&records);
    if filter.limit == Some(records.len()) {
        let total = log.count(&filter).map_err(|e| e.to_string())?;
        if total > records.len() as u64 {
            eprintln!(
                "showing the {} most recent of {total} matching records (use --limit 0 for all)",
                records.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_records(records: &[AuditRecord]) {
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            let what = match &r.tool {
                Some(t) => format!("{} {t}", r.method),
                None => r.method.clone(),
            };
            let mut msg = r.message.clone().unwrap_or_default().replace('\n', " ");
            if msg.chars().count() > 60 {
                msg = msg.chars().take(59).collect::<String>() + "…";
            }
            [
                rfc3339(r.time),
                r.decision.as_str().into(),
                r.server.clone(),
                r.grant_label
                    .clone()
                    .or_else(|| r.grant_id.clone())
                    .unwrap_or_else(|| "-".into()),
                what,
                r.rule.clone().unwrap_or_else(|| "-".into()),
                msg,
            ]
        })
        .collect();
    print_table(
        &[
            "TIME", "DECISION", "SERVER", "GRANT", "CALL", "RULE", "MESSAGE",
        ],
        &rows,
    );
    let _ = crate::out::Stdout.flush();
}

/// A point in time: a duration from `now` (ago, or ahead if `future`), or a UTC date
/// (`2026-11-22`) or date-time (`2026-11-22T09:30:00Z`, seconds and `Z` optional).
pub(crate) fn parse_when(s: &str, now: Millis, future: bool, flag: &str) -> Result<Millis, String> {
    if let Some(d) = parse_duration(s) {
        return Ok(if future {
            now.saturating_add(d)
        } else {
            now.saturating_sub(d)
        });
    }
    parse_utc(s).ok_or_else(|| {
        format!(
            "{flag} {s:?}: give a duration (90s, 15m, 1h, 7d, 2w) or a UTC date or date-time \
             (2026-11-22, 2026-11-22T09:30:00Z)"
        )
    })
}

/// `YYYY-MM-DD[THH:MM[:SS[.mmm]]][Z]`, UTC.
fn parse_utc(s: &str) -> Option<Millis> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.split('-');
    let y: i32 = d.next()?.parse().ok()?;
    let m: u8 = d.next()?.parse().ok()?;
    let day: u8 = d.next()?.parse().ok()?;
    let date = Date::from_calendar_date(y, Month::try_from(m).ok()?, day).ok()?;
    if d.next().is_some() {
        return None;
    }
    let mut ms: i64 = 0;
    if let Some(t) = time {
        let (hms, frac) = match t.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (t, None),
        };
        let mut p = hms.split(':');
        let h: i64 = p.next()?.parse().ok()?;
        let mi: i64 = p.next()?.parse().ok()?;
        let sec: i64 = p.next().map(str::parse).transpose().ok()?.unwrap_or(0);
        if p.next().is_some() || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        ms = ((h * 60 + mi) * 60 + sec) * 1000;
        if let Some(f) = frac {
            let f = format!("{f:0<3}");
            ms += f.get(..3)?.parse::<i64>().ok()?;
        }
    }
    let midnight = UtcDateTime::new(date, Time::MIDNIGHT).unix_timestamp() * 1000;
    u64::try_from(midnight + ms).ok()
}

/// The audit filter the CLI and the admin API share: one parser for `since`/`until` (a
/// duration back from `now` or a UTC date) and `decision`. No limit is set. `prefix` names
/// the fields in errors as the caller knows them (`--` for flags, empty for query parameters).
#[allow(clippy::too_many_arguments)]
pub(crate) fn audit_filter(
    since: Option<&str>,
    until: Option<&str>,
    grant: Option<String>,
    tool: Option<String>,
    decision: Option<&str>,
    server: Option<String>,
    now: u64,
    prefix: &str,
) -> Result<AuditFilter, String> {
    let decision = decision
        .map(str::parse::<AuditDecision>)
        .transpose()
        .map_err(|e| format!("{prefix}decision: {e}"))?;
    Ok(AuditFilter {
        since: since
            .map(|s| parse_when(s, now, false, &format!("{prefix}since")))
            .transpose()?,
        until: until
            .map(|s| parse_when(s, now, false, &format!("{prefix}until")))
            .transpose()?,
        grant,
        tool,
        decision,
        server,
        limit: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        // 2026-11-22T12:00:00Z.
        let t = 1_795_348_800_000;
        assert_eq!(rfc3339(t), "2026-11-22T12:00:00.000Z");
        assert_eq!(parse_utc("2026-11-22T12:00:00Z"), Some(t));
        assert_eq!(parse_utc("2026-11-22T12:00"), Some(t));
        assert_eq!(parse_utc("2026-11-22"), Some(t - 12 * 3_600_000));
        assert_eq!(parse_utc("2026-11-22T12:00:00.5Z"), Some(t + 500));
        assert_eq!(parse_utc("2026-13-01"), None);
        assert_eq!(parse_utc("2026-02-29"), None);
        assert_eq!(parse_utc("yesterday"), None);
        assert_eq!(parse_when("1h", t, false, "--since"), Ok(t - 3_600_000));
        assert_eq!(
            parse_when("30d", t, true, "--expires"),
            Ok(t + 30 * 86_400_000)
        );
        assert!(parse_when("soon", t, true, "--expires")
            .unwrap_err()
            .contains("--expires"));
        assert_eq!(
            rfc3339(parse_utc("2028-02-29T23:59:59Z").unwrap()),
            "2028-02-29T23:59:59.000Z"
        );
    }
}
