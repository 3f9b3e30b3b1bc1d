"""The classic baselines the lectures compare CNNs with, usable alone and by `cnnlab compare`.

- :mod:`cnnlab.baselines.knn`: k-nearest neighbours (L1/L2, exact or PCA-fast), batched torch GEMMs.
- :mod:`cnnlab.baselines.bovw`: bag of visual words (hard-assignment histograms) and Coates,
  Lee & Ng (2011)'s single-layer k-means features.
- :mod:`cnnlab.baselines.compare`: one table of accuracy, size and time for k-NN, linear, BoVW,
  MLP and the zoo's CNNs (the linear and MLP models are ``cnnlab.models.baselines``, trained
  with the normal trainer).
"""

from cnnlab.baselines.knn import KNN, knn_predict

__all__ = ["KNN", "knn_predict"]
