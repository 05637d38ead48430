#!/usr/bin/env python3
"""The least scanning an exact scan of a corpus can do.

Counts, over every file of every distribution in a directory (sdists as
tar, tar.gz; wheels and zips), the distinct pairs (SHA-256 of the bytes, set
of rules whose filetype admits the path): an engine that scans each file only
with the rules its path admits and never scans the same bytes with the same
rules twice scans exactly that many files. BENCHMARKS.md compares it with
the files `dragonfly scan --stats` reports as scanned.

Written apart from the engine (Python's tarfile and zipfile, and the
filetype rule of the Dragonfly clients: split on single spaces, plain suffix
match, an empty entry admits every path, no filetype admits every path) so
that it checks the engine rather than repeats it; a file no rule admits is
not scanned at all. Its limits, none of which the bench corpus meets: paths
are the archives' raw names (the engine cleans them), tar hard links and
other special members are left out (the engine scores links without
scanning them), private rules count like others, and `rule`/`filetype`
lines inside block comments would be read as rules. It reads `filetype = "..."` from the rules' meta sections,
which is all the benchmark rules use.

    python3 bench/distinct.py bench/corpus/dists bench/rules
"""

import hashlib
import os
import re
import sys
import tarfile
import zipfile

FILETYPE = re.compile(r'^\s*filetype\s*=\s*"([^"]*)"', re.M)
RULE = re.compile(r'^\s*(?:(?:private|global)\s+)*rule\s+\w+', re.M)


def filetypes(rules_dir):
    """One entry per rule: None (no filetype: every path) or its suffixes."""
    out = []
    for name in sorted(os.listdir(rules_dir)):
        if not name.endswith((".yara", ".yar")):
            continue
        text = open(os.path.join(rules_dir, name), encoding="utf-8").read()
        starts = [m.start() for m in RULE.finditer(text)] + [len(text)]
        for a, b in zip(starts, starts[1:]):
            m = FILETYPE.search(text, a, b)
            out.append(None if m is None or m.group(1) == "" else m.group(1).split(" "))
    return out


def admitted(path, fts):
    return tuple(ft is None or any(path.endswith(s) for s in ft) for ft in fts)


def files(path):
    if path.endswith((".whl", ".zip")):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield info.filename, z.read(info)
    else:
        with tarfile.open(path) as t:
            for m in t:
                if m.isreg():
                    yield m.name, t.extractfile(m).read()


def main():
    dists, rules_dir = sys.argv[1], sys.argv[2]
    fts = filetypes(rules_dir)
    pairs, contents = set(), set()
    n = size = pair_bytes = skipped = 0
    for name in sorted(os.listdir(dists)):
        for path, data in files(os.path.join(dists, name)):
            n += 1
            size += len(data)
            digest = hashlib.sha256(data).digest()
            contents.add(digest)
            key = (digest, admitted(path, fts))
            if not any(key[1]):
                skipped += 1
                continue
            if key not in pairs:
                pairs.add(key)
                pair_bytes += len(data)
    print(f"rules {len(fts)} ({sum(ft is not None for ft in fts)} with a filetype)")
    print(f"files {n}, {size / 1e6:.1f} MB")
    print(f"distinct contents {len(contents)}; files no rule admits {skipped}")
    print(f"distinct (content, admitted rules) {len(pairs)}, {pair_bytes / 1e6:.1f} MB: the files an exact, pruned, cached scan must scan")


if __name__ == "__main__":
    main()
