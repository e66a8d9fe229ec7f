"""The commands a user types (sr-upscale, sr-preset, sr-benchmark, sr-compare, sr-export, sr-score,
sr-datasets): each reads its options and calls the library; `python -m sr_core.commands.NAME` runs
the same. Their module docstrings are their `--help`."""
