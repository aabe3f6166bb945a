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
use crate::json::{canonical, cmp_numbers, json_eq, type_name};
use crate::norm::{self, HostPattern, PathStyle};
use crate::path::{NoElements, Path};
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
    /// An OAuth caller's principal as a JSON object (`issuer`, `subject`, `client_id`,
    /// `scopes`, `groups`), read by `principal.*` paths; `None` for grant callers.
    pub principal: Option<&'a Value>,
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
            message: format!("the limit store is unavailable, so the gateway could not check its rate limits ({detail}); the call was not forwarded. Try again shortly."),
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
    /// (ext) `path_under` (`negate: false`) / `path_not_under`; prefixes normalized.
    Under {
        prefixes: Vec<String>,
        style: PathStyle,
        base: Option<String>,
        negate: bool,
    },
    /// (ext) `url_host_in` (`negate: false`) / `url_host_not_in`; schemes lowercase.
    Host {
        hosts: Vec<HostPattern>,
        schemes: Vec<String>,
        negate: bool,
    },
}

/// How a condition on `[*]` treats the elements: `deny_if` and `approve_if` hold when
/// [`Quant::Any`] element satisfies the test, `require` only when [`Quant::Every`] one does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quant {
    Any,
    Every,
}

/// A condition's verdict on one call.
#[derive(Debug)]
struct Outcome {
    holds: bool,
    /// What decided it, for the engine's own message: the element (for `[*]`) and the
    /// normalized form (for path and URL operators). `None` for plain scalar conditions.
    witness: Option<String>,
}

#[derive(Debug)]
struct Cond {
    path: Path,
    test: Test,
    /// `path op value` as the document says it, for messages.
    text: String,
}

impl Cond {
    fn compile(c: &Condition) -> Cond {
        let path = Path::parse(&c.path).expect("validated");
        let text = describe(std::slice::from_ref(c));
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
            Op::PathUnder | Op::PathNotUnder => {
                let style = c.style.unwrap_or_default();
                let one = |p: &Value| {
                    norm::normalize_path(p.as_str().expect("validated"), style, None)
                        .expect("validated")
                };
                let prefixes = match &v {
                    Value::Array(a) => a.iter().map(one).collect(),
                    p => vec![one(p)],
                };
                let base = c
                    .base
                    .as_deref()
                    .map(|b| norm::normalize_path(b, style, None).expect("validated"));
                Test::Under {
                    prefixes,
                    style,
                    base,
                    negate: c.op == Op::PathNotUnder,
                }
            }
            Op::UrlHostIn | Op::UrlHostNotIn => Test::Host {
                hosts: arr(v)
                    .iter()
                    .map(|h| HostPattern::parse(h.as_str().expect("validated")).expect("validated"))
                    .collect(),
                schemes: match &c.schemes {
                    Some(s) => s.iter().map(|s| s.to_ascii_lowercase()).collect(),
                    None => norm::DEFAULT_SCHEMES
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                },
                negate: c.op == Op::UrlHostNotIn,
            },
        };
        Cond { path, test, text }
    }

    /// Whether this condition can find an argument it cannot judge (then the call is denied
    /// whatever the entry): a path or URL operator, or a `[*]` path.
    fn fails_closed(&self) -> bool {
        self.path.has_each() || matches!(self.test, Test::Under { .. } | Test::Host { .. })
    }

    /// The verdict on a call, or why the argument cannot be judged (a sentence naming the
    /// argument or element).
    fn eval(&self, call: &Call, who: &Identity, quant: Quant) -> Result<Outcome, String> {
        if !self.path.has_each() {
            let found = self.path.resolve(call.args, who);
            let arg = found.as_deref();
            let (holds, normal) = self
                .judge(arg)
                .map_err(|why| format!("{} {}", shown(self.path.as_str(), arg), why))?;
            let witness = normal.map(|n| format!("{} {n}", shown(self.path.as_str(), arg)));
            return Ok(Outcome { holds, witness });
        }
        let elements = self.path.each(call.args).map_err(|e| {
            let array = self.path.array_part();
            match e {
                NoElements::Missing => format!("{array} is missing, so no element can be checked"),
                NoElements::Empty => format!("{array} is empty, so no element can be checked"),
                NoElements::NotArray(t) => format!("{array} is {t}, not an array"),
            }
        })?;
        // Every element is judged (none skipped), so an element that cannot be judged is
        // always found; the first element that decides the quantifier is the witness.
        let mut witness = None;
        for (i, arg) in elements.into_iter().enumerate() {
            let here = self.path.element(i);
            let (holds, normal) = self
                .judge(arg)
                .map_err(|why| format!("{} {why}", shown(&here, arg)))?;
            let decisive = match quant {
                Quant::Any => holds,
                Quant::Every => !holds,
            };
            if decisive && witness.is_none() {
                witness = Some(match normal {
                    Some(n) => format!("{} {n}", shown(&here, arg)),
                    None => shown(&here, arg),
                });
            }
        }
        let holds = match quant {
            Quant::Any => witness.is_some(),
            Quant::Every => witness.is_none(),
        };
        Ok(Outcome { holds, witness })
    }

    /// The test on one value (`None`: absent): whether it holds and, for path and URL
    /// operators, the normalized form (`normalizes to "/etc/passwd"`); `Err(why)` when a
    /// path or URL operator cannot normalize it.
    fn judge(&self, arg: Option<&Value>) -> Result<(bool, Option<String>), String> {
        match (&self.test, arg) {
            (
                Test::Under {
                    prefixes,
                    style,
                    base,
                    negate,
                },
                Some(a),
            ) => {
                let s = a
                    .as_str()
                    .ok_or_else(|| format!("is {}, not a path string", type_name(a)))?;
                let p = norm::normalize_path(s, *style, base.as_deref())?;
                let under = prefixes.iter().any(|pre| norm::is_under(&p, pre));
                Ok((under != *negate, Some(format!("normalizes to {p:?}"))))
            }
            (
                Test::Host {
                    hosts,
                    schemes,
                    negate,
                },
                Some(a),
            ) => {
                let s = a
                    .as_str()
                    .ok_or_else(|| format!("is {}, not a URL string", type_name(a)))?;
                let h = norm::url_host(s, schemes)?;
                let listed = hosts.iter().any(|p| p.matches(&h));
                Ok((listed != *negate, Some(format!("has the host {h:?}"))))
            }
            _ => Ok((self.holds_plain(arg), None)),
        }
    }

    /// The operators of policy-v1 on one value (`None`: absent). Path and URL operators on
    /// an absent value are false like the rest.
    fn holds_plain(&self, arg: Option<&Value>) -> bool {
        let Some(arg) = arg else {
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
            Test::Under { .. } | Test::Host { .. } => unreachable!("judged by Cond::judge"),
        }
    }
}

