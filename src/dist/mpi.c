/* The collective of a data-parallel job on MPI (include/blindtuner/dist.h).
 * Without MPI in the build, one process, and a refusal to run under an MPI
 * launcher. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blindtuner/dist.h"
#include "blindtuner/util.h"

#ifdef BT_HAVE_MPI
#include <mpi.h>
#endif

int bt_dist_launched(void) { return bt_dist_launcher_size() != 0; }

int bt_dist_launcher_size(void) {
  /* Open MPI, MPICH and Intel MPI (hydra), Slurm's PMI: the world size;
   * PMIx and hydra's local count: launched, size unknown here */
  static const char *const sized[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", NULL};
  static const char *const unsized[] = {"PMIX_RANK", "MPI_LOCALNRANKS", NULL};
  for (int i = 0; sized[i]; i++) {
    const char *v = getenv(sized[i]);
    if (v) {
      const int n = atoi(v);
      return n > 0 ? n : -1;
    }
  }
  for (int i = 0; unsized[i]; i++)
    if (getenv(unsized[i])) return -1;
  return 0;
}

/* The default threads, or an even share of this machine's cores among its
 * `local` ranks when the user set no BT_THREADS (bt_default_threads already
 * follows the process's CPU mask, which a launcher that binds narrows: the
 * smaller of the two). */
static int share_threads(int local) {
  const int d = bt_default_threads();
  if (local <= 1 || getenv("BT_THREADS")) return d;
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  const int share = online > 0 ? (int)(online / local) : 1;
  return d < share ? d : share > 1 ? share : 1;
}

#ifndef BT_HAVE_MPI

int bt_dist_has_mpi(void) { return 0; }

bt_status bt_dist_init(int *argc, char ***argv, bt_collective *c, int *active) {
  (void)argc, (void)argv;
  memset(c, 0, sizeof *c);
  c->ranks = 1;
  *active = 0;
  const int launched = bt_dist_launcher_size();
  if (launched != 0 && launched != 1) /* one process under a launcher is just one process */
    return bt_fail(BT_E_UNSUPPORTED, "started by an MPI launcher, but this blindtuner was built without MPI "
                                     "(install libopenmpi-dev and rebuild); every rank would train the whole job");
  return BT_OK;
}

void bt_dist_finalize(void) {}
void bt_dist_abort(int code) { (void)code; }
int bt_dist_default_threads(void) { return share_threads(1); }
bt_status bt_dist_bcast_i64(const bt_collective *c, int64_t *v, int n, int root) {
  (void)c, (void)v, (void)n, (void)root;
  return BT_OK;
}
bt_status bt_dist_max_f64(const bt_collective *c, double *v, int n) {
  (void)c, (void)v, (void)n;
  return BT_OK;
}
bt_status bt_dist_barrier(const bt_collective *c) {
  (void)c;
  return BT_OK;
}
void bt_dist_counters(double *seconds, uint64_t *bytes, uint64_t *sums) { *seconds = 0, *bytes = 0, *sums = 0; }

#else

int bt_dist_has_mpi(void) { return 1; }

static int mpi_running;
static int local_ranks = 1; /* ranks on this machine */
static MPI_Op op_modadd = MPI_OP_NULL;
/* The modulus of the limb being summed.  MPI gives a reduction no context,
 * and the library may cut one call's buffer into pieces, so each limb is its
 * own MPI_Allreduce and this names its prime (one thread calls MPI). */
static uint64_t limb_q;
/* bt_dist_counters */
static double sum_seconds;
static uint64_t sum_bytes, sum_calls;

static void modadd(void *in, void *inout, int *len, MPI_Datatype *type) {
  (void)type;
  const uint64_t *a = in, q = limb_q;
  uint64_t *b = inout;
  for (int i = 0; i < *len; i++) {
    const uint64_t s = a[i] + b[i]; /* both < q < 2^62: no overflow */
    b[i] = s >= q ? s - q : s;
  }
}

static bt_status mpi_failed(int rc, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
  return bt_fail(BT_E_IO, "%s failed: %s", what, msg);
}

#define MPI_TRY(call, what)                                  \
  do {                                                       \
    const int rc_ = (call);                                  \
    if (rc_ != MPI_SUCCESS) return mpi_failed(rc_, what);   \
  } while (0)

/* The metadata first: the ranks that contribute must agree on it, and those
 * that do not take it from them. */
static bt_status sum_limbs(bt_ciphertext *ct, int contributes);

static bt_status sum_ct(void *user, bt_ciphertext *ct, int contributes) {
  (void)user;
  const double t0 = bt_seconds();
  const bt_status st = sum_limbs(ct, contributes);
  sum_seconds += bt_seconds() - t0;
  sum_calls++;
  if (!st) sum_bytes += (uint64_t)(ct->degree + 1) * (uint64_t)(ct->level + 1) * bt_ckks_n(ct->params) * 8;
  return st;
}

