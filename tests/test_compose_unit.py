"""docker-compose.yml and its Dockerfiles agree with the code (Docker itself is not needed).

Nothing here builds or runs an image: these tests catch a port, variable, command or path that
drifted from the settings classes, router/.crossbar/config.json or the Makefile.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import fields
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from beater.settings import BeaterSettings
from dev.stack import Stack
from estrom.settings import env_of
from tailor.settings import TailorSettings

ROOT = Path(__file__).resolve().parent.parent
ROUTER_CONFIG = json.loads((ROOT / "router" / ".crossbar" / "config.json").read_text())
SETTINGS = {"beater": BeaterSettings, "tailor": TailorSettings}


@cache
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def service(name: str) -> dict:
    return compose()["services"][name]


def default(cls, name: str):
    return next(f.default for f in fields(cls) if f.name == name)


def env_name(cls, name: str) -> str:
    return next(env_of(f) for f in fields(cls) if f.name == name)


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    if isinstance(env, list):
        env = dict(entry.split("=", 1) for entry in env)
    return {key: str(value) for key, value in env.items()}


def router_transports() -> list[dict]:
    return [t for worker in ROUTER_CONFIG["workers"] for t in worker.get("transports", [])]


def web_paths(transport: dict) -> dict:
    """The web services (by path) of a web transport, or of a universal one."""
    return transport.get("paths") or transport.get("web", {}).get("paths", {})


def router_port() -> int:
    (port,) = {t["endpoint"]["port"] for t in router_transports()}
    return port


def router_path(kind: str) -> tuple[str, dict]:
    """The (URL path, service) of the router's one ``kind`` ("websocket", "static") service."""
    ((path, config),) = [
        (path, config)
        for t in router_transports()
        for path, config in web_paths(t).items()
        if config["type"] == kind
    ]
    return path, config


def published(name: str) -> list[tuple[int, int]]:
    """(host port, container port) of each "[ip:]host:container" entry; of a host port range
    (for `--scale`), its first port."""
    return [
        tuple(int(part.split("-")[0]) for part in str(entry).split(":")[-2:])
        for entry in service(name)["ports"]
    ]


def dockerfile(name: str) -> Path:
    build = service(name)["build"]
    if isinstance(build, str):
        build = {"context": build}
    return ROOT / build["context"] / build.get("dockerfile", "Dockerfile")


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the service's Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile(name).read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


def copies(name: str) -> dict[str, str]:
    """Build-context source -> image destination of the Dockerfile's COPY instructions."""
    result = {}
    for keyword, rest in instructions(name):
        tokens = shlex.split(rest)
        if keyword != "COPY" or any(t.startswith("--from") for t in tokens):
            continue
        *sources, destination = [t for t in tokens if not t.startswith("--")]
        for source in sources:
            if destination.endswith("/"):
                result[source] = destination + posixpath.basename(source)
            else:
                result[source] = destination
    return result


def runs(name: str) -> list[list[str]]:
    return [shlex.split(rest) for keyword, rest in instructions(name) if keyword == "RUN"]


def command(name: str) -> list[str]:
    """What the container runs: the compose command, else the Dockerfile's last CMD."""
    cmd = service(name).get("command")
    if cmd is None:
        cmd = [rest for keyword, rest in instructions(name) if keyword == "CMD"][-1]
        cmd = json.loads(cmd) if cmd.startswith("[") else cmd
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def router_cbdir() -> str:
    cmd = command("router")
    return cmd[cmd.index("--cbdir") + 1]


def build_args(name: str) -> set[str]:
    """The names of the Dockerfile's ARG instructions."""
    return {rest.split("=", 1)[0] for keyword, rest in instructions(name) if keyword == "ARG"}


def patch_config(tmp_path: Path, **env: str) -> dict:
    """ROUTER_CONFIG as the router Dockerfile's configure step leaves it, run here with the
    build arguments ``env`` (the script from where the image copies it from)."""
    (step,) = [tokens for tokens in runs("router") if tokens[0] == "python" and "configure.py" in tokens[1]]
    step = step[: step.index("&&")] if "&&" in step else step
    sources = {destination: source for source, destination in copies("router").items()}
    assert step[-1] == posixpath.join(router_cbdir(), "config.json")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(ROUTER_CONFIG))
    arguments = [env.get(token[1:], "") if token.startswith("$") else token for token in step[2:-1]]
    subprocess.run([sys.executable, str(ROOT / sources[step[1]]), *arguments, str(config)], check=True)
    return json.loads(config.read_text())


