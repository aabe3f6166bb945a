//! HTML for the console: the one escaping function every page goes through, the page frame
//! (navigation, the CSRF token for scripts), and small shared pieces (badges, times, JSON
//! data blocks). Pages are built with `format!`/`write!`; anything that did not come from
//! this file's literals passes through [`esc`].

use portcullis_policy::window::rfc3339;
use std::fmt::Write as _;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// JSON for a `<script type="application/json">` data block: `<`, `>` and `&` written as
/// `\u00XX`, so no text inside can end the element.
pub fn json_block(id: &str, v: &serde_json::Value) -> String {
    let text = v
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    format!(
        "<script type=\"application/json\" id=\"{}\">{text}</script>\n",
        esc(id)
    )
}

/// A UTC time, ms since the epoch, as RFC 3339 text (seconds).
pub fn when(ms: u64) -> String {
    let t = rfc3339(ms);
    // Trim milliseconds for tables: 2026-12-06T16:00:00.123Z → 2026-12-06T16:00:00Z.
    match t.find('.') {
        Some(i) if t.ends_with('Z') => format!("{}Z", &t[..i]),
        _ => t,
    }
}

/// A risk badge (`low`, `medium`, `high`, `critical`).
pub fn risk_badge(risk: &str) -> String {
    let r = esc(&risk.to_ascii_lowercase());
    format!("<span class=\"badge risk-{r}\">{r}</span>")
}

/// The pages of the navigation: path and label.
const NAV: [(&str, &str); 7] = [
    ("/ui/", "Overview"),
    ("/ui/catalogue", "Catalogue"),
    ("/ui/policies", "Policies"),
    ("/ui/grants", "Grants"),
    ("/ui/approvals", "Approvals"),
    ("/ui/pins", "Pins"),
    ("/ui/audit", "Audit"),
];

/// A whole page: `title`, the navigation with `current` marked, `body`. `csrf` (signed-in
/// pages) is put in a `<meta>` for scripts and in the sign-out form.
pub fn page(title: &str, current: &str, csrf: Option<&str>, body: &str) -> String {
    let mut o = String::with_capacity(body.len() + 2048);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · Portcullis</title>\n\
         <link rel=\"stylesheet\" href=\"/ui/assets/console.css\">\n",
        esc(title)
    );
    if let Some(t) = csrf {
        let _ = writeln!(o, "<meta name=\"csrf-token\" content=\"{}\">", esc(t));
    }
    o.push_str("<script src=\"/ui/assets/console.js\" defer></script>\n</head>\n<body>\n");
    o.push_str("<a class=\"skip\" href=\"#main\">Skip to content</a>\n<header class=\"top\">\n<span class=\"brand\">Portcullis</span>\n");
    if let Some(t) = csrf {
        o.push_str("<nav aria-label=\"Console\"><ul>\n");
        for (href, label) in NAV {
            let cur = if label == current {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = writeln!(o, "<li><a href=\"{href}\"{cur}>{label}</a></li>");
        }
        o.push_str("</ul></nav>\n");
        let _ = writeln!(
            o,
            "<form method=\"post\" action=\"/ui/logout\" class=\"signout\">{}<button type=\"submit\">Sign out</button></form>",
            csrf_field(t)
        );
    }
    let _ = write!(
        o,
        "</header>\n<main id=\"main\" tabindex=\"-1\">\n<h1>{}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        esc(title)
    );
    o
}

/// The hidden CSRF field of a form.
pub fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(token)
    )
}

/// A notice box: `kind` is `ok`, `error` or `warn`.
pub fn notice(kind: &str, text: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!(
        "<p class=\"notice {kind}\" role=\"{role}\">{}</p>\n",
        esc(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn data_blocks_cannot_be_closed_from_inside() {
        let b = json_block(
            "d",
            &serde_json::json!({"t": "</script><script>x()</script>"}),
        );
        assert_eq!(b.matches("</script>").count(), 1);
        assert!(b.contains("\\u003c/script\\u003e"));
    }
}
