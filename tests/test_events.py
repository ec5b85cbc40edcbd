"""EventBatch: raster and stream round-trips, selection, whole-batch validation."""

import numpy as np
import pytest
from conftest import random_raster
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lsm import EventBatch


@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=3, max_dims=3, max_side=7),
                  elements=st.integers(0, 1)))
def test_raster_round_trip(raster):
    batch = EventBatch.from_raster(raster)
    assert batch.n_events == int(raster.sum())
    np.testing.assert_array_equal(batch.to_raster(), raster)


def test_streams_round_trip_and_select(rng):
    raster = random_raster(rng, 9, 6, 5, 0.3)
    batch = EventBatch.from_raster(raster)
    streams = [batch.sample(i) for i in range(9)]
    again = EventBatch.from_streams(streams, 6, 5)
    np.testing.assert_array_equal(again.to_raster(), raster)
    picked = batch.select(np.array([7, 2, 2]))
    np.testing.assert_array_equal(picked.to_raster(), raster[[7, 2, 2]])
    np.testing.assert_array_equal(batch.select(slice(3, 6)).to_raster(), raster[3:6])


def test_contiguous_select_is_views_with_the_kernel_dtypes(rng):
    """A step-1 slice (how the LSM cuts batches for the kernels) shares the event arrays and
    gives what the checked path gives, every edge included."""
    raster = random_raster(rng, 12, 6, 5, 0.3)
    batch = EventBatch.from_raster(raster)
    for sl in (slice(3, 6), slice(None), slice(0, 0), slice(10, 40), slice(-4, None),
               slice(7, 2), slice(2, 9, 1)):
        part = batch.select(sl)
        np.testing.assert_array_equal(part.to_raster(), raster[sl])
        checked = EventBatch(part.offsets, part.bins, part.channels, 6, 5)
        for name in ("offsets", "bins", "channels"):
            assert getattr(part, name).dtype == getattr(checked, name).dtype
        assert (part.n_bins, part.n_channels) == (6, 5)
    assert np.shares_memory(batch.select(slice(3, 6)).bins, batch.bins)
    np.testing.assert_array_equal(batch.select(slice(1, 8, 3)).to_raster(), raster[1:8:3])


def test_batch_validation_names_the_sample():
    offsets = np.array([0, 2, 4])
    bins = np.array([0, 1, 3, 2], np.int32)   # sample 1 goes backwards
    channels = np.array([0, 1, 0, 1], np.int32)
    with pytest.raises(ValueError, match=r"sample 1: bins out of order at event 1"):
        EventBatch(offsets, bins, channels, 4, 2)
    # going back across a sample boundary is fine
    EventBatch(offsets, np.array([2, 3, 0, 1], np.int32), channels, 4, 2)
    with pytest.raises(ValueError, match=r"sample 1: channels\[0\] = 5 is outside \[0, 2\)"):
        EventBatch(offsets, np.array([0, 1, 0, 1], np.int32), np.array([0, 1, 5, 1]), 4, 2)
    with pytest.raises(ValueError, match="offsets"):
        EventBatch(np.array([1, 2]), bins[:1], channels[:1], 4, 2)


def test_raster_rejects_non_numeric():
    with pytest.raises(ValueError, match="boolean or numeric"):
        EventBatch.from_raster(np.zeros((1, 2, 2), dtype=object))
    with pytest.raises(ValueError, match="use EventBatch.from_raster"):
        EventBatch.from_streams(np.zeros((1, 2, 2)), 2, 2)
