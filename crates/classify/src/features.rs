//! What the classifier reads from a tool definition: name tokens, the description's leading
//! verbs, declared arguments, annotations.

use crate::lexicon::{self, Verb};
use serde_json::Value;

/// The tool name with its namespace prefix removed, split into lower-case tokens.
#[derive(Debug)]
pub(crate) struct Name {
    /// The stripped prefix (`main__`, `server.`), if any.
    pub prefix: Option<String>,
    /// The name after the prefix.
    pub base: String,
    /// Lower-case tokens of `base`.
    pub tokens: Vec<String>,
}

/// Splits `main__get_invoice`, `server.getInvoice`, `delete-many`, `HTTPRequest` into
/// lower-case tokens, after removing a namespace prefix (`x__`, `x.`, `x/`, `x:`).
pub(crate) fn split_name(name: &str) -> Name {
    let mut prefix = None;
    let mut base = name;
    for sep in ["__", ".", "/", ":"] {
        if let Some(i) = base.rfind(sep) {
            let rest = &base[i + sep.len()..];
            if !rest.is_empty() && rest.chars().any(|c| c.is_ascii_alphabetic()) {
                prefix = Some(name[..name.len() - rest.len()].to_string());
                base = rest;
            }
        }
    }
    Name {
        prefix,
        base: base.to_string(),
        tokens: tokens(base),
    }
}

/// Lower-case tokens of an identifier: splits on non-alphanumerics and camel-case humps
/// (`getHTTPResponse` → get, http, response). Digits stay with their word (`n8n`, `d1`).
pub(crate) fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in s.split(|c: char| !c.is_alphanumeric()) {
        let chars: Vec<char> = part.chars().collect();
        let mut cur = String::new();
        for i in 0..chars.len() {
            let c = chars[i];
            if i > 0 && !cur.is_empty() {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
                let hump = c.is_uppercase() && (prev.is_lowercase() || prev.is_ascii_digit());
                let acronym_end = c.is_uppercase() && prev.is_uppercase() && next_lower;
                if hump || acronym_end {
                    out.push(std::mem::take(&mut cur));
                }
            }
            cur.extend(c.to_lowercase());
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out
}

/// A verb found in the name or description, with the word as written.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub word: String,
    pub class: Verb,
    /// Up to three words after the verb (lower-case), to judge its object.
    pub object: Vec<String>,
    /// In a name, the token before the verb (`invoice` in `invoice_create`).
    pub before: Option<String>,
}

/// The name's primary verbs: the first verb token, plus verbs joined to it by `and`/`or`
/// (`create_or_update_file`). Tokens equal to the server name and compound nouns
/// (`pull_request`) are skipped.
pub(crate) fn name_verbs(tokens: &[String], server_tokens: &[String]) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        if server_tokens.iter().any(|s| s == t) && i + 1 < tokens.len() {
            i += 1;
            continue;
        }
        if let Some(next) = tokens.get(i + 1) {
            if lexicon::compound_noun(t, next) {
                i += 2;
                continue;
            }
        }
        if let Some(class) = lexicon::verb(t) {
            out.push(Found {
                word: t.to_string(),
                class,
                object: tokens[i + 1..].iter().take(3).cloned().collect(),
                before: i.checked_sub(1).map(|b| tokens[b].clone()),
            });
            // Verbs chained with and/or belong to the same action.
            let mut j = i + 1;
            while j + 1 < tokens.len() && matches!(tokens[j].as_str(), "and" | "or") {
                if let Some(class) = lexicon::verb(&tokens[j + 1]) {
                    out.push(Found {
                        word: tokens[j + 1].clone(),
                        class,
                        object: tokens[j + 2..].iter().take(3).cloned().collect(),
                        before: None,
                    });
                }
                j += 2;
            }
            break;
        }
        i += 1;
    }
    out
}

