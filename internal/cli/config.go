package cli

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/agnivade/levenshtein"
	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/bound"
)

// maxConfigFile bounds one config file.
const maxConfigFile = 1 << 20

// maxKeyErrors bounds how many unknown keys one error lists.
const maxKeyErrors = 10

// configData is the config files read, lowest precedence first.
type configData struct {
	files []*confFile
	read  []string // the names of the files that exist, for the startup log
}

// confFile is one config file: flat keys (lower case) to values flattened
// to strings.
type confFile struct {
	name   string // as shown in messages: "Config.toml" or the --config path
	dir    string // relative secret file paths are read from here
	values map[string]confValue
}

type confValue struct {
	key   string // as written in the file
	value string
}

// defaultConfigFiles are the reference client's files, lowest precedence first.
func defaultConfigFiles(dir string) []string {
	return []string{filepath.Join(dir, "Config.toml"), filepath.Join(dir, "Config-dev.toml")}
}

// loadConfig reads the config files at paths. A missing file is skipped,
// unless explicit (the --config file). Every key must be one of known (a key
// any command reads); values are strings, numbers, booleans or arrays of
// them (joined with commas); tables are refused.
func loadConfig(paths []string, explicit bool, known map[string]bool) (*configData, error) {
	out := &configData{}
	for _, path := range paths {
		name := path
		if !explicit {
			name = filepath.Base(path)
		}
		data, err := bound.ReadFile(path, maxConfigFile, nil)
		if errors.Is(err, os.ErrNotExist) && !explicit {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("config file %s: %w", clip.String(name, 256), err)
		}
		f, err := parseConfig(name, data, known)
		if err != nil {
			return nil, err
		}
		f.dir = filepath.Dir(path)
		out.files = append(out.files, f)
		out.read = append(out.read, name)
	}
	return out, nil
}

// parseConfig decodes one TOML file and checks its keys.
func parseConfig(name string, data []byte, known map[string]bool) (*confFile, error) {
	var m map[string]any
	if err := toml.Unmarshal(data, &m); err != nil {
		if key, line, ok := secretParseError(err, known); ok {
			return nil, fmt.Errorf("%s: line %d: the value of %s is not valid TOML (the parser's message is not shown: it quotes the value, a secret)",
				name, line, strconv.Quote(clip.String(key, 256)))
		}
		return nil, fmt.Errorf("%s: %s", name, clip.String(err.Error(), 512))
	}
	f := &confFile{name: name, values: map[string]confValue{}}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		shown := strconv.Quote(clip.String(k, 256))
		lk := strings.ToLower(k)
		switch m[k].(type) {
		case map[string]any, []map[string]any:
			errs = append(errs, fmt.Errorf("%s: %s: a table is not a setting (flat keys only: write key = value at the top of the file)", name, shown))
			continue
		}
		if _, ok := known[lk]; !ok {
			errs = append(errs, fmt.Errorf("%s: unknown key %s%s", name, shown, keyHint(k, known)))
			continue
		}
		if prev, dup := f.values[lk]; dup {
			errs = append(errs, fmt.Errorf("%s: keys %q and %s are one key (keys are lower case)", name, prev.key, shown))
			continue
		}
		v, err := flatten(m[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", name, k, err))
			continue
		}
		f.values[lk] = confValue{key: k, value: v}
	}
	if len(errs) > maxKeyErrors {
		errs = append(errs[:maxKeyErrors], fmt.Errorf("%s: %d more errors", name, len(errs)-maxKeyErrors))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f, nil
}

// secretParseError reports whether a TOML error arose in the value of a
// secret's key (one that has a _file form), returning the key and the
// line. The parser's message quotes the text it stopped at: for a string
// with a bad escape ("s3cret\u00") that is the whole value so far.
func secretParseError(err error, known map[string]bool) (string, int, bool) {
	var pe toml.ParseError
	if ppe := (*toml.ParseError)(nil); errors.As(err, &ppe) && ppe != nil {
		pe = *ppe
	} else if !errors.As(err, &pe) {
		return "", 0, false
	}
	// Any part of a dotted key: the setting's part may come last
	// ("t.password", a table) or first ("password = {a = "..."}", an
	// inline table, whose last key is "password.a").
	for part := range strings.SplitSeq(strings.ToLower(pe.LastKey), ".") {
		if _, secret := known[strings.Trim(part, `"' `)+"_file"]; secret && part != "" {
			return pe.LastKey, pe.Position.Line, true
		}
	}
	return "", 0, false
}

// flatten turns a TOML value into the string a variable would carry. Tables,
// arrays of tables, nested arrays and dates are refused: settings are flat.
func flatten(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			if _, nested := e.([]any); nested {
				return "", errors.New("nested arrays are not settings (flat keys only)")
			}
			p, err := flatten(e)
			if err != nil {
				return "", err
			}
			parts[i] = p
		}
		return strings.Join(parts, ","), nil
	case map[string]any, []map[string]any:
		return "", errors.New("a table is not a setting (flat keys only: write key = value at the top of the file)")
	case time.Time:
		return "", errors.New("a date is not a setting")
	}
	return "", fmt.Errorf("unsupported value of type %T", v)
}

// keyHint explains an unknown key: a variable name used as a key, or the
// nearest known key.
func keyHint(key string, known map[string]bool) string {
	if k, ok := cutPrefixFold(key, "DRAGONFLY_"); ok {
		k = strings.ToLower(k)
		if _, ok := known[k]; ok {
			return ": keys are written without DRAGONFLY_ and in lower case: " + k
		}
		key = k
	}
	var cands []string
	for k, canonical := range known {
		if canonical {
			cands = append(cands, k)
		}
	}
	if near := Nearest(strings.ToLower(key), cands); near != "" {
		return " (did you mean " + near + "?)"
	}
	return ""
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// Nearest returns the candidate at the smallest edit distance from name, if
// it is close enough to be a likely typo ("" otherwise). Ties go to the
// alphabetically first candidate.
func Nearest(name string, cands []string) string {
	if len(name) > 256 {
		return ""
	}
	best, bestD := "", -1
	for _, c := range slices.Compact(slices.Sorted(slices.Values(cands))) {
		d := levenshtein.ComputeDistance(name, c)
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 || bestD > max(2, len(name)/3) {
		return ""
	}
	return best
}

// knownKeys is the set of config keys any command of the program reads (a
// config file serves coordinator, worker and scan alike) plus those of s:
// key -> whether it is a canonical key (suggested in messages) rather than
// an alias.
func (s *Settings) knownKeys() map[string]bool {
	out := map[string]bool{}
	addKeys(out, s)
	if s.others != nil {
		for _, o := range s.others() {
			addKeys(out, o)
		}
	}
	return out
}

func addKeys(out map[string]bool, s *Settings) {
	for _, st := range s.list {
		if st.env == "" || st.noKey {
			continue
		}
		for _, env := range st.Vars() {
			k := KeyFor(env)
			canonical := env == st.env
			out[k] = out[k] || canonical
			if st.secret {
				out[k+"_file"] = out[k+"_file"] || canonical
			}
		}
	}
}
