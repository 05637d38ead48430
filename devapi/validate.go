package devapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// fieldError is one FastAPI/pydantic v2 validation error, answered in a 422
// body {"detail": [fieldError, ...]}.
type fieldError struct {
	Type  string         `json:"type"`
	Loc   []any          `json:"loc"`
	Msg   string         `json:"msg"`
	Input any            `json:"input"`
	Ctx   map[string]any `json:"ctx,omitempty"`
}

// validationError is a 422 answer.
type validationError struct{ errs []fieldError }

func (e *validationError) Error() string {
	parts := make([]string, len(e.errs))
	for i, fe := range e.errs {
		parts[i] = fe.Type
	}
	return "validation failed: " + strings.Join(parts, ", ")
}

// decodeBody parses a JSON request body the way FastAPI does before
// validation: numbers keep their text (json.Number), a syntax error is a
// json_invalid error at ("body", offset).
func decodeBody(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	msg := "Expecting value"
	if err == nil && dec.More() {
		err, msg = errors.New("extra data"), "Extra data"
	}
	if err != nil {
		off := dec.InputOffset()
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			off = se.Offset
		case errors.Is(err, io.ErrUnexpectedEOF):
			off = int64(len(data)) // Python: "Expecting value" at the end
		}
		return nil, &validationError{[]fieldError{{
			Type: "json_invalid", Loc: []any{"body", off}, Msg: "JSON decode error",
			Input: map[string]any{}, Ctx: map[string]any{"error": msg},
		}}}
	}
	return v, nil
}

// fields validates the members of one JSON object body, collecting every
// error in field order like pydantic.
type fields struct {
	body map[string]any
	errs []fieldError
}

func newFields(v any) (*fields, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &validationError{[]fieldError{{
			Type: "model_attributes_type", Loc: []any{"body"},
			Msg: "Input should be a valid dictionary or object to extract fields from", Input: v,
		}}}
	}
	return &fields{body: m}, nil
}

func (f *fields) add(typ string, loc []any, msg string, input any) {
	f.errs = append(f.errs, fieldError{Type: typ, Loc: loc, Msg: msg, Input: input})
}

func (f *fields) missing(key string) {
	f.add("missing", []any{"body", key}, "Field required", f.body)
}

// present reports whether key is given and not null.
func (f *fields) present(key string) bool {
	v, ok := f.body[key]
	return ok && v != nil
}

// str reads a string field; required fields may not be absent or null.
func (f *fields) str(key string, required bool) *string {
	v, ok := f.body[key]
	if !ok || (v == nil && !required) {
		if required {
			f.missing(key)
		}
		return nil
	}
	s, ok := v.(string)
	if !ok {
		f.add("string_type", []any{"body", key}, "Input should be a valid string", v)
		return nil
	}
	return &s
}

// integer reads an int field in pydantic's lax mode: JSON integers,
// floats without a fractional part and numeric strings.
func (f *fields) integer(key string, required bool) *int {
	v, ok := f.body[key]
	if !ok || (v == nil && !required) {
		if required {
			f.missing(key)
		}
		return nil
	}
	n, fe := toInt(v)
	if fe != nil {
		fe.Loc = []any{"body", key}
		f.errs = append(f.errs, *fe)
		return nil
	}
	return &n
}

func toInt(v any) (int, *fieldError) {
	switch x := v.(type) {
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return int(n), nil
		}
		fl, err := strconv.ParseFloat(string(x), 64)
		if err == nil && fl == math.Trunc(fl) && math.Abs(fl) < 1<<62 {
			return int(fl), nil
		}
		if err == nil && fl != math.Trunc(fl) {
			return 0, &fieldError{Type: "int_from_float", Msg: "Input should be a valid integer, got a number with a fractional part", Input: v}
		}
		return 0, &fieldError{Type: "int_parsing_size", Msg: "Unable to parse input string as an integer, exceeded maximum size", Input: v}
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
			return int(n), nil
		}
		return 0, &fieldError{Type: "int_parsing", Msg: "Input should be a valid integer, unable to parse string as an integer", Input: v}
	}
	return 0, &fieldError{Type: "int_type", Msg: "Input should be a valid integer", Input: v}
}

