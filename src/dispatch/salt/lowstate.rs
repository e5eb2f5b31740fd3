//! What the Salt dispatcher says to salt-api and how it reads the answers, pure: lowstate
//! JSON built from jobs, the compound target, the agent command template, and parsers for
//! the `login`, `grains.item` and `local_async` answers. No HTTP here, so every shape is
//! tested on strings.
//!
//! Invariant: every value placed into the command template is either a validated name
//! (host, fabric, product, version, deployment: `A-Z a-z 0-9 . _ + -`) or a static part
//! checked by [`check_static`] to hold no Jinja delimiter, so the only Jinja the minion
//! renders is the one written here.

use crate::dispatch::{HostInfo, Job, JobHost};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::ffi::OsString;

/// Jinja name of the per-host table in the command template.
const TABLE: &str = "instream";
/// The minion's own id, rendered on the minion.
pub const HOST_EXPR: &str = "{{ grains.id }}";
/// The host's fabric, looked up in the job's table by minion id.
pub const FABRIC_EXPR: &str = "{{ instream[grains.id][0] }}";
/// Prefix of the environment variable holding a host's agent credential; the host's
/// `--token-env` names `TOKEN_ENV_PREFIX` + its minion id ([`TOKEN_ENV_EXPR`]).
pub const TOKEN_ENV_PREFIX: &str = "INSTREAM_AGENT_TOKEN_";
/// The `--token-env` word, rendered on the minion.
pub const TOKEN_ENV_EXPR: &str = "INSTREAM_AGENT_TOKEN_{{ grains.id }}";
/// `--fabric-share RANK/OF` or nothing, looked up the same way.
const SHARE_EXPR: &str = "{{ instream[grains.id][1] }}";

/// Body of `POST /login`. The secret goes only here, never into logs.
pub fn login_body(user: &str, secret: &str, eauth: &str) -> Value {
    json!({"username": user, "password": secret, "eauth": eauth})
}

/// The token out of a `/login` answer (`{"return":[{"token":..}]}`).
pub fn parse_login(body: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("login answer: {e}"))?;
    v["return"][0]["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("login answer has no token: {}", excerpt(body)))
}

/// Lowstate asking every minion for the fabric and variant grains, waiting at most
/// `timeout_secs` for minions to answer.
pub fn grains_request(fabric_grain: &str, variant_grain: &str, timeout_secs: u64) -> Value {
    json!([{
        "client": "local",
        "tgt": "*",
        "tgt_type": "glob",
        "fun": "grains.item",
        "arg": [fabric_grain, variant_grain],
        "timeout": timeout_secs,
    }])
}

/// A minion left out of the fleet, and why.
pub type Skipped = (String, &'static str);

/// Minions as hosts, sorted by id, from a `grains.item` answer
/// (`{"return":[{"host-1":{"fabric":"f1","osmajorrelease":12}, "host-2": false}]}`).
/// Also returns the minions left out, with why: those that did not answer (their value is
/// not an object), have no fabric grain, or whose id or fabric is not a valid name.
pub fn parse_grains(
    body: &str,
    fabric_grain: &str,
    variant_grain: &str,
) -> Result<(Vec<HostInfo>, Vec<Skipped>), String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("grains answer: {e}"))?;
    let Some(by_minion) = v["return"][0].as_object() else {
        return Err(format!("grains answer: {}", excerpt(body)));
    };
    let (mut hosts, mut skipped) = (Vec::new(), Vec::new());
    for (id, grains) in by_minion {
        let Some(grains) = grains.as_object() else {
            skipped.push((id.clone(), "did not answer"));
            continue;
        };
        let Some(fabric) = grains.get(fabric_grain).and_then(grain_string) else {
            skipped.push((id.clone(), "has no fabric grain"));
            continue;
        };
        let valid = |s: &str| crate::deploy::model::validate_name("name", s).is_ok();
        if !valid(id) || crate::deploy::model::validate_fabric("fabric", &fabric).is_err() {
            skipped.push((id.clone(), "has an invalid id or fabric"));
            continue;
        }
        let mut g = BTreeMap::new();
        if let Some(val) = grains.get(variant_grain).and_then(grain_string) {
            g.insert(variant_grain.to_string(), val);
        }
        hosts.push(HostInfo {
            name: id.clone(),
            fabric,
            grains: g,
        });
    }
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((hosts, skipped))
}

