/* dist: data-parallel training across processes and machines on MPI, above
 * pipeline (docs/SCALING.md).
 *
 * `mpirun -np K blindtuner train ...` starts K ranks.  Each loads the
 * evaluation bundle and its share of the encrypted datasets (the batches
 * k with k % K == rank), computes its batch's gradient ciphertext, and the
 * gradients are summed over the ranks by MPI_Allreduce with a modular-add
 * operation on each RNS limb (exact in the ring).  Every rank then applies
 * the same Nesterov update and bootstraps the same ciphertext
 * deterministically, so the models stay byte-identical without a broadcast;
 * a digest of the model is compared across the ranks after every epoch.
 *
 * The layer gives the pipeline its bt_collective.  Built with MPI when the
 * build finds it (BT_HAVE_MPI); without, bt_dist_init gives one process and
 * refuses to run under an MPI launcher, so K copies of a non-MPI build never
 * train the same job side by side.  Part of libblindtuner.so (whose users
 * then load libmpi, without starting it unless they call bt_dist_init
 * under a launcher), not of libblindtuner.a; installed as its own archive
 * too. */
#ifndef BLINDTUNER_DIST_H
#define BLINDTUNER_DIST_H

#include "blindtuner/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this build has MPI. */
BT_API int bt_dist_has_mpi(void);
/* 1 when the environment says an MPI launcher (mpirun, mpiexec, srun with
 * PMI) started this process. */
BT_API int bt_dist_launched(void);
/* The launcher's world size from the environment: 0 not launched, -1
 * launched but the size is not in the environment. */
BT_API int bt_dist_launcher_size(void);

/* Starts MPI when the process was launched by an MPI launcher and fills *c
 * with this rank's collective; otherwise *c is one rank (c->ranks = 1) and
 * *active 0, and nothing is started.  *active = 1 means MPI runs: call
 * bt_dist_finalize at the end, bt_dist_abort on an error that the other
 * ranks cannot see (they would wait for it forever).  Refused
 * (BT_E_UNSUPPORTED) under a launcher when the build lacks MPI; a failure
 * after MPI started (thread level, a launcher of another MPI) ends every
 * rank with MPI_Abort after printing it. */
BT_API bt_status bt_dist_init(int *argc, char ***argv, bt_collective *c, int *active) BT_MUST_CHECK;
BT_API void bt_dist_finalize(void);
/* Threads for one rank when the user names none: BT_THREADS when set;
 * else this machine's cores shared among its ranks (MPI_COMM_TYPE_SHARED
 * after bt_dist_init), at most the CPUs the launcher bound the rank to, at
 * least 1; without MPI, bt_default_threads. */
BT_API int bt_dist_default_threads(void);
/* Ends every rank of the job with `code` (MPI_Abort); returns only when MPI
 * is not running. */
BT_API void bt_dist_abort(int code);
/* The value of rank `root` on every rank (n integers). */
BT_API bt_status bt_dist_bcast_i64(const bt_collective *c, int64_t *v, int n, int root) BT_MUST_CHECK;
/* The largest of n doubles over the ranks (per-rank figures: peak memory). */
BT_API bt_status bt_dist_max_f64(const bt_collective *c, double *v, int n) BT_MUST_CHECK;
/* What the ciphertext sums cost this rank so far: seconds inside them
 * (waiting for the slowest rank included), bytes of limbs reduced (this
 * rank's buffer; the wire carries about twice that in a ring all-reduce)
 * and the number of sums.  Zeros without MPI. */
BT_API void bt_dist_counters(double *seconds, uint64_t *bytes, uint64_t *sums);
/* Waits until every rank gets here. */
BT_API bt_status bt_dist_barrier(const bt_collective *c) BT_MUST_CHECK;

#ifdef __cplusplus
}
#endif
#endif
