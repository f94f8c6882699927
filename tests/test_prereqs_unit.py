"""dev/prereqs, which `make up` and `make test` run first: what it tells a user whose machine lacks a
tool. Each test runs it on a PATH of fake tools (small scripts that answer `--version` as the real ones
do) and the few utilities it uses, so the real Java, Maven or npm of this machine are not seen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dev.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "dev" / "prereqs"

# What the real tools print (java prints its version on stderr).
TOOLS = {
    "python3": 'case "$1" in --version) echo "Python 3.11.7" ;; esac',
    "java": """echo 'openjdk version "17.0.12" 2024-07-16' >&2""",
    "javac": "echo javac 17.0.12",
    "mvn": "echo Apache Maven 3.8.7",
    "node": "echo v20.20.2",
    "npm": "echo 11.19.1",
    "go": "echo go version go1.22.2 linux/amd64",
    "chromium": "echo Chromium 140.0.7339.185",
    "apt-get": "echo apt 2.6.1",
    "dpkg-deb": "echo Debian dpkg-deb 1.21.22",
}
UTILITIES = ("sh", "sed", "head", "dirname")


def run(tmp_path: Path, mode: str, shippers_installed: bool = False, env: dict | None = None, **tools):
    """dev/prereqs MODE in a copy of the repository of its own, with TOOLS changed by ``tools``
    (a script's body, or None for a tool that is not there)."""
    repo, bin_dir = tmp_path / "repo", tmp_path / "bin"
    (repo / "dev").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "dev" / "prereqs")
    if shippers_installed:
        (repo / ".shippers").mkdir()
        (repo / ".shippers" / ".installed").touch()
    bin_dir.mkdir()
    for name in UTILITIES:
        (bin_dir / name).symlink_to(shutil.which(name))
    for name, body in {**TOOLS, **tools}.items():
        if body is not None:
            fake = bin_dir / name
            fake.write_text(f"#!/bin/sh\n{body}\n")
            fake.chmod(0o755)
    return subprocess.run(
        [str(repo / "dev" / "prereqs"), mode],
        check=False,
        env={"PATH": str(bin_dir), **(env or {})},
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=30,
    )


def install_line(stderr: str, command: str) -> list[str]:
    """The packages of the line that starts with ``command``."""
    [line] = [line for line in stderr.splitlines() if command in line]
    return line.split(command, 1)[1].split()


@pytest.mark.parametrize("mode", ["up", "cluster", "test"])
def test_a_machine_with_everything_hears_nothing(tmp_path, mode):
    result = run(tmp_path, mode)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("version", ["21.0.4", "25", "22-ea"])
def test_a_newer_java_will_do(tmp_path, version):
    result = run(tmp_path, "up", java=f"""echo 'openjdk version "{version}" 2025-09-16' >&2""")
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("version", ["11.0.2", "1.8.0_392"])
def test_an_old_java_is_named_with_its_version_and_only_the_jdk_is_offered(tmp_path, version):
    result = run(tmp_path, "up", java=f"""echo 'openjdk version "{version}" 2019-01-15' >&2""")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "make up cannot start" in result.stderr
    assert f"a Java 17 JDK or newer: java is {version}" in result.stderr
    assert install_line(result.stderr, "sudo apt-get install") == ["openjdk-17-jdk-headless"]
    assert install_line(result.stderr, "brew install") == ["openjdk@17"]


def test_java_without_javac_is_a_jre_not_the_jdk_maven_needs(tmp_path):
    result = run(tmp_path, "up", javac=None)
    assert result.returncode == 1
    assert "no javac" in result.stderr
    assert install_line(result.stderr, "sudo apt-get install") == ["openjdk-17-jdk-headless"]


def test_the_java_of_java_home_is_the_one_that_counts_as_maven_runs_it(tmp_path):
    jdk11 = tmp_path / "jdk11" / "bin"
    jdk11.mkdir(parents=True)
    (jdk11 / "java").write_text("""#!/bin/sh\necho 'openjdk version "11.0.2"' >&2\n""")
    (jdk11 / "java").chmod(0o755)
    result = run(tmp_path, "up", env={"JAVA_HOME": str(jdk11.parent)})
    assert result.returncode == 1
    assert f"JAVA_HOME's java, {jdk11 / 'java'}, is 11.0.2" in result.stderr


def test_missing_maven_and_npm_are_both_named(tmp_path):
    result = run(tmp_path, "up", mvn=None, npm=None)
    assert result.returncode == 1
    assert "Maven: mvn not found" in result.stderr
    assert "npm: npm not found" in result.stderr
    assert install_line(result.stderr, "sudo apt-get install") == ["maven", "npm"]
    assert install_line(result.stderr, "brew install") == ["maven", "node"]


def test_an_engine_elsewhere_needs_no_java_or_maven(tmp_path):
    # `make up ENGINE=none` builds no local node.
    result = run(tmp_path / "without-java", "cluster", java=None, javac=None, mvn=None)
    assert (result.returncode, result.stderr) == (0, "")
    result = run(tmp_path / "without-npm", "cluster", java=None, mvn=None, npm=None)
    assert result.returncode == 1
    assert (
        "npm: npm not found" in result.stderr and "Java" not in result.stderr and "Maven" not in result.stderr
    )


