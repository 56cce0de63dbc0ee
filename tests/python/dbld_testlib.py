"""dbld_testlib - helpers for the independent Python client tests.

These tests talk to the real service binaries with the stock Python gRPC
stack (python3-grpcio), using stubs generated at run time from proto/ by the
system protoc and grpc_python_plugin, so they check the wire contract without
any of the project's C code on the client side.

Environment (set by ctest, see CMakeLists.txt):
  DBLD_BIN_DIR     directory holding databuild-eventlog etc.
  DBLD_SOURCE_DIR  the source tree (for proto/)
  DBLD_TEST_PG     libpq conninfo of a PostgreSQL superuser; when unset a
                   temporary cluster is started (initdb, like the C harness)
  DBLD_TEST_PGBIN  directory with initdb/pg_ctl (default: newest
                   /usr/lib/postgresql/*/bin)
  DBLD_TEST_PG_RUNAS  unix user for PostgreSQL when running as root
                   (default "databuild")

Every subprocess is started with an argv list, never through a shell.
"""

import glob
import importlib
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

SOURCE_DIR = os.environ.get("DBLD_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN_DIR = os.environ.get("DBLD_BIN_DIR") or os.path.join(SOURCE_DIR, "build")


_given_ports = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def free_port():
    """A port to listen on that is free now. Taken below the kernel's
    ephemeral range when there is room (a port bind(0) hands out is also
    where the kernel puts outgoing connections, which took one between this
    check and a service's bind), never one this process gave before."""
    low = _ephemeral_low()
    for _ in range(200):
        if low > 11000:
            port = random.randrange(10000, low)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        if port in _given_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    raise RuntimeError("no free port found")


def unique_name(prefix):
    """A fresh identifier of [a-z0-9_] only."""
    return "%s_%d_%s" % (prefix, os.getpid(), secrets.token_hex(4))


# ---------------------------------------------------------------- stubs

def generate_stubs(out_dir):
    """Generate Python modules for databuild.proto, databuild_ext.proto and
    grpc.health.v1 into out_dir and put it on sys.path. Returns a namespace
    with pb, ext, ext_grpc, health, health_grpc, proc (databuild_process.proto)."""
    plugin = shutil.which("grpc_python_plugin")
    protoc = shutil.which("protoc")
    if not plugin or not protoc:
        raise RuntimeError("need protoc and grpc_python_plugin "
                           "(packages protobuf-compiler, protobuf-compiler-grpc)")
    proto_dir = os.path.join(SOURCE_DIR, "proto")
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run([protoc, "-I", proto_dir, "--python_out=" + out_dir,
                    "--grpc_out=" + out_dir, "--plugin=protoc-gen-grpc=" + plugin,
                    "databuild.proto", "databuild_exec.proto", "databuild_ext.proto",
                    "databuild_process.proto"], check=True)
    # health.proto lives under grpc/...; generating it there would shadow the
    # grpc package, so it is compiled from its own directory (the wire names
    # come from its package, grpc.health.v1, not from the file path).
    subprocess.run([protoc, "-I", os.path.join(proto_dir, "grpc", "health", "v1"),
                    "--python_out=" + out_dir, "--grpc_out=" + out_dir,
                    "--plugin=protoc-gen-grpc=" + plugin, "health.proto"], check=True)
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)

    class Stubs:
        pb = importlib.import_module("databuild_pb2")
        ext = importlib.import_module("databuild_ext_pb2")
        ext_grpc = importlib.import_module("databuild_ext_pb2_grpc")
        health = importlib.import_module("health_pb2")
        health_grpc = importlib.import_module("health_pb2_grpc")
        proc = importlib.import_module("databuild_process_pb2")
    return Stubs


# ------------------------------------------------------------ PostgreSQL

def _pg_bin():
    d = os.environ.get("DBLD_TEST_PGBIN")
    if d:
        return d
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise RuntimeError("no PostgreSQL: set DBLD_TEST_PGBIN or install postgresql")
    return os.path.dirname(found[-1])


def _pg_user():
    if os.geteuid() != 0:
        return None
    user = os.environ.get("DBLD_TEST_PG_RUNAS") or "databuild"
    try:
        pwd.getpwnam(user)
    except KeyError:
        if user != "databuild":
            raise
        subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", user], check=True)
    return user


def _as_pg(argv):
    user = _pg_user()
    return (["runuser", "-u", user, "--"] + argv) if user else argv


