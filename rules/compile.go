package rules

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yara.h>

// DF_MAX_MESSAGES bounds the bytes of compiler messages kept: a hostile
// rule set can make libyara warn about every string (two warnings for each
// six bytes of source); the messages beyond are counted, not kept.
#define DF_MAX_MESSAGES (1 << 20)

// df_buf is a growable buffer in C memory.
typedef struct {
	char* data;
	size_t len;
	size_t cap;
	int oom;
	size_t dropped; // messages not kept (over DF_MAX_MESSAGES, or no memory)
} df_buf;

// df_reserve makes room for n more bytes; 0 when memory runs out.
static int df_reserve(df_buf* b, size_t n) {
	if (n > SIZE_MAX / 4 - b->len) {
		return 0;
	}
	if (b->len + n <= b->cap) {
		return 1;
	}
	size_t c = b->cap ? b->cap : 4096;
	while (c < b->len + n) {
		c *= 2;
	}
	char* d = realloc(b->data, c);
	if (d == NULL) {
		return 0;
	}
	b->data = d;
	b->cap = c;
	return 1;
}

static void df_put(df_buf* b, const void* p, size_t n) {
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

// df_message records one compiler message in the df_buf user_data points
// to: its level and line (int32 each), then the rule's identifier (warnings
// only: an error's rule may be half built) and the text, NUL-terminated. A
// record is written whole or not at all.
static void df_message(int level, const char* file, int line, const YR_RULE* rule, const char* message, void* user_data) {
	df_buf* b = user_data;
	const char* id = "";
	if (rule != NULL && level == YARA_ERROR_LEVEL_WARNING && rule->identifier != NULL) {
		id = rule->identifier;
	}
	if (message == NULL) {
		message = "";
	}
	size_t idn = strlen(id) + 1, mn = strlen(message) + 1;
	int32_t v[2] = {level, line};
	size_t n = sizeof v + idn + mn;
	if (n > DF_MAX_MESSAGES - b->len || !df_reserve(b, n)) {
		b->dropped++;
		return;
	}
	df_put(b, v, sizeof v);
	df_put(b, id, idn);
	df_put(b, message, mn);
}

static size_t df_write(const void* ptr, size_t size, size_t count, void* user_data) {
	df_buf* b = user_data;
	if (b->oom || (size != 0 && count > SIZE_MAX / 4 / size) || !df_reserve(b, size * count)) {
		b->oom = 1;
		return 0;
	}
	df_put(b, ptr, size * count);
	return count;
}

// df_compile compiles src (includes disabled) and saves the rules to saved.
// It returns a libyara error code; *errors is the number of errors in src
// (then errmsg holds libyara's message for the last one).
static int df_compile(const char* src, df_buf* msgs, df_buf* saved, int* errors, char* errmsg, int errlen) {
	YR_COMPILER* c = NULL;
	*errors = 0;
	int r = yr_compiler_create(&c);
	if (r != ERROR_SUCCESS) {
		return r;
	}
	yr_compiler_set_callback(c, df_message, msgs);
	yr_compiler_set_include_callback(c, NULL, NULL, NULL);
	*errors = yr_compiler_add_string(c, src, NULL);
	if (*errors > 0) {
		yr_compiler_get_error_message(c, errmsg, errlen);
		yr_compiler_destroy(c);
		return ERROR_SUCCESS;
	}
	YR_RULES* rules = NULL;
	r = yr_compiler_get_rules(c, &rules);
	yr_compiler_destroy(c);
	if (r != ERROR_SUCCESS) {
		return r;
	}
	YR_STREAM st = {.user_data = saved, .write = df_write};
	r = yr_rules_save_stream(rules, &st);
	yr_rules_destroy(rules);
	if (saved->oom) {
		r = ERROR_INSUFFICIENT_MEMORY;
	}
	return r;
}
*/
import "C"

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unsafe"

	yara "github.com/hillu/go-yara/v4"
)

// yaraMessage is one libyara compiler message.
type yaraMessage struct {
	warning bool
	line    int
	rule    string // a warning's rule, "" when none
	text    string
}

// yaraCompile compiles YARA source text with includes disabled and returns
// the rules with libyara's warnings and, when the text does not compile,
// its errors and a *sourceError (other errors: libyara could not compile,
// such as out of memory).
//
// The project compiles with this rather than go-yara's Compiler: go-yara
// v4.2.4 (the version Debian's libyara 4.2.3 allows) gives libyara a pointer
// to Go memory for the compiler's message callback and lets the garbage
// collector free it while libyara still compiles, so a warning or an error
// read a dead handle and the process panicked ("misuse of an invalid
// Handle"; fixed in v4.3.2, hillu/go-yara#120). A worker hit it compiling a
// rule subset beside its scans. Here the messages are collected in C memory.
// The rules come back saved and reloaded, which also gives them compact
// buffers (about 100 kB for the bench rules) instead of the compiler's, which
// start at 1 MiB per section: about 8 MiB resident per set whatever its size.
func yaraCompile(text string) (*yara.Rules, []yaraMessage, error) {
	csrc := C.CString(text)
	defer C.free(unsafe.Pointer(csrc))
	var msgs, saved C.df_buf
	defer func() {
		C.free(unsafe.Pointer(msgs.data))
		C.free(unsafe.Pointer(saved.data))
	}()
	var nerr C.int
	var errmsg [1024]C.char
	code := C.df_compile(csrc, &msgs, &saved, &nerr, &errmsg[0], C.int(len(errmsg)))
	ms := parseMessages(cBytes(msgs.data, msgs.len))
	if msgs.dropped > 0 {
		ms = append(ms, yaraMessage{warning: true, text: fmt.Sprintf("%d more libyara messages not kept (over %d bytes of them)", msgs.dropped, C.DF_MAX_MESSAGES)})
	}
	if code != C.ERROR_SUCCESS {
		return nil, ms, yara.Error(code)
	}
	if nerr > 0 {
		return nil, ms, &sourceError{msg: C.GoString(&errmsg[0])}
	}
	// ReadRules copies what it needs into libyara's own memory before saved
	// is freed.
	yr, err := yara.ReadRules(bytes.NewReader(cBytes(saved.data, saved.len)))
	if err != nil {
		return nil, ms, fmt.Errorf("load compiled rules: %w", err)
	}
	return yr, ms, nil
}

// cBytes is the n bytes of C memory at p, not copied (nil when n is 0).
func cBytes(p *C.char, n C.size_t) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

// sourceError is libyara's message for YARA source that does not compile.
type sourceError struct{ msg string }

func (e *sourceError) Error() string { return e.msg }

// parseMessages reads the records df_message wrote (whole records only).
func parseMessages(b []byte) []yaraMessage {
	var ms []yaraMessage
	for len(b) >= 8 {
		m := yaraMessage{
			warning: int32(binary.NativeEndian.Uint32(b)) == C.YARA_ERROR_LEVEL_WARNING,
			line:    int(int32(binary.NativeEndian.Uint32(b[4:]))),
		}
		var ok bool
		if m.rule, b, ok = cutString(b[8:]); !ok {
			break
		}
		if m.text, b, ok = cutString(b); !ok {
			break
		}
		ms = append(ms, m)
	}
	return ms
}

// cutString cuts a NUL-terminated string from the front of b.
func cutString(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}
