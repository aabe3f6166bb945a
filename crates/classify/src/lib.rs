//! # portcullis-classify
//!
//! A deterministic, explainable risk classifier for MCP tool definitions. It reads a tool's
//! name, description, `inputSchema` and annotations (no model, no network) and returns a
//! [`Classification`]: a [`Category`], a [`Risk`] level, the evidence in words a person can
//! check, a confidence, catch-all and poisoning findings, and a recommended rule as a
//! policy-v1 fragment. [`starter_policy`] turns a server's classifications into a full policy
//! document; the `catalog_*` functions render catalogue pages.
//!
//! ```
//! use portcullis_classify::{classify, starter_policy, Category, Preset, Risk};
//! use serde_json::json;
//!
//! let tool = json!({
//!     "name": "main__delete_user",
//!     "description": "Delete a user account.",
//!     "inputSchema": { "type": "object", "properties": { "id": { "type": "string" } } }
//! });
//! let c = classify(&tool, "crm");
//! assert_eq!((c.category, c.risk), (Category::Destructive, Risk::Critical));
//! assert!(c.hide);
//! assert!(c.evidence.iter().any(|e| e.contains("\"delete\"")));
//! let policy = starter_policy(&[c], Preset::Recommended);
//! assert_eq!(policy["hide"], json!(["main__delete_user"]));
//! ```
//!
//! ## How the category is decided
//!
//! 1. **Verbs.** The name is split into tokens (snake, camel, kebab; a namespace prefix such
//!    as `main__` or `server.` is stripped) and its first verb is taken (`get_run_details` →
//!    `get`). The description's leading verb is taken too (`Deletes …`, `Safely DELETE …`,
//!    `Add/update …`). When the two disagree, the more dangerous reading wins, in the order
//!    Read < Write < Execute < Financial < Destructive. A destructive verb whose object is
//!    routine state (a session, a cache, a tab) reads as Write.
//! 2. **Money.** Financial needs more than a noun: a payment verb (pay, refund, purchase …),
//!    or a financial noun (invoice, payment, billing subscription …) as the object of a write
//!    or execute verb (`create_refund`, "Cancel a sent invoice"), or money-shaped arguments
//!    (`amount` with `currency`, a card or IBAN). A read of financial data stays Read; a
//!    process run over financial documents (`ai_invoice_pipeline_run`) stays Execute.
//! 3. **Arguments.** A boolean such as `dry_run` or `write_back` makes a "read" a Write.
//!    Catch-all executors — a model/method bridge, RPC, shell or SSH, raw SQL, code
//!    evaluation, a raw HTTP/API passthrough, a tool proxy, an operation enum with
//!    destructive values — are Execute (Write for an operation enum) and get argument rules
//!    that reference only arguments the schema declares.
//! 4. **What the call reaches** beyond its verb (the data's domain raises the level, not only
//!    the verb). Sending a message to people outside (mail, SMS, chat, a Slack post) is
//!    Execute; so is cloning a repository, installing or loading modules and plugins, and
//!    applying migrations or changing a deployment. Stopping, unenrolling or disabling an agent
//!    or an account, and resetting a branch or database to an earlier state, are Destructive.
//!    Starting a transfer or a payout, posting a journal entry or valuing stock are Financial.
//!    A write is at least High when it takes a secret (`password`, `api_key`: stored
//!    credentials, a sign-in), changes access control (roles, keys, certificates, access
//!    lists, users), writes an ERP's business records (accounting, tax, stock; a generic
//!    `model` + `values` write), changes every matching record at once, or any cloud resource,
//!    or merges a pull request. A read that hands out secrets (a connection string, API keys)
//!    is High. Reports, summaries, dashboards and aging tables are reads, verb or no verb, and
//!    "run an audit / a query" reads unless the query is SQL, Cypher or a script.
//! 5. **Annotations** are untrusted hints. A hint that admits danger wins
//!    (`destructiveHint: true` makes a Read or unclassified tool Destructive and the risk at
//!    least High; `readOnlyHint: false` makes a Read tool Write). A hint that claims safety
//!    never lowers what the name or description says (`readOnlyHint: true` on `delete_x`
//!    stays Destructive); the contradiction is recorded in the evidence. Absent hints are not
//!    read as their defaults: the defaults assume the worst, which is what an unclassified
//!    tool gets anyway.
//! 6. **Poisoning.** Text aimed at the model (hidden directives, "ignore previous
//!    instructions", "do not tell the user", `<IMPORTANT>` tags, requests for credential
//!    files, invisible characters) in the description or anywhere in the schema marks a
//!    poisoning suspect: risk at least High, and every preset hides it.
//!
//! Every rule that fires adds a sentence to the evidence naming the words it found; the one
//! that decided the verdict is [`Classification::reason`].
//!
//! | Category | Base risk | Recommended rule |
//! |---|---|---|
//! | Read | Low | allow `{}` |
//! | Write | Medium | 30 a minute per grant |
//! | Execute | High (Critical for shell and code) | 10 a minute per grant, plus argument rules |
//! | Destructive | Critical | hide |
//! | Financial | Critical | `approve_if` with no conditions |
//! | Other | Medium | 30 a minute per grant (like a write, until reviewed) |

