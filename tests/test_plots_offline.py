"""`dvc plots show` renders the Dice-vs-clicks line plot with no network (issue: blank offline).

DVC's own page loads Vega from a CDN; the project's template (.dvc/plots/offline.html, set as
``plots.html_template`` in .dvc/config) inlines the libraries. The check renders a plot in a
throwaway DVC project with that template and photographs the page in headless Chromium with
networking disabled: the line must be drawn (enough non-white pixels where the plot is).
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.pipelines.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page: Path, png: Path, size: tuple[int, int] = (900, 600)) -> np.ndarray:
    """Photograph ``page`` in headless Chromium with every network request refused; RGB array."""
    assert CHROMIUM is not None
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--proxy-server=127.0.0.1:9",  # a closed port: nothing outside the page can load
            "--proxy-bypass-list=<-loopback>",
            f"--window-size={size[0]},{size[1]}",
            "--virtual-time-budget=5000",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return np.asarray(Image.open(png).convert("RGB"))


@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)"
)
def test_dvc_plot_renders_offline(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    shutil.copytree(REPO / ".dvc" / "plots", project / ".dvc" / "plots")
    shutil.copy(REPO / ".dvc" / "config", project / ".dvc" / "config")
    (project / "dice_vs_clicks.csv").write_text(
        "click,dice\n" + "".join(f"{c},{0.2 + 0.05 * c:.3f}\n" for c in range(1, 11))
    )
    (project / "dvc.yaml").write_text(
        "plots:\n  - dice_vs_clicks.csv:\n      x: click\n      y: dice\n      title: Mean Dice vs clicks\n"
    )
    dvc = REPO / ".venv" / "bin" / "dvc"
    shown = subprocess.run(
        [str(dvc), "plots", "show"], cwd=project, capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    page = project / "dvc_plots" / "index.html"
    html = page.read_text()
    assert "cdn.jsdelivr.net" not in html and "vegaEmbed" in html

    pixels = screenshot(page, tmp_path / "plot.png")
    drawn = (pixels < 200).any(axis=2)  # axis, labels and the line: not white
    assert drawn.mean() > 0.005, f"the page looks blank ({drawn.mean():.4%} of pixels drawn)"

    # The same page with the inline libraries removed stays blank: the check can fail.
    stripped = project / "dvc_plots" / "stripped.html"
    start, end = html.index("<script>"), html.rindex("</script>") + len("</script>")
    stripped.write_text(html[:start] + html[end:])
    blank = (screenshot(stripped, tmp_path / "blank.png") < 200).any(axis=2)
    assert blank.mean() < drawn.mean() / 5
