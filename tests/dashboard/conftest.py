"""Fixtures for the dashboard's browser tests: a fresh `sproutd --http` per test and one
headless Chromium (Debian's chromium and chromium-driver, driven by selenium) for the
session.

The binary is $SPROUTD, or target/debug/sproutd of this checkout. Screenshots go to
$DASHBOARD_SCREENSHOTS, or target/dashboard-screenshots/. Every wait is a bounded poll
of a condition (WebDriverWait, or a connect loop); nothing sleeps to let things settle.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPROUTD = os.environ.get("SPROUTD", str(ROOT / "target" / "debug" / "sproutd"))
SHOTS = Path(os.environ.get("DASHBOARD_SCREENSHOTS", ROOT / "target" / "dashboard-screenshots"))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proto:
    """A minimal beanstalkd client."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.s.makefile("rb")

    def close(self):
        self.f.close()
        self.s.close()

    def cmd(self, line, body=None):
        data = line.encode() + b"\r\n"
        if body is not None:
            data += body + b"\r\n"
        self.s.sendall(data)
        return self.f.readline().decode().rstrip("\r\n")

    def data(self, head):
        n = int(head.split()[-1])
        return self.f.read(n + 2)[:-2]

    def yaml(self, line):
        head = self.cmd(line)
        assert head.startswith("OK "), f"{line}: {head}"
        out = {}
        for l in self.data(head).decode().splitlines():
            if ": " in l:
                k, v = l.split(": ", 1)
                out[k] = v.strip('"')
        return out

    def put(self, body, pri=0, delay=0, ttr=60):
        r = self.cmd(f"put {pri} {delay} {ttr} {len(body)}", body)
        assert r.startswith("INSERTED "), r
        return int(r.split()[1])

    def put_many(self, bodies):
        """Pipelined puts: their ids."""
        msg = b"".join(b"put 0 0 60 %d\r\n%s\r\n" % (len(b), b) for b in bodies)
        self.s.sendall(msg)
        ids = []
        for _ in bodies:
            r = self.f.readline().decode()
            assert r.startswith("INSERTED "), r
            ids.append(int(r.split()[1]))
        return ids


class Server:
    def __init__(self, proc, port, http):
        self.proc, self.port, self.http = proc, port, http
        self.url = f"http://127.0.0.1:{http}"

    def proto(self):
        return Proto(self.port)


def _ready(port, pid):
    try:
        p = Proto(port)
        try:
            return p.yaml("stats").get("pid") == str(pid)
        finally:
            p.close()
    except OSError:
        return False


@pytest.fixture
def sproutd():
    if not os.path.exists(SPROUTD):
        pytest.fail(f"{SPROUTD} is missing: build it first (cargo build -p sproutd)")
    port, http = free_port(), free_port()
    proc = subprocess.Popen(
        [SPROUTD, "-l", "127.0.0.1", "-p", str(port), "--http", f"127.0.0.1:{http}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while not _ready(port, proc.pid):
        if proc.poll() is not None:
            pytest.fail(f"sproutd exited: {proc.stderr.read().decode()}")
        assert time.monotonic() < deadline, "sproutd not ready after 10 s"
        time.sleep(0.005)
    yield Server(proc, port, http)
    proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed (pip install selenium)")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            pytest.fail(f"{path} is missing (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="sprout-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,800",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser):
    """The browser, its console checked for errors after the test."""
    browser.get_log("browser")  # what earlier tests left
    browser.set_window_size(1280, 800)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    yield browser
    # Leave the page (closing its event stream) while its server still runs: a server
    # killed under an open stream would log a network error into the next test.
    browser.get("about:blank")
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, f"console errors: {errors}"
    browser.delete_all_cookies()


def shot(driver, name):
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
