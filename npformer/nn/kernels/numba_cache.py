"""A writable place for Numba's cache of compiled kernels, chosen before they are compiled.

Every jitted kernel has cache=True: Numba saves the machine code next to the source
(kernels/__pycache__), else in the user's cache directory (~/.cache/numba), or in
NUMBA_CACHE_DIR when that is set. An installed package with a read-only
site-packages and a read-only home (a shared machine, a container) has none of
them: Numba then fails at import or at the first call. `ensure_writable_cache`
looks at the places Numba would use, in its order, and when none can be written
points Numba at a directory under the system's temporary directory instead; when
even that fails, it turns caching off and says so in one line (every start then
compiles the kernels again, a few seconds).
"""
import os
import sys
import tempfile


def _writable(path):
    """Can Numba keep its cache in `path`? (The test Numba itself makes: a temporary file.)"""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _numba_would_use():
    """The directories Numba tries for this package's kernels, in its order."""
    from numba.core import config
    from numba.misc.appdirs import AppDirs

    here = os.path.dirname(os.path.abspath(__file__))
    return (([config.CACHE_DIR] if config.CACHE_DIR else [])  # NUMBA_CACHE_DIR
            + ([os.path.join(here, "__pycache__")] if os.path.isdir(here) else [])  # in-tree
            + [AppDirs(appname="numba", appauthor=False).user_cache_dir])  # ~/.cache/numba


def ensure_writable_cache():
    """Make sure Numba has a writable cache directory; returns the fallback used, or None."""
    places = _numba_would_use()
    if any(_writable(place) for place in places):
        return None  # Numba finds it by itself
    from numba.core import config

    fallback = os.path.join(tempfile.gettempdir(), "npformer-numba-cache"
                            + (f"-{os.getuid()}" if hasattr(os, "getuid") else ""))
    if _writable(fallback):
        config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"] = fallback  # (and for subprocesses)
        return fallback
    from numba.core.dispatcher import Dispatcher

    Dispatcher.enable_caching = lambda self: None  # cache=True becomes a no-op
    print(f"note: no writable directory for Numba's cache ({', '.join(places)} and "
          f"{fallback} are not); the kernels are compiled at every start. Set NUMBA_CACHE_DIR "
          "to a writable directory to keep them", file=sys.stderr)
    return None
