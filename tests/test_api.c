/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The public API's contract for bad input and errors: every check gives an
 * exact error code, clears the out-parameters and leaves no object behind
 * (ts_teardown fails a test that leaves one).
 */
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "support.h"

#include "atomic.h"  /* shmbus__cpu_can_demote */
#include "service.h" /* layout.h and the layout, to forge service segments */

static char sentinel_byte;
#define SENTINEL ((void *)&sentinel_byte)

static shmbus_publisher *open_pub(shmbus_node *node, const char *service,
                                  const shmbus_service_opts *o) {
  shmbus_publisher *pub = NULL;
  ts_assert_ok(shmbus_publisher_open(node, service, o, &pub));
  assert_non_null(pub);
  return pub;
}

static shmbus_subscriber *open_sub(shmbus_node *node, const char *service,
                                   const shmbus_service_opts *o) {
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, service, o, &sub));
  assert_non_null(sub);
  return sub;
}

/* Both open functions must fail with `err` and clear *out. */
/* Both opens fail with `err`; for INCOMPATIBLE, shmbus_error_detail names
 * the mismatch: it contains `detail` (NULL: anything but ""). */
static void expect_open_refused(shmbus_node *node, const char *service,
                                const shmbus_service_opts *o, int err, const char *detail) {
  shmbus_publisher *pub = SENTINEL;
  shmbus_subscriber *sub = SENTINEL;
  ts_assert_err(shmbus_publisher_open(node, service, o, &pub), err);
  assert_null(pub);
  for (int port = 0; port < 2 && err == SHMBUS_ERR_INCOMPATIBLE; port++) {
    const char *d = shmbus_error_detail();
    if (d[0] == '\0' || (detail != NULL && strstr(d, detail) == NULL))
      fail_msg("error detail \"%s\" does not say \"%s\"", d, detail ? detail : "anything");
    if (port == 0) {
      ts_assert_err(shmbus_subscriber_open(node, service, o, &sub), err);
      assert_null(sub);
    }
  }
  if (err != SHMBUS_ERR_INCOMPATIBLE) {
    ts_assert_err(shmbus_subscriber_open(node, service, o, &sub), err);
    assert_null(sub);
  }
}

static void expect_open_error(shmbus_node *node, const char *service, const shmbus_service_opts *o,
                              int err) {
  expect_open_refused(node, service, o, err, NULL);
}

static void publish_seq(shmbus_publisher *pub, uint64_t tag, uint64_t seq) {
  void *p = SENTINEL;
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &p));
  ts_sample_fill(p, tag, seq);
  ts_assert_ok(shmbus_publisher_publish(pub, p));
}

static void assert_sample_zero(const shmbus_sample *s) {
  shmbus_sample zero;
  memset(&zero, 0, sizeof zero);
  assert_memory_equal(s, &zero, sizeof zero);
}

/* ---- NULL arguments ------------------------------------------------------------- */

static void test_null_arguments(void **state) {
  ts_env *env = *state;
  shmbus_service_opts o = ts_opts();
  shmbus_node *node = ts_node(env);
  shmbus_node_opts nopts = SHMBUS_NODE_OPTS_INIT;
  nopts.domain = env->domain;
  ts_assert_err(shmbus_node_open(&nopts, NULL), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_node_open(NULL, NULL), SHMBUS_ERR_INVAL);
  assert_null(shmbus_node_domain(NULL));
  assert_int_equal(shmbus_node_id(NULL), 0);
  shmbus_node_info info[2];
  size_t count = 77;
  ts_assert_err(shmbus_node_list(NULL, info, 2, &count), SHMBUS_ERR_INVAL);
  assert_int_equal(count, 0);
  count = 77;
  ts_assert_err(shmbus_node_list(node, NULL, 1, &count), SHMBUS_ERR_INVAL);
  assert_int_equal(count, 0);
  ts_assert_err(shmbus_node_list(node, info, 2, NULL), SHMBUS_ERR_INVAL);
  ts_assert_ok(shmbus_node_list(node, NULL, 0, &count)); /* counting only */
  assert_int_equal(count, 1);
  ts_assert_err(shmbus_domain_cleanup(NULL), SHMBUS_ERR_INVAL);

  shmbus_publisher *pub = SENTINEL;
  ts_assert_err(shmbus_publisher_open(NULL, "s", &o, &pub), SHMBUS_ERR_INVAL);
  assert_null(pub);
  pub = SENTINEL;
  ts_assert_err(shmbus_publisher_open(node, NULL, &o, &pub), SHMBUS_ERR_INVAL);
  assert_null(pub);
  pub = SENTINEL;
  ts_assert_err(shmbus_publisher_open(node, "s", NULL, &pub), SHMBUS_ERR_INVAL);
  assert_null(pub);
  ts_assert_err(shmbus_publisher_open(node, "s", &o, NULL), SHMBUS_ERR_INVAL);

  shmbus_subscriber *sub = SENTINEL;
  ts_assert_err(shmbus_subscriber_open(NULL, "s", &o, &sub), SHMBUS_ERR_INVAL);
  assert_null(sub);
  sub = SENTINEL;
  ts_assert_err(shmbus_subscriber_open(node, NULL, &o, &sub), SHMBUS_ERR_INVAL);
  assert_null(sub);
  sub = SENTINEL;
  ts_assert_err(shmbus_subscriber_open(node, "s", NULL, &sub), SHMBUS_ERR_INVAL);
  assert_null(sub);
  ts_assert_err(shmbus_subscriber_open(node, "s", &o, NULL), SHMBUS_ERR_INVAL);
  ts_assert_objects(env, 0);

  pub = open_pub(node, "s", &o);
  sub = open_sub(node, "s", &o);

  void *p = SENTINEL;
  ts_assert_err(shmbus_publisher_loan(NULL, 1, &p), SHMBUS_ERR_INVAL);
  assert_null(p);
  ts_assert_err(shmbus_publisher_loan(pub, 1, NULL), SHMBUS_ERR_INVAL);
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &p));
  ts_assert_err(shmbus_publisher_publish(NULL, p), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_publisher_publish(pub, NULL), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_publisher_publish_bytes(NULL, p, 1), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_publisher_publish_bytes(pub, NULL, 1), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_publisher_discard(NULL, p), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_publisher_discard(pub, NULL), SHMBUS_ERR_INVAL);
  ts_assert_ok(shmbus_publisher_discard(pub, p)); /* the loan survived all that */
  ts_sample data;
  ts_sample_fill(&data, 1, 2);
  ts_assert_err(shmbus_publisher_send_copy(NULL, &data, sizeof data), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_publisher_send_copy(pub, NULL, sizeof data), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_publisher_update(NULL), SHMBUS_ERR_INVAL);
  assert_int_equal(shmbus_publisher_id(NULL), 0);
  assert_int_not_equal(shmbus_publisher_id(pub), 0);

  shmbus_sample s;
  memset(&s, 0xff, sizeof s);
  ts_assert_err(shmbus_subscriber_take(NULL, &s), SHMBUS_ERR_INVAL);
  assert_sample_zero(&s);
  ts_assert_err(shmbus_subscriber_take(sub, NULL), SHMBUS_ERR_INVAL);
  memset(&s, 0xff, sizeof s);
  ts_assert_err(shmbus_subscriber_take_latest(NULL, &s), SHMBUS_ERR_INVAL);
  assert_sample_zero(&s);
  ts_assert_err(shmbus_subscriber_take_latest(sub, NULL), SHMBUS_ERR_INVAL);
  memset(&s, 0, sizeof s);
  ts_assert_err(shmbus_subscriber_release(NULL, &s), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_subscriber_release(sub, NULL), SHMBUS_ERR_INVAL);
  assert_int_equal(shmbus_subscriber_lost(NULL), 0);
  ts_assert_err(shmbus_subscriber_publishers(NULL), SHMBUS_ERR_INVAL);
  assert_int_equal(shmbus_subscriber_id(NULL), 0);
  assert_int_not_equal(shmbus_subscriber_id(sub), 0);

  /* The ports still work after all the refused calls. */
  ts_assert_ok(shmbus_publisher_send_copy(pub, &data, sizeof data));
  ts_assert_ok(shmbus_subscriber_take(sub, &s));
  assert_int_equal(s.bytes, sizeof data);
  assert_memory_equal(s.payload, &data, sizeof data);
  ts_assert_ok(shmbus_subscriber_release(sub, &s));

  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_close_null_is_noop(void **state) {
  (void)state;
  shmbus_node_close(NULL);
  shmbus_publisher_close(NULL);
  shmbus_subscriber_close(NULL);
}

