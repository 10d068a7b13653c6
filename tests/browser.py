"""A small driver for headless Chromium over the DevTools protocol, standard library only.

Chromium is started with --remote-debugging-pipe: it reads protocol commands
(JSON, each ended by a NUL byte) from file descriptor 3 and writes answers and
events to descriptor 4. A shell maps our pipes onto those two numbers, so no
websocket library is needed. Used by tests/test_explore_browser.py and by
benchmarks/explore_pages.py (screenshots and redraw times).

    with Browser() as browser:
        page = browser.open("http://127.0.0.1:8765/?view=tokens")
        page.wait("document.body.dataset.ready === 'yes'")
        page.evaluate("document.title")
        page.requests      # every URL the page asked for (Network.requestWillBeSent)
"""
import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         # nothing resolves except the loopback address: a page that tried to load
         # anything from elsewhere would fail (and its request is recorded anyway)
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         "--remote-debugging-pipe"]


class BrowserError(RuntimeError):
    """Chromium did not start, answered with an error, or a wait timed out."""


def find_chromium():
    """The path of Debian's chromium (or chromium-browser), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium process, driven through its DevTools pipe."""

    def __init__(self, path=None, width=1280, height=900, timeout=60):
        self.path = path or find_chromium()
        if self.path is None:
            raise BrowserError("chromium is not installed (apt-get install -y chromium)")
        self.width, self.height, self.timeout = width, height, timeout
        self._profile = tempfile.TemporaryDirectory()
        self._proc = subprocess.Popen(
            ["sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null', self.path, *FLAGS,
             f"--user-data-dir={self._profile.name}", f"--window-size={width},{height}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._buffer = b""
        self._next_id = 0
        self.events = []  # (sessionId, method, params) of every event seen

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ protocol
    def send(self, method, params=None, session=None, timeout=None):
        """Send one command and wait for its answer; returns its "result"."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            self._proc.stdin.write(json.dumps(message).encode() + b"\0")
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise BrowserError("chromium exited") from None
        answer = self._read_until(self._next_id, timeout or self.timeout)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def _read_until(self, wanted, timeout):
        deadline = time.monotonic() + timeout
        fd = self._proc.stdout.fileno()
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if message.get("id") == wanted:
                    return message
                if "method" in message:
                    self.events.append((message.get("sessionId"), message["method"],
                                        message.get("params", {})))
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise BrowserError(f"no answer from chromium within {timeout} s")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise BrowserError("chromium exited")
            self._buffer += chunk

    def open(self, url):
        """A new tab showing `url`, its network requests recorded."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        page = Page(self, session, target)
        self.send("Network.enable", session=session)
        self.send("Page.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": self.width,
                  "height": self.height, "deviceScaleFactor": 1, "mobile": False},
                  session=session)
        page.goto(url)
        return page

    def close(self):
        if self._proc.poll() is None:
            try:
                self.send("Browser.close", timeout=10)
            except BrowserError:
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._profile.cleanup()


class Page:
    """One tab: evaluate JavaScript, wait for a condition, take a screenshot."""

    def __init__(self, browser, session, target):
        self.browser, self.session, self.target = browser, session, target

    def send(self, method, params=None, timeout=None):
        return self.browser.send(method, params, self.session, timeout)

    def goto(self, url):
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression, timeout=None):
        """The value of a JavaScript expression (promises awaited), as JSON-able data."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error: {text}")
        return result["result"].get("value")

    def wait(self, condition, timeout=30, every=0.02):
        """Poll a JavaScript condition until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(condition)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout} s waiting for: {condition}")
            time.sleep(every)

    @property
    def requests(self):
        """Every URL this tab requested so far (documents, scripts, fetches, images)."""
        return [params["request"]["url"] for session, method, params in self.browser.events
                if session == self.session and method == "Network.requestWillBeSent"]

    def screenshot(self, path, clip=None):
        """Save a PNG of the viewport (or of `clip` = {x, y, width, height})."""
        params = {"format": "png"}
        if clip:
            params["clip"] = {**clip, "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path
