//! The demo MCP server: Odoo-like tools over a few fake invoices kept in memory.
//!
//! Line-delimited JSON-RPC 2.0, legacy handshake era (`initialize` /
//! `notifications/initialized`). `server/discover` and every other unknown method get
//! `-32601`, so that dual-era clients fall back to `initialize`. Deterministic: no clock, no
//! randomness; the same calls always give the same answers.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// The demo server's name in `serverInfo` (and in the client config snippet).
pub const SERVER_NAME: &str = "odoo-demo";

/// Protocol revisions the demo server accepts in `initialize`, newest first. Any other
/// requested revision is answered with the first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INVALID_REQUEST: i64 = -32600;
const PARSE_ERROR: i64 = -32700;

fn schema(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

/// The demo server's `tools/list` result (`{"tools": [...]}`), one page.
///
/// Argument names and types follow the real Odoo Claude MCP server's tools; descriptions are
/// the demo's own. Tools: `odoo_search_read`, `odoo_read`, `ai_invoice_pipeline_summary`
/// (reads), `odoo_write` (write), `ai_invoice_pipeline_run`, `ai_pipeline_run` (execute),
/// `account_payment_register` (payment) and `odoo_unlink` (delete).
pub fn tools() -> Value {
    let connection = json!({"type": "string", "default": "default", "description": "Named Odoo connection (the demo has only \"default\")."});
    let tenant_code = json!({"type": "string", "default": ""});
    let tenant_tier = json!({"type": "string", "enum": ["starter", "business", "professional", "enterprise"], "default": "business"});
    json!({"tools": [
        {
            "name": "odoo_search_read",
            "title": "Search records",
            "description": "Find records of a model that match a domain and return the requested fields. Demo models: account.move (invoices and vendor bills), res.partner.",
            "inputSchema": schema(json!({
                "connection": connection,
                "model": {"type": "string", "description": "Model name, e.g. account.move."},
                "domain": {"type": "array", "default": [], "description": "Odoo domain: a list of [field, operator, value] triples, all of which must hold."},
                "fields": {"type": "array", "items": {"type": "string"}, "default": [], "description": "Fields to return (empty: all)."},
                "limit": {"type": "integer", "default": 80},
                "offset": {"type": "integer", "default": 0},
                "order": {"type": "string", "default": "", "description": "e.g. \"amount_total desc\"."}
            }), &["model"]),
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "odoo_read",
            "title": "Read records",
            "description": "Return the given records of a model by id.",
            "inputSchema": schema(json!({
                "connection": connection,
                "model": {"type": "string"},
                "ids": {"type": "array", "items": {"type": "integer"}, "description": "Ids of the records to return."},
                "fields": {"type": "array", "items": {"type": "string"}, "default": [], "description": "Fields to return (empty: all)."}
            }), &["model", "ids"]),
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "ai_invoice_pipeline_summary",
            "title": "Invoice pipeline summary",
            "description": "Count vendor bills by the pipeline step they are waiting for (extract, post, done).",
            "inputSchema": {"type": "object", "properties": {
                "connection": connection,
                "tenant_code": tenant_code
            }},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "odoo_write",
            "title": "Update records",
            "description": "Set field values on existing records of a model.",
            "inputSchema": schema(json!({
                "connection": connection,
                "model": {"type": "string"},
                "ids": {"type": "array", "items": {"type": "integer"}},
                "values": {"type": "object", "description": "Field name to new value."}
            }), &["model", "ids", "values"]),
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "ai_invoice_pipeline_run",
            "title": "Run the invoice pipeline",
            "description": "Run every registered step of the vendor-bill pipeline on one bill and its attachment: probe the bill, skip it if already extracted, read the scan, log usage, write the extracted values back, hand over to posting. Returns what each step did.",
            "inputSchema": schema(json!({
                "connection": connection,
                "tenant_code": tenant_code,
                "tenant_tier": tenant_tier,
                "move_id": {"type": "integer", "description": "The vendor bill (account.move id)."},
                "attachment_id": {"type": "integer", "default": 0, "description": "Attachment to read; 0 picks the bill's own."},
                "source": {"type": "string", "enum": ["upload", "gmail", "terminal", "api", "force"], "default": "upload"},
                "source_message_id": {"type": "string", "default": ""}
            }), &["move_id"]),
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": true}
        },
        {
            "name": "ai_pipeline_run",
            "title": "Run an Odoo pipeline",
            "description": "Run the steps of a pipeline defined in Odoo (tokenize, post, refresh) against one record, in sequence, and report each step's outcome.",
            "inputSchema": schema(json!({
                "connection": connection,
                "pipeline": {"type": "string", "description": "Pipeline name: tokenize, post or refresh."},
                "source_model": {"type": "string", "description": "Model of the record the pipeline runs on, e.g. account.move."},
                "source_id": {"type": "integer"},
                "tenant_code": tenant_code,
                "tenant_tier": tenant_tier,
                "extra_ctx": {"type": "object", "default": {}, "description": "Extra context values for the steps."},
                "update_step_stats": {"type": "boolean", "default": true, "description": "Record each step's last state on the step."}
            }), &["pipeline", "source_model", "source_id"]),
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": true}
        },
        {
            "name": "account_payment_register",
            "title": "Register a payment",
            "description": "Register a payment against an invoice and mark it paid.",
            "inputSchema": schema(json!({
                "invoice_id": {"type": "integer", "description": "The invoice (account.move id)."},
                "amount": {"type": "number", "description": "Amount paid."},
                "currency": {"type": "string", "description": "ISO currency code, e.g. EUR."}
            }), &["invoice_id", "amount", "currency"]),
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": true}
        },
        {
            "name": "odoo_unlink",
            "title": "Delete records",
            "description": "Delete records of a model by id. Cannot be undone.",
            "inputSchema": schema(json!({
                "connection": connection,
                "model": {"type": "string"},
                "ids": {"type": "array", "items": {"type": "integer"}}
            }), &["model", "ids"]),
            "annotations": {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false}
        }
    ]})
}

type Record = Map<String, Value>;

fn rec(v: Value) -> Record {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("records are objects"),
    }
}