#![warn(missing_docs)]

mod catalog;
mod catchall;
mod effects;
mod features;
mod lexicon;
mod poison;
mod policy;

pub use catalog::{
    catalog_index_html, catalog_index_markdown, catalog_page_html, catalog_page_markdown, page_slug,
};
pub use catchall::{CatchAll, CatchAllKind};
pub use poison::{Finding, LONG_DESCRIPTION};

/// The signs of tool poisoning in one tool definition (an element of a `tools/list` result's
/// `tools`): every text the model reads (description, title, the schema's descriptions,
/// defaults and examples), each finding with its field and evidence. Empty when clean.
pub fn poisoning_findings(tool: &Value) -> Vec<Finding> {
    features::model_visible_texts(tool)
        .iter()
        .flat_map(|(field, text)| poison::scan(field, text))
        .collect()
}
pub use policy::{counter_name, starter_policy, tool_policy, Preset};

use catchall::ArgRules;
use features::{Found, Hints};
use lexicon::Verb;
use regex::Regex;
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::sync::LazyLock;

/// What a tool does, in PolicyLayer's six categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Category {
    /// Retrieves data.
    Read,
    /// Creates or modifies.
    Write,
    /// Runs code or commands, triggers processes.
    Execute,
    /// Deletes; irreversible.
    Destructive,
    /// Payments, transfers, billing.
    Financial,
    /// Nothing matched.
    Other,
}

impl Category {
    /// `"Read"`, `"Write"`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Read => "Read",
            Category::Write => "Write",
            Category::Execute => "Execute",
            Category::Destructive => "Destructive",
            Category::Financial => "Financial",
            Category::Other => "Other",
        }
    }

    /// The risk level a category starts from (PolicyLayer's fixed mapping; Other is Medium).
    pub fn base_risk(self) -> Risk {
        match self {
            Category::Read => Risk::Low,
            Category::Write | Category::Other => Risk::Medium,
            Category::Execute => Risk::High,
            Category::Destructive | Category::Financial => Risk::Critical,
        }
    }

    /// All categories, in display order.
    pub const ALL: [Category; 6] = [
        Category::Read,
        Category::Write,
        Category::Execute,
        Category::Destructive,
        Category::Financial,
        Category::Other,
    ];

    /// Parses `"Read"` etc. (as in the corpus files).
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    fn from_verb(v: Verb) -> Category {
        match v {
            Verb::Read => Category::Read,
            Verb::Write => Category::Write,
            Verb::Execute => Category::Execute,
            Verb::Financial => Category::Financial,
            Verb::Destructive => Category::Destructive,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much harm a call can do. Ordered: `Low < Medium < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Risk {
    /// Reads.
    Low,
    /// Changes things that can be changed back.
    Medium,
    /// Runs things; effects reach beyond the call.
    High,
    /// Destroys, moves money, or runs anything at all.
    Critical,
}

impl Risk {
    /// `"Low"`, `"Medium"`, `"High"`, `"Critical"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "Low",
            Risk::Medium => "Medium",
            Risk::High => "High",
            Risk::Critical => "Critical",
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on one tool.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Classification {
    /// The tool name as listed by the server (prefix included).
    pub tool: String,
    /// The server's name.
    pub server: String,
    /// What the tool does.
    pub category: Category,
    /// How dangerous a call is.
    pub risk: Risk,
    /// How sure the classifier is of the category, 0 to 1 (two decimals).
    pub confidence: f32,
    /// The phrases, fields and rules that decided it, one sentence each.
    pub evidence: Vec<String>,
    /// Set when the tool's effect is chosen by its arguments.
    pub catch_all: Option<CatchAll>,
    /// Poisoning findings (text aimed at the model); empty when none.
    pub poisoning: Vec<String>,
    /// The recommended `tools.<name>` rule object (policy v1). For a hidden tool: the
    /// unconditional deny that applies if it is listed without being hidden.
    pub rule: Value,
    /// Whether the recommendation is to hide the tool (Destructive, or a poisoning suspect).
    pub hide: bool,
    /// The description's first sentence (for tables and indexes).
    pub summary: String,
    /// The deciding item (see [`Classification::reason`]); `"reason"` in JSON.
    #[serde(rename = "reason")]
    deciding: String,
    #[serde(skip)]
    arg_rules: ArgRules,
}

impl PartialEq for ArgRules {
    fn eq(&self, o: &Self) -> bool {
        self.require == o.require && self.deny_if == o.deny_if && self.approve_if == o.approve_if
    }
}

impl Classification {
    /// The evidence that decided the verdict: the item of [`Classification::evidence`] that
    /// set the category or last raised the risk (a poisoning suspect's is its first finding).
    /// Tables show this one; the JSON keeps every item.
    pub fn reason(&self) -> &str {
        &self.deciding
    }

    /// Whether any poisoning finding was made.
    pub fn is_poisoning_suspect(&self) -> bool {
        !self.poisoning.is_empty()
    }

    /// This tool's rule under another preset: `Some(rule object)`, or `None` when the preset
    /// hides it.
    pub fn rule_for(&self, preset: Preset) -> Option<Value> {
        match self.placement(preset) {
            policy::Placement::Rule(r) => Some(r),
            policy::Placement::Hide => None,
        }
    }

    fn placement(&self, preset: Preset) -> policy::Placement {
        policy::placement(
            &self.tool,
            self.category,
            self.is_poisoning_suspect(),
            &self.arg_rules,
            preset,
        )
    }
}

static READ_ONLY_CLAIM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bread[- ]?only\b|\bin\s+read\s+mode\b|\bwithout\s+(making\s+)?(any\s+)?changes\b|\bdoes\s+not\s+(modify|change|write)\b|\bno\s+side[- ]effects\b").unwrap()
});
static NOT_READ_ONLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(not|non)[- ]read[- ]?only\b|\bwrite\s+(mode|capabilities|access)\b")
        .unwrap()
});

