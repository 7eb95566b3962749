#define _GNU_SOURCE
#include <unistd.h>
#include <sys/syscall.h>
#include <stdlib.h>
/* A disk whose fsync takes SLOW_FSYNC_US microseconds (default 2000), for benchmarks only:
 * preloaded into a benchmark (and the processes it starts), every fdatasync and fsync waits
 * that long before it runs, as on a virtual machine's network disk or a spinning one.
 *
 *   gcc -shared -fPIC -O2 -o target/slow-fsync.so scripts/slow-fsync.c
 *   LD_PRELOAD=$PWD/target/slow-fsync.so SLOW_FSYNC_US=2000 ./target/release/bench-dicomweb
 */
static useconds_t delay(void) { const char *s = getenv("SLOW_FSYNC_US"); return s ? (useconds_t)atoi(s) : 2000; }
int fdatasync(int fd) { usleep(delay()); return (int)syscall(SYS_fdatasync, fd); }
int fsync(int fd) { usleep(delay()); return (int)syscall(SYS_fsync, fd); }
