"""``python -m inference_vm``: see :mod:`inference_vm.cli`."""

import sys

from inference_vm.cli import main

sys.exit(main())
