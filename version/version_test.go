package version

import (
	"runtime/debug"
	"testing"
)

func TestRevision(t *testing.T) {
	tests := []struct {
		name     string
		settings []debug.BuildSetting
		rev      string
		modified bool
	}{
		{"none", nil, "", false},
		{"clean", []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "365d52a2c1e4f00d"}, {Key: "vcs.modified", Value: "false"}}, "365d52a2c1e4f00d", false},
		{"modified", []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}, {Key: "vcs.revision", Value: "abc"}}, "abc", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev, mod := fromSettings(tt.settings)
			if rev != tt.rev || mod != tt.modified {
				t.Errorf("revision = %q, %v; want %q, %v", rev, mod, tt.rev, tt.modified)
			}
		})
	}
}

// TestLinkedRevision: the revision an image build links in (no .git there).
func TestLinkedRevision(t *testing.T) {
	for _, tt := range []struct {
		in       string
		rev      string
		modified bool
		ok       bool
	}{
		{"", "", false, false},
		{"  ", "", false, false},
		{"abc", "abc", false, true},
		{"abc-dirty", "abc", true, true},
		{"-dirty", "", true, false},
	} {
		rev, modified, ok := linked(tt.in)
		if rev != tt.rev || modified != tt.modified || ok != tt.ok {
			t.Errorf("linked(%q) = %q, %v, %v; want %q, %v, %v", tt.in, rev, modified, ok, tt.rev, tt.modified, tt.ok)
		}
	}
}