static WRITABLE_LANGUAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(sql|cypher|statements?|commands?|scripts?|code|mutations?)\b").unwrap()
});

/// Objects that make "run/execute …" a read: running a query, a search, an audit.
fn read_object(words: &[String]) -> bool {
    words.iter().any(|w| {
        matches!(
            w.as_str(),
            "query"
                | "queries"
                | "search"
                | "searches"
                | "lookup"
                | "aggregation"
                | "report"
                | "check"
                | "checks"
                | "audit"
                | "audits"
                | "analysis"
                | "promql"
                | "logql"
                | "traceql"
                | "jql"
                | "cql"
                | "lucene"
        )
    })
}

fn quote(s: &str) -> String {
    let t = features::truncate_words(s, 100);
    let more = if t.len() < s.len() { "…" } else { "" };
    format!("\"{t}{more}\"")
}

fn verbs_text(found: &[Found]) -> String {
    found
        .iter()
        .map(|f| format!("\"{}\"", f.word))
        .collect::<Vec<_>>()
        .join(", ")
}

fn max_class(found: &[Found]) -> Option<Verb> {
    found.iter().map(|f| f.class).max()
}

/// The words after a verb up to a preposition or conjunction: "the response cache".
fn noun_phrase(object: &[String]) -> Vec<&String> {
    object
        .iter()
        .take_while(|w| {
            !matches!(
                w.as_str(),
                "from"
                    | "of"
                    | "in"
                    | "for"
                    | "and"
                    | "or"
                    | "to"
                    | "with"
                    | "on"
                    | "by"
                    | "at"
                    | "via"
                    | "into"
            )
        })
        .collect()
}

/// Demotes a destructive verb whose object is routine state (session, cache, tab …).
fn demote_ephemeral(found: &mut [Found], ev: &mut Vec<String>) {
    for f in found.iter_mut() {
        if f.class != Verb::Destructive {
            continue;
        }
        let object = noun_phrase(&f.object)
            .into_iter()
            .find(|w| lexicon::ephemeral_object(w));
        if let Some(o) = object {
            ev.push(format!(
                "\"{}\" applies to a {o} (routine state, recreated at will): read as a write",
                f.word
            ));
            f.class = Verb::Write;
        }
    }
}

/// How the category was reached, for the confidence figure.
#[derive(Clone, Copy, PartialEq)]
enum Basis {
    Agree,
    NameOnly,
    DescOnly,
    Conflict,
    DescWeak,
    DescLater,
    Annotation,
    Arguments,
    CatchAll,
    Money,
    Nothing,
}

impl Basis {
    fn confidence(self) -> i32 {
        match self {
            Basis::Agree => 90,
            Basis::CatchAll => 85,
            Basis::Money => 85,
            Basis::NameOnly => 75,
            Basis::DescOnly => 70,
            Basis::Conflict => 60,
            Basis::Annotation => 60,
            Basis::DescWeak => 55,
            Basis::DescLater => 50,
            Basis::Arguments => 50,
            Basis::Nothing => 30,
        }
    }
}

/// Financial evidence: nouns in the name and first sentence, money-shaped arguments.
struct Money {
    nouns: Vec<String>,
    args: Vec<String>,
}

