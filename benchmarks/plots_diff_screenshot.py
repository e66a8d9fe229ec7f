"""What `dvc plots diff` shows in a browser: the page for two or more revisions or experiments,
its sample figures listed, and a screenshot taken by headless Chromium.

    python benchmarks/plots_diff_screenshot.py HEAD my-experiment --out plots_check
    python benchmarks/plots_diff_screenshot.py HEAD my-experiment --targets metrics/eval_samples.png

Needs Chromium (Debian: `apt-get install chromium`). The page's curves are drawn by Vega from a
CDN, so on a machine without internet only the images show; the figures are plain <img> tags.
"""

import argparse
import re
import subprocess
from pathlib import Path

# Chromium as a headless probe, without the background connections a closed network refuses
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def page_images(page: Path) -> list[Path]:
    """The images the page shows, as files beside it."""
    return [page.parent / source for source in re.findall(r'<img src="([^"]+)"', page.read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revisions", nargs="+", help="git revisions or experiment names, as dvc plots diff takes them")
    parser.add_argument("--out", type=Path, default=Path("plots_check"), help="where the page and the screenshot go")
    parser.add_argument("--targets", nargs="+", default=[], help="only these plots, as dvc plots diff --targets")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium to take the screenshot with")
    parser.add_argument("--size", default="1400,2400", help="the window, WIDTH,HEIGHT in pixels")
    args = parser.parse_args()

    targets = ["--targets", *args.targets] if args.targets else []
    subprocess.run(["dvc", "plots", "diff", *args.revisions, *targets, "-o", str(args.out / "page")], check=True)
    page = args.out / "page" / "index.html"
    images = page_images(page)
    for image in images:
        print(f"{image}: {image.stat().st_size:,} bytes")
    missing = [revision for revision in args.revisions if not any(image.name.startswith(f"{revision}_")
                                                                  for image in images)]
    if missing:
        raise SystemExit(f"{page}: no figure of {', '.join(missing)}")
    screenshot = (args.out / "screenshot.png").resolve()
    profile = (args.out / "chromium-profile").resolve()
    subprocess.run([args.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={args.size}",
                    f"--screenshot={screenshot}", page.resolve().as_uri()], check=True, capture_output=True)
    print(f"{screenshot}: the page as Chromium draws it")


if __name__ == "__main__":
    main()
