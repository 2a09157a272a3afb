/*
 * An LD_PRELOAD fault injector for crates/rborg/tests/faults.rs: makes chosen file operations fail
 * the way a failing disk or a changing file system would, for rborg and for the real borg alike, so
 * both can be compared on the same fault.
 *
 * RBORG_FAULT="KIND=SUBSTRING" (one rule) selects the files whose path contains SUBSTRING:
 *   eio_read      every read of such a file fails with EIO (a bad sector)
 *   eio_write     every write to such a file fails with EIO
 *   enospc_write  every write to such a file fails with ENOSPC
 *   eacces_open   opening such a file fails with EACCES (an unreadable file)
 *   vanish_open   opening such a file unlinks it first and fails with ENOENT (deleted after listing)
 *   change_read   after the first successful read of such a file one byte is appended to it
 *                 (a file written to while it is backed up)
 * Without RBORG_FAULT every call goes straight to libc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum kind { NONE, EIO_READ, EIO_WRITE, ENOSPC_WRITE, EACCES_OPEN, VANISH_OPEN, CHANGE_READ };

static enum kind rule_kind = NONE;
static const char *rule_path;
static int rule_loaded;
static char changed[4096];

static void load_rule(void) {
    if (rule_loaded)
        return;
    rule_loaded = 1;
    const char *spec = getenv("RBORG_FAULT");
    if (!spec)
        return;
    const char *eq = strchr(spec, '=');
    if (!eq || !eq[1])
        return;
    static const struct { const char *name; enum kind kind; } names[] = {
        {"eio_read", EIO_READ},       {"eio_write", EIO_WRITE},     {"enospc_write", ENOSPC_WRITE},
        {"eacces_open", EACCES_OPEN}, {"vanish_open", VANISH_OPEN}, {"change_read", CHANGE_READ},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i].name) == (size_t)(eq - spec) && !strncmp(spec, names[i].name, eq - spec))
            rule_kind = names[i].kind;
    rule_path = eq + 1;
}

#define REAL(ret, name, ...)                                                                       \
    static ret (*real_##name)(__VA_ARGS__);                                                         \
    if (!real_##name)                                                                              \
        real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);

/* Whether the open file `fd` is one the rule selects for `kind`. */
static int fd_selected(int fd, enum kind kind) {
    load_rule();
    if (rule_kind != kind || fd < 0)
        return 0;
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0)
        return 0;
    target[n] = 0;
    return strstr(target, rule_path) != NULL;
}

static int path_selected(const char *path, enum kind kind) {
    load_rule();
    return rule_kind == kind && path && strstr(path, rule_path) != NULL;
}

/* The open-time faults; returns -1 (errno set) when the open must fail. */
static int open_fault(int dirfd, const char *path) {
    if (path_selected(path, EACCES_OPEN)) {
        errno = EACCES;
        return -1;
    }
    if (path_selected(path, VANISH_OPEN)) {
        unlinkat(dirfd, path, 0);
        errno = ENOENT;
        return -1;
    }
    return 0;
}

static void after_read(int fd, ssize_t got) {
    if (got <= 0 || fd >= (int)sizeof changed || changed[fd] || !fd_selected(fd, CHANGE_READ))
        return;
    changed[fd] = 1;
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0)
        return;
    target[n] = 0;
    REAL(int, open, const char *, int, ...)
    int w = real_open(target, O_WRONLY | O_APPEND);
    if (w >= 0) {
        REAL(ssize_t, write, int, const void *, size_t)
        real_write(w, "+", 1);
        close(w);
    }
}

static int read_fault(int fd) {
    if (fd_selected(fd, EIO_READ)) {
        errno = EIO;
        return -1;
    }
    return 0;
}

static int write_fault(int fd) {
    if (fd_selected(fd, EIO_WRITE)) {
        errno = EIO;
        return -1;
    }
    if (fd_selected(fd, ENOSPC_WRITE)) {
        errno = ENOSPC;
        return -1;
    }
    return 0;
}

#define OPEN_WRAPPER(name)                                                                         \
    int name(const char *path, int flags, ...) {                                                   \
        mode_t mode = 0;                                                                           \
        if (flags & (O_CREAT | O_TMPFILE)) {                                                       \
            va_list ap;                                                                            \
            va_start(ap, flags);                                                                   \
            mode = va_arg(ap, mode_t);                                                             \
            va_end(ap);                                                                            \
        }                                                                                          \
        if (open_fault(AT_FDCWD, path))                                                            \
            return -1;                                                                             \
        REAL(int, name, const char *, int, ...)                                                    \
        return real_##name(path, flags, mode);                                                     \
    }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                                                       \
    int name(int dirfd, const char *path, int flags, ...) {                                        \
        mode_t mode = 0;                                                                           \
        if (flags & (O_CREAT | O_TMPFILE)) {                                                       \
            va_list ap;                                                                            \
            va_start(ap, flags);                                                                   \
            mode = va_arg(ap, mode_t);                                                             \
            va_end(ap);                                                                            \
        }                                                                                          \
        if (open_fault(dirfd, path))                                                               \
            return -1;                                                                             \
        REAL(int, name, int, const char *, int, ...)                                               \
        return real_##name(dirfd, path, flags, mode);                                              \
    }
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

ssize_t read(int fd, void *buf, size_t count) {
    if (read_fault(fd))
        return -1;
    REAL(ssize_t, read, int, void *, size_t)
    ssize_t got = real_read(fd, buf, count);
    after_read(fd, got);
    return got;
}

#define PREAD_WRAPPER(name)                                                                        \
    ssize_t name(int fd, void *buf, size_t count, off_t offset) {                                  \
        if (read_fault(fd))                                                                        \
            return -1;                                                                             \
        REAL(ssize_t, name, int, void *, size_t, off_t)                                            \
        ssize_t got = real_##name(fd, buf, count, offset);                                         \
        after_read(fd, got);                                                                       \
        return got;                                                                                \
    }
PREAD_WRAPPER(pread)
PREAD_WRAPPER(pread64)

ssize_t readv(int fd, const struct iovec *iov, int iovcnt) {
    if (read_fault(fd))
        return -1;
    REAL(ssize_t, readv, int, const struct iovec *, int)
    ssize_t got = real_readv(fd, iov, iovcnt);
    after_read(fd, got);
    return got;
}

ssize_t write(int fd, const void *buf, size_t count) {
    if (write_fault(fd))
        return -1;
    REAL(ssize_t, write, int, const void *, size_t)
    return real_write(fd, buf, count);
}

#define PWRITE_WRAPPER(name)                                                                       \
    ssize_t name(int fd, const void *buf, size_t count, off_t offset) {                            \
        if (write_fault(fd))                                                                       \
            return -1;                                                                             \
        REAL(ssize_t, name, int, const void *, size_t, off_t)                                      \
        return real_##name(fd, buf, count, offset);                                                \
    }
PWRITE_WRAPPER(pwrite)
PWRITE_WRAPPER(pwrite64)

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    if (write_fault(fd))
        return -1;
    REAL(ssize_t, writev, int, const struct iovec *, int)
    return real_writev(fd, iov, iovcnt);
}
