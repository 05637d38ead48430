package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/spf13/pflag"
)

// settings is a command's flag set (github.com/spf13/pflag) whose settings
// fall back to DRAGONFLY_* environment variables and then to the config
// files, like the reference client: flag > environment > Config-dev.toml >
// Config.toml > default. --config FILE (DRAGONFLY_CONFIG) replaces the two
// default files with one.
//
// One name per setting: a setting is registered by its variable
// (DRAGONFLY_HEARTBEAT_INTERVAL); its flag (--heartbeat-interval) and config
// key (heartbeat_interval) are derived from it. A command may name a
// namespace (DRAGONFLY_HEALTHCHECK_): its flags drop that prefix
// (DRAGONFLY_HEALTHCHECK_TIMEOUT is --timeout). A config key is always the
// variable without DRAGONFLY_ in lower case, as the reference client has it.
// Old spellings stay accepted as deprecated aliases (a warning on stderr
// naming the new one); the reference client's names and documented aliases
// are permanent aliases (no warning).
//
// Flags may come anywhere among the arguments; "--" ends them. The single
// dash long form of Go's flag package (-threads=6) is accepted too.
type settings struct {
	fs        *pflag.FlagSet
	name      string // "dragonfly scan"
	summary   string
	namespace string // variable prefix the flag names drop; default "DRAGONFLY_"
	list      []*setting
	byFlag    map[string]*setting // canonical and alias flag names
	stderr    io.Writer           // warnings (deprecated names)
	// files are the config files read by Parse, lowest precedence first.
	files []string
}

// newSettings returns an empty settings for the command name ("dragonfly
// scan"). summary is printed first by --help. Help goes to s.fs.Output()
// (stdout unless set), warnings to stderr (see setOutput).
func newSettings(name, summary string) *settings {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(os.Stdout)
	fs.Usage = func() {} // Parse prints the help itself
	fs.SortFlags = false
	return &settings{fs: fs, name: name, summary: summary, namespace: "DRAGONFLY_", byFlag: map[string]*setting{}, stderr: os.Stderr}
}

// setOutput sends --help to stdout and warnings to stderr.
func (s *settings) setOutput(stdout, stderr io.Writer) {
	s.fs.SetOutput(stdout)
	s.stderr = stderr
}

// value is a setting's value: a pflag.Value (Type names the placeholder in
// the help: int, size, duration, list, string, bool).
type value = pflag.Value

// sourceKind is where a setting's value came from.
type sourceKind int

const (
	fromDefault sourceKind = iota
	fromFile
	fromEnv
	fromFlag
)

// setting is one registered setting.
type setting struct {
	s     *settings
	flag  string // canonical flag name, without dashes
	env   string // canonical variable; "" for a flag-only setting
	usage string
	value value
	def   string // the default as shown by --help ("" shows none)
	// aliases are permanent variable aliases (the reference client's names).
	aliases []string
	// oldEnvs and oldFlags are deprecated spellings (a warning names the new one).
	oldEnvs, oldFlags []string
	secret            bool
	noKey             bool // not read from config files (--config itself)

	src     sourceKind
	srcName string // the flag, variable or file that set the value
}

// Var registers a setting by its variable: the flag is the variable without
// the namespace, lower case, "_" as "-"; the config key is the variable
// without DRAGONFLY_, lower case.
func (s *settings) Var(v value, env, usage string) *setting {
	return s.register(v, flagFor(env, s.namespace), env, usage)
}

// Flag registers a flag-only setting: no variable, no config key (--demo,
// --json: what one invocation does, not how a deployment is configured).
func (s *settings) Flag(v value, name, usage string) *setting {
	return s.register(v, name, "", usage)
}

// add registers v under the flag name, with the variables envs (canonical
// first, then permanent aliases). Prefer Var, which derives the flag. A value
// without a Type method shows as "value" in the help.
func (s *settings) add(fv flag.Value, name, usage string, envs []string) *setting {
	v, ok := fv.(value)
	if !ok {
		v = untypedValue{fv}
	}
	env := ""
	if len(envs) > 0 {
		env = envs[0]
	}
	st := s.register(v, name, env, usage)
	if len(envs) > 1 {
		st.aliases = append(st.aliases, envs[1:]...)
	}
	return st
}

// FlagP is Flag with a one-letter shorthand (-r).
func (s *settings) FlagP(v value, name, short, usage string) *setting {
	return s.registerP(v, name, short, "", usage)
}

func (s *settings) register(v value, name, env, usage string) *setting {
	return s.registerP(v, name, "", env, usage)
}

