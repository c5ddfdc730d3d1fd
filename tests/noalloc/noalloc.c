/* Test-only LD_PRELOAD library: once armed by a thread (noalloc_arm()), any call from that
 * thread to the malloc family, pthread mutexes/rwlocks or stdio ends the process with exit
 * status 99 and a message. buggyext.armed_segfault() arms it and crashes, so the whole
 * signal handler runs under watch: proof that it neither allocates nor locks. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static volatile long armed_tid = 0;

void noalloc_arm(void) { armed_tid = syscall(SYS_gettid); }

static void check(const char *what) {
    if (armed_tid != 0 && syscall(SYS_gettid) == armed_tid) {
        static const char msg[] = "\nNOALLOC VIOLATION in the crashing thread: ";
        write(2, msg, sizeof msg - 1);
        write(2, what, strlen(what));
        write(2, "\n", 1);
        _exit(99);
    }
}

void *malloc(size_t n) { check("malloc"); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { check("calloc"); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { check("realloc"); return __libc_realloc(p, n); }
void free(void *p) { check("free"); __libc_free(p); }
void *memalign(size_t a, size_t n) { check("memalign"); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { check("aligned_alloc"); return __libc_memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    check("posix_memalign");
    *out = __libc_memalign(a, n);
    return *out ? 0 : 12;
}

typedef int (*lock_fn)(void *);
static lock_fn real_mutex_lock, real_mutex_trylock, real_rdlock, real_wrlock;

__attribute__((constructor)) static void init(void) {
    real_mutex_lock = (lock_fn)dlsym(RTLD_NEXT, "pthread_mutex_lock");
    real_mutex_trylock = (lock_fn)dlsym(RTLD_NEXT, "pthread_mutex_trylock");
    real_rdlock = (lock_fn)dlsym(RTLD_NEXT, "pthread_rwlock_rdlock");
    real_wrlock = (lock_fn)dlsym(RTLD_NEXT, "pthread_rwlock_wrlock");
}

int pthread_mutex_lock(pthread_mutex_t *m) { check("pthread_mutex_lock"); return real_mutex_lock(m); }
int pthread_mutex_trylock(pthread_mutex_t *m) { check("pthread_mutex_trylock"); return real_mutex_trylock(m); }
int pthread_rwlock_rdlock(pthread_rwlock_t *l) { check("pthread_rwlock_rdlock"); return real_rdlock(l); }
int pthread_rwlock_wrlock(pthread_rwlock_t *l) { check("pthread_rwlock_wrlock"); return real_wrlock(l); }
int fflush(FILE *f) { check("fflush"); return fflush_unlocked(f); }