def pip_installs(name: str) -> list[list[str]]:
    return [
        tokens[tokens.index("install") + 1 :]
        for tokens in runs(name)
        if "pip" in tokens and "install" in tokens
    ]


# --- the compose file ---------------------------------------------------------------------------


def test_compose_has_exactly_the_engine_router_beater_and_tailor():
    assert set(compose()["services"]) == {"elasticsearch", "router", "beater", "tailor"}


def test_compose_ports_match_the_code_defaults():
    expected = {
        "elasticsearch": urlsplit(default(BeaterSettings, "elasticsearch_url")).port,
        "router": router_port(),
        "beater": default(BeaterSettings, "port"),
        "tailor": default(TailorSettings, "port"),
    }
    for name, port in expected.items():
        assert published(name) == [(port, port)], name


def test_compose_sets_only_variables_the_services_read():
    for name, cls in SETTINGS.items():
        read = {env_of(f) for f in fields(cls)}
        assert set(environment(name)) <= read, name
    # What router/authorizer.py reads: the two services' tickets, and the token file.
    assert set(environment("router")) == {
        env_name(BeaterSettings, "secret"),
        env_name(TailorSettings, "secret"),
        "ESTROM_TOKENS",
    }


def test_beater_and_tailor_listen_on_all_interfaces_in_their_containers():
    for name, cls in SETTINGS.items():
        assert environment(name)[env_name(cls, "host")] == "0.0.0.0", name


def test_services_reach_each_other_by_compose_service_name():
    engine = urlsplit(environment("beater")[env_name(BeaterSettings, "elasticsearch_url")])
    assert (engine.scheme, engine.hostname, engine.port) == (
        "http",
        "elasticsearch",
        published("elasticsearch")[0][1],
    )

    for name, cls in SETTINGS.items():
        router = urlsplit(environment(name)[env_name(cls, "router_url")])
        # RawSocket, on the router's one port beside the page and its WebSocket.
        assert (router.scheme, router.hostname, router.port) == ("rs", "router", router_port()), name


def test_the_beater_and_tailor_secrets_come_from_the_users_environment_and_are_required():
    secret = env_name(BeaterSettings, "secret")
    _, websocket = router_path("websocket")
    (rawsocket,) = [t["rawsocket"] for t in router_transports() if "rawsocket" in t]
    for transport in (websocket, rawsocket):
        # The router's authenticator (router/authorizer.py) admits Beater with $ESTROM_BEATER_SECRET.
        for method in ("ticket", "anonymous"):
            assert transport["auth"][method] == {"type": "dynamic", "authenticator": "router.authenticate"}
    # ${VAR:?message}: compose refuses to start without it, and no credential is in the repo.
    tailor = env_name(TailorSettings, "secret")
    for name, variable in (("router", secret), ("beater", secret), ("router", tailor), ("tailor", tailor)):
        assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", environment(name)[variable]), name


def test_every_estrom_service_reads_the_same_token_file_and_anonymous_access_is_off():
    places = set()
    for name in ("router", "beater", "tailor"):
        path = environment(name)["ESTROM_TOKENS"]
        directory = posixpath.dirname(path)
        (mount,) = [volume for volume in service(name)["volumes"] if volume.endswith(f":{directory}:ro")]
        places.add((path, mount))
    ((path, mount),) = places
    # The directory on the host is the user's to give: compose refuses to start without it. A
    # directory: `estrom token` replaces the file, which a bind mount of the file alone would miss.
    assert posixpath.basename(path) == "tokens.toml"
    assert re.fullmatch(
        r"\$\{ESTROM_TOKENS_DIR:\?[^}]+\}:" + re.escape(posixpath.dirname(path)) + ":ro", mount
    )


