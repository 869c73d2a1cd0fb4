"""Data: the datasets fatviz trains on, as splits ready for a model.

- `loaders`: the `DATASETS` registry and one loader per layout (digits, blobs, IDX, CIFAR-10,
  ImageFolder, Market-1501), with the sampling, splitting and normalising they share;
- `readers`: reading files as untrusted (IDX, CIFAR batches, images, Market-1501 names);
- `download`: the opt-in download of mnist, fashion-mnist and cifar10;
- `reid_synth`: the generated ReID set;
- `user_data`: your own tables and zips, from the command line or the app's upload.

The names most code needs are importable from here.
"""

from fatviz.data.loaders import (
    DATASETS,
    DOWNLOADABLE,
    BlobSpec,
    Dataset,
    DatasetSpec,
    load_dataset,
    visualisation_indices,
)

__all__ = ["DATASETS", "DOWNLOADABLE", "BlobSpec", "Dataset", "DatasetSpec", "load_dataset", "visualisation_indices"]
