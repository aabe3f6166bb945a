//! Renders a catalogue for a `tools/list` result: an index and one page per tool, in Markdown
//! and HTML.
//!
//! ```text
//! cargo run -p portcullis-classify --example catalog -- TOOLS.json SERVER OUT_DIR
//! ```

use portcullis_classify::{
    catalog_index_html, catalog_index_markdown, catalog_page_html, catalog_page_markdown,
    classify_all, page_slug,
};
use serde_json::Value;
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, server, out] = &args[..] else {
        eprintln!("usage: catalog TOOLS.json SERVER OUT_DIR");
        std::process::exit(2);
    };
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("readable")).expect("JSON");
    let tools = v
        .get("tools")
        .and_then(Value::as_array)
        .cloned()
        .or_else(|| v.as_array().cloned())
        .unwrap_or_default();
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).expect("output directory");
    let classes = classify_all(&tools, server);
    for c in &classes {
        let def = tools
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(c.tool.as_str()))
            .expect("classified from this list");
        let slug = page_slug(&c.tool);
        std::fs::write(
            out.join(format!("{slug}.md")),
            catalog_page_markdown(c, def),
        )
        .unwrap();
        std::fs::write(out.join(format!("{slug}.html")), catalog_page_html(c, def)).unwrap();
    }
    std::fs::write(
        out.join("index.md"),
        catalog_index_markdown(server, &classes),
    )
    .unwrap();
    std::fs::write(out.join("index.html"), catalog_index_html(server, &classes)).unwrap();
    println!("{} pages in {}", classes.len(), out.display());
}
