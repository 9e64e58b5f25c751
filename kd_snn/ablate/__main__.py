"""``python -m kd_snn.ablate _worker ...``: one run in a worker process."""
import sys

from .runner import main

sys.exit(main())
