"""The review app in a real browser: Debian's Chromium, driven by Playwright, against
``python -m TotalFMWeb`` servers on loopback, on the real example case and the demo model.

The main test walks the reviewer's whole path in one page (each step needs the one before)
and prints the latencies the README states."""
from __future__ import annotations

import csv
import gzip
import io
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from web_server import image, noise, pixels_near, require_browser, web_server

ROOT = Path(__file__).resolve().parents[1]
VIEWS = {"coronal": 0, "sagittal": 1, "3d": 2, "axial": 3}  # the Quad View's images, in page order
HIGHLIGHT = (255, 140, 0)  # colouring.HIGHLIGHT_COLOR
QUERY = "liver lesion"


@pytest.fixture(scope="module")
def browser():
    executable = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def new_page(browser, url):
    page = browser.new_context(viewport={"width": 1500, "height": 950}, accept_downloads=True).new_page()
    page.goto(url)
    page.wait_for_selector("#open-example", timeout=60_000)
    return page


def view(page, name: str) -> np.ndarray:
    """A view as the reader sees it, after a fresh server-side render (the first streamed frame
    once came out as coloured noise on a loaded machine)."""
    page.evaluate("trame.trigger('rerender')")
    page.wait_for_timeout(1500)
    return image(page.locator("img.image-display-area").nth(VIEWS[name]).screenshot())


def wait_text(page, selector: str, text: str, timeout: float = 120_000) -> None:
    page.wait_for_function("([s, t]) => { const e = document.querySelector(s); return e && e.innerText.includes(t); }",
                           arg=[selector, text], timeout=timeout)


def table(page) -> list[dict]:
    return page.evaluate("""Array.from(document.querySelectorAll('#organ-table tbody tr')).map(tr => ({
        label: tr.cells[0].innerText, score: tr.cells[1].innerText, flag: tr.cells[2].innerText,
        mark: tr.cells[3].innerText, matched: tr.classList.contains('matched'),
        current: tr.classList.contains('current')}))""")


def error_text(page) -> str:
    page.wait_for_selector("#error", timeout=60_000)
    return page.inner_text("#error").strip()


def cli_csv(tmp_path: Path) -> list[dict]:
    """The CLI's CSV for the same case and model."""
    from TotalFMLib.inputs.sample_data import fetch

    out = tmp_path / "cli.csv"
    subprocess.run([sys.executable, "-m", "TotalFMLib.cli", "analyze", "--ct", str(fetch("example_ct")), "--seg",
                    str(fetch("example_seg")), "--csv", str(out), "-q"], check=True, cwd=ROOT)
    with open(out, newline="") as f:
        return list(csv.DictReader(f))


def download(page, selector: str, target: Path) -> Path:
    with page.expect_download(timeout=60_000) as info:
        page.click(selector)
    info.value.save_as(target)
    return target