func (s *settings) registerP(v value, name, short, env, usage string) *setting {
	st := &setting{s: s, flag: name, env: env, usage: usage, value: v, def: v.String()}
	if st.def == "false" || st.def == "0" || st.def == "0s" {
		st.def = "" // off or none: the usage says what that means
	}
	f := s.fs.VarPF(v, name, short, usage)
	if v.Type() == "bool" {
		f.NoOptDefVal = "true"
	}
	s.list = append(s.list, st)
	s.byFlag[name] = st
	return st
}

// String defines a string setting. envs are the variables, canonical first.
func (s *settings) String(p *string, name, def, usage string, envs ...string) *setting {
	return s.add(stringVal(p, def), name, usage, envs)
}

// Int defines an integer setting.
func (s *settings) Int(p *int, name string, def int, usage string, envs ...string) *setting {
	return s.add(intVal(p, def), name, usage, envs)
}

// Bool defines a boolean setting.
func (s *settings) Bool(p *bool, name string, def bool, usage string, envs ...string) *setting {
	return s.add(boolVal(p, def), name, usage, envs)
}

// Duration defines a duration setting; values are Go durations ("90s", "1m")
// or integer seconds ("60").
func (s *settings) Duration(p *time.Duration, name string, def time.Duration, usage string, envs ...string) *setting {
	return s.add(durationVal(p, def), name, usage, envs)
}

// Size defines a byte-size setting; values are integers of bytes or carry a
// unit (KiB, MiB, GiB, KB, MB, GB).
func (s *settings) Size(p *int64, name string, def int64, usage string, envs ...string) *setting {
	return s.add(sizeVal(p, def), name, usage, envs)
}

// List defines a comma-separated list setting.
func (s *settings) List(p *[]string, name string, def []string, usage string, envs ...string) *setting {
	return s.add(listVal(p, def), name, usage, envs)
}

// alias adds permanent variable aliases (documented names of the reference
// client): accepted without a warning.
func (st *setting) alias(envs ...string) *setting {
	st.aliases = append(st.aliases, envs...)
	return st
}

// deprecatedEnv adds old variable names, accepted with a warning for one
// release. Their config keys are deprecated too.
func (st *setting) deprecatedEnv(envs ...string) *setting {
	st.oldEnvs = append(st.oldEnvs, envs...)
	return st
}

// deprecatedFlag adds old flag names, accepted with a warning for one release
// and hidden from the help.
func (st *setting) deprecatedFlag(names ...string) *setting {
	for _, n := range names {
		st.s.fs.VarPF(st.value, n, "", st.usage)
		if st.value.Type() == "bool" {
			st.s.fs.Lookup(n).NoOptDefVal = "true"
		}
		_ = st.s.fs.MarkHidden(n)
		st.s.byFlag[n] = st
	}
	st.oldFlags = append(st.oldFlags, names...)
	return st
}

// markSecret marks a secret: the help shows no default, the effective
// configuration only "set", and the value may also come from a file named by
// VARIABLE_FILE (or the config key KEY_file).
func (st *setting) markSecret() *setting {
	st.secret = true
	st.def = ""
	return st
}

// defaultText replaces the default shown by --help ("number of CPUs").
func (st *setting) defaultText(text string) *setting {
	st.def = text
	return st
}

// isSet reports whether a flag, variable or config file set the setting.
func (st *setting) isSet() bool { return st.src != fromDefault }

// source describes where the value came from: "default", "flag --x",
// "env DRAGONFLY_X", "Config.toml".
func (st *setting) source() string {
	switch st.src {
	case fromFlag:
		return "flag --" + st.srcName
	case fromEnv:
		return "env " + st.srcName
	case fromFile:
		return st.srcName
	}
	return "default"
}

// envNames returns the variables read for st, canonical first, then the
// permanent aliases, then the deprecated ones.
func (st *setting) envNames() []string {
	if st.env == "" {
		return nil
	}
	out := append([]string{st.env}, st.aliases...)
	return append(out, st.oldEnvs...)
}

func (st *setting) deprecated(env string) bool {
	for _, o := range st.oldEnvs {
		if o == env {
			return true
		}
	}
	return false
}

// lookup returns the setting with the (canonical or alias) flag name.
func (s *settings) lookup(name string) *setting { return s.byFlag[name] }

// flagFor derives a flag name from a variable: without the namespace (or
// DRAGONFLY_), lower case, "_" as "-".
func flagFor(env, namespace string) string {
	n, ok := strings.CutPrefix(env, namespace)
	if !ok {
		n = strings.TrimPrefix(env, "DRAGONFLY_")
	}
	return strings.ReplaceAll(strings.ToLower(n), "_", "-")
}