/// A scalar grain as text (`12` and `"12"` compare equal, as on Salt's command line);
/// empty strings, lists and maps are not usable as a fabric or variant.
fn grain_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `L@host-1,host-2`, and with a variant `L@host-1,host-2 and G@osmajorrelease:12`: the
/// grain is checked again on the minion, so a host whose grain changed since resolution
/// does not run the job.
pub fn compound_target(hosts: &[JobHost], variant: Option<(&str, &str)>) -> String {
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let mut t = format!("L@{}", names.join(","));
    if let Some((grain, value)) = variant {
        t.push_str(&format!(" and G@{grain}:{value}"));
    }
    t
}

/// Refuses a static part of the command (agent path, URLs, file paths) that Jinja would
/// interpret.
pub fn check_static(what: &str, s: &str) -> Result<(), String> {
    if ["{{", "{%", "{#"].iter().any(|d| s.contains(d)) {
        return Err(format!("{what} {s:?} contains a Jinja delimiter"));
    }
    Ok(())
}

/// The Jinja template of the agent command line, one for all hosts of a job.
///
/// A `{% set %}` table maps each minion id to its fabric and its `--fabric-share` words;
/// `--host` and the data root come from `grains.id`. `argv` is the local dispatcher's
/// argument vector for host [`HOST_EXPR`] in fabric [`FABRIC_EXPR`]
/// (`AgentCommand::args`, the rendered [`contract::AgentArgs`]; that host is not in the job,
/// so it carries no `--fabric-share` of its own: the table holds each host's, from
/// [`contract::fabric_shares`] as the local dispatcher's), quoted here for `shlex.split`
/// (cmd.run with `python_shell=False`: no shell on the minion).
pub fn command_template(program: &str, argv: &[OsString], job: &Job) -> String {
    let shares = contract::fabric_shares(
        job.hosts
            .iter()
            .map(|h| (h.name.as_str(), h.fabric.as_str())),
    );
    let table: BTreeMap<&str, [String; 2]> = job
        .hosts
        .iter()
        .map(|h| {
            let share = match shares.get(h.name.as_str()) {
                Some(share) => format!("--fabric-share {share}"),
                None => String::new(),
            };
            (h.name.as_str(), [h.fabric.clone(), share])
        })
        .collect();
    // A JSON object of strings is a valid Jinja dict literal (names hold no escapes).
    let table = serde_json::to_string(&table).expect("table serializes");
    let mut words = vec![shell_quote(program)];
    for a in argv {
        words.push(shell_quote(&a.to_string_lossy()));
    }
    words.push(SHARE_EXPR.to_string());
    format!("{{% set {TABLE} = {table} %}}{}", words.join(" "))
}

/// The `cmd.run` environment of a job: each host's credential under
/// `TOKEN_ENV_PREFIX<host>` (the template renders only the command, so the agent picks its
/// own by name with `--token-env`). Salt publishes a job to every minion under a key they
/// all share, so this keeps credentials off command lines (and `/proc/PID/cmdline`), not
/// away from a minion's root; see docs/SECURITY.md.
pub fn credential_env(job: &Job) -> BTreeMap<String, String> {
    job.hosts
        .iter()
        .map(|h| {
            (
                format!("{TOKEN_ENV_PREFIX}{}", h.name),
                h.credential.clone(),
            )
        })
        .collect()
}

/// The `local_async` lowstate that starts a job's agents, with `env` for the command.
/// With `splay_secs`, each minion delays its run by Salt's splay executor (a delay from
/// the minion id's hash, within the window), as `salt --module-executors='[splay,
/// direct_call]' --executor-opts='{splaytime: N}'` would.
pub fn start_request(
    target: &str,
    command: &str,
    env: &BTreeMap<String, String>,
    splay_secs: Option<u64>,
) -> Value {
    let mut chunk = json!({
        "client": "local_async",
        "tgt": target,
        "tgt_type": "compound",
        "fun": "cmd.run",
        "arg": [command],
        "kwarg": {"template": "jinja", "python_shell": false, "env": env},
    });
    if let Some(s) = splay_secs.filter(|&s| s > 0) {
        chunk["module_executors"] = json!(["splay", "direct_call"]);
        chunk["executor_opts"] = json!({ "splaytime": s });
    }
    json!([chunk])
}

