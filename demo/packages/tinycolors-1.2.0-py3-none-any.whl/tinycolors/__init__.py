"""Tiny ANSI colour helpers. A clean demo package."""

RESET = "\033[0m"
COLORS = {"red": 31, "green": 32, "yellow": 33, "blue": 34}


def paint(text, color):
    return "\033[%dm%s%s" % (COLORS[color], text, RESET)
