#!/usr/bin/env python3
"""Stray input between messages gets QEMU 7.2's replies, byte for byte after
parsing: the golden trace golden/qmp-stray.json was recorded from QEMU by
make-golden-qmp-stray.py (the same cases, the same marker command)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
golden = __import__("make-golden-qmp-stray")


def test_stray_input_matches_qemu():
    with open(os.path.join(HERE, "golden", "qmp-stray.json")) as f:
        trace = json.load(f)
    assert len(trace["cases"]) == len(golden.CASES)
    with Vmmd() as d:
        for case in trace["cases"]:
            data = bytes.fromhex(case["input-hex"])
            got = golden.run_case(d.socket, data)
            assert got == case["replies"], (data, got, case["replies"])


if __name__ == "__main__":
    main(globals())
