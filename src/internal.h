/*
 * internal.h - what every module shares: the private-linkage macro, limits,
 * the allocator wrapper and debug guards.  Not part of the API.
 *
 * Internal functions are declared SYNC_PRIVATE: static in the amalgamation
 * (so sync.c exports only the sync_* API), external when src/ is built file
 * by file (so unit tests can reach them).  Internal names carry the prefix
 * sx_ (functions) or SX_ (macros).
 */
#ifndef SX_INTERNAL_H
#define SX_INTERNAL_H

/* POSIX calls (fstat, stat) are used by the storage module; the feature
 * macro must precede the first system header of the translation unit. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include "sync.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef SYNC_AMALGAMATION
#define SYNC_PRIVATE static
#else
#define SYNC_PRIVATE
#endif

#ifndef SYNC_MAX_TABLES
#define SYNC_MAX_TABLES 64
#endif
#ifndef SYNC_MAX_COLUMNS
#define SYNC_MAX_COLUMNS 64
#endif
#ifndef SYNC_MAX_VALUE
#define SYNC_MAX_VALUE (16u * 1024u * 1024u)
#endif
#if SYNC_MAX_TABLES < 1 || SYNC_MAX_TABLES > 1000
#error "SYNC_MAX_TABLES must be 1..1000"
#endif
#if SYNC_MAX_COLUMNS < 1 || SYNC_MAX_COLUMNS > 4096
#error "SYNC_MAX_COLUMNS must be 1..4096"
#endif
#ifndef SYNC_DEFAULT_MAPSIZE
#if SIZE_MAX > 0xffffffffu
#define SYNC_DEFAULT_MAPSIZE ((size_t)1 << 30)
#else
#define SYNC_DEFAULT_MAPSIZE ((size_t)64 << 20)
#endif
#endif
/* Largest map we grow to by default: most of a 32-bit address space is
 * not ours to take; on 64-bit the file system is the real limit. */
#if SIZE_MAX > 0xffffffffu
#define SX_DEFAULT_MAPMAX ((size_t)1 << 40)
#else
#define SX_DEFAULT_MAPMAX ((size_t)1 << 30)
#endif

#define SX_NAME_MAX 63

/* ALWAYS/NEVER: conditions believed always true/false.  Debug builds check
 * them with assert; release builds still take the safe branch. */
#include <assert.h>
#ifndef NDEBUG
#define SX_ALWAYS(x) (assert(x), 1)
#define SX_NEVER(x) (assert(!(x)), 0)
#else
#define SX_ALWAYS(x) (x)
#define SX_NEVER(x) (x)
#endif

/* The allocator every object of ours uses (copied from the env). */
typedef struct sx_alloc {
  sync_allocator a;
} sx_alloc;

SYNC_PRIVATE void *sx_malloc(const sx_alloc *al, size_t n);
SYNC_PRIVATE void *sx_realloc(const sx_alloc *al, void *p, size_t n);
SYNC_PRIVATE void sx_free(const sx_alloc *al, void *p);
SYNC_PRIVATE void sx_alloc_default(sx_alloc *al);

#endif
