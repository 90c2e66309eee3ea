"""The one place that imports `audioop`.

Python 3.11/3.12 ship `audioop` in the standard library but warn DeprecationWarning on import
(PEP 594); pytest runs with `filterwarnings = error`, so the import is wrapped in a filter that
ignores exactly that warning. From Python 3.13 the module is gone from the standard library and
the `audioop-lts` distribution (a dependency marked `python_version >= '3.13'`) provides the same
module name and C implementation.
"""

from __future__ import annotations

import sys
import warnings

if sys.version_info >= (3, 13):  # pragma: no cover - exercised on 3.13+ only
    import audioop
else:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=DeprecationWarning, message=r"'audioop' is deprecated"
        )
        import audioop

__all__ = ["audioop"]
