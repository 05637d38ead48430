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

// decodeRequiredBody decodes a required JSON body: FastAPI answers an
// empty body or a JSON null with one "missing" error at ("body").
func decodeRequiredBody(data []byte) (any, error) {
	missing := &validationError{[]fieldError{{Type: "missing", Loc: []any{"body"}, Msg: "Field required", Input: nil}}}
	if len(data) == 0 {
		return nil, missing
	}
	v, err := decodeBody(data)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, missing
	}
	return v, nil
}

// fields validates the members of one JSON object body against one model,
// collecting every error in field order like pydantic. Errors are located
// at prefix + key: ("body", key) for a plain body model, ("body", model
// name, key) for a member of a union.
type fields struct {
	body   map[string]any
	prefix []any
	set    int // fields given, null included: pydantic's fields_set
	errs   []fieldError
}

func newFields(v any, prefix ...any) (*fields, error) {
	if len(prefix) == 0 {
		prefix = []any{"body"}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &validationError{[]fieldError{notObject(v, prefix)}}
	}
	return &fields{body: m, prefix: prefix}, nil
}

// notObject is pydantic's error for a body that is not an object (FastAPI
// validates with from_attributes, hence this type).
func notObject(v any, loc []any) fieldError {
	return fieldError{
		Type: "model_attributes_type", Loc: loc,
		Msg: "Input should be a valid dictionary or object to extract fields from", Input: v,
	}
}

func (f *fields) loc(key string, more ...any) []any {
	out := append(append([]any(nil), f.prefix...), key)
	return append(out, more...)
}

// get returns a field's value and whether it was given, counting it.
func (f *fields) get(key string) (any, bool) {
	v, ok := f.body[key]
	if ok {
		f.set++
	}
	return v, ok
}

func (f *fields) add(typ string, loc []any, msg string, input any) {
	f.errs = append(f.errs, fieldError{Type: typ, Loc: loc, Msg: msg, Input: input})
}

// str reads a required string field (null is a string_type error).
func (f *fields) str(key string) *string {
	v, ok := f.get(key)
	if !ok {
		f.add("missing", f.loc(key), "Field required", f.body)
		return nil
	}
	return f.asStr(key, v, "string_type", "Input should be a valid string")
}

// optStr reads a `str | None = None` field.
func (f *fields) optStr(key string) *string {
	if v, ok := f.opt(key); ok {
		return f.asStr(key, v, "string_type", "Input should be a valid string")
	}
	return nil
}

// opt reads an optional field: its value, false when absent or null.
func (f *fields) opt(key string) (any, bool) {
	v, ok := f.get(key)
	return v, ok && v != nil
}

// asStr is field key's value v as a string; nil, and an error of typ with
// msg, when it is not one.
func (f *fields) asStr(key string, v any, typ, msg string) *string {
	s, ok := v.(string)
	if !ok {
		f.add(typ, f.loc(key), msg, v)
		return nil
	}
	return &s
}

// asInt is field key's value v as pydantic's lax mode reads an int (see
// toInt); false, and the error, when it is not one.
func (f *fields) asInt(key string, v any) (int, bool) {
	n, fe := toInt(v)
	if fe != nil {
		fe.Loc = f.loc(key)
		f.errs = append(f.errs, *fe)
		return 0, false
	}
	return n, true
}

// intOr reads an `int = def` field in pydantic's lax mode (null is an
// int_type error).
func (f *fields) intOr(key string, def int) int {
	v, ok := f.get(key)
	if !ok {
		return def
	}
	if n, ok := f.asInt(key, v); ok {
		return n
	}
	return def
}

// optIntGE reads an `int | None = Field(None, ge=min)` field.
func (f *fields) optIntGE(key string, min int) *int {
	v, ok := f.opt(key)
	if !ok {
		return nil
	}
	n, ok := f.asInt(key, v)
	if !ok {
		return nil
	}
	if n < min {
		f.errs = append(f.errs, fieldError{
			Type: "greater_than_equal", Loc: f.loc(key), Msg: "Input should be greater than or equal to " + strconv.Itoa(min),
			Input: v, Ctx: map[string]any{"ge": min},
		})
		return nil
	}
	return &n
}

// toInt converts a JSON value to an int as pydantic's lax mode does: JSON
// integers, floats without a fractional part, numeric strings and booleans.
// Integers beyond int64 saturate (Python's are unbounded; the comparisons
// and range checks they meet give the same answers).
func toInt(v any) (int, *fieldError) {
	switch x := v.(type) {
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return int(n), nil
		} else if errors.Is(err, strconv.ErrRange) {
			if strings.HasPrefix(string(x), "-") {
				return math.MinInt64, nil
			}
			return math.MaxInt64, nil
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
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	}
	return 0, &fieldError{Type: "int_type", Msg: "Input should be a valid integer", Input: v}
}

