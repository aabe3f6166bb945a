//! Protected Resource Metadata (RFC 9728): for each server with OAuth,
//! `/.well-known/oauth-protected-resource[/<public_url path>]/mcp/<server>` names its resource
//! URI, the authorization server and the scopes; the root form
//! `/.well-known/oauth-protected-resource` answers for the only OAuth server, when there is one.

use super::OAuth;
use crate::http::{json_status, Gateway};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;

impl OAuth {
    /// The metadata document of `server`, when it accepts OAuth tokens.
    pub(crate) fn metadata(&self, server: &str) -> Option<Value> {
        let r = self.resources.get(server)?;
        Some(json!({
            "resource": r.uri,
            "authorization_servers": [self.cfg.issuer],
            "scopes_supported": self.cfg.scopes_supported,
            "bearer_methods_supported": ["header"],
            "resource_name": format!("Portcullis: {server}"),
        }))
    }

    /// The server a well-known path names: `mcp/<server>`, optionally after the public URL's
    /// own path (a reverse proxy may pass it on or strip it).
    fn server_of<'p>(&self, rest: &'p str) -> Option<&'p str> {
        let (_, prefix) = self.origin_and_path();
        let rest = rest.trim_start_matches('/');
        let rest = rest
            .strip_prefix(prefix.trim_start_matches('/'))
            .filter(|_| !prefix.is_empty())
            .map_or(rest, |r| r.trim_start_matches('/'));
        rest.strip_prefix("mcp/").filter(|s| !s.contains('/'))
    }
}

fn answer(doc: Option<Value>, what: &str) -> Response {
    let mut r = match doc {
        Some(d) => json_status(StatusCode::OK, d),
        None => json_status(
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "message": format!("{what}: no server with auth = \"oauth\" is published here")}),
        ),
    };
    // Public, read-only: browser-based clients read it from other origins.
    r.headers_mut()
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
    r
}

/// `GET /.well-known/oauth-protected-resource/{*rest}`.
pub(in crate::http) async fn resource_metadata(
    State(gw): State<Arc<Gateway>>,
    Path(rest): Path<String>,
) -> Response {
    let doc = gw
        .auth
        .oauth()
        .and_then(|o| o.server_of(&rest).and_then(|s| o.metadata(s)));
    answer(doc, &rest)
}

/// `GET /.well-known/oauth-protected-resource`: the only OAuth server's document.
pub(in crate::http) async fn root_metadata(State(gw): State<Arc<Gateway>>) -> Response {
    let doc = gw.auth.oauth().and_then(|o| {
        let mut names = o.resources.keys();
        match (names.next(), names.next()) {
            (Some(only), None) => o.metadata(only),
            _ => None,
        }
    });
    answer(doc, "/")
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn oauth(public_url: &str) -> super::OAuth {
        let t = format!("[oauth]\nissuer = \"https://id.example\"\npublic_url = \"{public_url}\"\nscopes_supported = [\"mcp\"]\n[[servers]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\nauth = \"oauth\"\n[[servers]]\nname = \"b\"\nurl = \"http://127.0.0.1:1/mcp\"\n");
        let c: Config = toml::from_str(&t).unwrap();
        super::OAuth::new(&c).unwrap().unwrap()
    }

    #[test]
    fn documents_and_their_paths() {
        let o = oauth("https://gw.example/");
        assert_eq!(
            o.metadata_url("a"),
            "https://gw.example/.well-known/oauth-protected-resource/mcp/a"
        );
        let d = o.metadata("a").unwrap();
        assert_eq!(d["resource"], "https://gw.example/mcp/a");
        assert_eq!(d["authorization_servers"][0], "https://id.example");
        assert_eq!(d["scopes_supported"][0], "mcp");
        assert!(o.metadata("b").is_none(), "b uses grants");
        assert_eq!(o.server_of("mcp/a"), Some("a"));
        assert_eq!(o.server_of("mcp/a/x"), None);
        let p = oauth("https://gw.example/tools");
        assert_eq!(
            p.metadata_url("a"),
            "https://gw.example/.well-known/oauth-protected-resource/tools/mcp/a"
        );
        assert_eq!(
            p.metadata("a").unwrap()["resource"],
            "https://gw.example/tools/mcp/a"
        );
        assert_eq!(p.server_of("tools/mcp/a"), Some("a"));
        assert_eq!(
            p.server_of("mcp/a"),
            Some("a"),
            "a proxy that strips the prefix"
        );
    }
}
