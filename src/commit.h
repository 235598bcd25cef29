/*
 * commit.h - committing a transaction: state, change log, table records,
 * then the callbacks.
 */
#ifndef SX_COMMIT_H
#define SX_COMMIT_H

#include "ops.h"

#endif