// keyFor derives a config key from a variable: without DRAGONFLY_, lower case.
func keyFor(env string) string {
	return strings.ToLower(strings.TrimPrefix(env, "DRAGONFLY_"))
}

// Parse parses args, then fills every setting not given on the command line
// from the environment (lookupEnv, like os.LookupEnv) and then from the
// config files: --config / DRAGONFLY_CONFIG, or Config.toml and
// Config-dev.toml in dir. dir "" reads no config files (and offers no
// --config). An empty variable sets a string setting to ""; for other types
// it counts as unset, as compose files often pass empty values through.
func (s *settings) Parse(args []string, lookupEnv func(string) (string, bool), dir string) error {
	var configPath string
	var configSetting *setting
	if dir != "" && s.lookup("config") == nil {
		configSetting = s.Var(stringVal(&configPath, ""), "DRAGONFLY_CONFIG",
			"read settings from this TOML file instead of Config.toml and Config-dev.toml in the working directory")
		configSetting.noKey = true
	}
	if err := s.fs.Parse(normalizeArgs(s.fs, args)); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			s.usage(s.fs.Output())
			return err
		}
		return &exitError{code: 2, err: fmt.Errorf("%s (see --help)", clip.String(s.flagError(err), clip.Default))}
	}
	var err error
	s.fs.Visit(func(f *pflag.Flag) {
		st := s.byFlag[f.Name]
		if st == nil || err != nil {
			return
		}
		if st.src == fromFlag {
			err = usageError("--%s and --%s both given: they are one setting", st.srcName, f.Name)
			return
		}
		st.src, st.srcName = fromFlag, f.Name
		if f.Name != st.flag {
			s.warn("--%s is deprecated: use --%s", f.Name, st.flag)
		}
	})
	if err != nil {
		return err
	}

	// The config file setting comes first: it decides which files to read.
	if configSetting != nil && configSetting.src == fromDefault {
		if err := s.fromEnv(configSetting, lookupEnv, dir); err != nil {
			return err
		}
	}
	var conf *configData
	if dir != "" {
		paths, explicit := defaultConfigFiles(dir), false
		if configPath != "" {
			paths, explicit = []string{configPath}, true
		}
		conf, err = loadConfig(paths, explicit, knownKeys(s))
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		s.files = conf.read
	}
	for _, st := range s.list {
		if st.src != fromDefault || st == configSetting {
			continue
		}
		if err := s.fromEnv(st, lookupEnv, dir); err != nil {
			return err
		}
		if st.src != fromDefault || conf == nil || st.noKey || st.env == "" {
			continue
		}
		if err := s.fromConfig(st, conf); err != nil {
			return err
		}
	}
	return nil
}

// fromEnv sets st from its first variable that is set, or its _FILE form
// (for a secret; an empty variable beside a _FILE one counts as unset, as
// compose files pass unset variables through as empty).
func (s *settings) fromEnv(st *setting, lookupEnv func(string) (string, bool), dir string) error {
	isString := st.value.Type() == "string"
	for _, env := range st.envNames() {
		v, ok := lookupEnv(env)
		ok = ok && (v != "" || isString)
		fileVar := env + "_FILE"
		var path string
		var fromFile bool
		if st.secret {
			path, fromFile = lookupEnv(fileVar)
			fromFile = fromFile && path != ""
		}
		if ok && fromFile && v != "" {
			return usageError("%s and %s are both set: set one", env, fileVar)
		}
		name := env
		if fromFile {
			data, err := readSecretFile(path, dir)
			if err != nil {
				return usageError("%s: %w", fileVar, err)
			}
			v, ok, name = data, true, fileVar
		}
		if !ok {
			continue
		}
		if err := st.value.Set(v); err != nil {
			return usageError("%s=%s: %w", name, st.quote(v), err)
		}
		st.src, st.srcName = fromEnv, name
		if st.deprecated(env) {
			s.warn("%s is deprecated: use %s", env, st.env)
		}
		return nil
	}
	return nil
}