fn money(
    name_tokens: &[String],
    sentence_words: &[String],
    server: &str,
    args: &[features::Arg],
) -> Money {
    let azure =
        server.to_lowercase().contains("azure") || sentence_words.iter().any(|w| w == "azure");
    let mut nouns = Vec::new();
    for ws in [name_tokens, sentence_words] {
        for (i, w) in ws.iter().enumerate() {
            if !lexicon::financial_noun(w) {
                continue;
            }
            if w.starts_with("subscription") {
                let qualified = azure
                    || ws[i.saturating_sub(3)..i]
                        .iter()
                        .any(|p| lexicon::subscription_qualifier(p));
                if qualified {
                    continue;
                }
            }
            // "charge" in prose is too often "free of charge" / "in charge of".
            if w.starts_with("charge") && std::ptr::eq(ws, sentence_words) {
                continue;
            }
            if !nouns.contains(w) {
                nouns.push(w.clone());
            }
        }
    }
    let has = |f: fn(&str) -> bool| args.iter().find(|a| f(&a.lname));
    let mut margs = Vec::new();
    if let (Some(a), Some(c)) = (has(lexicon::amount_arg), has(lexicon::currency_arg)) {
        margs.push(a.name.clone());
        margs.push(c.name.clone());
    }
    if let Some(p) = has(lexicon::payment_instrument_arg) {
        margs.push(p.name.clone());
    }
    if margs.is_empty() && !nouns.is_empty() {
        if let Some(a) = has(lexicon::amount_arg) {
            margs.push(a.name.clone());
        }
    }
    Money { nouns, args: margs }
}

