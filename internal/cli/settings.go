package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/spf13/pflag"
)

// Settings is a command's flag set (github.com/spf13/pflag) whose settings
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
type Settings struct {
	fs        *pflag.FlagSet
	name      string // "dragonfly scan"
	summary   string
	namespace string // variable prefix the flag names drop; default "DRAGONFLY_"
	list      []*Setting
	byFlag    map[string]*Setting // canonical and alias flag names
	stderr    io.Writer           // warnings (deprecated names)
	// files are the config files read by Parse, lowest precedence first.
	files []string
	// others are the settings of the other commands of the program: a
	// config file may hold any key one of them reads.
	others func() []*Settings
}

// New returns empty settings for the command name ("dragonfly scan").
// summary is printed first by --help. Help goes to stdout, warnings to
// stderr (see SetOutput). Its config files may hold only its own keys (see
// Program.Settings).
func New(name, summary string) *Settings {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(os.Stdout)
	fs.Usage = func() {} // Parse prints the help itself
	fs.SortFlags = false
	return &Settings{fs: fs, name: name, summary: summary, namespace: "DRAGONFLY_", byFlag: map[string]*Setting{}, stderr: os.Stderr}
}

// SetOutput sends --help to stdout and warnings to stderr.
func (s *Settings) SetOutput(stdout, stderr io.Writer) {
	s.fs.SetOutput(stdout)
	s.stderr = stderr
}

// SetNamespace names the variable prefix the flags drop
// ("DRAGONFLY_STATUS_": DRAGONFLY_STATUS_TIMEOUT is --timeout). Call it
// before registering.
func (s *Settings) SetNamespace(prefix string) { s.namespace = prefix }

// Namespace is the variable prefix the flags drop.
func (s *Settings) Namespace() string { return s.namespace }

// sourceKind is where a setting's value came from.
type sourceKind int

const (
	fromDefault sourceKind = iota
	fromFile
	fromEnv
	fromFlag
)

// Setting is one registered setting.
type Setting struct {
	s     *Settings
	flag  string // canonical flag name, without dashes
	short string // one-letter shorthand, "" for none
	env   string // canonical variable; "" for a flag-only setting
	usage string
	value Value
	def   string // the default as shown by --help ("" shows none)
	// aliases are permanent variable aliases (the reference client's names).
	aliases []string
	// oldEnvs and oldFlags are deprecated spellings (a warning names the new one).
	oldEnvs, oldFlags []string
	secret            bool
	noKey             bool // not read from config files (--config itself)

	src     sourceKind
	srcName string // the flag, variable or file that set the value
	srcKey  string // the config key that set it (in file srcName); "" for a _file key
}

// Var registers a setting by its variable: the flag is the variable without
// the namespace, lower case, "_" as "-"; the config key is the variable
// without DRAGONFLY_, lower case.
func (s *Settings) Var(v Value, env, usage string) *Setting {
	return s.register(v, FlagFor(env, s.namespace), "", env, usage)
}

// Flag registers a flag-only setting: no variable, no config key (--demo,
// --json: what one invocation does, not how a deployment is configured).
func (s *Settings) Flag(v Value, name, usage string) *Setting {
	return s.register(v, name, "", "", usage)
}

// FlagP is Flag with a one-letter shorthand (-r).
func (s *Settings) FlagP(v Value, name, short, usage string) *Setting {
	return s.register(v, name, short, "", usage)
}

