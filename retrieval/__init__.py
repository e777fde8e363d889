"""retrieve: AlexNet fc7 features for content-based image retrieval (Krizhevsky et al. 2012)."""

__version__ = "0.1.0"
