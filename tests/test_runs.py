"""Block sums over runs of equal labels, against a brute-force loop."""

from __future__ import annotations

import numpy as np
import pytest

from geo_ntl._runs import run_starts, sum_runs


@pytest.mark.parametrize("offset, block", [((0, 0), (4, 5)), ((3, 7), (4, 5)), ((1, 2), (1, 1))])
def test_sum_runs__equals_brute_force_block_sums(offset, block):
    rng = np.random.default_rng(1)
    values = rng.random((2, 13, 17)).astype(np.float32)
    rows = (offset[0] + np.arange(13)) // block[0]
    cols = (offset[1] + np.arange(17)) // block[1]
    sums = sum_runs(values, run_starts(rows), run_starts(cols), dtype=np.float64)
    assert sums.dtype == np.float64
    for i, r in enumerate(np.unique(rows)):
        for j, c in enumerate(np.unique(cols)):
            expected = values[:, rows == r][:, :, cols == c].sum(axis=(1, 2), dtype=np.float64)
            np.testing.assert_allclose(sums[:, i, j], expected, rtol=1e-12)


def test_run_starts__marks_each_change():
    assert run_starts(np.array([0, 0, 1, 1, 1, 4])).tolist() == [0, 2, 5]
    assert run_starts(np.array([7])).tolist() == [0]
