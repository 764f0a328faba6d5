"""torchrun entry for test_distributed: `schedc ...` with the model of rank $SCHEDC_TEST_BREAK_RANK broken
after it loads (its blocks raise), to check that one failing rank stops every rank cleanly."""

import os
import sys

import schedc.models as models
from schedc.cli import main

broken = int(os.environ["SCHEDC_TEST_BREAK_RANK"])
load = models.load_model


def load_broken(*args, **kwargs):
    adapter = load(*args, **kwargs)
    if int(os.environ.get("RANK", "0")) == broken:
        def fail(*_a, **_k):
            raise RuntimeError("this rank's model is broken")
        adapter.blocks()[0].forward = fail
    return adapter


models.load_model = load_broken
sys.exit(main())
