"""The error raised for unusable data."""

from __future__ import annotations


class DatasetError(ValueError):
    """Bad or missing data. The message names the offending file or folder and says what is wrong."""
