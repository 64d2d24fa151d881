"""Print the Kueue parity table for docs/scheduling.md."""

import sys

from tests.engine.kueue_parity.table import markdown_table

sys.stdout.write(markdown_table())
