"""The Makefile's set-up logic (``make debian-tools``, ``make demo``), run by GNU make itself,
checked against fake ``id``/``sudo``/``apt-get`` programs on PATH that log how they were called."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="GNU make is not on PATH")


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


class Machine:
    """A PATH holding only fakes: who we are (``id -u``), whether ``sudo -n`` works, and an
    ``apt-get`` that logs its arguments and, when it "works", puts promtool and chromium on PATH."""

    def __init__(self, root: Path, uid: int, sudo: bool = False, apt: bool | None = True) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "apt.log"
        _script(self.bin / "id", f'[ "$1" = -u ] && echo {uid}')
        if sudo:
            _script(self.bin / "sudo", '[ "$1" = -n ] || exit 1; shift; SUDO=1 "$@"')
        else:
            _script(self.bin / "sudo", 'echo "sudo: a password is required" >&2; exit 1')
        if apt is not None:
            chmod = shutil.which("chmod")
            tools = "".join(f"echo '#!/bin/sh' > {self.bin / t}; {chmod} +x {self.bin / t}; " for t in ("promtool", "chromium"))
            installs = tools if apt else "exit 100"
            _script(self.bin / "apt-get", f'echo "${{SUDO:-root}}: $*" >> {self.log}\ncase "$1" in install) {installs};; esac')

    def make(self, target: str = "debian-tools", ci: str | None = None) -> subprocess.CompletedProcess:
        env = {"PATH": str(self.bin)}
        if ci is not None:
            env["CI"] = ci
        return subprocess.run([MAKE, "-s", "-C", str(REPO), target], env=env, capture_output=True, text=True, timeout=60)

    def apt_calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def test_a_user_without_root_gets_a_note_and_no_apt_get(tmp_path: Path) -> None:
    machine = Machine(tmp_path, uid=1000)
    done = machine.make()
    assert done.returncode == 0, done.stderr
    assert machine.apt_calls() == []
    note = done.stdout.strip()
    assert note.startswith("note: promtool chromium not installed (apt-get needs root or sudo without a password)")
    assert "tests that run them are skipped" in note and note.count("\n") == 0


def test_under_ci_a_tool_that_cannot_be_installed_is_an_error(tmp_path: Path) -> None:
    machine = Machine(tmp_path, uid=1000)
    done = machine.make(ci="true")
    assert done.returncode != 0
    assert "error: promtool chromium missing" in done.stderr and "CI=true runs every test" in done.stderr


def test_root_installs_with_apt_get_and_passes_under_ci(tmp_path: Path) -> None:
    machine = Machine(tmp_path, uid=0)
    done = machine.make(ci="true")
    assert done.returncode == 0, done.stderr
    calls = machine.apt_calls()
    assert calls[0] == "root: update -qq"
    assert calls[1].startswith("root: install -y -qq --no-install-recommends prometheus chromium")
    assert (machine.bin / "promtool").exists() and "note" not in done.stdout
    again = machine.make(ci="true")  # now present: nothing to do, nothing printed
    assert again.returncode == 0 and again.stdout == "" and len(machine.apt_calls()) == 2


def test_passwordless_sudo_installs_through_sudo(tmp_path: Path) -> None:
    machine = Machine(tmp_path, uid=1000, sudo=True)
    done = machine.make()
    assert done.returncode == 0, done.stderr
    assert [call.split(":")[0] for call in machine.apt_calls()] == ["1", "1"]  # both through sudo -n
    assert (machine.bin / "chromium").exists()


def test_a_failed_apt_get_is_a_note_for_a_user_and_an_error_under_ci(tmp_path: Path) -> None:
    machine = Machine(tmp_path, uid=0, apt=False)
    done = machine.make()
    assert done.returncode == 0, done.stderr
    assert "note: promtool chromium not installed (apt-get did not install them)" in done.stdout
    assert machine.make(ci="true").returncode != 0


def test_without_apt_get_the_note_says_to_use_the_package_manager(tmp_path: Path) -> None:
    machine = Machine(tmp_path, uid=0, apt=None)
    done = machine.make()
    assert done.returncode == 0 and "install them with your package manager" in done.stdout


def test_one_tool_present_only_the_other_is_named(tmp_path: Path) -> None:
    machine = Machine(tmp_path, uid=1000)
    _script(machine.bin / "promtool", "exit 0")
    done = machine.make()
    assert done.returncode == 0 and done.stdout.startswith("note: chromium not installed")


def test_demo_waits_neither_for_the_compiled_ahead_module_nor_the_test_dependencies() -> None:
    # the demo compiles only its own kernels on first use; test and bench build the module
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    plans = {target: subprocess.run([MAKE, "-n", "-B", "-C", str(REPO), target], env=env, capture_output=True,
                                    text=True, timeout=60, check=True).stdout for target in ("demo", "test")}  # fmt: skip
    assert "kernels.build" not in plans["demo"] and "telemetry demo" in plans["demo"]
    assert "kernels.build" in plans["test"] and "pytest" in plans["test"]
    assert "'.[test]'" not in plans["demo"] and "'.[test]'" in plans["test"]  # nor for pytest & co.

