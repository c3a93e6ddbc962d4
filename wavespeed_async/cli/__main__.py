"""``python -m wavespeed_async.cli``: the ``wavespeed-async`` command."""

import sys

from wavespeed_async.cli import main

sys.exit(main())
