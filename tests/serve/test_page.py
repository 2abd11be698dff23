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


def test_the_page_has_its_security_headers_wherever_it_is_fetched_from(make_client) -> None:
    client, _ = make_client()
    for path in ("/", "/static/index.html", "/static/app.js", "/static/style.css"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff", path
