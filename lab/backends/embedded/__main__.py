"""``python -m lab.backends.embedded``: the runtime process (see :mod:`.runtime`)."""

from lab.backends.embedded.runtime import main

main()