// uuidStr reads an optional UUID field, returned in canonical form.
func (f *fields) uuidStr(key string) *string {
	v, ok := f.body[key]
	if !ok || v == nil {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		f.add("uuid_type", []any{"body", key}, "UUID input should be a string, bytes or UUID object", v)
		return nil
	}
	u, err := uuid.Parse(s)
	if err != nil {
		f.add("uuid_parsing", []any{"body", key}, "Input should be a valid UUID, "+err.Error(), v)
		return nil
	}
	c := u.String()
	return &c
}

// strList reads a required list of strings.
func (f *fields) strList(key string) []string {
	v, ok := f.body[key]
	if !ok {
		f.missing(key)
		return nil
	}
	items, ok := v.([]any)
	if !ok {
		f.add("list_type", []any{"body", key}, "Input should be a valid list", v)
		return nil
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, ok := it.(string)
		if !ok {
			f.add("string_type", []any{"body", key, i}, "Input should be a valid string", it)
			continue
		}
		out = append(out, s)
	}
	return out
}

func (f *fields) err() error {
	if len(f.errs) == 0 {
		return nil
	}
	return &validationError{f.errs}
}

// parseReport validates a PUT /package body: a success report
// {name, version, attempt?, assignment_id?, score, inspector_url?,
// rules_matched, commit} or a failure report {name, version, attempt?,
// assignment_id?, reason}. A body with both score and reason, or neither, is a
// value_error at ("body").
func parseReport(data []byte) (*report, error) {
	v, err := decodeBody(data)
	if err != nil {
		return nil, err
	}
	f, err := newFields(v)
	if err != nil {
		return nil, err
	}
	rep := &report{}
	name := f.str("name", true)
	version := f.str("version", true)
	rep.attempt = f.integer("attempt", false)
	rep.assignmentID = f.uuidStr("assignment_id")
	hasScore, hasReason := f.present("score"), f.present("reason")
	switch {
	case hasScore && hasReason:
		f.add("value_error", []any{"body"}, "Value error, a report has either score (success) or reason (failure), not both", f.body)
	case hasScore:
		rep.success = true
		if n := f.integer("score", true); n != nil {
			rep.score = *n
		}
		rep.inspectorURL = f.str("inspector_url", false)
		rep.rules = f.strList("rules_matched")
		if c := f.str("commit", true); c != nil {
			rep.commit = *c
		}
	case hasReason:
		if r := f.str("reason", true); r != nil {
			rep.reason = *r
		}
	default:
		f.add("value_error", []any{"body"}, "Value error, a report needs either score (success) or reason (failure)", f.body)
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	rep.name, rep.version = *name, *version
	return rep, nil
}

// parseNameVersion validates a POST /package body {name, version}.
func parseNameVersion(data []byte) (name, version string, err error) {
	v, err := decodeBody(data)
	if err != nil {
		return "", "", err
	}
	f, err := newFields(v)
	if err != nil {
		return "", "", err
	}
	n, ver := f.str("name", true), f.str("version", true)
	if err := f.err(); err != nil {
		return "", "", err
	}
	return *n, *ver, nil
}

// queryInt validates an integer query parameter with a lower bound, as
// FastAPI's Query(default, ge=min).
func queryInt(vals []string, key string, def, min int) (int, error) {
	if len(vals) == 0 {
		return def, nil
	}
	raw := vals[len(vals)-1]
	n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
	if errors.Is(err, strconv.ErrRange) && n > 0 {
		n, err = math.MaxInt64, nil // "no upper bound"
	}
	if err != nil {
		return 0, &validationError{[]fieldError{{
			Type: "int_parsing", Loc: []any{"query", key},
			Msg: "Input should be a valid integer, unable to parse string as an integer", Input: raw,
		}}}
	}
	if n < int64(min) {
		return 0, &validationError{[]fieldError{{
			Type: "greater_than_equal", Loc: []any{"query", key},
			Msg: "Input should be greater than or equal to " + strconv.Itoa(min), Input: raw,
			Ctx: map[string]any{"ge": min},
		}}}
	}
	if n > math.MaxInt {
		n = math.MaxInt
	}
	return int(n), nil
}