static bt_status sum_limbs(bt_ciphertext *ct, int contributes) {
  int64_t scale_bits;
  memcpy(&scale_bits, &ct->scale, sizeof scale_bits); /* positive doubles order as their bits */
  const int64_t mine[4] = {ct->level, ct->degree, ct->logslots, scale_bits};
  int64_t m[8];
  for (int i = 0; i < 4; i++) {
    m[i] = contributes ? mine[i] : INT64_MIN;
    m[4 + i] = contributes ? -mine[i] : INT64_MIN;
  }
  MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, m, 8, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce (ciphertext shape)");
  if (m[0] == INT64_MIN) return bt_fail(BT_E_ARG, "ciphertext sum: no rank contributes");
  for (int i = 0; i < 4; i++)
    if (m[i] != -m[4 + i])
      return bt_fail(BT_E_LEVEL, "ciphertext sum: the ranks' ciphertexts differ in %s",
                     (const char *[]){"level", "degree", "slots", "scale"}[i]);
  const bt_ckks_params *p = ct->params;
  if (m[0] < 0 || m[0] > bt_ckks_max_level(p) || m[1] < 1 || m[1] > 2)
    return bt_fail(BT_E_LEVEL, "ciphertext sum: level %lld, degree %lld", (long long)m[0], (long long)m[1]);
  const size_t n = bt_ckks_n(p);
  if (!contributes) {
    ct->level = (int)m[0], ct->degree = (int)m[1], ct->logslots = (int)m[2];
    memcpy(&ct->scale, &m[3], sizeof ct->scale);
    for (int c = 0; c <= ct->degree; c++) memset(ct->c[c], 0, (size_t)(ct->level + 1) * n * sizeof(uint64_t));
  }
  ct->seeded = 0;
  for (int c = 0; c <= ct->degree; c++)
    for (int l = 0; l <= ct->level; l++) {
      limb_q = bt_ckks_q(p, l);
      MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, ct->c[c] + (size_t)l * n, (int)n, MPI_UINT64_T, op_modadd, MPI_COMM_WORLD),
              "MPI_Allreduce (ciphertext limb)");
    }
  return BT_OK;
}

static bt_status same(void *user, const uint8_t digest[32], int *all_same) {
  (void)user;
  uint64_t lo[4], hi[4];
  memcpy(lo, digest, sizeof lo);
  memcpy(hi, digest, sizeof hi);
  MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, lo, 4, MPI_UINT64_T, MPI_BAND, MPI_COMM_WORLD), "MPI_Allreduce (digest)");
  MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, hi, 4, MPI_UINT64_T, MPI_BOR, MPI_COMM_WORLD), "MPI_Allreduce (digest)");
  *all_same = memcmp(lo, hi, sizeof lo) == 0; /* AND = OR in every bit: all equal */
  return BT_OK;
}

static bt_status start(int *argc, char ***argv, bt_collective *c, int *active);

/* A failure once MPI runs ends every rank (the others would wait for this
 * one in their first collective call). */
bt_status bt_dist_init(int *argc, char ***argv, bt_collective *c, int *active) {
  const bt_status st = start(argc, argv, c, active);
  if (st && mpi_running) {
    fprintf(stderr, "blindtuner: %s (%s)\n", bt_last_error(), bt_status_name(st));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return st;
}

static bt_status start(int *argc, char ***argv, bt_collective *c, int *active) {
  memset(c, 0, sizeof *c);
  c->ranks = 1;
  *active = 0;
  const int launched = bt_dist_launcher_size();
  if (!launched) return BT_OK;
  int provided = 0, rank = 0, size = 1;
  /* OpenMP threads compute; only the main thread calls MPI */
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    return bt_fail(BT_E_IO, "MPI_Init_thread failed");
  mpi_running = 1;
  *active = 1;
  /* errors come back as codes: a failed call becomes a bt_status, and the
   * command that sees it ends the whole job with bt_dist_abort */
  MPI_TRY(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  if (provided < MPI_THREAD_FUNNELED)
    return bt_fail(BT_E_UNSUPPORTED, "this MPI gives thread level %d, funneled (%d) is needed", provided,
                   MPI_THREAD_FUNNELED);
  MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
  MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size");
  if (launched > 1 && size == 1)
    return bt_fail(BT_E_UNSUPPORTED, "the launcher started %d ranks, but this MPI sees one: blindtuner was built "
                                     "against another MPI than the launcher's", launched);
  MPI_TRY(MPI_Op_create(modadd, 1, &op_modadd), "MPI_Op_create");
  MPI_Comm node;
  MPI_TRY(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
  const int rc = MPI_Comm_size(node, &local_ranks);
  MPI_Comm_free(&node);
  if (rc != MPI_SUCCESS || local_ranks < 1) local_ranks = 1;
  *c = (bt_collective){.rank = rank, .ranks = size, .sum = sum_ct, .same = same};
  return BT_OK;
}

void bt_dist_counters(double *seconds, uint64_t *bytes, uint64_t *sums) {
  *seconds = sum_seconds, *bytes = sum_bytes, *sums = sum_calls;
}

int bt_dist_default_threads(void) { return share_threads(local_ranks); }

void bt_dist_finalize(void) {
  if (!mpi_running) return;
  if (op_modadd != MPI_OP_NULL) MPI_Op_free(&op_modadd);
  MPI_Finalize();
  mpi_running = 0;
}

void bt_dist_abort(int code) {
  if (mpi_running) MPI_Abort(MPI_COMM_WORLD, code);
}

bt_status bt_dist_bcast_i64(const bt_collective *c, int64_t *v, int n, int root) {
  if (!mpi_running || c->ranks < 2) return BT_OK;
  MPI_TRY(MPI_Bcast(v, n, MPI_INT64_T, root, MPI_COMM_WORLD), "MPI_Bcast");
  return BT_OK;
}

bt_status bt_dist_max_f64(const bt_collective *c, double *v, int n) {
  if (!mpi_running || c->ranks < 2) return BT_OK;
  MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce (maximum)");
  return BT_OK;
}

bt_status bt_dist_barrier(const bt_collective *c) {
  if (!mpi_running || c->ranks < 2) return BT_OK;
  MPI_TRY(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  return BT_OK;
}

#endif