// optUUID reads a `uuid.UUID | None = None` field, returned in canonical
// form.
func (f *fields) optUUID(key string) *string {
	v, ok := f.opt(key)
	if !ok {
		return nil
	}
	s := f.asStr(key, v, "uuid_type", "UUID input should be a string, bytes or UUID object")
	if s == nil {
		return nil
	}
	u, err := uuid.Parse(*s)
	if err != nil {
		f.add("uuid_parsing", f.loc(key), "Input should be a valid UUID, "+err.Error(), v)
		return nil
	}
	c := u.String()
	return &c
}

// strListOr reads a `list[str] = []` field.
func (f *fields) strListOr(key string) []string {
	v, ok := f.get(key)
	if !ok {
		return []string{}
	}
	items, ok := v.([]any)
	if !ok {
		f.add("list_type", f.loc(key), "Input should be a valid list", v)
		return nil
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, ok := it.(string)
		if !ok {
			f.add("string_type", f.loc(key, i), "Input should be a valid string", it)
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

// The models of the real server's PUT /package body, which FastAPI
// validates as the union PackageScanResult | PackageScanResultFail.
const (
	modelSuccess = "PackageScanResult"
	modelFailure = "PackageScanResultFail"
)

// parseSuccess validates body as PackageScanResult: name, version, commit
// required; score (default 0), inspector_url (default null), rules_matched
// (default []), attempt (null or >= 1), assignment_id (null or a UUID).
func parseSuccess(body any) (*report, int, []fieldError) {
	return parseModel(body, modelSuccess, func(f *fields) *report {
		rep := &report{success: true}
		rep.name, rep.version = deref(f.str("name")), deref(f.str("version"))
		rep.commit = deref(f.str("commit"))
		rep.score = f.intOr("score", 0)
		rep.inspectorURL = f.optStr("inspector_url")
		rep.rules = f.strListOr("rules_matched")
		rep.attempt = f.optIntGE("attempt", 1)
		rep.assignmentID = f.optUUID("assignment_id")
		return rep
	})
}

// parseFailure validates body as PackageScanResultFail: name, version,
// reason required; attempt and assignment_id as for a success.
func parseFailure(body any) (*report, int, []fieldError) {
	return parseModel(body, modelFailure, func(f *fields) *report {
		rep := &report{}
		rep.name, rep.version = deref(f.str("name")), deref(f.str("version"))
		rep.reason = deref(f.str("reason"))
		rep.attempt = f.optIntGE("attempt", 1)
		rep.assignmentID = f.optUUID("assignment_id")
		return rep
	})
}

// parseModel validates body as model, whose fields read takes, in order;
// the report and the number of fields given, or every field's error.
func parseModel(body any, model string, read func(*fields) *report) (*report, int, []fieldError) {
	f, err := newFields(body, "body", model)
	if err != nil {
		return nil, 0, err.(*validationError).errs
	}
	rep := read(f)
	if len(f.errs) > 0 {
		return nil, 0, f.errs
	}
	return rep, f.set, nil
}

// parseReport validates a PUT /package body as the real server's union
// PackageScanResult | PackageScanResultFail in pydantic's smart mode: every
// member is tried; if both fit, the one with more of its fields given wins,
// a tie goes to the first (success); if neither fits, the 422 lists the
// errors of both, each located under its model's name. Unknown fields are
// ignored. So {name, version, commit} is a success with score 0, and a
// body with commit and reason but no score is a success too (three fields
// each), while one with score and reason but no commit is a failure. An
// empty or null body is one "missing" error at ("body").
func parseReport(data []byte) (*report, error) {
	v, err := decodeRequiredBody(data)
	if err != nil {
		return nil, err
	}
	ok, okSet, okErrs := parseSuccess(v)
	fail, failSet, failErrs := parseFailure(v)
	switch {
	case ok != nil && (fail == nil || okSet >= failSet):
		return ok, nil
	case fail != nil:
		return fail, nil
	}
	return nil, &validationError{append(okErrs, failErrs...)}
}

// parseNameVersion validates a POST /package body {name, version}.
func parseNameVersion(data []byte) (name, version string, err error) {
	v, err := decodeRequiredBody(data)
	if err != nil {
		return "", "", err
	}
	f, err := newFields(v)
	if err != nil {
		return "", "", err
	}
	n, ver := f.str("name"), f.str("version")
	if err := f.err(); err != nil {
		return "", "", err
	}
	return *n, *ver, nil
}

// queryInt validates an integer query parameter as FastAPI's `key: int =
// def` (no bounds: the real server has none on batch or since). Values
// beyond int64 saturate.
func queryInt(vals []string, key string, def int) (int, error) {
	if len(vals) == 0 {
		return def, nil
	}
	raw := vals[len(vals)-1]
	n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		err = nil // n is already saturated to the int64 bound of its sign
	}
	if err != nil {
		return 0, &validationError{[]fieldError{{
			Type: "int_parsing", Loc: []any{"query", key},
			Msg: "Input should be a valid integer, unable to parse string as an integer", Input: raw,
		}}}
	}
	return int(n), nil
}
