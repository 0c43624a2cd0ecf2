"""Draw ``export_netron.png``: Netron's view of the CNN that ``export.md`` exports.

The page shows this screenshot beside nnc's own render of the same model. The script is run
by hand, when the export or Netron changes, not by the tests or the docs build (those need
neither Netron nor a browser):

    pip install netron selenium     # not nnc dependencies
    apt-get install chromium chromium-driver   # Debian's, at /usr/bin/chromium{,driver}
    python docs/howto/netron_view.py

It exports the model to a scratch folder, serves the file with Netron on localhost, opens it
in headless Chromium, waits until the graph is drawn, and writes the PNG beside this script.
Chromium runs with its network services switched off and a fresh profile, so it does not
stall on a machine without network. It takes a few seconds.
"""

from __future__ import annotations

import base64
import socket
import sys
import tempfile
import time
from pathlib import Path

import netron
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

import nnc
from nnc import Input, Linear, Tensor, relu, softmax
from nnc.conv import Conv2d, flatten, max_pool

OUT = Path(__file__).with_name("export_netron.png")
WINDOW = (900, 1400)  # CSS pixels: the graph is drawn at Netron's own zoom, 100%
SCALE = 2  # device pixels per CSS pixel: a sharp picture at half its size on the page
MARGIN = 24  # CSS pixels of Netron's background kept around the graph
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def model():
    """The CNN of export.md's "From Python", with fresh parameters."""
    cnn = (
        Input(Tensor[1, 8, 8])
        >> Conv2d(1, 16, 3, padding=1)
        >> relu
        >> max_pool(2)
        >> flatten
        >> Linear(None, 10)
        >> softmax
    )
    return cnn, cnn.init(seed=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def browser(profile: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--force-device-scale-factor={SCALE}",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def open_netron(driver: webdriver.Chrome, url: str) -> None:
    """Open Netron with its cookie notice already accepted (it would otherwise wait for a click)."""
    driver.get(url + "favicon.ico")  # the same origin, without starting the app
    driver.add_cookie({"name": "consent", "value": str(int(time.time() * 1000)), "path": "/"})
    driver.get(url)


def wait_for_graph(driver: webdriver.Chrome, timeout: float = 30.0) -> int:
    """Wait until Netron has drawn the graph's nodes (and their count stays put); return it."""
    deadline, last, steady = time.monotonic() + timeout, -1, 0
    while time.monotonic() < deadline:
        count = driver.execute_script("return document.querySelectorAll('svg g.node').length;")
        message = driver.execute_script(
            "const b = document.body.classList, t = document.getElementById('message-text');"
            "return (b.contains('notification') || b.contains('alert')) && t ? t.innerText : '';"
        )
        if message and not count:  # an error, or 'Please update to the newest version.'
            raise RuntimeError(f"Netron says: {message}")
        steady = steady + 1 if count and count == last else 0
        if steady >= 3:
            return count
        last = count
        time.sleep(0.3)
    raise TimeoutError(f"Netron drew no graph within {timeout:.0f}s (page title {driver.title!r})")


def screenshot_of_graph(driver: webdriver.Chrome) -> bytes:
    """A PNG of the drawn graph and a margin around it (not the empty canvas nor the toolbar).

    Netron writes shapes in the CJK angle brackets U+3008 and U+3009 (``〈16×1×3×3〉``),
    which Chromium draws as boxes without a CJK font; they become the mathematical
    ``⟨ ⟩`` that DejaVu Sans has.
    """
    box = driver.execute_script(
        """
        const origin = document.getElementById('origin');
        const walk = document.createTreeWalker(origin, NodeFilter.SHOW_TEXT);
        while (walk.nextNode()) {
            const node = walk.currentNode;
            node.nodeValue = node.nodeValue.replaceAll('\u3008', '\u27e8').replaceAll('\u3009', '\u27e9');
        }
        const r = origin.getBoundingClientRect();
        return [r.left, r.top, r.width, r.height];
        """
    )
    left, top, width, height = box
    x, y = max(left - MARGIN, 0), max(top - MARGIN, 0)
    clip = {
        "x": x,
        "y": y,
        "width": min(width + 2 * MARGIN, WINDOW[0] - x),
        "height": min(height + 2 * MARGIN, WINDOW[1] - y),
        "scale": 1,
    }
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip})
    return base64.b64decode(shot["data"])


def main() -> None:
    cnn, params = model()
    with tempfile.TemporaryDirectory(prefix="nnc-netron-") as scratch:
        path = Path(scratch) / "cnn.onnx"
        nnc.export(cnn, params, path)
        address = ("localhost", free_port())
        netron.start(str(path), address=address, browse=False)
        driver = None
        try:
            driver = browser(str(Path(scratch) / "profile"))
            open_netron(driver, f"http://{address[0]}:{address[1]}/")
            nodes = wait_for_graph(driver)
            time.sleep(0.5)  # let the last layout pass paint
            OUT.write_bytes(screenshot_of_graph(driver))
        finally:
            if driver is not None:
                driver.quit()
            netron.stop(address)
    print(f"wrote {OUT} ({nodes} nodes drawn)", file=sys.stderr)


if __name__ == "__main__":
    main()
