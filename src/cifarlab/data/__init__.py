"""Getting a dataset from any supported source into the one prepared format later stages read."""
