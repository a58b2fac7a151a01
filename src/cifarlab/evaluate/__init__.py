"""The evaluate stage: test-split scores with and without test-time augmentation, and the confusion
matrix."""
