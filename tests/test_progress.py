"""Progress: a bar on a terminal, plain periodic lines in a log."""

import io

from lsm.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_progress_is_plain_lines():
    log = io.StringIO()
    for _ in progress_bar(range(5), desc="work", file=log, plain_interval_s=0.0):
        pass
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0].startswith("work:   0%") and lines[-1].startswith("work: 100%")
    assert all(line.startswith("work:") for line in lines)


def test_off_a_terminal_short_work_prints_nothing_and_long_work_periodic_lines():
    import time

    log = io.StringIO()
    for _ in progress_bar(range(5), desc="quick", file=log, plain_interval_s=5.0):
        pass
    assert log.getvalue() == ""
    for _ in progress_bar(range(4), desc="slow", file=log, plain_interval_s=0.05):
        time.sleep(0.06)
    lines = log.getvalue().splitlines()
    assert 1 <= len(lines) <= 5 and lines[-1].startswith("slow: 100%")
    assert "\r" not in log.getvalue()


def test_on_a_terminal_it_redraws_in_place():
    term = _Terminal()
    for _ in progress_bar(range(5), desc="work", file=term, mininterval=0.0):
        pass
    assert "\r" in term.getvalue()


def test_disabled_prints_nothing():
    log = io.StringIO()
    for _ in progress_bar(range(5), desc="work", file=log, disable=True):
        pass
    assert log.getvalue() == ""
