"""The replication report as one page (the report stage's `replication.html`), checked in a real browser.

Headless Chromium (Debian's package `chromium`; `.ci/run` installs it where it is missing) opens the page in a
window 1280 px wide, as a reader's laptop would, and the test holds that:

- the page loads nothing but itself: every figure is a data: URI and no script or style comes from the network
  (it is read offline, mailed, or opened from a fresh clone);
- no image is broken (each one decodes);
- no link is broken: a #fragment names an element of the page, a relative link a file beside the page; web
  links are listed, not fetched (the machine may be offline);
- nothing overflows sideways at 1280 px: the page is no wider than the window, and no box hides a line it cut
  off (content wider than its box under `overflow: hidden`): long code and text lines wrap, wide tables scroll
  inside their own box;
- and it saves a screenshot of the first screen, tests/_screenshots/<page>.png (ignored by git), for a person
  to look at.

The page checked is the golden report notebook (tests/notebooks/report.ipynb, executed at the test profile)
rendered by the very command the report stage runs (`registry.nbconvert_command`), and every committed
`results/<profile>/report/replication.html`.

Chromium is driven through its DevTools protocol over a pipe (`--remote-debugging-pipe`: JSON messages ended by
a NUL byte, read from file descriptor 3 and written to 4), which needs nothing beyond the standard library.
Flags: no sandbox (containers run as root), no GPU, and nothing that phones home (no QUIC, background
networking, component updates or sync), in a fresh profile folder.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "tests" / "_screenshots"
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium; "
                                                          ".ci/run installs it where it can)")
WIDTH, HEIGHT = 1280, 800
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}"]


class Chromium:
    """One headless Chromium, driven over the DevTools pipe; `open(url)` gives a page session."""

    def __init__(self, user_data_dir: Path, timeout: float = 60.0):
        self.timeout = timeout
        to_browser_r, self._to_browser = os.pipe()  # it reads commands on its fd 3
        self._from_browser, from_browser_w = os.pipe()  # and writes replies on its fd 4

        def fds_3_and_4():  # in the child, before exec: the pipe's ends become its fds 3 and 4 (dup2 makes them
            import fcntl  # inheritable; every other descriptor of ours is not, and closes at exec)

            read_end, write_end = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w))
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=False,
            preexec_fn=fds_3_and_4)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer, self._next_id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its reply (events that arrive meanwhile are kept in `events`)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        reply = self._wait(lambda m: m.get("id") == self._next_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str) -> dict:
        seen = next((e for e in self.events if e["method"] == method and e.get("sessionId") == session), None)
        return seen or self._wait(lambda m: m.get("method") == method and m.get("sessionId") == session)

    def _wait(self, wanted) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if wanted(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"Chromium said nothing for {self.timeout:.0f} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its pipe: " + self.process.stderr.read().decode()[-2000:])
            self._buffer += chunk

    def open(self, url: str) -> str:
        """A new tab at `url`, WIDTH x HEIGHT, loaded (its load event fired); returns its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}, session)
        self.send("Page.navigate", {"url": url}, session)
        self.wait_event("Page.loadEventFired", session)
        return session

    def evaluate(self, expression: str, session: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise RuntimeError(json.dumps(result["exceptionDetails"])[:2000])
        return result["result"]["value"]

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001  (it may be gone already; it is killed below)
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


# What the page looks like from inside: run in the page once it has loaded.
INSPECT = """(async () => {
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  const root = document.documentElement;
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                     (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const text = el => (el.innerText || '').trim().split('\\n')[0].slice(0, 80);
  const scrolls = el => { for (let a = el.parentElement; a; a = a.parentElement) {
      if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(a).overflowX)) return true; } return false; };
  const cut = [], wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden' || el.getClientRects().length === 0) continue;
    if (['hidden', 'clip'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1 && el.innerText)
      cut.push(name(el) + ': ' + text(el));
    if (el.getBoundingClientRect().right > root.clientWidth + 1 && !scrolls(el)) wide.push(name(el) + ': ' + text(el));
  }
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id)
      .concat([...document.querySelectorAll('a[name]')].map(a => a.name));
  return {window: root.clientWidth, width: root.scrollWidth, title: document.title,
          images: [...document.images].map(i => ({src: i.currentSrc.slice(0, 40), ok: i.complete && i.naturalWidth > 0})),
          links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
          ids: ids, cut: cut.slice(0, 10), wide: wide.slice(0, 10),
          code: document.querySelectorAll('.jp-InputArea-editor, .jp-InputPrompt:not(:empty)').length,
          headings: [...document.querySelectorAll('h1, h2')].map(h => h.textContent.replace('\u00b6', '').trim())};
})()"""


def look_at(page: Path, screenshot: Path) -> dict:
    """Open `page` in a fresh headless Chromium: what INSPECT finds, every URL the page requested and every
    request that failed; the first screen saved to `screenshot`."""
    profile = Path(tempfile.mkdtemp(prefix="salrepro-chromium-"))  # a fresh profile: no state from another run
    browser = Chromium(profile)
    try:
        session = browser.open(page.resolve().as_uri())
        found = browser.evaluate(INSPECT, session)
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session)["data"]
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot))
        events = [e for e in browser.events if e.get("sessionId") == session]
        found["requests"] = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
        found["failed"] = [e["params"].get("errorText", "") for e in events if e["method"] == "Network.loadingFailed"]
        return found
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)


