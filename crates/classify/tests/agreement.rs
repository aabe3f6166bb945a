//! Agreement with expert labels: classifies the labelled development set (`tests/data/labels/`:
//! a sample of the tool corpus, and all the Odoo Claude MCP tools), prints category agreement,
//! risk agreement, recall of High/Critical tools and every miss, and asserts the goals of
//! issue 12 (category agreement ≥ 90 %, High/Critical recall ≥ 95 % overall and on Odoo).

mod common;

use portcullis_classify::{classify, Category, Classification, Risk};
use serde_json::{json, Value};
use std::collections::HashMap;

/// One expert label, with the verdict on its tool.
struct Case {
    set: &'static str,
    server: String,
    tool: String,
    category: Category,
    risk: Risk,
    reason: String,
    ours: Classification,
}

fn parse_risk(s: &str) -> Risk {
    match s {
        "Low" => Risk::Low,
        "Medium" => Risk::Medium,
        "High" => Risk::High,
        "Critical" => Risk::Critical,
        _ => panic!("unknown risk {s:?} in the labels"),
    }
}

fn labels(rel: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(&common::repo_data(rel)).expect("labels are JSON");
    v["labels"].as_array().expect("a labels array").clone()
}

fn cases(
    set: &'static str,
    rel: &str,
    definitions: &HashMap<(String, String), Value>,
) -> Vec<Case> {
    labels(rel)
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_else(|| panic!("{k} in {l}"));
            let key = (s("server").to_string(), s("tool").to_string());
            let def = definitions
                .get(&key)
                .unwrap_or_else(|| panic!("{}/{}: labelled but not defined", key.0, key.1));
            Case {
                set,
                ours: classify(def, &key.0),
                server: key.0,
                tool: key.1,
                category: Category::parse(s("category")).expect("a category"),
                risk: parse_risk(s("risk")),
                reason: s("reason").to_string(),
            }
        })
        .collect()
}

struct Figures {
    n: usize,
    category: usize,
    risk: usize,
    dangerous: usize,
    recalled: usize,
}

impl Figures {
    fn of<'a>(cases: impl Iterator<Item = &'a Case>) -> Figures {
        let mut f = Figures {
            n: 0,
            category: 0,
            risk: 0,
            dangerous: 0,
            recalled: 0,
        };
        for c in cases {
            f.n += 1;
            f.category += usize::from(c.ours.category == c.category);
            f.risk += usize::from(c.ours.risk == c.risk);
            if c.risk >= Risk::High {
                f.dangerous += 1;
                f.recalled += usize::from(c.ours.risk >= Risk::High);
            }
        }
        f
    }

    fn pct(a: usize, b: usize) -> f64 {
        if b == 0 {
            100.0
        } else {
            100.0 * a as f64 / b as f64
        }
    }

    fn category_pct(&self) -> f64 {
        Self::pct(self.category, self.n)
    }

    fn recall_pct(&self) -> f64 {
        Self::pct(self.recalled, self.dangerous)
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<8} {:>4} tools  category {:>3}/{:<3} = {:5.1} %  risk {:>3}/{:<3} = {:5.1} %  High/Critical recall {:>3}/{:<3} = {:5.1} %",
            self.n,
            self.category,
            self.n,
            self.category_pct(),
            self.risk,
            self.n,
            Self::pct(self.risk, self.n),
            self.recalled,
            self.dangerous,
            self.recall_pct()
        )
    }
}

fn corpus_definitions() -> HashMap<(String, String), Value> {
    common::corpus()
        .into_iter()
        .map(|(server, _, t)| ((server, t["name"].as_str().unwrap().to_string()), t))
        .collect()
}

fn odoo_definitions() -> Option<HashMap<(String, String), Value>> {
    let tools = common::odoo_tools()?;
    Some(
        tools
            .into_iter()
            .map(|t| {
                (
                    (
                        "odoo-claude-mcp".to_string(),
                        t["name"].as_str().unwrap().to_string(),
                    ),
                    t,
                )
            })
            .collect(),
    )
}

fn report(all: &[Case]) {
    println!("\nCategory confusion (rows: expert label, columns: classifier)");
    print!("{:<12}", "label\\ours");
    for c in Category::ALL {
        print!("{:>12}", c.as_str());
    }
    println!();
    for l in Category::ALL {
        print!("{:<12}", l.as_str());
        for o in Category::ALL {
            let n = all
                .iter()
                .filter(|c| c.category == l && c.ours.category == o)
                .count();
            print!("{:>12}", n);
        }
        println!();
    }
    println!("\nMisses (label -> ours; the label's reason | our deciding evidence):");
    for c in all {
        let under = c.risk >= Risk::High && c.ours.risk < Risk::High;
        if c.ours.category != c.category || c.ours.risk != c.risk {
            println!(
                "{} {:<6} {:<16} {:<38} {:>11}/{:<8} -> {:>11}/{:<8} {} | {}",
                if under { "!!" } else { "  " },
                c.set,
                c.server,
                c.tool,
                c.category.as_str(),
                c.risk.as_str(),
                c.ours.category.as_str(),
                c.ours.risk.as_str(),
                c.reason,
                c.ours.reason()
            );
        }
    }
    println!("(!! marks a dangerous tool rated below High)");
}

#[test]
fn agreement_with_expert_labels() {
    let mut all = cases("corpus", "labels/corpus.json", &corpus_definitions());
    let odoo = odoo_definitions();
    if let Some(defs) = &odoo {
        all.extend(cases("odoo", "labels/odoo.json", defs));
    } else {
        // The labels are carried; only the definitions are missing. Check the file parses.
        assert_eq!(labels("labels/odoo.json").len(), 123);
    }
    report(&all);
    let corpus = Figures::of(all.iter().filter(|c| c.set == "corpus"));
    let odoo_f = Figures::of(all.iter().filter(|c| c.set == "odoo"));
    let total = Figures::of(all.iter());
    println!();
    println!("{}", corpus.line("corpus"));
    if odoo.is_some() {
        println!("{}", odoo_f.line("odoo"));
    }
    println!("{}", total.line("all"));

    assert!(
        total.category_pct() >= 90.0,
        "category agreement {:.1} % < 90 %",
        total.category_pct()
    );
    assert!(
        total.recall_pct() >= 95.0,
        "High/Critical recall {:.1} % < 95 %",
        total.recall_pct()
    );
    if odoo.is_some() {
        assert_eq!(odoo_f.n, 123, "every Odoo tool is labelled");
        assert!(
            odoo_f.recall_pct() >= 95.0,
            "Odoo High/Critical recall {:.1} % < 95 %",
            odoo_f.recall_pct()
        );
    }
}

#[test]
fn every_label_is_well_formed() {
    for rel in ["labels/corpus.json", "labels/odoo.json"] {
        let ls = labels(rel);
        let mut seen = std::collections::HashSet::new();
        for l in &ls {
            for k in ["server", "tool", "category", "risk", "reason"] {
                assert!(
                    l[k].as_str().is_some_and(|s| !s.is_empty()),
                    "{rel}: {k} in {l}"
                );
            }
            assert!(Category::parse(l["category"].as_str().unwrap()).is_some());
            parse_risk(l["risk"].as_str().unwrap());
            assert!(
                seen.insert((l["server"].clone(), l["tool"].clone())),
                "{rel}: {l} twice"
            );
        }
        assert!(ls.len() >= 120, "{rel}: {} labels", ls.len());
    }
    let _ = json!(null);
}