/// The description, normalised: `name: ` prefix removed, whitespace collapsed.
pub(crate) fn clean_description(desc: &str, name: &str, base: &str) -> String {
    let mut d = desc.trim();
    for n in [name, base] {
        if let Some(rest) = d.strip_prefix(n) {
            if let Some(rest) = rest.trim_start().strip_prefix(':') {
                d = rest.trim_start();
                break;
            }
        }
    }
    d.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first sentence: up to `. `, `; `, ` — `, or a line end, at most 200 characters.
pub(crate) fn first_sentence(desc: &str) -> &str {
    let mut end = desc.len();
    for pat in [". ", "; ", " — ", " - ", "! ", "? ", "\n"] {
        if let Some(i) = desc.find(pat) {
            end = end.min(i);
        }
    }
    let s = desc[..end].trim_end_matches(['.', ':', ';']);
    truncate_words(s, 200)
}

/// Cuts at a word boundary so that the result is at most `max` bytes.
pub(crate) fn truncate_words(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    match s[..cut].rfind(' ') {
        Some(i) if i > max / 2 => &s[..i],
        _ => &s[..cut],
    }
}

/// Removes inflection so that "Deletes", "Retrieved", "Searching" find their verb.
pub(crate) fn lemma_verb(word: &str) -> Option<(Verb, String)> {
    let w = word.to_lowercase();
    let w = w.strip_prefix("re-").unwrap_or(&w).to_string();
    let lookup = |s: &str| lexicon::verb(s).or_else(|| lexicon::description_only_verb(s));
    if let Some(v) = lookup(&w) {
        return Some((v, w));
    }
    let mut cands: Vec<String> = Vec::new();
    if let Some(s) = w.strip_suffix("ies") {
        cands.push(format!("{s}y"));
    }
    if let Some(s) = w.strip_suffix("es") {
        cands.push(s.to_string());
    }
    if let Some(s) = w.strip_suffix('s') {
        cands.push(s.to_string());
    }
    if let Some(s) = w.strip_suffix("ed") {
        cands.push(s.to_string());
        cands.push(format!("{s}e"));
    }
    if let Some(s) = w.strip_suffix("ing") {
        cands.push(s.to_string());
        cands.push(format!("{s}e"));
    }
    cands.into_iter().find_map(|c| lookup(&c).map(|v| (v, c)))
}

/// Words of a text, lower-cased and stripped of surrounding punctuation; `/` separates too
/// ("Add/update").
pub(crate) fn words(s: &str) -> Vec<String> {
    words_sep(s).into_iter().map(|(w, _)| w).collect()
}

/// Words with a flag: whether a list separator (`,`, `/`, `&`) stands between the word and
/// the one before it.
pub(crate) fn words_sep(s: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut sep = false;
    for raw in s.split_whitespace() {
        for (i, piece) in raw.split('/').enumerate() {
            if i > 0 {
                sep = true;
            }
            let w = piece
                .trim_matches(|c: char| !c.is_alphanumeric() && c != '-' && c != '_')
                .trim_matches('-')
                .to_lowercase();
            if piece == "&" {
                sep = true;
            }
            if !w.is_empty() {
                out.push((w, sep));
                sep = false;
            }
            if piece.ends_with(',') || piece.ends_with(';') {
                sep = true;
            }
        }
    }
    out
}

/// Verbs at the start of a description.
#[derive(Debug, Default)]
pub(crate) struct Leading {
    /// Verbs of the opening clause: the first word (after fillers and adverbs), and verbs
    /// listed with it ("Create, read, update and delete", "Add/update").
    pub strong: Vec<Found>,
    /// A verb a little later in the first words ("Batch retrieve …"), used only when the name
    /// has no verb.
    pub weak: Vec<Found>,
}

/// Finds the description's leading verbs.
pub(crate) fn leading_verbs(sentence: &str) -> Leading {
    let ws = words_sep(sentence);
    let mut out = Leading::default();
    let mut content = 0;
    let mut i = 0;
    while i < ws.len() && content < 4 {
        let w = ws[i].0.as_str();
        let negated = i > 0
            && matches!(
                ws[i - 1].0.as_str(),
                "not" | "never" | "no" | "without" | "don't" | "doesn't" | "cannot"
            );
        if let Some((class, lemma)) = lemma_verb(w) {
            let next = ws.get(i + 1).map(|(w, _)| w.as_str()).unwrap_or("");
            let listed =
                ws.get(i + 1).is_some_and(|(_, sep)| *sep) || next == "and" || next == "or";
            let ambiguous = lexicon::noun_ambiguous(&lemma)
                && !(lexicon::determiner(next) || listed || next.is_empty() && content == 0);
            if !negated && !ambiguous {
                let object = |from: usize| -> Vec<String> {
                    ws[from..].iter().take(4).map(|(w, _)| w.clone()).collect()
                };
                let f = Found {
                    word: w.to_string(),
                    class,
                    object: object(i + 1),
                    before: None,
                };
                if content == 0 {
                    out.strong.push(f);
                    // A list of verbs: "Create, read, update and delete", "Write/read",
                    // "Download and import".
                    let mut j = i + 1;
                    while j < ws.len() {
                        let (n, sep) = (&ws[j].0, ws[j].1);
                        let conj = matches!(n.as_str(), "and" | "or");
                        let (k, linked) = if conj { (j + 1, true) } else { (j, sep) };
                        if !linked || k >= ws.len() {
                            break;
                        }
                        match lemma_verb(&ws[k].0) {
                            Some((c, _)) => {
                                out.strong.push(Found {
                                    word: ws[k].0.clone(),
                                    class: c,
                                    object: object(k + 1),
                                    before: None,
                                });
                                j = k + 1;
                            }
                            None => break,
                        }
                    }
                    return out;
                }
                out.weak.push(f);
                return out;
            }
        }
        if !(lexicon::filler(w) || w.ends_with("ly") && lemma_verb(w).is_none()) {
            content += 1;
        }
        i += 1;
    }
    out
}

/// One declared argument.
#[derive(Clone, Debug)]
pub(crate) struct Arg {
    /// As declared (used in policy paths).
    pub name: String,
    /// Lower-case.
    pub lname: String,
    /// JSON Schema types (`string`, `array`, …), lower-case.
    pub types: Vec<String>,
    /// String enum values.
    pub enum_values: Vec<String>,
    /// The schema default, if any.
    pub default: Option<Value>,
    /// Lower-case description.
    pub desc: String,
}

impl Arg {
    /// Declared as a string (or with no type, which allows strings).
    pub fn is_string(&self) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == "string")
    }

    /// Declared as a boolean.
    pub fn is_bool(&self) -> bool {
        self.types.iter().any(|t| t == "boolean")
    }

    /// A free-form string: string type, no enum.
    pub fn free_string(&self) -> bool {
        self.is_string() && self.enum_values.is_empty()
    }

    /// Usable in a policy path (`args.<name>`).
    pub fn path_safe(&self) -> bool {
        !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    /// "`name` (type)" for evidence.
    pub fn describe(&self) -> String {
        if self.types.is_empty() {
            format!("`{}`", self.name)
        } else {
            format!("`{}` ({})", self.name, self.types.join("|"))
        }
    }
}

