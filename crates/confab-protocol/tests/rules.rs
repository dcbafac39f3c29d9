//! The shared rules table (`rules.json`), run against the Rust rules. `tests/js/rules.test.js`
//! runs the same table against `ui/rules.js`: one set of rules for the server, the app, the
//! desktop window and the web client.

use confab_protocol::{check_name, check_password, check_room, clean_text, RuleError};
use serde_json::Value;

fn table() -> Value {
    serde_json::from_str(include_str!("rules.json")).expect("rules.json is JSON")
}

/// Runs one section of the table; `check` returns the accepted form or the error.
fn run(section: &str, check: impl Fn(&str) -> Result<String, RuleError>) {
    let table = table();
    let cases = table[section].as_array().expect("section is a list");
    assert!(cases.len() >= 5, "{section}: too few cases");
    let mut failures = Vec::new();
    for case in cases {
        let why = case["why"].as_str().expect("why");
        let input = case["input"].as_str().expect("input");
        let got = check(input);
        match (&got, case.get("ok"), case.get("error")) {
            (Ok(v), Some(want), None) if want.as_str() == Some(v) => {}
            (Err(e), None, Some(code))
                if code.as_str() == Some(e.code())
                    && case["message"].as_str() == Some(&e.to_string()) => {}
            _ => failures.push(format!(
                "{section} / {why}: {input:?} gave {got:?} ({case})"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shared_room_rules() {
    run("rooms", |s| check_room(s).map(|()| s.to_owned()));
}

#[test]
fn shared_name_rules() {
    run("names", check_name);
}

#[test]
fn shared_password_rules() {
    run("passwords", |s| check_password(s).map(|()| s.to_owned()));
}

#[test]
fn shared_chat_rules() {
    run("chat", |s| Ok(clean_text(s)));
}
