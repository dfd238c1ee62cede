/*
 * Incremental splitter for the client side of the protocol: a stream of JSON
 * values with no required separator between them (QEMU's QMP input rules).
 * It tracks nesting and strings byte by byte so the size and depth limits
 * are enforced before anything is parsed or buffered beyond the limit; a
 * complete top-level object is then handed to jansson.
 *
 * Recovery follows QEMU's lexer: after an error the rest of the offending
 * value is skipped (its nesting is still followed, nothing is stored) and an
 * ASCII control character other than whitespace, or a 0xFE/0xFF byte, forces
 * the splitter back to its start state at any point.
 *
 * Pure logic, no I/O; one object per connection, used by one thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

enum json_stream_status {
	JSON_STREAM_NONE,   /* need more input */
	JSON_STREAM_OBJECT, /* *ret_obj is a new reference to a JSON object */
	JSON_STREAM_ERROR,  /* *ret_err (malloc'd) says what was wrong */
};

struct json_stream {
	size_t max_size;    /* bytes of one message */
	unsigned max_depth; /* nesting of objects and arrays */

	char *buf; /* the message being collected */
	size_t len, cap;
	size_t depth;	/* current nesting (also counted while discarding) */
	int state;	/* internal */
	bool in_string; /* inside "..." */
	bool escape;	/* after a backslash inside a string */
	char kw[64];	/* a top-level keyword being read (for the error) */
	size_t kw_len;
};

void json_stream_init(struct json_stream *s, size_t max_size, unsigned max_depth);
/* Drop any partial message and return to the start state. */
void json_stream_reset(struct json_stream *s);
void json_stream_release(struct json_stream *s);

/*
 * Consume input up to and including the end of the next complete message or
 * error, or all of it. Returns the number of bytes consumed and sets
 * *ret_status; on JSON_STREAM_OBJECT *ret_obj is set, on JSON_STREAM_ERROR
 * *ret_err is set (the caller frees it). Call again with the remaining bytes.
 */
size_t json_stream_feed(struct json_stream *s, const char *data, size_t len,
			enum json_stream_status *ret_status, json_t **ret_obj, char **ret_err);
