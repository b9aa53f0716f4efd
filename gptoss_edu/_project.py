"""The one place that says where the project lives: badges and install cells are made from it."""

REPO = "gptoss-edu/gptoss-edu"  # GitHub owner/name
BRANCH = "main"
REPO_URL = f"https://github.com/{REPO}"


def colab_url(path: str) -> str:
    """Colab link that opens the notebook at `path` (relative to the repository root)."""
    return f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{path}"


def binder_url(path: str) -> str:
    """Binder link that opens JupyterLab on the notebook at `path`."""
    return f"https://mybinder.org/v2/gh/{REPO}/{BRANCH}?labpath={path}"


def badges_markdown(path: str) -> str:
    return (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(path)}) "
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder_url(path)})"
    )


PIP_INSTALL = f"gptoss-edu @ git+{REPO_URL}@{BRANCH}"
