/*
 * workloads.h - one entry point per workload; bench.c lists them in its
 * table.  A new workload (W2 telemetry, W3 conflicts, apply rates, wire
 * sizes) is a run_*.c file with one such function and one table row.
 */
#ifndef BENCH_WORKLOADS_H
#define BENCH_WORKLOADS_H

#include "bench.h"

void bench_w1(const bench_opts *o);    /* run_w1.c */
void bench_apply(const bench_opts *o); /* run_apply.c */
void bench_group(const bench_opts *o); /* run_group.c */
void bench_w3(const bench_opts *o);    /* run_w3.c */
void bench_wire(const bench_opts *o);  /* run_wire.c */
void bench_sync(const bench_opts *o);  /* run_sync.c */
void bench_repair(const bench_opts *o); /* run_repair.c */
void bench_relay(const bench_opts *o);  /* run_relay.c */
void bench_tls(const bench_opts *o);    /* run_tls.c */
void bench_mesh(const bench_opts *o);   /* run_mesh.c */
void bench_mqtt(const bench_opts *o);   /* run_mqtt.c */
void bench_pg(const bench_opts *o);     /* run_pg.c */
void bench_history(const bench_opts *o); /* run_history.c */
void bench_counter(const bench_opts *o); /* run_counter.c */

#endif /* BENCH_WORKLOADS_H */
