"""Screenshots of the product for the README: the queue, a proposal, the dashboard and the audit trail.

    .venv/bin/python tools/screenshots.py            # writes docs/img/*.png (make screenshots)

It builds a fresh embedded system in a temporary folder (migrate, the demo at 60 decisions a day), serves it
with runserver on a free port, signs in as the demo users in Chromium and saves each page at 1,400 x 900. Nothing
of the checkout's own var/ is touched. About a minute on two cores.
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
USERS = {"rita": "rita-reviews-2026", "alice": "alice-approves-2026", "admin": "admin-runs-2026"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def sign_in(page: Page, base: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", USERS[username])
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def shot(page: Page, base: str, path: str, name: str, wait_for: str | None = None) -> None:
    page.goto(f"{base}{path}")
    page.wait_for_load_state("networkidle")
    if wait_for:
        page.wait_for_selector(wait_for)
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=False)
    print(f"wrote docs/img/{name}.png")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as var:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        port = free_port()
        env.update(LOOPSITE_VAR_DIR=var, SITE_URL=f"http://127.0.0.1:{port}")
        manage(env, "migrate", "--no-input")
        manage(env, "demo", "--per-day", "60")
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(120):
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new"])
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                sign_in(page, base, "rita")
                shot(page, base, "/queue/", "queue")
                sign_in(page, base, "alice")
                page.goto(f"{base}/proposals/")
                hrefs = [a.get_attribute("href") or "" for a in page.locator("a[href^='/proposals/']").all()]
                proposal = next(h for h in hrefs if re.fullmatch(r"/proposals/\d+/", h))  # the demo's pending one
                shot(page, base, proposal, "proposal", wait_for="#threshold-chart[data-rendered='true']")
                shot(page, base, "/dashboard/demo-triage/", "dashboard")
                sign_in(page, base, "admin")
                shot(page, base, "/audit/", "audit")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
