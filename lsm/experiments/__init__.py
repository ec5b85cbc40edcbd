"""The jobs a user runs, each a function taking a config dataclass and leaving a run directory
(``<runs_dir>/<job>-<time>/``: config.toml with the resolved settings, seeds and package versions;
metrics.json; PNGs):

- :func:`run_supervised` (``lsm train``): a readout on LSM features over reservoir draws;
- :func:`run_zeroshot` (``lsm zeroshot``): contrastive heads, zero-shot retrieval, seeds;
- :func:`run_demo` (``lsm demo``): the offline twins, then both of the above;
- :func:`run_dataset_info` (``lsm data info``): what a dataset split holds, with a picture;
- :func:`run_train_cost` (``lsm bench train-cost``): LSM pipeline vs a trainable spiking RNN;
- :mod:`lsm.experiments.studies` (``lsm study features|size|nonideality``) and
  :mod:`lsm.experiments.splits` (``lsm study splits``): what accuracy depends on;
- :mod:`lsm.experiments.sweep` (``lsm sweep``): searches over reservoir settings on Optuna,
  validation only, the best trial's test scored once.

``lsm encode`` writes one features file (:mod:`lsm.experiments.encode`). The library packages
below this one stay pure: :mod:`lsm.contrastive` holds heads, losses, metrics and the protocol;
:mod:`lsm.readout` the readouts; :mod:`lsm.data` the datasets and their registry.
"""

from lsm.experiments.dataset_info import DatasetInfoConfig, run_dataset_info
from lsm.experiments.demo import DemoConfig, format_demo, run_demo
from lsm.experiments.encode import encode_dataset_file, encode_file, read_event_file
from lsm.experiments.supervised import (
    PAPER_SUPERVISED,
    SupervisedConfig,
    format_supervised,
    run_supervised,
)
from lsm.experiments.train_cost import TrainCostConfig, run_train_cost
from lsm.experiments.zeroshot import (
    ZeroShotRunConfig,
    encode_modalities,
    format_zeroshot,
    run_zeroshot,
)

__all__ = ["SupervisedConfig", "run_supervised", "format_supervised", "PAPER_SUPERVISED",
           "ZeroShotRunConfig", "run_zeroshot", "format_zeroshot", "encode_modalities",
           "DemoConfig", "run_demo", "format_demo", "DatasetInfoConfig", "run_dataset_info",
           "TrainCostConfig", "run_train_cost", "read_event_file", "encode_file",
           "encode_dataset_file"]
