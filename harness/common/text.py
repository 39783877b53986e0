"""Text helpers every stage uses for messages."""


def tail(text: str, lines: int = 15) -> str:
    """The last lines of a program's output: what an error message quotes of a build log or a runner's stderr."""
    return "\n".join(text.strip().splitlines()[-lines:])