def _planned(*args: str) -> str:
    """What ``make args`` would run, as if both nodes' sources had changed (-W), so that Make
    would rebuild them if it were asked to."""
    return subprocess.run(
        ["make", "-n", "-W", "engine/pom.xml", "-W", "engine/elasticsearch7/pom.xml", *args],
        check=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def test_make_up_with_engine_none_builds_no_local_node():
    assert "mvn" in _planned("install")
    assert "mvn" not in _planned("install", "ENGINE=none")


def test_make_test_builds_both_local_nodes_whatever_engine_says():
    # The system tests run on both local nodes: ENGINE=none (for `make up`) does not skip them.
    planned = _planned("test", "ENGINE=none")
    assert "cd engine && mvn" in planned and "cd engine/elasticsearch7 && mvn" in planned


def test_make_up_with_engine_none_and_no_engine_answering_says_so_and_starts_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dev.stack", "--engine", "none", "--workdir", str(tmp_path)],
        check=False,
        cwd=ROOT,
        env={**os.environ, "ESTROM_ELASTICSEARCH_URL": "http://127.0.0.1:1"},  # nothing listens on 1
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "nothing answers at http://127.0.0.1:1" in result.stderr and "ENGINE=none" in result.stderr
    assert not list((tmp_path / "none").glob("*.log"))  # no part was started


def test_with_engine_none_no_local_node_is_ever_started(tmp_path):
    # An engine elsewhere that answered at the start and stopped before the rest came up.
    stack = Stack(tmp_path, engine="none", engine_url="http://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="nothing answers at http://127.0.0.1:1"):
        stack.up()
    assert stack.processes == {}


def test_an_old_python_is_named_and_make_is_told_which_python_to_use(tmp_path):
    result = run(tmp_path, "up", python3='echo "Python 3.9.2"')
    assert result.returncode == 1
    assert "Python 3.11 or newer: python3 is 3.9.2" in result.stderr
    assert install_line(result.stderr, "sudo apt-get install") == ["python3.11", "python3.11-venv"]
    assert install_line(result.stderr, "brew install") == ["python@3.11"]
    assert "PYTHON=python3.11" in result.stderr


def test_the_python_that_make_is_given_is_the_one_checked(tmp_path):
    result = run(
        tmp_path,
        "up",
        env={"PYTHON": "python3.11"},
        python3='echo "Python 3.9.2"',
        **{"python3.11": TOOLS["python3"]},
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_a_python_that_cannot_make_a_venv_is_told_the_debian_package_for_it(tmp_path):
    result = run(tmp_path, "up", python3='[ "$1" = --version ] && echo "Python 3.11.2" || exit 1')
    assert result.returncode == 1
    assert "venv" in result.stderr and "python3 (3.11.2)" in result.stderr
    assert install_line(result.stderr, "sudo apt-get install") == ["python3.11-venv"]
    assert "brew install" not in result.stderr


def test_go_is_needed_by_make_test_only(tmp_path):
    assert run(tmp_path / "up", "up", go=None).returncode == 0
    result = run(tmp_path / "test", "test", go=None)
    assert result.returncode == 1
    assert "make test cannot start" in result.stderr
    assert "Go 1.21 or newer (to build Benthos): go not found" in result.stderr
    assert install_line(result.stderr, "sudo apt-get install") == ["golang-go"]
    assert install_line(result.stderr, "brew install") == ["go"]


def test_debian_12s_go_is_too_old(tmp_path):
    result = run(tmp_path, "test", go="echo go version go1.19.8 linux/amd64")
    assert result.returncode == 1
    assert "go is 1.19.8" in result.stderr


def test_without_apt_get_chromium_and_the_shippers_must_come_otherwise(tmp_path):
    result = run(tmp_path, "test", chromium=None, **{"apt-get": None})
    assert result.returncode == 1
    assert "Chromium" in result.stderr
    assert "brew install --cask chromium" in result.stderr
    assert "apt-get and dpkg-deb" in result.stderr and "log shippers" in result.stderr


def test_with_apt_get_chromium_and_the_shippers_are_installed_by_make(tmp_path):
    result = run(tmp_path, "test", chromium=None)
    assert (result.returncode, result.stderr) == (0, "")


def test_shippers_already_unpacked_need_no_apt_get(tmp_path):
    result = run(tmp_path, "test", shippers_installed=True, **{"apt-get": None, "dpkg-deb": None})
    assert (result.returncode, result.stderr) == (0, "")


def test_a_mode_it_does_not_know_is_a_usage_error(tmp_path):
    result = run(tmp_path, "deploy")
    assert result.returncode == 2
    assert "usage" in result.stderr


def test_this_machine_has_what_make_up_needs():
    result = subprocess.run(
        [str(SCRIPT), "up"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
