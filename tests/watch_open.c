/* watch_open FILE COMMAND [ARGS...]: runs COMMAND and fails if any process
 * opened or read FILE meanwhile (inotify), so a test can show that the
 * server's commands never touch the client's secret bundle.  Exit status:
 * COMMAND's, or 100 if FILE was opened, 101 on a setup error. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: watch_open FILE COMMAND [ARGS...]\n");
    return 101;
  }
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0 || inotify_add_watch(fd, argv[1], IN_OPEN | IN_ACCESS) < 0) {
    fprintf(stderr, "watch_open: cannot watch %s: %s\n", argv[1], strerror(errno));
    return 101;
  }
  const pid_t pid = fork();
  if (pid < 0) return 101;
  if (pid == 0) {
    execv(argv[2], argv + 2);
    fprintf(stderr, "watch_open: cannot run %s: %s\n", argv[2], strerror(errno));
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return 101;
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  const ssize_t n = read(fd, buf, sizeof buf);
  if (n > 0) {
    fprintf(stderr, "watch_open: %s was opened while '%s' ran\n", argv[1], argv[2]);
    return 100;
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}
