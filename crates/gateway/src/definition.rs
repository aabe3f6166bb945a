//! A tool's definition as pinning sees it: the fields a client's model reads (name, title,
//! description, inputSchema, outputSchema, annotations), in canonical JSON, its SHA-256, and
//! a field-by-field diff of two definitions (`description`, `inputSchema.properties.path`).
//!
//! Pure: no I/O, no clock. The relay pins with it, the CLI and the admin API show diffs with it.

use portcullis_policy::json;
use serde_json::{Map, Value};

/// The members of a tool that make up its definition; anything else a server adds (`_meta`,
/// icons) may change without un-pinning the tool.
pub const FIELDS: [&str; 6] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// How deep a diff names a changed member before it names the whole subtree.
const DIFF_DEPTH: usize = 6;

/// The definition of `tool` (one element of a `tools/list` result's `tools`): its
/// [`FIELDS`] that are present, nothing else.
pub fn definition(tool: &Value) -> Value {
    let mut m = Map::new();
    if let Some(t) = tool.as_object() {
        for f in FIELDS {
            if let Some(v) = t.get(f) {
                m.insert(f.to_owned(), v.clone());
            }
        }
    }
    Value::Object(m)
}

/// The canonical text of a definition: keys sorted at every depth, no whitespace.
pub fn canonical(definition: &Value) -> String {
    json::canonical(definition)
}

/// `sha256:` and the hex SHA-256 of the canonical text of `tool`'s definition.
pub fn hash(tool: &Value) -> String {
    use sha2::Digest;
    let text = canonical(&definition(tool));
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// One changed member: where, and its old and new values (`None`: absent on that side).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Change {
    /// Dotted path from the definition's top (`inputSchema.properties.path`).
    pub field: String,
    /// The pinned value.
    pub old: Option<Value>,
    /// The value listed now.
    pub new: Option<Value>,
}

/// The members that differ between two definitions, in a stable order (sorted by path):
/// objects are compared member by member (to `DIFF_DEPTH`), anything else as a whole.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(
        &mut String::new(),
        Some(&definition(old)),
        Some(&definition(new)),
        0,
        &mut out,
    );
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

/// The paths of [`diff`] alone (`["description", "inputSchema.properties.path"]`).
pub fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    diff(old, new).into_iter().map(|c| c.field).collect()
}

fn walk(
    path: &mut String,
    old: Option<&Value>,
    new: Option<&Value>,
    depth: usize,
    out: &mut Vec<Change>,
) {
    if old == new {
        return;
    }
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) if depth < DIFF_DEPTH => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk(path, a.get(k), b.get(k), depth + 1, out);
                path.truncate(len);
            }
        }
        _ => out.push(Change {
            field: if path.is_empty() {
                "(definition)".into()
            } else {
                path.clone()
            },
            old: old.cloned(),
            new: new.cloned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_ignores_key_order_and_extra_members() {
        let a = json!({"name": "read", "description": "Reads.", "inputSchema": {"type": "object", "properties": {"a": {"type": "string"}}}});
        let b = json!({"inputSchema": {"properties": {"a": {"type": "string"}}, "type": "object"}, "_meta": {"x": 1}, "description": "Reads.", "name": "read"});
        assert_eq!(hash(&a), hash(&b));
        assert!(hash(&a).starts_with("sha256:") && hash(&a).len() == 71);
        let c = json!({"name": "read", "description": "Reads!", "inputSchema": {"type": "object", "properties": {"a": {"type": "string"}}}});
        assert_ne!(hash(&a), hash(&c));
    }

    #[test]
    fn the_diff_names_each_changed_member() {
        let old = json!({"name": "read", "description": "Reads a record.", "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}});
        let new = json!({"name": "read", "description": "Reads a record and mails it.", "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}, "path": {"type": "string"}}, "required": ["id", "path"]}, "annotations": {"readOnlyHint": true}});
        assert_eq!(
            changed_fields(&old, &new),
            [
                "annotations",
                "description",
                "inputSchema.properties.path",
                "inputSchema.required"
            ]
        );
        let d = diff(&old, &new);
        assert_eq!(d[2].old, None);
        assert_eq!(d[2].new, Some(json!({"type": "string"})));
        assert!(diff(&old, &old).is_empty());
    }
}
