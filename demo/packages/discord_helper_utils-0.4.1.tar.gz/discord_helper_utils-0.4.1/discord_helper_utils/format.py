def bold(s):
    return "**%s**" % s
