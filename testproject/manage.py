#!/usr/bin/env python3
"""Django's command-line utility for the demo project: ``python testproject/manage.py``."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    # Run as a file, Python puts this directory first on sys.path, where testproject/celery.py
    # would shadow the celery package. Put the repo root there instead so "testproject"
    # imports as a package from any cwd.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
