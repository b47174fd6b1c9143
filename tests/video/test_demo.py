"""`septet demo video` removes the object and reports how well."""

import re

from septet.video.demo import run_demo


def test_the_demo_removes_the_object_and_beats_telea(tmp_path):
    report = run_demo(tmp_path)
    numbers = re.search(r"PSNR in the hole ([\d.]+) dB vs ([\d.]+) dB", report.summary)
    assert numbers, report.summary
    ours, telea = map(float, numbers.groups())
    assert ours > telea + 4
    assert all(path.exists() for path in report.outputs)
