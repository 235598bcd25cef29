/*
 * compact.h - compaction: a copy of the file with its pages repacked,
 * written to another path or put in the place of the file itself.
 */
#ifndef SX_COMPACT_H
#define SX_COMPACT_H

#include "gc.h"

#endif
