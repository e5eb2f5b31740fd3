//! The one playbook a job runs and how its output is read, pure.
//!
//! The playbook is fixed text; everything per job goes in an extra-vars file: each host's
//! agent argv (the `command` module's `argv`, so nothing is ever parsed by a shell) and its
//! credential, which reaches the agent through the task's `environment`, never its command
//! line. `async` with `poll: 0` makes Ansible only launch the agent and hand back a job id
//! per host (`ansible_job_id`); status comes back through the agents' reports, as under
//! Salt. Output comes from the `minimal` stdout callback (built into ansible-core):
//! `HOST | STATUS => {json}` per host.

use serde_json::{Value, json};

/// The variable the agent finds its credential in (`instream-peer deploy --token-env`).
pub const TOKEN_ENV: &str = "INSTREAM_AGENT_TOKEN";

pub const PLAYBOOK: &str = r#"# Written by instream for one job: launches the host agent on every host of the limit,
# asynchronously (status comes back through the agents' own reports).
- name: instream agent
  hosts: all
  gather_facts: false
  tasks:
    - name: instream-peer deploy
      ansible.builtin.command:
        argv: "{{ instream_hosts[inventory_hostname].argv }}"
      environment:
        INSTREAM_AGENT_TOKEN: "{{ instream_hosts[inventory_hostname].token }}"
        INSTREAM_KAFKA_OPTIONS: "{{ instream_kafka_options }}"
      async: "{{ instream_async_secs }}"
      poll: 0
"#;

/// One host of a job as the playbook sees it.
pub struct PlayHost<'a> {
    pub name: &'a str,
    pub argv: Vec<String>,
    pub token: &'a str,
}

/// The extra vars of one job (`-e @FILE`): holds credentials, so its file is 0600.
/// `kafka_options` goes to the agents' `INSTREAM_KAFKA_OPTIONS` (see `local::KAFKA_OPTIONS_ENV`).
pub fn extra_vars(hosts: &[PlayHost<'_>], async_secs: u64, kafka_options: &str) -> String {
    let mut per_host = serde_json::Map::new();
    for h in hosts {
        per_host.insert(
            h.name.to_string(),
            json!({"argv": h.argv, "token": h.token}),
        );
    }
    json!({
        "instream_hosts": per_host,
        "instream_async_secs": async_secs,
        "instream_kafka_options": kafka_options,
    })
    .to_string()
}

/// The `--limit @FILE` contents: one host per line.
pub fn limit_file(hosts: &[PlayHost<'_>]) -> String {
    let mut s = String::new();
    for h in hosts {
        s.push_str(h.name);
        s.push('\n');
    }
    s
}

/// What Ansible said about one host's launch.
#[derive(Debug, PartialEq, Eq)]
pub enum Launch {
    /// Running in the background under this async job id.
    Started(String),
    /// Not started (unreachable, module failure): Ansible's message.
    Failed(String),
}

/// Reads the `minimal` callback's output: `HOST | STATUS => {` ... `}` blocks.
pub fn parse_launches(stdout: &str) -> Vec<(String, Launch)> {
    let mut out = Vec::new();
    let mut lines = stdout.lines();
    while let Some(line) = lines.next() {
        let Some((head, rest)) = line.split_once(" => ") else {
            continue;
        };
        let Some((host, status)) = head.split_once(" | ") else {
            continue;
        };
        let mut body = rest.to_string();
        if rest.trim_end() == "{" {
            for l in lines.by_ref() {
                body.push('\n');
                body.push_str(l);
                if l == "}" {
                    break;
                }
            }
        }
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let jid = v.get("ansible_job_id").and_then(Value::as_str);
        let launch = match (status.trim(), jid) {
            ("CHANGED" | "SUCCESS", Some(j)) => Launch::Started(j.to_string()),
            (s, _) => {
                let msg = v
                    .get("msg")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| body.chars().take(200).collect());
                Launch::Failed(format!("{}: {}", s.trim_end_matches('!'), first_line(&msg)))
            }
        };
        out.push((host.trim().to_string(), launch));
    }
    out
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_started_and_failed_hosts_of_the_minimal_callback() {
        let out = "host-1 | CHANGED => {\n    \"ansible_job_id\": \"j605401627574.21577\",\n    \"changed\": true,\n    \"finished\": false,\n    \"started\": true\n}\nhost-2 | UNREACHABLE! => {\n    \"changed\": false,\n    \"msg\": \"Failed to connect to the host via ssh: no route\\nmore\",\n    \"unreachable\": true\n}\nhost-3 | FAILED! => {\n    \"msg\": \"Module result deserialization failed\"\n}\n";
        assert_eq!(
            parse_launches(out),
            [
                (
                    "host-1".to_string(),
                    Launch::Started("j605401627574.21577".into())
                ),
                (
                    "host-2".to_string(),
                    Launch::Failed(
                        "UNREACHABLE: Failed to connect to the host via ssh: no route".into()
                    )
                ),
                (
                    "host-3".to_string(),
                    Launch::Failed("FAILED: Module result deserialization failed".into())
                ),
            ]
        );
        assert!(parse_launches("[WARNING]: something\n").is_empty());
    }

    #[test]
    fn vars_carry_each_hosts_argv_and_credential() {
        let hosts = [
            PlayHost {
                name: "h1",
                argv: vec!["/bin/agent".into(), "deploy".into()],
                token: "t1",
            },
            PlayHost {
                name: "h2",
                argv: vec!["/bin/agent".into(), "a b".into()],
                token: "t2",
            },
        ];
        let v: Value =
            serde_json::from_str(&extra_vars(&hosts, 600, "sasl.mechanism=PLAIN")).unwrap();
        assert_eq!(v["instream_hosts"]["h2"]["argv"][1], "a b");
        assert_eq!(v["instream_hosts"]["h1"]["token"], "t1");
        assert_eq!(v["instream_async_secs"], 600);
        assert_eq!(limit_file(&hosts), "h1\nh2\n");
        assert!(PLAYBOOK.contains(TOKEN_ENV));
        assert_eq!(v["instream_kafka_options"], "sasl.mechanism=PLAIN");
        assert!(PLAYBOOK.contains(crate::dispatch::local::KAFKA_OPTIONS_ENV));
    }
}
