"""Data: image folders, the decoded-image cache, synthetic data, augmentation, the loader."""
