"""Progress reporting for long work: a tqdm bar on a terminal, plain periodic lines elsewhere.

On a terminal, tqdm redraws one line in place. In a log file, a CI job or a pipe those redraws
would pile up as carriage returns, so there the same bar prints a plain line once it has run
``plain_interval_s`` seconds, then at most every ``plain_interval_s`` seconds, and at the end;
work that finishes sooner prints nothing (no wall of 0 % / 100 % pairs)::

    program_random form-1:  45%|####5     | 205/456 [00:12<00:15, 16.4row/s]
"""

from __future__ import annotations

import sys

__all__ = ["progress_bar", "PLAIN_INTERVAL_S"]

#: Seconds between two plain progress lines when stderr is not a terminal.
PLAIN_INTERVAL_S = 30.0


class _Lines:
    """A stream for tqdm that turns its in-place redraws into one plain line each."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, *, disable: bool = False,
                 plain_interval_s: float = PLAIN_INTERVAL_S, **kwargs):
    """``tqdm.tqdm(iterable, **kwargs)`` on a terminal; plain periodic lines otherwise.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over (or give ``total`` and call ``update``).
    disable : bool
        No output at all.
    plain_interval_s : float
        Seconds between lines when stderr is not a terminal.
    **kwargs
        Passed to tqdm (``total``, ``desc``, ``unit``, ``leave`` ...).
    """
    from tqdm import tqdm

    stream = kwargs.pop("file", None) or sys.stderr
    if disable or (hasattr(stream, "isatty") and stream.isatty()):
        return tqdm(iterable, disable=disable, file=stream, **kwargs)
    # a plain log keeps every line: the last one (100 %, or where it stopped) too; a bar
    # that ends before its first interval stays silent (tqdm's delay)
    kwargs.update(file=_Lines(stream), leave=True, delay=plain_interval_s,
                  mininterval=plain_interval_s,
                  maxinterval=plain_interval_s, ascii=True, dynamic_ncols=False, ncols=100)
    return tqdm(iterable, **kwargs)
