/* What the job tests share; see job-test-helpers.h. */
#include <errno.h>
#include <string.h>

#include "job-test-helpers.h"
#include "util/main-loop.h"

GString *test_job_log;

void job_test_init(int *argc, char ***argv)
{
    block_test_init(argc, argv);
    test_job_log = g_string_new("");
}

void job_test_reset(void)
{
    g_assert_null(job_next(NULL));
    g_mutex_lock(&block_test_events_lock);
    g_ptr_array_set_size(block_test_events, 0);
    g_mutex_unlock(&block_test_events_lock);
    g_string_truncate(test_job_log, 0);
}

static const char *event_str(json_t *ev, const char *key)
{
    return json_string_value(json_object_get(json_object_get(ev, "data"), key));
}

char *job_test_statuses(const char *id)
{
    GString *out = g_string_new("");
    guint i;

    g_mutex_lock(&block_test_events_lock);
    for (i = 0; i < block_test_events->len; i++) {
        json_t *ev = g_ptr_array_index(block_test_events, i);

        if (!strcmp(json_string_value(json_object_get(ev, "event")),
                    "JOB_STATUS_CHANGE") &&
            !g_strcmp0(event_str(ev, "id"), id)) {
            g_string_append_printf(out, "%s%s", out->len ? "," : "",
                                   event_str(ev, "status"));
        }
    }
    g_mutex_unlock(&block_test_events_lock);
    return g_string_free(out, FALSE);
}

char *job_test_other_events(void)
{
    GString *out = g_string_new("");
    guint i;

    g_mutex_lock(&block_test_events_lock);
    for (i = 0; i < block_test_events->len; i++) {
        const char *name = json_string_value(
            json_object_get(g_ptr_array_index(block_test_events, i), "event"));

        if (strcmp(name, "JOB_STATUS_CHANGE")) {
            g_string_append_printf(out, "%s%s", out->len ? "," : "", name);
        }
    }
    g_mutex_unlock(&block_test_events_lock);
    return g_string_free(out, FALSE);
}

json_t *job_test_last_event(const char *name)
{
    json_t *found = NULL;
    guint i;

    g_mutex_lock(&block_test_events_lock);
    for (i = 0; i < block_test_events->len; i++) {
        json_t *ev = g_ptr_array_index(block_test_events, i);

        if (!strcmp(json_string_value(json_object_get(ev, "event")), name)) {
            found = json_object_get(ev, "data");
        }
    }
    g_mutex_unlock(&block_test_events_lock);
    return found;
}

/* ---- the test driver -------------------------------------------------- */

static void test_job_main_fn(void *opaque)
{
    TestJob *t = opaque;

    g_atomic_int_set(&t->called_on_main, main_loop_is_main_thread());
}

static int test_job_run(Job *job, Error **errp)
{
    TestJob *t = (TestJob *)job;
    BlockJob *bjob = &t->common;
    int fail;

    job_progress_set_remaining(job, 100 * t->chunk);
    if (t->mode == TEST_JOB_READY) {
        job_transition_to_ready(job);
    }
    if (t->mode == TEST_JOB_CALL_MAIN) {
        job_call_main(test_job_main_fn, t);
    }
    if (t->mode == TEST_JOB_IO_ERROR) {
        t->action = block_job_error_action(bjob, t->on_err, t->err_is_read,
                                           t->err_errno);
        if (t->action == BLOCK_ERROR_ACTION_REPORT) {
            return -t->err_errno;
        }
        job_pause_point(job);
    }
    if (t->mode == TEST_JOB_STUBBORN) {
        g_atomic_int_inc(&t->loops);
        while (!g_atomic_int_get(&t->released)) {
            g_usleep(1000);
        }
        return 0;
    }
    while (!job_is_cancelled(job)) {
        fail = g_atomic_int_get(&t->fail);
        if (fail) {
            if (g_atomic_int_get(&t->fail_with_message)) {
                error_setg(errp, "test failure %d", fail);
            }
            return -fail;
        }
        if (g_atomic_int_get(&t->finish)) {
            break;
        }
        g_atomic_int_inc(&t->loops);
        job_progress_update(job, t->chunk);
        if (t->mode == TEST_JOB_YIELD) {
            job_yield(job);
        } else if (t->mode == TEST_JOB_RATELIMITED) {
            block_job_ratelimit_processed_bytes(bjob, t->chunk);
            block_job_ratelimit_sleep(bjob);
        } else {
            job_sleep_ns(job, t->sleep_ns);
        }
    }
    return 0;
}

static void test_job_logf(Job *job, const char *what)
{
    g_assert(main_loop_is_main_thread());
    g_string_append_printf(test_job_log, "%s%s:%s", test_job_log->len ? " " : "",
                           job->id ? job->id : "internal", what);
}

static int test_job_prepare(Job *job)
{
    test_job_logf(job, "prepare");
    return ((TestJob *)job)->prepare_ret;
}

static void test_job_commit(Job *job)
{
    test_job_logf(job, "commit");
}

static void test_job_abort(Job *job)
{
    test_job_logf(job, "abort");
}

static void test_job_clean(Job *job)
{
    test_job_logf(job, "clean");
}

static void test_job_pause(Job *job)
{
    g_atomic_int_inc(&((TestJob *)job)->pause_hooks);
}

static void test_job_resume(Job *job)
{
    g_atomic_int_inc(&((TestJob *)job)->resume_hooks);
}

static bool test_job_cancel(Job *job, bool force)
{
    g_atomic_int_inc(&((TestJob *)job)->cancel_hooks);
    return true;
}

static void test_job_complete(Job *job, Error **errp)
{
    g_atomic_int_set(&((TestJob *)job)->finish, 1);
}

const BlockJobDriver test_job_driver = {
    .job_driver = {
        .instance_size = sizeof(TestJob),
        .job_type = JOB_TYPE_BACKUP,
        .run = test_job_run,
        .prepare = test_job_prepare,
        .commit = test_job_commit,
        .abort = test_job_abort,
        .clean = test_job_clean,
        .pause = test_job_pause,
        .resume = test_job_resume,
        .cancel = test_job_cancel,
        .complete = test_job_complete,
    },
};

static void test_job_init_fields(TestJob *t, TestJobMode mode)
{
    t->mode = mode;
    t->sleep_ns = 1000000;
    t->chunk = 65536;
    t->action = -1;
}

TestJob *test_job_new(const char *id, TestJobMode mode, JobTxn *txn, int flags)
{
    TestJob *t = job_create(id, &test_job_driver.job_driver, txn, flags,
                            &error_abort);

    test_job_init_fields(t, mode);
    return t;
}

TestJob *test_block_job_new(const char *id, TestJobMode mode, BlockDriverState *bs,
                            JobTxn *txn, int flags, int64_t speed)
{
    TestJob *t = block_job_create(id, &test_job_driver, txn, bs,
                                  BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL,
                                  speed, flags, &error_abort);

    test_job_init_fields(t, mode);
    return t;
}
