"""plora benchmarks: ``python -m bench [--quick] [--device cpu|cuda] [--only NAME ...] [--out DIR]``.

Not part of the test suite (``tests/test_bench_smoke.py`` only checks that ``--quick`` completes and
reports every row). Each module measures one thing against its plain baseline in the same run and
returns rows (see ``bench.common.Row``); ``bench.__main__`` prints them as one markdown table and
writes JSON + markdown to ``bench/results/``. docs/benchmarks.md has the latest table and how to
reproduce each number.
"""