// fromConfig sets st from the config file of highest precedence that names it.
func (s *settings) fromConfig(st *setting, conf *configData) error {
	for i := len(conf.files) - 1; i >= 0; i-- {
		f := conf.files[i]
		var found *confValue
		var foundEnv string
		for _, env := range st.envNames() {
			key := keyFor(env)
			c, ok := f.values[key]
			var fc confValue
			var fok bool
			if st.secret {
				fc, fok = f.values[key+"_file"]
			}
			if ok && fok {
				return usageError("%s: %s and %s are both set: set one", f.name, c.key, fc.key)
			}
			if fok {
				data, err := readSecretFile(fc.value, f.dir)
				if err != nil {
					return usageError("%s: %s: %w", f.name, fc.key, err)
				}
				fc.value = data
				c, ok = fc, true
			}
			if !ok {
				continue
			}
			if found != nil {
				return usageError("%s: %s and %s are both set: they are one setting (%s)", f.name, found.key, c.key, st.env)
			}
			found, foundEnv = &c, env
		}
		if found == nil {
			continue
		}
		if err := st.value.Set(found.value); err != nil {
			return usageError("%s: %s = %s: %w", f.name, found.key, st.quote(found.value), err)
		}
		st.src, st.srcName = fromFile, f.name
		if st.deprecated(foundEnv) {
			s.warn("%s: %s is deprecated: use %s", f.name, found.key, keyFor(st.env))
		}
		return nil
	}
	return nil
}

// quote shows a value in an error message: quoted and bounded, or
// "[redacted]" for a secret.
func (st *setting) quote(v string) string {
	if st.secret {
		return "[redacted]"
	}
	return strconv.Quote(clip.String(v, 256))
}

func (s *settings) warn(format string, a ...any) {
	fmt.Fprintf(s.stderr, "%s: warning: %s\n", s.name, fmt.Sprintf(format, a...))
}

// flagError rewrites pflag's errors: an unknown flag suggests the nearest
// known one.
func (s *settings) flagError(err error) string {
	var ne *pflag.NotExistError
	if errors.As(err, &ne) && ne.GetSpecifiedShortnames() == "" {
		var names []string
		for _, st := range s.list {
			names = append(names, st.flag)
		}
		if near := nearest(ne.GetSpecifiedName(), names); near != "" {
			return fmt.Sprintf("%v (did you mean --%s?)", err, near)
		}
	}
	return err.Error()
}

// normalizeArgs rewrites the single-dash long form of Go's flag package
// (-threads=6, -threads 6) to --threads, for known flag names only, and
// leaves the values of flags and everything after "--" alone.
func normalizeArgs(fs *pflag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if fs.Lookup(name) != nil || name == "help" {
				a = "-" + a
			}
		}
		out = append(out, a)
		if name, ok := strings.CutPrefix(a, "--"); ok && !strings.Contains(name, "=") {
			if f := fs.Lookup(name); f != nil && f.NoOptDefVal == "" && i+1 < len(args) {
				out = append(out, args[i+1]) // the value, even if it starts with "-"
				i++
			}
		}
	}
	return out
}

// Args returns the positional arguments after parsing.
func (s *settings) Args() []string { return s.fs.Args() }

// usage writes the help: the summary, then every setting with its type,
// variables and default.
func (s *settings) usage(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nFlags (a flag wins over its environment variable, which wins over the config\nfiles: Config-dev.toml, then Config.toml in the working directory, or the one\nfile --config names; a config key is the variable without DRAGONFLY_, in lower\ncase: DRAGONFLY_BASE_URL is base_url):\n", s.summary)
	for _, st := range s.list {
		fmt.Fprintf(w, "  --%s", st.flag)
		if t := st.value.Type(); t != "bool" {
			fmt.Fprintf(w, " %s", t)
		}
		if envs := st.helpEnvs(); len(envs) > 0 {
			fmt.Fprintf(w, "   [env %s]", strings.Join(envs, ", "))
		}
		fmt.Fprintf(w, "\n      %s", st.usage)
		if st.secret {
			fmt.Fprint(w, " (secret: a flag shows in ps)")
		} else if st.def != "" {
			fmt.Fprintf(w, " (default %s)", st.def)
		}
		fmt.Fprintln(w)
	}
}

func (st *setting) helpEnvs() []string {
	if st.env == "" {
		return nil
	}
	envs := append([]string{st.env}, st.aliases...)
	if st.secret {
		envs = append(envs, st.env+"_FILE")
	}
	return envs
}

// logConfig logs the effective configuration once: every setting by its
// config key (the flag for flag-only settings), secrets as "set" or left out,
// and the source of every value that is not a default.
func (s *settings) logConfig(log *slog.Logger) {
	attrs := make([]any, 0, len(s.list)+2)
	var sources []any
	for _, st := range s.list {
		name := st.flag
		if st.env != "" {
			name = keyFor(st.env)
		}
		switch {
		case st.noKey && !st.isSet():
		case st.secret:
			if st.isSet() {
				attrs = append(attrs, slog.String(name, "set"))
			}
		case st.value.Type() == "size" && !st.isSet() && st.value.String() == "":
			// An unset optional size (the limit eras): the effective
			// limits say what it came to.
		default:
			attrs = append(attrs, slog.Any(name, logValue(st.value)))
		}
		if st.isSet() {
			sources = append(sources, slog.String(name, st.source()))
		}
	}
	files := s.files
	if files == nil {
		files = []string{}
	}
	attrs = append(attrs, slog.Any("config_files", files), slog.Group("sources", sources...))
	log.Info("effective configuration", attrs...)
}

