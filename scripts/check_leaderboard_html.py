"""Render a leaderboard HTML page in headless Chromium, save a screenshot, and fail on any console message.

    python scripts/check_leaderboard_html.py leaderboards/synthecho.html [--screenshot OUT.png]

Chromium (Debian: ``apt-get install chromium``) logs the page's console to stderr with ``--enable-logging=stderr
--v=0`` as ``...:CONSOLE(line)] "message", source: ...``; JavaScript errors (uncaught exceptions, failed
resources) appear there too. Exit status 1 when any console line is found or no screenshot was written.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CONSOLE = re.compile(r":CONSOLE\b|Uncaught|Failed to load resource")


def render(page: Path, screenshot: Path, width: int = 1400, height: int = 2400) -> list[str]:
    """Console lines Chromium logged while rendering ``page`` into ``screenshot``."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no chromium on PATH; install it: apt-get update && apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        argv = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--virtual-time-budget=3000",
            f"--screenshot={screenshot.resolve()}",
            page.resolve().as_uri(),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return [line for line in done.stderr.splitlines() if CONSOLE.search(line)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path, default=Path("leaderboard-screenshot.png"))
    args = parser.parse_args()
    args.screenshot.unlink(missing_ok=True)
    messages = render(args.page, args.screenshot)
    for line in messages:
        print(f"console: {line}")
    if not args.screenshot.is_file():
        print(f"no screenshot written to {args.screenshot}")
        sys.exit(1)
    print(f"{args.page}: {len(messages)} console message(s); screenshot {args.screenshot}")
    sys.exit(1 if messages else 0)


if __name__ == "__main__":
    main()
