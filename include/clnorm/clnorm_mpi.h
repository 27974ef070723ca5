/*
 * clnorm_mpi: batch normalization synchronized across MPI processes (SyncBatchNorm), on
 * clnorm's statistics primitives (clnorm_moments, clnorm_backward_sums and their merges).
 *
 * Each rank's plan describes its own part of the batch: the same kind, layout, dtype, y_dtype,
 * c, d, groups, eps and momentum on every rank; n may differ, and may be 0. Every rank of comm
 * must make the same call (forward or backward, same mode, running statistics given on every
 * rank or on none).
 *
 * CLNORM_BATCH: statistics over every rank's N*D values per channel. Forward normalizes each
 * rank's x with them, writes them to save_mean / save_invstd and updates the running statistics
 * from them (the variance unbiased with the global count) on every rank; INFERENCE with running
 * statistics needs no exchange. Backward's dx flows through the global statistics: save_mean
 * and save_invstd from the synchronized forward are required, except in INFERENCE with running
 * statistics, which are then the constants; dgamma / dbeta are the global sums. Other kinds
 * normalize per sample: their calls equal the local ones.
 *
 * The exchange is MPI_Allgather of each rank's moments (3*C floats) or sums (2*C floats),
 * merged on every rank in rank order: save_*, running statistics, dgamma and dbeta are the same
 * bits on every rank (given devices that compute alike) and from run to run, whatever the MPI
 * library's reduction trees. (MPI_Allreduce with a user operation fixes no order.)
 *
 * These calls block for the exchange: they wait for the local moments or sums, exchange them,
 * and return once the rest is enqueued (done as for clnorm_forward). A rank whose arguments are
 * refused (a NULL plan too), whose plan differs from rank 0's, or that calls forward where
 * another calls backward, makes the call return an error on every rank (its own status on
 * that rank, CLNORM_ERROR_INVALID_ARGUMENT on the others, with the rank and the reason in
 * last_error), never a hang; so does a rank that fails to compute its moments or sums. The
 * checks before the exchanges also build what the rest needs (clnorm_forward_check with
 * given = 1), so that after them only an OpenCL failure can refuse the rest, on its own rank.
 * MPI not initialized, or comm MPI_COMM_NULL: CLNORM_ERROR_INVALID_ARGUMENT (a rank whose
 * comm is unusable cannot tell the others).
 */
#ifndef CLNORM_CLNORM_MPI_H
#define CLNORM_CLNORM_MPI_H

#include <clnorm/clnorm.h>
#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

CLNORM_API clnorm_status clnorm_mpi_forward(clnorm_plan *plan, MPI_Comm comm, clnorm_mode mode,
                                            const clnorm_buffers *bufs, cl_uint num_wait,
                                            const cl_event *wait, cl_event *done);
CLNORM_API clnorm_status clnorm_mpi_backward(clnorm_plan *plan, MPI_Comm comm,
                                             clnorm_mode mode, const clnorm_buffers *bufs,
                                             cl_uint num_wait, const cl_event *wait,
                                             cl_event *done);

#ifdef __cplusplus
}
#endif

#endif /* CLNORM_CLNORM_MPI_H */