/// The fake database and the server's counters.
struct Db {
    models: BTreeMap<&'static str, Vec<Record>>,
    runs: u64,
    payments: u64,
}

impl Db {
    fn new() -> Db {
        let partners = vec![
            rec(
                json!({"id": 11, "name": "Azure Interior", "is_company": true, "email": "bills@azure-interior.example", "country": "BE"}),
            ),
            rec(
                json!({"id": 12, "name": "Deco Addict", "is_company": true, "email": "accounts@deco-addict.example", "country": "FR"}),
            ),
            rec(
                json!({"id": 13, "name": "Wood Corner", "is_company": true, "email": "invoices@wood-corner.example", "country": "NL"}),
            ),
            rec(
                json!({"id": 14, "name": "Gemini Furniture", "is_company": true, "email": "ap@gemini-furniture.example", "country": "DE"}),
            ),
        ];
        let moves = vec![
            rec(json!({
                "id": 1, "name": "BILL/2025/0041", "move_type": "in_invoice",
                "partner_id": [11, "Azure Interior"], "invoice_date": "2025-11-03",
                "amount_total": 1250.0, "currency_id": [1, "EUR"], "state": "draft",
                "payment_state": "not_paid", "next_step": "extract", "attachment_id": 501
            })),
            rec(json!({
                "id": 2, "name": "BILL/2025/0042", "move_type": "in_invoice",
                "partner_id": [12, "Deco Addict"], "invoice_date": "2025-11-05",
                "amount_total": 480.5, "currency_id": [1, "EUR"], "state": "draft",
                "payment_state": "not_paid", "next_step": "post", "attachment_id": 502
            })),
            rec(json!({
                "id": 3, "name": "BILL/2025/0038", "move_type": "in_invoice",
                "partner_id": [13, "Wood Corner"], "invoice_date": "2025-10-28",
                "amount_total": 2199.9, "currency_id": [1, "EUR"], "state": "posted",
                "payment_state": "paid", "next_step": "done", "attachment_id": 503
            })),
            rec(json!({
                "id": 4, "name": "INV/2025/0107", "move_type": "out_invoice",
                "partner_id": [14, "Gemini Furniture"], "invoice_date": "2025-11-06",
                "amount_total": 3200.0, "currency_id": [1, "EUR"], "state": "posted",
                "payment_state": "not_paid", "next_step": "done", "attachment_id": 0
            })),
        ];
        let mut models = BTreeMap::new();
        models.insert("account.move", moves);
        models.insert("res.partner", partners);
        Db {
            models,
            runs: 0,
            payments: 0,
        }
    }

