"""Grab each view of the app to PNG for the README: ``python -m iamnn_studio.gui.screenshots``."""
from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
