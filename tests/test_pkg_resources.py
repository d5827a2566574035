"""twitter_text imports without setuptools' pkg_resources (Python 3.12 venvs, setuptools 81+)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.test_daemon_process import REPO_ROOT

# The real pkg_resources made unfindable, as in a venv without setuptools.
WITHOUT_SETUPTOOLS = textwrap.dedent("""
    import sys
    from importlib.machinery import PathFinder

    class NoSetuptools(PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name == "pkg_resources" or name.startswith(("pkg_resources.", "setuptools")):
                return None
            return super().find_spec(name, path, target)

    sys.meta_path[:] = [NoSetuptools if f is PathFinder else f for f in sys.meta_path]
    import bridge
    from bridge.publish.x import x_weighted_length as weighted_length
    import pkg_resources
    print(pkg_resources.__doc__.split()[0], weighted_length("Menpora 😀 https://kemenpora.go.id/berita/1"))
""")


def test_x_length_works_without_setuptools():
    """With no pkg_resources on the path, twitter_text loads its emoji table through bridge's stand-in
    and X's weighted length counts an emoji as 2 and a link as 23."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_SETUPTOOLS], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["bridge's", str(len("Menpora ") + 2 + 1 + 23)]


def test_a_real_pkg_resources_wins():
    """Where setuptools provides pkg_resources, that one is imported, not the stand-in."""
    done = subprocess.run([sys.executable, "-c", "import bridge, pkg_resources; print(pkg_resources.__file__)"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        import pytest

        pytest.skip("no setuptools in this environment")
    assert "site-packages" in done.stdout