def test_healthchecks_ask_readyz_and_tailor_waits_for_a_ready_beater():
    for name, cls in SETTINGS.items():
        check = " ".join(service(name)["healthcheck"]["test"])
        assert f"http://127.0.0.1:{default(cls, 'port')}/readyz" in check, name
        # The image's own Python (no curl in python:slim), and a Host that ESTROM_ALLOWED_HOSTS has.
        assert service(name)["healthcheck"]["test"][:2] == ["CMD", "python"]
        assert "127.0.0.1" in environment(name)[env_name(cls, "allowed_hosts")].split(",")
    assert service("tailor")["depends_on"]["beater"]["condition"] == "service_healthy"
    assert service("beater")["depends_on"]["router"]["condition"] == "service_healthy"


def test_services_start_in_order_and_come_back_after_a_crash():
    engine = service("elasticsearch")
    assert "/_cluster/health" in " ".join(engine["healthcheck"]["test"])
    beater = service("beater")["depends_on"]
    assert beater["elasticsearch"]["condition"] == "service_healthy"
    assert "router" in beater
    assert set(service("tailor")["depends_on"]) == {"router", "beater"}
    for name in ("router", "beater", "tailor"):
        assert service(name)["restart"] == "unless-stopped", name


def test_stored_queries_survive_recreating_the_engine_container():
    volume, _, target = service("elasticsearch")["volumes"][0].partition(":")
    assert target == "/usr/share/elasticsearch/data"
    assert volume in compose()["volumes"]


# --- the images ---------------------------------------------------------------------------------


def test_each_service_runs_the_module_it_is_named_for():
    for name in ("beater", "tailor"):
        assert dockerfile(name).is_file(), name
        cmd = command(name)
        assert cmd[cmd.index("-m") + 1] == name
    assert dockerfile("router").is_file()
    assert command("router")[:2] == ["crossbar", "start"]


def test_app_image_installs_the_package_with_its_locked_dependencies():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all("==" in d for d in dependencies), dependencies
    locked = (ROOT / "requirements.lock").read_text()
    assert all(d.lower() + " " in locked.lower() for d in dependencies)  # each pin, as it is
    for name in ("beater", "tailor"):
        assert "pyproject.toml" in copies(name) and "requirements.lock" in copies(name)
        runs_ = " ".join(" ".join(run) for run in runs(name))
        assert "pip install --require-hashes -r requirements.lock" in runs_, name
        assert "pip install --no-deps ." in runs_, name  # not -e: the image has no source checkout to edit
        assert {"estrom", "beater", "tailor"} <= set(copies(name))


def test_router_image_installs_the_router_lock_and_rebuilds_bjdata():
    lock = copies("router")["router/requirements.lock"]
    pins = [line for line in (ROOT / "router/requirements.txt").read_text().splitlines() if "==" in line]
    assert pins and all(pin + " " in (ROOT / "router/requirements.lock").read_text() for pin in pins)
    installed = " && ".join(" ".join(run) for run in runs("router"))
    assert f"pip install --require-hashes -r {lock}" in installed
    rebuild = installed[installed.index("--no-binary bjdata") - 100 :]
    assert {"--no-build-isolation", "--force-reinstall", "--require-hashes"} <= set(rebuild.split())
    assert installed.index("--no-binary bjdata") > installed.index(f"-r {lock}")  # after crossbar's NumPy


def test_router_image_has_its_config_and_web_page_where_the_cbdir_expects_them():
    cbdir = router_cbdir()
    _, static = router_path("static")
    assert copies("router")["router/.crossbar/config.json"] == posixpath.join(cbdir, "config.json")
    assert copies("router")["router/web"] == posixpath.normpath(posixpath.join(cbdir, static["directory"]))


def test_router_image_listens_on_all_interfaces_and_changes_nothing_else(tmp_path):
    # Run the Dockerfile's own patch step on a copy of the config, without extra origins.
    patched = patch_config(tmp_path)
    expected = json.loads(json.dumps(ROUTER_CONFIG))
    for worker in expected["workers"]:
        for transport in worker.get("transports", []):
            transport["endpoint"]["interface"] = "0.0.0.0"
    assert patched == expected