/// Classifies one tool definition (`{"name", "description", "inputSchema", "annotations"}`,
/// as in a `tools/list` result) from server `server`. Pure and deterministic.
pub fn classify(tool: &Value, server: &str) -> Classification {
    let raw_name = tool.get("name").and_then(Value::as_str).unwrap_or("");
    let name = features::split_name(raw_name);
    let raw_desc = tool
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let desc = features::clean_description(raw_desc, raw_name, &name.base);
    let sentence = features::first_sentence(&desc).to_string();
    let sentence_words = features::words(&sentence);
    let args = features::args(tool);
    let hints = features::hints(tool);
    let server_tokens = features::tokens(server);

    let mut ev: Vec<String> = Vec::new();
    // The evidence item that decided the verdict so far (index into `ev`).
    let mut decisive: Option<usize> = None;
    let last = |ev: &Vec<String>| Some(ev.len() - 1);
    if let Some(p) = &name.prefix {
        ev.push(format!(
            "namespace prefix `{p}` stripped; the name read is `{}`",
            name.base
        ));
    }
    if desc.is_empty() {
        ev.push("no description: only the name, arguments and annotations speak".to_string());
    }

    // 1. Verbs of the name and the description's opening.
    let mut nverbs = features::name_verbs(&name.tokens, &server_tokens);
    let mut lead = features::leading_verbs(&sentence);
    demote_ephemeral(&mut nverbs, &mut ev);
    demote_ephemeral(&mut lead.strong, &mut ev);
    // `run_seo_audit`, `Run-Funnels-Query`: running a report, an audit or a query reads, unless
    // the description says the query is in a language that can write (SQL, Cypher, a script).
    let mut demoted_at = None;
    if !WRITABLE_LANGUAGE.is_match(&desc) || READ_ONLY_CLAIM.is_match(&desc) {
        for f in nverbs.iter_mut() {
            // The head of the name's object: `run_seo_audit` yes, `run_report_job` no.
            let head = f.object.last().map(std::slice::from_ref);
            if f.class == Verb::Execute && head.is_some_and(read_object) {
                let o = f
                    .object
                    .iter()
                    .find(|w| read_object(std::slice::from_ref(w)))
                    .map(String::as_str)
                    .unwrap_or("query");
                ev.push(format!(
                    "the name's \"{}\" runs {} {o}, which reads: Read",
                    f.word,
                    if o.starts_with(['a', 'e', 'i', 'o', 'u']) {
                        "an"
                    } else {
                        "a"
                    }
                ));
                demoted_at = last(&ev);
                f.class = Verb::Read;
            }
        }
    }
    let n_cls = max_class(&nverbs);
    // "Run a find query" under a reading name is a read.
    if matches!(n_cls, None | Some(Verb::Read)) {
        for f in lead.strong.iter_mut().chain(lead.weak.iter_mut()) {
            if f.class == Verb::Execute && read_object(&f.object) {
                ev.push(format!(
                    "the description's \"{}\" runs a {}, which reads: Read",
                    f.word,
                    f.object
                        .iter()
                        .find(|w| read_object(std::slice::from_ref(w)))
                        .map(String::as_str)
                        .unwrap_or("query")
                ));
                f.class = Verb::Read;
            }
        }
    }
    let d_cls = max_class(&lead.strong);

    if let Some(n) = n_cls {
        ev.push(format!(
            "name `{}` contains {} ({})",
            name.base,
            verbs_text(&nverbs),
            n.label()
        ));
        decisive = demoted_at.or(last(&ev));
    }
    let mut basis;
    let mut cls: Option<Verb> = match (n_cls, d_cls) {
        (Some(n), Some(d)) => {
            ev.push(format!(
                "description says {} (leading verb {}: {})",
                quote(&sentence),
                verbs_text(&lead.strong),
                d.label()
            ));
            if d > n {
                decisive = last(&ev);
            }
            if n == d {
                basis = Basis::Agree;
            } else {
                basis = Basis::Conflict;
                ev.push(format!(
                    "name and description disagree ({} vs {}); the more dangerous reading wins",
                    Category::from_verb(n),
                    Category::from_verb(d)
                ));
            }
            Some(n.max(d))
        }
        (Some(n), None) => {
            basis = Basis::NameOnly;
            if !sentence.is_empty() {
                ev.push(format!(
                    "description {} adds no verb of its own",
                    quote(&sentence)
                ));
            }
            Some(n)
        }
        (None, Some(d)) => {
            basis = Basis::DescOnly;
            ev.push(format!(
                "description says {} (leading verb {}: {})",
                quote(&sentence),
                verbs_text(&lead.strong),
                d.label()
            ));
            decisive = last(&ev);
            Some(d)
        }
        (None, None) => {
            basis = Basis::Nothing;
            let mut found = None;
            let first_word = sentence_words.first().map(String::as_str).unwrap_or("");
            // "Aging table of open receivables", "Dashboard KPIs for …": a report, whatever
            // verb-like word follows.
            if lexicon::report_noun(first_word) {
                basis = Basis::DescWeak;
                ev.push(format!(
                    "no verb; the description opens with \"{first_word}\" ({}), a report about something: Read",
                    quote(&sentence)
                ));
                decisive = last(&ev);
                found = Some(Verb::Read);
            } else if let Some(w) = lead.weak.first() {
                basis = Basis::DescWeak;
                ev.push(format!(
                    "no verb in the name; the description {} has \"{}\" after its opening word ({})",
                    quote(&sentence),
                    w.word,
                    w.class.label()
                ));
                decisive = last(&ev);
                found = Some(w.class);
            } else {
                let last_token = name.tokens.last().map(String::as_str).unwrap_or("");
                if lexicon::report_noun(last_token) {
                    basis = Basis::DescLater;
                    ev.push(format!(
                        "no verb; the name ends in \"{last_token}\", a noun for information about something: Read"
                    ));
                    decisive = last(&ev);
                    found = Some(Verb::Read);
                } else if sentence_words.iter().any(|w| w == "automation") {
                    basis = Basis::DescWeak;
                    ev.push(format!(
                        "no verb; the description {} is about automation, which acts on its own: Execute",
                        quote(&sentence)
                    ));
                    decisive = last(&ev);
                    found = Some(Verb::Execute);
                }
                let later = desc
                    .split(". ")
                    .skip(1)
                    .find_map(|s| max_class(&features::leading_verbs(s).strong).map(|d| (s, d)));
                if let (None, Some((s, d))) = (found, later) {
                    basis = Basis::DescLater;
                    ev.push(format!(
                        "no verb in the name or the first sentence; a later sentence says {} ({})",
                        quote(features::first_sentence(s)),
                        d.label()
                    ));
                    decisive = last(&ev);
                    found = Some(d);
                }
            }
            found
        }
    };

    // A description claiming read-only behaviour.
    let read_claim = READ_ONLY_CLAIM.is_match(&desc) && !NOT_READ_ONLY.is_match(&desc);
    let writes_in_verbs = nverbs
        .iter()
        .chain(&lead.strong)
        .any(|f| matches!(f.class, Verb::Write | Verb::Destructive | Verb::Financial));
    let mut unverified_read = false;

    // 2. Money.
    let m = money(&name.tokens, &sentence_words, server, &args);
    let money_verb = nverbs
        .iter()
        .chain(&lead.strong)
        .find(|f| lexicon::money_context_verb(&f.word));
    // The thing a write or execute verb acts on is money ("create_refund", "Process a refund").
    // In a name every object token counts (`create_payment_link`); in prose only the head
    // noun does ("a sent invoice", but not "the nightly invoice export job").
    let name_object = nverbs.iter().find(|f| {
        matches!(f.class, Verb::Write | Verb::Execute)
            && if f.object.is_empty() {
                f.before.as_ref().is_some_and(|b| m.nouns.contains(b))
            } else {
                f.object.iter().any(|o| m.nouns.contains(o))
            }
    });
    // The head noun, or a money noun that qualifies it ("a subscription plan", "an invoice
    // item").
    let desc_object = lead.strong.iter().find(|f| {
        let np = noun_phrase(&f.object);
        let head = np.last();
        let qualified = np.len() >= 2
            && m.nouns.contains(np[np.len() - 2])
            && head.is_some_and(|h| {
                matches!(
                    h.as_str(),
                    "plan"
                        | "plans"
                        | "item"
                        | "items"
                        | "line"
                        | "lines"
                        | "link"
                        | "links"
                        | "method"
                        | "methods"
                )
            });
        matches!(f.class, Verb::Write | Verb::Execute)
            && (head.is_some_and(|h| m.nouns.contains(h)) || qualified)
    });
    let fin_object = name_object.or(desc_object);
    if !m.nouns.is_empty() || !m.args.is_empty() {
        let nouns = m.nouns.join(", ");
        let margs = m.args.join("`, `");
        match cls {
            Some(Verb::Financial) => {}
            _ if money_verb.is_some() && cls != Some(Verb::Destructive) => {
                cls = Some(Verb::Financial);
                ev.push(format!(
                    "\"{}\" next to money ({}{}) moves money: Financial",
                    money_verb.map(|f| f.word.as_str()).unwrap_or(""),
                    nouns,
                    if margs.is_empty() {
                        String::new()
                    } else {
                        format!(" `{margs}`")
                    }
                ));
                decisive = last(&ev);
            }
            Some(Verb::Write) | Some(Verb::Execute) if fin_object.is_some() => {
                cls = Some(Verb::Financial);
                ev.push(format!(
                    "\"{}\" acts on money ({nouns}): it changes payments or billing, Financial",
                    fin_object.map(|f| f.word.as_str()).unwrap_or("")
                ));
                decisive = last(&ev);
            }
            Some(Verb::Write) | Some(Verb::Execute) | None if !m.args.is_empty() => {
                cls = Some(Verb::Financial);
                basis = if basis == Basis::Nothing {
                    Basis::Money
                } else {
                    basis
                };
                ev.push(format!(
                    "money-shaped arguments (`{margs}`): calls move money, Financial"
                ));
                decisive = last(&ev);
            }
            Some(Verb::Read) => ev.push(format!(
                "financial {} ({}{}) but a read verb: reading financial data stays Read",
                if m.nouns.is_empty() { "arguments" } else { "noun" },
                nouns,
                if margs.is_empty() {
                    String::new()
                } else {
                    format!(" `{margs}`")
                }
            )),
            Some(Verb::Execute) => ev.push(format!(
                "financial noun ({nouns}) but it runs a process and takes no money-shaped arguments: Execute, not Financial"
            )),
            Some(Verb::Write) => ev.push(format!(
                "financial noun ({nouns}) but not what the verb acts on, and no money-shaped arguments: not Financial"
            )),
            _ => {}
        }
    }

    let mut confidence_adj = 0;
    // 3. Arguments that say "this changes something".
    if cls == Some(Verb::Read) || cls.is_none() {
        if let Some(a) = args
            .iter()
            .find(|a| a.is_bool() && lexicon::mutation_flag(&a.lname))
        {
            ev.push(format!(
                "argument {} means calls can change state: at least Write",
                a.describe()
            ));
            decisive = last(&ev);
            if cls.is_none() {
                basis = Basis::Arguments;
            } else {
                confidence_adj -= 15;
            }
            cls = Some(Verb::Write);
        }
    }

    // 4. Catch-all executors.
    let exec_verb = nverbs.iter().chain(&lead.strong).any(|f| {
        f.class == Verb::Execute
            || matches!(f.word.as_str(), "call" | "calls" | "eval" | "evaluate")
    }) || name.tokens.iter().any(|t| {
        matches!(
            t.as_str(),
            "execute" | "exec" | "run" | "eval" | "call" | "invoke"
        )
    });
    let detected = catchall::detect(&catchall::Ctx {
        server,
        name_tokens: &name.tokens,
        desc: &desc,
        args: &args,
        exec_verb,
        read_only_claim: read_claim && !writes_in_verbs,
    });
    let mut arg_rules = ArgRules::default();
    let mut catch_all = None;
    if let Some(d) = detected {
        let first = ev.len();
        ev.extend(d.evidence);
        if ev.len() > first {
            decisive = Some(first);
        }
        let has_rules = !d.catch_all.selectors.is_empty() && !d.rules.is_empty();
        if d.read_only_sql && matches!(cls, Some(Verb::Read) | Some(Verb::Execute) | None) {
            cls = Some(Verb::Read);
            if has_rules {
                ev.push(
                    "read-only by its own account, and the recommended rule enforces it: Read"
                        .to_string(),
                );
            } else {
                unverified_read = true;
                ev.push("read-only by its own account only (nothing to check it against): Read at Medium risk".to_string());
            }
            decisive = last(&ev);
        } else if d.catch_all.kind == CatchAllKind::Operation {
            if cls != Some(Verb::Financial) {
                cls = Some(Verb::Write);
            }
        } else if !matches!(cls, Some(Verb::Destructive) | Some(Verb::Financial)) {
            if cls != Some(Verb::Execute) {
                ev.push(format!(
                    "a {} acts as whatever its arguments say: Execute",
                    d.catch_all.kind
                ));
            }
            cls = Some(Verb::Execute);
        }
        if basis == Basis::Nothing || basis == Basis::DescLater || basis == Basis::DescWeak {
            basis = Basis::CatchAll;
        }
        arg_rules = d.rules;
        catch_all = Some(d.catch_all);
    } else if read_claim && !writes_in_verbs && cls == Some(Verb::Execute) {
        if n_cls == Some(Verb::Read) {
            cls = Some(Verb::Read);
            unverified_read = true;
            ev.push(format!(
                "the name reads and the description claims read-only ({}): Read, at Medium risk because nothing checks the claim",
                quote(READ_ONLY_CLAIM.find(&desc).map(|m| m.as_str()).unwrap_or("read-only"))
            ));
            decisive = last(&ev);
        } else {
            ev.push("the description claims read-only, but nothing enforces it: the execute verb stands".to_string());
        }
    }

    // 5. What the call reaches beyond its verb: messages sent outside, code fetched or shipped,
    //    credentials and access, an ERP's business records and ledger, secrets handed out.
    let mut risk_floor: Option<(Risk, usize)> = None;
    if catch_all.is_none() {
        let lower_desc = desc.to_lowercase();
        let found = effects::effects(
            &effects::Ctx {
                server,
                name: &name.tokens,
                verbs: nverbs.iter().chain(&lead.strong).collect(),
                sentence: &sentence_words,
                desc: &lower_desc,
                args: &args,
            },
            cls,
        );
        for e in found {
            ev.push(e.evidence);
            if let Some(c) = e.class {
                cls = Some(c);
                decisive = last(&ev);
            }
            if let Some(f) = e.floor {
                if risk_floor.is_none_or(|(r, _)| f > r) {
                    risk_floor = Some((f, ev.len() - 1));
                }
            }
        }
    }

    // 6. Annotations (untrusted hints: an admission of danger wins, a claim of safety does not).
    let mut destructive_floor = false;
    let (before_hints, hint_start) = (cls, ev.len());
    apply_hints(
        &hints,
        &mut cls,
        &mut basis,
        &mut ev,
        &mut confidence_adj,
        &mut destructive_floor,
    );
    if cls != before_hints && ev.len() > hint_start {
        decisive = Some(hint_start);
    }

    // A few argument facts worth a reviewer's eye.
    argument_notes(&args, cls, catch_all.is_some(), &mut ev);

    let category = cls.map(Category::from_verb).unwrap_or(Category::Other);
    if category == Category::Other {
        ev.push(
            "no verb, payment, catch-all or annotation signal: Other (review it by hand)"
                .to_string(),
        );
        decisive = last(&ev);
    }

    // 7. Poisoning.
    let poisoning: Vec<String> = poisoning_findings(tool)
        .iter()
        .map(ToString::to_string)
        .collect();

    // Risk.
    let mut risk = category.base_risk();
    if category == Category::Read && unverified_read {
        risk = Risk::Medium;
    }
    if let Some(c) = &catch_all {
        if category == Category::Execute || category == Category::Write {
            let floor = match c.kind {
                CatchAllKind::Shell | CatchAllKind::Code => Risk::Critical,
                _ => Risk::High,
            };
            if floor > risk {
                ev.push(format!(
                    "risk raised to {floor}: a {} can do anything its arguments ask",
                    c.kind
                ));
                risk = floor;
            }
        }
    }
    if let Some((floor, at)) = risk_floor {
        if floor > risk {
            risk = floor;
            decisive = Some(at);
        }
    }
    if destructive_floor && risk < Risk::High {
        risk = Risk::High;
        ev.push("risk raised to High: the server declares the tool destructive".to_string());
        decisive = last(&ev);
    }
    if !poisoning.is_empty() {
        ev.push(format!(
            "poisoning suspect: {} finding{} of text addressed to the model rather than the user; hide it and review the definition",
            poisoning.len(),
            if poisoning.len() == 1 { "" } else { "s" }
        ));
        if risk < Risk::High {
            risk = Risk::High;
        }
    }

    let deciding = poisoning
        .first()
        .or_else(|| decisive.and_then(|i| ev.get(i)))
        .or_else(|| ev.last())
        .cloned()
        .unwrap_or_default();

    let mut conf = basis.confidence() + confidence_adj;
    if catch_all.is_some() && basis != Basis::CatchAll {
        conf += 5;
    }
    let confidence = (conf.clamp(5, 99) as f32) / 100.0;

    let placement = policy::placement(
        raw_name,
        category,
        !poisoning.is_empty(),
        &arg_rules,
        Preset::Recommended,
    );
    let hide = placement == policy::Placement::Hide;
    let rule = policy::recommended_rule(&placement);

    Classification {
        tool: raw_name.to_string(),
        server: server.to_string(),
        category,
        risk,
        confidence,
        evidence: ev,
        catch_all,
        poisoning,
        rule,
        hide,
        summary: sentence,
        deciding,
        arg_rules,
    }
}

