# SPDX-License-Identifier: Apache-2.0
"""``python -m medig`` (and ``torchrun -m medig audit ...``)."""
from __future__ import annotations

import sys

from medig.cli import main

sys.exit(main())
