//! Compares the classifier with the categories of PolicyLayer Intercept's policy scaffolds
//! (`tests/data/tool-corpus/intercept-categories.tsv`): a confusion matrix (rows = the
//! corpus, columns = ours) and the agreement per corpus category.
//!
//! ```text
//! cargo run -p portcullis-classify --example corpus_report [-- --disagreements] [-- --tools FILE SERVER [--json]]
//! ```
//!
//! `--disagreements` lists every tool where the two differ; `--tools FILE SERVER [--json]`
//! prints a table (or the classifications as JSON) for a `tools/list` result instead (e.g.
//! the Odoo fixture).

use portcullis_classify::{classify, classify_all, Category};
use serde_json::{json, Value};
use std::path::PathBuf;

fn test_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--tools") {
        let (Some(file), Some(server)) = (args.get(i + 1), args.get(i + 2)) else {
            eprintln!("usage: --tools FILE SERVER");
            std::process::exit(2);
        };
        tools_table(file, server, args.iter().any(|a| a == "--json"));
        return;
    }
    let path = test_data().join("tool-corpus/intercept-categories.tsv");
    let path = path.canonicalize().unwrap_or(path);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let show = args.iter().any(|a| a == "--disagreements");
    let mut matrix = [[0usize; 6]; 6];
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        if f.len() < 4 {
            continue;
        }
        let Some(theirs) = Category::parse(f[1]) else {
            continue;
        };
        let tool = json!({ "name": f[2], "description": f[3] });
        let c = classify(&tool, f[0]);
        matrix[idx(theirs)][idx(c.category)] += 1;
        rows.push((f[0].to_string(), theirs, c));
    }
    let total: usize = matrix.iter().flatten().sum();
    println!("Corpus: {} ({total} tools)", path.display());
    println!("Rows: corpus category (Intercept scaffolds). Columns: portcullis-classify.\n");
    print!("{:<12}", "corpus\\ours");
    for c in Category::ALL {
        print!("{:>12}", c.as_str());
    }
    println!("{:>8}{:>11}", "total", "agreement");
    let mut agree = 0;
    for r in Category::ALL {
        let row = &matrix[idx(r)];
        let n: usize = row.iter().sum();
        print!("{:<12}", r.as_str());
        for c in Category::ALL {
            print!("{:>12}", row[idx(c)]);
        }
        let hit = row[idx(r)];
        agree += hit;
        println!(
            "{:>8}{:>10.1}%",
            n,
            if n == 0 {
                0.0
            } else {
                100.0 * hit as f64 / n as f64
            }
        );
    }
    print!("{:<12}", "total");
    for c in Category::ALL {
        let n: usize = matrix.iter().map(|row| row[idx(c)]).sum();
        print!("{:>12}", n);
    }
    println!("{total:>8}");
    let other = matrix[idx(Category::Other)].iter().sum::<usize>();
    let agree_excl = agree - matrix[idx(Category::Other)][idx(Category::Other)];
    println!(
        "\nOverall agreement: {agree}/{total} = {:.1}%; excluding the corpus's Other rows: {agree_excl}/{} = {:.1}%",
        100.0 * agree as f64 / total as f64,
        total - other,
        100.0 * agree_excl as f64 / (total - other) as f64
    );
    if show {
        println!("\nDisagreements (corpus -> ours):");
        for (server, theirs, c) in &rows {
            if *theirs != c.category {
                println!(
                    "{:<12} {:<45} {:>11} -> {:<11} {:?} | {}",
                    server,
                    c.tool,
                    theirs.as_str(),
                    c.category.as_str(),
                    c.risk,
                    c.summary
                );
            }
        }
    }
}

fn idx(c: Category) -> usize {
    Category::ALL.iter().position(|x| *x == c).expect("listed")
}

fn tools_table(file: &str, server: &str, as_json: bool) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| {
        eprintln!("{file}: {e}");
        std::process::exit(1)
    });
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let tools = v
        .get("tools")
        .and_then(Value::as_array)
        .cloned()
        .or_else(|| v.as_array().cloned())
        .unwrap_or_default();
    for c in classify_all(&tools, server) {
        if as_json {
            println!("{}", serde_json::to_string_pretty(&c).expect("serializes"));
            continue;
        }
        let flags = format!(
            "{}{}",
            c.catch_all
                .as_ref()
                .map(|k| format!(" catch-all:{}", k.kind))
                .unwrap_or_default(),
            if c.is_poisoning_suspect() {
                " POISON"
            } else {
                ""
            }
        );
        println!(
            "{:<40} {:<12} {:<9} {:.2}{} rule={}",
            c.tool,
            c.category.as_str(),
            c.risk.as_str(),
            c.confidence,
            flags,
            c.rule
        );
    }
}
