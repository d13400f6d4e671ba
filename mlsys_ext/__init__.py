"""mlsys_ext: a Jupyter-native lab for machine-learning systems."""
