//! The bad-policy corpus: every file in `tests/bad-policies/` must be rejected with the
//! locator and message listed for it in `EXPECTED.tsv`.

use portcullis_policy::parse;
use std::path::Path;

#[test]
fn every_bad_policy_is_rejected_with_its_locator() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-policies");
    let expected = std::fs::read_to_string(dir.join("EXPECTED.tsv")).unwrap();
    let mut listed = Vec::new();
    let mut failures = Vec::new();
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut cols = line.split('\t');
        let (file, locator, needle) = (
            cols.next().unwrap(),
            cols.next().unwrap(),
            cols.next().unwrap(),
        );
        listed.push(file.to_string());
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        match parse(&text) {
            Ok(_) => failures.push(format!("{file}: accepted")),
            Err(errors) => {
                if !errors
                    .iter()
                    .any(|e| e.locator == locator && e.message.contains(needle))
                {
                    failures.push(format!(
                        "{file}: wanted {locator}: …{needle}…, got {errors:#?}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        listed.len() >= 40,
        "the corpus must hold at least 40 documents"
    );
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every corpus file is listed in EXPECTED.tsv and vice versa"
    );
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let text = r#"{"version":"2","default":"maybe","tools":{"x":{"deny_iff":[],"limits":[{"counter":"","window":"fortnight","max":0,"scope":"team"}]}}}"#;
    let errors = parse(text).unwrap_err();
    let locs: Vec<&str> = errors.iter().map(|e| e.locator.as_str()).collect();
    for want in [
        "version",
        "default",
        "tools.x.deny_iff",
        "tools.x.limits[0].counter",
        "tools.x.limits[0].window",
        "tools.x.limits[0].max",
        "tools.x.limits[0].scope",
    ] {
        assert!(locs.contains(&want), "{want} missing from {locs:?}");
    }
    assert_eq!(errors.len(), 7, "{errors:#?}");
}
