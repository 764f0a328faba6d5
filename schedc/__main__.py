"""`python -m schedc ...` (and `torchrun ... -m schedc profile ...`): the schedc command line."""

import sys

from schedc.cli import main

sys.exit(main())
