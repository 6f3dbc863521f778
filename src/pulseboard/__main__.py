"""``python -m pulseboard …``: the same commands as the ``pulseboard`` script."""

from .scripts import main

main()
