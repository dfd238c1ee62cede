/*
 * vmmd under systemd: readiness and status notifications, the watchdog,
 * socket activation and whether stderr is the journal. Every function is a
 * no-op outside systemd. Control thread only.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "common/error.h"

struct event_base;

/*
 * The listening socket passed by systemd (vmmd.socket), or -ENOENT when none
 * was passed. More than one socket, or one that is not a listening UNIX
 * stream socket, is an error.
 */
int systemd_listen_fd(struct error **errp);
/*
 * The fd store (keep.h): fds vmmd stored under names starting with
 * SYSTEMD_KEEP_PREFIX before a restart come back in LISTEN_FDS.
 * systemd_kept_fds hands them over once (arrays of n entries, the caller
 * frees names, each name and the fds array; it owns the fds).
 * systemd_store_fd sends one fd with FDSTORE=1 and FDNAME=@name (a copy is
 * stored; -ENOTCONN outside systemd); systemd_unstore_fds makes systemd
 * close its copies of the fds named @name (they stay in the store after
 * being passed); systemd_notify_barrier waits until systemd has processed
 * every message sent before it.
 */
#define SYSTEMD_KEEP_PREFIX "vmmd-keep/"
unsigned systemd_kept_fds(char ***ret_names, int **ret_fds);
bool systemd_can_store_fds(void);
int systemd_store_fd(int fd, const char *name);
void systemd_unstore_fds(const char *name);
int systemd_notify_barrier(void);
/* READY=1 with a STATUS= line. */
void systemd_notify_ready(unsigned running, unsigned defined);
void systemd_notify_status(unsigned running, unsigned defined);
void systemd_notify_stopping(void);
void systemd_notify_reloading(bool done);
/* A live upgrade: @pid is the service's main process from now on. */
void systemd_notify_mainpid(pid_t pid);
/* Send WATCHDOG=1 at half the interval systemd asked for, if it asked. */
int systemd_watchdog_start(struct event_base *base, struct error **errp);
void systemd_watchdog_stop(void);
/* True if stderr is connected to the journal ($JOURNAL_STREAM matches it). */
bool systemd_stderr_is_journal(void);
