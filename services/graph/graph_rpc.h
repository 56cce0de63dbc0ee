/* graph_rpc.h - the graph service's RPC tables: the seed's GraphLookup and
 * the GraphBuilder extension (Analyze, Build, Submit, Cancel). The user
 * pointer of both is the gs_service. */
#ifndef GRAPH_GRAPH_RPC_H
#define GRAPH_GRAPH_RPC_H

#include "dbld/rpc.h"

extern const dbld_service gs_lookup_service;
extern const dbld_service gs_builder_service;

#endif