/// `args.path ("/srv/x")`: a name and the value it had, for messages.
fn shown(name: &str, arg: Option<&Value>) -> String {
    match arg {
        None => format!("{name} (absent)"),
        Some(v) => {
            let mut t = v.to_string();
            if t.len() > 200 {
                let cut = (0..=200)
                    .rev()
                    .find(|&i| t.is_char_boundary(i))
                    .unwrap_or(0);
                t.truncate(cut);
                t.push('…');
            }
            format!("{name} ({t})")
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
    /// `require`: every element; `deny_if`: any element.
    quant: Quant,
    /// The entry's `on_deny`, given to the agent as written.
    on_deny: Option<String>,
    /// The engine's own message without its final period, used when there is no `on_deny`;
    /// what decided the call (elements, normalized forms) is added after it.
    summary: String,
}

impl CEntry {
    /// The denial this entry gives the call, if any: a `require` whose conditions do not all
    /// hold, or a `deny_if` whose conditions all do.
    fn denial(&self, call: &Call, who: &Identity) -> Option<Denial> {
        let mut witnesses = Vec::new();
        for c in &self.conds {
            let o = match c.eval(call, who, self.quant) {
                Ok(o) => o,
                Err(why) => return Some(unjudged(&self.rule, c, &why)),
            };
            match (self.quant, o.holds) {
                (Quant::Every, false) => {
                    witnesses.extend(o.witness);
                    return Some(self.deny(&witnesses));
                }
                (Quant::Any, false) => return None,
                (Quant::Any, true) => witnesses.extend(o.witness),
                (Quant::Every, true) => {}
            }
        }
        (self.quant == Quant::Any).then(|| self.deny(&witnesses))
    }

    fn deny(&self, witnesses: &[String]) -> Denial {
        let message = match &self.on_deny {
            Some(m) => m.clone(),
            None if witnesses.is_empty() => format!("{}.", self.summary),
            None => format!("{}: {}.", self.summary, witnesses.join("; ")),
        };
        Denial {
            rule: self.rule.clone(),
            message,
            retry_after_secs: None,
        }
    }
}

/// The first argument of `conds` that cannot be judged, as a denial by `rule`.
fn first_unjudged(
    conds: &[Cond],
    rule: &str,
    quant: Quant,
    call: &Call,
    who: &Identity,
) -> Option<Denial> {
    conds.iter().filter(|c| c.fails_closed()).find_map(|c| {
        c.eval(call, who, quant)
            .err()
            .map(|why| unjudged(rule, c, &why))
    })
}

/// The denial for an argument a condition cannot judge: it names the rule, the condition,
/// the argument (or element) and why.
fn unjudged(rule: &str, c: &Cond, why: &str) -> Denial {
    Denial {
        rule: rule.to_owned(),
        message: format!(
            "Denied by rule {rule}: {why} (condition {}); a call the policy cannot check is denied.",
            c.text
        ),
        retry_after_secs: None,
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
    /// These rules refuse every call whatever its arguments and caller: a `deny_if` entry
    /// with no conditions, or a limit whose fixed increment exceeds its `max`.
    refuses_all: bool,
}

impl CRules {
    /// Fail closed: the denial for the first argument that a condition of any entry (require,
    /// deny_if or approve_if) cannot judge, whatever the entry's other conditions say.
    fn unjudgeable(&self, call: &Call, who: &Identity) -> Option<Denial> {
        let entries = self.require.iter().chain(&self.deny_if);
        entries
            .map(|e| (&e.conds, &e.rule, e.quant))
            .chain(
                self.approve_if
                    .iter()
                    .map(|a| (&a.conds, &a.rule, Quant::Any)),
            )
            .find_map(|(conds, rule, quant)| first_unjudged(conds, rule, quant, call, who))
    }
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
    /// (ext) `hide_denied`, in force only in enforce mode.
    hide_denied: bool,
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
        .map(|c| {
            let mut t = format!("{} {} {}", c.path, c.op.as_str(), c.value);
            if let Some(s) = c.style {
                let _ = write!(t, " style {}", s.as_str());
            }
            if let Some(b) = &c.base {
                let _ = write!(t, " base {b:?}");
            }
            if let Some(s) = &c.schemes {
                let _ = write!(t, " schemes {}", s.join(","));
            }
            t
        })
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
        let mode = doc.mode.unwrap_or(Mode::Enforce);
        Engine {
            default_deny: doc.default == doc::Default::Deny,
            hide_all,
            hide_denied: doc.hide_denied && mode == Mode::Enforce,
            mode,
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

    /// Whether `tools/list` shows this tool. Tools under `hide` (or every tool, for `"*"`) are
    /// removed. (ext) With `hide_denied` in enforce mode, so is every tool the policy can never
    /// allow, whatever the arguments and the caller: one refused by `default: "deny"` (not a
    /// key of `tools`), or one whose own rules or `all_tools` refuse every call (a `deny_if`
    /// with no conditions, a limit whose fixed increment exceeds its `max`). Every other tool
    /// stays listed, however unlikely its conditions are to pass. Calls are decided by
    /// [`Engine::check`] as without the option. Costs one lookup, like the check itself.
    pub fn is_listed(&self, tool: &str) -> bool {
        if self.hide_all {
            return false;
        }
        let refused = match self.tools.get(tool) {
            Some(ToolEntry::Hidden) => return false,
            Some(ToolEntry::Rules(r)) => r.refuses_all,
            None => self.default_deny,
        };
        !(self.hide_denied && (refused || self.all.refuses_all))
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
            if let Some(d) = r.unjudgeable(call, who) {
                return Check::Deny(d);
            }
        }
        for r in rules.into_iter().chain(std::iter::once(&self.all)) {
            let mut entries = r.require.iter().chain(&r.deny_if);
            if let Some(d) = entries.find_map(|e| e.denial(call, who)) {
                return Check::Deny(d);
            }
        }
        let plan = match self.plan(rules, call, who) {
            Ok(p) => p,
            Err(d) => return Check::Deny(d),
        };
        for r in rules.into_iter().chain(std::iter::once(&self.all)) {
            // Arguments that cannot be judged were denied above, so `eval` succeeds here.
            if let Some(a) = r.approve_if.iter().find(|a| {
                a.conds
                    .iter()
                    .all(|c| c.eval(call, who, Quant::Any).is_ok_and(|o| o.holds))
            }) {
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
        self.settle(plan, store.reserve(&plan.reservations, now))
    }

    /// The decision a reservation of `plan` comes to: its ticket, or the denial of the limit
    /// that did not fit (or of the store that failed, closed). For a reservation made
    /// elsewhere ([`CounterStore::reserve_later`]).
    pub fn settle(&self, plan: &LimitPlan, reserved: Result<Ticket, ReserveError>) -> Decision {
        match reserved {
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

fn compile_rules(r: &Rules, base: &str, limits: &mut Vec<CLimit>) -> CRules {
    let entries = |list: &[Entry],
                   key: &str,
                   quant: Quant,
                   summary: &dyn Fn(&str, &[Condition]) -> String| {
        list.iter()
            .enumerate()
            .map(|(i, e)| {
                let rule = format!("{base}/{key}/{i}");
                CEntry {
                    conds: e.conditions.iter().map(Cond::compile).collect(),
                    summary: summary(&rule, &e.conditions),
                    on_deny: e.on_deny.clone(),
                    quant,
                    rule,
                }
            })
            .collect()
    };
    let require = entries(&r.require, "require", Quant::Every, &|rule, cs| {
        format!(
            "The call does not meet the requirement {rule} ({})",
            describe(cs)
        )
    });
    let deny_if = entries(&r.deny_if, "deny_if", Quant::Any, &|rule, cs| {
        if cs.is_empty() {
            format!("Denied by rule {rule}")
        } else {
            format!("Denied by rule {rule} ({})", describe(cs))
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
    let refuses_all = r.deny_if.iter().any(|e| e.conditions.is_empty())
        || ids.iter().any(|&id| {
            let l = &limits[id as usize];
            matches!(l.amount, Amount::Fixed(n) if n > l.max)
        });
    CRules {
        require,
        deny_if,
        approve_if,
        limits: ids,
        refuses_all,
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
