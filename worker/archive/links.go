package archive

import (
	"archive/tar"
	"hash/maphash"
	"strings"
)

// linkTree follows what extracting a tar writes, as far as hard links need
// it (the decisions are listed in the package doc). For a hard link member
// "link -> target", Python's tarfile (3.14, TarFile.makelink_with_filter and
// _find_link_target, under its default 'data' filter):
//
//   - fails the extraction for an absolute target or one outside the
//     destination (AbsoluteLinkError, LinkOutsideDestinationError), after
//     normalising it (os.path.normpath);
//   - if the target exists on disk, removes whatever is at the link's path
//     and calls os.link(target, link): the link is one more name of the
//     target's file (os.link follows symlinks: of the file a symlink names);
//   - if os.link fails (the target is a directory) or the target does not
//     exist, extracts again, at the link's path, the last member before the
//     link named like the target: a copy of a directory, symlink, file or
//     (recursively) link; with no such member it fails (missing target:
//     KeyError) or skips the link (os.link failed: a non-fatal
//     ExtractError);
//   - writes a regular member that comes later onto any name of a linked
//     file into that one file (open(path, "wb") neither unlinks nor breaks
//     the link), so every name of it changes;
//   - writes a regular member whose path is, or passes through, a symlink
//     where the symlink points.
//
// linkTree keeps, per path, what extraction left there (file, directory,
// symlink, device or fifo) and, for files, which emitted content they hold
// and how many names share them. Paths are 128-bit keys (two maphash seeds
// per walk), not strings, so the tree costs a few dozen bytes per entry
// whatever the names' lengths; a collision between two of a walk's at most
// a few hundred thousand keys has a probability below 2^-90.
type linkTree struct {
	h1, h2   maphash.Hash
	nodes    map[pathKey]node
	inodes   []inode
	symlinks bool // a symlink member was seen
	linked   bool // a hard link gave a file a second name
	through  bool // a member was placed through a symlink
}

type pathKey [2]uint64

type nodeKind uint8

const (
	nodeFile nodeKind = iota + 1
	nodeDir
	nodeSymlink
	nodeSpecial // device or fifo
)

// node is what extraction left at one path; ino indexes inodes for a file.
type node struct {
	kind nodeKind
	ino  int32
}

// inode is one file on disk: the index of the emitted file whose content it
// holds and how many paths name it.
type inode struct {
	content int
	names   int32
}

func newLinkTree() *linkTree {
	t := &linkTree{nodes: map[pathKey]node{}}
	t.h1.SetSeed(maphash.MakeSeed())
	t.h2.SetSeed(maphash.MakeSeed())
	return t
}

// key returns the key of the clean path p and reports whether a proper
// prefix of p (a parent directory) is a symlink.
func (t *linkTree) key(p string) (k pathKey, viaSymlink bool) {
	t.h1.Reset()
	t.h2.Reset()
	for rest := p; ; {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			t.h1.WriteString(rest)
			t.h2.WriteString(rest)
			break
		}
		t.h1.WriteString(rest[:i])
		t.h2.WriteString(rest[:i])
		if t.symlinks && !viaSymlink {
			if n, ok := t.nodes[pathKey{t.h1.Sum64(), t.h2.Sum64()}]; ok && n.kind == nodeSymlink {
				viaSymlink = true
			}
		}
		t.h1.WriteByte('/')
		t.h2.WriteByte('/')
		rest = rest[i+1:]
	}
	return pathKey{t.h1.Sum64(), t.h2.Sum64()}, viaSymlink
}

// unname takes a file node's name away from its inode.
func (t *linkTree) unname(n node) {
	if n.kind == nodeFile {
		t.inodes[n.ino].names--
	}
}

// placedThroughSymlink records a member that extraction places where a
// symlink points; it fails once the archive has hard links.
func (t *linkTree) placedThroughSymlink() error {
	t.through = true
	if t.linked {
		return errLinkThrough
	}
	return nil
}

