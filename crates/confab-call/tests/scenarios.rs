//! The shared scenario tables (`scenarios/*.json`), run against the Rust call rules. The web
//! client's port (`crates/confab-signal/web/callcore.js`) runs the very same files
//! (`tests/js/callcore.test.js`), so the two implementations cannot drift apart unnoticed.
//!
//! A scenario is a list of steps: an input at a time (ms), the actions it must produce (in
//! order, without `changed`), the error a command must return, and optionally the participants'
//! phases afterwards. `CONFAB_BLESS=1 cargo test -p confab-call --test scenarios` rewrites the
//! expectations from what the Rust rules do — then read the diff: it is the rulebook.

use anyhow::{bail, Context};
use confab_call::health::{ConnState, HealthAction, HealthRules, LinkHealth};
use confab_call::layers::{LayerChoice, LayerRules, Reading, Want};
use confab_call::mesh_return::MeshReturn;
use confab_call::verify::{Role, Verifier};
use confab_call::{CallCore, Millis};
use confab_protocol::call::CallSignal;
use confab_protocol::{PeerId, PeerInfo};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum Input {
    Welcome { id: PeerId, peers: Vec<PeerInfo> },
    PeerJoined { id: PeerId, name: String },
    PeerLeft { id: PeerId },
    Disconnected,
    Signal { from: PeerId, data: CallSignal },
    LinkConnected { peer: PeerId },
    LinkFailed { peer: PeerId },
    Call { peer: Option<PeerId> },
    CallWhenPresent,
    Accept { peer: PeerId },
    Decline { peer: PeerId },
    HangUp,
    Leave,
    SetMedia { audio: bool, video: bool },
    Tick,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn bless() -> bool {
    std::env::var_os("CONFAB_BLESS").is_some()
}

/// Runs one call-flow step; returns (actions without `changed`, error code).
fn call_step(core: &mut CallCore, at: Millis, input: Input) -> (Vec<Value>, Option<&'static str>) {
    let r = match input {
        Input::Welcome { id, peers } => {
            core.welcome(id, peers, at);
            Ok(())
        }
        Input::PeerJoined { id, name } => {
            core.peer_joined(id, name, at);
            Ok(())
        }
        Input::PeerLeft { id } => {
            core.peer_left(&id, at);
            Ok(())
        }
        Input::Disconnected => {
            core.disconnected();
            Ok(())
        }
        Input::Signal { from, data } => {
            core.signal(&from, data, at);
            Ok(())
        }
        Input::LinkConnected { peer } => {
            core.link_connected(&peer, at);
            Ok(())
        }
        Input::LinkFailed { peer } => {
            core.link_failed(&peer, at);
            Ok(())
        }
        Input::Call { peer } => core.call(peer.as_ref(), at),
        Input::CallWhenPresent => core.call_when_present(at),
        Input::Accept { peer } => core.accept(&peer, at),
        Input::Decline { peer } => core.decline(&peer, at),
        Input::HangUp => {
            core.hang_up(at);
            Ok(())
        }
        Input::Leave => {
            core.leave(at);
            Ok(())
        }
        Input::SetMedia { audio, video } => {
            core.set_media(audio, video);
            Ok(())
        }
        Input::Tick => {
            core.tick(at);
            Ok(())
        }
    };
    let actions = core
        .drain()
        .into_iter()
        .map(|a| serde_json::to_value(a).expect("actions serialize"))
        .filter(|v| v["action"] != "changed")
        .collect();
    (actions, r.err().map(|e| e.code()))
}

fn call_state(core: &CallCore) -> Value {
    let phases: Map<String, Value> = core
        .participants()
        .into_iter()
        .map(|p| (p.id.0, serde_json::to_value(p.phase).expect("phase")))
        .collect();
    json!({ "in_call": core.in_call(), "phases": phases })
}

fn run_call_scenario(s: &mut Value) -> anyhow::Result<Vec<String>> {
    let session = s["session"].as_str().context("session")?.to_owned();
    let secret = s["secret"].as_str().context("secret")?.to_owned();
    let auto = s["auto_accept"].as_bool().unwrap_or(false);
    let mut core = CallCore::new(session, secret, auto);
    let mut problems = Vec::new();
    let steps = s["steps"].as_array_mut().context("steps")?;
    for (i, step) in steps.iter_mut().enumerate() {
        let at = step["at"].as_u64().context("at")?;
        let input: Input = serde_json::from_value(step["in"].clone())
            .with_context(|| format!("step {i}: input {}", step["in"]))?;
        let (out, error) = call_step(&mut core, at, input);
        let state = call_state(&core);
        let obj = step.as_object_mut().context("step is an object")?;
        if bless() {
            obj.insert("out".into(), Value::Array(out));
            match error {
                Some(e) => obj.insert("error".into(), json!(e)),
                None => obj.remove("error"),
            };
            if obj.contains_key("state") {
                obj.insert("state".into(), state);
            }
            continue;
        }
        let want_out = obj.get("out").cloned().unwrap_or(json!([]));
        if Value::Array(out.clone()) != want_out {
            problems.push(format!(
                "step {i} ({}): actions\n  got  {}\n  want {}",
                obj["in"],
                Value::Array(out),
                want_out
            ));
        }
        let want_error = obj.get("error").and_then(Value::as_str);
        if want_error != error {
            problems.push(format!(
                "step {i}: error: got {error:?}, want {want_error:?}"
            ));
        }
        if let Some(want) = obj.get("state") {
            if *want != state {
                problems.push(format!("step {i}: state\n  got  {state}\n  want {want}"));
            }
        }
    }
    Ok(problems)
}

fn health_out(action: HealthAction) -> Value {
    match action {
        HealthAction::Nothing => json!([]),
        HealthAction::RestartIce => json!(["restart-ice"]),
        HealthAction::Fail(f) => json!([{ "fail": f.code() }]),
    }
}

fn run_health_scenario(s: &mut Value) -> anyhow::Result<Vec<String>> {
    let offerer = s["offerer"].as_bool().context("offerer")?;
    let mut h = LinkHealth::new(HealthRules::default(), offerer, 0);
    run_steps(s, |i, at, input| {
        Ok(match input {
            Value::String(t) if t == "signaling-down" => {
                h.signaling_down();
                json!([])
            }
            Value::String(t) => health_out(match t.as_str() {
                "tick" => h.tick(at),
                "signaling-back" => h.signaling_back(at),
                "peer-back" => h.peer_back(at),
                "path-gone" => h.path_gone(at),
                other => bail!("step {i}: unknown input {other}"),
            }),
            Value::Object(o) if o.contains_key("state") => {
                let st = match o["state"].as_str() {
                    Some("connecting") => ConnState::Connecting,
                    Some("connected") => ConnState::Connected,
                    Some("broken") => ConnState::Broken,
                    other => bail!("step {i}: unknown state {other:?}"),
                };
                if h.on_state(st, at) {
                    json!(["first-connected"])
                } else {
                    json!([])
                }
            }
            other => bail!("step {i}: unknown input {other}"),
        })
    })
}

/// Runs each step of a scenario whose steps are `{at, in, out}` through `step_fn` (step
/// index, time, input → what the rules did), and checks that against `out`.
fn run_steps(
    s: &mut Value,
    mut step_fn: impl FnMut(usize, Millis, &Value) -> anyhow::Result<Value>,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for (i, step) in s["steps"]
        .as_array_mut()
        .context("steps")?
        .iter_mut()
        .enumerate()
    {
        let at = step["at"].as_u64().context("at")?;
        let out = step_fn(i, at, &step["in"])?;
        check_out(step, i, out, &mut problems)?;
    }
    Ok(problems)
}

/// A step's `out` against what the rules did (an absent `out` is `[]`), or, blessing, set.
fn check_out(
    step: &mut Value,
    i: usize,
    out: Value,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let obj = step.as_object_mut().context("step")?;
    if bless() {
        obj.insert("out".into(), out);
    } else if obj.get("out").cloned().unwrap_or(json!([])) != out {
        problems.push(format!(
            "step {i} ({}): got {out}, want {}",
            obj["in"],
            obj.get("out").cloned().unwrap_or(json!([]))
        ));
    }
    Ok(())
}

/// Steps: `{"at": ms, "in": {"loss": percent|null, "requests": n, "receiving": bool}}`, and
/// out `[]`, `["half"]` or `["full"]`.
fn run_layers_scenario(s: &mut Value) -> anyhow::Result<Vec<String>> {
    let mut c = LayerChoice::new(LayerRules::default(), 0);
    run_steps(s, |_, at, input| {
        let reading = Reading {
            loss_pct: input["loss"].as_f64(),
            keyframe_requests: input["requests"].as_u64().context("requests")?,
            receiving: input["receiving"].as_bool().context("receiving")?,
        };
        Ok(match c.tick(at, reading) {
            None => json!([]),
            Some(Want::Half) => json!(["half"]),
            Some(Want::Full) => json!(["full"]),
        })
    })
}

fn run_mesh_return_scenario(s: &mut Value) -> anyhow::Result<Vec<String>> {
    let mut m = MeshReturn::default();
    run_steps(s, |_, at, input| {
        if input["moved"].as_bool() == Some(true) {
            m.moved(at);
            return Ok(json!([]));
        }
        let small = input["small"].as_bool().context("small")?;
        Ok(if m.tick(at, small) {
            json!(["mesh"])
        } else {
            json!([])
        })
    })
}

fn run_verify_scenario(s: &mut Value) -> anyhow::Result<Vec<String>> {
    let role = match s["role"].as_str() {
        Some("offerer") => Role::Offerer,
        Some("answerer") => Role::Answerer,
        other => bail!("unknown role {other:?}"),
    };
    let random = s["random"].as_str().context("random")?.to_owned();
    let binding = s["binding"].as_str().context("binding")?.to_owned();
    let mut v = Verifier::new(role, random, binding);
    let mut problems = Vec::new();
    for (i, step) in s["steps"]
        .as_array_mut()
        .context("steps")?
        .iter_mut()
        .enumerate()
    {
        let input = step["in"].as_object().context("input")?.clone();
        let (kind, arg) = input.iter().next().context("an input")?;
        let sent = match kind.as_str() {
            "local-description" => v.local_description(arg.as_str().context("sdp")?),
            "remote-description" => v.remote_description(arg.as_str().context("sdp")?),
            "signal" => v.signal(
                arg["commit"].as_str().map(str::to_owned),
                arg["reveal"].as_str().map(str::to_owned),
            ),
            other => bail!("step {i}: unknown input {other}"),
        };
        let out = json!(sent
            .into_iter()
            .map(|x| serde_json::to_value(x).expect("signal"))
            .collect::<Vec<_>>());
        let result = match v.result() {
            None => Value::Null,
            Some(Ok(code)) => json!({ "code": code }),
            Some(Err(e)) => json!({ "error": e }),
        };
        let obj = step.as_object_mut().context("step")?;
        if bless() {
            obj.insert("out".into(), out);
            obj.insert("result".into(), result);
        } else {
            if obj.get("out") != Some(&out) {
                problems.push(format!("step {i}: sent {out}, want {:?}", obj.get("out")));
            }
            if obj.get("result") != Some(&result) {
                problems.push(format!(
                    "step {i}: result {result}, want {:?}",
                    obj.get("result")
                ));
            }
        }
    }
    Ok(problems)
}

/// Pretty JSON that keeps anything short on one line (the tables are read by people).
fn pretty(v: &Value, indent: usize) -> String {
    let compact = v.to_string();
    if compact.len() + indent <= 150 || !(v.is_array() || v.is_object()) {
        return compact;
    }
    let pad = " ".repeat(indent + 2);
    let close = " ".repeat(indent);
    match v {
        Value::Array(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| format!("{pad}{}", pretty(x, indent + 2)))
                .collect();
            format!("[\n{}\n{close}]", items.join(",\n"))
        }
        Value::Object(o) => {
            let items: Vec<String> = o
                .iter()
                .map(|(k, x)| {
                    format!(
                        "{pad}{}: {}",
                        Value::String(k.clone()),
                        pretty(x, indent + 2)
                    )
                })
                .collect();
            format!("{{\n{}\n{close}}}", items.join(",\n"))
        }
        _ => compact,
    }
}

