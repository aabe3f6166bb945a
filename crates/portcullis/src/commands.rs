//! Implementations of the subcommands.

use clap::Args;
use portcullis_policy::doc::Mode;
use portcullis_policy::{lint, Call, Decision, Engine, Identity, ValidationError};
use portcullis_store::MemoryCounters;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `validate` arguments.
#[derive(Args)]
pub struct ValidateArgs {
    /// Policy file (JSON, policy v1).
    file: PathBuf,
    /// A `tools/list` result (JSON) of the server this policy guards: also report policy keys
    /// naming no tool and `args.*` paths the tool's inputSchema does not declare.
    #[arg(long)]
    tools: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `import-intercept` arguments.
#[derive(Args)]
pub struct ImportArgs {
    /// Intercept policy (YAML).
    file: PathBuf,
    /// Write the policy here instead of standard output.
    #[arg(short, long)]
    out: Option<PathBuf>,
}

/// `check` arguments.
#[derive(Args)]
pub struct CheckArgs {
    /// Policy file.
    #[arg(long)]
    policy: PathBuf,
    /// Tool name.
    #[arg(long)]
    tool: String,
    /// Arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    /// Grant label to evaluate as.
    #[arg(long, default_value = "local")]
    grant: String,
    /// Repeat the call this many times (to see where a limit bites).
    #[arg(long, default_value_t = 1)]
    times: u32,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn load(path: &Path) -> Result<Result<Engine, Vec<ValidationError>>, String> {
    Ok(Engine::from_json(&read(path)?))
}

/// `portcullis validate FILE [--tools T]`.
pub fn validate(a: &ValidateArgs) -> Result<ExitCode, String> {
    let file = a.file.display().to_string();
    let engine = match load(&a.file)? {
        Ok(e) => e,
        Err(errors) => {
            if a.json {
                let list: Vec<Value> = errors
                    .iter()
                    .map(|e| json!({"locator": e.locator, "message": e.message}))
                    .collect();
                outln!(
                    "{}",
                    json!({"file": file, "valid": false, "errors": list, "warnings": []})
                );
            } else {
                for e in &errors {
                    eprintln!("{file}: {e}");
                }
                eprintln!(
                    "{file}: {} error{} — the policy was not loaded",
                    errors.len(),
                    plural(errors.len())
                );
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut findings = Vec::new();
    if let Some(tools_path) = &a.tools {
        let v: Value = serde_json::from_str(&read(tools_path)?)
            .map_err(|e| format!("{}: not JSON: {e}", tools_path.display()))?;
        let tools = lint::tools_of(&v).ok_or_else(|| {
            format!(
                "{}: expected a tools/list result ({{\"tools\": [...]}}) or an array of tools",
                tools_path.display()
            )
        })?;
        findings = lint::lint(engine.doc(), tools);
    }
    let doc = engine.doc();
    let limits: usize = doc.tools.iter().map(|(_, r)| r.limits.len()).sum::<usize>()
        + doc.all_tools.as_ref().map_or(0, |r| r.limits.len());
    let summary = format!(
        "default {}, {} tool{} listed, {} hidden, {} limit{}{}",
        if matches!(doc.default, portcullis_policy::doc::Default::Deny) {
            "deny"
        } else {
            "allow"
        },
        doc.tools.len(),
        plural(doc.tools.len()),
        doc.hide.len(),
        limits,
        plural(limits),
        if engine.mode() == Mode::Shadow {
            ", SHADOW mode (nothing is enforced)"
        } else {
            ""
        }
    );
    if a.json {
        let list: Vec<Value> = findings
            .iter()
            .map(|e| json!({"locator": e.locator, "message": e.message}))
            .collect();
        outln!(
            "{}",
            json!({"file": file, "valid": findings.is_empty(), "errors": [], "warnings": list, "summary": summary})
        );
    } else {
        for f in &findings {
            eprintln!("{file}: {f}");
        }
        if findings.is_empty() {
            outln!("{file}: ok — {summary}");
        } else {
            eprintln!("{file}: valid policy, but {} finding{} against the tool list — fix them or the rules will not match", findings.len(), plural(findings.len()));
        }
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `portcullis import-intercept FILE`.
pub fn import_intercept(a: &ImportArgs) -> Result<ExitCode, String> {
    let file = a.file.display().to_string();
    let t = match portcullis_intercept::translate(&read(&a.file)?) {
        Ok(t) => t,
        Err(errors) => {
            for e in &errors {
                eprintln!("{file}: {e}");
            }
            eprintln!(
                "{file}: {} error{} — nothing was translated",
                errors.len(),
                plural(errors.len())
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    // The translation must itself be a valid policy; fail loudly rather than emit one that is not.
    if let Err(errors) = portcullis_policy::doc::from_value(&t.policy) {
        for e in &errors {
            eprintln!("{file}: translated policy is invalid: {e}");
        }
        return Ok(ExitCode::FAILURE);
    }
    for n in &t.notes {
        eprintln!("note: {n}");
    }
    let text = serde_json::to_string_pretty(&t.policy).expect("serializable") + "\n";
    match &a.out {
        Some(out) => {
            std::fs::write(out, text)
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            eprintln!("wrote {}", out.display());
        }
        None => out!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `portcullis check`: a dry run of one call, with in-memory counters.
pub fn check(a: &CheckArgs) -> Result<ExitCode, String> {
    let engine = match load(&a.policy)? {
        Ok(e) => e,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}: {e}", a.policy.display());
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let args: Value =
        serde_json::from_str(&a.args).map_err(|e| format!("--args is not JSON: {e}"))?;
    let store = MemoryCounters::new();
    let who = Identity {
        grant_id: &a.grant,
        grant_label: &a.grant,
        session_id: "check",
        client_name: None,
        server: "check",
        principal: None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as u64;
    let mut last_allowed = true;
    for i in 1..=a.times {
        let d = engine.decide(
            &Call {
                tool: &a.tool,
                args: Some(&args),
            },
            &who,
            &store,
            now,
        );
        let (verdict, rule, message) = match &d {
            Decision::Allow(_) => ("allow", String::new(), String::new()),
            Decision::Deny(x) => ("deny", x.rule.clone(), x.message.clone()),
            Decision::NeedsApproval(n, _) => ("approval", n.rule.clone(), n.reason.clone()),
        };
        last_allowed = matches!(d, Decision::Allow(_));
        if a.json {
            outln!(
                "{}",
                json!({"call": i, "decision": verdict, "rule": rule, "message": message, "listed": engine.is_listed(&a.tool)})
            );
        } else if rule.is_empty() {
            outln!("call {i}: ALLOW");
        } else {
            outln!("call {i}: {} — {rule}: {message}", verdict.to_uppercase());
        }
    }
    Ok(if last_allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `stdio` arguments.
#[derive(Args)]
pub struct StdioArgs {
    /// Serve every server of this config as one MCP server (with --all): tools named
    /// `<server>__<tool>`, each call judged by its server's policy.
    #[arg(long, requires = "all")]
    config: Option<PathBuf>,
    /// With --config: one endpoint for all the config's servers.
    #[arg(long, requires = "config", conflicts_with_all = ["policy", "no_policy", "url", "command"])]
    all: bool,
    /// Policy file for this server (the local user is the implicit grant).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Run without a policy file: every call is denied with rule "(no policy)".
    #[arg(long, conflicts_with = "policy")]
    no_policy: bool,
    /// Name of the server (appears in counter keys and logs).
    #[arg(long, default_value = "stdio")]
    server: String,
    /// Keep counters in SQLite under this directory, so that a restart does not reset quotas
    /// (default: in memory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Grant label for the local user (default: $USER or "local").
    #[arg(long)]
    grant: Option<String>,
    /// Log filter (also RUST_LOG), e.g. "info" or "portcullis_gateway=debug". Logs go to stderr.
    #[arg(long, default_value = "warn")]
    log: String,
    /// The server command and its arguments (after `--`, or simply last).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "SERVER_COMMAND"
    )]
    command: Vec<String>,
    /// A remote MCP server (Streamable HTTP) instead of a command.
    #[arg(long)]
    url: Option<String>,
    /// Hold calls that need approval open this long (e.g. 30s) and forward them the moment a
    /// human approves (needs --data-dir).
    #[arg(long)]
    hold: Option<String>,
    /// Extra header for the remote server, `Name: value` (values may use ${VAR}); repeatable.
    #[arg(long)]
    header: Vec<String>,
    /// Check each call's arguments against the inputSchema the server lists: enforce (refuse
    /// mismatches, and calls to a tool whose schema cannot be obtained), warn (log, audit,
    /// forward) or off.
    #[arg(long, default_value = "enforce", value_name = "enforce|warn|off")]
    validate_arguments: portcullis_gateway::schemas::ValidateArguments,
    /// Tool pinning, with --data-dir (pins.db): tofu (a tool's first listed definition is its
    /// pin; a changed one is hidden and refused until approved), strict (new tools too), off.
    #[arg(long, default_value = "tofu", value_name = "tofu|strict|off")]
    pinning: portcullis_gateway::pinning::Pinning,
    /// Poisoned tool definitions, with --data-dir: warn (log, audit, still callable),
    /// quarantine (hidden and refused until approved), off.
    #[arg(long, default_value = "warn", value_name = "warn|quarantine|off")]
    poisoning: portcullis_gateway::pinning::Poisoning,
}

/// The gateway's pins over `store`, poisoning found by the classifier's detectors.
pub(crate) fn tool_pins(
    store: std::sync::Arc<dyn portcullis_store::PinStore>,
) -> std::sync::Arc<portcullis_gateway::pinned::ToolPins> {
    let scan: portcullis_gateway::pinned::PoisonCheck =
        std::sync::Arc::new(|tool: &serde_json::Value| {
            portcullis_classify::poisoning_findings(tool)
                .iter()
                .map(ToString::to_string)
                .collect()
        });
    std::sync::Arc::new(portcullis_gateway::pinned::ToolPins::new(store, Some(scan)))
}

/// `portcullis stdio --policy P -- cmd…`.
pub fn stdio(a: StdioArgs) -> Result<ExitCode, String> {
    init_logging(&a.log, LogFormat::Text);
    if a.all {
        return stdio_all(&a);
    }
    let policy_id = a.policy.as_ref().map(|p| {
        let name = p.file_stem().map_or_else(
            || "policy".to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let hash = std::fs::read(p).map(|b| {
            use sha2::Digest;
            sha2::Sha256::digest(&b)
                .iter()
                .take(8)
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
        });
        (name, hash.unwrap_or_default())
    });
    let engine = match (&a.policy, a.no_policy) {
        (Some(p), _) => match load(p)? {
            Ok(e) => Some(std::sync::Arc::new(e)),
            Err(errors) => {
                for e in &errors {
                    eprintln!("{}: {e}", p.display());
                }
                return Err(format!("{}: the policy is invalid; refusing to start (fix it, or check it with `portcullis validate`)", p.display()));
            }
        },
        (None, true) => None,
        (None, false) => {
            return Err("give --policy FILE (or --no-policy to deny every call)".into())
        }
    };
    // With a data dir, counters persist in SQLite; without, they live in memory.
    let store_cfg = portcullis_store::StoreConfig::default();
    if let Some(dir) = &a.data_dir {
        portcullis_store::factory::create_data_dir(dir)?;
    }
    let store = store_cfg.open_counters(a.data_dir.as_deref())?;
    let label = a
        .grant
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "local".into());
    // With a data dir, every decision is also written to its durable audit log.
    let audit = match &a.data_dir {
        Some(dir) => Some(portcullis_gateway::events::Events::audit(Some(
            open_serving_audit(dir, portcullis_store::AuditMode::Durable)?,
        ))),
        None => None,
    };
    // Traces from the standard OTEL_* variables (stdio has no config file): every request's
    // spans, and the trace context passed on to the server.
    let telemetry = portcullis_gateway::traces::Telemetry::resolve(&Default::default(), |k| {
        std::env::var(k).ok()
    })?;
    let tracer = match &telemetry {
        Some(t) => Some(std::sync::Arc::new(
            portcullis_gateway::spans::Tracer::start(t)
                .map_err(|e| format!("cannot start the trace exporter: {e}"))?,
        )),
        None => None,
    };
    let audit = match (audit, &tracer) {
        (Some(e), _) => Some(e.traced(tracer.clone())),
        (None, Some(_)) => {
            Some(portcullis_gateway::events::Events::new(Vec::new()).traced(tracer.clone()))
        }
        (None, None) => None,
    };
    // With a data dir, approve_if calls wait for a human (`portcullis approvals …`).
    let approvals = match &a.data_dir {
        Some(dir) => Some(portcullis_store::factory::open_approvals(dir)?),
        None => None,
    };
    let relay = portcullis_gateway::Relay::new(portcullis_gateway::RelayConfig {
        store,
        server: a.server.clone(),
        clock: portcullis_gateway::relay::system_clock,
        audit: audit.is_some(),
        approvals,
        on_new_approval: None,
        hold_ms: a
            .hold
            .as_deref()
            .map(|h| {
                portcullis_policy::window::parse_duration(h)
                    .ok_or_else(|| format!("--hold {h:?} is not a duration (e.g. 30s)"))
            })
            .transpose()?
            .unwrap_or(0),
    })
    .validating(Default::default(), a.validate_arguments)
    .writing_ahead(audit.as_ref().is_some_and(|e| e.writes_ahead()))
    .timing(tracer.is_some());
    // With a data dir, listed tools are judged against their pins (pins.db).
    let relay = match &a.data_dir {
        Some(dir) => relay.pinning(
            tool_pins(portcullis_store::factory::open_pins(dir)?),
            portcullis_gateway::pinned::PinSettings {
                pinning: a.pinning,
                poisoning: a.poisoning,
            },
        ),
        None => relay,
    };
    let caller = portcullis_gateway::Caller {
        engine,
        grant_id: format!("local:{label}"),
        grant_label: label,
        session_id: format!("stdio-{}", std::process::id()),
        policy: policy_id,
        request_id: None,
        principal: None,
        trace: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (stdin, stdout) = rt.block_on(async { portcullis_gateway::stdio::std_streams() });
    let spec = match (&a.url, a.command.is_empty()) {
        (Some(url), true) => {
            let mut headers = Vec::new();
            for h in &a.header {
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| format!("--header {h:?}: write it as 'Name: value'"))?;
                headers.push((
                    k.trim().to_string(),
                    portcullis_gateway::config::expand_env(v.trim())?,
                ));
            }
            portcullis_gateway::upstream::UpstreamSpec::for_url(url.clone(), headers)
        }
        (None, false) => portcullis_gateway::upstream::UpstreamSpec::Command(
            portcullis_gateway::upstream::stdio::ChildSpec {
                argv: a.command.clone(),
                env: Vec::new(),
            },
        ),
        (Some(_), false) => return Err("give either --url or a server command, not both".into()),
        (None, true) => return Err("give the server command after --, or --url URL".into()),
    };
    rt.block_on(portcullis_gateway::stdio::run(
        std::sync::Arc::new(relay),
        caller,
        spec,
        audit,
        stdin,
        stdout,
        Default::default(),
    ))
    .map_err(|e| e.to_string())?;
    if let Some(t) = &tracer {
        rt.block_on(t.flush(std::time::Duration::from_secs(5)));
    }
    Ok(ExitCode::SUCCESS)
}

/// `portcullis stdio --config portcullis.toml --all`: every server of the config behind one
/// stdio endpoint, each with its own policy, counters, pins and audit records (the config's
/// data dir and `[store]`, as `serve` uses them).
fn stdio_all(a: &StdioArgs) -> Result<ExitCode, String> {
    let config = a.config.as_ref().ok_or("--all needs --config FILE")?;
    let cfg = portcullis_gateway::config::Config::load(config)?;
    if cfg.servers.is_empty() {
        return Err(format!("{}: no [[servers]] to serve", config.display()));
    }
    let dir = cfg.resolve(&cfg.gateway.data_dir);
    let portcullis_store::Stores {
        counters: store,
        grants,
        approvals,
        pins,
        sessions: _,
    } = cfg.store.clone().open(&dir)?;
    let audit = match cfg.gateway.audit.as_str() {
        "off" => None,
        mode => {
            let mode: portcullis_store::AuditMode =
                mode.parse().map_err(|e| format!("gateway.audit: {e}"))?;
            Some(open_serving_audit(&dir, mode)?)
        }
    };
    let telemetry =
        portcullis_gateway::traces::Telemetry::resolve(&cfg.telemetry, |k| std::env::var(k).ok())?;
    let tracer = match &telemetry {
        Some(t) => Some(std::sync::Arc::new(
            portcullis_gateway::spans::Tracer::start(t)
                .map_err(|e| format!("cannot start the trace exporter: {e}"))?,
        )),
        None => None,
    };
    let gw = portcullis_gateway::http::Gateway::new(
        &cfg,
        portcullis_gateway::http::Parts {
            store,
            grants: Some(grants),
            audit,
            approvals: Some(approvals),
            metrics: None,
            pins: Some(tool_pins(pins)),
            tracer: tracer.clone(),
        },
    )?;
    let label = a
        .grant
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "local".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (stdin, stdout) = rt.block_on(async { portcullis_gateway::stdio::std_streams() });
    rt.block_on(portcullis_gateway::stdio::run_all(
        gw.clone(),
        &label,
        stdin,
        stdout,
        Default::default(),
    ))?;
    rt.block_on(gw.shutdown());
    if let Some(t) = &tracer {
        rt.block_on(t.flush(std::time::Duration::from_secs(5)));
    }
    Ok(ExitCode::SUCCESS)
}

/// How a long-running command writes its log to standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; colours only when standard error is a terminal.
    Text,
    /// One JSON object per line (timestamp, level, target, fields), never coloured.
    Json,
}

fn init_logging(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .try_init(),
        LogFormat::Json => log.json().with_ansi(false).try_init(),
    };
}

/// `serve` arguments.
#[derive(Args)]
pub struct ServeArgs {
    /// Configuration file.
    #[arg(long, default_value = "portcullis.toml")]
    config: PathBuf,
    /// Override `[gateway] listen`.
    #[arg(long)]
    listen: Option<String>,
    /// Keep counters in memory instead of SQLite in the data dir (quotas reset on restart).
    #[arg(long)]
    memory_counters: bool,
    /// Log filter (also RUST_LOG). Logs go to stderr.
    #[arg(long, default_value = "info")]
    log: String,
    /// Log lines as `text` or `json` (one object per line, for a log collector).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// `portcullis serve --config portcullis.toml`.
pub fn serve(a: ServeArgs) -> Result<ExitCode, String> {
    init_logging(&a.log, a.log_format);
    let mut cfg = portcullis_gateway::config::Config::load(&a.config)?;
    if let Some(l) = &a.listen {
        cfg.gateway.listen = l.clone();
    }
    let addr = cfg.listen_addr()?;
    // Read and check the telemetry settings now, so a bad OTEL_* value stops the start.
    let telemetry =
        portcullis_gateway::traces::Telemetry::resolve(&cfg.telemetry, |k| std::env::var(k).ok())?;
    // Traces: spans of every request, exported over OTLP/HTTP from a thread of their own.
    let tracer = match &telemetry {
        Some(t) => {
            let tracer = portcullis_gateway::spans::Tracer::start(t)
                .map_err(|e| format!("cannot start the trace exporter: {e}"))?;
            tracing::info!(
                "traces: exporting to {} (sampling ratio {})",
                t.traces_url,
                t.sampling_ratio
            );
            Some(std::sync::Arc::new(tracer))
        }
        None => None,
    };
    let gw_tracer = tracer.clone();
    let dir = cfg.resolve(&cfg.gateway.data_dir);
    let mut store_cfg = cfg.store.clone();
    if a.memory_counters {
        store_cfg.counters = portcullis_store::CounterBackend::Memory;
    }
    let portcullis_store::Stores {
        counters: store,
        grants,
        approvals,
        pins,
        sessions,
    } = store_cfg.open(&dir)?;
    let audit = match cfg.gateway.audit.as_str() {
        "off" => None,
        mode => {
            let mode: portcullis_store::AuditMode =
                mode.parse().map_err(|e| format!("gateway.audit: {e}"))?;
            Some(open_serving_audit(&dir, mode)?)
        }
    };
    let retention = cfg
        .gateway
        .audit_retention
        .as_deref()
        .and_then(portcullis_policy::window::parse_duration);
    let gw = portcullis_gateway::http::Gateway::new(
        &cfg,
        portcullis_gateway::http::Parts {
            store,
            grants: Some(grants),
            audit: audit.clone(),
            approvals: Some(approvals),
            // Metrics: a second event sink, scraped at /metrics with the admin token.
            metrics: cfg.gateway.metrics.then(|| {
                std::sync::Arc::new(portcullis_gateway::metrics::MetricsSink::new(
                    cfg.servers.iter().map(|s| &s.name),
                ))
            }),
            // Tool pins: every listing judged, calls to tools not pinned refused.
            pins: Some(tool_pins(pins)),
            tracer: gw_tracer,
        },
    )?;
    if let Some(sessions) = sessions {
        gw.share_sessions(sessions, store_cfg.session_ttl()?);
    }
    let admin_token = crate::admin_api::admin_token_hash(&dir)?;
    // One thread per core, each with a runtime of its own, each connection on one of them.
    let threads = match cfg.gateway.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cores = portcullis_gateway::http::Cores::start(threads - 1)
        .map_err(|e| format!("cannot start the gateway's threads: {e}"))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        // The banner: plain lines for a person, log events for a collector parsing JSON.
        let say = |line: String| match a.log_format {
            LogFormat::Text => eprintln!("{line}"),
            LogFormat::Json => tracing::info!("{}", line.trim_start()),
        };
        say(format!("portcullis: listening on http://{local}"));
        for s in &cfg.servers {
            say(format!(
                "  /mcp/{0}  /sse/{0}  ({1})",
                s.name,
                if s.policy.is_some() {
                    "policy loaded"
                } else {
                    "no policy: every call denied"
                }
            ));
        }
        say("  /admin/api/  (admin API; OpenAPI at /admin/api/openapi.json)".into());
        say("  /metrics     (Prometheus; admin token)".into());
        say("  /ui/         (web console; sign in with the admin token)".into());
        // The admin operations, with two faces: the admin API and the web console.
        let ops = std::sync::Arc::new(crate::ops::Ops::new(
            gw.clone(),
            cfg.clone(),
            a.config.clone(),
        ));
        let max_body = cfg.gateway.max_body_bytes;
        let app = gw
            .router(max_body)
            .merge(crate::admin_api::router(ops.clone(), admin_token, max_body))
            .merge(crate::console::router(ops, admin_token, max_body));
        // Hot reload of the config and policies, audit retention: the gateway's own loops.
        gw.spawn_background(a.config.clone(), retention);
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("signal handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        let limits = portcullis_gateway::http::Limits::new(&cfg.gateway);
        portcullis_gateway::http::serve_on(listener, app, limits, &cores, shutdown).await;
        gw.shutdown().await;
        if let Some(t) = &tracer {
            t.flush(std::time::Duration::from_secs(5)).await;
        }
        Ok::<_, String>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `demo` arguments.
#[derive(Args)]
pub struct DemoArgs {
    /// Where to write the demo policy (kept, so the printed client snippet keeps working).
    #[arg(long, default_value = "portcullis-data/demo")]
    dir: PathBuf,
}

/// `portcullis demo`: the walkthrough.
pub fn demo(a: DemoArgs) -> Result<ExitCode, String> {
    std::fs::create_dir_all(&a.dir)
        .map_err(|e| format!("cannot create {}: {e}", a.dir.display()))?;
    let dir = a.dir.canonicalize().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let exe = exe.display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let opts = portcullis_demo::Options {
        policy_dir: Some(dir),
        command: exe.clone(),
    };
    let mut out = crate::out::Stdout;
    let w = rt
        .block_on(portcullis_demo::walkthrough_with(
            &opts,
            vec![exe, "demo-upstream".into()],
            &mut out,
        ))
        .map_err(|e| format!("the demo failed: {e}"))?;
    let ok = w.runs_passed == 10
        && w.run_denial_rule.is_some()
        && !w.delete_tool_listed
        && w.payment_denied;
    if !ok {
        eprintln!("the demo did not behave as expected: {w:?}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `portcullis demo-upstream`: the demo server on stdio.
pub fn demo_upstream() -> Result<ExitCode, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(portcullis_demo::serve_stdio())
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// The audit log a gateway serves with: opened in `mode`, and the calls that a stopped
/// gateway forwarded without seeing their answers settled as outcome unknown (said once).
fn open_serving_audit(
    dir: &std::path::Path,
    mode: portcullis_store::AuditMode,
) -> Result<std::sync::Arc<portcullis_store::AuditLog>, String> {
    let log = portcullis_store::factory::open_audit(dir, mode)?;
    match log.settle_unfinished() {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            "{n} call(s) forwarded by a gateway that stopped before their answers are recorded \
             with outcome unknown (see `portcullis audit --json`)"
        ),
        Err(e) => tracing::warn!("cannot settle the calls of a stopped gateway: {e}"),
    }
    Ok(std::sync::Arc::new(log))
}
