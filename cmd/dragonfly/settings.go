package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// settings is a flag set whose flags fall back to DRAGONFLY_* environment
// variables and then to Config.toml / Config-dev.toml in the working
// directory, like the reference client: flag > env > Config-dev.toml >
// Config.toml > default. A TOML key is the env name without "DRAGONFLY_",
// lower-cased (DRAGONFLY_BASE_URL -> base_url).
type settings struct {
	fs      *flag.FlagSet
	summary string
	envs    map[string][]string // flag name -> env names, first is canonical
	order   []string
}

func newSettings(name, summary string) *settings {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	s := &settings{fs: fs, summary: summary, envs: map[string][]string{}}
	fs.Usage = func() { s.usage(fs.Output()) }
	return s
}

func (s *settings) add(v flag.Value, name, usage string, envs []string) {
	s.fs.Var(v, name, usage)
	s.envs[name] = envs
	s.order = append(s.order, name)
}

// String defines a string setting. envs are the environment names, canonical first.
func (s *settings) String(p *string, name, def, usage string, envs ...string) {
	*p = def
	s.add((*stringValue)(p), name, usage, envs)
}

// Int defines an integer setting.
func (s *settings) Int(p *int, name string, def int, usage string, envs ...string) {
	*p = def
	s.add((*intValue)(p), name, usage, envs)
}

// Bool defines a boolean setting.
func (s *settings) Bool(p *bool, name string, def bool, usage string, envs ...string) {
	*p = def
	s.add((*boolValue)(p), name, usage, envs)
}

// Duration defines a duration setting; values are Go durations ("90s", "1m")
// or integer seconds ("60").
func (s *settings) Duration(p *time.Duration, name string, def time.Duration, usage string, envs ...string) {
	*p = def
	s.add((*durationValue)(p), name, usage, envs)
}

// Size defines a byte-size setting; values are integers of bytes or carry a
// unit (KiB, MiB, GiB, KB, MB, GB).
func (s *settings) Size(p *int64, name string, def int64, usage string, envs ...string) {
	*p = def
	s.add((*sizeValue)(p), name, usage, envs)
}

// List defines a comma-separated list setting.
func (s *settings) List(p *[]string, name string, def []string, usage string, envs ...string) {
	*p = def
	s.add((*listValue)(p), name, usage, envs)
}

// Parse parses args, then fills every flag not given on the command line from
// the environment (lookupEnv, like os.LookupEnv: a variable set to "" counts
// as set) and then from the config files in dir.
func (s *settings) Parse(args []string, lookupEnv func(string) (string, bool), dir string) error {
	// The flag package prints the error and the whole usage on a bad flag;
	// keep the usage for --help only and return the error, printed once.
	out := s.fs.Output()
	var buf bytes.Buffer
	s.fs.SetOutput(&buf)
	err := s.fs.Parse(args)
	s.fs.SetOutput(out)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.Copy(out, &buf)
			return err
		}
		return &exitError{code: 2, err: fmt.Errorf("%w (see --help)", err)}
	}
	set := map[string]bool{}
	s.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	conf, err := loadConfigFiles(dir)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, name := range s.order {
		if set[name] {
			continue
		}
		_, isString := s.fs.Lookup(name).Value.(*stringValue)
		for _, env := range s.envs[name] {
			// An empty variable sets a string setting to "" (e.g. to turn an
			// address off); for other types it counts as unset, as compose
			// files often pass empty values through.
			if v, ok := lookupEnv(env); ok && (v != "" || isString) {
				if err := s.fs.Set(name, v); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("%s=%q: %w", env, v, unwrapFlagErr(err))}
				}
				set[name] = true
				break
			}
		}
		if set[name] {
			continue
		}
		for _, env := range s.envs[name] {
			key := strings.ToLower(strings.TrimPrefix(env, "DRAGONFLY_"))
			if c, ok := conf[key]; ok {
				if err := s.fs.Set(name, c.value); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("%s: %s = %q: %w", c.file, key, c.value, unwrapFlagErr(err))}
				}
				break
			}
		}
	}
	return nil
}

func unwrapFlagErr(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// Args returns the positional arguments after parsing.
func (s *settings) Args() []string { return s.fs.Args() }

func (s *settings) usage(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nFlags (a flag wins over its environment variable, which wins over\nConfig-dev.toml and Config.toml in the working directory):\n", s.summary)
	for _, name := range s.order {
		f := s.fs.Lookup(name)
		fmt.Fprintf(w, "  --%s", name)
		if _, ok := f.Value.(*boolValue); !ok {
			fmt.Fprintf(w, " value")
		}
		if envs := s.envs[name]; len(envs) > 0 {
			fmt.Fprintf(w, "   [env %s]", strings.Join(envs, ", "))
		}
		fmt.Fprintf(w, "\n      %s", f.Usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	}
}

type confValue struct{ file, value string }

// loadConfigFiles reads Config.toml then Config-dev.toml from dir (both
// optional); later files win. Values are flattened to strings.
func loadConfigFiles(dir string) (map[string]confValue, error) {
	out := map[string]confValue{}
	if dir == "" {
		return out, nil
	}
	for _, name := range []string{"Config.toml", "Config-dev.toml"} {
		path := dir + string(os.PathSeparator) + name
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		var m map[string]any
		if err := toml.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			var v string
			switch x := m[k].(type) {
			case []any:
				parts := make([]string, len(x))
				for i, e := range x {
					parts[i] = fmt.Sprint(e)
				}
				v = strings.Join(parts, ",")
			default:
				v = fmt.Sprint(x)
			}
			out[strings.ToLower(k)] = confValue{file: name, value: v}
		}
	}
	return out, nil
}

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not an integer")
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a boolean (true/false/1/0)")
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }

type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string { return time.Duration(*v).String() }

// parseDuration accepts integer seconds ("60") or a Go duration ("1m30s").
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, errors.New("negative duration")
		}
		if n > int64(math.MaxInt64/time.Second) {
			return 0, errors.New("duration too large")
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration (integer seconds or Go duration like 90s)")
	}
	if d < 0 {
		return 0, errors.New("negative duration")
	}
	return d, nil
}

type sizeValue int64

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v = sizeValue(n)
	return nil
}
func (v *sizeValue) String() string { return strconv.FormatInt(int64(*v), 10) }

// parseSize accepts a byte count with an optional unit: 128000000, 512MiB, 64MB.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// Accept floats written by TOML or the reference client (1.28e+8).
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != math.Trunc(f) || f >= 1<<63 || f <= -(1<<63) {
			return 0, errors.New("not a size (bytes, or a number with KiB/MiB/GiB/KB/MB/GB)")
		}
		n = int64(f)
	}
	if n <= 0 {
		return 0, errors.New("size must be positive")
	}
	if n > math.MaxInt64/mult {
		return 0, errors.New("size too large")
	}
	return n * mult, nil
}

type listValue []string

func (v *listValue) Set(s string) error {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	*v = out
	return nil
}
func (v *listValue) String() string { return strings.Join(*v, ",") }