/// The top-level properties of `inputSchema`, in declaration order.
pub(crate) fn args(tool: &Value) -> Vec<Arg> {
    let schema = tool.get("inputSchema").or_else(|| tool.get("input_schema"));
    let Some(props) = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, p)| {
            let types = match p.get("type") {
                Some(Value::String(t)) => vec![t.to_lowercase()],
                Some(Value::Array(ts)) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_lowercase)
                    .collect(),
                _ => Vec::new(),
            };
            let enum_values = p
                .get("enum")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Arg {
                name: name.clone(),
                lname: name.to_lowercase(),
                types,
                enum_values,
                default: p.get("default").cloned(),
                desc: p
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_lowercase(),
            }
        })
        .collect()
}

/// The four MCP hints, when present as booleans.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hints {
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

/// Reads `annotations` (hints absent or not boolean are `None`).
pub(crate) fn hints(tool: &Value) -> Hints {
    let a = tool.get("annotations");
    let b = |k: &str| a.and_then(|a| a.get(k)).and_then(Value::as_bool);
    Hints {
        read_only: b("readOnlyHint"),
        destructive: b("destructiveHint"),
        idempotent: b("idempotentHint"),
        open_world: b("openWorldHint"),
    }
}

/// Every text of the definition a model will read: description, title, annotation title,
/// and the descriptions and titles inside `inputSchema` (any depth), with a label each.
pub(crate) fn model_visible_texts(tool: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for key in ["description", "title"] {
        if let Some(s) = tool.get(key).and_then(Value::as_str) {
            out.push((key.to_string(), s.to_string()));
        }
    }
    if let Some(s) = tool
        .get("annotations")
        .and_then(|a| a.get("title"))
        .and_then(Value::as_str)
    {
        out.push(("annotations.title".to_string(), s.to_string()));
    }
    if let Some(schema) = tool.get("inputSchema") {
        schema_texts(schema, "inputSchema", &mut out, 0);
    }
    out
}

