"""What every command-line entry point of the project (python -m extract, python -m sdst.*) shares."""

from __future__ import annotations

import functools
import os
import sys


def exits_on_bad_input(main):
    """Bad input (ValueError, and OSError such as FileNotFoundError, whose messages name the file and what is
    wrong) and a damaged feature store (extract.cache.CacheError) print ``error: ...`` on stderr and return exit
    status 2, without a traceback (``SDST_TRACEBACK=1`` shows it)."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        from extract.cache import CacheError

        try:
            return main(*args, **kwargs)
        except (ValueError, OSError, CacheError) as err:
            if os.environ.get("SDST_TRACEBACK"):
                raise
            print(f"error: {err}", file=sys.stderr)
            return 2

    return wrapper
