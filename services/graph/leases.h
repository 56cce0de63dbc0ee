/* leases.h - start-up, lease renewal and orphan adoption (see leases.c). */
#ifndef GRAPH_LEASES_H
#define GRAPH_LEASES_H

#include "graph.h"

/* Start the background thread; it sets health SERVING once the event log
 * answered and orphans were adopted. 0 or -1. */
int gs_background_start(gs_service *s);
/* Set stopping and join the thread. */
void gs_background_stop(gs_service *s);
/* Let the leases of every active build lapse now (graceful shutdown). */
void gs_leases_hand_over(gs_service *s);

#endif
