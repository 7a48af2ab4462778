"""`optbench list` from the cached listing: same answer as the loaded registry, without importing the plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from optbench import catalog

LIST_AND_REPORT = (
    "import json, sys\n"
    "from click.testing import CliRunner\n"
    "from optbench.cli import main\n"
    "out = CliRunner().invoke(main, ['list', 'optimizers', '--json'])\n"
    "print(json.dumps({'exit': out.exit_code, 'items': json.loads(out.stdout), 'torch': 'torch' in sys.modules}))\n"
)


def _list_in_fresh_process(cache: str) -> dict:
    env = {**os.environ, "OPTBENCH_CACHE_DIR": cache}
    proc = subprocess.run([sys.executable, "-c", LIST_AND_REPORT], capture_output=True, text=True, env=env,
                          timeout=300, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def test_cached_listing_matches_the_registry_and_imports_no_plugin(registry, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPTBENCH_CACHE_DIR", str(tmp_path))
    expected = catalog.describe(registry)
    catalog.write_cached(catalog.installed_key(), expected)
    report = _list_in_fresh_process(str(tmp_path))
    assert report["exit"] == 0
    assert report["items"] == expected["optimizer"]
    assert not report["torch"]  # the point of the cache: no plugin (and no torch) imported to list them


def test_a_stale_or_damaged_cache_is_not_used(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPTBENCH_CACHE_DIR", str(tmp_path))
    key = catalog.installed_key()
    assert catalog.installed_key() == key  # stable while nothing is installed or edited
    catalog.write_cached("0" * 24, {"optimizer": [], "task": [], "metric": [], "problems": []})
    assert catalog.read_cached(key) is None  # another installation's listing
    (tmp_path / f"catalog-{key}.json").write_text("{not json")
    assert catalog.read_cached(key) is None
