#!/usr/bin/env bash
# CI helper: what tests/test_browser.py needs. Debian's chromium (/usr/bin/chromium) and the
# playwright Python package (in the `test` extra). Never `playwright install`: the test drives
# the system chromium through executable_path, so no browser is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
    apt-get update
    apt-get install -y --no-install-recommends chromium
fi
PY=${PYTHON:-.venv/bin/python}
if ! "$PY" -c "import playwright.sync_api" 2>/dev/null; then
    "$PY" -m pip install "playwright>=1.40"
fi
/usr/bin/chromium --version
"$PY" -c "import playwright, jupyterlab, ipywidgets; print('playwright, jupyterlab', jupyterlab.__version__, 'ipywidgets', ipywidgets.__version__)"
