/*
 * The HMP side of human-monitor-command (daemon/qmp-hmp.c): its output
 * text and QEMU's way of reading arguments, shared with the HMP commands
 * that live elsewhere (daemon/hmp-memory.c). Control thread, but for
 * hmp_printf, which any thread may use on its own text.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "common/util.h"
#include "monitor/monitor.h"

/* HMP's answer as it is built: lines end in "\r\n" as QEMU's. */
struct hmp_out {
	char *buf;
	size_t len;
};

/* Append, turning "\n" into QEMU's "\r\n". */
void hmp_printf(struct hmp_out *o, const char *fmt, ...) _printf_(2, 3);

/*
 * The arguments of command @cmd at @p, read as QEMU's monitor reads them:
 * an expression may run on across spaces while an operator follows (so
 * "memsave 0 16 /tmp/f" reads 16 / tmp, as QEMU does), then the next
 * argument starts. A failure prints QEMU's words to @o and sets @failed.
 */
struct hmp_args {
	const char *p;
	const char *cmd;
	struct hmp_out *o;
	bool failed;
};
void hmp_skip_space(struct hmp_args *a);
/* The next argument as an expression (false: the error is out). */
bool hmp_arg_expr(struct hmp_args *a, json_int_t *ret);
/* The next argument as a word (quoted or not), or NULL ("CMD: WHAT expected"). Allocated. */
char *hmp_arg_str(struct hmp_args *a, const char *what);
/* Nothing may follow ("extraneous characters at the end of line"). */
bool hmp_arg_end(struct hmp_args *a);
/*
 * Run a QMP command for HMP: its failure as "Error: ...", a deferred
 * answer later (returns MONITOR_DEFERRED then, else 0). @args is borrowed.
 */
int hmp_call(struct monitor_request *req, monitor_handler_fn fn, json_t *args, struct hmp_out *o);

/*
 * daemon/hmp-block.c: block_stream, block_job_set_speed, block_job_cancel,
 * block_job_complete, block_job_pause, block_job_resume, drive_mirror and
 * drive_backup (MONITOR_DEFERRED or 0, as hmp_call); info block-jobs from
 * query-block-jobs' answer.
 */
bool hmp_is_block_job(const char *cmd);
int hmp_block_job(struct monitor_request *req, const char *cmd, const char *line,
		  struct hmp_out *o);
void hmp_info_block_jobs(json_t *jobs, struct hmp_out *o);

/*
 * daemon/hmp-memory.c: x, xp, gva2gpa, info mem and info tlb, with QEMU's
 * text. MONITOR_DEFERRED when the answer comes from a worker, else 0 with
 * the text in @o.
 */
int hmp_memory(struct monitor_request *req, const char *cmd, const char *line, struct hmp_out *o);
