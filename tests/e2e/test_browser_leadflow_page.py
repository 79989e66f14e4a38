"""Browser test: headless Chromium logs in to `airflow standalone` and reads the Leadflow page.

1. a CRM sandbox and one in-process pipeline run fill a temporary warehouse; the pools are set
   the way `make airflow-db` sets them;
2. `airflow standalone` (with plugins/ and dags/ of this checkout) starts on a free port;
3. Chromium, driven over the W3C WebDriver protocol (chromedriver + requests), signs in through
   Airflow's login page and opens /leadflow/: the funnel and the runs table show real numbers;
4. as a user does: the DAG page of leadflow_hubspot, its Trigger form, the "Dry run" switch on,
   Trigger; the UI opens the new run, which succeeds; the Leadflow page then shows its preview.
   Screenshots go to screenshots/ (and the page source too when the test fails).

Chromium comes from the Debian packages `chromium` and `chromium-driver`
(scripts/ensure_test_tools.sh installs them). Every process started here is stopped at the end.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import requests

from e2e_processes import stop_group

from leadflow.devrun import start_sandbox, stop

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCREENSHOTS = REPO / "screenshots"
CONTACTS = 300
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # W3C WebDriver element reference key

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (requests.RequestException, KeyError, ValueError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")


# Date (and Date.now) shifted by a fixed number of milliseconds, for every page the browser opens.
_MOVED_DATE_JS = """(() => {
  const offset = %d, RealDate = Date;
  class MovedDate extends RealDate {
    constructor(...args) { if (args.length === 0) super(RealDate.now() + offset); else super(...args); }
    static now() { return RealDate.now() + offset; }
  }
  globalThis.Date = MovedDate;
})();"""


class WebDriver:
    """The handful of W3C WebDriver commands this test needs, over plain HTTP."""

    def __init__(self, port: int, user_data_dir: Path):
        self.base = f"http://127.0.0.1:{port}"
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless", "--no-sandbox", "--disable-gpu",
                            "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                            f"--user-data-dir={user_data_dir}", "--window-size=1400,1000",
                        ],
                    },
                }
            }
        }
        resp = requests.post(f"{self.base}/session", json=caps, timeout=120)
        resp.raise_for_status()
        self.session = resp.json()["value"]["sessionId"]
        days = int(os.environ.get("TEST_MOVE_CLOCK_DAYS") or 0)
        if days:
            # A moved-clock session moves the browser too: the UI's trigger form sends the
            # browser's "now" as the run's logical date, and Airflow refuses one in its future.
            self._cmd("POST", "/goog/cdp/execute", {"cmd": "Page.addScriptToEvaluateOnNewDocument",
                                                    "params": {"source": _MOVED_DATE_JS % (days * 86_400_000)}})

    def _cmd(self, method: str, path: str, body: dict | None = None):
        resp = requests.request(method, f"{self.base}/session/{self.session}{path}",
                                json=body if body is not None else ({} if method == "POST" else None),
                                timeout=120)
        data = resp.json()
        if resp.status_code >= 400:
            raise RuntimeError(f"webdriver {method} {path}: {data.get('value', {}).get('message', data)}")
        return data.get("value")

    def get(self, url: str) -> None:
        self._cmd("POST", "/url", {"url": url})

    @property
    def url(self) -> str:
        return self._cmd("GET", "/url")

    def find(self, css: str) -> str | None:
        try:
            return self._cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]
        except RuntimeError:
            return None

    def type(self, element: str, text: str) -> None:
        self._cmd("POST", f"/element/{element}/value", {"text": text})

    def click(self, element: str) -> None:
        self._cmd("POST", f"/element/{element}/click")

    def js(self, script: str, *args):
        return self._cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path: Path) -> None:
        height = int(self.js("return document.documentElement.scrollHeight") or 1000)
        self._cmd("POST", "/window/rect", {"width": 1400, "height": min(max(height + 40, 800), 6000)})
        path.write_bytes(base64.b64decode(self._cmd("GET", "/screenshot")))

    def quit(self) -> None:
        try:
            requests.delete(f"{self.base}/session/{self.session}", timeout=30)
        except requests.RequestException:
            pass


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """A sandbox, one finished pipeline run and `airflow standalone`; yields (base URL, env, password)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Chromium is missing: run scripts/ensure_test_tools.sh (installs chromium, chromium-driver)")
    home = tmp_path_factory.mktemp("airflow-home")
    var = tmp_path_factory.mktemp("var")
    port = _free_port()
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="5",
        # Only the manual run: no cron run is created when the DAG is unpaused (it would queue
        # before the dry run, max_active_runs=1, and double the test's time).
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
        LEADFLOW_VAR_DIR=str(var),
        LEADFLOW_WAREHOUSE_URL=f"sqlite:///{var / 'warehouse.db'}",
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    sandbox, sandbox_env = start_sandbox(var, CONTACTS, ["--seed", "7"])
    env.update(sandbox_env)
    standalone = None
    log = open(home / "standalone.log", "wb")
    try:
        # as `make airflow-db` does; at the same time as the pipeline run (both take seconds)
        pools = subprocess.Popen([str(BIN / "airflow"), "pools", "set", "leadflow_hubspot", "4",
                                  "HubSpot API calls"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
        subprocess.run([sys.executable, "-m", "leadflow.cli", "run", "--crm", "hubspot"], env=env,
                       check=True, capture_output=True, timeout=300)
        _, pool_err = pools.communicate(timeout=300)
        assert pools.returncode == 0, pool_err.decode(errors="replace")[-2000:]
        standalone = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=env, cwd=str(home),
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"

        def ready():
            if standalone.poll() is not None:
                raise AssertionError(f"airflow standalone exited; see {home / 'standalone.log'}")
            return requests.get(f"{base}/leadflow/api/data", timeout=5).status_code == 401

        _wait(ready, 300, "the Airflow API server with the Leadflow plugin")
        passwords = home / "simple_auth_manager_passwords.json.generated"
        _wait(lambda: passwords.exists() and json.loads(passwords.read_text()).get("admin"), 60,
              "the generated admin password")
        yield base, env, json.loads(passwords.read_text())["admin"]
    finally:
        if standalone is not None:
            stop_group(standalone)
        stop(sandbox)
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    port = _free_port()
    driver_proc = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
    driver = None
    try:
        _wait(lambda: requests.get(f"http://127.0.0.1:{port}/status", timeout=2).json()["value"]["ready"],
              60, "chromedriver", interval=0.2)
        driver = WebDriver(port, tmp_path_factory.mktemp("chromium-profile"))
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        stop_group(driver_proc, grace=10)


def _login(browser: WebDriver, base: str, password: str) -> None:
    browser.get(f"{base}/leadflow/")  # not signed in: the page sends the browser to the login
    _wait(lambda: "/auth/login" in browser.url, 60, "the redirect to the login page", 0.5)
    user_box = _wait(lambda: browser.find("input[name='username']"), 60, "the login form", 0.5)
    browser.type(user_box, "admin")
    browser.type(browser.find("input[name='password']"), password)
    browser.click(browser.find("button[type='submit']"))
    _wait(lambda: browser.url.rstrip("/").endswith("/leadflow")
          and browser.find("#runs-table"), 60, "the Leadflow page after login", 0.5)


def _runs_table(browser: WebDriver) -> list[list[str]]:
    return browser.js(
        "return Array.from(document.querySelectorAll('#runs-table tr')).map("
        "r => Array.from(r.cells).map(c => c.innerText.trim()))"
    )


def _api_token(base: str, password: str) -> str:
    resp = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
    resp.raise_for_status()
    return resp.json()["access_token"]


def _dry_run_from_the_trigger_form(browser: WebDriver, base: str, password: str) -> str:
    """Trigger leadflow_hubspot from its Trigger form in the Airflow UI with "Dry run" switched
    on, wait for the run to succeed; return its run id."""
    headers = {"Authorization": f"Bearer {_api_token(base, password)}"}
    dag = f"{base}/api/v2/dags/leadflow_hubspot"
    # The API tells reliably when the dag-processor has parsed the DAG; the UI would need reloads.
    _wait(lambda: requests.get(dag, headers=headers, timeout=10).status_code == 200, 240,
          "the DAG to be parsed", 2)

    browser.get(f"{base}/dags/leadflow_hubspot")
    browser.click(_wait(lambda: browser.find("[data-testid='trigger-dag-button']"), 60,
                        "the Trigger button on the DAG page", 0.5))
    submit = _wait(lambda: browser.find("[role='dialog'] [data-testid='trigger-dag-submit']"), 60,
                   "the Trigger form", 0.5)
    # New DAGs start paused: the form offers to unpause on trigger, ticked by default.
    assert browser.js(
        "const label = Array.from(document.querySelectorAll('[role=dialog] label'))"
        ".find(l => l.innerText.includes('Unpause leadflow_hubspot'));"
        "return !!label && label.querySelector('input[type=checkbox]').checked")
    # Boolean Params are switches; the form names each field element_<param>.
    dry_run = "[role='dialog'] input[name='element_dry_run']"
    assert browser.js(f"return document.querySelector(\"{dry_run}\").checked") is False
    browser.click(browser.find("[role='dialog'] label[id='switch:element_dry_run']"))
    _wait(lambda: browser.js(f"return document.querySelector(\"{dry_run}\").checked"), 10,
          "the Dry run switch to turn on", 0.2)
    _save_screenshot(browser, "trigger_form.png")
    browser.click(submit)

    # After the trigger the UI opens the new run's page: its URL holds the run id.
    run_path = f"{base}/dags/leadflow_hubspot/runs/"
    _wait(lambda: browser.url.startswith(run_path) and len(browser.url) > len(run_path), 60,
          "the page of the triggered run", 0.5)
    run_id = unquote(browser.url[len(run_path):].split("/")[0].split("?")[0])
    run = requests.get(f"{dag}/dagRuns/{run_id}", headers=headers, timeout=30).json()
    assert run["conf"]["dry_run"] is True and run["run_type"] == "manual", run

    def finished():
        state = requests.get(f"{dag}/dagRuns/{run_id}", headers=headers, timeout=30).json()["state"]
        if state == "failed":
            tis = requests.get(f"{dag}/dagRuns/{run_id}/taskInstances", headers=headers, timeout=30).json()
            raise AssertionError(f"the dry run {run_id} failed: " + ", ".join(
                f"{t['task_id']}[{t['map_index']}]={t['state']}" for t in tis["task_instances"]))
        return state == "success"

    _wait(finished, 600, f"the dry run {run_id}", 3)

    # The run's page shows the outcome too (loaded afresh: the check must not hang on its polling).
    browser.get(f"{run_path}{quote(run_id, safe='')}")
    _wait(lambda: (browser.js("const b = document.querySelector('[data-testid=header-card] "
                              "[data-testid=state-badge]'); return b ? b.innerText : ''") or "").strip() == "Success",
          60, "the run page to show Success", 0.5)
    return run_id


@contextmanager
def _evidence_on_failure(browser: WebDriver):
    """A failed browser step leaves a screenshot and the page source in screenshots/."""
    try:
        yield
    except BaseException:
        try:
            _save_screenshot(browser, "failure.png")
            (SCREENSHOTS / "failure.html").write_text(browser.js("return document.documentElement.outerHTML"))
            print(f"failure screenshot and page source of {browser.url} in {SCREENSHOTS}")
        except Exception as exc:  # the browser itself may be what failed
            print(f"no failure screenshot: {exc}")
        raise


def _save_screenshot(browser: WebDriver, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    shot = SCREENSHOTS / name
    browser.screenshot(shot)
    return shot


def test_leadflow_page_shows_funnel_runs_and_the_preview_of_a_dry_run_triggered_from_the_ui_form(
        airflow, browser):
    base, env, password = airflow
    with _evidence_on_failure(browser):
        # unauthenticated API calls are refused by the plugin app itself
        assert requests.get(f"{base}/leadflow/api/data", timeout=10).status_code == 401

        _login(browser, base, password)
        # The browser's clock is the session's (moved too when the session's is): the trigger
        # form below sends it as the run's logical date.
        assert abs(browser.js("return Date.now()") / 1000 - time.time()) < 600
        rows = _runs_table(browser)
        assert len(rows) == 2  # header + the in-process run
        header, first = rows
        pulled = first[header.index("pulled")]
        assert int(pulled.replace(",", "")) == CONTACTS
        assert int(first[header.index("scored")].replace(",", "")) > 0
        bars = browser.js("return document.querySelectorAll('#funnel svg.funnel-chart rect.bar').length")
        assert bars >= 2
        funnel_total = browser.js(
            "return Array.from(document.querySelectorAll('#funnel rect.bar'))"
            ".reduce((s, r) => s + Number(r.dataset.value.replace(/,/g, '')), 0)")
        assert funnel_total == int(first[header.index("scored")].replace(",", ""))

        run_id = _dry_run_from_the_trigger_form(browser, base, password)
        browser.get(f"{base}/leadflow/")
        _wait(lambda: browser.find("#runs-table"), 30, "the page", 0.5)
        rows = _runs_table(browser)
        dry_rows = [r for r in rows[1:] if r[0].startswith(run_id)]
        assert dry_rows and "dry run" in dry_rows[0][0]
        preview = browser.js("return document.querySelector('#preview').innerText")
        assert run_id in preview and "Dry-run preview" in preview and "nothing was written" in preview
        assert browser.find(".preview-records") is not None
        assert _save_screenshot(browser, "leadflow_page.png").stat().st_size > 10_000

        # the report link of a run opens its report
        report = browser.js("return document.querySelector('#runs-table a[href*=\"/report?\"]').href")
        browser.get(report)
        _wait(lambda: browser.find("#summary"), 30, "the run report", 0.5)
        assert "leadflow run report" in browser.js("return document.title")