fn apply_hints(
    h: &Hints,
    cls: &mut Option<Verb>,
    basis: &mut Basis,
    ev: &mut Vec<String>,
    adj: &mut i32,
    destructive_floor: &mut bool,
) {
    let current = |c: &Option<Verb>| {
        c.map(|v| Category::from_verb(v).as_str())
            .unwrap_or("unclassified")
    };
    if h.destructive == Some(true) && h.read_only != Some(true) {
        *destructive_floor = true;
        match *cls {
            None | Some(Verb::Read) => {
                ev.push(format!(
                    "annotation destructiveHint: true on a tool that reads as {}: the server's admission of danger wins, Destructive",
                    current(cls)
                ));
                if cls.is_none() {
                    *basis = Basis::Annotation;
                } else {
                    *adj -= 10;
                }
                *cls = Some(Verb::Destructive);
            }
            Some(Verb::Destructive) => {
                ev.push("annotation destructiveHint: true agrees".to_string());
                *adj += 5;
            }
            _ => ev.push(
                "annotation destructiveHint: true: the server says calls may destroy data"
                    .to_string(),
            ),
        }
    }
    match h.read_only {
        Some(true) => match *cls {
            None => {
                *cls = Some(Verb::Read);
                *basis = Basis::Annotation;
                ev.push("annotation readOnlyHint: true is the only signal: Read".to_string());
            }
            Some(Verb::Read) => {
                *adj += 5;
                ev.push("annotation readOnlyHint: true agrees".to_string());
            }
            Some(_) => {
                *adj -= 10;
                ev.push(format!(
                    "annotation readOnlyHint: true contradicts the {} reading; hints are untrusted and a claim of safety never lowers the verdict, so {} stands",
                    current(cls),
                    current(cls)
                ));
                if h.destructive == Some(true) {
                    ev.push("annotation destructiveHint: true is ignored next to readOnlyHint: true (the MCP spec reads it only for non-read-only tools)".to_string());
                }
            }
        },
        Some(false) => match *cls {
            Some(Verb::Read) => {
                *cls = Some(Verb::Write);
                *adj -= 10;
                ev.push("annotation readOnlyHint: false says the tool changes state although it reads as Read: the admission wins, Write".to_string());
            }
            None if h.destructive != Some(true) => {
                *cls = Some(Verb::Write);
                *basis = Basis::Annotation;
                ev.push("annotation readOnlyHint: false is the only signal: Write".to_string());
            }
            _ => {}
        },
        None => {}
    }
    if h.destructive == Some(false) && *cls == Some(Verb::Destructive) && h.read_only != Some(true)
    {
        *adj -= 10;
        ev.push("annotation destructiveHint: false contradicts the destructive verb; the verb stands (hints are untrusted)".to_string());
    }
    if h.idempotent == Some(true) && !matches!(*cls, None | Some(Verb::Read)) {
        ev.push(
            "annotation idempotentHint: true: repeating a call has no further effect".to_string(),
        );
    }
    if h.open_world == Some(true) {
        ev.push(
            "annotation openWorldHint: true: it reaches systems outside the server".to_string(),
        );
    } else if h.open_world == Some(false) {
        ev.push(
            "annotation openWorldHint: false: it stays inside the server's own data".to_string(),
        );
    }
}