/* ---- the error table ----------------------------------------------------------- */

static void test_error_strings(void **state) {
  (void)state;
  struct {
    int code;
    const char *name;
    const char *msg;
  } table[] = {
#define ROW(name, msg) {SHMBUS_ERR_##name, #name, msg},
      SHMBUS_ERRNO_MAP(ROW)
#undef ROW
  };
  size_t count = sizeof table / sizeof table[0];
  assert_int_equal(count, (size_t)SHMBUS__ERR_COUNT_ - 1);
  assert_int_equal(count, 24);
  for (size_t i = 0; i < count; i++) {
    assert_int_equal(table[i].code, -(int)(i + 1)); /* -1, -2, ... in order */
    assert_string_equal(shmbus_strerror(table[i].code), table[i].msg);
    assert_string_equal(shmbus_err_name(table[i].code), table[i].name);
    assert_true(strlen(table[i].msg) > 0);
    for (size_t j = 0; j < i; j++) {
      assert_string_not_equal(table[i].msg, table[j].msg);
      assert_string_not_equal(table[i].name, table[j].name);
    }
  }
  assert_string_equal(shmbus_err_name(SHMBUS_ERR_EMPTY), "EMPTY");
  assert_string_equal(shmbus_err_name(SHMBUS_ERR_IO), "IO");
  assert_string_equal(shmbus_strerror(SHMBUS_ERR_TIMEDOUT), "timed out");
  assert_string_equal(shmbus_err_name(0), "OK");
  assert_string_equal(shmbus_strerror(0), "success");
  const int unknown[] = {1, 2, 100, -25, -26, -1000, INT_MIN, INT_MAX, SHMBUS__ERR_LAST_};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    assert_string_equal(shmbus_strerror(unknown[i]), "unknown error");
    assert_string_equal(shmbus_err_name(unknown[i]), "UNKNOWN");
  }
  assert_string_equal(shmbus_version_string(), SHMBUS_VERSION_STRING);
  assert_string_equal(shmbus_version_string(), "0.1.0");
}

/* ---- nodes ---------------------------------------------------------------------- */

static void expect_node_error(const shmbus_node_opts *o, int err) {
  shmbus_node *node = SENTINEL;
  int r = shmbus_node_open(o, &node);
  if (r == 0 && node != NULL && node != SENTINEL) shmbus_node_close(node); /* no stray token */
  ts_assert_err(r, err);
  assert_null(node);
}

static void test_node_bad_domains(void **state) {
  (void)state;
  shmbus_node_opts o = SHMBUS_NODE_OPTS_INIT;
  char d33[34];
  memset(d33, 'a', 33);
  d33[33] = '\0';
  const char *bad[] = {d33, "a b", "a.b", "a/b", "\xc3\xa9t\xc3\xa9", "tab\t", "x*"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    o.domain = bad[i];
    expect_node_error(&o, SHMBUS_ERR_NAME);
  }
  /* 32 characters is the maximum and fine (a unique one, padded). */
  char d32[33];
  ts_unique_domain(d32);
  size_t n = strlen(d32);
  memset(d32 + n, 'b', 32 - n);
  d32[32] = '\0';
  o.domain = d32;
  shmbus_node *node = NULL;
  ts_assert_ok(shmbus_node_open(&o, &node));
  assert_string_equal(shmbus_node_domain(node), d32);
  assert_int_equal(ts_tokens(d32, NULL), 1);
  shmbus_node_close(node);
  ts_assert_no_leftovers(d32, NULL);
}

/* The header: "1 to SHMBUS_DOMAIN_MAX characters"; only NULL selects the
 * environment or "default". */
static void test_node_empty_domain(void **state) {
  (void)state;
  shmbus_node_opts o = SHMBUS_NODE_OPTS_INIT;
  o.domain = "";
  shmbus_node *node = SENTINEL;
  int r = shmbus_node_open(&o, &node);
  if (r == 0) shmbus_node_close(node);
  ts_assert_err(r, SHMBUS_ERR_NAME);
  assert_null(node);
}

static void test_node_domain_from_environment(void **state) {
  ts_env *env = *state;
  const char *saved = getenv("SHMBUS_DOMAIN");
  char *copy = saved ? strdup(saved) : NULL;
  shmbus_node *node = NULL;

  assert_int_equal(ts_setenv("SHMBUS_DOMAIN", env->domain), 0);
  ts_assert_ok(shmbus_node_open(NULL, &node));
  assert_string_equal(shmbus_node_domain(node), env->domain);
  shmbus_node_close(node);

  shmbus_node_opts o = SHMBUS_NODE_OPTS_INIT;
  char explicit_domain[TS_DOMAIN_SIZE];
  ts_unique_domain(explicit_domain);
  o.domain = explicit_domain;
  ts_assert_ok(shmbus_node_open(&o, &node)); /* an explicit domain wins */
  const char *got = shmbus_node_domain(node);
  int same = got && strcmp(got, explicit_domain) == 0;
  shmbus_node_close(node);
  assert_true(same);

  assert_int_equal(ts_setenv("SHMBUS_DOMAIN", "not a domain"), 0);
  expect_node_error(NULL, SHMBUS_ERR_NAME);

  assert_int_equal(ts_unsetenv("SHMBUS_DOMAIN"), 0);
  ts_assert_ok(shmbus_node_open(NULL, &node));
  assert_string_equal(shmbus_node_domain(node), "default");
  shmbus_node_close(node);

  if (copy) ts_setenv("SHMBUS_DOMAIN", copy);
  free(copy);
}

static void test_node_backend_errors(void **state) {
  ts_env *env = *state;
  shmbus_node_opts o = SHMBUS_NODE_OPTS_INIT;
  o.domain = env->domain;

  o.backend = SHMBUS_BACKEND_DIR;
  o.root = NULL;
  expect_node_error(&o, SHMBUS_ERR_INVAL); /* DIR without a root */
  o.root = "";
  expect_node_error(&o, SHMBUS_ERR_INVAL);
  o.root = "/nonexistent/shmbus-test-dir";
  expect_node_error(&o, SHMBUS_ERR_INVAL);
  char *dir = ts_tmpdir_create();
  char file[1100];
  snprintf(file, sizeof file, "%s/plain-file", dir);
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  o.root = file;
  expect_node_error(&o, SHMBUS_ERR_INVAL); /* not a directory */

  o.backend = SHMBUS_BACKEND_SHM;
  o.root = dir;
  expect_node_error(&o, SHMBUS_ERR_INVAL); /* a root for the SHM backend */
  o.root = NULL;
  o.backend = 2;
  expect_node_error(&o, SHMBUS_ERR_INVAL);
  o.backend = -1;
  expect_node_error(&o, SHMBUS_ERR_INVAL);
  o.backend = SHMBUS_BACKEND_SHM;
  o.mode = 01000;
  expect_node_error(&o, SHMBUS_ERR_INVAL);

  /* The good cases, for contrast. */
  o.mode = 0;
  shmbus_node *node = NULL;
  ts_assert_ok(shmbus_node_open(&o, &node));
  shmbus_node_close(node);
  o.backend = SHMBUS_BACKEND_DIR;
  o.root = dir;
  ts_assert_ok(shmbus_node_open(&o, &node));
  assert_string_equal(shmbus_node_domain(node), env->domain);
  shmbus_node_close(node);
  ts_tmpdir_remove(dir);
}

