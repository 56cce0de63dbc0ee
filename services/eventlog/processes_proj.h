/* processes_proj.h - background-process work registered in the writer's
 * transaction (see processes_proj.c). */
#ifndef EL_PROCESSES_PROJ_H
#define EL_PROCESSES_PROJ_H

#include "dbld/db.h"
#include "event_meta.h"

#define EL_PROJECT_PROCESSES_MAX_STMTS 8

/* Statements (at most EL_PROJECT_PROCESSES_MAX_STMTS, written to out) that
 * register the work items the batch's wants and taints create. */
size_t el_project_processes(dbld_arena *a, el_event *const *evs, size_t n, dbld_stmt *out);

#endif
