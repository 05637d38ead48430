package pkgindex

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// bigPage builds a project page of n files as PyPI lists a busy project:
// n/4 releases, each with an sdist and three wheels, PyPI-style URLs.
func bigPage(n int) (jsonBody, htmlBody []byte) {
	type jf struct {
		Filename string            `json:"filename"`
		URL      string            `json:"url"`
		Hashes   map[string]string `json:"hashes"`
		Yanked   bool              `json:"yanked"`
	}
	files := make([]jf, 0, n)
	var h strings.Builder
	h.WriteString("<!DOCTYPE html><html><body>\n")
	for i := 0; len(files) < n; i++ {
		v := fmt.Sprintf("1.%d.%d", i/100, i%100)
		for _, name := range []string{
			"big_project-" + v + ".tar.gz",
			"big_project-" + v + "-py3-none-any.whl",
			"big_project-" + v + "-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"big_project-" + v + "-cp312-cp312-win_amd64.whl",
		} {
			if len(files) == n {
				break
			}
			u := "https://files.pythonhosted.org/packages/ab/cd/0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab/" + name
			files = append(files, jf{Filename: name, URL: u, Hashes: map[string]string{"sha256": sha}})
			fmt.Fprintf(&h, "<a href=\"%s#sha256=%s\" data-requires-python=\"&gt;=3.8\">%s</a><br/>\n", u, sha, name)
		}
	}
	h.WriteString("</body></html>\n")
	j, err := json.Marshal(map[string]any{"meta": map[string]string{"api-version": "1.1"}, "name": "big-project", "files": files})
	if err != nil {
		panic(err)
	}
	return j, []byte(h.String())
}

// Benchmarks at the default MaxFiles (100,000 files, the worst page an
// index can hand over within the bounds) and at a busy project's size.
func BenchmarkParseSimpleJSON(b *testing.B) {
	benchParse(b, parseSimpleJSON, func(jsonBody, _ []byte) []byte { return jsonBody })
}

func BenchmarkParseSimpleHTML(b *testing.B) {
	benchParse(b, parseSimpleHTML, func(_, htmlBody []byte) []byte { return htmlBody })
}

// benchParse runs parse on bigPage's body that pick picks, at each size.
func benchParse(b *testing.B, parse func([]byte, *url.URL, int) ([]file, error), pick func(jsonBody, htmlBody []byte) []byte) {
	for _, n := range []int{4_000, DefaultMaxFiles} {
		body := pick(bigPage(n))
		page := mustURL(b, "https://pypi.org/simple/big-project/")
		b.Run(fmt.Sprintf("files=%d/page=%dKiB", n, len(body)>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if files, err := parse(body, page, DefaultMaxFiles); err != nil || len(files) != n {
					b.Fatal(len(files), err)
				}
			}
		})
	}
}

// BenchmarkPickLatest is the version work of Resolve: every file name
// parsed, versions grouped and compared.
func BenchmarkPickLatest(b *testing.B) {
	for _, n := range []int{4_000, DefaultMaxFiles} {
		body, _ := bigPage(n)
		files, err := parseSimpleJSON(body, mustURL(b, "https://pypi.org/simple/big-project/"), DefaultMaxFiles)
		if err != nil {
			b.Fatal(err)
		}
		ix, err := New(Config{Getter: &httpGetter{}})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("files=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rel, err := ix.pick("big-project", "", nil, files, "")
				if err != nil || len(rel.Distributions) == 0 {
					b.Fatal(err)
				}
			}
		})
	}
}
