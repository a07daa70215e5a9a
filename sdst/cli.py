"""What every command-line entry point of this package shares."""

from __future__ import annotations

import functools
import sys


def exits_on_bad_input(main):
    """Bad input (ValueError, FileNotFoundError, whose messages name the file and what is wrong) prints
    ``error: ...`` on stderr and returns exit status 2, without a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    return wrapper
