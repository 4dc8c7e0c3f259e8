"""The names of video files: the suffixes a training data folder picks up and the client's messages name
(torch-free, so the client-only install shares it)."""

from __future__ import annotations

VIDEO_SUFFIXES = (
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".mpg",
    ".mpeg",
    ".ts",
    ".mts",
    ".m2ts",
    ".3gp",
    ".ogv",
    ".wmv",
    ".flv",
)
"""Suffixes of the common video containers, compared case-insensitively. PyAV (FFmpeg) reads a file whatever its
suffix says (an ``.m4v`` is an MP4, or a raw MPEG-4 stream, alike)."""
