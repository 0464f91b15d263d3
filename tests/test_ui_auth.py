"""Logins and roles through the real app: Gradio's API as a rater and as an admin, and the page in Chromium."""

import csv
import shutil
from pathlib import Path

import pytest
from conftest import launch_locally
from gradio_client import Client

from workbench.auth import Users, add_user
from workbench.config import Config
from workbench.session import Arena
from workbench.ui.access import Access
from workbench.ui.app import build_app

PASSWORDS = {"rita": "rita-pass-1", "ada": "ada-pass-12"}
VARIANTS = ("base", "rag")
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def served(demo_index, tiny_llama_folder, tmp_path_factory):
    home = tmp_path_factory.mktemp("auth") / "home"
    shutil.copytree(demo_index[0], home)
    users_file = home.parent / "users.json"
    add_user(users_file, "rita", "rater", PASSWORDS["rita"])
    add_user(users_file, "ada", "admin", PASSWORDS["ada"])
    users = Users.load(users_file)
    config = Config.model_validate(
        {"model": {"base": str(tiny_llama_folder)}, "chat": {"max_new_tokens": 6, "variants": list(VARIANTS)}}
    )
    arena = Arena(config, "demo", home)
    app = build_app(home, "demo", config, arena=arena, access=Access(users))
    app.queue(default_concurrency_limit=1)
    url = launch_locally(app, auth=users.check)
    yield url, home
    app.close()
    arena.store.close()


def client(url: str, who: str) -> Client:
    return Client(url, auth=(who, PASSWORDS[who]), verbose=False)


ADMIN_CALLS = {  # endpoint -> arguments: train, index, search, report, the run picker, data, the training retry
    "/on_start_1": ["demo", False, *[None] * 25],
    "/on_build": ["demo"],
    "/on_search": ["demo", "warranty", 3],
    "/on_refresh_1": ["latest", ""],
    "/on_pick_run": ["demo"],
    "/on_prepare": ["mine", [], None, False],
    "/on_build_1": ["demo"],
    "/on_retry": [],
}


def test_a_rater_cannot_train_index_search_report_or_read_the_corpus_through_the_api(served):
    url, _ = served
    rater = client(url, "rita")
    for endpoint, args in ADMIN_CALLS.items():
        with pytest.raises(Exception, match="only an admin") as refused:
            rater.predict(*args, api_name=endpoint)
        assert "Traceback" not in str(refused.value), endpoint
    found = client(url, "ada").predict("demo", "warranty", 3, api_name="/on_search")
    assert "wb-" in found and "only an admin" not in found
    # The page load that fills the Data tab's quality report (corpus text) gives a rater nothing, quietly.
    assert "Data quality report" not in str(rater.predict(api_name="/on_current"))
    assert "Data quality report: demo" in client(url, "ada").predict(api_name="/on_current")


def _ratings_csv(result) -> list[dict]:
    _, download = result
    path = download["value"] if isinstance(download, dict) else download
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_stars_saved_before_the_vote_name_no_variant_anywhere_a_rater_can_reach(served):
    url, _ = served
    rater = client(url, "rita")
    rater.predict("", api_name="/on_load")  # what the page does first: the variant choices for this session
    rater.predict("", api_name="/on_accept")
    rater.predict("How long is the warranty on a Skylark S2?", list(VARIANTS), "", api_name="/on_ask")
    stars = ["4", "2", None, None]
    rater.predict(*stars, False, False, False, False, None, "", api_name="/on_submit")  # no vote

    table, _ = mine = rater.predict("", api_name="/on_open")
    assert not any(name in table for name in VARIANTS)
    rows = _ratings_csv(mine)
    assert sorted(r["variant"] for r in rows) == ["column A", "column B"]
    assert {r["rater"] for r in rows} == {"rita"}

    rater.predict(*stars, False, False, False, False, "A", "", api_name="/on_submit")  # the vote reveals
    table, _ = mine = rater.predict("", api_name="/on_open")
    assert all(name in table for name in VARIANTS)
    assert sorted(r["variant"] for r in _ratings_csv(mine)) == sorted(VARIANTS)
    other, _ = client(url, "ada").predict("", api_name="/on_open")
    assert "0 ratings by ada" in other  # each rater sees their own ratings only


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install -y chromium)")
def test_in_the_browser_a_rater_gets_the_arena_and_an_admin_every_tab(served):
    from playwright.sync_api import sync_playwright

    url, _ = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        for who, tabs in (
            ("rita", {"Arena", "Your ratings"}),
            ("ada", {"Arena", "Your ratings", "Eval", "Report", "Train", "Index", "Data"}),
        ):
            page = browser.new_page()
            page.goto(url, wait_until="load")
            page.locator("input[type=text], input[name=username]").first.fill(who)
            page.locator("input[type=password]").fill(PASSWORDS[who])
            page.locator("button[type=submit], button:has-text('Login')").first.click()
            page.wait_for_selector("#wb-question textarea", timeout=60_000)
            page.wait_for_function("() => document.querySelector('#wb-status').innerText.includes('rate as')")
            page.wait_for_timeout(500)  # the role's tabs are set by the same page load
            shown = {t.strip() for t in page.get_by_role("tab").all_inner_texts()}
            assert shown == tabs, who
            assert f"You rate as {who}" in page.locator("#wb-status").inner_text()
            picker = page.locator("#wb-run")  # the run picker: admins only, with each run's steps
            assert picker.is_visible() == (who == "ada"), who
            if who == "ada":
                assert "demo · prepared, indexed" in picker.locator("input").input_value()
            page.close()
        browser.close()
