"""cifarlab: train CIFAR-10 classifiers with a reproducible DVC pipeline and explain their mistakes."""
