/* LD_PRELOAD fault injection for sluiced: while the file named by SLUICE_FAULT_FSYNC_FILE
 * exists, fsync and fdatasync fail with EIO (as a dying disk would). Used by the storage-error
 * test: the server must stop acknowledging, exit 1, and recover on restart. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void) {
  const char* path = getenv("SLUICE_FAULT_FSYNC_FILE");
  return path != NULL && access(path, F_OK) == 0;
}

int fdatasync(int fd) {
  static int (*real)(int) = NULL;
  if (failing()) {
    errno = EIO;
    return -1;
  }
  if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  return real(fd);
}

int fsync(int fd) {
  static int (*real)(int) = NULL;
  if (failing()) {
    errno = EIO;
    return -1;
  }
  if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  return real(fd);
}
