//! The compiled evaluator: tool lookup by hash, regexes compiled once, paths pre-split.
//!
//! [`Engine::check`] is a pure function of (policy, call, identity) that yields a denial, an
//! approval requirement, or the counters to charge; [`Engine::decide`] adds the counter
//! store (any [`CounterStore`]) and the clock value, and follows the spec's evaluation order
//! to a final [`Decision`].

use crate::counters::{CounterStore, KeyTemplate, Reservation, ReserveError, Ticket};
use crate::doc::{
    self, Approval, Condition, Entry, Limit, Mode, Op, PolicyDoc, Rules, ValidationError,
};
use crate::json::{canonical, cmp_numbers, json_eq};
use crate::path::Path;
use crate::window::{self, human_wait, Millis, Scope, Window};
use regex::Regex;
use rustc_hash::FxHashMap;
use serde_json::{Number, Value};
use std::cmp::Ordering;
use std::fmt::Write as _;

/// Who is calling: the grant, its session, and the server it is bound to.
#[derive(Clone, Copy, Debug)]
pub struct Identity<'a> {
    /// Grant id (stable; counters with `scope: "grant"` are keyed by it).
    pub grant_id: &'a str,
    /// Grant label (`alice-laptop`).
    pub grant_label: &'a str,
    /// MCP session id or stdio connection id (`scope: "session"`).
    pub session_id: &'a str,
    /// The client's self-reported name, when known.
    pub client_name: Option<&'a str>,
    /// Upstream server name (`scope: "server"`).
    pub server: &'a str,
}

/// A `tools/call` as the engine sees it.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// `params.name`.
    pub tool: &'a str,
    /// `params.arguments`, if present.
    pub args: Option<&'a Value>,
}

/// Why a call is not forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// Rule pointer: a JSON Pointer into the document (`/tools/x/deny_if/0`) or one of
    /// `(no policy)`, `(hidden)`, `(default deny)`, `(store error)`.
    pub rule: String,
    /// Text for the agent (without the `[POLICY DENIED]` prefix).
    pub message: String,
    /// For limits: seconds until the call could fit.
    pub retry_after_secs: Option<u64>,
}

impl Denial {
    /// The denial for a grant that carries no policy.
    pub fn no_policy() -> Denial {
        Denial {
            rule: "(no policy)".into(),
            message: "No policy is attached to this grant, so every call is denied. Ask the operator to attach one.".into(),
            retry_after_secs: None,
        }
    }

    /// The fail-closed denial for a counter store failure.
    pub fn store_error(detail: &str) -> Denial {
        Denial {
            rule: "(store error)".into(),
            message: format!("The gateway could not check its rate limits ({detail}); the call was not forwarded. Try again shortly."),
            retry_after_secs: None,
        }
    }
}

/// An approval the call needs before it may be forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalNeed {
    /// Rule pointer (`/tools/x/approve_if/0`).
    pub rule: String,
    /// Why, for agent and approver.
    pub reason: String,
    /// How long the request stays open, in ms.
    pub timeout_ms: Millis,
    /// (ext) How long to keep the call open waiting for the decision, in ms, when the entry
    /// says (0: answer at once); `None`: the server's setting. Never longer than the timeout.
    pub hold_ms: Option<Millis>,
}

/// The counters a call will charge, resolved for this call and identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitPlan {
    /// What to reserve, all or none.
    pub reservations: Vec<Reservation>,
    /// For each reservation, the limit it came from (index into the engine's limits).
    sources: Vec<u32>,
}

/// Outcome of the pure part of evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Denied by hide, default deny, require, deny_if, or a limit that cannot be keyed.
    Deny(Denial),
    /// Needs a human approval; once approved, `limits` still apply.
    Approval(ApprovalNeed, LimitPlan),
    /// Passes the rules; reserve `LimitPlan` and forward.
    Proceed(LimitPlan),
}

/// Final decision for a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward; refund the ticket if the call certainly had no effect.
    Allow(Ticket),
    /// Answer with a denial.
    Deny(Denial),
    /// Hold for approval (nothing was charged).
    NeedsApproval(ApprovalNeed, LimitPlan),
}

