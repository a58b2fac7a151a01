"""The download stage: a data source (the CIFAR-10 download, its pickled batches, an image folder,
an archive) turned into the prepared arrays."""
