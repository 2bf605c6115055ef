"""Argument types for path options, shared by the CLI and the app's own parser (no torch, no Qt).

An empty value (``--config ""``, often a shell variable that was never set) is refused the way
argparse refuses a wrong type: one ``error:`` line and exit status 2. Taken as given, it would
mean "the option is not there" or "the current folder", which nobody types on purpose.
"""
from __future__ import annotations

import argparse


def folder_option(text: str) -> str:
    """A folder option's value: an empty one would mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a folder, got an empty string")
    return text


def file_option(text: str) -> str:
    """A file option's value: an empty one would be taken as the option not given at all."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a file, got an empty string")
    return text


def checkpoint_option(text: str) -> str:
    """A checkpoint file or a run folder: an empty one would mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a checkpoint file or run folder, got an empty string")
    return text
