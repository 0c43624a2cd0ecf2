"""The interactive page, in a real headless browser: it loads offline, clusters collapse and
expand on click, × N blocks unfold, hovering a layer shows its path and parameters."""

import os
import re
import shutil
import tempfile

import pytest

from nnc import Input, Linear, Vec, relu, residual, softmax
from nnc.html_page import html_page, structure
from nnc.render import render

BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def model():
    block = lambda: residual(Linear(32, 32) >> relu)  # noqa: E731
    return Input(Vec[64]) >> Linear(None, 32) >> relu >> block() >> block() >> Linear(32, 10) >> softmax


def found(program):
    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(
                f"{program} is not installed; scripts/setup.sh installs Debian's chromium and chromium-driver"
            )
        pytest.skip(f"{program} is not installed")
    return path


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver  # a [dev] dependency
    from selenium.webdriver.chrome.service import Service

    found("dot")
    options = webdriver.ChromeOptions()
    options.binary_location = found("chromium")
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="nnc-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(found("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    found("dot")
    return render(model(), tmp_path_factory.mktemp("page") / "model.html")


def test_the_page_is_one_file_that_needs_no_network(page):
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.count("<svg") == 2  # folded and unfolded
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text)  # no CDN, no link out
    assert "<script src" not in text and "<link" not in text


def test_the_structure_names_each_clusters_layers_and_tooltips():
    source = (
        "digraph m {\n  subgraph cluster_1 {\n"
        '    graph [label=<<B>× 2</B>>, tooltip="a … b: 2 copies"]\n'
        '    n1 [label=<x>, tooltip="a/linear_0\\nW: Mat[2, 3]"]\n  }\n  n2 [label=<y>]\n}\n'
    )
    assert structure(source) == {
        "members": {"cluster_1": ["n1"]},
        "tips": {"cluster_1": "a … b: 2 copies", "n1": "a/linear_0\nW: Mat[2, 3]"},
        "repeats": ["cluster_1"],
    }
    assert "<\\/script>" in html_page(
        "t", [("folded", 'digraph m {\n  n1 [tooltip="</script>"]\n}', "<svg/>")]
    )


def test_clusters_collapse_and_expand_on_click(browser, page):
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    folded = browser.find_element(By.CSS_SELECTOR, '.view[data-view="folded"]')
    residual_cluster = next(
        c
        for c in folded.find_elements(By.CSS_SELECTOR, "g.cluster")
        if "residual_0" in c.text and "×" not in c.text
    )
    inside = [n for n in folded.find_elements(By.CSS_SELECTOR, "g.node") if "Linear(32 -> 32)" in n.text]
    assert len(inside) == 1 and inside[0].is_displayed()
    residual_cluster.find_elements(By.TAG_NAME, "text")[-1].click()
    assert residual_cluster.get_attribute("data-collapsed") == "true"
    assert not inside[0].is_displayed()
    assert "hidden" in residual_cluster.text  # its title says what it holds
    residual_cluster.find_elements(By.TAG_NAME, "text")[-1].click()
    assert residual_cluster.get_attribute("data-collapsed") == "false" and inside[0].is_displayed()


def test_hovering_a_layer_shows_its_path_and_parameters(browser, page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    node = next(
        n
        for n in browser.find_elements(By.CSS_SELECTOR, '.view[data-view="folded"] g.node')
        if "Linear(32 -> 32)" in n.text
    )
    ActionChains(browser).move_to_element(node).perform()
    tip = browser.find_element(By.ID, "tip")
    assert tip.is_displayed()
    assert tip.text.splitlines() == ["residual_0/serial_0/linear_0", "W: Mat[32, 32]", "b: Vec[32]"]


def test_a_repeated_block_unfolds_and_folds_again(browser, page):
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    views = {v.get_attribute("data-view"): v for v in browser.find_elements(By.CSS_SELECTOR, ".view")}
    assert views["folded"].is_displayed() and not views["unfolded"].is_displayed()
    repeat = next(c for c in views["folded"].find_elements(By.CSS_SELECTOR, "g.cluster") if "× 2" in c.text)
    repeat.find_elements(By.TAG_NAME, "text")[0].click()
    assert views["unfolded"].is_displayed() and not views["folded"].is_displayed()
    copies = [
        n for n in views["unfolded"].find_elements(By.CSS_SELECTOR, "g.node") if "Linear(32 -> 32)" in n.text
    ]
    assert len(copies) == 2  # every copy drawn
    browser.find_element(By.ID, "fold").click()
    assert views["folded"].is_displayed() and not views["unfolded"].is_displayed()


def test_a_screenshot_of_the_page_is_a_picture(browser, page, tmp_path):
    browser.get(page.as_uri())
    browser.set_window_size(1000, 1400)
    shot = browser.get_screenshot_as_png()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
    (tmp_path / "page.png").write_bytes(shot)


def test_the_backward_and_the_primitives_become_pages_too(browser, tmp_path):
    from selenium.webdriver.common.by import By

    found("dot")
    for kind in ("grad", "ops"):
        out = render(Linear(2, 3) >> relu, tmp_path / f"{kind}.html", **{kind: True})
        browser.get(out.as_uri())
        words = browser.find_element(By.TAG_NAME, "body").text
        assert ("∂ linear_0" in words) if kind == "grad" else ("backward" in words and "dot" in words)