func (s *Settings) register(v Value, name, short, env, usage string) *Setting {
	st := &Setting{s: s, flag: name, short: short, env: env, usage: usage, value: v, def: v.String()}
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

// Alias adds permanent variable aliases (documented names of the reference
// client): accepted without a warning.
func (st *Setting) Alias(envs ...string) *Setting {
	st.aliases = append(st.aliases, envs...)
	return st
}

// DeprecatedEnv adds old variable names, accepted with a warning for one
// release. Their config keys are deprecated too.
func (st *Setting) DeprecatedEnv(envs ...string) *Setting {
	st.oldEnvs = append(st.oldEnvs, envs...)
	return st
}

// DeprecatedFlag adds old flag names, accepted with a warning for one
// release and hidden from the help.
func (st *Setting) DeprecatedFlag(names ...string) *Setting {
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

// MarkSecret marks a secret: the help shows no default, the effective
// configuration only "set", and the value may also come from a file named by
// VARIABLE_FILE (or the config key KEY_file).
func (st *Setting) MarkSecret() *Setting {
	st.secret = true
	st.def = ""
	return st
}

// DefaultText replaces the default shown by --help ("number of CPUs").
func (st *Setting) DefaultText(text string) *Setting {
	st.def = text
	return st
}

// Flag is the canonical flag name, without dashes.
func (st *Setting) Flag() string { return st.flag }

// Env is the canonical variable; "" for a flag-only setting.
func (st *Setting) Env() string { return st.env }

// Value is the setting's value.
func (st *Setting) Value() Value { return st.value }

// Secret reports whether the setting is a secret.
func (st *Setting) Secret() bool { return st.secret }

// Default is the default as --help shows it ("" shows none).
func (st *Setting) Default() string { return st.def }

// OldFlags are the deprecated flag names.
func (st *Setting) OldFlags() []string { return st.oldFlags }

// IsSet reports whether a flag, variable or config file set the setting.
func (st *Setting) IsSet() bool { return st.src != fromDefault }

// Source describes where the value came from: "default", "flag --x",
// "env DRAGONFLY_X", "Config.toml".
func (st *Setting) Source() string {
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

// asGiven names the setting a usage error message starts with as the user
// gave it: a message "DRAGONFLY_X=v: ..." or "DRAGONFLY_X: ..." about a
// setting given as a flag reads "--x=v: ..." ("--x: ..."); given as another
// of its variables, it names that one; given in a config file, it names the
// file and key ("Config.toml: x = v: ..."). Other messages, and settings
// from a _FILE variable or key (v would be the file's content), are left as
// they are.
func (s *Settings) asGiven(msg string) string {
	end := strings.IndexAny(msg, "=:")
	if end <= 0 {
		return msg
	}
	name := msg[:end]
	for _, st := range s.list {
		if st.env == "" || !slices.Contains(st.Vars(), name) {
			continue
		}
		switch {
		case st.src == fromFlag:
			return "--" + st.srcName + msg[end:]
		case st.src == fromEnv && slices.Contains(st.Vars(), st.srcName):
			return st.srcName + msg[end:]
		case st.src == fromFile && st.srcKey != "" && msg[end] == '=':
			return st.srcName + ": " + st.srcKey + " = " + msg[end+1:]
		case st.src == fromFile && st.srcKey != "":
			return st.srcName + ": " + st.srcKey + msg[end:]
		}
		return msg
	}
	return msg
}

// Vars returns the variables read for st, canonical first, then the
// permanent aliases, then the deprecated ones.
func (st *Setting) Vars() []string {
	if st.env == "" {
		return nil
	}
	out := append([]string{st.env}, st.aliases...)
	return append(out, st.oldEnvs...)
}

func (st *Setting) deprecated(env string) bool {
	for _, o := range st.oldEnvs {
		if o == env {
			return true
		}
	}
	return false
}

// Lookup returns the setting with the (canonical or alias) flag name.
func (s *Settings) Lookup(name string) *Setting { return s.byFlag[name] }

// IsSet reports whether the setting with the flag name was set by any source.
func (s *Settings) IsSet(name string) bool {
	st := s.Lookup(name)
	return st != nil && st.IsSet()
}

// All returns the settings in registration order.
func (s *Settings) All() []*Setting { return s.list }

// Files are the config files Parse read, lowest precedence first.
func (s *Settings) Files() []string { return s.files }

// Args returns the positional arguments after parsing.
func (s *Settings) Args() []string { return s.fs.Args() }

// FlagFor derives a flag name from a variable: without the namespace (or
// DRAGONFLY_), lower case, "_" as "-".
func FlagFor(env, namespace string) string {
	n, ok := strings.CutPrefix(env, namespace)
	if !ok {
		n = strings.TrimPrefix(env, "DRAGONFLY_")
	}
	return strings.ReplaceAll(strings.ToLower(n), "_", "-")
}

// KeyFor derives a config key from a variable: without DRAGONFLY_, lower case.
func KeyFor(env string) string {
	return strings.ToLower(strings.TrimPrefix(env, "DRAGONFLY_"))
}

// Parse parses args, then fills every setting not given on the command line
// from the environment (lookupEnv, like os.LookupEnv) and then from the
// config files: --config / DRAGONFLY_CONFIG, or Config.toml and
// Config-dev.toml in dir. dir "" reads no config files (and offers no
// --config). An empty variable sets a string setting to ""; for other types
// it counts as unset, as compose files often pass empty values through.
// --help prints the help and returns pflag.ErrHelp; every other error is an
// ExitError with status 2.
func (s *Settings) Parse(args []string, lookupEnv func(string) (string, bool), dir string) error {
	var configPath string
	var configSetting *Setting
	if dir != "" && s.Lookup("config") == nil {
		configSetting = s.Var(String(&configPath, ""), "DRAGONFLY_CONFIG",
			"read settings from this TOML file instead of Config.toml and Config-dev.toml in the working directory")
		configSetting.noKey = true
	}
	if err := s.fs.Parse(normalizeArgs(s.fs, args)); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			s.Usage(s.fs.Output())
			return err
		}
		return Exit(2, fmt.Errorf("%s (see --help)", clip.String(s.flagError(err), clip.Default)))
	}
	var err error
	s.fs.Visit(func(f *pflag.Flag) {
		st := s.byFlag[f.Name]
		if st == nil || err != nil {
			return
		}
		if st.src == fromFlag {
			err = Usage("--%s and --%s both given: they are one setting", st.srcName, f.Name)
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
		conf, err = loadConfig(paths, explicit, s.knownKeys())
		if err != nil {
			return Exit(2, err)
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
func (s *Settings) fromEnv(st *Setting, lookupEnv func(string) (string, bool), dir string) error {
	isString := st.value.Type() == "string"
	for _, env := range st.Vars() {
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
			return Usage("%s and %s are both set: set one", env, fileVar)
		}
		name := env
		if fromFile {
			data, err := readSecretFile(path, dir)
			if err != nil {
				return Usage("%s: %w", fileVar, err)
			}
			// An empty file counts as unset (README): the next source
			// applies, and the setting is not logged as set.
			v, ok, name = data, data != "", fileVar
		}
		if !ok {
			continue
		}
		if err := st.value.Set(v); err != nil {
			return Usage("%s=%s: %w", name, st.quote(v), err)
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
func (s *Settings) fromConfig(st *Setting, conf *configData) error {
	for i := len(conf.files) - 1; i >= 0; i-- {
		f := conf.files[i]
		var found *confValue
		var foundEnv string
		for _, env := range st.Vars() {
			key := KeyFor(env)
			c, ok := f.values[key]
			var fc confValue
			var fok bool
			if st.secret {
				fc, fok = f.values[key+"_file"]
			}
			if ok && fok {
				return Usage("%s: %s and %s are both set: set one", f.name, c.key, fc.key)
			}
			if fok {
				data, err := readSecretFile(fc.value, f.dir)
				if err != nil {
					return Usage("%s: %s: %w", f.name, fc.key, err)
				}
				// An empty file counts as unset, like the variable's.
				if data != "" {
					fc.value = data
					c, ok = fc, true
				}
			}
			if !ok {
				continue
			}
			if found != nil {
				return Usage("%s: %s and %s are both set: they are one setting (%s)", f.name, found.key, c.key, st.env)
			}
			found, foundEnv = &c, env
		}
		if found == nil {
			continue
		}
		if err := st.value.Set(found.value); err != nil {
			return Usage("%s: %s = %s: %w", f.name, found.key, st.quote(found.value), err)
		}
		st.src, st.srcName, st.srcKey = fromFile, f.name, found.key
		if st.secret && found.key != KeyFor(foundEnv) {
			st.srcKey = "" // its _file key: the value is the file's content
		}
		if st.deprecated(foundEnv) {
			s.warn("%s: %s is deprecated: use %s", f.name, found.key, KeyFor(st.env))
		}
		return nil
	}
	return nil
}

// quote shows a value in an error message: quoted and bounded, or
// "[redacted]" for a secret.
func (st *Setting) quote(v string) string {
	if st.secret {
		return "[redacted]"
	}
	return strconv.Quote(clip.String(v, 256))
}

func (s *Settings) warn(format string, a ...any) {
	fmt.Fprintf(s.stderr, "%s: warning: %s\n", s.name, fmt.Sprintf(format, a...))
}

// flagError rewrites pflag's errors: an unknown flag suggests the nearest
// known one.
func (s *Settings) flagError(err error) string {
	var ne *pflag.NotExistError
	if errors.As(err, &ne) && ne.GetSpecifiedShortnames() == "" {
		var names []string
		for _, st := range s.list {
			names = append(names, st.flag)
		}
		if near := Nearest(ne.GetSpecifiedName(), names); near != "" {
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

// Usage writes the help: the summary, then every setting with its type,
// variables and default, under a header that says which sources this
// command reads (config files only where Parse offers --config).
func (s *Settings) Usage(w io.Writer) {
	fmt.Fprintf(w, "%s\n", s.summary)
	switch {
	case len(s.list) == 0:
		return
	case s.Lookup("config") != nil:
		fmt.Fprint(w, "\nFlags (a flag wins over its environment variable, which wins over the config\nfiles: Config-dev.toml, then Config.toml in the working directory, or the one\nfile --config names; a config key is the variable without DRAGONFLY_, in lower\ncase: DRAGONFLY_BASE_URL is base_url):\n")
	case slices.ContainsFunc(s.list, func(st *Setting) bool { return st.env != "" }):
		fmt.Fprint(w, "\nFlags (a flag wins over its environment variable; this command reads no\nconfig file):\n")
	default:
		fmt.Fprint(w, "\nFlags:\n")
	}
	for _, st := range s.list {
		if st.short != "" {
			fmt.Fprintf(w, "  -%s, --%s", st.short, st.flag)
		} else {
			fmt.Fprintf(w, "  --%s", st.flag)
		}
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

func (st *Setting) helpEnvs() []string {
	if st.env == "" {
		return nil
	}
	envs := append([]string{st.env}, st.aliases...)
	if st.secret {
		envs = append(envs, st.env+"_FILE")
	}
	return envs
}

// LogConfig logs the effective configuration once: every setting by its
// config key (the flag for flag-only settings), secrets as "set" or left out,
// and the source of every value that is not a default.
func (s *Settings) LogConfig(log *slog.Logger) {
	attrs := make([]any, 0, len(s.list)+2)
	var sources []any
	for _, st := range s.list {
		name := st.flag
		if st.env != "" {
			name = KeyFor(st.env)
		}
		switch {
		case st.noKey && !st.IsSet():
		case st.secret:
			if st.IsSet() {
				attrs = append(attrs, slog.String(name, "set"))
			}
		case st.value.Type() == "size" && !st.IsSet() && st.value.String() == "":
			// An unset optional size (the limit eras): the effective
			// limits say what it came to.
		default:
			attrs = append(attrs, slog.Any(name, logValue(st.value)))
		}
		if st.IsSet() {
			sources = append(sources, slog.String(name, st.Source()))
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
func logValue(v Value) any {
	if lv, ok := v.(interface{ logValue() any }); ok {
		x := lv.logValue()
		if s, ok := x.(string); ok {
			return hideURLSecrets(s)
		}
		return x
	}
	return hideURLSecrets(v.String())
}

// hideURLSecrets shows a URL-shaped value (https://user:pass@host/?key=x)
// without its user info, query and fragment: a credential written into a
// URL setting is not logged.
func hideURLSecrets(s string) string {
	if strings.Contains(s, "://") && strings.ContainsAny(s, "@?#") {
		return clip.URL(s)
	}
	return s
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
	data, err := bound.ReadFile(path, maxSecretFile, func(m os.FileMode) error {
		if err := bound.Regular(m); err != nil {
			return fmt.Errorf("%s: %w", clip.String(path, 256), err)
		}
		if m.Perm()&0o002 != 0 {
			return fmt.Errorf("%s: writable by anyone (mode %#o): refused; chmod o-w it", clip.String(path, 256), m.Perm())
		}
		return nil
	})
	if errors.Is(err, bound.ErrTooLarge) {
		return "", fmt.Errorf("%s: %w: not a secret", clip.String(path, 256), err)
	}
	if err != nil {
		return "", err
	}
	s := string(data)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	return s, nil
}
