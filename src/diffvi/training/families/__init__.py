"""The model families that :func:`~diffvi.training.fit` trains, one file each."""