    fn model(&self, name: &str) -> Result<&Vec<Record>, String> {
        self.models.get(name).ok_or_else(|| {
            format!(
                "Model {name:?} does not exist in the demo database. Demo models: {}.",
                self.models.keys().copied().collect::<Vec<_>>().join(", ")
            )
        })
    }

    fn model_mut(&mut self, name: &str) -> Result<&mut Vec<Record>, String> {
        if !self.models.contains_key(name) {
            return Err(self.model(name).err().unwrap_or_default());
        }
        Ok(self.models.get_mut(name).expect("checked"))
    }

    fn find_move(&self, id: i64) -> Result<&Record, String> {
        self.models["account.move"]
            .iter()
            .find(|r| r["id"].as_i64() == Some(id))
            .ok_or_else(|| format!("account.move {id} does not exist."))
    }

    fn find_move_mut(&mut self, id: i64) -> Result<&mut Record, String> {
        self.models
            .get_mut("account.move")
            .expect("seeded")
            .iter_mut()
            .find(|r| r["id"].as_i64() == Some(id))
            .ok_or_else(|| format!("account.move {id} does not exist."))
    }
}

/// What a tool call produced: a structured result, or a tool error for the model to read.
type ToolResult = Result<Value, String>;

fn arg<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    args.get(name).filter(|v| !v.is_null())
}

fn req_str<'a>(args: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match arg(args, name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("Argument {name:?} must be a string.")),
        None => Err(format!("Argument {name:?} is required.")),
    }
}

fn req_int(args: &Map<String, Value>, name: &str) -> Result<i64, String> {
    match arg(args, name) {
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("Argument {name:?} must be an integer.")),
        None => Err(format!("Argument {name:?} is required.")),
    }
}

fn opt_int(args: &Map<String, Value>, name: &str, default: i64) -> Result<i64, String> {
    match arg(args, name) {
        Some(_) => req_int(args, name),
        None => Ok(default),
    }
}

fn opt_str<'a>(
    args: &'a Map<String, Value>,
    name: &str,
    default: &'a str,
) -> Result<&'a str, String> {
    match arg(args, name) {
        Some(_) => req_str(args, name),
        None => Ok(default),
    }
}

fn ids_arg(args: &Map<String, Value>) -> Result<Vec<i64>, String> {
    match arg(args, "ids") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| "Argument \"ids\" must be a list of integers.".to_owned())
            })
            .collect(),
        Some(_) => Err("Argument \"ids\" must be a list of integers.".into()),
        None => Err("Argument \"ids\" is required.".into()),
    }
}

fn fields_arg(args: &Map<String, Value>) -> Result<Vec<String>, String> {
    match arg(args, "fields") {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "Argument \"fields\" must be a list of strings.".to_owned())
            })
            .collect(),
        Some(_) => Err("Argument \"fields\" must be a list of strings.".into()),
    }
}

fn check_connection(args: &Map<String, Value>) -> Result<(), String> {
    match opt_str(args, "connection", "default")? {
        "default" => Ok(()),
        other => Err(format!(
            "Connection {other:?} is not configured; the demo has only \"default\"."
        )),
    }
}

