"""``python -m lsm.cli``: the same as the ``lsm`` command."""

from lsm.cli import main

raise SystemExit(main())
