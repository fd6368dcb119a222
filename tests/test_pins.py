"""pyproject.toml, requirements.lock and environment.yml must pin the same versions."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^\s*-?\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)\s*$")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        m = PIN.match(line)
        if m:
            found[_name(m.group(1))] = m.group(2)
    return found


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    unpinned = [s for s in specs if "==" not in s]
    assert not unpinned, f"every dependency in pyproject.toml must be pinned with ==, not {unpinned}"
    return pins(specs)


def test_lock_pins_every_pyproject_dependency_to_the_same_version():
    lock = pins((ROOT / "requirements.lock").read_text().splitlines())
    for name, version in pyproject_pins().items():
        assert lock.get(name) == version, f"{name}: pyproject {version}, requirements.lock {lock.get(name)}"


def test_environment_yml_lists_the_same_versions():
    env = pins((ROOT / "environment.yml").read_text().splitlines())
    assert env == pyproject_pins()


def test_torch_is_pinned_to_the_cpu_installable_release():
    lock = pins((ROOT / "requirements.lock").read_text().splitlines())
    assert lock["torch"] == "2.13.0"
    assert not any(name.startswith("nvidia-") for name in lock), "the lock must not pull CUDA wheels"