fn schema_texts(v: &Value, at: &str, out: &mut Vec<(String, String)>, depth: usize) {
    if depth > 8 {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let here = format!("{at}.{k}");
                match (k.as_str(), child) {
                    ("description" | "title", Value::String(s)) => out.push((here, s.clone())),
                    ("default" | "examples" | "const", Value::String(s)) => {
                        out.push((here, s.clone()))
                    }
                    _ => schema_texts(child, &here, out, depth + 1),
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                schema_texts(child, &format!("{at}[{i}]"), out, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names() {
        assert_eq!(tokens("getInvoice"), ["get", "invoice"]);
        assert_eq!(tokens("deleteUser"), ["delete", "user"]);
        assert_eq!(tokens("getHTTPResponse"), ["get", "http", "response"]);
        assert_eq!(tokens("Run-Funnels-Query"), ["run", "funnels", "query"]);
        assert_eq!(tokens("n8n_delete_workflow"), ["n8n", "delete", "workflow"]);
        assert_eq!(tokens("d1_database_create"), ["d1", "database", "create"]);
        let n = split_name("main__odoo_search");
        assert_eq!(n.prefix.as_deref(), Some("main__"));
        assert_eq!(n.base, "odoo_search");
        let n = split_name("github.create_issue");
        assert_eq!(n.base, "create_issue");
        assert_eq!(split_name("plain").prefix, None);
    }

    #[test]
    fn lemmas() {
        assert_eq!(lemma_verb("Deletes").unwrap().1, "delete");
        assert_eq!(lemma_verb("Retrieves").unwrap().1, "retrieve");
        assert_eq!(lemma_verb("Searches").unwrap().1, "search");
        assert_eq!(lemma_verb("Re-fetch").unwrap().1, "fetch");
        assert!(lemma_verb("Dashboard").is_none());
    }

    #[test]
    fn leading() {
        let l = leading_verbs("Safely DELETE a draft order");
        assert_eq!(l.strong[0].word, "delete");
        let l = leading_verbs("Read/create/update/delete Kubernetes resources");
        assert_eq!(l.strong.len(), 4);
        let l = leading_verbs("Log label exploration");
        assert!(l.strong.is_empty());
        let l = leading_verbs("Batch retrieve up to 25 tasks");
        assert!(l.strong.is_empty());
        assert_eq!(l.weak[0].word, "retrieve");
        let l = leading_verbs("Does not delete anything");
        assert!(l.strong.is_empty() && l.weak.is_empty());
        let l = leading_verbs("List open pages");
        assert_eq!(l.strong.len(), 1);
        let l = leading_verbs("Download and import a Polyhaven asset");
        assert_eq!(l.strong.len(), 2);
        let l = leading_verbs("Create, run, and see load testing");
        assert_eq!(l.strong.len(), 3);
    }
}