/// The job id and the minions it went to, from a `local_async` answer
/// (`{"return":[{"jid":"2026..","minions":["host-1"]}]}`). `Ok(None)` when no minion
/// matched (salt-api answers `{"return":[{}]}` and assigns no jid).
pub fn parse_start(body: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("local_async answer: {e}"))?;
    let r = &v["return"][0];
    if let Some(msg) = r.as_str() {
        return Err(format!("salt refused the job: {msg}"));
    }
    let Some(obj) = r.as_object() else {
        return Err(format!("local_async answer: {}", excerpt(body)));
    };
    let jid = obj.get("jid").and_then(Value::as_str).unwrap_or("");
    if jid.is_empty() {
        return Ok(None);
    }
    let minions = obj
        .get("minions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string))
        .into_iter()
        .flatten()
        .collect();
    Ok(Some((jid.to_string(), minions)))
}

/// POSIX single quoting where needed (understood by `shlex.split` and `sh`).
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The start of an answer, for error messages (bounded: answers can be pages of HTML).
pub fn excerpt(body: &str) -> String {
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(160) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn job(hosts: &[(&str, &str)], variant: Option<&str>) -> Job {
        Job {
            deployment: "d-1".into(),
            product: "app".into(),
            version: "2".into(),
            variant: variant.map(str::to_string),
            hosts: hosts
                .iter()
                .map(|(n, f)| JobHost {
                    name: (*n).into(),
                    fabric: (*f).into(),
                    credential: format!("agent:{n}:d-1:1:00"),
                })
                .collect(),
            splay_secs: None,
            service: None,
        }
    }

    /// What `AgentCommand::args(job, HOST_EXPR, FABRIC_EXPR)` gives for a job with a
    /// variant and a trusted key.
    fn argv() -> Vec<OsString> {
        [
            "deploy",
            "--server",
            "http://10.0.0.1:7070",
            "--token-env",
            TOKEN_ENV_EXPR,
            "--deployment",
            "d-1",
            "--host",
            HOST_EXPR,
            "--fabric",
            FABRIC_EXPR,
            "--root",
            "/var/lib/instream/{{ grains.id }}",
            "--product",
            "app",
            "--version",
            "2",
            "--variant",
            "12",
            "--trusted-key",
            "/etc/instream/publisher.pub",
        ]
        .into_iter()
        .map(OsString::from)
        .collect()
    }

    #[test]
    fn compound_target_lists_hosts_and_adds_the_variant_grain() {
        let j = job(&[("host-1", "f1"), ("host-2", "f2")], None);
        assert_eq!(compound_target(&j.hosts, None), "L@host-1,host-2");
        assert_eq!(
            compound_target(&j.hosts, Some(("osmajorrelease", "12"))),
            "L@host-1,host-2 and G@osmajorrelease:12"
        );
    }

    #[test]
    fn command_template_renders_per_host_words_from_one_table() {
        let j = job(&[("h3", "f1"), ("h1", "f1"), ("x9", "f2")], Some("12"));
        assert_eq!(
            command_template("/opt/instream/bin/instream-peer", &argv(), &j),
            "{% set instream = {\"h1\":[\"f1\",\"--fabric-share 0/2\"],\
\"h3\":[\"f1\",\"--fabric-share 1/2\"],\"x9\":[\"f2\",\"\"]} %}\
/opt/instream/bin/instream-peer deploy --server http://10.0.0.1:7070 \
--token-env 'INSTREAM_AGENT_TOKEN_{{ grains.id }}' --deployment d-1 --host '{{ grains.id }}' \
--fabric '{{ instream[grains.id][0] }}' --root '/var/lib/instream/{{ grains.id }}' \
--product app --version 2 --variant 12 --trusted-key /etc/instream/publisher.pub \
{{ instream[grains.id][1] }}"
        );
    }

    #[test]
    fn quoting_survives_spaces_quotes_and_empty_words() {
        assert_eq!(shell_quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn static_parts_with_jinja_delimiters_are_refused() {
        assert!(check_static("agent", "/usr/bin/instream-peer").is_ok());
        for bad in ["/x/{{y}}", "/x/{%y", "{#"] {
            assert!(check_static("agent", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn login_answer_yields_the_token() {
        let ok = r#"{"return": [{"token": "6d1b7", "expire": 1.7e9, "start": 1.7e9, "user": "instream", "eauth": "sharedsecret", "perms": [".*"]}]}"#;
        assert_eq!(parse_login(ok).unwrap(), "6d1b7");
        assert!(parse_login(r#"{"return": [{}]}"#).is_err());
        assert!(parse_login("<html>401</html>").is_err());
    }

    #[test]
    fn grains_answer_becomes_sorted_hosts_and_skips_what_cannot_be_a_host() {
        let body = r#"{"return": [{
            "host-2": {"fabric": "f2", "osmajorrelease": 12},
            "host-1": {"fabric": "f1", "osmajorrelease": "12"},
            "down-1": false,
            "nofab": {"fabric": "", "osmajorrelease": 12},
            "bad id": {"fabric": "f1", "osmajorrelease": 12},
            "novar": {"fabric": "f1", "osmajorrelease": ["x"]}
        }]}"#;
        let (hosts, skipped) = parse_grains(body, "fabric", "osmajorrelease").unwrap();
        let g12: BTreeMap<String, String> = [("osmajorrelease".into(), "12".into())].into();
        assert_eq!(
            hosts,
            vec![
                HostInfo {
                    name: "host-1".into(),
                    fabric: "f1".into(),
                    grains: g12.clone(),
                },
                HostInfo {
                    name: "host-2".into(),
                    fabric: "f2".into(),
                    grains: g12,
                },
                HostInfo {
                    name: "novar".into(),
                    fabric: "f1".into(),
                    grains: BTreeMap::new(),
                },
            ]
        );
        let mut skipped: Vec<&str> = skipped.iter().map(|(id, _)| id.as_str()).collect();
        skipped.sort_unstable();
        assert_eq!(skipped, ["bad id", "down-1", "nofab"]);
        assert!(parse_grains(r#"{"return": ["denied"]}"#, "fabric", "x").is_err());
        assert!(parse_grains("not json", "fabric", "x").is_err());
    }

    #[test]
    fn start_request_and_answer() {
        let j = job(&[("h1", "f1"), ("h2", "f1")], None);
        let env = credential_env(&j);
        let splayed = start_request("L@h1", "cmd", &env, Some(30));
        assert_eq!(
            splayed[0]["module_executors"],
            json!(["splay", "direct_call"])
        );
        assert_eq!(splayed[0]["executor_opts"], json!({"splaytime": 30}));
        let req = start_request("L@h1", "cmd", &env, None);
        assert!(req[0].get("module_executors").is_none(), "{req}");
        assert_eq!(req[0]["client"], "local_async");
        assert_eq!(req[0]["tgt_type"], "compound");
        assert_eq!(req[0]["fun"], "cmd.run");
        assert_eq!(req[0]["arg"], json!(["cmd"]));
        assert_eq!(req[0]["kwarg"]["template"], "jinja");
        assert_eq!(
            req[0]["kwarg"]["env"],
            json!({"INSTREAM_AGENT_TOKEN_h1": "agent:h1:d-1:1:00", "INSTREAM_AGENT_TOKEN_h2": "agent:h2:d-1:1:00"})
        );
        let ok =
            r#"{"return": [{"jid": "20261125073101123456", "minions": ["host-1", "host-2"]}]}"#;
        assert_eq!(
            parse_start(ok).unwrap(),
            Some((
                "20261125073101123456".to_string(),
                vec!["host-1".to_string(), "host-2".to_string()]
            ))
        );
        assert_eq!(parse_start(r#"{"return": [{}]}"#).unwrap(), None);
        assert!(
            parse_start(r#"{"return": ["Failed to authenticate"]}"#)
                .unwrap_err()
                .contains("Failed to authenticate")
        );
        assert!(parse_start("[]").is_err());
    }

    #[test]
    fn excerpt_is_one_bounded_line() {
        assert_eq!(excerpt("a\n  b"), "a b");
        let long = "x".repeat(500);
        assert_eq!(excerpt(&long).len(), 163);
    }
}