class TempCluster:
    """initdb + pg_ctl in a temporary directory, on a free port."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dbld-pytest-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        user = _pg_user()
        if user:
            pw = pwd.getpwnam(user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        bin_dir = _pg_bin()
        with open(self.log, "ab") as log:
            if user:
                os.chown(self.log, pw.pw_uid, pw.pw_gid)
            subprocess.run(_as_pg([os.path.join(bin_dir, "initdb"), "-A", "trust", "-U",
                                   "databuild", "-E", "UTF8", "--locale=C", "-N", "-D",
                                   self.data]),
                           stdout=log, stderr=log, check=True, cwd="/")
        self.port = free_port()
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write("\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                       "port = %d\nfsync = off\nmax_connections = 200\n" % self.port)
        with open(self.log, "ab") as log:
            subprocess.run(_as_pg([os.path.join(bin_dir, "pg_ctl"), "-D", self.data, "-l",
                                   self.log, "-w", "-t", "60", "start"]),
                           stdout=log, stderr=log, check=True, cwd="/")
        self.dsn = "host=127.0.0.1 port=%d user=databuild dbname=postgres" % self.port

    def destroy(self):
        with open(self.log, "ab") as log:
            subprocess.run(_as_pg([os.path.join(_pg_bin(), "pg_ctl"), "-D", self.data, "-m",
                                   "immediate", "-w", "stop"]),
                           stdout=log, stderr=log, cwd="/")
        shutil.rmtree(self.dir, ignore_errors=True)


def dsn_with_db(dsn, dbname):
    if dsn.startswith("postgres://") or dsn.startswith("postgresql://"):
        u = urllib.parse.urlsplit(dsn)
        return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + dbname, u.query, u.fragment))
    # key=value conninfo: a repeated keyword takes its last value
    return "%s dbname=%s" % (dsn, dbname)


def psql(dsn, sql):
    """Run one SQL command with psql; returns stdout (unaligned, tuples only)."""
    r = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("psql failed (%d): %s" % (r.returncode, r.stderr.strip()))
    return r.stdout


class Database:
    """A fresh database with a generated name on the server behind server_dsn."""

    def __init__(self, server_dsn, hint):
        self.server_dsn = server_dsn
        self.name = unique_name("dbld_py_" + hint)
        if not re.fullmatch(r"[a-z0-9_]{1,63}", self.name):
            raise ValueError("bad database name " + self.name)
        psql(server_dsn, 'CREATE DATABASE "%s"' % self.name)
        self.dsn = dsn_with_db(server_dsn, self.name)

    def drop(self):
        psql(self.server_dsn, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.name)


def postgres():
    """(server_dsn, cluster or None): DBLD_TEST_PG, or a temporary cluster."""
    dsn = os.environ.get("DBLD_TEST_PG")
    if dsn:
        return dsn, None
    c = TempCluster()
    return c.dsn, c


# --------------------------------------------------------------- services

def _yaml_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def service_env(sanitizer_prefix):
    """The environment of a spawned service: ours without DATABUILD_*, and
    with sanitizer reports (a `./dev test --asan` build) written to
    sanitizer_prefix.PID instead of stderr, so that stop() can fail on them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABUILD_")}
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        env[var] = ":".join(o for o in (env.get(var, ""), "log_path=" + sanitizer_prefix) if o)
    return env


def sanitizer_reports(sanitizer_prefix):
    """The text of every sanitizer report a service wrote (see service_env)."""
    out = []
    for path in sorted(glob.glob(glob.escape(sanitizer_prefix) + ".*")):
        with open(path, errors="replace") as f:
            out.append("--- %s ---\n%s" % (path, f.read()))
    return out


class Service:
    """A service binary started with a YAML config, stderr to a log file; the
    services other than the event log reach it at eventlog_addr when given;
    extra_yaml (other top-level sections) is appended to the config.
    stop() raises when the process wrote a sanitizer report."""

    def __init__(self, kind, dsn, workdir, workers=4, peers=None, shared_extra=(), extra=(),
                 port=None, eventlog_addr=None, extra_yaml=""):
        """peers: {service: addr} for shared.peers (eventlog_addr: the event
        log's alone); shared_extra: YAML lines (indented 2) added to the shared
        section; extra: YAML lines added at the end of the service's own
        section (or other sections after it); extra_yaml: text appended to the
        config (other top-level sections)."""
        self.kind = kind
        self.port = port or free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.config = os.path.join(workdir, "%s-%d.yaml" % (kind, self.port))
        self.log_path = os.path.join(workdir, "%s-%d.log" % (kind, self.port))
        lines = [
            "shared:",
            "  postgres_dsn: " + _yaml_quote(dsn),
            "  log_level: debug",
        ]
        peers = dict(peers or {})
        if eventlog_addr:
            peers["eventlog"] = eventlog_addr
        if kind == "eventlog":
            peers["eventlog"] = self.addr
        if peers:
            lines += ["  peers:"] + ["    %s: %s" % (k, _yaml_quote(v)) for k, v in peers.items()]
        lines += list(shared_extra)
        lines += [
            kind + ":",
            "  listen: " + _yaml_quote(self.addr),
            "  workers: %d" % workers,
        ]
        lines += list(extra)
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n" + extra_yaml)
        binary = os.path.join(BIN_DIR, "databuild-" + kind)
        if not os.access(binary, os.X_OK):
            raise RuntimeError("service binary %s missing (build first)" % binary)
        self.sanitizer_prefix = os.path.join(workdir, "sanitizer-%s-%d" % (kind, self.port))
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([binary, "--config", self.config], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log,
                                     env=service_env(self.sanitizer_prefix))

    def wait_serving(self, check, timeout=20.0):
        """check(service_name) -> status enum; polls until SERVING."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %d:\n%s" % (self.kind, self.proc.returncode,
                                                               self.log_text()))
            try:
                last = check("")
                if last == 1:  # SERVING
                    return
            except Exception as e:  # not listening yet
                last = e
            time.sleep(0.05)
        raise RuntimeError("%s not SERVING after %.0f s (last: %r):\n%s" %
                           (self.kind, timeout, last, self.log_text()))

    def stop(self, timeout=30.0):
        """SIGTERM and wait; returns the exit code. Raises AssertionError
        when the service wrote a sanitizer report (leaks are reported at exit)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        reports = sanitizer_reports(self.sanitizer_prefix)
        if reports:
            raise AssertionError("databuild-%s wrote a sanitizer report:\n%s" %
                                 (self.kind, "\n".join(reports)))
        return self.proc.returncode

    def log_text(self, limit=20000):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()[-limit:]
        except OSError:
            return ""
