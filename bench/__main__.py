"""Entry point: ``python -m bench`` (see ``python -m bench --help``)."""

from __future__ import annotations

from bench._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
