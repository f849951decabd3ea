/* data_lock.h — one server per data directory: an flock on DATA/lock, held for the server's
 * lifetime, with the holder's pid written in the file so that the next one can name it. */
#ifndef PARITY_SERVER_DATA_LOCK_H
#define PARITY_SERVER_DATA_LOCK_H

#include "common/err.h"

/* Takes the lock (creating DATA, mode 0700, if missing). *fd holds it until closed (also on
 * exit or a crash). PT_ECONFLICT: "data directory DATA is in use by parity pid N". */
int pt_data_lock(const char *data_dir, int *fd, pt_err *err);

#endif
