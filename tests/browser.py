"""Open an HTML file in headless Chromium the way a person would, and report what rendered."""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROBE = """<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  const shown = [...document.querySelectorAll('section')].filter(s => {
    const box = s.getBoundingClientRect(), style = getComputedStyle(s);
    return box.width > 0 && box.height > 0 && style.visibility !== 'hidden' && style.display !== 'none';
  }).map(s => s.querySelector('h2').textContent);
  document.body.setAttribute('data-rendered', JSON.stringify({
    images: images.length,
    loaded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    sections: shown}));
});
</script>"""


def _chromium(args: list[str], profile: str) -> str:
    result = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                            capture_output=True, text=True, timeout=120)
    return result.stdout


def render(page: Path, screenshot: Path | None = None) -> dict:
    """Images found and loaded, and the titles of the sections laid out with a size."""
    probed = page.with_name(f".probed-{page.name}")  # beside the page: its relative image links still resolve
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dom = _chromium(["--virtual-time-budget=10000", "--dump-dom", probed.as_uri()], f"{tmp}/profile")
            if screenshot is not None:
                _chromium(["--window-size=1300,5000", f"--screenshot={screenshot}", page.as_uri()],
                          f"{tmp}/profile2")
    finally:
        probed.unlink()
    found = re.search(r'data-rendered="([^"]*)"', dom)
    assert found, f"the page did not finish loading in Chromium:\n{dom[:2000]}"
    return json.loads(html.unescape(found.group(1)))
