// util.c — error reporting, crash-safe writes, random numbers, a clock, UTF-8 and JSON helpers.
#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// errors

// llama2.c-style: running out of memory here has no sensible recovery, so say so and exit
void* malloc_or_die(size_t size) {
    void* p = malloc(size ? size : 1);
    if (!p) {
        error_msg("out of memory (asked for %zu bytes)", size);
        exit(EXIT_FAILURE_RUN);
    }
    return p;
}

// A large buffer that is read again and again (the weights, the KV cache): aligned to 2 MiB and
// marked for transparent huge pages, so that streaming it through the cores does not also walk
// the page tables at every 4 KiB. Freed with free(); NULL when out of memory, as malloc.
void* malloc_huge(size_t size) {
    size_t huge = (size_t)2 << 20;
    if (size < huge) return malloc(size ? size : 1);
    void* p = NULL;
    if (posix_memalign(&p, huge, (size + huge - 1) / huge * huge) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE); // a hint: without THP the memory works as it is
#endif
    return p;
}

// where error_msg writes (error_route): stderr, or a rank's own stream with its "rank R: " (dist.c)
static FILE* error_stream;
static const char* error_prefix = "";

void error_route(FILE* f, const char* prefix) {
    error_stream = f;
    error_prefix = prefix ? prefix : "";
}

