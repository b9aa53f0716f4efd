"""A Colab-like run (issue 11): a fresh virtual environment holding only what Colab has
(torch, ipykernel, nbclient, ipywidgets 7.7.1) plus `pip install .` without extras and the lowest
transformers pyproject.toml allows; no cached vocabulary and no network at run time. It executes
chapters 1, 2, 7 and the chapter-2 exercise solutions, which must finish without an error.

The environment is built once, under test-artifacts/colab-like/<key>/ (key: a hash of
pyproject.toml and the pins below), and reused by later runs; building it needs PyPI (about 3-4
minutes). The package is reinstalled from a clean copy of its files whenever they change (no
network). While the notebooks run, HTTP(S)_PROXY points at a local recorder, so any download
attempt (tiktoken fetching the vocabulary, transformers asking the Hub) is caught and fails the
test, and TIKTOKEN_CACHE_DIR is an empty folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "colab-like"
TORCH = "torch==2.13.0"  # the CPU wheel installs in seconds; the CUDA one is multi-GB
COLAB_PREINSTALLED = ["ipywidgets==7.7.1", "ipykernel", "nbclient", "nbformat", "setuptools>=68"]
NOTEBOOKS = [
    "book/01_tokens.ipynb",
    "book/02_harmony.ipynb",
    "book/07_whole_model.ipynb",
    "exercises/solutions/02_harmony.ipynb",
]

pytestmark = pytest.mark.slow


def lowest_transformers() -> str:
    """`transformers==X.Y.0` from the `transformers>=X.Y` lower bound in pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    found = re.findall(r'"transformers>=([0-9.]+)"', text)
    assert found, "pyproject.toml has no transformers>= lower bound"
    parts = (found[0].split(".") + ["0", "0"])[:3]
    return "transformers==" + ".".join(parts)


def _pip(venv: Path, *args: str, timeout: int = 900) -> None:
    cmd = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def _package_copy(dest: Path) -> str:
    """Copy what `pip install .` needs into dest (no build/ or egg-info leftovers); its hash."""
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "build")
    shutil.copytree(ROOT / "gptoss_edu", dest / "gptoss_edu", ignore=ignore)
    for p in sorted(dest.rglob("*")):
        if p.is_file():
            digest.update(p.relative_to(dest).as_posix().encode() + b"\0" + p.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # not on Linux/macOS: no concurrent runs expected
            pass
        yield


@pytest.fixture(scope="session")
def colab_venv(tmp_path_factory) -> Path:
    if sys.platform == "win32":
        pytest.skip("the Colab-like environment is built on Linux/macOS only")
    pins = [TORCH, *COLAB_PREINSTALLED, lowest_transformers(), sys.version.split()[0]]
    key = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + "\n".join(pins).encode()
    ).hexdigest()[:16]
    venv = ARTIFACTS / key
    src = tmp_path_factory.mktemp("package")
    stamp = _package_copy(src)
    stamp_file = venv / "package.stamp"
    with _lock(ARTIFACTS / f"{key}.lock"):
        if not (venv / "complete").exists():
            for old in ARTIFACTS.iterdir():  # environments of earlier pyproject.tomls (1.7 GB each)
                if old.is_dir() and old.name != key:
                    shutil.rmtree(old, ignore_errors=True)
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            _pip(venv, "install", TORCH)
            _pip(venv, "install", *COLAB_PREINSTALLED)
            _pip(venv, "install", str(src))  # what Colab's set-up cell does: no extras
            _pip(venv, "install", lowest_transformers())
            stamp_file.write_text(stamp)
            (venv / "complete").write_text("\n".join(pins) + "\n")
        elif not stamp_file.exists() or stamp_file.read_text() != stamp:
            # same dependencies, changed package files: reinstall only the package, offline
            _pip(
                venv, "install", "--no-deps", "--force-reinstall", "--no-build-isolation", str(src)
            )
            stamp_file.write_text(stamp)
    return venv


