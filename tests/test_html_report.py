"""`snakemake --report report.html` over the shared demo run, opened in a real browser (headless Chromium from
Debian's `chromium` package, driven by Playwright; .ci/run installs it): the reader clicks through the
categories, and what the pages show is checked against the files the pipeline wrote."""

from __future__ import annotations

import json
import os
import shutil
import struct

import pytest

from conftest import snakemake
from sdst.reporting.significance import DEFAULT_METRICS

CATEGORIES = ["Results", "Feature extraction", "Training curves", "Predictions", "Diagnostics"]


@pytest.fixture(scope="module")
def report(demo_workflow):
    proj, work = demo_workflow
    snakemake(proj, work, "--report", "report.html")
    return work


@pytest.fixture(scope="module")
def page(report):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium on PATH (Debian package `chromium`; .ci/run installs it)")
    with sync_api.sync_playwright() as p:
        try:  # Chromium's sandbox refuses to run as root, as CI does
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        except sync_api.Error as err:
            pytest.skip(f"Chromium cannot start here: {str(err).splitlines()[0]}")
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.goto((report / "report.html").as_uri())
        page.wait_for_function("typeof app !== 'undefined'")
        yield page
        browser.close()


def open_category(page, name):
    page.goto(page.url.split("#")[0])  # back to the start page, as a reader reopening the report
    page.wait_for_function("typeof app !== 'undefined'")
    page.get_by_role("link", name=name, exact=True).click()
    return page.locator("a[iconname=eye]")


def shown_frame(page):
    page.wait_for_timeout(200)
    frames = [f for f in page.frames if f.url.startswith("data:text/html")]
    assert len(frames) == 1, [f.url[:60] for f in page.frames]
    return frames[0]


def png_size(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
    return struct.unpack(">II", head[16:24])


def test_start_page_lists_every_category(page, report):
    page.goto(page.url.split("#")[0])
    page.wait_for_function("typeof app !== 'undefined'")
    for name in CATEGORIES:
        assert page.get_by_role("link", name=name, exact=True).count() == 1, name
    page.screenshot(path=str(report / "report_start.png"))


def test_results_table_shows_the_values_of_metrics_json(page, report):
    eyes = open_category(page, "Results")
    assert eyes.count() == 1
    eyes.first.click()
    frame = shown_frame(page)
    page.screenshot(path=str(report / "report_results.png"))
    m = json.loads((report / "results" / "demo" / "metrics.json").read_text())
    split = m["headline_split"]
    for name in DEFAULT_METRICS["qvh"]:
        stat = m["splits"][split][name]
        cell = frame.locator(f'td[data-row="sdst"][data-col="{name}"]')
        assert cell.inner_text() == f"{stat['mean']:.2f} ± {stat['std']:.2f}", name
        base = frame.locator(f'td[data-row="random baseline"][data-col="{name}"]')
        assert base.inner_text() == f"{m['random_baseline']['metrics'][name]:.2f}", name
    params = frame.locator('td[data-row="sdst"][data-col="parameters"]').inner_text()
    assert params == f"{m['training']['parameters'] / 1e6:.2f} M"
    assert frame.locator('td[data-row="sdst"][data-col="seeds"]').inner_text() == str(len(m["seeds"]))


def test_extraction_page_shows_the_counts(page, report):
    open_category(page, "Feature extraction").first.click()
    frame = shown_frame(page)
    ex = json.loads((report / "results" / "demo" / "extraction.json").read_text())
    assert frame.locator('td[data-row="videos"][data-col="count"]').inner_text() == str(ex["videos"]["total"])
    assert frame.locator('td[data-row="videos failed"][data-col="count"]').inner_text() == str(ex["videos"]["failed"])
    assert frame.locator('td[data-row="queries"][data-col="count"]').inner_text() == str(ex["queries"]["total"])


@pytest.mark.parametrize("category, pattern, count", [("Training curves", "sdst/seed*/curves.png", 2),
                                                      ("Predictions", "sdst/examples/*.png", 4),
                                                      ("Diagnostics", "sdst/seed*/diagnose/offsets.png", 1)])
def test_figures_load_at_their_size(page, report, category, pattern, count):
    files = sorted((report / "results" / "demo").glob(pattern))
    assert len(files) == count
    sizes = {png_size(f) for f in files}
    eyes = open_category(page, category)
    assert eyes.count() == count
    for i in range(count):
        eyes.nth(i).click()
        img = page.locator("img[src^='data:image/png']").last
        img.wait_for()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
        natural = tuple(img.evaluate("img => [img.naturalWidth, img.naturalHeight]"))
        assert natural in sizes, (category, i, natural, sizes)
        if i == 0:
            page.screenshot(path=str(report / f"report_{category.split()[0].lower()}.png"))
