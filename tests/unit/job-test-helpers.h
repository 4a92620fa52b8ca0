/*
 * What the job tests share: the events the jobs emit (as
 * block-test-helpers records them), a test job driver whose run()
 * can loop, sleep, yield, become ready, fail, hit an I/O error or ignore a
 * cancel on demand, and a log of its completion hooks.
 */
#ifndef JOB_TEST_HELPERS_H
#define JOB_TEST_HELPERS_H

#include <jansson.h>

#include "block-test-helpers.h"
#include "block/blockjob.h"

/* Runs the main loop until expr is true; fails after 10 s. */
#define JOB_TEST_WAIT(expr)                                                 \
    do {                                                                    \
        gint64 end_ = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;         \
        while (!(expr)) {                                                   \
            g_assert_cmpint(g_get_monotonic_time(), <, end_);               \
            if (!g_main_context_iteration(NULL, FALSE)) {                   \
                g_usleep(200);                                              \
            }                                                               \
        }                                                                   \
    } while (0)

typedef enum TestJobMode {
    TEST_JOB_LOOP,          /* progress, job_sleep_ns(), until told to stop */
    TEST_JOB_RATELIMITED,   /* progress through the block job's rate limit */
    TEST_JOB_READY,         /* becomes ready at once; job-complete finishes */
    TEST_JOB_YIELD,         /* job_yield() until cancelled (sync=none) */
    TEST_JOB_STUBBORN,      /* ignores cancel until released */
    TEST_JOB_IO_ERROR,      /* one I/O error under its policy, then loops */
    TEST_JOB_CALL_MAIN,     /* job_call_main() once, then loops */
} TestJobMode;

typedef struct TestJob {
    BlockJob common;        /* a plain Job too when made by job_create() */
    TestJobMode mode;
    int64_t sleep_ns;       /* per loop; default 1 ms */
    uint64_t chunk;         /* progress per loop */
    int prepare_ret;        /* prepare's result */
    /* I/O error mode */
    BlockdevOnError on_err;
    int err_errno;
    bool err_is_read;
    int action;             /* what block_job_error_action() returned, or -1 */
    /* set by the test (atomically), read by run() */
    gint finish;            /* return 0 */
    gint fail;              /* return -fail */
    gint fail_with_message; /* ... and set errp */
    gint released;          /* TEST_JOB_STUBBORN may return */
    /* counted by run() and the hooks */
    gint loops;
    gint pause_hooks, resume_hooks, cancel_hooks;
    gint called_on_main;    /* job_call_main ran fn on the main thread */
} TestJob;

extern const BlockJobDriver test_job_driver;

/* Hook log: "j0:prepare j0:commit j0:clean", in call order (main thread). */
extern GString *test_job_log;

/* g_test_init, the main loop, the scratch directory. */
void job_test_init(int *argc, char ***argv);
/* Empties the event list and the hook log. */
void job_test_reset(void);
/* Statuses of JOB_STATUS_CHANGE for id in order: "created,running,...". */
char *job_test_statuses(const char *id);
/* Names of the other events, in order: "BLOCK_JOB_COMPLETED,...". */
char *job_test_other_events(void);
/* The data of the last event of that name, or NULL (borrowed). */
json_t *job_test_last_event(const char *name);

/* A plain (not block) test job, created and not started. */
TestJob *test_job_new(const char *id, TestJobMode mode, JobTxn *txn, int flags);
/* A block test job on bs with all permissions shared. */
TestJob *test_block_job_new(const char *id, TestJobMode mode, BlockDriverState *bs,
                            JobTxn *txn, int flags, int64_t speed);

#endif
