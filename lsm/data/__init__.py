"""Event datasets: N-MNIST and N-TIDIGITS through tonic, the paper's preprocessing, offline twins
in the real on-disk formats, and a feature cache."""

from lsm.data.cache import FeatureCache, cache_key
from lsm.data.datasets import (
    DownloadError,
    NMNISTFolder,
    NTIDIGITSFile,
    download_nmnist,
    download_ntidigits,
    nmnist,
    ntidigits,
)
from lsm.data.formats import BadSampleError, read_nmnist_bin, write_nmnist_bin
from lsm.data.pipeline import EncodedSet, StreamSet, encode_dataset, load_streams
from lsm.data.registry import (
    DATASET_NAMES,
    DATASETS,
    DatasetSpec,
    dataset_spec,
    encode_split,
    load_split,
    open_split,
    sample_groups,
)
from lsm.data.transforms import (
    Preprocessing,
    SelectPolarity,
    ToEventStream,
    nmnist_preprocessing,
    ntidigits_preprocessing,
)

__all__ = [
    "nmnist", "ntidigits", "NMNISTFolder", "NTIDIGITSFile", "download_nmnist",
    "download_ntidigits", "DownloadError", "BadSampleError", "read_nmnist_bin",
    "write_nmnist_bin", "SelectPolarity", "ToEventStream", "Preprocessing",
    "nmnist_preprocessing", "ntidigits_preprocessing", "load_streams", "encode_dataset",
    "StreamSet", "EncodedSet", "FeatureCache", "cache_key", "DatasetSpec", "DATASETS",
    "DATASET_NAMES", "dataset_spec", "open_split", "encode_split",
    "load_split", "sample_groups",
]