#[derive(Debug)]
enum Test {
    Eq(Value),
    Neq(Value),
    Cmp(Number, fn(Ordering) -> bool),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Contains(Value),
    Regex(Regex),
    Exists(bool),
}

#[derive(Debug)]
struct Cond {
    path: Path,
    test: Test,
}

impl Cond {
    fn compile(c: &Condition) -> Cond {
        let path = Path::parse(&c.path).expect("validated");
        let v = c.value.clone();
        let test = match c.op {
            Op::Eq => Test::Eq(v),
            Op::Neq => Test::Neq(v),
            Op::Lt => Test::Cmp(num(v), |o| o == Ordering::Less),
            Op::Lte => Test::Cmp(num(v), |o| o != Ordering::Greater),
            Op::Gt => Test::Cmp(num(v), |o| o == Ordering::Greater),
            Op::Gte => Test::Cmp(num(v), |o| o != Ordering::Less),
            Op::In => Test::In(arr(v)),
            Op::NotIn => Test::NotIn(arr(v)),
            Op::Contains => Test::Contains(v),
            Op::Regex => {
                Test::Regex(doc::compile_regex(v.as_str().expect("validated")).expect("validated"))
            }
            Op::Exists => Test::Exists(v.as_bool().expect("validated")),
        };
        Cond { path, test }
    }

    fn holds(&self, call: &Call, who: &Identity) -> bool {
        let found = self.path.resolve(call.args, who);
        let Some(arg) = found.as_deref() else {
            // Absent: every op is false except `exists: false`.
            return matches!(self.test, Test::Exists(false));
        };
        match &self.test {
            Test::Exists(want) => arg.is_null() != *want,
            Test::Eq(v) => json_eq(arg, v),
            Test::Neq(v) => !json_eq(arg, v),
            Test::Cmp(v, accept) => match arg {
                Value::Number(a) => cmp_numbers(a, v).is_some_and(accept),
                _ => false,
            },
            Test::In(vs) => vs.iter().any(|v| json_eq(arg, v)),
            Test::NotIn(vs) => !vs.iter().any(|v| json_eq(arg, v)),
            Test::Contains(v) => match (arg, v) {
                (Value::String(s), Value::String(needle)) => s.contains(needle.as_str()),
                (Value::Array(items), v) => items.iter().any(|i| json_eq(i, v)),
                _ => false,
            },
            Test::Regex(re) => arg.as_str().is_some_and(|s| re.is_match(s)),
        }
    }
}

fn num(v: Value) -> Number {
    match v {
        Value::Number(n) => n,
        _ => unreachable!("validated"),
    }
}

fn arr(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        _ => unreachable!("validated"),
    }
}

#[derive(Debug)]
struct CEntry {
    conds: Vec<Cond>,
    rule: String,
    message: String,
}

impl CEntry {
    fn holds(&self, call: &Call, who: &Identity) -> bool {
        self.conds.iter().all(|c| c.holds(call, who))
    }
}

#[derive(Debug)]
struct CApproval {
    conds: Vec<Cond>,
    rule: String,
    reason: String,
    timeout_ms: Millis,
    hold_ms: Option<Millis>,
}

#[derive(Debug)]
enum Amount {
    Fixed(u64),
    From(Path),
}

#[derive(Debug)]
struct CLimit {
    counter: String,
    key: KeyTemplate,
    window: Window,
    max: u64,
    scope: Scope,
    per: Option<Path>,
    amount: Amount,
    rule: String,
    on_deny: Option<String>,
}

#[derive(Debug, Default)]
struct CRules {
    require: Vec<CEntry>,
    deny_if: Vec<CEntry>,
    approve_if: Vec<CApproval>,
    /// Indices into `Engine::limits`.
    limits: Vec<u32>,
}

#[derive(Debug)]
enum ToolEntry {
    Hidden,
    Rules(CRules),
}

/// A compiled policy, ready to decide calls. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    doc: PolicyDoc,
    default_deny: bool,
    hide_all: bool,
    mode: Mode,
    tools: FxHashMap<Box<str>, ToolEntry>,
    all: CRules,
    limits: Vec<CLimit>,
}

