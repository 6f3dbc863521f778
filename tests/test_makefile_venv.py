"""The Makefile's virtualenv on a Python without ensurepip, as Debian and Ubuntu ship it.

``make dev`` and ``make test`` build ``.venv`` with ``python3 -m venv``, which
needs ensurepip; Debian and Ubuntu put it in ``python3.X-venv``.  Make runs the
real recipe here with a Python that lacks ensurepip until that package is
"installed", and with ``apt-get``, ``sudo`` and ``id`` stand-ins that record
what they are asked: nothing is installed on this machine.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = f"python3.{sys.version_info.minor}-venv"

# Debian's python3 without python3.X-venv: no ensurepip module, and `-m venv`
# leaves a virtualenv without pip behind.  With the package (a marker file), a
# venv whose python accepts every pip command and does nothing.
PYTHON = """#!/bin/sh
echo "python $*" >> "{state}/calls"
if [ "$1" = -m ] && [ "$2" = ensurepip ] && [ ! -e "{state}/installed" ]; then
  echo "{real}: No module named ensurepip" >&2; exit 1
fi
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p .venv/bin
  if [ ! -e "{state}/installed" ]; then
    printf '#!/bin/sh\necho "No module named pip" >&2; exit 1\n' > .venv/bin/python
    chmod +x .venv/bin/python
    echo "The virtual environment was not created successfully because ensurepip is not"
    echo "available."
    exit 1
  fi
  printf '#!/bin/sh\\necho "venv python $*" >> "{state}/calls"\\n' > .venv/bin/python
  chmod +x .venv/bin/python; exit 0
fi
exec "{real}" "$@"
"""
APT_GET = """#!/bin/sh
echo "apt-get $*" >> "{state}/calls"
case " $* " in *" install "*) touch "{state}/installed" ;; esac
"""
SUDO = """#!/bin/sh
echo "sudo $*" >> "{state}/calls"
[ -e "{state}/sudo-allowed" ] || exit 1
[ "$1" = -n ] && shift
exec "$@"
"""
ID = """#!/bin/sh
cat "{state}/uid"
"""


class Machine:
    """A checkout's Makefile in a folder of its own, with stand-ins on PATH."""

    def __init__(self, root: Path, uid: int, sudo: bool):
        self.project, self.state, stubs = root / "project", root / "state", root / "bin"
        for folder in (self.project, self.state, stubs):
            folder.mkdir()
        shutil.copy(PROJECT_ROOT / "Makefile", self.project)
        for name in ("requirements.txt", "pyproject.toml"):
            (self.project / name).touch()
        (self.state / "uid").write_text(f"{uid}\n")
        if sudo:
            (self.state / "sudo-allowed").touch()
        for name, text in (("python", PYTHON), ("apt-get", APT_GET), ("sudo", SUDO), ("id", ID)):
            stub = stubs / name
            stub.write_text(text.format(state=self.state, real=sys.executable))
            stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
        self.python = stubs / "python"
        self.env = {"PATH": f"{stubs}:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(root)}

    def make_venv(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", "--no-print-directory", ".venv/bin/.installed", f"PYTHON={self.python}"],
            cwd=self.project, env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def calls(self) -> list[str]:
        calls = self.state / "calls"
        return calls.read_text().splitlines() if calls.exists() else []


@pytest.fixture
def machine(tmp_path):
    def build(uid=1000, sudo=False, ensurepip=False) -> Machine:
        made = Machine(tmp_path, uid, sudo)
        if ensurepip:
            (made.state / "installed").touch()
        return made

    if not shutil.which("make"):
        pytest.skip("make is not installed")
    return build


@pytest.mark.parametrize("uid, sudo", [(0, False), (1000, True)], ids=["root", "sudo"])
def test_the_venv_package_is_installed_first_where_make_may(machine, uid, sudo):
    machine = machine(uid=uid, sudo=sudo)
    result = machine.make_venv()
    assert result.returncode == 0, result.stdout + result.stderr
    installs = [call for call in machine.calls() if call.startswith("apt-get install")]
    assert installs == [f"apt-get install -y -qq {PACKAGE}"]
    assert f"installing {PACKAGE}" in result.stdout
    assert "python -m venv --clear .venv" in machine.calls()
    assert (machine.project / ".venv/bin/.installed").exists()


def test_without_root_or_sudo_make_stops_before_venv_naming_the_package(machine):
    machine = machine(uid=1000, sudo=False)
    result = machine.make_venv()
    assert result.returncode != 0
    assert f"Install {PACKAGE} (sudo apt-get install {PACKAGE}" in result.stdout
    assert not any(call.startswith(("apt-get", "python -m venv")) for call in machine.calls())
    assert not (machine.project / ".venv").exists()


def test_a_venv_left_without_pip_by_an_earlier_stop_is_made_again(machine):
    machine = machine(ensurepip=True)
    # What `-m venv` leaves without ensurepip: a python, and no pip in it.
    (machine.project / ".venv/bin").mkdir(parents=True)
    pipless = machine.project / ".venv/bin/python"
    pipless.write_text("#!/bin/sh\necho 'No module named pip' >&2; exit 1\n")
    pipless.chmod(0o755)
    result = machine.make_venv()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "python -m venv --clear .venv" in machine.calls()
    assert not any(call.startswith("apt-get") for call in machine.calls())
