"""``snakemake --report`` of a real run, opened in headless Chromium (Debian's ``chromium`` package)."""

from __future__ import annotations

import os
import shutil

import pytest
from workflow_helpers import TINY_CONFIG, run_snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# README's picture of the report: refreshed by `ADASPX_SCREENSHOTS=docs make test` (tests leave the checkout alone)
SCREENSHOTS = os.environ.get("ADASPX_SCREENSHOTS")

LOAD_IMAGES = """async () => {
    const images = Object.entries(results).filter(([path, r]) => r.mime_type.startsWith("image/"));
    return await Promise.all(images.map(([path, r]) => new Promise((done) => {
        const image = new Image();
        image.onload = () => done([path, image.naturalWidth, image.naturalHeight]);
        image.onerror = () => done([path, 0, 0]);
        image.src = r.data_uri;
    })));
}"""


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    return path


def _gallery_images(folder) -> set[str]:
    return {p.stem.split("_", 1)[1] for p in folder.glob("round0_*.png")}


def test_report_loads_every_image_and_shows_curves_and_gallery(tiny_run, tmp_path):
    from playwright.sync_api import sync_playwright

    run_snakemake(tiny_run, None, "--report", "report.html")
    report = tiny_run / "report.html"
    rounds = TINY_CONFIG["al"]["rounds"] + 1
    experiments = [e["name"] for e in TINY_CONFIG["experiments"]]
    gallery = {
        f"results/tiny/gallery/{e}/seed{s}/round{r}_{image}.png"
        for e in experiments
        for s in TINY_CONFIG["al"]["seeds"]
        for r in range(rounds)
        for image in _gallery_images(tiny_run / f"results/tiny/gallery/{e}/seed{s}")
    }
    assert len(gallery) == len(experiments) * rounds * 2  # report.gallery_images: 2 by default

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(report.as_uri())
            page.wait_for_selector("#loading-screen", state="hidden", timeout=60_000)
            loaded = {path: (w, h) for path, w, h in page.evaluate(LOAD_IMAGES)}
            assert all(w > 0 and h > 0 for w, h in loaded.values()), [k for k, v in loaded.items() if not v[0]]
            assert {"results/tiny/learning_curves.png", "results/tiny/usage.png"} <= set(loaded)
            assert gallery <= set(loaded)
            tables = page.evaluate("Object.keys(results).filter((k) => k.endsWith('.csv'))")
            assert {f"results/tiny/{n}.csv" for n in ("summary", "summary_per_class", "comparisons", "usage")} <= set(
                tables
            )
            # as a reader does: the gallery of an experiment, one image, the picture of its last round
            page.get_by_role("link", name="Gallery").click()
            page.get_by_role("link", name="cb_adaptive_sieve").click()
            rows = page.locator("table tbody tr")
            assert rows.count() == rounds
            rows.nth(rounds - 1).locator("a[iconname=eye]").click()
            shown = page.locator("img").first
            shown.wait_for(state="visible", timeout=10_000)
            assert shown.evaluate("(image) => image.complete && image.naturalWidth > 0")
            page.screenshot(path=str(tmp_path / "report.png"))
        finally:
            browser.close()
    if SCREENSHOTS:
        shutil.copyfile(tmp_path / "report.png", os.path.join(SCREENSHOTS, "report.png"))