class ProxyRecorder:
    """A local 'proxy' that records every request sent to it and answers 403."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0]
                    self.requests.append(first.decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    self.requests.append("(connection without a request line)")

    def close(self):
        self.sock.close()


# Appended (in memory) to each notebook: proves what the run used.
PROBE = """
import importlib.util, json, sys
import gptoss_edu, ipywidgets
from gptoss_edu.tokenizer.o200k import find_o200k_file
print("PROBE " + json.dumps({
    "gptoss_edu": gptoss_edu.__file__,
    "vocabulary": find_o200k_file()[1],
    "ipywidgets": ipywidgets.__version__,
    "transformers": importlib.util.find_spec("transformers") and __import__("transformers").__version__,
    "bpe_openai": importlib.util.find_spec("bpe_openai") is not None,
    "python": sys.executable,
}))
"""

RUNNER = """
import sys, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
path, probe = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(probe))
client = NotebookClient(nb, timeout=600, kernel_name="python3",
                        resources={"metadata": {"path": sys.argv[3]}})
try:
    client.execute()
except CellExecutionError as e:
    print(f"CELL ERROR in {path}:\\n{e}")
    sys.exit(1)
for out in nb.cells[-1].outputs:
    if out.get("name") == "stdout":
        print(out["text"])
"""


@pytest.mark.parametrize("rel", NOTEBOOKS)
def test_notebook_runs_like_on_colab(colab_venv, rel, tmp_path):
    proxy = ProxyRecorder()
    empty_cache = tmp_path / "tiktoken-cache"
    empty_cache.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy")
        and k not in ("PYTHONPATH", "GPTOSS_EDU_O200K_FILE", "DATA_GYM_CACHE_DIR")
        and not k.startswith(("JUPYTER", "PYTEST", "VIRTUAL_ENV"))
    }
    env.update(
        {name: proxy.url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
        | {
            "ALL_PROXY": proxy.url,
            "all_proxy": proxy.url,
            "TIKTOKEN_CACHE_DIR": str(empty_cache),
            "HF_HOME": str(tmp_path / "hf-home"),
            "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
            "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
            "IPYTHONDIR": str(tmp_path / "ipython"),
            "PIP_NO_INDEX": "1",
            "MPLBACKEND": "Agg",
            "PATH": f"{colab_venv / 'bin'}{os.pathsep}{env_path()}",
        }
    )
    path = ROOT / rel
    try:
        r = subprocess.run(
            [str(colab_venv / "bin" / "python"), "-c", RUNNER, str(path), PROBE, str(path.parent)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=900,
        )
    finally:
        proxy.close()
    assert r.returncode == 0, (
        f"{rel} failed in the Colab-like environment:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    )
    assert not proxy.requests, f"{rel} tried to reach the network: {proxy.requests}"
    probe = json.loads(r.stdout.split("PROBE ", 1)[1].splitlines()[0])
    assert probe["python"].startswith(str(colab_venv)), probe
    assert "site-packages" in probe["gptoss_edu"], probe  # the installed wheel, not the checkout
    assert probe["vocabulary"].startswith("copy shipped with gptoss-edu"), probe
    assert probe["ipywidgets"] == "7.7.1", probe  # pip install . kept Colab's ipywidgets
    assert probe["transformers"] == lowest_transformers().split("==")[1], probe
    assert probe["bpe_openai"] is False, probe


def env_path() -> str:
    return os.environ.get("PATH", "/usr/bin:/bin")


def test_proxy_recorder_catches_a_download(tmp_path):
    """The no-network check can fail: a request through the proxy variables is recorded."""
    import urllib.error
    import urllib.request

    proxy = ProxyRecorder()
    try:
        handler = urllib.request.ProxyHandler({"http": proxy.url, "https": proxy.url})
        with pytest.raises(urllib.error.URLError):
            urllib.request.build_opener(handler).open("https://example.invalid/x", timeout=5)
    finally:
        proxy.close()
    assert proxy.requests and proxy.requests[0].startswith("CONNECT example.invalid:443")