def test_the_whole_review_in_the_browser(browser, tmp_path, capsys):
    from TotalFMSlicerLib.colouring import score_color

    with web_server(tmp=tmp_path) as url:
        page = new_page(browser, url)

        # open the example case: the views show the CT, not a blank or noisy frame
        t0 = time.monotonic()
        page.click("#open-example")
        wait_text(page, "#case-name", "example_ct")
        opened = time.monotonic() - t0
        for name in ("axial", "coronal", "3d"):
            pixels = view(page, name)
            assert pixels.std() > 10, f"the {name} view is blank"
            assert noise(pixels) < 0.2, f"the {name} view looks like noise ({noise(pixels):.2f})"

        # score with the demo model, with progress, then the organ table
        page.click("#score")
        page.wait_for_selector("#organ-table tbody tr", timeout=300_000)
        to_scores = time.monotonic() - t0
        rows = table(page)
        assert len(rows) >= 15 and all(r["score"] for r in rows)
        assert page.inner_text("#legend-title") == "TotalFM score: any lesion"

        # an organ's pixels carry its score colour (all organs at full strength)
        page.click("#dim-below")
        liver = next(r for r in rows if r["label"] == "Liver")
        page.click("#organ-table tbody tr >> text=Liver")
        wait_text(page, "#organ-table tr.current", "Liver")
        colour = [round(255 * c) for c in score_color(float(liver["score"]))]
        axial = view(page, "axial")
        assert pixels_near(axial, colour, 30) >= 100, f"no liver outline in its score colour {colour}"

        # type a finding: the table lists the matches first and the views highlight them
        page.evaluate("trame.state.set('match_score', 2.0)")
        page.wait_for_timeout(300)
        typed_ms = page.evaluate("""async (query) => {
            const input = document.querySelector('#search');
            const t0 = performance.now();
            input.value = query; input.dispatchEvent(new Event('input', {bubbles: true}));
            while (!document.querySelector('#organ-table tbody tr.matched')) {
                await new Promise(r => requestAnimationFrame(r));
                if (performance.now() - t0 > 20000) return -1;
            }
            return performance.now() - t0; }""", QUERY)
        assert typed_ms > 0, "typing a finding highlighted nothing"
        rows = table(page)
        matched = [r for r in rows if r["matched"]]
        assert matched and rows[: len(matched)] == matched, "the matches are not listed first"
        orange = pixels_near(view(page, "axial"), HIGHLIGHT, 40)
        assert orange >= 60, f"the best match is not highlighted in the view ({orange} pixels)"
        if os.environ.get("TOTALFM_WEB_SCREENSHOT"):  # the README's picture
            page.screenshot(path=os.environ["TOTALFM_WEB_SCREENSHOT"])
        views_ms = page.evaluate("""async () => {
            const img = document.querySelectorAll('img.image-display-area')[3];
            const before = img.src, input = document.querySelector('#search');
            const t0 = performance.now();
            input.value = 'kidney stone'; input.dispatchEvent(new Event('input', {bubbles: true}));
            while (img.src === before) { await new Promise(r => requestAnimationFrame(r));
                if (performance.now() - t0 > 20000) return -1; }
            return performance.now() - t0; }""")

        # step through the organs and mark one
        def step(button: str) -> str:
            before = [r["label"] for r in table(page) if r["current"]]
            page.click(button)
            page.wait_for_function("(b) => { const c = document.querySelector('#organ-table tr.current');"
                                   " return c && c.cells[0].innerText !== b; }", arg=before[0] if before else "")
            return next(r for r in table(page) if r["current"])["label"]

        labels = [r["label"] for r in table(page)]
        first = step("#next")
        second = step("#next")
        assert labels.index(second) == (labels.index(first) + 1) % len(labels)
        assert step("#previous") == first
        page.click("#mark-agree")
        wait_text(page, "#organ-table tr.current", "agree")
        page.locator("body").click(position={"x": 5, "y": 900})  # out of the search field: keys step
        page.keyboard.press("n")
        page.wait_for_function("(f) => document.querySelector('#organ-table tr.current').cells[0].innerText !== f",
                               arg=first)
        page.keyboard.press("p")
        wait_text(page, "#organ-table tr.current", first)

        # the lung window changes what the axial view shows
        soft = view(page, "axial")
        page.click("#window-lung")
        lung = view(page, "axial")
        assert abs(lung.mean() - soft.mean()) > 5, "the lung window did not change the view"
        page.click("#window-soft_tissue")

        # the CSV download: the CLI's columns and values plus the review column
        web_rows = list(csv.DictReader(io.StringIO(download(page, "#export-csv", tmp_path / "web.csv").read_text())))
        cli_rows = cli_csv(tmp_path)
        assert list(web_rows[0]) == list(cli_rows[0]) + ["review"]
        key = lambda r: (r["organ"], r["finding"])  # noqa: E731
        web_by, cli_by = {key(r): r for r in web_rows}, {key(r): r for r in cli_rows}
        assert web_by.keys() == cli_by.keys()
        for k, r in cli_by.items():
            w = web_by[k]
            assert abs(float(w["score"]) - float(r["score"])) < 1e-5, k
            assert (w["flagged"], w["model_id"], w["model_checksum"], w["case_id"]) == \
                   (r["flagged"], r["model_id"], r["model_checksum"], r["case_id"]), k
        reviewed = {r["organ"]: r["review"] for r in web_rows if r["review"]}
        assert list(reviewed.values()) == ["agree"] * len(reviewed) and len(reviewed) == 1

        # save the review, open something else, reopen the review: scores and mark are back
        bundle = download(page, "#save-review", tmp_path / "review.mrb")
        page.click("#open-example")
        page.wait_for_function("() => !document.querySelector('#organ-table')")
        page.set_input_files("#upload-review", str(bundle))
        page.wait_for_selector("#organ-table tbody tr", timeout=120_000)
        assert [r["mark"] for r in table(page) if r["mark"]] == ["agree"]
        page.evaluate("trame.state.set('match_score', 2.0)")
        page.fill("#search", QUERY)
        page.wait_for_selector("#organ-table tbody tr.matched", timeout=30_000)

        # a damaged upload gets the CLI's one-line refusal, in the page
        damaged = tmp_path / "damaged_ct.nii.gz"
        damaged.write_bytes(gzip.compress(b"\x5c\x01\x00\x00" + b"\x00" * 60)[:40])
        page.set_input_files("#upload-ct", str(damaged))
        wait_text(page, "#uploaded-ct", "received")
        page.click("#open-uploads")
        refusal = error_text(page)
        assert refusal.startswith("uploads/") and "damaged_ct.nii.gz" in refusal and "\n" not in refusal
        assert "Traceback" not in refusal and str(tmp_path) not in refusal

        # an upload cannot name a path outside the session's folder
        page.set_input_files("#upload-seg", files=[{"name": "../../../escaped.nii.gz", "mimeType": "application/gzip",
                                                    "buffer": b"x"}])
        wait_text(page, "#uploaded-seg", "received")
        found = [p for p in tmp_path.rglob("*escaped*")]
        assert found and all("/uploads/" in str(p) and "totalfm-review-" in str(p) for p in found), found
        page.screenshot(path=str(tmp_path / "last.png"))

    with capsys.disabled():
        print(f"\nbrowser latency: open case {opened:.1f} s; open case to first scores {to_scores:.1f} s; "
              f"typed finding to highlighted organs in the table {typed_ms:.0f} ms, to a new view image "
              f"{views_ms:.0f} ms")


