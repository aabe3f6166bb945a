//! Precision and recall of the poisoning findings over a corpus: `tests/data/poisoning/
//! poisoned.jsonl` (tool definitions written for this project after published tool-poisoning
//! attacks, each labelled with the attack it describes) against clean definitions
//! (`tests/data/poisoning/clean.jsonl`, and the 966 real tools of
//! `tests/data/tool-corpus/intercept-categories.tsv`). Prints both and asserts floors.

use portcullis_classify::poisoning_findings;
use serde_json::{json, Value};
use std::path::PathBuf;

fn data(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn jsonl(rel: &str) -> Vec<Value> {
    data(rel)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{rel}: {e}: {l}")))
        .collect()
}

#[test]
fn precision_and_recall_over_the_corpus() {
    let poisoned = jsonl("poisoning/poisoned.jsonl");
    let mut clean: Vec<Value> = jsonl("poisoning/clean.jsonl")
        .into_iter()
        .map(|r| r["tool"].clone())
        .collect();
    for line in data("tool-corpus/intercept-categories.tsv").lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        clean.push(json!({"name": cols[2], "description": cols[3]}));
    }
    let mut tp = 0usize;
    let mut missed = Vec::new();
    for r in &poisoned {
        let f = poisoning_findings(&r["tool"]);
        if f.is_empty() {
            missed.push(r["id"].as_str().unwrap_or("?").to_owned());
        } else {
            tp += 1;
            // Every finding carries evidence a person can check: a field and a sentence.
            assert!(f.iter().all(|x| !x.field.is_empty() && !x.what.is_empty()));
        }
    }
    let mut false_pos = Vec::new();
    for t in &clean {
        let f = poisoning_findings(t);
        if !f.is_empty() {
            false_pos.push(format!("{}: {}", t["name"], f[0]));
        }
    }
    let fp = false_pos.len();
    let precision = tp as f64 / (tp + fp) as f64;
    let recall = tp as f64 / poisoned.len() as f64;
    println!(
        "poisoning corpus: {} poisoned, {} clean; precision {precision:.3}, recall {recall:.3}",
        poisoned.len(),
        clean.len()
    );
    println!("missed: {missed:?}");
    println!("false positives: {false_pos:#?}");
    assert!(poisoned.len() >= 20 && clean.len() >= 900);
    assert!(recall >= 0.95, "recall {recall:.3}; missed {missed:?}");
    assert!(precision >= 0.9, "precision {precision:.3}; {false_pos:#?}");
}