fn run_file(name: &str, run: fn(&mut Value) -> anyhow::Result<Vec<String>>) {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let scenarios = doc["scenarios"].as_array_mut().expect("a scenarios list");
    assert!(!scenarios.is_empty(), "{name}: no scenarios");
    let mut failures = Vec::new();
    for s in scenarios.iter_mut() {
        let about = s["about"].as_str().unwrap_or("?").to_owned();
        match run(s) {
            Ok(p) if p.is_empty() => {}
            Ok(p) => failures.push(format!("{about}:\n{}", p.join("\n"))),
            Err(e) => failures.push(format!("{about}: {e:#}")),
        }
    }
    if bless() {
        std::fs::write(&path, pretty(&doc, 0) + "\n").expect("write blessed scenarios");
    }
    assert!(
        failures.is_empty(),
        "{name}: {} scenario(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn call_flow_scenarios() {
    run_file("call-flow.json", run_call_scenario);
}

#[test]
fn verify_scenarios() {
    run_file("verify.json", run_verify_scenario);
}

#[test]
fn link_health_scenarios() {
    run_file("link-health.json", run_health_scenario);
}

#[test]
fn layer_scenarios() {
    run_file("layers.json", run_layers_scenario);
}

#[test]
fn mesh_return_scenarios() {
    run_file("mesh-return.json", run_mesh_return_scenario);
}
