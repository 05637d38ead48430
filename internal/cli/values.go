package cli

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/spf13/pflag"
)

// Value is a setting's value: a pflag.Value whose Type names the
// placeholder in the help (int, size, duration, list, string, bool, float).
// Each constructor below stores def in *p and returns the value that sets
// *p.
type Value = pflag.Value

// value is a setting of type T at *p: parse reads a text into a T (an
// error says what the text is not), format writes *p for help texts and
// logs, and typ names the placeholder. The configuration log shows *p
// itself when typed (durations, sizes, numbers, lists), else format's text.
type value[T any] struct {
	p      *T
	typ    string
	parse  func(string) (T, error)
	format func(T) string
	typed  bool
}

// newValue stores def in *p and returns the value that sets *p.
func newValue[T any](p *T, def T, typ string, parse func(string) (T, error), format func(T) string, typed bool) Value {
	*p = def
	return &value[T]{p: p, typ: typ, parse: parse, format: format, typed: typed}
}

func (v *value[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

func (v *value[T]) String() string { return v.format(*v.p) }
func (v *value[T]) Type() string   { return v.typ }

// logValue is the value for the configuration log.
func (v *value[T]) logValue() any {
	if v.typed {
		return *v.p
	}
	return v.String()
}

// String is a string.
func String(p *string, def string) Value {
	return newValue(p, def, "string", func(s string) (string, error) { return s, nil }, identity, false)
}

func identity(s string) string { return s }

// Int is an integer.
func Int(p *int, def int) Value {
	return newValue(p, def, "int", func(s string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return 0, errors.New("not an integer")
		}
		return n, nil
	}, strconv.Itoa, true)
}

// Share is a fraction within 0..1 (a rate).
func Share(p *float64, def float64) Value {
	return newValue(p, def, "float", func(s string) (float64, error) {
		x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(x) || x < 0 || x > 1 {
			return 0, errors.New("not a number within 0..1")
		}
		return x, nil
	}, func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }, false)
}

type repeatedValue []string

// Repeated collects every occurrence of a repeatable flag (-r a -r b).
func Repeated(p *[]string) Value { *p = nil; return (*repeatedValue)(p) }

func (v *repeatedValue) Set(s string) error { *v = append(*v, s); return nil }
func (v *repeatedValue) String() string     { return strings.Join(*v, ",") }
func (v *repeatedValue) Type() string       { return "file" }

// Bool is a boolean (true/false/1/0); as a flag it needs no value.
func Bool(p *bool, def bool) Value {
	return newValue(p, def, "bool", func(s string) (bool, error) {
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return false, errors.New("not a boolean (true/false/1/0)")
		}
		return b, nil
	}, strconv.FormatBool, true)
}

// Duration is a duration: integer seconds ("60") or a Go duration ("1m30s"),
// not negative.
func Duration(p *time.Duration, def time.Duration) Value {
	return newValue(p, def, "duration", parseDuration, FormatDuration, true)
}

// FormatDuration writes a duration as people do: 10s, 1m, 1m30s, 2h, 250ms.
func FormatDuration(d time.Duration) string {
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

// Size is a positive byte count: an integer of bytes or one with a unit
// (KiB, MiB, GiB, KB, MB, GB). def 0 means unset (the help shows none).
func Size(p *int64, def int64) Value {
	return newValue(p, def, "size", parseSize, FormatSize, true)
}

// SizeOrOff is a Size, or 0 or "off" (stored as 0: none).
func SizeOrOff(p *int64, def int64) Value {
	return newValue(p, def, "size", func(s string) (int64, error) {
		if t := strings.TrimSpace(s); t == "0" || t == "off" {
			return 0, nil
		}
		return parseSize(s)
	}, func(n int64) string {
		if n == 0 {
			return "0"
		}
		return FormatSize(n)
	}, false)
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}

// FormatSize writes a byte count in the largest unit that divides it
// (512MiB, 128MB); "" for 0 (unset).
func FormatSize(n int64) string {
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
	if n > MaxSize/mult {
		return 0, errors.New("size too large: at most 1048576GiB (1 PiB)")
	}
	return n * mult, nil
}

// MaxSize bounds every size setting (1 PiB): far beyond any real limit, and
// far enough below math.MaxInt64 that a bound plus one, or twice a bound,
// cannot overflow where it is used.
const MaxSize = 1 << 50

// List is a comma-separated list; blank entries are dropped.
func List(p *[]string, def []string) Value {
	return newValue(p, def, "list", func(s string) ([]string, error) {
		var out []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out, nil
	}, func(l []string) string { return strings.Join(l, ",") }, true)
}

type pairsValue map[string]string

// Pairs is a list of name=secret pairs separated by commas (a secret may
// hold "=" but not ","); names must be unique. Its String names the names
// only, so secrets stay out of usage texts and logs. Unset, *p is nil.
func Pairs(p *map[string]string) Value { *p = nil; return (*pairsValue)(p) }

func (c *pairsValue) Set(s string) error {
	m := pairsValue{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		name, secret, ok := strings.Cut(pair, "=")
		if !ok || name == "" || secret == "" {
			return errors.New("want name=secret pairs separated by commas")
		}
		if _, dup := m[name]; dup {
			return fmt.Errorf("%q given twice", clip.String(name, 64))
		}
		m[name] = secret
	}
	*c = m
	return nil
}

func (c *pairsValue) Type() string { return "list" }

func (c *pairsValue) String() string {
	names := make([]string, 0, len(*c))
	for name := range *c {
		names = append(names, name+"=…")
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}
