package score

import (
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/protocol"
)

// inspectorURLBefore is InspectorURL as it was before dot segments were
// dropped (93ed312^), the link the reference client's semantics were
// checked against.
func inspectorURLBefore(name, version, downloadURL, filePath string) string {
	if filePath == "" {
		return ""
	}
	var dl string
	if u, err := url.Parse(downloadURL); err == nil {
		dl = strings.TrimPrefix(u.EscapedPath(), "/")
	}
	segs := strings.Split(filePath, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "https://inspector.pypi.io/project/" + url.PathEscape(name) + "/" + url.PathEscape(version) + "/" + dl + "/" + strings.Join(segs, "/")
}

func TestInspectorURLSameForReachablePaths(t *testing.T) {
	names := []string{"requests", "my pkg", "100%", "café", "全角", "a.b", "x%2e%2e", "...", ".hidden"}
	versions := []string{"1.0", "1.0.post1+local", "v 1", "50%"}
	urls := []string{
		"https://files.pythonhosted.org/packages/aa/bb/cc/requests-2.19.1.tar.gz",
		"https://files.pythonhosted.org/packages/aa//cc/x-1.0-py3-none-any.whl",
		"https://files.pythonhosted.org/packages/aa/bb/",
		"https://files.pythonhosted.org",
		"https://files.pythonhosted.org/packages/aa/bb/my%20pkg-1.0.tar.gz?x=1#frag",
		"https://files.pythonhosted.org/packages/aa/bb/100%25-1.0.tar.gz",
		"https://h/pkgs/caf%C3%A9-1.0.tar.gz",
		"https://h/pkgs/café-1.0.tar.gz",
		"https://h/pkgs/..tar.gz",
		"::not a url",
		"",
	}
	raw := []string{"a/./b.py", "a//b.py", "a/b/", "./a.py", "a/../b.py", "%2e%2e/x.py", ".%2e/x.py", "a/%2e/b",
		" sp ace/x y.py", "100%/x.py", "...", ".../x", "a/.../b", "é/全角.py", "a\\..\\b", "x/.hidden", "p-1.0/setup.py", "a?b#c/d;e"}
	n := 0
	for _, r := range raw {
		p := path.Clean(strings.ReplaceAll(r, `\`, "/"))
		if protocol.CheckMemberPath(p) != nil {
			continue
		}
		for _, name := range names {
			for _, v := range versions {
				for _, u := range urls {
					n++
					if got, want := InspectorURL(name, v, u, p), inspectorURLBefore(name, v, u, p); got != want {
						t.Errorf("InspectorURL(%q, %q, %q, %q)\n got %s\nwant %s", name, v, u, p, got, want)
					}
				}
			}
		}
	}
	t.Logf("%d inputs", n)
}
