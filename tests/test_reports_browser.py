"""The report and the dashboard as people see them: opened in a real headless Chromium (the system's, driven
by Playwright), with no console errors, no request beyond the file itself, the table and charts laid out,
nothing hostile executed, and a screenshot kept as the test's artifact."""

from pathlib import Path

import pytest

from harness.store.store import Store
from reports.render import render_dashboard, render_run_report
from tests.fake_results import CELLS, HOSTILE, add_run


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A report against a baseline and a dashboard over five runs, with a regression and hostile names."""
    folder = tmp_path_factory.mktemp("reports")
    store = Store(str(folder / "results.db"))
    cells = [*CELLS, ("tinyllama-full", "dynamic_int8", "host", 580.0, 48.0, 3043.0),
             (HOSTILE, "none", HOSTILE, 1000.0, 100.0, 100.0)]
    runs = [add_run(store, HOSTILE, cells=cells, scale=scale, seed=seed, accuracy={"top1_agreement": 0.99},
                    device_facts={"model": '<img src=x onerror="alert(1)">'})
            for seed, scale in enumerate([1.0, 1.0, 1.0, 0.8, 0.81])]
    return {"report": render_run_report(store, runs[-1], folder / "run.html", baseline_run=runs[2]),
            "dashboard": render_dashboard(store, folder / "dashboard.html")}


def _open(browser, path: Path, shot: Path) -> tuple:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    console, requests, dialogs = [], [], []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri(), wait_until="load")
    page.screenshot(path=str(shot), full_page=True)
    return page, console, requests, dialogs


def _laid_out(locator) -> bool:
    box = locator.bounding_box()
    return box is not None and box["width"] > 200 and box["height"] > 100


@pytest.mark.parametrize("name", ["report", "dashboard"])
def test_page_in_headless_chromium(browser, pages, name, tmp_path, record_property):
    path = pages[name]
    shot = tmp_path / f"{name}.png"
    page, console, requests, dialogs = _open(browser, path, shot)
    record_property("screenshot", str(shot))

    assert console == [], console  # no errors, not even a CSP violation
    assert requests == [path.as_uri()]  # nothing but the file itself: no CDN, no fonts, no favicon
    assert dialogs == [] and page.locator("script").count() == 0  # the hostile names ran nothing
    assert HOSTILE in page.inner_text("body")  # ... and are shown as text
    assert shot.stat().st_size > 20_000
    charts = page.locator("figure svg")
    if name == "report":
        assert page.locator("#results tbody tr").count() == 4
        assert page.locator("#results td.regression").count() >= 3 * 4  # prefill, decode, TTFT of each cell
        assert charts.count() == 2
    else:
        assert charts.count() == 4  # one per model · quant · device
        assert page.locator("#regressions tr").count() > 1 and page.locator("#runs tr").count() == 1 + 5
    assert all(_laid_out(charts.nth(i)) for i in range(charts.count()))
    page.close()
