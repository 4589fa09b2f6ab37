/* LD_PRELOAD shim for test/test_node_signals.py: holds rclpy's signal thread inside the signal it handles.
 *
 * rclpy's SIGINT/SIGTERM handler wakes a C++ thread that calls rcl_trigger_guard_condition (waking the
 * executor) and then rcl_shutdown (every context). This shim wraps both; on any thread but the main
 * thread it sleeps HOLD_S seconds after the trigger (HOLD_AT=after_trigger) or before the shutdown
 * (HOLD_AT=before_shutdown), and says so on stderr. That widens, to a second, a window the scheduler
 * opens for microseconds now and then: the process's own teardown running while that thread is
 * halfway through. Nothing is replaced: the real functions run, from the already loaded librcl.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef int (*rcl_fn)(void *);

static rcl_fn real(const char *name) {
  void *lib = dlopen("librcl.so", RTLD_NOW | RTLD_NOLOAD);
  rcl_fn fn = (rcl_fn)dlsym(lib ? lib : RTLD_NEXT, name);
  if (!fn) {
    fprintf(stderr, "HOLD: cannot find %s in librcl\n", name);
    abort();
  }
  return fn;
}

static int held_here(const char *at) {
  const char *want = getenv("HOLD_AT");
  return want && strcmp(want, at) == 0 && syscall(SYS_gettid) != getpid();
}

static void hold(const char *at) {
  const char *s = getenv("HOLD_S");
  fprintf(stderr, "HOLD: signal thread held %s\n", at);
  usleep((useconds_t)((s ? atof(s) : 1.0) * 1e6));
  fprintf(stderr, "HOLD: signal thread released %s\n", at);
}

int rcl_trigger_guard_condition(void *gc) {
  static rcl_fn fn;
  if (!fn) fn = real("rcl_trigger_guard_condition");
  int ret = fn(gc);
  if (held_here("after_trigger")) hold("after_trigger");
  return ret;
}

int rcl_shutdown(void *context) {
  static rcl_fn fn;
  if (!fn) fn = real("rcl_shutdown");
  if (held_here("before_shutdown")) hold("before_shutdown");
  return fn(context);
}