// checkWrite is called before a regular member at the clean path p is read.
func (t *linkTree) checkWrite(p string) error {
	k, via := t.key(p)
	n, ok := t.nodes[k]
	if via || (ok && n.kind == nodeSymlink) {
		// pip opens the path for writing and so writes where the symlink
		// points: a payload written through "readme.txt" lands in
		// "evil.py", under a name the walk cannot give it.
		t.through = true
		return errWriteThrough
	}
	if ok && n.kind == nodeFile && t.inodes[n.ino].names > 1 {
		return errLinkWrite
	}
	return nil
}

// wrote records that the regular member at p, checked by checkWrite, was
// emitted as file index.
func (t *linkTree) wrote(p string, index int) {
	k, via := t.key(p)
	n, ok := t.nodes[k]
	if via || (ok && n.kind == nodeSymlink) {
		return // placed elsewhere; checkWrite recorded it
	}
	if ok && n.kind == nodeFile {
		// A file of one name: tarfile rewrites it in place.
		t.inodes[n.ino].content = index
		return
	}
	t.inodes = append(t.inodes, inode{content: index, names: 1})
	t.nodes[k] = node{kind: nodeFile, ino: int32(len(t.inodes) - 1)}
}

// other records a member that is neither a regular file nor a hard link.
func (t *linkTree) other(p string, typ byte) error {
	if p == "" {
		return nil // the root
	}
	k, via := t.key(p)
	if via {
		return t.placedThroughSymlink()
	}
	n, ok := t.nodes[k]
	switch typ {
	case tar.TypeDir:
		// mkdir over an existing path fails in tarfile (or, for a symlink
		// to a directory, leaves it); nothing changes here either way.
		if !ok {
			t.nodes[k] = node{kind: nodeDir}
		}
	case tar.TypeSymlink:
		if ok {
			t.unname(n)
		}
		t.nodes[k] = node{kind: nodeSymlink}
		t.symlinks = true
	default: // devices, fifos
		if ok {
			t.unname(n)
		}
		t.nodes[k] = node{kind: nodeSpecial}
	}
	return nil
}

// link resolves the hard link member at the clean path p whose clean target
// is target. It returns the index of the emitted file whose content the
// link holds, or file false when extraction makes the link a directory.
func (t *linkTree) link(p, target string) (content int, file bool, err error) {
	if t.through {
		return 0, false, errLinkThrough
	}
	pk, via := t.key(p)
	if via {
		return 0, false, errLinkSymlink
	}
	old, hasOld := t.nodes[pk]
	var tn node
	if target == "" {
		tn = node{kind: nodeDir} // the root, a directory
	} else {
		tk, via := t.key(target)
		n, ok := t.nodes[tk]
		switch {
		case via || (ok && n.kind == nodeSymlink):
			return 0, false, errLinkSymlink
		case !ok:
			return 0, false, errLinkTarget
		}
		tn = n
	}
	switch tn.kind {
	case nodeSpecial:
		return 0, false, errLinkSpecial
	case nodeDir:
		if hasOld {
			t.unname(old)
		}
		t.nodes[pk] = node{kind: nodeDir}
		return 0, false, nil
	}
	if hasOld && old.kind == nodeDir {
		return 0, false, errLinkDir
	}
	content = t.inodes[tn.ino].content
	if hasOld && old.kind == nodeFile && old.ino == tn.ino {
		// A link to itself: tarfile removes the name, cannot link it and
		// copies the member named so instead, a file of its own.
		if t.inodes[tn.ino].names > 1 {
			t.inodes[tn.ino].names--
			t.inodes = append(t.inodes, inode{content: content, names: 1})
			t.nodes[pk] = node{kind: nodeFile, ino: int32(len(t.inodes) - 1)}
		}
		return content, true, nil
	}
	if hasOld {
		t.unname(old)
	}
	t.inodes[tn.ino].names++
	t.nodes[pk] = tn
	t.linked = true
	return content, true, nil
}
