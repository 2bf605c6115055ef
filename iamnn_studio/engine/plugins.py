"""Placeholder replaced by the plugin loader."""


def load_plugins() -> list:
    return []
