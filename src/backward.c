/* clnorm_backward: gradients through the normalization (see DESIGN.md section 1). */
#include "internal.h"

clnorm_status clnorm_backward(clnorm_plan *plan, clnorm_mode mode, const clnorm_buffers *bufs,
                              cl_uint num_wait, const cl_event *wait, cl_event *done)
{
    (void)mode;
    (void)bufs;
    (void)num_wait;
    (void)wait;
    if (done)
        *done = NULL;
    if (!plan)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT, "plan: NULL");
    return clnorm_fail(plan->ctx, CLNORM_ERROR_UNSUPPORTED, "clnorm_backward: not implemented yet");
}
