"""The search page in headless Chromium, against the API served by uvicorn and a real engine.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium
chromium-driver``) and the ``selenium`` package; the test fails (never skips) without them.
Runs on Elasticsearch only: the page is engine-neutral and the API suite covers both engines.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from es_neural.api import create_app
from es_neural.dialects import BaseDialect
from es_neural.ingest.pipeline import IngestOptions
from es_neural.neural_index import NeuralIndex
from es_neural.settings import EngineKind, Settings

pytestmark = [pytest.mark.engine, pytest.mark.models]

KEY = "page-key-93b1d2"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "install it with: apt-get install -y chromium chromium-driver"


def _docs() -> list[dict[str, Any]]:
    topics = [
        ("Rivers", "a river carries water from mountain springs down to the sea"),
        ("Volcanoes", "a volcano erupts molten rock, ash and gas from under the crust"),
        ("Bees", "honey bees collect nectar from flowers and make honey in the hive"),
        ("Tides", "ocean tides rise and fall because of the pull of the moon"),
    ]
    docs = [
        {"id": f"p{i}", "title": f"{topics[i % 4][0]} {i}", "text": f"{topics[i % 4][1]}."}
        for i in range(16)
    ]
    docs[9]["text"] += " Lighthouses guided ships past the rocks at night."
    return docs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chromium() -> str:
    for path in CHROMIUM:
        if Path(path).exists():
            return path
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(f"headless Chromium is not installed; {INSTALL_HINT}", pytrace=False)
    return found


@pytest.fixture
def served_index(
    engine_settings: Settings, dialect: BaseDialect, index_name: str, tmp_path: Path
) -> str:
    idx = NeuralIndex(index_name, settings=engine_settings, dialect=dialect)
    options = IngestOptions(
        progress=False,
        checkpoint_path=tmp_path / "checkpoint.json",
        dead_letter_path=tmp_path / "dead.jsonl",
    )
    assert idx.ingest(_docs(), options=options).indexed == 16
    return index_name


@pytest.fixture
def base_url(engine_settings: Settings, served_index: str) -> Iterator[str]:
    """The API under uvicorn on a free loopback port, in a thread."""
    port = _free_port()
    settings = engine_settings.with_(api_keys=[KEY], api={"host": "127.0.0.1", "port": port})
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # the lifespan loads the models
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start", pytrace=False)
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    binary = _chromium()
    if not Path(DRIVER).exists():
        pytest.fail(f"chromedriver is not installed at {DRIVER}; {INSTALL_HINT}", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1200,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.parametrize(
    "engine_settings", [EngineKind.ELASTICSEARCH], indirect=True, ids=["elasticsearch"]
)
def test_the_page_searches_and_shows_per_leg_scores(
    browser: Any, base_url: str, served_index: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(f"{base_url}/?index={served_index}")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    assert browser.find_element(By.ID, "index").get_attribute("value") == served_index

    # without the key the page shows the API's 401, not a broken page
    browser.find_element(By.ID, "query").send_keys("lighthouses ships")
    browser.find_element(By.ID, "submit").click()
    error = wait.until(ec.visibility_of_element_located((By.ID, "error")))
    assert "401" in error.text and "API key" in error.text

    browser.find_element(By.ID, "api-key").send_keys(KEY)
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "li.hit"))
    hits = browser.find_elements(By.CSS_SELECTOR, "li.hit")
    assert hits[0].get_attribute("data-id") == "p9"
    assert not browser.find_element(By.ID, "error").is_displayed()
    rows = {
        row.get_attribute("data-leg"): row
        for row in hits[0].find_elements(By.CSS_SELECTOR, "tr.leg")
    }
    assert set(rows) == {"bm25", "dense", "sparse"}
    bm25_score = rows["bm25"].find_element(By.CSS_SELECTOR, ".leg-score").text
    assert float(bm25_score) > 0
    assert rows["bm25"].find_element(By.CSS_SELECTOR, ".leg-rank").text == "1"
    assert float(rows["dense"].find_element(By.CSS_SELECTOR, ".leg-score").text) != 0
    fused = hits[0].find_element(By.CSS_SELECTOR, ".fused-score").text
    assert fused.startswith("fused (linear)") and "rank 1" in fused  # the default fusion
    summary = browser.find_element(By.ID, "summary").text
    assert "of 16 shown" in summary

    # "More results" appends the next page (cursor), without repeating a hit
    more = browser.find_element(By.ID, "more")
    assert more.is_displayed()
    first_page = [h.get_attribute("data-id") for h in hits]
    more.click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "li.hit")) > len(first_page))
    all_ids = [h.get_attribute("data-id") for h in browser.find_elements(By.CSS_SELECTOR, "li.hit")]
    assert len(all_ids) == len(set(all_ids)) == 16

    # the BM25 leg can be switched off from the page
    browser.find_element(By.ID, "leg-bm25").click()
    browser.find_element(By.ID, "submit").click()
    wait.until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, "li.hit tr.leg-bm25.missed")
            and len(d.find_elements(By.CSS_SELECTOR, "li.hit")) <= 10
        )
    )
    browser.find_element(By.ID, "leg-bm25").click()
    browser.find_element(By.ID, "submit").click()
    wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "li.hit[data-id='p9'] tr.leg-bm25:not(.missed)")
    )

    # diversify (MMR): each hit shows its MMR explain; the first keeps its place
    browser.find_element(By.ID, "diversify").click()
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "li.hit .mmr-score"))
    mmr = browser.find_element(By.CSS_SELECTOR, "li.hit .mmr-score").text
    assert mmr.startswith("MMR ") and "was rank 1" in mmr, mmr
    assert "MMR" in browser.find_element(By.ID, "summary").text
    browser.find_element(By.ID, "diversify").click()

    screenshot = tmp_path / "search-page.png"
    browser.set_window_size(1200, 1400)
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    # the one expected failure is the keyless search's 401; no script errors, no CSP violations
    unexpected = [e for e in severe if not ("/v1/search" in e["message"] and "401" in e["message"])]
    assert not unexpected, unexpected
