#!/usr/bin/env python3
"""graph_job.py - a job binary for the graph service's integration tests.

  graph_job.py --spec SPEC.json config REF...   print a JobConfigureResponse as JSON
  graph_job.py --spec SPEC.json exec build REF  build one partition

SPEC.json holds {"state": DIR, "rules": [RULE, ...]}; the first rule whose
"match" regex matches a ref in full applies to it:
  inputs      list of templates expanded with the match (\\1 ...): the ref's inputs
  sleep       seconds exec sleeps before finishing
  exit        exit code of every exec
  fail_times  the first N execs of this ref exit with fail_exit (default 3)
  pidfile     exec writes "<pid> <grandchild pid>" to DIR/pid-<h> (a `sleep 1000`
              grandchild in the same process group) and "<ppid>" to DIR/ppid-<h>
  config_exit configure exits with this code (stderr says why)
  config_rmdir configure removes its working directory (the job's empty
              working_dir) after printing: every later spawn of the job fails
  query_inputs like inputs, but QUERY dependencies (dep_type_code 0): read,
              not built
  gate        exec waits until the file DIR/<gate> exists (the test opens it),
              polling every 50 ms, after writing DIR/waiting-<h>
  tag         name the ref's state files with this instead of <h>
State, all in DIR (<h> = first 16 hex digits of sha1(ref), or the rule's tag):
  config.log   one line per `config` invocation: the refs, tab-separated
  exec.log     one line per `exec`: the ref
  out-<h>      the ref, exactly as received, written by a successful exec
  attempts-<h> the number of execs of that ref so far
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import time


def h(ref):
    return hashlib.sha1(ref.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def append(path, line):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)


def rule_for(spec, ref):
    for r in spec.get("rules", []):
        m = re.fullmatch(r["match"], ref)
        if m:
            return r, m
    return {}, None


def configure(spec, refs):
    state = spec["state"]
    append(os.path.join(state, "config.log"), "\t".join(refs))
    configs = []
    rmdir = False
    for ref in refs:
        rule, m = rule_for(spec, ref)
        if "config_exit" in rule:
            print("cannot configure %s: told to fail" % ref, file=sys.stderr)
            return rule["config_exit"]
        inputs = [m.expand(t) for t in rule.get("inputs", [])] if m else []
        queries = [m.expand(t) for t in rule.get("query_inputs", [])] if m else []
        rmdir = rmdir or bool(rule.get("config_rmdir"))
        configs.append({
            "outputs": [{"str": ref}],
            "inputs": [{"dep_type_code": 1, "partition_ref": {"str": i}} for i in inputs] +
                      [{"dep_type_code": 0, "partition_ref": {"str": i}} for i in queries],
            "args": ["build", ref],
            "env": {"GRAPH_JOB_REF": ref},
        })
    print(json.dumps({"configs": configs}))
    if rmdir:
        os.rmdir(os.getcwd())
    return 0


def execute(spec, args):
    if len(args) != 2 or args[0] != "build":
        print("bad exec args: %r" % (args,), file=sys.stderr)
        return 2
    ref = args[1]
    state = spec["state"]
    rule, _ = rule_for(spec, ref)
    key = rule.get("tag") or h(ref)
    append(os.path.join(state, "exec.log"), ref)
    n_path = os.path.join(state, "attempts-" + key)
    try:
        with open(n_path) as f:
            n = int(f.read().strip() or "0")
    except FileNotFoundError:
        n = 0
    n += 1
    with open(n_path, "w") as f:
        f.write(str(n))
    print("building %s (attempt %d)" % (ref, n))
    if rule.get("pidfile"):
        child = subprocess.Popen(["sleep", "1000"])
        with open(os.path.join(state, "ppid-" + key), "w") as f:
            f.write(str(os.getppid()))
        tmp = os.path.join(state, "pid-" + key + ".tmp")
        with open(tmp, "w") as f:
            f.write("%d %d" % (os.getpid(), child.pid))
        os.rename(tmp, os.path.join(state, "pid-" + key))
    if rule.get("gate"):
        append(os.path.join(state, "waiting-" + key), ref)
        while not os.path.exists(os.path.join(state, rule["gate"])):
            time.sleep(0.05)
    if rule.get("sleep"):
        time.sleep(float(rule["sleep"]))
    if rule.get("fail_times") and n <= int(rule["fail_times"]):
        print("failing on purpose (attempt %d)" % n, file=sys.stderr)
        return int(rule.get("fail_exit", 3))
    if rule.get("exit"):
        print("exiting %d on purpose" % rule["exit"], file=sys.stderr)
        return int(rule["exit"])
    with open(os.path.join(state, "out-" + key), "wb") as f:
        f.write(ref.encode("utf-8", "surrogateescape"))
    return 0


def main(argv):
    if len(argv) < 3 or argv[0] != "--spec":
        print("usage: graph_job.py --spec SPEC.json config|exec ...", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        spec = json.load(f)
    if argv[2] == "config":
        return configure(spec, argv[3:])
    if argv[2] == "exec":
        return execute(spec, argv[3:])
    print("unknown mode %r" % argv[2], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
