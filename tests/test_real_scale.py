"""benchmarks/real_scale.py runs end to end (at a tiny size: its figures are for its own runs)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_real_scale_benchmark_runs_and_reports_every_part(tmp_path):
    out = tmp_path / "real_scale.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "real_scale.py"), "--images", "3",
                             "--infer-images", "1", "--width", "192", "--height", "108", "--skip-memory",
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results["per_image_seconds"]) == {
        "decode a pair", "validation metrics (no SSIM)", "evaluate metrics (SSIM)", "inference (reference network)",
        "PNG encode (level 6)", "submission row + check", "predict+submit host work"}
    for name, timing in results["per_image_seconds"].items():
        assert timing["baseline"] > 0 and timing["now"] > 0, name
    assert set(results["png_levels"]) == {"0", "1", "3", "6", "9"}
    # the memory figures' functions run in earnest in test_bad_inputs (large_test_image_memory,
    # whole_upscale_command_memory): six fresh processes that would double this test's time
    assert "memory_bytes_per_output_pixel" not in results
    for machine in ("this machine", "16-core GPU machine"):
        assert results["projections"][machine]["predict+submit 500"]["now"] > 0
    assert "speed-up" in result.stdout and "projections" in result.stdout