/// JSON Pointer escaping (RFC 6901).
fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn describe(conds: &[Condition]) -> String {
    conds
        .iter()
        .map(|c| format!("{} {} {}", c.path, c.op.as_str(), c.value))
        .collect::<Vec<_>>()
        .join(" and ")
}

impl Engine {
    /// Parses, validates and compiles policy JSON text.
    pub fn from_json(text: &str) -> Result<Engine, Vec<ValidationError>> {
        doc::parse(text).map(Engine::compile)
    }

    /// Compiles a validated document.
    pub fn compile(doc: PolicyDoc) -> Engine {
        let mut limits = Vec::new();
        let all = doc
            .all_tools
            .as_ref()
            .map(|r| compile_rules(r, "/all_tools", &mut limits))
            .unwrap_or_default();
        let mut tools = FxHashMap::default();
        let hide_all = doc.hide.iter().any(|h| h == "*");
        for (name, rules) in &doc.tools {
            let base = format!("/tools/{}", pointer_token(name));
            tools.insert(
                name.as_str().into(),
                ToolEntry::Rules(compile_rules(rules, &base, &mut limits)),
            );
        }
        for h in &doc.hide {
            tools.insert(h.as_str().into(), ToolEntry::Hidden);
        }
        Engine {
            default_deny: doc.default == doc::Default::Deny,
            hide_all,
            mode: doc.mode.unwrap_or(Mode::Enforce),
            tools,
            all,
            limits,
            doc,
        }
    }

    /// The source document.
    pub fn doc(&self) -> &PolicyDoc {
        &self.doc
    }

    /// Enforce or shadow.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether `tools/list` shows this tool (hidden tools are removed; denied ones stay).
    pub fn is_listed(&self, tool: &str) -> bool {
        !self.hide_all && !matches!(self.tools.get(tool), Some(ToolEntry::Hidden))
    }

    /// Steps 2–5 of the evaluation order: hide, default deny, require/deny_if (tool, then
    /// all_tools), approve_if; and the counters step 6 will reserve.
    pub fn check(&self, call: &Call, who: &Identity) -> Check {
        let rules = match self.tools.get(call.tool) {
            _ if self.hide_all => return Check::Deny(self.hidden(call.tool)),
            Some(ToolEntry::Hidden) => return Check::Deny(self.hidden(call.tool)),
            Some(ToolEntry::Rules(r)) => Some(r),
            None if self.default_deny => {
                return Check::Deny(Denial {
                    rule: "(default deny)".into(),
                    message: format!(
                        "Tool {:?} is not allowed by this policy (default deny).",
                        call.tool
                    ),
                    retry_after_secs: None,
                })
            }
            None => None,
        };
        for r in rules.into_iter().chain(std::iter::once(&self.all)) {
            if let Some(e) = r.require.iter().find(|e| !e.holds(call, who)) {
                return Check::Deny(entry_denial(e));
            }
            if let Some(e) = r.deny_if.iter().find(|e| e.holds(call, who)) {
                return Check::Deny(entry_denial(e));
            }
        }
        let plan = match self.plan(rules, call, who) {
            Ok(p) => p,
            Err(d) => return Check::Deny(d),
        };
        for r in rules.into_iter().chain(std::iter::once(&self.all)) {
            if let Some(a) = r
                .approve_if
                .iter()
                .find(|a| a.conds.iter().all(|c| c.holds(call, who)))
            {
                let need = ApprovalNeed {
                    rule: a.rule.clone(),
                    reason: a.reason.clone(),
                    timeout_ms: a.timeout_ms,
                    hold_ms: a.hold_ms,
                };
                return Check::Approval(need, plan);
            }
        }
        Check::Proceed(plan)
    }

