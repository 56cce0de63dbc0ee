#!/usr/bin/env python3
"""testjob.py - a job binary for the job service's integration tests.

Protocol (as every DataBuild job):
  testjob.py [--config-mode=MODE] config REF...   print a JobConfigureResponse as JSON
  testjob.py [--config-mode=MODE] exec ACTION...  run a task

Config modes (chosen by the job's command in the YAML file):
  ok        one config per ref: outputs [ref], inputs [up/<ref> (MATERIALIZE)],
            args ["ok", ref], env {"JOB_REF": ref}
  garbage   prints something that is not JSON, exits 0
  fail      prints a few stderr lines, exits 3
  partial   configures only the first ref
  noisy     as ok, with args ["noisy", "40", "300", "66000", "3"]
  ldpreload as ok, with LD_PRELOAD in env too (which the job service must refuse)
If $ARGV_DUMP is set, `config` writes its argv there (NUL-separated) first.

Exec actions (the task's args):
  ok REF                 stdout/stderr lines, a JSON log line, a metric line, exit 0
  exit N                 30 numbered stderr lines, exit N
  sleep SECS PIDFILE     start a grandchild `sleep 1000`, write "<pid> <grandchild pid>" to
                         PIDFILE, sleep SECS (add "ignore-term" to ignore SIGTERM, grandchild too)
  stamp FILE SECS        write "<start_ns>" to FILE, sleep SECS, append " <end_ns>"
  argv FILE ARG...       write the whole argv, NUL-separated, to FILE
  env FILE               write the environment (KEY=VALUE lines) to FILE
  ids FILE               write "<uid> <euid> <gid> <egid> <groups...>" to FILE
  lines N                print N numbered stdout lines
  biglog N WIDTH         N stdout lines of WIDTH bytes, then an error-level JSON line
                         whose field "big" holds 20000 bytes
  noisy N WIDTH LONG EXIT  N stderr lines "noise line <i>" padded to WIDTH bytes, then a last
                         line of LONG bytes of "z" followed by " the last line", exit EXIT
"""
import json
import os
import signal
import subprocess
import sys
import time


def dump_argv(path):
    with open(path, "wb") as f:
        f.write(b"\0".join(os.fsencode(a) for a in sys.argv))


def configure(mode, refs):
    if os.environ.get("ARGV_DUMP"):
        dump_argv(os.environ["ARGV_DUMP"] + ".config")
    if mode == "garbage":
        print("this is not json {")
        return 0
    if mode == "fail":
        for i in range(1, 4):
            print("config problem %d" % i, file=sys.stderr)
        print("cannot configure: upstream table missing", file=sys.stderr)
        return 3
    if mode == "partial":
        refs = refs[:1]
    args = ["noisy", "40", "300", "66000", "3"] if mode == "noisy" else None
    configs = []
    for r in refs:
        env = {"JOB_REF": r}
        if mode == "ldpreload":
            env["LD_PRELOAD"] = "/nonexistent/databuild-test.so"
        configs.append({
            "outputs": [{"str": r}],
            "inputs": [{"dep_type_code": 1, "partition_ref": {"str": "up/" + r}}],
            "args": args or ["ok", r],
            "env": env,
        })
    print(json.dumps({"configs": configs}))
    return 0


def execute(args):
    action = args[0] if args else "ok"
    if action == "ok":
        ref = args[1] if len(args) > 1 else ""
        print("hello from stdout for %s" % ref, flush=True)
        print("a warning on stderr", file=sys.stderr, flush=True)
        print(json.dumps({"level": "error", "msg": "structured", "k": "v", "n": 3}), flush=True)
        print(json.dumps({"name": "rows", "value": 42, "labels": {"table": "t"}, "unit": "rows"}),
              flush=True)
        print("JOB_REF=%s" % os.environ.get("JOB_REF", ""), flush=True)
        sys.stdout.buffer.write(b"bad \xff\xfe bytes\n")  # not UTF-8
        sys.stdout.buffer.flush()
        time.sleep(float(os.environ.get("OK_SLEEP", "0.35")))
        print("done", flush=True)
        return 0
    if action == "exit":
        for i in range(1, 31):
            print("error line %d" % i, file=sys.stderr)
        sys.stderr.flush()
        return int(args[1])
    if action == "sleep":
        secs, pidfile = float(args[1]), args[2]
        if "ignore-term" in args[3:]:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "1000"])
        tmp = pidfile + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d %d" % (os.getpid(), child.pid))
        os.rename(tmp, pidfile)
        print("sleeping %s s" % secs, flush=True)
        time.sleep(secs)
        return 0
    if action == "stamp":
        path, secs = args[1], float(args[2])
        with open(path, "w") as f:
            f.write("%d" % time.time_ns())
        time.sleep(secs)
        with open(path, "a") as f:
            f.write(" %d" % time.time_ns())
        return 0
    if action == "argv":
        dump_argv(args[1])
        return 0
    if action == "env":
        with open(args[1], "w") as f:
            for k, v in sorted(os.environ.items()):
                f.write("%s=%s\n" % (k, v))
        return 0
    if action == "ids":
        with open(args[1], "w") as f:
            f.write(" ".join(str(i) for i in [os.getuid(), os.geteuid(), os.getgid(),
                                              os.getegid()] + sorted(os.getgroups())))
        return 0
    if action == "noisy":
        n, width, long_len, code = (int(a) for a in args[1:5])
        for i in range(1, n + 1):
            print(("noise line %d " % i).ljust(width, "."), file=sys.stderr)
        print("z" * long_len + " the last line", file=sys.stderr)
        sys.stderr.flush()
        return code
    if action == "biglog":
        n, width = int(args[1]), int(args[2])
        for i in range(1, n + 1):
            sys.stdout.write(("big line %d " % i).ljust(width, "x") + "\n")
        print(json.dumps({"level": "error", "msg": "big field", "big": "y" * 20000}))
        sys.stdout.flush()
        return 0
    if action == "lines":
        for i in range(1, int(args[1]) + 1):
            print("line %d" % i)
        return 0
    print("unknown action %r" % action, file=sys.stderr)
    return 2


def main():
    argv = sys.argv[1:]
    mode = "ok"
    while argv and argv[0].startswith("--config-mode="):
        mode = argv[0].split("=", 1)[1]
        argv = argv[1:]
    if not argv:
        print("usage: testjob.py [--config-mode=M] config REF... | exec ARGS...", file=sys.stderr)
        return 2
    if argv[0] == "config":
        return configure(mode, argv[1:])
    if argv[0] == "exec":
        return execute(argv[1:])
    print("unknown command %r" % argv[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