// One line, whatever the message holds: a path with a newline (or a terminal escape) in it is
// printed escaped, "\n", "\x1b", so a script reading stderr line by line sees one error.
void error_msg(const char* fmt, ...) {
    char msg[8192], line[4 * sizeof(msg) + 16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t n = 0;
    for (const unsigned char* p = (const unsigned char*)msg; *p; p++) {
        if (*p >= 0x20 && *p != 0x7f) line[n++] = (char)*p;
        else if (*p == '\n') { line[n++] = '\\'; line[n++] = 'n'; }
        else if (*p == '\t') { line[n++] = '\\'; line[n++] = 't'; }
        else n += (size_t)snprintf(line + n, 5, "\\x%02x", *p);
    }
    line[n] = '\0';
    fprintf(error_stream ? error_stream : stderr, "mosr: %s%s\n", error_prefix, line);
}

// ----------------------------------------------------------------------------
// crash-safe writes

// The temp files being written now, so that a signal that ends the process (SIGTERM, a second
// Ctrl-C, SIGPIPE) or running out of memory removes them: fixed slots, nothing allocated, read
// from a signal handler.
#define MAX_LIVE_TEMPS 16
static char live_temps[MAX_LIVE_TEMPS][4160];
static volatile sig_atomic_t live_temp_used[MAX_LIVE_TEMPS];

// a group of writes (atomic_group_begin): the temp files written and closed, renamed at the end
static int group_open = 0, group_n = 0;
static char group_tmp[MAX_LIVE_TEMPS][4160], group_path[MAX_LIVE_TEMPS][4096];

static void temp_register(const char* tmp_path) {
    for (int i = 0; i < MAX_LIVE_TEMPS; i++)
        if (!live_temp_used[i]) {
            snprintf(live_temps[i], sizeof(live_temps[i]), "%s", tmp_path);
            live_temp_used[i] = 1;
            return;
        }
    // more than 16 files open for writing at once: the rest are cleaned by the next run (remove_stale_temps)
}

static void temp_unregister(const char* tmp_path) {
    for (int i = 0; i < MAX_LIVE_TEMPS; i++)
        if (live_temp_used[i] && !strcmp(live_temps[i], tmp_path)) live_temp_used[i] = 0;
}

void atomic_cleanup_all(void) {
    for (int i = 0; i < MAX_LIVE_TEMPS; i++)
        if (live_temp_used[i]) {
            unlink(live_temps[i]);
            live_temp_used[i] = 0;
        }
}

// Removes "<dir>/<base>.tmp.<pid>" files whose process is gone (kill(pid, 0) says ESRCH): the
// leftovers of a run killed in the middle of a write. Another live process's file is left alone.
static void remove_stale_temps(const char* path) {
    char dir[4096];
    const char* slash = strrchr(path, '/');
    const char* base = slash ? slash + 1 : path;
    if (!slash) strcpy(dir, ".");
    else snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
    DIR* d = opendir(dir);
    if (!d) return;
    size_t base_len = strlen(base);
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        const char* name = e->d_name;
        if (strncmp(name, base, base_len) != 0 || strncmp(name + base_len, ".tmp.", 5) != 0) continue;
        const char* digits = name + base_len + 5;
        char* end;
        long pid = strtol(digits, &end, 10);
        if (*end == '.' && isdigit((unsigned char)end[1])) strtol(end + 1, &end, 10); // "<pid>.<n>": see atomic_open
        if (!isdigit((unsigned char)digits[0]) || *end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char stale[8192];
        snprintf(stale, sizeof(stale), "%s/%s", dir, name);
        unlink(stale);
    }
    closedir(d);
}

// Where a write to path goes: path itself, or the target of a symlink (resolved). st is the
// target's stat if it exists (*exists = 1). 0 on success, -1 after a message.
static int write_target(const char* path, char* target, size_t cap, struct stat* st, int* exists) {
    struct stat lst;
    *exists = 0;
    if (strlen(path) >= cap) {
        error_msg("%s: path too long", path);
        return -1;
    }
    strcpy(target, path);
    if (lstat(path, &lst) != 0) return 0; // a new file
    if (S_ISLNK(lst.st_mode)) {
        char* real = realpath(path, NULL);
        if (!real) {
            error_msg("%s: a symlink to a missing file (%s); not followed", path, strerror(errno));
            return -1;
        }
        int fits = strlen(real) < cap;
        if (fits) strcpy(target, real);
        free(real);
        if (!fits) {
            error_msg("%s: the symlink's target path is too long", path);
            return -1;
        }
        if (stat(target, st) != 0) return 0;
    } else {
        *st = lst;
    }
    *exists = 1;
    if (S_ISDIR(st->st_mode)) {
        error_msg("%s: is a directory, expected a file to write", path);
        return -1;
    }
    if (!S_ISREG(st->st_mode) && !S_ISCHR(st->st_mode) && !S_ISFIFO(st->st_mode)) {
        error_msg("%s: not a regular file, a character device or a FIFO; not written", path);
        return -1;
    }
    return 0;
}

// The descriptor path names if it is one of this process's own (--json /dev/stdout), else -1.
// Whatever file such a descriptor is, it is written through a dup of it: in place, at its offset,
// after what the process already wrote there.
static int own_fd(const char* path) {
    if (!strcmp(path, "/dev/stdout")) return 1;
    if (!strcmp(path, "/dev/stderr")) return 2;
    const char* n = !strncmp(path, "/dev/fd/", 8) ? path + 8 : !strncmp(path, "/proc/self/fd/", 14) ? path + 14 : NULL;
    if (!n || !isdigit((unsigned char)*n)) return -1;
    char* end;
    long fd = strtol(n, &end, 10);
    return *end || fd > 1 << 20 ? -1 : (int)fd;
}

int atomic_open(AtomicFile* af, const char* path) {
    struct stat st;
    int exists, own = own_fd(path);
    af->f = NULL;
    af->in_place = 0;
    af->tmp_path[0] = '\0';
    if (own >= 0) {
        snprintf(af->path, sizeof(af->path), "%s", path);
        fflush(own == 2 ? stderr : stdout); // what was printed before comes first
        int fd = dup(own);
        if (fd < 0 || !(af->f = fdopen(fd, "wb"))) {
            error_msg("%s: cannot write: %s", path, strerror(errno));
            if (fd >= 0) close(fd);
            return -1;
        }
        af->in_place = 1;
        return 0;
    }
    if (write_target(path, af->path, sizeof(af->path), &st, &exists) != 0) return -1;
    if (exists && !S_ISREG(st.st_mode)) {
        // a device or FIFO is written where it is: replacing /dev/null with a regular file would
        // break the system. O_NONBLOCK: a FIFO without a reader fails now instead of hanging.
        int fd = open(af->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            error_msg("%s: cannot write: %s", path, errno == ENXIO ? "a FIFO with no reader" : strerror(errno));
            return -1;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        af->f = fdopen(fd, "wb");
        if (!af->f) {
            error_msg("%s: cannot write: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        af->in_place = 1;
        return 0;
    }
    // a read-only file is not replaced (root could: the mode bits say what its owner meant)
    if (exists && (!(st.st_mode & 0222) || access(af->path, W_OK) != 0)) {
        error_msg("%s: is read-only; not replaced", path);
        return -1;
    }
    remove_stale_temps(af->path);
    // The temp file is always a new file: O_EXCL fails on anything already there, a symlink or a
    // hard link planted under the name included (O_NOFOLLOW), so nobody else's file is ever
    // truncated. The pid keeps two processes apart; a name already taken by someone else is
    // skipped for "<pid>.1", "<pid>.2", ... (remove_stale_temps knows both forms).
    int fd = -1;
    for (int k = 0; k < 100 && fd < 0; k++) {
        if (k == 0) snprintf(af->tmp_path, sizeof(af->tmp_path), "%s.tmp.%d", af->path, (int)getpid());
        else snprintf(af->tmp_path, sizeof(af->tmp_path), "%s.tmp.%d.%d", af->path, (int)getpid(), k);
        fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, exists ? 0600 : 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0 || !(af->f = fdopen(fd, "wb"))) {
        error_msg("%s: cannot write: %s", path, strerror(errno));
        if (fd >= 0) { close(fd); unlink(af->tmp_path); }
        af->tmp_path[0] = '\0';
        return -1;
    }
    temp_register(af->tmp_path);
    // the new file keeps the permissions of the one it replaces
    if (exists) fchmod(fd, st.st_mode & 07777);
    return 0;
}

int path_written_in_place(const char* path) {
    struct stat st;
    return own_fd(path) >= 0 || (stat(path, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)));
}

int write_log_csv(const char* path, const char* header, const double* rows, int n_rows, int n_cols,
                  unsigned blank_nan) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    fprintf(af.f, "%s\n", header);
    for (int i = 0; i < n_rows; i++) {
        const double* v = rows + (size_t)i * n_cols;
        fprintf(af.f, "%d", (int)v[0]);
        for (int k = 1; k < n_cols; k++) {
            fputc(',', af.f);
            if ((blank_nan >> k & 1) && isnan(v[k])) continue;
            fprintf(af.f, k == n_cols - 2 ? "%.1f" : k == n_cols - 1 ? "%.3f" : "%.9g", v[k]);
        }
        fputc('\n', af.f);
    }
    return atomic_commit(&af);
}

int atomic_commit(AtomicFile* af) {
    if (af->in_place) { // no fsync: devices and FIFOs do not take one
        int bad = ferror(af->f) || fflush(af->f) != 0;
        int err = errno;
        if (fclose(af->f) != 0 && !bad) { bad = 1; err = errno; }
        af->f = NULL;
        if (bad) error_msg("%s: write failed: %s", af->path, strerror(err));
        return bad ? -1 : 0;
    }
    // the data must be on disk before the rename makes it visible, or a power cut could leave
    // a renamed but empty file
    // (ferror says a write failed earlier but not why, errno may since have been overwritten: one
    // byte more at the end of the temp file, which is deleted anyway, brings the reason back)
    int bad = ferror(af->f), err = EIO;
    if (bad) {
        off_t end = lseek(fileno(af->f), 0, SEEK_END);
        if (end >= 0 && pwrite(fileno(af->f), "", 1, end) < 0) err = errno;
    }
    if (!bad && fflush(af->f) != 0) { bad = 1; err = errno; }
    if (!bad && fsync(fileno(af->f)) != 0) { bad = 1; err = errno; }
    if (fclose(af->f) != 0 && !bad) { bad = 1; err = errno; }
    af->f = NULL;
    if (bad) {
        error_msg("%s: write failed: %s", af->path, strerror(err));
        unlink(af->tmp_path);
        temp_unregister(af->tmp_path);
        return -1;
    }
    if (group_open) { // atomic_group_end renames it, with the others
        if (group_n < MAX_LIVE_TEMPS) {
            snprintf(group_tmp[group_n], sizeof(group_tmp[0]), "%s", af->tmp_path);
            snprintf(group_path[group_n], sizeof(group_path[0]), "%s", af->path);
            group_n++;
            return 0;
        } // (more files than a group holds: this one is renamed now, as without a group)
    }
    int renamed = rename(af->tmp_path, af->path);
    err = errno;
    if (renamed != 0) unlink(af->tmp_path);
    temp_unregister(af->tmp_path);
    if (renamed != 0) {
        error_msg("%s: cannot rename %s into place: %s", af->path, af->tmp_path, strerror(err));
        return -1;
    }
    return 0;
}

void atomic_group_begin(void) {
    group_open = 1;
    group_n = 0;
}

int atomic_group_end(int commit) {
    int status = 0;
    for (int i = 0; i < group_n; i++) {
        if (commit && status == 0 && rename(group_tmp[i], group_path[i]) != 0) {
            error_msg("%s: cannot rename %s into place: %s", group_path[i], group_tmp[i], strerror(errno));
            status = -1;
        }
        if (!commit || status != 0) unlink(group_tmp[i]);
        temp_unregister(group_tmp[i]);
    }
    group_open = 0;
    group_n = 0;
    return status;
}

void atomic_abort(AtomicFile* af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (!af->in_place && af->tmp_path[0]) {
        unlink(af->tmp_path);
        temp_unregister(af->tmp_path);
    }
}

// the nearest existing directory at or above dir (for an output directory that mkdir -p makes)
static int nearest_dir(const char* dir, char* out, size_t cap, struct stat* st) {
    if (snprintf(out, cap, "%s", dir) >= (int)cap) return -1;
    for (;;) {
        if (stat(out, st) == 0) return 0;
        char* slash = strrchr(out, '/');
        while (slash && slash > out && slash[1] == '\0') { // "a/b/" -> "a/b"
            *slash = '\0';
            slash = strrchr(out, '/');
        }
        if (!slash) { strcpy(out, "."); return stat(out, st); }
        if (slash == out) { strcpy(out, "/"); return stat(out, st); }
        *slash = '\0';
    }
}

// one output: writable, of the right kind. 0 on success, -1 after a message
static int output_writable(const char* cmd, const OutputArg* o) {
    struct stat st;
    if (o->is_dir) {
        char dir[4096];
        if (nearest_dir(o->path, dir, sizeof(dir), &st) != 0) {
            error_msg("%s: %s %s: no such directory", cmd, o->flag, o->path);
            return -1;
        }
        if (!S_ISDIR(st.st_mode)) {
            error_msg("%s: %s %s: %s exists and is not a directory", cmd, o->flag, o->path, dir);
            return -1;
        }
        if (access(dir, W_OK | X_OK) != 0) {
            error_msg("%s: %s %s: cannot write in %s: %s", cmd, o->flag, o->path, dir, strerror(errno));
            return -1;
        }
        return 0;
    }
    int fd = own_fd(o->path);
    if (fd >= 0) {
        int flags = fcntl(fd, F_GETFL);
        if (flags >= 0 && (flags & O_ACCMODE) != O_RDONLY) return 0;
        error_msg("%s: cannot write: %s", o->path, flags < 0 ? "not an open descriptor" : "open for reading only");
        return -1;
    }
    char target[4096];
    int exists;
    if (write_target(o->path, target, sizeof(target), &st, &exists) != 0) return -1;
    if (exists && !S_ISREG(st.st_mode)) { // a device or FIFO: opening a FIFO now would end its reader
        if (access(target, W_OK) == 0) return 0;
        error_msg("%s: cannot write: %s", o->path, strerror(errno));
        return -1;
    }
    // the surest test of "can a file be made there" is making one: the temp file of an atomic write
    AtomicFile af;
    if (atomic_open(&af, o->path) != 0) return -1;
    atomic_abort(&af);
    return 0;
}

// What an output will be, as a file: an existing one's (st_dev, st_ino); a new one's directory
// (st_dev, st_ino) and its last name. Two outputs are the same file when these agree, however
// the paths are spelled ("m.bin", "./m.bin", "../d/m.bin", a symlink to it). 0 if known.
typedef struct {
    dev_t dev;
    ino_t ino;
    const char* name; // NULL for an existing file; else the new file's name in the directory
    size_t name_len;
} FileIdentity;

static int file_identity(const char* path, FileIdentity* id) {
    struct stat st;
    memset(id, 0, sizeof(*id));
    if (stat(path, &st) == 0) {
        id->dev = st.st_dev;
        id->ino = st.st_ino;
        return 0;
    }
    char dir[4096];
    const char* slash = strrchr(path, '/');
    if (!slash) strcpy(dir, ".");
    else if (snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path) >= (int)sizeof(dir)) return -1;
    if (stat(dir, &st) != 0) return -1;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->name = slash ? slash + 1 : path;
    id->name_len = strlen(id->name);
    return 0;
}

static int same_identity(const FileIdentity* a, const FileIdentity* b) {
    if (a->dev != b->dev || a->ino != b->ino || !a->name != !b->name) return 0;
    return !a->name || (a->name_len == b->name_len && !memcmp(a->name, b->name, a->name_len));
}

int paths_check(const char* cmd, const OutputArg* outputs, int n_outputs, const InputArg* inputs, int n_inputs) {
    for (int i = 0; i < n_outputs; i++) {
        const OutputArg* o = &outputs[i];
        if (!o->path) continue;
        if (!o->path[0]) { // "" would fail only after the whole run
            error_msg("%s: %s: an empty path", cmd, o->flag);
            return -1;
        }
        if (output_writable(cmd, o) != 0) return -1;
        // a device or descriptor written in place (/dev/null, /dev/stdout given twice) destroys nothing
        struct stat so, sx;
        int exists = stat(o->path, &so) == 0;
        if (own_fd(o->path) >= 0 || (exists && S_ISCHR(so.st_mode))) continue;
        if (exists) {
            for (int j = 0; j < n_inputs; j++) {
                const InputArg* x = &inputs[j];
                if (!x->path || (o->may_replace && !strcmp(o->may_replace, x->flag))) continue;
                if (stat(x->path, &sx) == 0 && sx.st_dev == so.st_dev && sx.st_ino == so.st_ino) {
                    error_msg("%s: the output %s %s is the input %s %s; it would be overwritten", cmd, o->flag,
                              o->path, x->flag, x->path);
                    return -1;
                }
            }
        }
        // outputs against each other by what file they are, not by how they are spelled; a new
        // file's name compared in its directory
        FileIdentity io, ix;
        if (file_identity(o->path, &io) != 0) continue;
        for (int j = 0; j < i; j++) {
            const OutputArg* x = &outputs[j];
            if (!x->path || !x->path[0] || own_fd(x->path) >= 0 || file_identity(x->path, &ix) != 0) continue;
            if (same_identity(&io, &ix)) {
                error_msg("%s: the outputs %s %s and %s %s are the same file", cmd, x->flag, x->path, o->flag,
                          o->path);
                return -1;
            }
        }
    }
    return 0;
}

char* read_file(const char* path, size_t* size_out) {
    return read_file_max(path, READ_MAX_TEXT, size_out);
}

char* read_file_max(const char* path, size_t max_bytes, size_t* size_out) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer that may never come
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        error_msg("%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    int stat_failed = fstat(fd, &st) != 0;
    if (stat_failed || S_ISDIR(st.st_mode)) {
        error_msg("%s: %s", path, stat_failed ? strerror(errno) : "is a directory, expected a file");
        close(fd);
        return NULL;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if (S_ISREG(st.st_mode) && (size_t)st.st_size > max_bytes) {
        error_msg("%s: file too large: %lld bytes, more than the %zu bytes this kind of input may have", path,
                  (long long)st.st_size, max_bytes);
        close(fd);
        return NULL;
    }
    // read in chunks rather than trusting st_size, so pipes and /proc files work too; a regular
    // file's buffer has room for the NUL and one byte more, so its end is seen without growing
    size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 2 : 4096, n = 0;
    char* buf = malloc(cap);
    int failed = !buf, too_large = 0;
    while (!failed) {
        ssize_t got = read(fd, buf + n, cap - n - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) { failed = 1; break; }
        if (got == 0) break;
        n += (size_t)got;
        if (n > max_bytes) { too_large = 1; break; }
        if (n + 1 == cap) {
            size_t bigger_cap = cap * 2 > max_bytes + 2 ? max_bytes + 2 : cap * 2;
            char* bigger = realloc(buf, bigger_cap);
            if (!bigger) { failed = 1; break; }
            buf = bigger;
            cap = bigger_cap;
        }
    }
    int err = errno;
    close(fd);
    if (failed || too_large) {
        if (too_large) error_msg("%s: file too large: more than the %zu bytes this kind of input may have", path,
                                 max_bytes);
        else error_msg("%s: read failed: %s", path, buf ? strerror(err) : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (size_out) *size_out = n;
    return buf;
}

// A line of f without its '\n' into *buf (grown as needed, as getline); its length, -1 at the end
// of the input, or -2 when it runs past max_bytes (the rest of it is left unread): stdin may be
// /dev/zero, which has no lines.
long read_line_max(FILE* f, char** buf, size_t* cap, size_t max_bytes) {
    size_t n = 0;
    int c;
    while ((c = getc(f)) != EOF && c != '\n') {
        if (n >= max_bytes) return -2;
        if (n + 2 > *cap) {
            size_t bigger = *cap ? *cap * 2 : 256;
            char* p = realloc(*buf, bigger);
            if (!p) return -2;
            *buf = p;
            *cap = bigger;
        }
        (*buf)[n++] = (char)c;
    }
    if (c == EOF && n == 0) return -1;
    if (!*buf) { *buf = malloc(1); *cap = 1; if (!*buf) return -2; }
    (*buf)[n] = '\0';
    return (long)n;
}

// ----------------------------------------------------------------------------
// signals: Ctrl-C, SIGTERM, SIGHUP; the ones that end the process; SIGXFSZ

// the signals a user or a system sends to stop a run: all three are handled alike
static const int STOP_SIGNALS[] = {SIGINT, SIGTERM, SIGHUP};
#define N_STOP_SIGNALS 3

static volatile sig_atomic_t interrupt_flag = 0;
static struct sigaction interrupt_old[N_STOP_SIGNALS];
static int interrupt_installed = 0;

// a signal that ends the process: the temp files of the writes under way go first, then the
// signal's default action (so the parent sees "killed by SIGTERM", as without the handler)
static void on_fatal_signal(int sig) {
    atomic_cleanup_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_interrupt(int sig) {
    if (interrupt_flag) on_fatal_signal(sig); // the second one kills, the default way
    interrupt_flag = 1;
}

static void set_handler(int sig, void (*handler)(int), struct sigaction* old) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    // a write blocked on a slow pipe resumes after a Ctrl-C that only raises the flag, instead of
    // failing with EINTR
    if (handler == on_interrupt) sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, old);
}

void signals_install(void) {
    // a write past `ulimit -f` then fails with EFBIG, reported as any failed write, instead of the
    // default of SIGXFSZ: killed with a core and no message
    signal(SIGXFSZ, SIG_IGN);
    int fatal[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT, SIGALRM, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) {
        struct sigaction old;
        // an ignored signal stays ignored (nohup's SIGHUP, a background job's SIGINT)
        if (sigaction(fatal[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) set_handler(fatal[i], on_fatal_signal, NULL);
    }
}

void interrupt_catch(void) {
    interrupt_flag = 0;
    for (int i = 0; i < N_STOP_SIGNALS; i++) set_handler(STOP_SIGNALS[i], on_interrupt, &interrupt_old[i]);
    interrupt_installed = 1;
}

int interrupted(void) {
    return interrupt_flag != 0;
}

void interrupt_release(void) {
    if (interrupt_installed)
        for (int i = 0; i < N_STOP_SIGNALS; i++) sigaction(STOP_SIGNALS[i], &interrupt_old[i], NULL);
    interrupt_installed = 0;
}

// ----------------------------------------------------------------------------
// random numbers

uint32_t random_u32(uint64_t* state) {
    // xorshift rng: https://en.wikipedia.org/wiki/Xorshift#xorshift.2A
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

float random_f32(uint64_t* state) {
    return (random_u32(state) >> 8) / 16777216.0f; // 24 random bits: exactly representable
}

float random_normal(uint64_t* state) {
    // Box-Muller; 1 - u keeps the log argument in (0, 1]
    float u1 = 1.0f - random_f32(state);
    float u2 = random_f32(state);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

// ----------------------------------------------------------------------------
// hashing: FNV-1a, for checking that data is what it was

int compare_key_index(const void* a, const void* b) {
    const KeyIndex* x = a;
    const KeyIndex* y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

uint64_t hash_u32(uint64_t h, uint32_t word) {
    for (int k = 0; k < 4; k++) h = (h ^ ((word >> (8 * k)) & 0xff)) * 1099511628211ull;
    return h;
}

// ----------------------------------------------------------------------------
// command-line values

// 1 if s is a decimal number as people write them: [+-]digits[.digits][e[+-]digits] (with
// fraction 0: digits only). strtod alone would also take " 5", "0x10", "inf" and "nan".
static int is_decimal(const char* s, int fraction) {
    const char* p = s;
    if (*p == '+' || *p == '-') p++;
    int digits = 0;
    while (isdigit((unsigned char)*p)) { p++; digits++; }
    if (fraction && *p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) { p++; digits++; }
    }
    if (!digits) return 0;
    if (fraction && (*p == 'e' || *p == 'E')) {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) return 0;
        while (isdigit((unsigned char)*p)) p++;
    }
    return *p == '\0';
}

int arg_int(const char* cmd, const char* flag, const char* value, long lo, long hi, int* out) {
    int ok = value && is_decimal(value, 0);
    errno = 0;
    long v = ok ? strtol(value, NULL, 10) : 0;
    if (!ok || errno || v < lo || v > hi) {
        error_msg("%s: %s expects an integer in %ld..%ld, got '%s'", cmd, flag, lo, hi, value ? value : "");
        return -1;
    }
    *out = (int)v;
    return 0;
}

int arg_float(const char* cmd, const char* flag, const char* value, double lo, double hi, float* out) {
    int ok = value && is_decimal(value, 1);
    errno = 0;
    double v = ok ? strtod(value, NULL) : 0;
    // !(v >= lo) also rejects NaN
    if (!ok || errno || !(v >= lo) || !(v <= hi)) {
        error_msg("%s: %s expects a number in %g..%g, got '%s'", cmd, flag, lo, hi, value ? value : "");
        return -1;
    }
    *out = (float)v;
    return 0;
}

int arg_u64(const char* cmd, const char* flag, const char* value, unsigned long long* out) {
    int ok = value && is_decimal(value, 0) && value[0] != '-';
    errno = 0;
    unsigned long long v = ok ? strtoull(value, NULL, 10) : 0;
    if (!ok || errno) {
        error_msg("%s: %s expects a non-negative integer, got '%s'", cmd, flag, value ? value : "");
        return -1;
    }
    *out = v;
    return 0;
}

// ----------------------------------------------------------------------------
// the command line

int is_help(const char* arg) {
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

// 1 if arg is one of the '|'-separated names
static int name_matches(const char* names, const char* arg) {
    size_t n = strlen(arg);
    for (const char* p = names; *p;) {
        const char* end = strchr(p, '|');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, arg, n) == 0) return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

// the index of value among the '|'-separated choices, or -1 after a message
static int arg_choice(const char* cmd, const char* flag, const char* value, const char* choices) {
    int index = 0;
    for (const char* p = choices;; index++) {
        const char* end = strchr(p, '|');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (strlen(value) == len && strncmp(p, value, len) == 0) return index;
        if (!end) break;
        p = end + 1;
    }
    error_msg("%s: %s takes %s, got '%s'", cmd, flag, choices, value);
    return -1;
}

// sets spec's destination from value (NULL for a switch): 0, or -1 after a message
static int arg_store(const char* cmd, const ArgSpec* spec, const char* flag, const char* value) {
    switch (spec->kind) {
    case ARG_SWITCH: *(int*)spec->dest = (int)spec->lo; return 0;
    case ARG_STRING: *(const char**)spec->dest = value; return 0;
    case ARG_INT: return arg_int(cmd, flag, value, (long)spec->lo, (long)spec->hi, spec->dest);
    case ARG_FLOAT: return arg_float(cmd, flag, value, spec->lo, spec->hi, spec->dest);
    case ARG_U64: {
        unsigned long long v;
        if (arg_u64(cmd, flag, value, &v) != 0) return -1;
        *(uint64_t*)spec->dest = v;
        return 0;
    }
    case ARG_CHOICE: {
        int index = arg_choice(cmd, flag, value, spec->choices);
        if (index < 0) return -1;
        *(int*)spec->dest = index;
        return 0;
    }
    case ARG_CALL: return spec->call(cmd, flag, value, spec->dest);
    }
    return -1;
}

int args_parse(const char* cmd, const ArgSpec* specs, int argc, char** argv) {
    const ArgSpec* next_positional = specs; // the positionals fill in table order
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        const ArgSpec* spec = NULL;
        if (a[0] == '-' && a[1] != '\0') { // a flag
            if (is_help(a)) return ARGS_HELP;
            for (const ArgSpec* s = specs; s->name && !spec; s++)
                if (s->name[0] == '-' && name_matches(s->name, a)) spec = s;
            if (!spec) {
                error_msg("%s: unknown option '%s' (see mosr %s --help)", cmd, a, cmd);
                return EXIT_USAGE;
            }
            if (spec->kind == ARG_SWITCH) {
                arg_store(cmd, spec, a, NULL);
                continue;
            }
            if (i + 1 >= argc) {
                error_msg("%s: %s needs a value (see mosr %s --help)", cmd, a, cmd);
                return EXIT_USAGE;
            }
            if (arg_store(cmd, spec, a, argv[++i]) != 0) return EXIT_USAGE;
            continue;
        }
        // a positional argument: the next positional spec takes it (a positional ARG_CALL takes all)
        while (next_positional->name && next_positional->name[0] == '-') next_positional++;
        if (!next_positional->name) {
            error_msg("%s: unexpected argument '%s' (see mosr %s --help)", cmd, a, cmd);
            return EXIT_USAGE;
        }
        if (arg_store(cmd, next_positional, next_positional->name, a) != 0) return EXIT_USAGE;
        if (next_positional->kind != ARG_CALL) next_positional++;
    }
    return 0;
}

void args_append(ArgSpec* specs, size_t capacity, const ArgSpec* more) {
    size_t n = 0, n_more = 0;
    while (n < capacity && specs[n].name) n++;
    while (more[n_more].name) n_more++;
    if (n + n_more + 1 > capacity) {
        error_msg("args_append: a table of %zu rows is too small for %zu more", capacity, n_more);
        abort();
    }
    memcpy(specs + n, more, n_more * sizeof(ArgSpec));
    specs[n + n_more] = (ArgSpec){0};
}

// ----------------------------------------------------------------------------
// time

double time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int profile_on;
double profile_seconds[N_PROF];

void profile_report(FILE* f, const char* cmd, double total, int steps) {
    static const char* const names[N_PROF] = {"linear + row ops", "attention", "rmsnorm", "elementwise",
                                              "classifier + CE", "zeroing", "RR losses", "M0 states", "AdamW"};
    double covered = 0.0;
    fprintf(f, "%s: profile of %d steps, %.2f s a step:\n", cmd, steps, total / steps);
    for (int p = 0; p < N_PROF; p++) {
        covered += profile_seconds[p];
        fprintf(f, "  %-16s %8.3f s a step %5.1f %%\n", names[p], profile_seconds[p] / steps,
                100.0 * profile_seconds[p] / total);
    }
    fprintf(f, "  %-16s %8.3f s a step %5.1f %%\n", "other", (total - covered) / steps, 100.0 * (total - covered) / total);
}

// ----------------------------------------------------------------------------
// directories

int ensure_dir(const char* dir) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return 0;
        error_msg("%s: exists and is not a directory", dir);
        return -1;
    }
    char parent[4096];
    const char* slash = strrchr(dir, '/');
    int made = mkdir(dir, 0755) == 0;
    if (!made && errno == ENOENT && slash && slash > dir && slash - dir < (long)sizeof(parent)) {
        snprintf(parent, sizeof(parent), "%.*s", (int)(slash - dir), dir);
        if (ensure_dir(parent) != 0) return -1;
        made = mkdir(dir, 0755) == 0 || (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode));
    }
    if (!made) {
        error_msg("%s: cannot create the directory: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// UTF-8

int utf8_valid(const char* str, size_t n) {
    const unsigned char* s = (const unsigned char*)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        int len;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
        else return 0;
        if (i + len > n) return 0;
        for (int j = 1; j < len; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        // reject overlong forms, surrogates and code points past U+10FFFF
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return 0;
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
        i += len;
    }
    return 1;
}

char* utf8_clean(const char* s) {
    size_t n = strlen(s), o = 0;
    char* clean = malloc(n * 3 + 1);
    if (!clean) return NULL;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (i + len <= n && utf8_valid(s + i, len)) { memcpy(clean + o, s + i, len); o += len; i += len; }
        else { memcpy(clean + o, "\xEF\xBF\xBD", 3); o += 3; i++; } // U+FFFD for the byte
    }
    clean[o] = '\0';
    return clean;
}

int utf8_put(char* out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// ----------------------------------------------------------------------------
// JSON: just enough to read one flat object per line. The scanner skips values it does not need
// (nested objects and arrays included), so unknown fields are ignored.

// why the last parse failed, for json_error; NULL: a plain syntax error
static const char* json_problem = NULL;

const char* json_error(void) {
    return json_problem ? json_problem : "syntax error";
}

static const char* skip_ws(const char* p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

static int hex4(const char* p, uint32_t* out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    *out = v;
    return 0;
}

// p points at the opening quote. Decodes into out (if not NULL; needs as many bytes as the literal)
// and returns the pointer past the closing quote, or NULL if the literal is malformed.
static const char* parse_string(const char* p, char* out, size_t* out_len) {
    size_t n = 0;
    if (*p != '"') return NULL;
    p++;
    while (*p != '"') {
        if (*p == '\0') return NULL;
        if ((unsigned char)*p < 0x20) return NULL; // raw control characters are not allowed
        if (*p != '\\') {
            if (out) out[n] = *p;
            n++;
            p++;
            continue;
        }
        p++;
        char c = *p++;
        char tmp[4];
        int len = 1;
        switch (c) {
        case '"': tmp[0] = '"'; break;
        case '\\': tmp[0] = '\\'; break;
        case '/': tmp[0] = '/'; break;
        case 'b': tmp[0] = '\b'; break;
        case 'f': tmp[0] = '\f'; break;
        case 'n': tmp[0] = '\n'; break;
        case 'r': tmp[0] = '\r'; break;
        case 't': tmp[0] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (hex4(p, &cp)) return NULL;
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { // a high surrogate must be followed by a low one
                uint32_t lo;
                if (p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    json_problem = "a lone UTF-16 surrogate (\\ud800-\\udbff without its low half) in a string";
                    return NULL;
                }
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                json_problem = "a lone UTF-16 surrogate (\\udc00-\\udfff without its high half) in a string";
                return NULL;
            }
            if (cp == 0) { // a NUL would cut the C string short
                json_problem = "\\u0000 (a NUL character) in a string is not supported";
                return NULL;
            }
            len = utf8_put(tmp, cp);
            break;
        }
        default: return NULL;
        }
        if (out) memcpy(out + n, tmp, len);
        n += len;
    }
    if (out_len) *out_len = n;
    return p + 1;
}

// returns the pointer past one JSON value starting at p, or NULL if malformed
static const char* skip_value(const char* p, int depth) {
    p = skip_ws(p);
    if (depth > 64) {
        json_problem = "nested deeper than 64 levels, the reader's limit";
        return NULL;
    }
    if (*p == '"') return parse_string(p, NULL, NULL);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = skip_ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                p = parse_string(skip_ws(p), NULL, NULL);
                if (!p) return NULL;
                p = skip_ws(p);
                if (*p != ':') return NULL;
                p++;
            }
            p = skip_value(p, depth + 1);
            if (!p) return NULL;
            p = skip_ws(p);
            if (*p == ',') { p++; continue; }
            if (*p == close) return p + 1;
            return NULL;
        }
    }
    if (!strncmp(p, "true", 4)) return p + 4;
    if (!strncmp(p, "false", 5)) return p + 5;
    if (!strncmp(p, "null", 4)) return p + 4;
    // a number: -?digits[.digits][(e|E)[+-]digits]; what follows is the caller's to check
    if (*p == '-') p++;
    if (!isdigit((unsigned char)*p)) return NULL;
    while (isdigit((unsigned char)*p)) p++;
    if (*p == '.') {
        if (!isdigit((unsigned char)*++p)) return NULL;
        while (isdigit((unsigned char)*p)) p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) return NULL;
        while (isdigit((unsigned char)*p)) p++;
    }
    return p;
}

// finds the value of top-level key in object; returns a pointer to its first character or NULL.
// A key given twice means its last value (the whole object is read, so a malformed tail is NULL too).
static const char* find_key(const char* object, const char* key) {
    json_problem = NULL;
    const char* p = skip_ws(object);
    if (*p != '{') return NULL;
    p = skip_ws(p + 1);
    if (*p == '}') return NULL;
    size_t key_len = strlen(key);
    const char* found = NULL;
    for (;;) {
        p = skip_ws(p);
        size_t len;
        const char* after = parse_string(p, NULL, &len);
        if (!after) return NULL;
        int match = 0;
        if (len == key_len) {
            char* name = malloc(len + 1);
            if (!name) return NULL;
            parse_string(p, name, NULL);
            match = memcmp(name, key, len) == 0;
            free(name);
        }
        p = skip_ws(after);
        if (*p != ':') return NULL;
        p = skip_ws(p + 1);
        if (match) found = p;
        p = skip_value(p, 1);
        if (!p) return NULL;
        p = skip_ws(p);
        if (*p == '}') return found;
        if (*p != ',') return NULL;
        p++;
    }
}

char* json_get_string(const char* object, const char* key) {
    const char* p = find_key(object, key);
    if (!p || *p != '"') return NULL;
    return json_parse_string(p);
}

int json_get_number(const char* object, const char* key, double* out) {
    const char* p = find_key(object, key);
    if (!p) return -1;
    if (strncmp(p, "true", 4) == 0) { *out = 1; return 0; }
    if (strncmp(p, "false", 5) == 0) { *out = 0; return 0; }
    char* end;
    double v = strtod(p, &end);
    if (end == p) return -1;
    *out = v;
    return 0;
}

void json_write_string(FILE* f, const char* s) {
    fputc('"', f);
    for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

void json_float(FILE* f, float x) {
    if (isfinite(x)) fprintf(f, "%.6g", x);
    else fputs("null", f);
}

// ----------------------------------------------------------------------------
// walking arrays and objects in place

int json_iter_begin(JsonIter* it, const char* p) {
    json_problem = NULL;
    p = skip_ws(p);
    if (*p != '[' && *p != '{') return -1;
    it->close = *p == '[' ? ']' : '}';
    it->p = p + 1;
    it->count = 0;
    return 0;
}

int json_iter_next(JsonIter* it, char** key, const char** value) {
    if (key) *key = NULL;
    json_problem = NULL;
    if (!it->p) return -1;
    const char* p = skip_ws(it->p);
    // after an element comes ',' or the closing bracket; before the first, the bracket or a value
    if (*p == it->close) { it->p = p; return 0; }
    if (it->count > 0) {
        if (*p != ',') { it->p = NULL; return -1; }
        p = skip_ws(p + 1);
    }
    if (it->close == '}') {
        size_t len;
        const char* after = parse_string(p, NULL, &len);
        if (!after || *skip_ws(after) != ':') { it->p = NULL; return -1; }
        if (key) {
            *key = malloc(len + 1);
            if (!*key) { it->p = NULL; return -1; }
            parse_string(p, *key, NULL);
            (*key)[len] = '\0';
        }
        p = skip_ws(skip_ws(after) + 1);
    }
    const char* end = skip_value(p, 1);
    if (!end) {
        if (key) { free(*key); *key = NULL; }
        it->p = NULL;
        return -1;
    }
    *value = p;
    it->p = end;
    it->count++;
    return 1;
}

char* json_parse_string(const char* p) {
    json_problem = NULL;
    p = skip_ws(p);
    size_t len;
    if (!parse_string(p, NULL, &len)) return NULL;
    char* out = malloc(len + 1);
    if (!out) return NULL;
    parse_string(p, out, NULL);
    out[len] = '\0';
    return out;
}