fn project(r: &Record, fields: &[String]) -> Value {
    if fields.is_empty() {
        return Value::Object(r.clone());
    }
    let mut out = Map::new();
    out.insert("id".into(), r["id"].clone());
    for f in fields {
        if let Some(v) = r.get(f) {
            out.insert(f.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// The scalar a domain compares against: a many2one `[id, name]` compares by id (or by name
/// for string operands).
fn comparable<'a>(field: &'a Value, operand: &Value) -> &'a Value {
    match field {
        Value::Array(pair) if pair.len() == 2 => {
            if operand.is_string() {
                &pair[1]
            } else {
                &pair[0]
            }
        }
        v => v,
    }
}

fn cmp_values(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn values_eq(a: &Value, b: &Value) -> bool {
    cmp_values(a, b) == Some(std::cmp::Ordering::Equal) || a == b
}

fn matches_term(r: &Record, term: &Value) -> Result<bool, String> {
    let Some([field, op, operand]) = term.as_array().map(Vec::as_slice) else {
        return Err(format!(
            "Domain term {term} is not supported by the demo: use [field, operator, value] triples (all must hold)."
        ));
    };
    let (Some(field), Some(op)) = (field.as_str(), op.as_str()) else {
        return Err(format!(
            "Domain term {term}: field and operator must be strings."
        ));
    };
    let Some(value) = r.get(field) else {
        return Err(format!("Field {field:?} does not exist on this model."));
    };
    let v = comparable(value, operand);
    use std::cmp::Ordering::*;
    Ok(match op {
        "=" => values_eq(v, operand),
        "!=" => !values_eq(v, operand),
        ">" => cmp_values(v, operand) == Some(Greater),
        ">=" => matches!(cmp_values(v, operand), Some(Greater | Equal)),
        "<" => cmp_values(v, operand) == Some(Less),
        "<=" => matches!(cmp_values(v, operand), Some(Less | Equal)),
        "in" | "not in" => {
            let Some(list) = operand.as_array() else {
                return Err(format!("Operator {op:?} needs a list."));
            };
            let found = list.iter().any(|o| values_eq(comparable(value, o), o));
            found == (op == "in")
        }
        "ilike" | "like" => match (v.as_str(), operand.as_str()) {
            (Some(s), Some(needle)) if op == "ilike" => {
                s.to_lowercase().contains(&needle.to_lowercase())
            }
            (Some(s), Some(needle)) => s.contains(needle),
            _ => false,
        },
        _ => {
            return Err(format!(
                "Operator {op:?} is not supported by the demo (=, !=, <, <=, >, >=, in, not in, like, ilike)."
            ))
        }
    })
}

fn search_read(db: &Db, args: &Map<String, Value>) -> ToolResult {
    check_connection(args)?;
    let model = req_str(args, "model")?;
    let records = db.model(model)?;
    let domain = match arg(args, "domain") {
        None => Vec::new(),
        Some(Value::Array(d)) => d.clone(),
        Some(_) => return Err("Argument \"domain\" must be a list.".into()),
    };
    let fields = fields_arg(args)?;
    let limit = opt_int(args, "limit", 80)?.max(0) as usize;
    let offset = opt_int(args, "offset", 0)?.max(0) as usize;
    let mut hits = Vec::new();
    for r in records {
        let mut ok = true;
        for t in &domain {
            if !matches_term(r, t)? {
                ok = false;
                break;
            }
        }
        if ok {
            hits.push(r);
        }
    }
    let order = opt_str(args, "order", "")?.trim();
    if !order.is_empty() {
        let mut parts = order.split_whitespace();
        let key = parts.next().unwrap_or("id");
        let desc = parts.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
        if !records.first().is_some_and(|r| r.contains_key(key)) {
            return Err(format!("Cannot order by {key:?}: no such field."));
        }
        hits.sort_by(|a, b| {
            let o = cmp_values(&a[key], &b[key]).unwrap_or(std::cmp::Ordering::Equal);
            if desc {
                o.reverse()
            } else {
                o
            }
        });
    }
    let total = hits.len();
    let page: Vec<Value> = hits
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| project(r, &fields))
        .collect();
    Ok(json!({"model": model, "count": page.len(), "total": total, "records": page}))
}

fn read(db: &Db, args: &Map<String, Value>) -> ToolResult {
    check_connection(args)?;
    let model = req_str(args, "model")?;
    let records = db.model(model)?;
    let ids = ids_arg(args)?;
    let fields = fields_arg(args)?;
    let mut out = Vec::new();
    for id in ids {
        let r = records
            .iter()
            .find(|r| r["id"].as_i64() == Some(id))
            .ok_or_else(|| format!("{model} {id} does not exist."))?;
        out.push(project(r, &fields));
    }
    Ok(json!({"model": model, "records": out}))
}

fn pipeline_summary(db: &Db, args: &Map<String, Value>) -> ToolResult {
    check_connection(args)?;
    let mut counts = Map::new();
    for step in ["extract", "post", "done"] {
        let n = db.models["account.move"]
            .iter()
            .filter(|r| r["move_type"] == "in_invoice" && r["next_step"] == step)
            .count();
        counts.insert(step.into(), json!(n));
    }
    let total: u64 = counts.values().filter_map(Value::as_u64).sum();
    Ok(json!({"vendor_bills": total, "by_next_step": counts}))
}

fn write(db: &mut Db, args: &Map<String, Value>) -> ToolResult {
    check_connection(args)?;
    let model = req_str(args, "model")?.to_owned();
    let ids = ids_arg(args)?;
    let Some(Value::Object(values)) = arg(args, "values") else {
        return Err("Argument \"values\" must be an object of field values.".into());
    };
    let records = db.model_mut(&model)?;
    for id in &ids {
        let r = records
            .iter()
            .find(|r| r["id"].as_i64() == Some(*id))
            .ok_or_else(|| format!("{model} {id} does not exist."))?;
        for k in values.keys() {
            if k == "id" {
                return Err("The field \"id\" cannot be written.".into());
            }
            if !r.contains_key(k) {
                return Err(format!("Field {k:?} does not exist on {model}."));
            }
        }
    }
    for r in records.iter_mut() {
        if ids.contains(&r["id"].as_i64().unwrap_or(-1)) {
            for (k, v) in values {
                r.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(json!({"model": model, "ids": ids, "updated": true}))
}

fn unlink(db: &mut Db, args: &Map<String, Value>) -> ToolResult {
    check_connection(args)?;
    let model = req_str(args, "model")?.to_owned();
    let ids = ids_arg(args)?;
    let records = db.model_mut(&model)?;
    for id in &ids {
        if !records.iter().any(|r| r["id"].as_i64() == Some(*id)) {
            return Err(format!("{model} {id} does not exist."));
        }
    }
    records.retain(|r| !ids.contains(&r["id"].as_i64().unwrap_or(-1)));
    Ok(json!({"model": model, "ids": ids, "deleted": true}))
}

fn step(name: &str, state: &str, message: String) -> Value {
    json!({"step": name, "state": state, "message": message})
}

fn tier_of(args: &Map<String, Value>) -> Result<String, String> {
    let tier = opt_str(args, "tenant_tier", "business")?;
    if !["starter", "business", "professional", "enterprise"].contains(&tier) {
        return Err(format!(
            "tenant_tier {tier:?} is not one of starter, business, professional, enterprise."
        ));
    }
    Ok(tier.to_owned())
}

fn invoice_pipeline_run(db: &mut Db, args: &Map<String, Value>) -> ToolResult {
    check_connection(args)?;
    let move_id = req_int(args, "move_id")?;
    let attachment = opt_int(args, "attachment_id", 0)?;
    let source = opt_str(args, "source", "upload")?.to_owned();
    if !["upload", "gmail", "terminal", "api", "force"].contains(&source.as_str()) {
        return Err(format!(
            "source {source:?} is not one of upload, gmail, terminal, api, force."
        ));
    }
    let tier = tier_of(args)?;
    let m = db.find_move(move_id)?;
    if m["move_type"] != "in_invoice" {
        return Err(format!(
            "account.move {move_id} ({}) is not a vendor bill; the invoice pipeline runs on vendor bills only.",
            m["name"].as_str().unwrap_or("?")
        ));
    }
    let own = m["attachment_id"].as_i64().unwrap_or(0);
    let attachment = if attachment == 0 { own } else { attachment };
    if attachment != own {
        return Err(format!(
            "Attachment {attachment} does not belong to account.move {move_id} (its attachment is {own})."
        ));
    }
    let name = m["name"].as_str().unwrap_or("?").to_owned();
    let total = m["amount_total"].clone();
    let partner = m["partner_id"][1].as_str().unwrap_or("?").to_owned();
    let already = m["next_step"] != "extract" && source != "force";
    db.runs += 1;
    let run_id = format!("run-{:04}", db.runs);
    let mut steps = vec![step(
        "probe_move",
        "ok",
        format!("{name}: vendor bill from {partner}, attachment {attachment}"),
    )];
    let status = if already {
        steps.push(step(
            "guard_already_extracted",
            "stop",
            format!("{name} was already extracted; nothing to do (use source \"force\" to redo)"),
        ));
        for s in [
            "extract_vision",
            "log_usage",
            "write_back_move",
            "invoke_posting_skill",
        ] {
            steps.push(step(s, "skipped", "guard stopped the pipeline".into()));
        }
        "skipped"
    } else {
        steps.push(step(
            "guard_already_extracted",
            "ok",
            "not extracted yet".into(),
        ));
        steps.push(step(
            "extract_vision",
            "ok",
            format!("read 3 lines, total {total} EUR (simulated)"),
        ));
        steps.push(step(
            "log_usage",
            "ok",
            format!("1 page charged to tier {tier}"),
        ));
        steps.push(step(
            "write_back_move",
            "ok",
            format!("{name}: lines and totals written"),
        ));
        steps.push(step(
            "invoke_posting_skill",
            "ok",
            format!("{name} queued for posting"),
        ));
        let m = db.find_move_mut(move_id)?;
        m.insert("next_step".into(), json!("post"));
        "completed"
    };
    Ok(json!({
        "run_id": run_id,
        "move_id": move_id,
        "move": name,
        "attachment_id": attachment,
        "source": source,
        "status": status,
        "steps": steps
    }))
}

fn pipeline_run(db: &mut Db, args: &Map<String, Value>) -> ToolResult {
    check_connection(args)?;
    let pipeline = req_str(args, "pipeline")?.to_owned();
    let model = req_str(args, "source_model")?.to_owned();
    let id = req_int(args, "source_id")?;
    tier_of(args)?;
    if let Some(ctx) = arg(args, "extra_ctx") {
        if !ctx.is_object() {
            return Err("Argument \"extra_ctx\" must be an object.".into());
        }
    }
    let records = db.model(&model)?;
    let Some(r) = records.iter().find(|r| r["id"].as_i64() == Some(id)) else {
        return Err(format!("{model} {id} does not exist."));
    };
    let label = r["name"].as_str().unwrap_or("?").to_owned();
    let steps: Vec<Value> = match pipeline.as_str() {
        "tokenize" => vec![
            step("mcp.load_record", "ok", format!("loaded {label}")),
            step(
                "mcp.tokenize",
                "ok",
                format!("{label}: 42 tokens (simulated)"),
            ),
        ],
        "refresh" => vec![
            step("mcp.load_record", "ok", format!("loaded {label}")),
            step(
                &format!("{model}.refresh_state"),
                "ok",
                format!("{label}: recomputed"),
            ),
        ],
        "post" => {
            if model != "account.move" {
                return Err(format!(
                    "The \"post\" pipeline runs on account.move, not {model}."
                ));
            }
            let m = db.find_move_mut(id)?;
            let was = m["state"].as_str().unwrap_or("?").to_owned();
            let posted = if was == "draft" {
                m.insert("state".into(), json!("posted"));
                m.insert("next_step".into(), json!("done"));
                step("account.move.action_post", "ok", format!("{label} posted"))
            } else {
                step(
                    "account.move.action_post",
                    "skipped",
                    format!("{label} is already {was}"),
                )
            };
            vec![
                step("mcp.load_record", "ok", format!("loaded {label}")),
                posted,
            ]
        }
        other => {
            return Err(format!(
                "No pipeline named {other:?}. Demo pipelines: tokenize, post, refresh."
            ))
        }
    };
    db.runs += 1;
    Ok(json!({
        "run_id": format!("run-{:04}", db.runs),
        "pipeline": pipeline,
        "source_model": model,
        "source_id": id,
        "status": "completed",
        "steps": steps
    }))
}

fn payment_register(db: &mut Db, args: &Map<String, Value>) -> ToolResult {
    let id = req_int(args, "invoice_id")?;
    let amount = match arg(args, "amount") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(_) => return Err("Argument \"amount\" must be a number.".into()),
        None => return Err("Argument \"amount\" is required.".into()),
    };
    if !(amount.is_finite() && amount > 0.0) {
        return Err("Argument \"amount\" must be a positive number.".into());
    }
    let currency = req_str(args, "currency")?.to_uppercase();
    let m = db.find_move(id)?;
    let own = m["currency_id"][1].as_str().unwrap_or("EUR");
    if currency != own {
        return Err(format!(
            "{} is in {own}, not {currency}.",
            m["name"].as_str().unwrap_or("?")
        ));
    }
    if m["state"] != "posted" {
        return Err(format!(
            "{} is not posted; only posted invoices can be paid.",
            m["name"].as_str().unwrap_or("?")
        ));
    }
    if m["payment_state"] == "paid" {
        return Err(format!(
            "{} is already paid.",
            m["name"].as_str().unwrap_or("?")
        ));
    }
    let name = m["name"].as_str().unwrap_or("?").to_owned();
    let due = m["amount_total"].as_f64().unwrap_or(0.0);
    let state = if amount + 0.005 >= due {
        "paid"
    } else {
        "partial"
    };
    db.payments += 1;
    let payment = format!("PAY/2025/{:04}", db.payments);
    db.find_move_mut(id)?
        .insert("payment_state".into(), json!(state));
    Ok(json!({
        "payment": payment,
        "invoice_id": id,
        "invoice": name,
        "amount": amount,
        "currency": currency,
        "payment_state": state
    }))
}

/// Runs one tool. `None`: no such tool.
fn call_tool(db: &mut Db, name: &str, args: &Map<String, Value>) -> Option<ToolResult> {
    Some(match name {
        "odoo_search_read" => search_read(db, args),
        "odoo_read" => read(db, args),
        "ai_invoice_pipeline_summary" => pipeline_summary(db, args),
        "odoo_write" => write(db, args),
        "ai_invoice_pipeline_run" => invoice_pipeline_run(db, args),
        "ai_pipeline_run" => pipeline_run(db, args),
        "account_payment_register" => payment_register(db, args),
        "odoo_unlink" => unlink(db, args),
        _ => return None,
    })
}

fn tool_result(r: ToolResult) -> Value {
    match r {
        Ok(v) => json!({
            "content": [{"type": "text", "text": v.to_string()}],
            "structuredContent": v,
            "isError": false
        }),
        Err(msg) => json!({
            "content": [{"type": "text", "text": msg}],
            "isError": true
        }),
    }
}

fn response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// One connection's state.
struct Session {
    db: Db,
}

impl Session {
    /// Answers one line; `None` for notifications and responses.
    fn handle(&mut self, line: &str) -> Option<Value> {
        let msg: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return Some(error(&Value::Null, PARSE_ERROR, &format!("not JSON: {e}"))),
        };
        let Value::Object(msg) = msg else {
            return Some(error(
                &Value::Null,
                INVALID_REQUEST,
                "a message must be a JSON object (batches are not supported)",
            ));
        };
        let id = msg.get("id").cloned();
        let Some(method) = msg.get("method").and_then(Value::as_str) else {
            // A response to a request we never sent, or garbage: nothing to answer.
            return None;
        };
        let id = id?; // notifications (initialized, cancelled, …) need no answer
        let empty = Map::new();
        let params = msg
            .get("params")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        Some(match method {
            "initialize" => {
                let asked = params.get("protocolVersion").and_then(Value::as_str);
                let version = asked
                    .filter(|v| SUPPORTED_VERSIONS.contains(v))
                    .unwrap_or(SUPPORTED_VERSIONS[0]);
                response(
                    &id,
                    json!({
                        "protocolVersion": version,
                        "capabilities": {"tools": {"listChanged": false}},
                        "serverInfo": {
                            "name": SERVER_NAME,
                            "title": "Odoo-like demo server (fake data)",
                            "version": env!("CARGO_PKG_VERSION")
                        },
                        "instructions": "A demo of an Odoo accounting server with four fake invoices (account.move 1-4) and their partners (res.partner 11-14). Nothing here touches a real Odoo."
                    }),
                )
            }
            "ping" => response(&id, json!({})),
            "tools/list" => response(&id, tools()),
            "tools/call" => {
                let Some(name) = params.get("name").and_then(Value::as_str) else {
                    return Some(error(
                        &id,
                        INVALID_PARAMS,
                        "tools/call needs params.name (a string)",
                    ));
                };
                let args = match params.get("arguments") {
                    None | Some(Value::Null) => &empty,
                    Some(Value::Object(a)) => a,
                    Some(_) => {
                        return Some(error(
                            &id,
                            INVALID_PARAMS,
                            "tools/call params.arguments must be an object",
                        ))
                    }
                };
                match call_tool(&mut self.db, name, args) {
                    Some(r) => response(&id, tool_result(r)),
                    None => error(&id, INVALID_PARAMS, &format!("Unknown tool: {name}")),
                }
            }
            _ => error(
                &id,
                METHOD_NOT_FOUND,
                &format!("Method not found: {method}"),
            ),
        })
    }
}

/// Serves the demo MCP server on one connection: line-delimited JSON-RPC read from `r`,
/// answers written to `w`. Returns at end of input.
pub async fn serve<R, W>(r: R, mut w: W) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut r = r;
    let mut session = Session { db: Db::new() };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf).await? == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&buf);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(answer) = session.handle(line.trim_end()) {
            let mut buf = answer.to_string().into_bytes();
            buf.push(b'\n');
            w.write_all(&buf).await?;
            w.flush().await?;
        }
    }
}

/// Serves the demo MCP server on this process' stdin and stdout until stdin closes (what
/// `portcullis demo-upstream` runs).
pub async fn serve_stdio() -> std::io::Result<()> {
    serve(
        tokio::io::BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
    )
    .await
}
