"""dbjob.py - the DataBuild job protocol for the example pipeline's jobs.

A job is one executable run in two ways (argv only, never through a shell):

  <job> config REF...   print a JobConfigureResponse as JSON on stdout:
                        {"configs": [{"outputs": [{"str": REF}],
                                      "inputs": [{"dep_type_code": 1, "partition_ref": {"str": IN}}],
                                      "args": [...], "env": {...}}]}
                        exit non-zero (reason on stderr) when a ref is not valid
  <job> exec ARGS...    build the partitions of one config (ARGS = its "args");
                        each stdout line becomes a job log entry, a line that is a
                        JSON {"name": .., "value": ..} becomes a metric

A job module defines configure(ref) -> config dict and execute(args) -> exit
code, and calls run(configure, execute). Partitions live under $DATA_DIR (the
job's `env` in databuild.yaml; relative paths are relative to the job
service's working directory): a partition ref is a directory, e.g.
$DATA_DIR/raw/reviews/date=2025-01-01/reviews.jsonl. Outputs are written to a
temporary file and renamed into place, so a partial output never appears.
"""
import json
import os
import sys

MATERIALIZE = 1
EX_USAGE = 2
EX_TEMPFAIL = 75  # listed in transient_exit_codes: retried as a transient failure


class ConfigError(Exception):
    """A ref the job cannot configure (the message goes to stderr)."""


def data_dir():
    return os.environ.get("DATA_DIR") or "var/data"


def partition_path(ref, name):
    """$DATA_DIR/<ref>/<name>."""
    return os.path.join(data_dir(), ref, name)


def materialize(ref):
    return {"dep_type_code": MATERIALIZE, "dep_type_name": "materialize", "partition_ref": {"str": ref}}


def config(ref, inputs, args, env=None):
    return {"outputs": [{"str": ref}], "inputs": [materialize(i) for i in inputs],
            "args": list(args), "env": dict(env or {})}


def log(msg):
    print(msg, flush=True)


def metric(name, value, unit="", **labels):
    point = {"name": name, "value": value}
    if unit:
        point["unit"] = unit
    if labels:
        point["labels"] = {k: str(v) for k, v in labels.items()}
    print(json.dumps(point), flush=True)


def write_atomic(path, text):
    """Write text to path via a temporary file in the same directory + rename."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_input(ref, name):
    """Open an input partition's file, failing clearly when it is missing."""
    path = partition_path(ref, name)
    try:
        return open(path, encoding="utf-8")
    except FileNotFoundError:
        print("input %s is missing: %s does not exist" % (ref, path), file=sys.stderr)
        sys.exit(1)


def parse_args(args, names):
    """--name VALUE pairs -> dict; exits with a usage error on anything else."""
    out = {}
    it = iter(args)
    for a in it:
        key = a[2:] if a.startswith("--") else None
        if key not in names:
            print("exec: unexpected argument %r" % a, file=sys.stderr)
            sys.exit(EX_USAGE)
        try:
            out[key] = next(it)
        except StopIteration:
            print("exec: %s needs a value" % a, file=sys.stderr)
            sys.exit(EX_USAGE)
    missing = [n for n in names if n not in out]
    if missing:
        print("exec: missing --%s" % missing[0], file=sys.stderr)
        sys.exit(EX_USAGE)
    return out


def run(configure, execute):
    argv = sys.argv[1:]
    prog = os.path.basename(sys.argv[0])
    if not argv or argv[0] not in ("config", "exec"):
        print("usage: %s config REF... | exec ARGS..." % prog, file=sys.stderr)
        sys.exit(EX_USAGE)
    if argv[0] == "config":
        if len(argv) < 2:
            print("%s config: no refs given" % prog, file=sys.stderr)
            sys.exit(EX_USAGE)
        try:
            configs = [configure(ref) for ref in argv[1:]]
        except ConfigError as e:
            print("%s: %s" % (prog, e), file=sys.stderr)
            sys.exit(1)
        json.dump({"configs": configs}, sys.stdout)
        sys.stdout.write("\n")
        return
    sys.exit(execute(argv[1:]) or 0)