def broken_links(page: Path, found: dict) -> list[str]:
    """The links of `page` that lead nowhere: a #fragment no element has, a relative file that is absent."""
    ids, broken = set(found["ids"]), []
    for href in found["links"]:
        parts = urlsplit(href)
        if parts.scheme in ("http", "https", "mailto"):
            continue  # web links: listed, not fetched (offline)
        if parts.scheme or parts.netloc:
            broken.append(f"{href} (a {parts.scheme or 'network'} link: the page must stand alone)")
        elif parts.path:
            if not (page.parent / unquote(parts.path)).exists():
                broken.append(f"{href} (no such file beside the page)")
        elif parts.fragment and unquote(parts.fragment) not in ids:
            broken.append(f"{href} (no element with that id)")
    return broken


def render_golden(tmp_path: Path) -> Path:
    """The golden report notebook rendered to one page by the report stage's own command."""
    from salrepro.pipeline import registry

    executed = tmp_path / "report.ipynb"
    shutil.copy(ROOT / "tests" / "notebooks" / "report.ipynb", executed)
    command = registry.nbconvert_command(str(executed), page="replication")
    bin_dir = str(Path(sys.executable).parent)  # jupyter of this environment
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    run = subprocess.run(shlex.split(command), cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    page = tmp_path / "replication.html"
    assert page.is_file() and not (tmp_path / "report.html").exists()  # the page alone: the stage's other command
    return page


PAGES = ["golden"] + sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("results/*/report/replication.html"))


@pytest.mark.parametrize("which", PAGES)
def test_the_replication_page_in_a_browser(which, tmp_path):
    page = render_golden(tmp_path) if which == "golden" else ROOT / which
    name = "replication-golden" if which == "golden" else f"replication-{Path(which).parts[1]}"
    t0 = time.perf_counter()
    found = look_at(page, SCREENSHOTS / f"{name}.png")
    seconds = time.perf_counter() - t0
    print(f"{which}: {page.stat().st_size / 1e6:.1f} MB, {len(found['images'])} images, {len(found['links'])} links, "
          f"Chromium {seconds:.1f} s; screenshot {SCREENSHOTS / name}.png")
    own = page.resolve().as_uri()
    assert [u for u in found["requests"] if u != own and not u.startswith("data:")] == []  # it stands alone
    assert found["failed"] == []
    assert found["images"] and all(i["ok"] for i in found["images"]), [i for i in found["images"] if not i["ok"]]
    assert broken_links(page, found) == []
    assert WIDTH - 20 <= found["window"] <= WIDTH  # the window less its vertical scroll bar, if it shows one
    assert found["width"] <= found["window"], found["wide"]
    assert found["cut"] == []
    assert found["headings"] and found["code"] == 0  # text, tables and figures; no code, no "In [n]:"
    png = (SCREENSHOTS / f"{name}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == WIDTH


def test_broken_links_are_found(tmp_path):
    """The link check can fail: a missing anchor, a missing file and a file: link are each named."""
    page = tmp_path / "p.html"
    (tmp_path / "there.txt").write_text("x")
    found = {"ids": ["a"], "links": ["#a", "#b", "there.txt", "gone.txt", "https://arxiv.org/abs/2601.21561",
                                     "file:///etc/hosts"]}
    assert broken_links(page, found) == ["#b (no element with that id)", "gone.txt (no such file beside the page)",
                                         "file:///etc/hosts (a file link: the page must stand alone)"]


def test_a_page_that_overflows_or_hides_a_line_is_caught(tmp_path):
    """The browser checks can fail: a 2000 px table, a cut-off line and a broken image are each seen."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><table><tr><td style='white-space:nowrap'>" + "wide " * 400 + "</td></tr></table>"
                    "<div style='overflow:hidden;width:200px'><pre>" + "cut " * 200 + "</pre></div>"
                    "<img src='missing.png'></body></html>")
    found = look_at(page, tmp_path / "bad.png")
    assert found["width"] > found["window"] and found["wide"]
    assert any(c.startswith("div: cut cut") for c in found["cut"])
    assert [i["ok"] for i in found["images"]] == [False] and found["failed"]
