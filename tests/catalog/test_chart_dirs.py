"""Drawing charts writes matplotlib's config and font cache under the data directory, not ~/.cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from pathlib import Path
import stemcat.flows.separate  # what a worker imports first: must not import matplotlib yet
assert "matplotlib" not in sys.modules, "matplotlib imported before the data dir is known"
from stemcat.catalog.charts import write_catalog_charts
paths = write_catalog_charts(Path(sys.argv[1]))
import matplotlib
print(matplotlib.get_cachedir())
"""


def test_charts_keep_matplotlib_files_under_the_data_dir(tmp_path: Path) -> None:
    home, data_dir = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPL", "XDG_CACHE", "XDG_CONFIG"))}
    env["HOME"] = str(home)
    env["PREFECT_HOME"] = str(tmp_path / "prefect")  # Prefect's own folder is not the point here
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(data_dir)], env=env, capture_output=True, text=True,
                          timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip().splitlines()[-1]) == data_dir / ".matplotlib"
    assert list((data_dir / ".matplotlib").glob("fontlist-*.json")), "the font cache was built elsewhere"
    assert sorted(p.name for p in (data_dir / "charts").iterdir())
    assert [p for p in home.rglob("*")] == [], "nothing may be written under HOME"