// logValue is a value as a log attribute: durations as durations (seconds in
// JSON logs), sizes and integers as numbers, lists as lists.
func logValue(v value) any {
	switch x := v.(type) {
	case *durationValue:
		return time.Duration(*x)
	case *sizeValue:
		return int64(*x)
	case *intValue:
		return int(*x)
	case *boolValue:
		return bool(*x)
	case *listValue:
		return []string(*x)
	}
	return v.String()
}

// isSet reports whether the setting with the flag name was set by any source.
func (s *settings) isSet(name string) bool {
	st := s.lookup(name)
	return st != nil && st.isSet()
}

// maxSecretFile bounds a secret file.
const maxSecretFile = 64 << 10

// readSecretFile reads a secret from path (relative to dir when relative):
// its content with one trailing newline dropped. A file anyone may write is
// refused: whoever can change it can change the credential.
func readSecretFile(path, dir string) (string, error) {
	if !filepath.IsAbs(path) && dir != "" {
		path = filepath.Join(dir, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s: not a regular file", clip.String(path, 256))
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return "", fmt.Errorf("%s: writable by anyone (mode %#o): refused; chmod o-w it", clip.String(path, 256), fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxSecretFile {
		return "", fmt.Errorf("%s: larger than %d bytes: not a secret", clip.String(path, 256), maxSecretFile)
	}
	s := string(data)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	return s, nil
}

// The value types.

// untypedValue is a flag.Value of Go's flag package, without a type name.
type untypedValue struct{ flag.Value }

func (untypedValue) Type() string { return "value" }

type stringValue string

func stringVal(p *string, def string) *stringValue { *p = def; return (*stringValue)(p) }

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) Type() string       { return "string" }

type intValue int

func intVal(p *int, def int) *intValue { *p = def; return (*intValue)(p) }

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not an integer")
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (v *intValue) Type() string   { return "int" }

// shareValue is a fraction within 0..1 (a rate).
type shareValue float64

func shareVal(p *float64, def float64) *shareValue { *p = def; return (*shareValue)(p) }

func (v *shareValue) Set(s string) error {
	x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(x) || x < 0 || x > 1 {
		return errors.New("not a number within 0..1")
	}
	*v = shareValue(x)
	return nil
}
func (v *shareValue) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 64) }
func (v *shareValue) Type() string   { return "float" }

// repeatedValue collects every occurrence of a repeatable flag (-r a -r b).
type repeatedValue []string

func repeatedVal(p *[]string) *repeatedValue { *p = nil; return (*repeatedValue)(p) }

func (v *repeatedValue) Set(s string) error { *v = append(*v, s); return nil }
func (v *repeatedValue) String() string     { return strings.Join(*v, ",") }
func (v *repeatedValue) Type() string       { return "file" }

type boolValue bool

func boolVal(p *bool, def bool) *boolValue { *p = def; return (*boolValue)(p) }

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a boolean (true/false/1/0)")
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) Type() string   { return "bool" }

type durationValue time.Duration

func durationVal(p *time.Duration, def time.Duration) *durationValue {
	*p = def
	return (*durationValue)(p)
}

func (v *durationValue) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string { return formatDuration(time.Duration(*v)) }
func (v *durationValue) Type() string   { return "duration" }

// formatDuration writes a duration as people do: 10s, 1m, 1m30s, 2h, 250ms.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

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

func sizeVal(p *int64, def int64) *sizeValue { *p = def; return (*sizeValue)(p) }

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v = sizeValue(n)
	return nil
}
func (v *sizeValue) String() string { return formatSize(int64(*v)) }
func (v *sizeValue) Type() string   { return "size" }

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}

// formatSize writes a byte count in the largest unit that divides it
// (512MiB, 128MB); "" for 0 (unset).
func formatSize(n int64) string {
	if n == 0 {
		return ""
	}
	for _, u := range sizeUnits[:len(sizeUnits)-1] {
		if n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// parseSize accepts a byte count with an optional unit: 128000000, 512MiB, 64MB.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
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

func listVal(p *[]string, def []string) *listValue { *p = def; return (*listValue)(p) }

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
func (v *listValue) Type() string   { return "list" }

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