    /// Resolves the limits of a call into reservations (tool limits, then all_tools limits).
    fn plan(
        &self,
        rules: Option<&CRules>,
        call: &Call,
        who: &Identity,
    ) -> Result<LimitPlan, Denial> {
        let ids = rules
            .map_or(&[][..], |r| &r.limits[..])
            .iter()
            .chain(&self.all.limits);
        let n = rules.map_or(0, |r| r.limits.len()) + self.all.limits.len();
        let mut plan = LimitPlan {
            reservations: Vec::with_capacity(n),
            sources: Vec::with_capacity(n),
        };
        for &id in ids {
            let l = &self.limits[id as usize];
            let subject = match l.scope {
                Scope::Grant => who.grant_id,
                Scope::Session => who.session_id,
                Scope::Server => who.server,
                Scope::Global => "",
            };
            let per = match &l.per {
                None => None,
                Some(p) => match p.resolve(call.args, who) {
                    Some(v) if !v.is_null() => Some(canonical(&v)),
                    _ => {
                        return Err(Denial {
                            rule: l.rule.clone(),
                            message: format!(
                                "Counter {:?} is kept per {}, but this call has no {}; add it and retry.",
                                l.counter,
                                p.as_str(),
                                p.as_str()
                            ),
                            retry_after_secs: None,
                        })
                    }
                },
            };
            let amount = match &l.amount {
                Amount::Fixed(n) => *n,
                Amount::From(p) => match increment_from(p, call, who) {
                    Ok(n) => n,
                    Err(why) => {
                        return Err(Denial {
                            rule: l.rule.clone(),
                            message: format!(
                                "Counter {:?} counts {}, which {why}; the call was not forwarded.",
                                l.counter,
                                p.as_str()
                            ),
                            retry_after_secs: None,
                        })
                    }
                },
            };
            plan.reservations.push(Reservation {
                key: l.key.key(subject, per.as_deref()),
                window: l.window,
                max: l.max,
                amount,
            });
            plan.sources.push(id);
        }
        Ok(plan)
    }

    /// The denial for a failed reservation of `plan` (step 6), naming the counter, its max and
    /// window, and when it frees up.
    pub fn limit_denial(&self, plan: &LimitPlan, err: &ReserveError) -> Denial {
        let (index, retry) = match err {
            ReserveError::Store(e) => return Denial::store_error(e),
            ReserveError::Exhausted {
                index,
                retry_after_ms,
            } => (*index, *retry_after_ms),
        };
        let Some(&id) = plan.sources.get(index) else {
            return Denial::store_error("the store named a counter this call did not reserve");
        };
        let l = &self.limits[id as usize];
        let amount = plan.reservations[index].amount;
        let per_window = match l.window {
            Window::Rolling(ms) => format!("in any {}", window::format_duration(ms)),
            w => format!("per {w}"),
        };
        let mut text = format!(
            "counter {:?} allows {} {per_window} (scope {})",
            l.counter,
            l.max,
            l.scope.as_str()
        );
        if !matches!(l.amount, Amount::Fixed(1)) {
            let _ = write!(text, "; this call needs {amount}");
        }
        match retry {
            Some(ms) => {
                let _ = write!(text, "; try again in {}", human_wait(ms));
            }
            None => text.push_str("; this call alone exceeds it and can never pass"),
        }
        let message = match &l.on_deny {
            Some(m) => format!("{m} ({text})"),
            None => format!("Rate limit reached: {text}."),
        };
        Denial {
            rule: l.rule.clone(),
            message,
            retry_after_secs: retry.map(|ms| ms.div_ceil(1000)),
        }
    }

    /// The whole evaluation order for one call: [`Engine::check`], then the atomic
    /// reservation of every applicable limit in `store`. Fails closed on store errors.
    pub fn decide(
        &self,
        call: &Call,
        who: &Identity,
        store: &dyn CounterStore,
        now: Millis,
    ) -> Decision {
        match self.check(call, who) {
            Check::Deny(d) => Decision::Deny(d),
            Check::Approval(need, plan) => Decision::NeedsApproval(need, plan),
            Check::Proceed(plan) => self.reserve(&plan, store, now),
        }
    }

