"""``python -m pulseboard …``: the same commands as the ``pulseboard`` script."""

from .cli import main

main()
