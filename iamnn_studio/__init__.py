"""IamNN Studio: train, inspect and export IamNN image classifiers."""

__version__ = "0.1.0"
