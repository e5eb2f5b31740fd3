#!/usr/bin/env python3
"""Stand-in for `instream-peer deploy` in the control-server tests that need hosts which
misbehave on purpose (never answer, ...); every other whole-system test runs the real agent.
Takes the same command line (agent/contract/src/args.rs AgentArgs), reports downloading ->
verifying -> installing -> success|failure to the control server, and records what it
"installed" under its root.

Behaviour per host, from the environment the test gave `instream serve` (agents inherit it):
  FAKE_AGENT_FAIL=h1,h2    these hosts fail ("health check failed on <host>")
  FAKE_AGENT_SILENT=h3     these hosts never report
  FAKE_AGENT_DUP=1         every event batch is sent twice
  FAKE_AGENT_GATE=FILE     wait (up to 120 s) for FILE to exist before the final report
Files under --root: `current` (active version), `history` (one line per activation),
`downloads` (one line per version fetched; none when the version is already on disk).
Posts are retried every 0.2 s for up to 120 s, so agents outlive a control-server restart.
"""
import json, os, sys, time, urllib.request, urllib.error

def arg(name, default=None):
    argv = sys.argv
    if name in argv:
        return argv[argv.index(name) + 1]
    return default

assert "deploy" in sys.argv, sys.argv
server, token_file = arg("--server"), arg("--token-file")
dep, host, fabric = arg("--deployment"), arg("--host"), arg("--fabric")
root, product, version = arg("--root"), arg("--product"), arg("--version")
token = open(token_file).read().strip()
os.makedirs(root, exist_ok=True)
env_list = lambda k: [x for x in os.environ.get(k, "").split(",") if x]

def post(events):
    body = json.dumps({"events": events}).encode()
    deadline = time.time() + 120
    while True:
        req = urllib.request.Request(server + "/api/v1/events", data=body, method="POST",
                                     headers={"Authorization": "Bearer " + token,
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.time() > deadline:
            sys.exit("gave up posting to " + server)
        time.sleep(0.2)

seq = 0
def report(state, reason=None, nbytes=0):
    global seq
    seq += 1
    ev = {"deployment": dep, "host": host, "fabric": fabric, "seq": seq, "state": state,
          "bytes": nbytes, "timestamp": int(time.time() * 1000)}
    if reason:
        ev["reason"] = reason
    post([ev])
    if os.environ.get("FAKE_AGENT_DUP") == "1":
        post([ev])

if host in env_list("FAKE_AGENT_SILENT"):
    sys.exit(0)

versions = os.path.join(root, "versions")
os.makedirs(versions, exist_ok=True)
on_disk = os.path.isdir(os.path.join(versions, version))
if not on_disk:
    report("downloading", nbytes=0)
    with open(os.path.join(root, "downloads"), "a") as f:
        f.write(version + "\n")
    report("verifying", nbytes=1000)
    os.makedirs(os.path.join(versions, version), exist_ok=True)
report("installing", nbytes=0 if on_disk else 1000)

gate = os.environ.get("FAKE_AGENT_GATE")
if gate:
    deadline = time.time() + 120
    while not os.path.exists(gate) and time.time() < deadline:
        time.sleep(0.1)

if host in env_list("FAKE_AGENT_FAIL"):
    report("failure", reason="health check failed on " + host)
    sys.exit(0)
with open(os.path.join(root, "current.tmp"), "w") as f:
    f.write(version)
os.replace(os.path.join(root, "current.tmp"), os.path.join(root, "current"))
with open(os.path.join(root, "history"), "a") as f:
    f.write(version + "\n")
report("success")