/* 1 when the OS kept no permissions to check, else 0 (checked). */
static int check_mode(const ts_env *env, unsigned mode, unsigned want) {
  shmbus_node_opts no = SHMBUS_NODE_OPTS_INIT;
  no.domain = env->domain;
  no.backend = env->backend;
  no.root = env->dir;
  no.mode = mode;
  shmbus_node *node = NULL;
#ifdef _WIN32
  /* The default backend is per user on Windows: its liveness tokens live
   * in a per-user state directory, so group and other bits are refused
   * (src/win/object.c, shmbus__root_prepare). */
  if (env->dir == NULL && (mode & 077u) != 0) {
    expect_node_error(&no, SHMBUS_ERR_INVAL);
    return 0;
  }
#endif
  ts_assert_ok(shmbus_node_open(&no, &node));
  shmbus_service_opts o = ts_opts();
  shmbus_publisher *pub = open_pub(node, "mode", &o);
  char name[128];
  ts_service_object_name(name, sizeof name, env->domain, "mode");
  unsigned have = 0;
  int r = ts_object_mode(env->dir, name, &have);
  if (r == 0) assert_int_equal(have, want);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  /* Removed with its last user (Windows _SHM: the section went with the
   * last handle). */
  assert_int_equal(ts_object_mode(env->dir, name, &have), -1);
  /* Windows: 1 when the file system kept no DACL (wine's ignores file
   * DACLs). */
  if (r == 1) return 1;
  assert_int_equal(r, 0);
  return 0;
}

/* Windows: the mode is the object's DACL (src/win/object.c), read back by
 * ts_object_mode; there is no umask. */
static void test_node_mode(void **state) {
  ts_env *env = *state;
#ifndef _WIN32
  mode_t old = umask(022);
#endif
  int unkept = check_mode(env, 0, 0600);
  unkept |= check_mode(env, 0666, 0666); /* the umask does not narrow it */
  unkept |= check_mode(env, 0640, 0640);
#ifndef _WIN32
  umask(old);
#endif
  ts_assert_env_clean(env);
  if (unkept) {
    print_message(
        "skipped the mode checks: the file system kept no security descriptor of the "
        "library's (wine ignores file DACLs); objects were created and removed\n");
    skip();
  }
}

/* Every node holds a liveness token "shmbus.<domain>.n.<16 hex id>" for as
 * long as it or one of its ports is open. */
static void test_node_token_lifecycle(void **state) {
  ts_env *env = *state;
  shmbus_node *a = ts_node(env);
  shmbus_node *b = ts_node(env);
  uint64_t ida = shmbus_node_id(a), idb = shmbus_node_id(b);
  assert_int_not_equal(ida, 0);
  assert_int_not_equal(ida, idb);
  char name[96], path[2048];
  snprintf(name, sizeof name, "shmbus.%s.n.%016llx", env->domain, (unsigned long long)ida);
  ts_object_path(path, sizeof path, env->dir, name);
  assert_int_equal(access(path, F_OK), 0);
  assert_int_equal(ts_tokens(env->domain, env->dir), 2);
  assert_int_equal(ts_objects(env->domain, env->dir), 0);

  shmbus_node_info info[4];
  size_t count = 0;
  ts_assert_ok(shmbus_node_list(a, info, 4, &count));
  assert_int_equal(count, 2);
  for (size_t i = 0; i < count; i++) {
    assert_true(info[i].id == ida || info[i].id == idb);
    assert_int_equal(info[i].alive, 1);
  }
  assert_true(info[0].id != info[1].id);
  ts_assert_ok(shmbus_node_list(a, info, 1, &count)); /* more than fit */
  assert_int_equal(count, 2);
  assert_int_equal(shmbus_domain_cleanup(a), 0); /* nothing dead to remove */
  assert_int_equal(ts_tokens(env->domain, env->dir), 2);

  /* A port keeps its node (and token) after shmbus_node_close. */
  shmbus_service_opts o = ts_opts();
  shmbus_publisher *pub = open_pub(a, "token", &o);
  shmbus_node_close(a);
  assert_int_equal(access(path, F_OK), 0);
  ts_assert_ok(shmbus_node_list(b, info, 4, &count));
  assert_int_equal(count, 2);
  shmbus_publisher_close(pub);
  assert_int_not_equal(access(path, F_OK), 0);
  ts_assert_ok(shmbus_node_list(b, info, 4, &count));
  assert_int_equal(count, 1);
  assert_int_equal(info[0].id, idb);
  shmbus_node_close(b);
  ts_assert_env_clean(env);
}

/* ---- names and types -------------------------------------------------------------- */

