"""Progress lines for long commands: tqdm on a terminal, plain lines in logs."""

from __future__ import annotations

import sys


class ProgressBar:
    """tqdm on a terminal, a plain line every 10% otherwise (logs, CI)."""

    def __init__(self, description: str, total: int | None = None) -> None:
        self.description = description
        self.total = total
        self._last_decile = -1
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, leave=False)

    def update(self, done: int, total: int, postfix: str = "") -> None:
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = done
            if postfix:
                self._bar.set_postfix_str(postfix)
            self._bar.refresh()
            return
        decile = int(10 * done / max(total, 1))
        if decile != self._last_decile or postfix.startswith("val"):
            self._last_decile = decile
            print(
                f"{self.description}: {done}/{total} {postfix}".rstrip(),
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