def test_router_accepts_the_page_from_the_port_compose_publishes():
    _, websocket = router_path("websocket")
    ((host_port, _),) = published("router")
    assert websocket["options"]["allowed_origins"][:2] == [
        f"http://127.0.0.1:{host_port}",
        f"http://localhost:{host_port}",
    ]
    assert websocket["options"]["allow_null_origin"] is False


def test_compose_passes_the_allowed_origins_to_the_router_image():
    assert "ESTROM_ALLOWED_ORIGINS" in build_args("router")
    args = service("router")["build"]["args"]
    assert args == {"ESTROM_ALLOWED_ORIGINS": "${ESTROM_ALLOWED_ORIGINS:-}"}  # optional: empty


def test_router_image_adds_the_allowed_origins_as_the_local_stack_does(tmp_path, monkeypatch):
    origins = " https://tail.example.com, http://10.0.0.5:8080/,,https://*.example.org:*"
    patched = patch_config(tmp_path, ESTROM_ALLOWED_ORIGINS=origins)
    monkeypatch.setenv("ESTROM_ALLOWED_ORIGINS", origins)
    local = Stack(tmp_path / "stack").router_config()  # the default ports: compose's

    def allowed(config: dict) -> list[str]:
        (ws,) = [
            service
            for worker in config["workers"]
            for t in worker.get("transports", [])
            for service in web_paths(t).values()
            if service["type"] == "websocket"
        ]
        return ws["options"]["allowed_origins"]

    assert allowed(patched) == allowed(local)
    assert allowed(patched)[2:] == [
        "https://tail.example.com:443",  # autobahn compares the origin with its port written out
        "http://10.0.0.5:8080",
        "https://*.example.org:*",
    ]


def test_router_image_has_the_components_where_the_pythonpath_expects_them():
    # pythonpath entries are relative to the cbdir: router/.crossbar here, router_cbdir() there.
    cbdir = router_cbdir()
    for worker in ROUTER_CONFIG["workers"]:
        pythonpath = worker.get("options", {}).get("pythonpath", [])
        for component in worker.get("components", []):
            module = component["classname"].rpartition(".")[0].replace(".", "/") + ".py"
            places = [
                (
                    posixpath.normpath(posixpath.join("router/.crossbar", path, module)),
                    posixpath.normpath(posixpath.join(cbdir, path, module)),
                )
                for path in pythonpath
            ]
            assert any(
                (ROOT / source).is_file() and copies("router").get(source) == destination
                for source, destination in places
            ), places


def test_docker_build_context_leaves_out_local_environments_and_run_data():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".venv-router", ".estrom", "engine/target", "test-artifacts", ".git"} <= ignored


def _estrom_imports(source: str) -> set[str]:
    """The estrom modules a Python source imports ("from estrom import api" imports a module;
    "from estrom.tokens import X" one too)."""
    imported = set()
    for package, names in re.findall(r"^from (estrom(?:\.\w+)?) import ([\w, ]+)", source, re.MULTILINE):
        imported |= (
            {f"estrom.{name.strip()}" for name in names.split(",")} if package == "estrom" else {package}
        )
    return imported


def test_router_image_has_the_estrom_modules_its_components_import():
    # From the repository root ("../.." of the cbdir): the modules the components import, and
    # the estrom modules those import in turn, and nothing else of estrom's (nor Beater's, Tailor's).
    cbdir = router_cbdir()
    (pythonpath,) = [w["options"]["pythonpath"] for w in ROUTER_CONFIG["workers"] if "components" in w]
    assert "../.." in pythonpath
    imported = set()
    for component in (ROOT / "router").glob("*.py"):
        imported |= _estrom_imports(component.read_text())
    assert "estrom.tokens" in imported
    waiting = sorted(imported)
    while waiting:
        module = waiting.pop()
        source = module.replace(".", "/") + ".py"
        assert copies("router").get(source) == posixpath.normpath(posixpath.join(cbdir, "../..", source)), (
            source
        )
        text = (ROOT / source).read_text()
        assert not re.search(r"^(from|import) (beater|tailor)\b", text, re.MULTILINE), source
        more = _estrom_imports(text) - imported
        imported |= more
        waiting += sorted(more)
    assert copies("router").get("estrom/__init__.py") == posixpath.normpath(
        posixpath.join(cbdir, "../../estrom/__init__.py")
    )
