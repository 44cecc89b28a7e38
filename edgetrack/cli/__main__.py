"""``python -m edgetrack.cli``: the ``edgetrack`` command."""
from edgetrack.cli import main

main()
