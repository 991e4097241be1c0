"""``python -m django_pgreplica.cluster``: alias of ``python -m django_pgreplica.testing.cluster``.

Development tooling only; nothing at run time imports it.
"""

from __future__ import annotations

import sys

from .testing.cluster import main

if __name__ == "__main__":
    sys.exit(main())
