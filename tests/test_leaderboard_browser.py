"""The built site in a real browser: headless Chromium (Debian's chromium + chromium-driver, which scripts/test
installs) opens every page from disk over file://, draws the Plotly figures, sorts a table on click, logs no
console errors, and runs no script from hostile result or plugin strings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _leaderboard_data import (
    HOSTILE,
    HOSTILE_JS,
    HOSTILE_SCRIPT,
    TASK,
    add_edge_rows,
    evil_registry,
    shared_real_results,
)

from optbench.leaderboard import build_site
from optbench.leaderboard.pages import optimizer_href, task_href

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("browser")
    add_edge_rows(shared_real_results(tmp_path_factory), base / "results")
    build_site(base / "results", base / "site", evil_registry())
    return base / "site"


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("headless Chromium is not installed (Debian packages chromium and chromium-driver; "
                    "scripts/test installs them when run as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1300,1600",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: Selenium Manager never runs, so nothing is downloaded
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def open_page(driver, site: Path, name: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get((site / name).resolve().as_uri())
    n_plots = driver.execute_script("return document.querySelectorAll('div.plot').length")
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && "
        "document.querySelectorAll('div.plot svg.main-svg').length >= arguments[0] * 1", n_plots))


def severe(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def assert_no_alert(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):  # an onerror handler would have fired while the page loaded
        driver.switch_to.alert.text  # noqa: B018 - touching the alert is the check
    assert driver.execute_script("return window.__xss === undefined")
    assert driver.execute_script("return document.querySelectorAll('img').length") == 0


def test_pages_render_tables_and_plots_without_console_errors(driver, site, tmp_path):
    from selenium.webdriver.common.by import By

    names = sorted(p.name for p in site.glob("*.html"))
    assert {"index.html", "curves.html", "geometry.html", task_href(TASK)} <= set(names)
    for name in names:
        open_page(driver, site, name)
        plots = driver.find_elements(By.CSS_SELECTOR, "div.plot")
        drawn = driver.find_elements(By.CSS_SELECTOR, "div.plot svg.main-svg")
        assert len(drawn) >= len(plots), name
        if name not in ("curves.html", "studies.html"):  # index pages: links, no tables
            assert driver.find_elements(By.CSS_SELECTOR, "table tbody tr"), f"{name}: no table rows"
        assert severe(driver) == [], name
        assert_no_alert(driver)
    open_page(driver, site, "index.html")
    assert driver.find_elements(By.CSS_SELECTOR, "#profile-figure svg.profile-svg")  # the profile, drawn inline
    assert driver.execute_script("return typeof window.Plotly") == "undefined"  # the overview loads no plotly
    assert "Optimizer leaderboard" in driver.find_element(By.TAG_NAME, "h1").text
    assert "Machine:" in driver.find_element(By.CSS_SELECTOR, "p.meta").text
    driver.save_screenshot(str(tmp_path / "index.png"))
    open_page(driver, site, task_href(TASK))
    driver.save_screenshot(str(tmp_path / "task.png"))
    assert (tmp_path / "index.png").stat().st_size > 10_000


def test_clicking_a_header_sorts_the_table(driver, site):
    from selenium.webdriver.common.by import By

    open_page(driver, site, task_href(TASK))
    table = driver.find_element(By.ID, "results-smoke")
    header = next(th for th in table.find_elements(By.CSS_SELECTOR, "thead th") if th.text.startswith("test loss"))
    col = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")].index(header.text)

    def column() -> list[float | None]:
        cells = [tr.find_elements(By.TAG_NAME, "td")[col] for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        return [None if c.get_attribute("data-sort") in (None, "") else float(c.get_attribute("data-sort"))
                for c in cells]

    header.click()
    asc = column()
    numbers = [v for v in asc if v is not None]
    assert len(numbers) >= 2 and numbers == sorted(numbers) and asc[: len(numbers)] == numbers  # missing last
    header.click()
    desc = [v for v in column() if v is not None]
    assert desc == sorted(numbers, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"


def test_hostile_strings_show_as_text_and_run_nothing(driver, site, tmp_path):
    from selenium.webdriver.common.by import By

    for name in (optimizer_href(HOSTILE), optimizer_href("evil-opt"), "index.html", task_href(TASK)):
        open_page(driver, site, name)
        assert_no_alert(driver)
        assert severe(driver) == [], name
    open_page(driver, site, optimizer_href(HOSTILE))
    body = driver.find_element(By.TAG_NAME, "body").text
    assert HOSTILE in body and HOSTILE_SCRIPT in body and HOSTILE_JS in body
    open_page(driver, site, optimizer_href("evil-opt"))
    assert HOSTILE_JS in driver.find_element(By.TAG_NAME, "body").text
    open_page(driver, site, "index.html")
    diagnostics = driver.find_element(By.ID, "diagnostics-ranking").text
    assert HOSTILE in diagnostics  # shown literally in the diagnostics ranking (its tasks are synthetic)
    driver.save_screenshot(str(tmp_path / "hostile-index.png"))


@pytest.fixture(scope="module")
def study_site(tmp_path_factory) -> Path:
    from _study_data import write_ab_results, write_studies

    from optbench.studies import load_studies

    base = tmp_path_factory.mktemp("study-browser")
    studies = load_studies(write_studies(base / "studies"))
    build_site(write_ab_results(base / "results"), base / "site", None, studies)
    return base / "site"


def test_study_pages_draw_their_evidence_without_console_errors(driver, study_site):
    from selenium.webdriver.common.by import By

    open_page(driver, study_site, "studies.html")
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "a[href^='study-'], "
                                                                                   "a[href*='/study-']")]
    assert {Path(h).name for h in links} >= {"study-ab.html", "study-geo.html"}
    assert driver.execute_script("return typeof window.Plotly") == "undefined"  # the index plots nothing
    for name, table, plot in (("study-ab.html", "study-pairs", "study-curve-t"),
                              ("study-geo.html", "study-correlations", "study-geo-t-sharpness")):
        open_page(driver, study_site, name)
        assert driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr"), f"{name}: no evidence rows"
        figure = driver.find_element(By.ID, plot)
        assert figure.find_elements(By.CSS_SELECTOR, "svg.main-svg"), f"{name}: {plot} not drawn"
        assert severe(driver) == [], name
        assert_no_alert(driver)
