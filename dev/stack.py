"""The whole system on one machine: a search engine node (when none answers), the router,
Beater and Tailor, as child processes. ``make up`` runs it; the tests use it too.

This is a launcher, not a reactor process: it blocks while it waits for its children.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from router.configure import configure, origins, permission

ROOT = Path(__file__).resolve().parent.parent

# The browser the page is tested and measured in: Debian's Chromium (`make browser`), headless.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without these, Chromium keeps calling home, and this machine refuses every such connection.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The local search engine nodes this repository can start: Maven module, launcher class.
ENGINES = {
    "opensearch": (ROOT / "engine", "estrom.engine.EngineNode"),
    "elasticsearch7": (ROOT / "engine" / "elasticsearch7", "estrom.engine.es7.Es7Node"),
}


ENGINE_NAMES = {"opensearch": "OpenSearch 2.19", "elasticsearch7": "Elasticsearch 7.17"}


@dataclass
class Ports:
    engine: int = 9200
    router: int = 8080
    beater: int = 8070
    tailor: int = 8090


@dataclass
class Stack:
    """The processes of one estrom installation, their logs and data under ``workdir``."""

    workdir: Path
    ports: Ports = field(default_factory=Ports)
    engine_url: str | None = None  # None: http://127.0.0.1:<ports.engine>
    engine: str = "opensearch"  # which local node start_engine starts (see ENGINES)
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # Tailor's ticket at the router (role "tailor": the feed); "": Tailors join as readers.
    tailor_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    python: str = sys.executable
    crossbar: str = str(ROOT / ".venv-router" / "bin" / "crossbar")
    java: str = "java"
    # Browser origins ("https://tail.example.com:8443") whose pages may use the router besides its
    # own page; a WebSocket handshake from any other origin is refused.
    allowed_origins: list[str] = field(
        default_factory=lambda: origins(os.environ.get("ESTROM_ALLOWED_ORIGINS"))
    )
    # The ticket of a "watcher" principal that may subscribe to every docs-for-* topic at once
    # (tests and the benchmark count what reaches subscribers); None: there is none.
    watcher: str | None = None
    # More environment for every part started from now on (ESTROM_TOKENS, say).
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # How to tell that each service is ready: URL, path, body to POST (or None: GET), status.
    _probes: dict[str, tuple[str, str, bytes | None, int]] = field(default_factory=dict, repr=False)
    # Where the parts answer, from ``ports``: the router's WebSocket URL (browsers, and clients of
    # the README), its RawSocket URL on the same port (Beater and Tailor), Beater's and Tailor's.
    router_url: str = field(init=False)
    router_rawsocket_url: str = field(init=False)
    beater_url: str = field(init=False)
    tailor_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.engine_url is None:
            self.engine_url = f"http://127.0.0.1:{self.ports.engine}"
        self.router_url = f"ws://127.0.0.1:{self.ports.router}/ws"
        self.router_rawsocket_url = f"rs://127.0.0.1:{self.ports.router}"
        self.beater_url = f"http://127.0.0.1:{self.ports.beater}"
        self.tailor_url = f"http://127.0.0.1:{self.ports.tailor}"

    # --- the parts ------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "ESTROM_ELASTICSEARCH_URL": self.engine_url,
                "ESTROM_ROUTER_URL": self.router_rawsocket_url,
                "ESTROM_BEATER_SECRET": self.secret,
                "ESTROM_TAILOR_SECRET": self.tailor_secret,
                "ESTROM_BEATER_PORT": str(self.ports.beater),
                "ESTROM_TAILOR_PORT": str(self.ports.tailor),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env)
        return env

    def engine_answers(self) -> bool:
        return _get(self.engine_url + "/_cluster/health") is not None

    def start_engine(self, timeout: float = 180) -> None:
        """Start a local search engine node (see engine/) with its data under workdir/engine."""
        if self.engine not in ENGINES:  # "none": an engine elsewhere, which stopped answering
            raise RuntimeError(f"nothing answers at {self.engine_url}, and no local node is to be started")
        module, launcher = ENGINES[self.engine]
        classes = module / "target" / "classes"
        if not classes.is_dir():
            raise RuntimeError(f"the {self.engine} node is not built: run `make engine`")
        classpath = f"{classes}{os.pathsep}{module / 'target' / 'lib' / '*'}"
        self._spawn(
            "engine",
            [
                self.java,
                "-Xms512m",
                "-Xmx1g",
                "-XX:+UseSerialGC",
                "-cp",
                classpath,
                launcher,
                str(self.workdir / "engine"),
                str(self.ports.engine),
            ],
        )
        self._wait(
            "engine",
            lambda: _get(self.engine_url + "/_cluster/health?wait_for_status=yellow&timeout=1s") is not None,
            timeout,
        )

    def start_router(
        self, timeout: float = 60, name: str = "router", config: dict | None = None, port: int | None = None
    ) -> None:
        """Start crossbar with router/.crossbar/config.json, listening on ports.router and also
        accepting WebSocket connections from the browser origins in ``allowed_origins``; or
        another crossbar node, given another ``name`` (its cbdir: workdir/name), its ``config``
        and the ``port`` of a web transport it serves once ready."""
        cbdir = self.workdir / name
        cbdir.mkdir(exist_ok=True)
        (cbdir / "config.json").write_text(json.dumps(config or self.router_config(), indent=2))
        self._spawn(name, [self.crossbar, "start", "--cbdir", str(cbdir), "--loglevel", "warn"])
        port = port or self.ports.router
        self._wait(name, lambda: _status(f"http://127.0.0.1:{port}/") is not None, timeout)
        # After a restart, wait until the running services have reconnected (they back off up
        # to 5 s): the system is up when its clients can use it again.
        for service in self._probes:
            if service in self.processes:
                self._wait(service, partial(self._answers, service), timeout)

    def router_config(self) -> dict:
        """router/.crossbar/config.json as this stack runs it from another cbdir: its ports, the
        page's own origins on that port (plus ``allowed_origins``), absolute paths, and the
        ``watcher`` principal if there is one."""
        source = ROOT / "router" / ".crossbar"
        config = configure(
            json.loads((source / "config.json").read_text()),
            port=self.ports.router,
            allowed_origins=self.allowed_origins,
            cbdir=source,
        )
        if self.watcher:
            for worker in config["workers"]:
                for realm in worker.get("realms", []):
                    realm["roles"].append(_WATCHER_ROLE)
                for component in worker.get("components", []):
                    if component["classname"] == "authorizer.Authorizer":  # it admits principals
                        principals = component.setdefault("extra", {}).setdefault("principals", {})
                        principals["watcher"] = {"ticket": self.watcher, "role": "watcher"}
        return config

    def start_beater(
        self,
        name: str = "beater",
        port: int | None = None,
        module: str = "beater",
        joined: bool = True,
        **env: str,
    ) -> str:
        """Start a Beater (another one, given another ``name`` and ``port``; ``module``: the one
        to run, such as the benchmark's bench.naive); its URL. Back once it is ready, or with
        ``joined=False`` once it answers HTTP (joined to the router or not)."""
        # Ready when it reaches the engine and has joined the router (/readyz).
        env = {"ESTROM_BEATER_PORT": str(port or self.ports.beater), **env}
        probe = "/readyz" if joined else "/healthz"
        return self._start_service(name, module, port or self.ports.beater, env, probe, None, 200)

    def start_tailor(self, name: str = "tailor", port: int | None = None, **env: str) -> str:
        """Start a Tailor (another one, given another ``name`` and ``port``); its URL."""
        # Ready when it has joined the router and a Beater answers it there (/readyz).
        env = {"ESTROM_TAILOR_PORT": str(port or self.ports.tailor), **env}
        return self._start_service(name, "tailor", port or self.ports.tailor, env, "/readyz", None, 200)

    def _start_service(
        self, name: str, module: str, port: int, env: dict, probe: str, body: bytes | None, ready: int
    ) -> str:
        url = f"http://127.0.0.1:{port}"
        self._spawn(name, [self.python, "-m", module], env)
        self._probes[name] = (url, probe, body, ready)
        self._wait(name, partial(self._answers, name), timeout=60)
        return url

    def _answers(self, name: str) -> bool:
        url, probe, body, ready = self._probes[name]
        return _status(url + probe, body) == ready

    def up(self, beaters: int = 1, tailors: int = 1) -> None:
        """Start everything, in order; a local engine only if none answers at engine_url.
        Beaters and Tailors past the first listen on the ports after theirs (8071, 8091, ...)."""
        if not self.engine_answers():
            self.start_engine()
        self.start_router()
        self.start_beater()
        for n in range(1, beaters):
            self.start_beater(f"beater-{n}", port=self.ports.beater + n)
        self.start_tailor()
        for n in range(1, tailors):
            self.start_tailor(f"tailor-{n}", port=self.ports.tailor + n)

    # --- processes ------------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        if name in self.processes and self.processes[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        with open(self.log_path(name), "ab") as log:
            self.processes[name] = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**self.environment(), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # signals go to the whole group (crossbar has workers)
            )

    def _wait(self, name: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}; see {self.log_path(name)}:\n{self.tail(name)}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"{name} not ready after {timeout} s; see {self.log_path(name)}:\n{self.tail(name)}"
        )

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def start(self, name: str, **env: str) -> None:
        """Start the part ``name`` ("engine", "router", "beater" or "tailor"; ``env``: Beater's or
        Tailor's settings) again, after a stop or a kill."""
        if name == "engine":
            self.start_engine()
        elif name == "router":
            self.start_router()
        elif name == "beater":
            self.start_beater(**env)
        else:
            self.start_tailor(**env)

    def kill(self, name: str) -> int | None:
        """SIGKILL ``name``'s process group at once, as a crash or the OOM killer would; its exit
        status."""
        return self.stop(name, timeout=0)

    def stop(self, name: str, timeout: float = 30) -> int | None:
        """SIGTERM ``name``'s process group; SIGKILL it after ``timeout`` s (at once with 0). Its
        exit status."""
        process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None and timeout == 0:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        elif process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        _signal_group(process, signal.SIGKILL)  # anything the process left behind in its group
        return process.returncode

    def down(self) -> None:
        """Stop everything, the parts that depend on others first."""
        order = ["beater", "router", "engine"]
        for name in sorted(self.processes, key=lambda n: order.index(n) if n in order else -1):
            self.stop(name)


# Tests and the benchmark watch every topic at once, which no client of `make up` may: a ticket
# principal of their own, in their copy of the router's configuration only. It may also call
# what anonymous clients may call.
_WATCHER_ROLE = {
    "name": "watcher",
    "permissions": [
        permission("docs-for-", "prefix", "subscribe"),
        *(permission(procedure, "exact", "call") for procedure in ("estrom.register", "estrom.lookup")),
        # A wildcard subscription to "" receives every topic of one component, docs-for-* too.
        permission("", "exact", "subscribe"),
    ],
}


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _status(url: str, data: bytes | None = None) -> int | None:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except (TimeoutError, OSError):
        return None


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()
    except (TimeoutError, OSError):
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="estrom-up", description="Run the whole estrom system here.")
    parser.add_argument("--workdir", default=str(ROOT / ".estrom"), help="logs and engine data")
    parser.add_argument(
        "--engine",
        choices=[*sorted(ENGINES), "none"],
        default="opensearch",
        help="the local node to start when no engine answers at $ESTROM_ELASTICSEARCH_URL "
        "(none: start none, and stop if nothing answers)",
    )
    parser.add_argument("--beaters", type=int, default=1, help="Beaters to run (ports 8070, 8071, ...)")
    parser.add_argument("--tailors", type=int, default=1, help="Tailors to run (ports 8090, 8091, ...)")
    args = parser.parse_args(argv)
    stack = Stack(
        Path(args.workdir) / args.engine,
        engine=args.engine,
        engine_url=os.environ.get("ESTROM_ELASTICSEARCH_URL"),
        secret=os.environ.get("ESTROM_BEATER_SECRET") or secrets.token_urlsafe(24),
        tailor_secret=os.environ.get("ESTROM_TAILOR_SECRET") or secrets.token_urlsafe(24),
    )

    def stop(signum: int, frame: object) -> None:
        # One signal is enough (make passes on the one the group got): the rest must not
        # interrupt the shutdown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        print(f"estrom: starting (logs in {stack.workdir})", flush=True)
        if stack.engine_answers():
            print(f"estrom: using the search engine at {stack.engine_url}", flush=True)
        elif args.engine == "none":
            raise RuntimeError(
                f"nothing answers at {stack.engine_url} (ESTROM_ELASTICSEARCH_URL), and with "
                "ENGINE=none no local node is started: start the engine, or set the variable to its URL"
            )
        else:
            print(
                f"estrom: nothing answers at {stack.engine_url}; starting a local {ENGINE_NAMES[args.engine]} node",
                flush=True,
            )
        stack.up(args.beaters, args.tailors)
        print(
            f"""
estrom is up.
  send documents:  curl -XPOST -H 'Content-Type: application/json' \\
                     {stack.beater_url}/api/v0.1/docs/events -d '{{"level": "error", "service": "api"}}'
  tail a query:    curl -N '{stack.tailor_url}/api/v0.1/docs?i=events&q=level:error%20AND%20service:api'
  in a terminal:   .venv/bin/estrom tail --url {stack.tailor_url} -i events 'level:error'
  in a browser:    http://127.0.0.1:{stack.ports.router}/  (WAMP: {stack.router_url}, realm "estrom")
Ctrl-C stops everything.""",
            flush=True,
        )
        if os.environ.get("ESTROM_TOKENS"):
            print(
                f"With the token file {os.environ['ESTROM_TOKENS']}: add -H 'Authorization: Bearer <token>' "
                "to curl, --token to estrom tail; the page asks for one.",
                flush=True,
            )
        while all(process.poll() is None for process in stack.processes.values()):
            time.sleep(0.5)
        dead = [name for name, process in stack.processes.items() if process.poll() is not None]
        print(f"estrom: {', '.join(dead)} exited; stopping. Last lines:\n{stack.tail(dead[0])}", flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\nestrom: stopping", flush=True)
    except RuntimeError as e:
        print(f"estrom: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.down()
        print("estrom: stopped", flush=True)


if __name__ == "__main__":
    main()
