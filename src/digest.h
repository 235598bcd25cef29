/*
 * digest.h - the content digest of a table.
 */
#ifndef SX_DIGEST_H
#define SX_DIGEST_H

#include "apply.h"

#endif
