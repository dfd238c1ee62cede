/*
 * libFuzzer target: the protocol's input side (monitor/json-stream.c, then
 * the strict argument check of monitor/schema.c for every object that names
 * a command). The first byte picks where reads are split, so message
 * boundaries fall anywhere, as they do on a socket.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "monitor/json-stream.h"
#include "monitor/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct schema *schema;
	struct json_stream s;
	size_t chunk, off = 1;

	if (size < 1) {
		return 0;
	}
	if (!schema && schema_load(schema_json_text, &schema, NULL) < 0) {
		abort();
	}
	chunk = 1 + data[0] % 64;
	json_stream_init(&s, 4096, 16);
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;
		size_t used = 0;

		while (used < n) {
			enum json_stream_status st;
			json_t *obj = NULL;
			char *err = NULL;
			size_t k = json_stream_feed(&s, (const char *)data + off + used, n - used,
						    &st, &obj, &err);

			if (k == 0 && st == JSON_STREAM_NONE) {
				abort(); /* no progress: the caller would spin */
			}
			used += k;
			if (st == JSON_STREAM_OBJECT) {
				const char *cmd =
					json_string_value(json_object_get(obj, "execute"));
				json_t *args = json_object_get(obj, "arguments");

				if (cmd && json_is_object(args)) {
					struct error *e = NULL;

					schema_check_args(schema, cmd, args, &e);
					error_free(e);
				}
				json_decref(obj);
			}
			free(err);
		}
		off += n;
	}
	if (s.len > 4096) {
		abort(); /* buffered beyond the message limit */
	}
	json_stream_release(&s);
	return 0;
}
