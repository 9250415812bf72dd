"""``python -m kdviz``: the command line (:mod:`kdviz.cli`)."""
import gc
import sys

gc.disable()  # importing torch makes ~10^6 long-lived objects: no collections over them meanwhile (0.2 s of CPU)
from kdviz.cli import main  # noqa: E402  late on purpose: the import is what runs without collections

gc.freeze()  # those objects live as long as the process: later collections skip them
gc.enable()
sys.exit(main())
