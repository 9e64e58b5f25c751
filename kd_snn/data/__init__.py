"""kd_snn.data: data sets, input encodings and deterministic loaders.

Public API::

    build_dataset(name, split, root=None, download=False, **opts) -> Dataset
    dataset_spec(name, **opts) -> DataSpec
    list_datasets() -> tuple of names
    encode(x, time_steps, method, generator=None) -> (T, B, ...)
    make_loader(dataset, batch_size, shuffle, seed, epoch, num_workers=0, drop_last=False,
                skip_batches=0, rank=0, world_size=1) -> DataLoader
    EventVersion(static_dataset, time_steps=10, ...)   # saccade event version of a static set
    arrays.read_arrays(path) / arrays.fit_arrays(...)   # a user's .npz ('arrays' data set)
"""
from kd_snn.data.encoding import encode
from kd_snn.data.loader import make_loader
from kd_snn.data.registry import DataSpec, build_dataset, dataset_spec, list_datasets, register
from kd_snn.data.saccade import EventVersion, saccade_events, saccade_events_batch
from kd_snn.data import catalog  # noqa: E402,F401  (registers the shipped data sets; the
#                                   registry itself imports none of them: no circle)
from kd_snn.data import arrays  # noqa: E402,F401  (registers 'arrays': a user's .npz file)

__all__ = ["DataSpec", "build_dataset", "dataset_spec", "list_datasets", "register", "encode",
           "make_loader", "EventVersion", "saccade_events", "saccade_events_batch"]
