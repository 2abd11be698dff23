"""The search page in headless Chromium against a real server on 127.0.0.1: query, thumbnails, image upload, feedback row in the database."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_search_page_query_thumbnails_upload_and_feedback(built, live_server) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    from tessera.serve.feedback import FeedbackStore

    url, key, db = live_server
    errors: list[str] = []
    outside: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url))
        page.goto(url + "/")
        page.fill("#api-key", key)
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector("input.filter[data-column='color']")
        page.fill("#query-text", "a red square")
        page.click("#search-button")
        page.wait_for_selector(".card img")
        cards = page.locator(".card")
        assert cards.count() == 12
        assert page.locator(".card img").first.get_attribute("src").startswith("data:image/jpeg;base64,")
        assert page.evaluate("document.querySelector('.card img').naturalWidth") > 0  # the thumbnail decoded

        text_request = page.get_attribute("#results", "data-request-id")
        page.fill("#query-text", "")
        page.set_input_files("#query-file", str(built.table.parent / "img/5.png"))  # searching starts on upload
        page.wait_for_selector(f"#results:not([data-request-id='{text_request}']) .card img")
        first_id = page.locator(".card").first.get_attribute("data-id")
        page.locator(".card").first.locator("button.like").click()
        page.wait_for_selector(".card button.like.chosen")
        assert "Thanks" in page.inner_text("#status")
        browser.close()
    assert not errors, errors
    assert not outside, f"the page fetched from elsewhere: {outside}"
    rows = FeedbackStore(db).feedback()
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["route"] == "search" and row["item_id"] == first_id and row["rating"] == 1


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_generation_panel_draws_images_from_a_prompt(loaded, generators, keys_file, tmp_path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    from tessera.serve import ServeConfig, create_app
    from tests.conftest import serve_in_thread

    config = ServeConfig(keys_file=keys_file[0], feedback_db=str(tmp_path / "feedback.db"), max_images=3,
                         max_sampling_steps=5)
    app = create_app(config, **loaded, generators={"tiny-images": generators["tiny-images"]})
    errors: list[str] = []
    outside: list[str] = []
    with serve_in_thread(app, guarded=True) as url, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url))
        page.goto(url + "/")
        assert page.locator("#generate-panel").is_hidden()  # until the server says it has an image model
        page.fill("#api-key", keys_file[1])
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector("#generate-panel:not([hidden])")
        assert page.locator("#gen-n option").all_inner_texts() == ["1", "2", "3"]
        assert "tiny-images draws 16x16 images" in page.inner_text("#gen-status")
        page.click("#gen-button")
        page.wait_for_selector("#gen-status.error")
        assert "Type what to draw" in page.inner_text("#gen-status")
        page.fill("#gen-prompt", "a red square")
        page.select_option("#gen-n", "2")
        page.click("#gen-button")
        page.wait_for_selector("#gen-images .card img")
        images = page.locator("#gen-images .card img")
        assert images.count() == 2
        assert images.first.get_attribute("src").startswith("data:image/png;base64,")
        assert page.evaluate("[...document.querySelectorAll('#gen-images img')].map(i => i.naturalWidth)") == [16, 16]
        assert "2 image(s) for" in page.inner_text("#gen-status")
        browser.close()
    assert not errors, errors
    assert not outside, f"the page fetched from elsewhere: {outside}"


def test_the_page_has_its_security_headers_wherever_it_is_fetched_from(make_client) -> None:
    client, _ = make_client()
    for path in ("/", "/static/index.html", "/static/app.js", "/static/style.css"):
        r = client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, path
        assert "img-src 'self' data:" in csp, path  # the generation panel shows its images as data: URLs
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff", path
