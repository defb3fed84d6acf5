"""Placeholder until its owner writes it."""


def register(commands) -> None:
    pass
