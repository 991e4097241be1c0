"""``python -m django_pgreplica.testing.cluster``: the dev cluster's command line."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