static void test_bad_service_names(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  char n256[257], n255[256];
  memset(n256, 'n', 256);
  n256[256] = '\0';
  memset(n255, 'n', 255);
  n255[255] = '\0';
  const char *bad[] = {"",     n256,      "with space",  "ctl\x01", "tab\t",
                       "nl\n", "del\x7f", "caf\xc3\xa9", "\x80",    " lead"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_open_error(node, bad[i], &o, SHMBUS_ERR_NAME);
  ts_assert_objects(env, 0);

  /* 255 printable characters, and punctuation, are fine. */
  shmbus_publisher *pub = open_pub(node, n255, &o);
  shmbus_subscriber *sub = open_sub(node, "a/b.c:d!~", &o);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_bad_types(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.type.name = NULL;
  expect_open_error(node, "t", &o, SHMBUS_ERR_INVAL);
  o.type.name = "";
  expect_open_error(node, "t", &o, SHMBUS_ERR_NAME);
  char n128[129];
  memset(n128, 'T', 128);
  n128[128] = '\0';
  o.type.name = n128;
  expect_open_error(node, "t", &o, SHMBUS_ERR_NAME);
  o.type.name = "has space";
  expect_open_error(node, "t", &o, SHMBUS_ERR_NAME);

  o = ts_opts();
  o.type.size = 0;
  expect_open_error(node, "t", &o, SHMBUS_ERR_INVAL);
  const size_t bad_align[] = {0, 3, 6, 12, 8192, 4097};
  for (size_t i = 0; i < sizeof bad_align / sizeof bad_align[0]; i++) {
    o = ts_opts();
    o.type.align = bad_align[i];
    expect_open_error(node, "t", &o, SHMBUS_ERR_INVAL);
  }
#if SIZE_MAX > UINT32_MAX
  o = ts_opts();
  o.type.size = (size_t)UINT32_MAX + 1;
  expect_open_error(node, "t", &o, SHMBUS_ERR_TOO_LARGE);
#endif
  o = ts_opts();
  o.type.size = 1u << 20;
  o.max_elements = (1u << 10) + 1; /* one element over SHMBUS_MAX_PAYLOAD */
  expect_open_error(node, "t", &o, SHMBUS_ERR_TOO_LARGE);
  o.type.size = 3;
  o.max_elements = UINT32_MAX;
  expect_open_error(node, "t", &o, SHMBUS_ERR_TOO_LARGE);
  o.type.size = UINT32_MAX;
  o.max_elements = 2;
  expect_open_error(node, "t", &o, SHMBUS_ERR_TOO_LARGE);

  /* Alignment 4096 and 1 are fine. */
  o = ts_opts();
  o.type.align = 4096;
  shmbus_publisher *pub = open_pub(node, "t4096", &o);
  void *p = NULL;
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &p));
  assert_int_equal((uintptr_t)p % 4096, 0);
  ts_assert_ok(shmbus_publisher_discard(pub, p));
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_limits_above_maxima(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  struct {
    const char *what;
    size_t offset;
    uint32_t value;
  } cases[] = {
#define CASE(field, value) {#field, offsetof(shmbus_service_opts, field), value}
      CASE(max_publishers, SHMBUS_MAX_PORTS + 1),
      CASE(max_subscribers, SHMBUS_MAX_PORTS + 1),
      CASE(queue_depth, SHMBUS_MAX_QUEUE_DEPTH + 1),
      CASE(history, SHMBUS_MAX_HISTORY + 1),
      CASE(max_loans, SHMBUS_MAX_LOANS + 1),
      CASE(max_held, SHMBUS_MAX_HELD + 1),
      CASE(max_publishers, UINT32_MAX),
      CASE(queue_depth, UINT32_MAX),
#undef CASE
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    shmbus_service_opts o = ts_opts();
    memcpy((char *)&o + cases[i].offset, &cases[i].value, sizeof(uint32_t));
    shmbus_publisher *pub = SENTINEL;
    int r = shmbus_publisher_open(node, "limits", &o, &pub);
    if (r != SHMBUS_ERR_INVAL || pub != NULL)
      fail_msg("%s = %u: got %s", cases[i].what, (unsigned)cases[i].value, shmbus_err_name(r));
    expect_open_error(node, "limits", &o, SHMBUS_ERR_INVAL);
  }
  shmbus_service_opts o = ts_opts();
  o.overflow = SHMBUS_OVERFLOW_BLOCK + 1;
  expect_open_error(node, "limits", &o, SHMBUS_ERR_INVAL);
  o.overflow = -1;
  expect_open_error(node, "limits", &o, SHMBUS_ERR_INVAL);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- incompatible services -------------------------------------------------------- */

static shmbus_service_opts base_opts(void) {
  shmbus_service_opts o = ts_opts();
  o.max_elements = 4;
  o.max_publishers = 3;
  o.max_subscribers = 3;
  o.queue_depth = 8;
  o.history = 2;
  o.max_loans = 3;
  o.max_held = 3;
  o.overflow = SHMBUS_OVERFLOW_DROP_NEWEST;
  return o;
}

static void expect_open_ok_and_close(shmbus_node *node, const char *service,
                                     const shmbus_service_opts *o) {
  shmbus_publisher *pub = open_pub(node, service, o);
  shmbus_subscriber *sub = open_sub(node, service, o);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
}

static void test_incompatible_open(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = base_opts();
  shmbus_publisher *owner = open_pub(node, "compat", &o);

  o = base_opts();
  o.type.name = "shmbus-test/Other";
  expect_open_refused(node, "compat", &o, SHMBUS_ERR_INCOMPATIBLE, "not 'shmbus-test/Other'");
  o = base_opts();
  o.type.size = sizeof(ts_sample) + 8;
  char want[128];
  snprintf(want, sizeof want, "is %zu bytes with alignment %zu here, %zu bytes", o.type.size,
           o.type.align, sizeof(ts_sample));
  expect_open_refused(node, "compat", &o, SHMBUS_ERR_INCOMPATIBLE, want);
  o = base_opts();
  o.type.size = sizeof(ts_sample) - 8;
  expect_open_error(node, "compat", &o, SHMBUS_ERR_INCOMPATIBLE);
  o = base_opts();
  o.type.align *= 2; /* ts_sample's: 8 on x86-64, 4 on i386 */
  expect_open_error(node, "compat", &o, SHMBUS_ERR_INCOMPATIBLE);
  o = base_opts();
  o.type.align /= 2;
  expect_open_error(node, "compat", &o, SHMBUS_ERR_INCOMPATIBLE);

  const size_t limits[] = {
      offsetof(shmbus_service_opts, max_elements),    offsetof(shmbus_service_opts, max_publishers),
      offsetof(shmbus_service_opts, max_subscribers), offsetof(shmbus_service_opts, queue_depth),
      offsetof(shmbus_service_opts, history),         offsetof(shmbus_service_opts, max_loans),
      offsetof(shmbus_service_opts, max_held)};
  for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
    uint32_t have;
    o = base_opts();
    memcpy(&have, (char *)&o + limits[i], sizeof have);
    uint32_t v = have + 1; /* larger: refused */
    memcpy((char *)&o + limits[i], &v, sizeof v);
    snprintf(want, sizeof want, " %u asked, the service has %u", (unsigned)v, (unsigned)have);
    expect_open_refused(node, "compat", &o, SHMBUS_ERR_INCOMPATIBLE, want);
    v = have - 1; /* smaller (history 1, others >= 1): fine */
    memcpy((char *)&o + limits[i], &v, sizeof v);
    expect_open_ok_and_close(node, "compat", &o);
    v = 0; /* whatever the service has */
    memcpy((char *)&o + limits[i], &v, sizeof v);
    expect_open_ok_and_close(node, "compat", &o);
  }

  o = base_opts();
  o.overflow = SHMBUS_OVERFLOW_DROP_OLDEST;
  expect_open_refused(node, "compat", &o, SHMBUS_ERR_INCOMPATIBLE, "overflow 1 asked");
  o.overflow = SHMBUS_OVERFLOW_DEFAULT;
  expect_open_ok_and_close(node, "compat", &o);
  assert_string_equal(shmbus_error_detail(), ""); /* a successful open clears it */
  o = base_opts();
  expect_open_ok_and_close(node, "compat", &o);

  /* A port opened with smaller limits works under the service's limits:
   * max_elements 4 as created, not 1. */
  o = base_opts();
  o.max_elements = 1;
  shmbus_publisher *pub = open_pub(node, "compat", &o);
  void *p = NULL;
  ts_assert_ok(shmbus_publisher_loan(pub, 4, &p));
  ts_assert_ok(shmbus_publisher_discard(pub, p));
  ts_assert_err(shmbus_publisher_loan(pub, 5, &p), SHMBUS_ERR_TOO_LARGE);
  shmbus_publisher_close(pub);

  shmbus_publisher_close(owner);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- forged service segments ------------------------------------------------------ */

/* Creates the service's object by hand with `size` bytes and `bytes` of
 * content at its start; its name in name[cap]. (Windows _SHM: a section
 * that the helper keeps open until ts_unlink_object.) */
static void forge_object(const ts_env *env, const char *service, const void *bytes, size_t n,
                         size_t size, char *name, size_t cap) {
  ts_service_object_name(name, cap, env->domain, service);
  assert_int_equal(ts_create_object(env->dir, name, size), 0);
  if (n == 0) return;
  size_t mapped = 0;
  void *p = ts_map_object(env->dir, name, &mapped);
  assert_non_null(p);
  assert_true(mapped >= n);
  memcpy(p, bytes, n);
  ts_unmap_object(p, mapped);
}

/* A well-formed service segment for ts_opts() with default limits. */
static size_t good_service_image(shmbus__service_seg *s, const char *service) {
  memset(s, 0, sizeof *s);
  s->hdr.magic = SHMBUS__MAGIC;
  s->hdr.layout_version = SHMBUS__LAYOUT_VERSION;
  s->hdr.kind = SHMBUS__SEG_SERVICE;
  s->hdr.header_size = sizeof(shmbus__seg_header);
  s->hdr.creator_node_id = 1;
  s->hdr.page_size = (uint32_t)shmbus__page_size();
  s->hdr.generation = 1;
  s->hdr.initialised = SHMBUS__INITIALISED;
  strcpy((char *)s->cfg.name, service);
  strcpy((char *)s->cfg.type_name, TS_TYPE_NAME);
  s->cfg.element_size = sizeof(ts_sample);
  s->cfg.element_align = _Alignof(ts_sample);
  s->cfg.max_elements = 1;
  s->cfg.max_publishers = 4;
  s->cfg.max_subscribers = 8;
  s->cfg.queue_depth = 16;
  s->cfg.history = 0;
  s->cfg.max_loans = 4;
  s->cfg.max_held = 4;
  s->cfg.overflow = SHMBUS_OVERFLOW_DROP_OLDEST;
  s->dyn.next_port_id = 1;
  shmbus__layout l;
  assert_int_equal(shmbus__layout_compute(&s->cfg, &l), 0);
  s->hdr.total_size = l.service_size;
  return (size_t)l.service_size;
}

static void expect_forged(const ts_env *env, const shmbus__service_seg *image, size_t n,
                          size_t size, int err) {
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  char name[128];
  forge_object(env, "forged", image, n, size, name, sizeof name);
  uint64_t t0 = ts_now_ns();
  expect_open_error(node, "forged", &o, err);
  if (err != SHMBUS_ERR_NOT_READY) /* refused at once, not after the wait */
    assert_true(ts_now_ns() - t0 < UINT64_C(1500000000));
  assert_int_equal(ts_unlink_object(env->dir, name), 0); /* nothing removed our object */
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_forged_control(void **state) {
  /* The image itself is good: a publisher opens it (and so the tests below
   * fail for the reason they name). */
  ts_env *env = *state;
  shmbus__service_seg s;
  size_t size = good_service_image(&s, "forged");
  char name[128];
  forge_object(env, "forged", &s, sizeof s, size, name, sizeof name);
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_publisher *pub = open_pub(node, "forged", &o);
  ts_assert_ok(shmbus_publisher_send_copy(pub, "x", 1));
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  /* POSIX: the last user removed it already, normally; Windows _SHM: the
   * helper's handle kept the section (and its name) until now. */
  ts_unlink_object(env->dir, name);
  ts_assert_env_clean(env);
}

static void test_forged_bad_magic(void **state) {
  shmbus__service_seg s;
  size_t size = good_service_image(&s, "forged");
  s.hdr.magic = UINT64_C(0x0123456789abcdef);
  expect_forged(*state, &s, sizeof s, size, SHMBUS_ERR_CORRUPT);
}

static void test_forged_bad_magic_uninitialised(void **state) {
  /* A foreign magic is refused without waiting for `initialised`. */
  shmbus__service_seg s;
  size_t size = good_service_image(&s, "forged");
  s.hdr.magic = UINT64_C(0x0123456789abcdef);
  s.hdr.initialised = 0;
  expect_forged(*state, &s, sizeof s, size, SHMBUS_ERR_CORRUPT);
}

static void test_forged_bad_version(void **state) {
  shmbus__service_seg s;
  size_t size = good_service_image(&s, "forged");
  s.hdr.layout_version = SHMBUS__LAYOUT_VERSION + 1;
  expect_forged(*state, &s, sizeof s, size, SHMBUS_ERR_VERSION);
}

static void test_forged_truncated(void **state) {
  shmbus__service_seg s;
  size_t size = good_service_image(&s, "forged");
  s.hdr.total_size = 2 * size; /* the header claims more than the file has */
  expect_forged(*state, &s, sizeof s, size, SHMBUS_ERR_CORRUPT);
}

static void test_forged_shorter_than_header(void **state) {
#ifdef _WIN32
  if (((ts_env *)*state)->dir == NULL) {
    /* Its views are a page long (VirtualQuery), the rest zeros: an
     * uninitialised header, which is test_forged_never_initialised. */
    print_message(
        "skipped: a paging-file section is page-granular, none is shorter than a "
        "segment header (the directory backend runs this case)\n");
    skip();
  }
#endif
  shmbus__service_seg s;
  good_service_image(&s, "forged");
  expect_forged(*state, &s, 40, 40, SHMBUS_ERR_CORRUPT);
}

static void test_forged_wrong_kind(void **state) {
  shmbus__service_seg s;
  size_t size = good_service_image(&s, "forged");
  s.hdr.kind = SHMBUS__SEG_DATA;
  expect_forged(*state, &s, sizeof s, size, SHMBUS_ERR_CORRUPT);
}

static void test_forged_bad_config(void **state) {
  shmbus__service_seg s;
  size_t size = good_service_image(&s, "forged");
  s.cfg.queue_depth = 0; /* a limit no creator could have written */
  expect_forged(*state, &s, sizeof s, size, SHMBUS_ERR_CORRUPT);
  size = good_service_image(&s, "forged");
  memset(s.cfg.type_name, 'x', sizeof s.cfg.type_name); /* no terminating NUL */
  expect_forged(*state, &s, sizeof s, size, SHMBUS_ERR_CORRUPT);
  size = good_service_image(&s, "forged");
  s.cfg.max_subscribers = 256; /* the port slots would not fit the segment */
  expect_forged(*state, &s, sizeof s, size, SHMBUS_ERR_CORRUPT);
}

static void test_forged_other_name(void **state) {
  /* Same object name (as for a hash collision), another service name
   * inside: the full name is compared. */
  shmbus__service_seg s;
  size_t size = good_service_image(&s, "not-forged");
  expect_forged(*state, &s, sizeof s, size, SHMBUS_ERR_INCOMPATIBLE);
}

static void test_forged_never_initialised(void **state) {
  /* Waits SHMBUS__INIT_TIMEOUT_NS (2 s) for each of the two opens. */
  shmbus__service_seg s;
  memset(&s, 0, sizeof s);
  uint64_t t0 = ts_now_ns();
  expect_forged(*state, &s, sizeof s, 4096, SHMBUS_ERR_NOT_READY);
  assert_true(ts_now_ns() - t0 >= UINT64_C(3000000000));
}

/* ---- samples: release -------------------------------------------------------------- */

typedef struct pair {
  shmbus_node *node;
  shmbus_publisher *pub;
  shmbus_subscriber *sub;
} pair;

static pair open_pair(const ts_env *env, const char *service, const shmbus_service_opts *o) {
  pair p;
  p.node = ts_node(env);
  p.pub = open_pub(p.node, service, o);
  p.sub = open_sub(p.node, service, o);
  return p;
}

static void close_pair(pair *p) {
  shmbus_subscriber_close(p->sub);
  shmbus_publisher_close(p->pub);
  shmbus_node_close(p->node);
}

static void test_release_twice_and_forged(void **state) {
  ts_env *env = *state;
  shmbus_service_opts o = ts_opts();
  pair p = open_pair(env, "release", &o);
  shmbus_subscriber *other = open_sub(p.node, "release", &o);
  for (uint64_t i = 0; i < 3; i++) publish_seq(p.pub, 1, i);

  shmbus_sample s, s2, theirs, f;
  ts_assert_ok(shmbus_subscriber_take(p.sub, &s));
  ts_assert_ok(shmbus_subscriber_take(p.sub, &s2));
  ts_assert_ok(shmbus_subscriber_take(other, &theirs));
  assert_int_equal(s.sequence, 0);
  assert_int_equal(theirs.sequence, 0);

  f = s;
  f.payload = (const char *)s.payload + 1;
  ts_assert_err(shmbus_subscriber_release(p.sub, &f), SHMBUS_ERR_NOT_HELD);
  f = s;
  f.payload = s2.payload; /* the handle of one, the payload of another */
  ts_assert_err(shmbus_subscriber_release(p.sub, &f), SHMBUS_ERR_NOT_HELD);
  const uint64_t garbage[] = {UINT64_MAX,        UINT64_C(0xdeadbeefdeadbeef),
                              s.internal_ ^ 1,   s.internal_ + (UINT64_C(1) << 32),
                              UINT64_C(1) << 63, s.internal_ ^ s2.internal_};
  for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
    f = s;
    f.internal_ = garbage[i];
    if (f.internal_ == s2.internal_) continue;
    ts_assert_err(shmbus_subscriber_release(p.sub, &f), SHMBUS_ERR_NOT_HELD);
  }
  memset(&f, 0, sizeof f);
  ts_assert_err(shmbus_subscriber_release(p.sub, &f), SHMBUS_ERR_NOT_HELD);
  /* Another subscriber's sample of the same chunk is not ours. */
  ts_assert_err(shmbus_subscriber_release(p.sub, &theirs), SHMBUS_ERR_NOT_HELD);
  ts_assert_err(shmbus_subscriber_release(other, &s), SHMBUS_ERR_NOT_HELD);

  /* None of that released anything: the real ones still can be, once. */
  assert_true(ts_sample_valid(s.payload));
  ts_assert_ok(shmbus_subscriber_release(p.sub, &s));
  ts_assert_err(shmbus_subscriber_release(p.sub, &s), SHMBUS_ERR_NOT_HELD);
  ts_assert_ok(shmbus_subscriber_release(p.sub, &s2));
  ts_assert_err(shmbus_subscriber_release(p.sub, &s2), SHMBUS_ERR_NOT_HELD);
  ts_assert_err(shmbus_subscriber_release(p.sub, &s), SHMBUS_ERR_NOT_HELD);
  ts_assert_ok(shmbus_subscriber_release(other, &theirs));
  ts_assert_err(shmbus_subscriber_release(other, &theirs), SHMBUS_ERR_NOT_HELD);

  /* A stale copy must not release a newer sample that reuses its slot. */
  ts_assert_ok(shmbus_subscriber_take(p.sub, &s2));
  assert_int_equal(s2.sequence, 2);
  ts_assert_err(shmbus_subscriber_release(p.sub, &s), SHMBUS_ERR_NOT_HELD);
  ts_assert_ok(shmbus_subscriber_release(p.sub, &s2));

  shmbus_subscriber_close(other);
  close_pair(&p);
  ts_assert_env_clean(env);
}

/* The same, where the newer sample has the stale copy's whole handle: the
 * same held entry (max_held 1) and the same chunk (a pool of 3 reused).
 * The model found this one (model/README.md, STALE_RELEASE). */
static void test_stale_release_same_chunk(void **state) {
  ts_env *env = *state;
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 1;
  o.max_held = 1;
  o.max_loans = 1;
  pair p = open_pair(env, "stale", &o);
  shmbus_sample stale, s;
  publish_seq(p.pub, 1, 0);
  ts_assert_ok(shmbus_subscriber_take(p.sub, &stale));
  ts_assert_ok(shmbus_subscriber_release(p.sub, &stale));
  int same = 0;
  for (uint64_t i = 1; i < 20 && !same; i++) {
    publish_seq(p.pub, 1, i);
    ts_assert_ok(shmbus_subscriber_take(p.sub, &s));
    same = s.internal_ == stale.internal_ && s.payload == stale.payload;
    if (same) {
      ts_assert_err(shmbus_subscriber_release(p.sub, &stale), SHMBUS_ERR_NOT_HELD);
      assert_true(ts_sample_valid(s.payload)); /* still held: still ours */
      ts_assert_err(shmbus_subscriber_take(p.sub, &stale), SHMBUS_ERR_HOLD_LIMIT);
    }
    ts_assert_ok(shmbus_subscriber_release(p.sub, &s));
  }
  assert_true(same); /* the pool of 3 chunks came round to the first one */
  close_pair(&p);
  ts_assert_env_clean(env);
}

/* The demote after a publish (publisher.c) is on where the CPU has
 * CLDEMOTE, SHMBUS_CLDEMOTE=off turns it off, and samples arrive intact
 * either way, also when two publishes come closer than its gap. */
static void test_publisher_demote_switch(void **state) {
  ts_env *env = *state;
  const char *saved = getenv("SHMBUS_CLDEMOTE");
  char *copy = saved ? strdup(saved) : NULL;
  shmbus_service_opts o = ts_opts();
  int expected[] = {shmbus__cpu_can_demote(), 0, 0};
  const char *values[] = {NULL, "off", "0"};
  for (int round = 0; round < 3; round++) {
    if (values[round])
      assert_int_equal(ts_setenv("SHMBUS_CLDEMOTE", values[round]), 0);
    else
      assert_int_equal(ts_unsetenv("SHMBUS_CLDEMOTE"), 0);
    pair p = open_pair(env, "demote", &o);
    assert_int_equal(shmbus__publisher_demotes(p.pub), expected[round]);
    for (uint64_t i = 0; i < 3; i++) {
      publish_seq(p.pub, 1, i);
      if (i == 0) ts_sleep_ns(1000 * 1000); /* a pause, then two at once */
    }
    for (uint64_t i = 0; i < 3; i++) {
      shmbus_sample s;
      ts_assert_ok(shmbus_subscriber_take(p.sub, &s));
      assert_true(ts_sample_valid(s.payload));
      assert_int_equal(((const ts_sample *)s.payload)->seq, i);
      ts_assert_ok(shmbus_subscriber_release(p.sub, &s));
    }
    close_pair(&p);
  }
  ts_unsetenv("SHMBUS_CLDEMOTE");
  if (copy) ts_setenv("SHMBUS_CLDEMOTE", copy);
  free(copy);
  ts_assert_env_clean(env);
}

static void test_hold_limit(void **state) {
  ts_env *env = *state;
  shmbus_service_opts o = ts_opts();
  o.max_held = 2;
  pair p = open_pair(env, "hold", &o);
  for (uint64_t i = 0; i < 4; i++) publish_seq(p.pub, 1, i);
  shmbus_sample a, b, c;
  ts_assert_ok(shmbus_subscriber_take(p.sub, &a));
  ts_assert_ok(shmbus_subscriber_take(p.sub, &b));
  memset(&c, 0xff, sizeof c);
  ts_assert_err(shmbus_subscriber_take(p.sub, &c), SHMBUS_ERR_HOLD_LIMIT);
  assert_sample_zero(&c);
  memset(&c, 0xff, sizeof c);
  ts_assert_err(shmbus_subscriber_take_latest(p.sub, &c), SHMBUS_ERR_HOLD_LIMIT);
  assert_sample_zero(&c);
  ts_assert_ok(shmbus_subscriber_release(p.sub, &a));
  /* Nothing was lost or skipped by the refused takes. */
  ts_assert_ok(shmbus_subscriber_take(p.sub, &c));
  assert_int_equal(c.sequence, 2);
  ts_assert_err(shmbus_subscriber_take(p.sub, &a), SHMBUS_ERR_HOLD_LIMIT);
  ts_assert_ok(shmbus_subscriber_release(p.sub, &b));
  ts_assert_ok(shmbus_subscriber_release(p.sub, &c));
  ts_assert_ok(shmbus_subscriber_take(p.sub, &a));
  assert_int_equal(a.sequence, 3);
  ts_assert_ok(shmbus_subscriber_release(p.sub, &a));
  assert_int_equal(shmbus_subscriber_lost(p.sub), 0);
  close_pair(&p);
  ts_assert_env_clean(env);
}

/* ---- loans ------------------------------------------------------------------------ */

static void test_loan_limit(void **state) {
  ts_env *env = *state;
  shmbus_service_opts o = ts_opts();
  o.max_loans = 2;
  pair p = open_pair(env, "loans", &o);
  void *a = NULL, *b = NULL, *c = SENTINEL;
  ts_assert_ok(shmbus_publisher_loan(p.pub, 1, &a));
  ts_assert_ok(shmbus_publisher_loan(p.pub, 1, &b));
  assert_ptr_not_equal(a, b);
  ts_assert_err(shmbus_publisher_loan(p.pub, 1, &c), SHMBUS_ERR_LOAN_LIMIT);
  assert_null(c);
  ts_sample data;
  ts_sample_fill(&data, 0, 0);
  ts_assert_err(shmbus_publisher_send_copy(p.pub, &data, sizeof data), SHMBUS_ERR_LOAN_LIMIT);
  ts_assert_ok(shmbus_publisher_discard(p.pub, a));
  ts_assert_ok(shmbus_publisher_loan(p.pub, 1, &c));
  ts_assert_err(shmbus_publisher_loan(p.pub, 1, &a), SHMBUS_ERR_LOAN_LIMIT);
  ts_sample_fill(b, 7, 0);
  ts_assert_ok(shmbus_publisher_publish(p.pub, b)); /* publishing ends a loan too */
  ts_assert_ok(shmbus_publisher_loan(p.pub, 1, &a));
  ts_assert_ok(shmbus_publisher_discard(p.pub, a));
  ts_assert_ok(shmbus_publisher_discard(p.pub, c));
  shmbus_sample s;
  ts_assert_ok(shmbus_subscriber_take(p.sub, &s));
  assert_int_equal(((const ts_sample *)s.payload)->tag, 7);
  ts_assert_ok(shmbus_subscriber_release(p.sub, &s));
  ts_assert_err(shmbus_subscriber_take(p.sub, &s), SHMBUS_ERR_EMPTY); /* discards sent nothing */
  close_pair(&p);
  ts_assert_env_clean(env);
}

static void test_not_loaned(void **state) {
  ts_env *env = *state;
  shmbus_service_opts o = ts_opts();
  o.max_elements = 2;
  pair p = open_pair(env, "notloaned", &o);
  shmbus_publisher *other = open_pub(p.node, "notloaned", &o);
  ts_sample local;
  void *mine = NULL, *theirs = NULL;
  ts_assert_ok(shmbus_publisher_loan(p.pub, 2, &mine));
  ts_assert_ok(shmbus_publisher_loan(other, 1, &theirs));

  void *foreign[] = {&local,
                     theirs,
                     (char *)mine + 1,
                     (char *)mine + 8,
                     (char *)mine - 64,
                     (char *)mine + (1 << 20),
                     (char *)mine + sizeof(ts_sample)};
  for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
    ts_assert_err(shmbus_publisher_publish(p.pub, foreign[i]), SHMBUS_ERR_NOT_LOANED);
    ts_assert_err(shmbus_publisher_publish_bytes(p.pub, foreign[i], 1), SHMBUS_ERR_NOT_LOANED);
    ts_assert_err(shmbus_publisher_discard(p.pub, foreign[i]), SHMBUS_ERR_NOT_LOANED);
  }
  /* Nothing happened: both loans are intact, nothing was sent. */
  shmbus_sample s;
  ts_assert_err(shmbus_subscriber_take(p.sub, &s), SHMBUS_ERR_EMPTY);

  ts_sample_fill(mine, 1, 0);
  ts_assert_ok(shmbus_publisher_publish(p.pub, mine));
  ts_assert_err(shmbus_publisher_publish(p.pub, mine), SHMBUS_ERR_NOT_LOANED);
  ts_assert_err(shmbus_publisher_discard(p.pub, mine), SHMBUS_ERR_NOT_LOANED);
  ts_assert_ok(shmbus_publisher_discard(other, theirs));
  ts_assert_err(shmbus_publisher_discard(other, theirs), SHMBUS_ERR_NOT_LOANED);
  ts_assert_err(shmbus_publisher_publish(other, theirs), SHMBUS_ERR_NOT_LOANED);

  ts_assert_ok(shmbus_subscriber_take(p.sub, &s));
  assert_int_equal(s.sequence, 0);
  assert_int_equal(s.bytes, 2 * sizeof(ts_sample));
  ts_assert_ok(shmbus_subscriber_release(p.sub, &s));
  ts_assert_err(shmbus_subscriber_take(p.sub, &s), SHMBUS_ERR_EMPTY); /* published once */

  shmbus_publisher_close(other);
  close_pair(&p);
  ts_assert_env_clean(env);
}

static void test_loan_sizes(void **state) {
  ts_env *env = *state;
  shmbus_service_opts o = ts_opts();
  o.max_elements = 3;
  pair p = open_pair(env, "sizes", &o);
  void *x = SENTINEL;
  ts_assert_err(shmbus_publisher_loan(p.pub, 0, &x), SHMBUS_ERR_INVAL);
  assert_null(x);
  x = SENTINEL;
  ts_assert_err(shmbus_publisher_loan(p.pub, 4, &x), SHMBUS_ERR_TOO_LARGE);
  assert_null(x);
  x = SENTINEL;
  ts_assert_err(shmbus_publisher_loan(p.pub, SIZE_MAX, &x), SHMBUS_ERR_TOO_LARGE);
  assert_null(x);

  ts_assert_ok(shmbus_publisher_loan(p.pub, 2, &x));
  ts_assert_err(shmbus_publisher_publish_bytes(p.pub, x, 2 * sizeof(ts_sample) + 1),
                SHMBUS_ERR_TOO_LARGE);
  ts_assert_err(shmbus_publisher_publish_bytes(p.pub, x, SIZE_MAX), SHMBUS_ERR_TOO_LARGE);
  /* Still loaned after the refusals. */
  ts_assert_ok(shmbus_publisher_publish_bytes(p.pub, x, 2 * sizeof(ts_sample)));

  ts_sample big[4];
  memset(big, 0x5a, sizeof big);
  ts_assert_err(shmbus_publisher_send_copy(p.pub, big, 0), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_publisher_send_copy(p.pub, big, 3 * sizeof(ts_sample) + 1),
                SHMBUS_ERR_TOO_LARGE);
  ts_assert_ok(shmbus_publisher_send_copy(p.pub, big, 3 * sizeof(ts_sample)));

  shmbus_sample s;
  ts_assert_ok(shmbus_subscriber_take(p.sub, &s));
  assert_int_equal(s.bytes, 2 * sizeof(ts_sample));
  ts_assert_ok(shmbus_subscriber_release(p.sub, &s));
  ts_assert_ok(shmbus_subscriber_take(p.sub, &s));
  assert_int_equal(s.bytes, 3 * sizeof(ts_sample));
  assert_memory_equal(s.payload, big, 3 * sizeof(ts_sample));
  ts_assert_ok(shmbus_subscriber_release(p.sub, &s));
  ts_assert_err(shmbus_subscriber_take(p.sub, &s), SHMBUS_ERR_EMPTY);
  close_pair(&p);
  ts_assert_env_clean(env);
}

/* ---- ports ------------------------------------------------------------------------ */

static void test_port_limit(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.max_publishers = 2;
  o.max_subscribers = 3;
  shmbus_publisher *pubs[2];
  shmbus_subscriber *subs[3];
  for (int i = 0; i < 2; i++) pubs[i] = open_pub(node, "ports", &o);
  for (int i = 0; i < 3; i++) subs[i] = open_sub(node, "ports", &o);
  shmbus_publisher *pub = SENTINEL;
  ts_assert_err(shmbus_publisher_open(node, "ports", &o, &pub), SHMBUS_ERR_PORT_LIMIT);
  assert_null(pub);
  shmbus_subscriber *sub = SENTINEL;
  ts_assert_err(shmbus_subscriber_open(node, "ports", &o, &sub), SHMBUS_ERR_PORT_LIMIT);
  assert_null(sub);
  /* Refused opens left nothing behind: 1 service + 2 x (data, control). */
  ts_assert_objects(env, 5);

  /* Ids are unique over both kinds. */
  uint64_t ids[5] = {shmbus_publisher_id(pubs[0]), shmbus_publisher_id(pubs[1]),
                     shmbus_subscriber_id(subs[0]), shmbus_subscriber_id(subs[1]),
                     shmbus_subscriber_id(subs[2])};
  for (int i = 0; i < 5; i++) {
    assert_int_not_equal(ids[i], 0);
    for (int j = 0; j < i; j++) assert_int_not_equal(ids[i], ids[j]);
  }
  /* A subscriber counts the publishers that have connected it; a
   * publisher counts the subscribers that have seen it since. */
  shmbus_publisher_update(pubs[0]);
  assert_int_equal(shmbus_subscriber_publishers(subs[0]), 1);
  shmbus_publisher_update(pubs[1]);
  for (int i = 0; i < 3; i++) assert_int_equal(shmbus_subscriber_publishers(subs[i]), 2);
  assert_int_equal(shmbus_publisher_update(pubs[0]), 3);
  assert_int_equal(shmbus_publisher_update(pubs[1]), 3);

  /* A freed slot is free again. */
  shmbus_publisher_close(pubs[1]);
  shmbus_subscriber_close(subs[2]);
  pubs[1] = open_pub(node, "ports", &o);
  subs[2] = open_sub(node, "ports", &o);
  shmbus_publisher_update(pubs[0]);
  shmbus_publisher_update(pubs[1]);
  for (int i = 0; i < 3; i++) assert_int_equal(shmbus_subscriber_publishers(subs[i]), 2);
  assert_int_equal(shmbus_publisher_update(pubs[1]), 3);
  assert_int_equal(shmbus_publisher_update(pubs[0]), 3);
  for (int i = 0; i < 3; i++) shmbus_subscriber_close(subs[i]);
  for (int i = 0; i < 2; i++) shmbus_publisher_close(pubs[i]);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_take_empty(void **state) {
  ts_env *env = *state;
  shmbus_service_opts o = ts_opts();
  shmbus_node *node = ts_node(env);
  shmbus_subscriber *sub = open_sub(node, "empty", &o);
  shmbus_sample s;
  memset(&s, 0xff, sizeof s);
  ts_assert_err(shmbus_subscriber_take(sub, &s), SHMBUS_ERR_EMPTY); /* no publisher */
  assert_sample_zero(&s);
  shmbus_publisher *pub = open_pub(node, "empty", &o);
  memset(&s, 0xff, sizeof s);
  ts_assert_err(shmbus_subscriber_take(sub, &s), SHMBUS_ERR_EMPTY); /* nothing sent */
  assert_sample_zero(&s);
  memset(&s, 0xff, sizeof s);
  ts_assert_err(shmbus_subscriber_take_latest(sub, &s), SHMBUS_ERR_EMPTY);
  assert_sample_zero(&s);
  publish_seq(pub, 3, 0);
  ts_assert_ok(shmbus_subscriber_take(sub, &s));
  ts_assert_ok(shmbus_subscriber_release(sub, &s));
  memset(&s, 0xff, sizeof s);
  ts_assert_err(shmbus_subscriber_take(sub, &s), SHMBUS_ERR_EMPTY); /* drained */
  assert_sample_zero(&s);
  shmbus_publisher_close(pub);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_node_close_before_ports(void **state) {
  ts_env *env = *state;
  shmbus_service_opts o = ts_opts();
  pair p = open_pair(env, "nodefirst", &o);
  shmbus_node_close(p.node);
  p.node = NULL;
  for (uint64_t i = 0; i < 3; i++) publish_seq(p.pub, 9, i);
  shmbus_sample s;
  for (uint64_t i = 0; i < 3; i++) {
    ts_assert_ok(shmbus_subscriber_take(p.sub, &s));
    assert_int_equal(s.sequence, i);
    assert_true(ts_sample_valid(s.payload));
    ts_assert_ok(shmbus_subscriber_release(p.sub, &s));
  }
  ts_assert_err(shmbus_subscriber_take(p.sub, &s), SHMBUS_ERR_EMPTY);
  shmbus_publisher_close(p.pub);
  /* The subscriber outlives the publisher and still holds the node. */
  ts_assert_err(shmbus_subscriber_take(p.sub, &s), SHMBUS_ERR_EMPTY);
  assert_int_equal(shmbus_subscriber_publishers(p.sub), 0);
  shmbus_subscriber_close(p.sub);
  ts_assert_env_clean(env);
}

/* A publisher that writes nonsense in a chunk header: the take says CORRUPT,
 * that publisher is cut off, others are unaffected. */
static void test_corrupt_chunk_header(void **state) {
  ts_env *env = *state;
  shmbus_service_opts o = ts_opts();
  pair p = open_pair(env, "corrupt", &o);
  shmbus_publisher *good = open_pub(p.node, "corrupt", &o);
  void *x = NULL;
  ts_assert_ok(shmbus_publisher_loan(p.pub, 1, &x));
  ts_sample_fill(x, 1, 0);
  ts_assert_ok(shmbus_publisher_publish(p.pub, x));
  /* The chunk header sits right before the payload (alignment 8: 32 bytes). */
  shmbus__chunk_header *hdr = (shmbus__chunk_header *)((char *)x - 32);
  assert_int_equal(hdr->payload_bytes, sizeof(ts_sample));
  assert_int_equal(hdr->publisher_id, shmbus_publisher_id(p.pub));
  hdr->payload_bytes = 1u << 30;

  shmbus_sample s;
  memset(&s, 0xff, sizeof s);
  ts_assert_err(shmbus_subscriber_take(p.sub, &s), SHMBUS_ERR_CORRUPT);
  assert_sample_zero(&s);

  publish_seq(good, 2, 0);
  publish_seq(p.pub, 1, 1);
  publish_seq(good, 2, 1);
  for (uint64_t i = 0; i < 2; i++) {
    ts_assert_ok(shmbus_subscriber_take(p.sub, &s));
    assert_int_equal(s.publisher_id, shmbus_publisher_id(good));
    assert_int_equal(s.sequence, i);
    ts_assert_ok(shmbus_subscriber_release(p.sub, &s));
  }
  ts_assert_err(shmbus_subscriber_take(p.sub, &s), SHMBUS_ERR_EMPTY);
  /* The offending publisher itself keeps working. */
  for (uint64_t i = 2; i < 200; i++) publish_seq(p.pub, 1, i);
  shmbus_publisher_close(good);
  close_pair(&p);
  ts_assert_env_clean(env);
}

#define SHM_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup_shm, ts_teardown)
#define DIR_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup_dir, ts_teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      SHM_TEST(test_null_arguments),
      SHM_TEST(test_close_null_is_noop),
      SHM_TEST(test_error_strings),
      SHM_TEST(test_node_bad_domains),
      SHM_TEST(test_node_empty_domain),
      SHM_TEST(test_node_domain_from_environment),
      SHM_TEST(test_publisher_demote_switch),
      SHM_TEST(test_node_backend_errors),
      SHM_TEST(test_node_mode),
      DIR_TEST(test_node_mode),
      SHM_TEST(test_node_token_lifecycle),
      DIR_TEST(test_node_token_lifecycle),
      SHM_TEST(test_bad_service_names),
      SHM_TEST(test_bad_types),
      SHM_TEST(test_limits_above_maxima),
      SHM_TEST(test_incompatible_open),
      DIR_TEST(test_incompatible_open),
      SHM_TEST(test_forged_control),
      SHM_TEST(test_forged_bad_magic),
      SHM_TEST(test_forged_bad_magic_uninitialised),
      SHM_TEST(test_forged_bad_version),
      SHM_TEST(test_forged_truncated),
      SHM_TEST(test_forged_shorter_than_header),
#ifdef _WIN32
      DIR_TEST(test_forged_shorter_than_header), /* files can be; sections cannot */
#endif
      SHM_TEST(test_forged_wrong_kind),
      SHM_TEST(test_forged_bad_config),
      SHM_TEST(test_forged_other_name),
      DIR_TEST(test_forged_bad_magic),
      DIR_TEST(test_forged_bad_version),
      DIR_TEST(test_forged_truncated),
      SHM_TEST(test_forged_never_initialised),
      SHM_TEST(test_release_twice_and_forged),
      SHM_TEST(test_stale_release_same_chunk),
      SHM_TEST(test_hold_limit),
      SHM_TEST(test_loan_limit),
      SHM_TEST(test_not_loaned),
      SHM_TEST(test_loan_sizes),
      SHM_TEST(test_port_limit),
      SHM_TEST(test_take_empty),
      SHM_TEST(test_node_close_before_ports),
      SHM_TEST(test_corrupt_chunk_header),
  };
  return cmocka_run_group_tests_name("api", tests, NULL, NULL) ? 1 : 0;
}
