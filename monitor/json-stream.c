/*
 * The protocol's input splitter: see json-stream.h. Pure logic; the caller's
 * thread (the control thread for vmmd).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/json-stream.h"

enum {
	ST_START,   /* between values */
	ST_VALUE,   /* inside an object or array being collected */
	ST_SCALAR,  /* a top-level number or literal (an error once it ends) */
	ST_STRING,  /* a top-level string (an error once it ends) */
	ST_DISCARD, /* skipping the rest of a value after an error */
	ST_KEYWORD, /* a top-level word: true, false, null or an invalid keyword */
	ST_NUMBER,  /* a top-level number */
	ST_RECOVER, /* after a stray byte: skip to a structural or control character */
};

void json_stream_init(struct json_stream *s, size_t max_size, unsigned max_depth)
{
	memset(s, 0, sizeof(*s));
	s->max_size = max_size;
	s->max_depth = max_depth;
	s->state = ST_START;
}

static void drop_buffer(struct json_stream *s)
{
	free(s->buf);
	s->buf = NULL;
	s->len = 0;
	s->cap = 0;
}

void json_stream_reset(struct json_stream *s)
{
	drop_buffer(s);
	s->depth = 0;
	s->in_string = false;
	s->escape = false;
	s->state = ST_START;
}

void json_stream_release(struct json_stream *s)
{
	json_stream_reset(s);
}

