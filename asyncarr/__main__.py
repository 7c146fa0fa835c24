"""``python -m asyncarr``."""

from asyncarr.cli import main

raise SystemExit(main())