def test_two_readers_at_once_each_in_their_own_session(browser, tmp_path):
    with web_server("--sessions", "2", "--max-upload-mb", "4", tmp=tmp_path) as url:
        first, second = new_page(browser, url), new_page(browser, url)
        first.click("#open-example")
        wait_text(first, "#case-name", "example_ct")
        first.click("#score")
        second.wait_for_timeout(500)
        assert second.inner_text("#case-name").strip() == "", "the second reader sees the first reader's case"
        # the second reader uploads a DICOM series (every file of it) and its segmentation
        from TotalFMLib.inputs.sample_data import fetch

        series = sorted(str(f) for f in fetch("example_ct_dicom").iterdir())
        second.set_input_files("#upload-ct", series)
        wait_text(second, "#uploaded-ct", f"{len(series)} files received")
        second.set_input_files("#upload-seg", str(fetch("example_seg_dicom")))
        wait_text(second, "#uploaded-seg", "1 file received")
        second.click("#open-uploads")
        wait_text(second, "#status", "organs. Choose a model")
        assert second.inner_text("#case-name").strip() == "001-ct"
        first.wait_for_selector("#organ-table tbody tr", timeout=300_000)
        first.click("#next")
        first.click("#mark-disagree")
        wait_text(first, "#organ-table tr.current", "disagree")
        # Cancel while it scores (sent right behind Score: a small case on a warm model scores in a
        # second or two, before a click could reach the enabled button): nothing is shown
        second.evaluate("trame.trigger('score'); trame.trigger('cancel')")
        wait_text(second, "#status", "Cancelled; nothing was changed.")
        assert not second.query_selector("#organ-table")
        second.click("#score")
        second.wait_for_selector("#organ-table tbody tr", timeout=300_000)
        assert not [r for r in table(second) if r["mark"]], "a mark crossed sessions"
        second.click("#restore")
        wait_text(second, "#legend-title", "Original TotalSegmentator colours")
        assert len(list(tmp_path.glob("totalfm-review-*"))) == 2  # two private session folders

        # a third reader is told the server is full
        try:
            urllib.request.urlopen(url)
            raise AssertionError("a third session was started")
        except urllib.error.HTTPError as e:
            assert e.code == 503 and "all 2 reader sessions" in e.read().decode()

        # the upload limit, through the front door
        big = tmp_path / "big_ct.nii.gz"
        big.write_bytes(os.urandom(4_500_000))
        second.set_input_files("#upload-ct", str(big))
        assert "larger than the limit of 4 MB" in error_text(second)
        assert not list(tmp_path.rglob("big_ct.nii.gz*"))[1:], "the refused upload was kept"


def test_beyond_loopback_an_access_token_is_required(browser, tmp_path):
    refused = subprocess.run([sys.executable, "-m", "TotalFMWeb", "--host", "0.0.0.0"], cwd=ROOT / "TotalFMSlicer",
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "needs an access token: add --token" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    from TotalFMLib.inputs.sample_data import fetch

    token = "test-token-0123456789"
    case = ("--ct", str(fetch("example_ct")), "--seg", str(fetch("example_seg")))  # opened at start
    with web_server(*case, env={"TOTALFM_SERVE_TOKEN": token}, tmp=tmp_path) as url:
        assert url.endswith(f"?token={token}")
        bare = url.split("?")[0]
        for attempt in (bare, bare + "?token=wrong-token-000000", bare + "upload?kind=ct"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(attempt)
            assert e.value.code == 403 and "needs its access token" in e.value.read().decode()
        page = new_page(browser, url)  # the token once in the address, then the cookie (assets, websocket)
        wait_text(page, "#case-name", "example_ct")
        assert view(page, "axial").std() > 10
