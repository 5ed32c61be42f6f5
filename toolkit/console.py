"""Messages and progress bars on stderr, shared by every CLI verb (stdout carries results)."""

from __future__ import annotations

import sys


def say(msg: str) -> None:
    print(f"edgecodec: {msg}", file=sys.stderr)


def progress(total: int, desc: str, unit: str = "img"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None, leave=False)