/* Bytes that force a resynchronisation (QEMU: control characters, 0xFE, 0xFF). */
static bool is_resync(unsigned char c)
{
	return (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') || c >= 0xfe;
}

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_delim(unsigned char c)
{
	return is_space(c) || c == '{' || c == '}' || c == '[' || c == ']' || c == ',' ||
	       c == ':' || c == '"' || is_resync(c);
}

static char *limit_msg(bool depth, size_t limit)
{
	char *m = NULL;
	int r = depth ? asprintf(&m, "JSON nesting exceeds the maximum depth of %zu", limit)
		      : asprintf(&m, "JSON message exceeds the maximum size of %zu bytes", limit);

	return r < 0 ? NULL : m;
}

/* Start discarding the current value; returns the error to report. */
static char *fail(struct json_stream *s, char *err)
{
	drop_buffer(s);
	s->state = s->depth > 0 || s->in_string ? ST_DISCARD : ST_START;
	return err;
}

static int append(struct json_stream *s, const char *p, size_t n)
{
	if (s->len + n > s->cap) {
		size_t cap = s->cap ? s->cap : 256;
		char *nb;

		while (cap < s->len + n) {
			cap *= 2;
		}
		if (cap > s->max_size) {
			cap = s->max_size;
		}
		nb = realloc(s->buf, cap);
		if (!nb) {
			return -1;
		}
		s->buf = nb;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	return 0;
}

/* Track strings and nesting for one byte of a value. Returns true at its end. */
static bool track(struct json_stream *s, unsigned char c)
{
	if (s->in_string) {
		if (s->escape) {
			s->escape = false;
		} else if (c == '\\') {
			s->escape = true;
		} else if (c == '"') {
			s->in_string = false;
		}
		return false;
	}
	switch (c) {
	case '"':
		s->in_string = true;
		break;
	case '{':
	case '[':
		s->depth++;
		break;
	case '}':
	case ']':
		if (s->depth > 0) {
			s->depth--;
		}
		return s->depth == 0;
	}
	return false;
}

static json_t *parse(struct json_stream *s, char **ret_err)
{
	json_error_t jerr;
	json_t *v;

	v = json_loadb(s->buf, s->len, JSON_REJECT_DUPLICATES, &jerr);
	drop_buffer(s);
	if (!v) {
		/* QEMU 7.2's words where they are fixed (golden/qmp-stray.json) */
		const char *text = json_error_code(&jerr) == json_error_duplicate_key
					   ? "duplicate key"
					   : jerr.text;

		if (asprintf(ret_err, "JSON parse error, %s", text) < 0) {
			*ret_err = NULL;
		}
		return NULL;
	}
	if (!json_is_object(v)) {
		json_decref(v);
		*ret_err = strdup("QMP input must be a JSON object");
		return NULL;
	}
	return v;
}

size_t json_stream_feed(struct json_stream *s, const char *data, size_t len,
			enum json_stream_status *ret_status, json_t **ret_obj, char **ret_err)
{
	size_t i = 0;

	*ret_status = JSON_STREAM_NONE;
	while (i < len) {
		unsigned char c = (unsigned char)data[i];

		switch (s->state) {
		case ST_START:
			i++;
			if (is_space(c)) {
				continue;
			}
			s->depth = 0;
			s->in_string = false;
			s->escape = false;
			if (c == '{' || c == '[') {
				s->state = ST_VALUE;
				s->depth = 1;
				if (append(s, (const char *)&c, 1) < 0) {
					*ret_err = fail(s, strdup("out of memory"));
					*ret_status = JSON_STREAM_ERROR;
					return i;
				}
				continue;
			}
			if (c == '"') {
				s->state = ST_STRING;
				s->in_string = true;
				continue;
			}
			if (c == '}' || c == ']' || c == ',' || c == ':') {
				*ret_err = strdup("JSON parse error, expecting value");
				*ret_status = JSON_STREAM_ERROR;
				return i;
			}
			if (c >= 'a' && c <= 'z') {
				s->state = ST_KEYWORD;
				s->kw_len = 0;
				s->kw[s->kw_len++] = (char)c;
				continue;
			}
			if ((c >= '0' && c <= '9') || c == '-') {
				s->state = ST_NUMBER;
				continue;
			}
			if (c == '\'') {
				/* QEMU's single-quoted string: a value, but not an object. */
				s->state = ST_SCALAR;
				continue;
			}
			/*
			 * QEMU's lexer: "stray" and the character (U+FFFD for
			 * non-ASCII), then skip to a resynchronisation point.
			 */
			s->state = ST_RECOVER;
			if (c >= 0x80) {
				*ret_err = strdup("JSON parse error, stray '\xef\xbf\xbd'");
			} else if (c == 0) {
				*ret_err = strdup("JSON parse error, stray '\\u0000'");
			} else if (asprintf(ret_err, "JSON parse error, stray '%c'", c) < 0) {
				*ret_err = NULL;
			}
			*ret_status = JSON_STREAM_ERROR;
			return i;
		case ST_RECOVER:
			if (c == '[' || c == ']' || c == '{' || c == '}' || c == ',' || c == ':' ||
			    (c < 0x20 && c != '\t') || c >= 0xfe) {
				s->state = ST_START;
				continue;
			}
			i++;
			continue;
		case ST_KEYWORD:
			if (c >= 'a' && c <= 'z') {
				i++;
				if (s->kw_len < sizeof(s->kw) - 1) {
					s->kw[s->kw_len++] = (char)c;
				}
				continue;
			}
			s->kw[s->kw_len] = '\0';
			s->state = ST_START;
			if (!strcmp(s->kw, "true") || !strcmp(s->kw, "false") ||
			    !strcmp(s->kw, "null")) {
				*ret_err = strdup("QMP input must be a JSON object");
			} else if (asprintf(ret_err, "JSON parse error, invalid keyword '%s'",
					    s->kw) < 0) {
				*ret_err = NULL;
			}
			*ret_status = JSON_STREAM_ERROR;
			return i;
		case ST_NUMBER:
			if ((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' ||
			    c == '+' || c == '-') {
				i++;
				continue;
			}
			s->state = ST_START;
			*ret_err = strdup("QMP input must be a JSON object");
			*ret_status = JSON_STREAM_ERROR;
			return i;
		case ST_SCALAR:
			if (!is_delim(c)) {
				i++;
				continue;
			}
			s->state = ST_START;
			*ret_err = strdup("QMP input must be a JSON object");
			*ret_status = JSON_STREAM_ERROR;
			return i;
		case ST_STRING:
			i++;
			if (is_resync(c) || (c < 0x20 && c != '\t')) {
				s->state = ST_START;
				s->in_string = false;
				*ret_err = strdup("JSON parse error, invalid character in string");
				*ret_status = JSON_STREAM_ERROR;
				return i;
			}
			track(s, c);
			if (!s->in_string) {
				s->state = ST_START;
				*ret_err = strdup("QMP input must be a JSON object");
				*ret_status = JSON_STREAM_ERROR;
				return i;
			}
			continue;
		case ST_DISCARD:
			i++;
			if (is_resync(c)) {
				json_stream_reset(s);
				continue;
			}
			if (track(s, c)) {
				json_stream_reset(s);
			}
			continue;
		case ST_VALUE: {
			/* Scan as far as possible in this chunk, then copy once. */
			size_t start = i;
			bool done = false;
			char *err = NULL;

			while (i < len) {
				c = (unsigned char)data[i];
				if (is_resync(c) || (s->in_string && c < 0x20)) {
					err = strdup("JSON parse error, invalid character");
					break;
				}
				i++;
				if (track(s, c)) {
					done = true;
					break;
				}
				if (s->depth > s->max_depth) {
					err = limit_msg(true, s->max_depth);
					break;
				}
			}
			if (!err && s->len + (i - start) > s->max_size) {
				err = limit_msg(false, s->max_size);
			}
			if (!err && append(s, data + start, i - start) < 0) {
				err = strdup("out of memory");
			}
			if (err) {
				if (is_resync(c) && i < len && (unsigned char)data[i] == c) {
					/* The resync byte itself restarts the splitter. */
					i++;
					json_stream_reset(s);
				} else {
					err = fail(s, err);
				}
				*ret_err = err;
				*ret_status = JSON_STREAM_ERROR;
				return i;
			}
			if (done) {
				json_t *v;

				s->state = ST_START;
				v = parse(s, ret_err);
				if (v) {
					*ret_obj = v;
					*ret_status = JSON_STREAM_OBJECT;
				} else {
					*ret_status = JSON_STREAM_ERROR;
				}
				return i;
			}
			continue;
		}
		}
	}
	return i;
}