    /// Step 6 alone: reserve a plan (used directly after an approval).
    pub fn reserve(&self, plan: &LimitPlan, store: &dyn CounterStore, now: Millis) -> Decision {
        if plan.reservations.is_empty() {
            return Decision::Allow(Ticket::default());
        }
        match store.reserve(&plan.reservations, now) {
            Ok(t) => Decision::Allow(t),
            Err(e) => Decision::Deny(self.limit_denial(plan, &e)),
        }
    }

    fn hidden(&self, tool: &str) -> Denial {
        Denial {
            rule: "(hidden)".into(),
            message: format!("Tool {tool:?} is not available."),
            retry_after_secs: None,
        }
    }
}

fn increment_from(p: &Path, call: &Call, who: &Identity) -> Result<u64, &'static str> {
    let v = p.resolve(call.args, who).ok_or("is absent")?;
    let Value::Number(n) = &*v else {
        return Err("is not a number");
    };
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    if n.as_i64().is_some() {
        return Err("is negative");
    }
    match n.as_f64() {
        Some(f) if f < 0.0 => Err("is negative"),
        // Fractions round up: a budget is never undercharged.
        Some(f) if f.is_finite() && f < 1.8e19 => Ok(f.ceil() as u64),
        _ => Err("is too large"),
    }
}

fn entry_denial(e: &CEntry) -> Denial {
    Denial {
        rule: e.rule.clone(),
        message: e.message.clone(),
        retry_after_secs: None,
    }
}

fn compile_rules(r: &Rules, base: &str, limits: &mut Vec<CLimit>) -> CRules {
    let entries =
        |list: &[Entry], key: &str, default_msg: &dyn Fn(&str, &[Condition]) -> String| {
            list.iter()
                .enumerate()
                .map(|(i, e)| {
                    let rule = format!("{base}/{key}/{i}");
                    let message = e
                        .on_deny
                        .clone()
                        .unwrap_or_else(|| default_msg(&rule, &e.conditions));
                    CEntry {
                        conds: e.conditions.iter().map(Cond::compile).collect(),
                        rule,
                        message,
                    }
                })
                .collect()
        };
    let require = entries(&r.require, "require", &|rule, cs| {
        format!(
            "The call does not meet the requirement {rule} ({}).",
            describe(cs)
        )
    });
    let deny_if = entries(&r.deny_if, "deny_if", &|rule, cs| {
        if cs.is_empty() {
            format!("Denied by rule {rule}.")
        } else {
            format!("Denied by rule {rule} ({}).", describe(cs))
        }
    });
    let approve_if = r
        .approve_if
        .iter()
        .enumerate()
        .map(|(i, a): (usize, &Approval)| {
            let rule = format!("{base}/approve_if/{i}");
            let timeout_ms = window::parse_duration(
                a.timeout
                    .as_deref()
                    .unwrap_or(doc::DEFAULT_APPROVAL_TIMEOUT),
            )
            .expect("validated");
            CApproval {
                conds: a.conditions.iter().map(Cond::compile).collect(),
                reason: a.reason.clone().unwrap_or_else(|| {
                    format!("Rule {rule} requires a human approval for this call.")
                }),
                timeout_ms,
                hold_ms: a
                    .hold
                    .as_deref()
                    .map(|h| window::parse_hold(h).expect("validated").min(timeout_ms)),
                rule,
            }
        })
        .collect();
    let mut ids = Vec::new();
    for (i, l) in r.limits.iter().enumerate() {
        ids.push(limits.len() as u32);
        limits.push(compile_limit(l, format!("{base}/limits/{i}")));
    }
    CRules {
        require,
        deny_if,
        approve_if,
        limits: ids,
    }
}

fn compile_limit(l: &Limit, rule: String) -> CLimit {
    let window = Window::parse(&l.window).expect("validated");
    CLimit {
        counter: l.counter.clone(),
        key: KeyTemplate::new(l.scope, &l.counter, window),
        window,
        max: l.max,
        scope: l.scope,
        per: l.per.as_deref().map(|p| Path::parse(p).expect("validated")),
        amount: match &l.increment_from {
            Some(p) => Amount::From(Path::parse(p).expect("validated")),
            None => Amount::Fixed(l.increment.unwrap_or(1)),
        },
        rule,
        on_deny: l.on_deny.clone(),
    }
}