fn argument_notes(
    args: &[features::Arg],
    cls: Option<Verb>,
    catch_all: bool,
    ev: &mut Vec<String>,
) {
    if catch_all {
        return;
    }
    let mutating = matches!(
        cls,
        Some(Verb::Write) | Some(Verb::Execute) | Some(Verb::Financial)
    );
    if mutating {
        if let Some(a) = args.iter().find(|a| lexicon::recipient_arg(&a.lname)) {
            ev.push(format!(
                "argument {} lets the agent choose who receives it",
                a.describe()
            ));
        }
    }
    if let Some(a) = args.iter().find(|a| {
        a.free_string()
            && matches!(
                a.lname.as_str(),
                "path"
                    | "file_path"
                    | "filepath"
                    | "save_path"
                    | "output_path"
                    | "dest"
                    | "destination"
            )
    }) {
        ev.push(format!(
            "argument {} is a filesystem path the agent chooses",
            a.describe()
        ));
    }
    if let Some(a) = args
        .iter()
        .find(|a| a.free_string() && matches!(a.lname.as_str(), "url" | "uri" | "endpoint"))
    {
        ev.push(format!(
            "argument {} is a URL the agent chooses (open world)",
            a.describe()
        ));
    }
}

/// Classifies every tool of a server, sorted by risk (highest first), then by name.
pub fn classify_all(tools: &[Value], server: &str) -> Vec<Classification> {
    let mut out: Vec<Classification> = tools.iter().map(|t| classify(t, server)).collect();
    out.sort_by(|a, b| b.risk.cmp(&a.risk).then_with(|| a.tool.cmp(&b.tool)));
    out
}
