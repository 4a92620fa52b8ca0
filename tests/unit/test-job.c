/*
 * The job life cycle (block/job.c, block/job-complete.c): the transition
 * and verb tables against reference section 2.7, the event sequences of
 * success, failure, cancel (running, paused, pending, never started),
 * manual finalize and dismiss, transactions, pausing (before the start,
 * nested, out of a sleep), ready/standby/complete, progress, and
 * "exactly one of commit or abort, then clean" in every case through the
 * test driver's hook log.
 */
#include <errno.h>
#include <string.h>

#include "block/job-int.h"
#include "job-test-helpers.h"

static BlockDriverState *node;

/* Reference section 2.7, written out independently of block/job.c. */
static const char *const reference_transitions[] = {
    "undefined>created",
    "created>running", "created>aborting", "created>null",
    "running>paused", "running>ready", "running>waiting", "running>aborting",
    "paused>running",
    "ready>standby", "ready>waiting", "ready>aborting",
    "standby>ready",
    "waiting>pending", "waiting>aborting",
    "pending>aborting", "pending>concluded",
    "aborting>aborting", "aborting>concluded",
    "concluded>null",
    NULL,
};

static const char *const reference_verbs[JOB_VERB__MAX] = {
    [JOB_VERB_CANCEL] = "created running paused ready standby waiting pending",
    [JOB_VERB_PAUSE] = "created running paused ready standby",
    [JOB_VERB_RESUME] = "created running paused ready standby",
    [JOB_VERB_SET_SPEED] = "created running paused ready standby",
    [JOB_VERB_COMPLETE] = "ready standby",
    [JOB_VERB_FINALIZE] = "pending",
    [JOB_VERB_DISMISS] = "concluded",
};

static bool reference_verb_allowed(JobVerb verb, JobStatus s)
{
    g_auto(GStrv) states = g_strsplit(reference_verbs[verb], " ", -1);

    return g_strv_contains((const char *const *)states, JobStatus_str(s));
}

#define assert_statuses(id, expected)                                      \
    do {                                                                   \
        g_autofree char *got_ = job_test_statuses(id);                     \
        g_assert_cmpstr(got_, ==, expected);                               \
    } while (0)

#define assert_events(expected)                                            \
    do {                                                                   \
        g_autofree char *got_ = job_test_other_events();                   \
        g_assert_cmpstr(got_, ==, expected);                               \
    } while (0)

static bool job_busy(TestJob *t)
{
    BlockJobInfo *info = block_job_query(&t->common, &error_abort);
    bool busy = info->busy;

    qapi_free_BlockJobInfo(info);
    return busy;
}

static TestJob *started(const char *id, TestJobMode mode, JobTxn *txn, int flags)
{
    TestJob *t = test_block_job_new(id, mode, node, txn, flags, 0);

    job_start(&t->common.job);
    JOB_TEST_WAIT(g_atomic_int_get(&t->loops) > 0 || mode == TEST_JOB_READY);
    return t;
}

static void test_transition_table_is_qemus(void)
{
    JobStatus a, b;

    for (a = 0; a < JOB_STATUS__MAX; a++) {
        for (b = 0; b < JOB_STATUS__MAX; b++) {
            g_autofree char *pair = g_strdup_printf("%s>%s", JobStatus_str(a),
                                                    JobStatus_str(b));
            bool ref = g_strv_contains((const char *const *)reference_transitions,
                                       pair);

            g_assert_cmpint(job_transition_allowed(a, b), ==, ref);
        }
    }
}

static void test_verb_table_is_qemus(void)
{
    JobVerb v;
    JobStatus s;

    for (v = 0; v < JOB_VERB__MAX; v++) {
        for (s = 0; s < JOB_STATUS__MAX; s++) {
            g_assert_cmpint(job_verb_allowed(v, s), ==,
                            reference_verb_allowed(v, s));
        }
    }
}

/*
 * Every verb the table refuses in the job's current state fails with
 * QEMU's text and changes nothing. Resume first checks that the user
 * paused the job.
 */
static void check_refused_verbs(TestJob *t)
{
    Job *job = &t->common.job;
    JobStatus s = job_status(job);
    JobVerb v;

    for (v = 0; v < JOB_VERB__MAX; v++) {
        g_autofree char *want = NULL;
        Error *err = NULL;
        Job *j = job;
        bool ok = false;

        if (reference_verb_allowed(v, s)) {
            continue;
        }
        want = g_strdup_printf("Job '%s' in state '%s' cannot accept command "
                               "verb '%s'", job->id, JobStatus_str(s),
                               JobVerb_str(v));
        switch (v) {
        case JOB_VERB_CANCEL:
            ok = job_user_cancel(job, true, &err);
            break;
        case JOB_VERB_PAUSE:
            ok = job_user_pause(job, &err);
            break;
        case JOB_VERB_RESUME:
            ok = job_user_resume(job, &err);
            if (!job_user_paused(job)) {
                g_free(want);
                want = g_strdup("Can't resume a job that was not paused");
            }
            break;
        case JOB_VERB_SET_SPEED:
            ok = block_job_set_speed(&t->common, 1, &err);
            break;
        case JOB_VERB_COMPLETE:
            ok = job_complete(job, &err);
            break;
        case JOB_VERB_FINALIZE:
            ok = job_finalize(job, &err);
            break;
        case JOB_VERB_DISMISS:
            ok = job_dismiss(&j, &err);
            break;
        default:
            g_assert_not_reached();
        }
        g_assert_false(ok);
        g_assert_nonnull(err);
        g_assert_cmpstr(error_get_pretty(err), ==, want);
        g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
        error_free(err);
        g_assert_cmpint(job_status(job), ==, s);
    }
}

static void test_verbs_in_every_reachable_state(void)
{
    TestJob *created, *running, *ready, *a, *b, *pending, *late;
    Job *j;

    job_test_reset();
    created = test_block_job_new("created", TEST_JOB_LOOP, node, NULL, 0, 0);
    check_refused_verbs(created);
    job_cancel_sync(&created->common.job, true);

    running = started("running", TEST_JOB_LOOP, NULL, 0);
    check_refused_verbs(running);
    g_assert_true(job_user_pause(&running->common.job, &error_abort));
    JOB_TEST_WAIT(job_status(&running->common.job) == JOB_STATUS_PAUSED);
    check_refused_verbs(running);
    job_cancel_sync(&running->common.job, true);

    ready = started("ready", TEST_JOB_READY, NULL, 0);
    JOB_TEST_WAIT(job_status(&ready->common.job) == JOB_STATUS_READY);
    check_refused_verbs(ready);
    g_assert_true(job_user_pause(&ready->common.job, &error_abort));
    JOB_TEST_WAIT(job_status(&ready->common.job) == JOB_STATUS_STANDBY);
    check_refused_verbs(ready);
    job_cancel_sync(&ready->common.job, true);

    /* waiting: done, while the other job of its transaction runs */
    {
        JobTxn *txn = job_txn_new();

        a = started("a", TEST_JOB_LOOP, txn, 0);
        b = started("b", TEST_JOB_LOOP, txn, 0);
        job_txn_unref(txn);
    }
    g_atomic_int_set(&a->finish, 1);
    JOB_TEST_WAIT(job_status(&a->common.job) == JOB_STATUS_WAITING);
    check_refused_verbs(a);
    job_cancel_sync(&b->common.job, true);

    pending = started("pending", TEST_JOB_LOOP, NULL,
                      JOB_MANUAL_FINALIZE | JOB_MANUAL_DISMISS);
    g_atomic_int_set(&pending->finish, 1);
    JOB_TEST_WAIT(job_status(&pending->common.job) == JOB_STATUS_PENDING);
    check_refused_verbs(pending);
    g_assert_true(job_finalize(&pending->common.job, &error_abort));
    g_assert_cmpint(job_status(&pending->common.job), ==, JOB_STATUS_CONCLUDED);
    check_refused_verbs(pending);
    j = &pending->common.job;
    g_assert_true(job_dismiss(&j, &error_abort));
    g_assert_null(j);

    /* A pause that never took effect: resume meets the verb table. */
    late = test_block_job_new("late", TEST_JOB_STUBBORN, node, NULL,
                              JOB_MANUAL_DISMISS, 0);
    job_start(&late->common.job);
    JOB_TEST_WAIT(g_atomic_int_get(&late->loops) > 0);
    g_assert_true(job_user_pause(&late->common.job, &error_abort));
    g_atomic_int_set(&late->released, 1);
    JOB_TEST_WAIT(job_status(&late->common.job) == JOB_STATUS_CONCLUDED);
    g_assert_true(job_user_paused(&late->common.job));
    check_refused_verbs(late);
    j = &late->common.job;
    g_assert_true(job_dismiss(&j, &error_abort));
}

static void test_success_sequence(void)
{
    TestJob *t;
    json_t *ev;

    job_test_reset();
    t = started("j0", TEST_JOB_LOOP, NULL, 0);
    g_atomic_int_set(&t->finish, 1);
    JOB_TEST_WAIT(!job_get("j0"));
    assert_statuses("j0", "created,running,waiting,pending,concluded,null");
    assert_events("BLOCK_JOB_COMPLETED");
    ev = job_test_last_event("BLOCK_JOB_COMPLETED");
    g_assert_null(json_object_get(ev, "error"));
    g_assert_cmpint(json_integer_value(json_object_get(ev, "offset")), <=,
                    json_integer_value(json_object_get(ev, "len")));
    g_assert_cmpstr(test_job_log->str, ==, "j0:prepare j0:commit j0:clean");
}

static void test_failure_sequence(void)
{
    TestJob *t;
    json_t *ev;

    job_test_reset();
    t = started("j0", TEST_JOB_LOOP, NULL, 0);
    g_atomic_int_set(&t->fail, EIO);
    JOB_TEST_WAIT(!job_get("j0"));
    assert_statuses("j0", "created,running,aborting,concluded,null");
    assert_events("BLOCK_JOB_COMPLETED");
    ev = job_test_last_event("BLOCK_JOB_COMPLETED");
    g_assert_cmpstr(json_string_value(json_object_get(ev, "error")), ==,
                    "Input/output error");
    g_assert_cmpstr(test_job_log->str, ==, "j0:abort j0:clean");
}

static void test_failure_keeps_the_message_of_run(void)
{
    TestJob *t;
    JobInfo *info;
    Job *j;

    job_test_reset();
    t = started("j0", TEST_JOB_LOOP, NULL, JOB_MANUAL_DISMISS);
    g_atomic_int_set(&t->fail_with_message, 1);
    g_atomic_int_set(&t->fail, ENOSPC);
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_CONCLUDED);
    info = job_query(&t->common.job);
    g_assert_cmpstr(info->error, ==, "test failure 28");
    qapi_free_JobInfo(info);
    j = &t->common.job;
    job_dismiss(&j, &error_abort);
}

static void test_prepare_failure_aborts(void)
{
    TestJob *t;

    job_test_reset();
    t = started("j0", TEST_JOB_LOOP, NULL, 0);
    t->prepare_ret = -EIO;
    g_atomic_int_set(&t->finish, 1);
    JOB_TEST_WAIT(!job_get("j0"));
    assert_statuses("j0", "created,running,waiting,pending,aborting,concluded,null");
    g_assert_cmpstr(test_job_log->str, ==, "j0:prepare j0:abort j0:clean");
    g_assert_cmpstr(json_string_value(json_object_get(
        job_test_last_event("BLOCK_JOB_COMPLETED"), "error")), ==,
        "Input/output error");
}

static void test_cancel_running(void)
{
    TestJob *t;
    JobInfo *info;
    Job *j;

    job_test_reset();
    t = started("j0", TEST_JOB_LOOP, NULL, JOB_MANUAL_DISMISS);
    g_assert_true(job_user_cancel(&t->common.job, true, &error_abort));
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_CONCLUDED);
    assert_statuses("j0", "created,running,aborting,concluded");
    assert_events("BLOCK_JOB_CANCELLED");
    g_assert_cmpstr(test_job_log->str, ==, "j0:abort j0:clean");
    g_assert_cmpint(g_atomic_int_get(&t->cancel_hooks), ==, 1);
    info = job_query(&t->common.job);
    g_assert_cmpstr(info->error, ==, "Operation canceled");
    qapi_free_JobInfo(info);
    j = &t->common.job;
    g_assert_true(job_dismiss(&j, &error_abort));
    assert_statuses("j0", "created,running,aborting,concluded,null");
}

static void test_cancel_paused(void)
{
    TestJob *t;

    job_test_reset();
    t = started("j0", TEST_JOB_LOOP, NULL, 0);
    g_assert_true(job_user_pause(&t->common.job, &error_abort));
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_PAUSED);
    g_assert_true(job_user_cancel(&t->common.job, true, &error_abort));
    JOB_TEST_WAIT(!job_get("j0"));
    assert_statuses("j0", "created,running,paused,running,aborting,concluded,null");
    assert_events("BLOCK_JOB_CANCELLED");
    g_assert_cmpstr(test_job_log->str, ==, "j0:abort j0:clean");
}

static void test_cancel_pending(void)
{
    TestJob *t;

    job_test_reset();
    t = started("j0", TEST_JOB_LOOP, NULL, JOB_MANUAL_FINALIZE);
    g_atomic_int_set(&t->finish, 1);
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_PENDING);
    assert_events("BLOCK_JOB_PENDING");
    g_assert_true(job_user_cancel(&t->common.job, true, &error_abort));
    g_assert_null(job_get("j0"));
    assert_statuses("j0",
                    "created,running,waiting,pending,aborting,concluded,null");
    assert_events("BLOCK_JOB_PENDING,BLOCK_JOB_CANCELLED");
    g_assert_cmpstr(test_job_log->str, ==, "j0:abort j0:clean");
}

static void test_cancel_never_started(void)
{
    TestJob *t;

    job_test_reset();
    t = test_block_job_new("j0", TEST_JOB_LOOP, node, NULL, JOB_MANUAL_DISMISS, 0);
    g_assert_true(job_user_cancel(&t->common.job, true, &error_abort));
    /* Nothing to show for a job that never ran: gone at once, no event. */
    g_assert_null(job_get("j0"));
    assert_statuses("j0", "created,aborting,concluded,null");
    assert_events("");
    g_assert_cmpstr(test_job_log->str, ==, "j0:abort j0:clean");
}

static void test_manual_finalize_and_dismiss(void)
{
    TestJob *t;
    Job *j;

    job_test_reset();
    t = started("j0", TEST_JOB_LOOP, NULL, JOB_MANUAL_FINALIZE | JOB_MANUAL_DISMISS);
    g_atomic_int_set(&t->finish, 1);
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_PENDING);
    g_assert_cmpstr(test_job_log->str, ==, "");
    g_assert_true(job_finalize(&t->common.job, &error_abort));
    g_assert_cmpstr(test_job_log->str, ==, "j0:prepare j0:commit j0:clean");
    assert_statuses("j0", "created,running,waiting,pending,concluded");
    assert_events("BLOCK_JOB_PENDING,BLOCK_JOB_COMPLETED");
    /* Concluded stays listed until dismissed. */
    g_assert_true(job_get("j0") == &t->common.job);
    j = &t->common.job;
    g_assert_true(job_dismiss(&j, &error_abort));
    g_assert_null(job_get("j0"));
    assert_statuses("j0", "created,running,waiting,pending,concluded,null");
}

static void test_txn_waits_for_all_then_finalizes_all(void)
{
    JobTxn *txn = job_txn_new();
    TestJob *a, *b;

    job_test_reset();
    a = started("a", TEST_JOB_LOOP, txn, 0);
    b = started("b", TEST_JOB_LOOP, txn, 0);
    job_txn_unref(txn);
    g_atomic_int_set(&a->finish, 1);
    JOB_TEST_WAIT(job_status(&a->common.job) == JOB_STATUS_WAITING);
    g_usleep(20000);
    g_main_context_iteration(NULL, FALSE);
    g_assert_cmpint(job_status(&a->common.job), ==, JOB_STATUS_WAITING);
    g_assert_cmpstr(test_job_log->str, ==, "");
    g_atomic_int_set(&b->finish, 1);
    JOB_TEST_WAIT(!job_get("a") && !job_get("b"));
    assert_statuses("a", "created,running,waiting,pending,concluded,null");
    assert_statuses("b", "created,running,waiting,pending,concluded,null");
    /* QEMU's order: the transaction's jobs newest first, prepare all first. */
    g_assert_cmpstr(test_job_log->str, ==,
                    "b:prepare a:prepare b:commit b:clean a:commit a:clean");
}

static void test_txn_one_failing_cancels_the_others(void)
{
    JobTxn *txn = job_txn_new();
    TestJob *a, *b;

    job_test_reset();
    a = started("a", TEST_JOB_LOOP, txn, 0);
    b = started("b", TEST_JOB_LOOP, txn, 0);
    job_txn_unref(txn);
    job_ref(&a->common.job);
    g_atomic_int_set(&b->fail, EIO);
    JOB_TEST_WAIT(job_status(&a->common.job) == JOB_STATUS_NULL && !job_get("b"));
    assert_statuses("a", "created,running,aborting,concluded,null");
    assert_statuses("b", "created,running,aborting,concluded,null");
    assert_events("BLOCK_JOB_COMPLETED,BLOCK_JOB_CANCELLED");
    g_assert_cmpstr(json_string_value(json_object_get(
        job_test_last_event("BLOCK_JOB_COMPLETED"), "device")), ==, "b");
    g_assert_cmpstr(json_string_value(json_object_get(
        job_test_last_event("BLOCK_JOB_CANCELLED"), "device")), ==, "a");
    g_assert_cmpstr(test_job_log->str, ==, "b:abort b:clean a:abort a:clean");
    g_assert_cmpint(g_atomic_int_get(&a->cancel_hooks), ==, 1);
    job_unref(&a->common.job);
}

static void test_txn_failure_after_others_finished(void)
{
    JobTxn *txn = job_txn_new();
    TestJob *a, *b;

    job_test_reset();
    a = started("a", TEST_JOB_LOOP, txn, 0);
    b = started("b", TEST_JOB_LOOP, txn, 0);
    job_txn_unref(txn);
    g_atomic_int_set(&a->finish, 1);
    JOB_TEST_WAIT(job_status(&a->common.job) == JOB_STATUS_WAITING);
    g_atomic_int_set(&b->fail, EIO);
    JOB_TEST_WAIT(!job_get("a") && !job_get("b"));
    /* a succeeded, but its group failed: it aborts too. */
    assert_statuses("a", "created,running,waiting,aborting,concluded,null");
    g_assert_cmpstr(test_job_log->str, ==, "b:abort b:clean a:abort a:clean");
}

static void test_txn_finalize_one_finalizes_all(void)
{
    JobTxn *txn = job_txn_new();
    TestJob *a, *b;

    job_test_reset();
    a = started("a", TEST_JOB_LOOP, txn, JOB_MANUAL_FINALIZE);
    b = started("b", TEST_JOB_LOOP, txn, JOB_MANUAL_FINALIZE);
    job_txn_unref(txn);
    g_atomic_int_set(&a->finish, 1);
    g_atomic_int_set(&b->finish, 1);
    JOB_TEST_WAIT(job_status(&a->common.job) == JOB_STATUS_PENDING &&
                  job_status(&b->common.job) == JOB_STATUS_PENDING);
    g_assert_true(job_finalize(&a->common.job, &error_abort));
    g_assert_null(job_get("a"));
    g_assert_null(job_get("b"));
    g_assert_cmpstr(test_job_log->str, ==,
                    "b:prepare a:prepare b:commit b:clean a:commit a:clean");
}

static void test_pause_and_resume(void)
{
    TestJob *t;
    Error *err = NULL;
    int loops;

    job_test_reset();
    t = started("j0", TEST_JOB_LOOP, NULL, 0);
    g_assert_true(job_user_pause(&t->common.job, &error_abort));
    g_assert_cmpint(g_atomic_int_get(&t->pause_hooks), ==, 1);
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_PAUSED);
    g_assert_false(job_user_pause(&t->common.job, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Job is already paused");
    g_clear_pointer(&err, error_free);
    loops = g_atomic_int_get(&t->loops);
    g_usleep(20000);
    g_assert_cmpint(g_atomic_int_get(&t->loops), ==, loops);

    g_assert_true(job_user_resume(&t->common.job, &error_abort));
    g_assert_cmpint(g_atomic_int_get(&t->resume_hooks), ==, 1);
    JOB_TEST_WAIT(g_atomic_int_get(&t->loops) > loops);
    g_assert_false(job_user_resume(&t->common.job, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Can't resume a job that was not paused");
    error_free(err);
    assert_statuses("j0", "created,running,paused,running");
    job_cancel_sync(&t->common.job, true);
}

static void test_pause_before_start(void)
{
    TestJob *t;

    job_test_reset();
    t = test_block_job_new("j0", TEST_JOB_LOOP, node, NULL, 0, 0);
    g_assert_true(job_user_pause(&t->common.job, &error_abort));
    job_start(&t->common.job);
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_PAUSED);
    g_usleep(20000);
    /* Paused before run() did anything. */
    g_assert_cmpint(g_atomic_int_get(&t->loops), ==, 0);
    g_assert_true(job_user_resume(&t->common.job, &error_abort));
    JOB_TEST_WAIT(g_atomic_int_get(&t->loops) > 0);
    assert_statuses("j0", "created,running,paused,running");
    job_cancel_sync(&t->common.job, true);
}

static void test_nested_pauses(void)
{
    TestJob *t;
    int loops;

    job_test_reset();
    t = started("j0", TEST_JOB_LOOP, NULL, 0);
    job_pause(&t->common.job);
    g_assert_true(job_user_pause(&t->common.job, &error_abort));
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_PAUSED);
    g_assert_true(job_user_resume(&t->common.job, &error_abort));
    loops = g_atomic_int_get(&t->loops);
    g_usleep(20000);
    g_main_context_iteration(NULL, FALSE);
    /* The internal pause still holds. */
    g_assert_cmpint(job_status(&t->common.job), ==, JOB_STATUS_PAUSED);
    g_assert_cmpint(g_atomic_int_get(&t->loops), ==, loops);
    job_resume(&t->common.job);
    JOB_TEST_WAIT(g_atomic_int_get(&t->loops) > loops);
    assert_statuses("j0", "created,running,paused,running");
    job_cancel_sync(&t->common.job, true);
}

static void test_sleep_is_interrupted_by_pause_and_cancel(void)
{
    TestJob *t;
    gint64 start;

    job_test_reset();
    t = test_block_job_new("j0", TEST_JOB_LOOP, node, NULL, 0, 0);
    t->sleep_ns = 60 * G_USEC_PER_SEC * 1000LL;
    job_start(&t->common.job);
    JOB_TEST_WAIT(g_atomic_int_get(&t->loops) == 1);
    start = g_get_monotonic_time();
    g_assert_true(job_user_pause(&t->common.job, &error_abort));
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_PAUSED);
    g_assert_true(job_user_resume(&t->common.job, &error_abort));
    /* A resumed job that was woken from its sleep runs on. */
    JOB_TEST_WAIT(g_atomic_int_get(&t->loops) == 2);
    g_assert_true(job_user_cancel(&t->common.job, true, &error_abort));
    JOB_TEST_WAIT(!job_get("j0"));
    g_assert_cmpint(g_get_monotonic_time() - start, <, 5 * G_USEC_PER_SEC);
    assert_statuses("j0", "created,running,paused,running,aborting,concluded,null");
}

static void test_yield_until_cancelled(void)
{
    TestJob *t;

    job_test_reset();
    t = started("j0", TEST_JOB_YIELD, NULL, 0);
    JOB_TEST_WAIT(!job_busy(t));
    /* job_enter() ends one wait; the job waits again. */
    job_enter(&t->common.job);
    JOB_TEST_WAIT(g_atomic_int_get(&t->loops) == 2);
    g_assert_true(job_user_cancel(&t->common.job, true, &error_abort));
    JOB_TEST_WAIT(!job_get("j0"));
    assert_events("BLOCK_JOB_CANCELLED");
}

static void test_ready_standby_complete(void)
{
    TestJob *t;
    Error *err = NULL;

    job_test_reset();
    t = started("j0", TEST_JOB_READY, NULL, 0);
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_READY);
    g_assert_true(job_is_ready(&t->common.job));
    assert_events("BLOCK_JOB_READY");
    g_assert_true(job_user_pause(&t->common.job, &error_abort));
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_STANDBY);
    g_assert_true(job_user_resume(&t->common.job, &error_abort));
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_READY);
    g_assert_true(job_complete(&t->common.job, &err));
    JOB_TEST_WAIT(!job_get("j0"));
    assert_statuses("j0", "created,running,ready,standby,ready,waiting,"
                    "pending,concluded,null");
    assert_events("BLOCK_JOB_READY,BLOCK_JOB_COMPLETED");
    g_assert_cmpstr(test_job_log->str, ==, "j0:prepare j0:commit j0:clean");
}

static void test_complete_refused_without_hook(void)
{
    static BlockJobDriver no_complete;
    TestJob *t;
    Error *err = NULL;

    job_test_reset();
    no_complete = test_job_driver;
    no_complete.job_driver.complete = NULL;
    t = block_job_create("j0", &no_complete, NULL, node, 0, BLK_PERM_ALL, 0, 0,
                         &error_abort);
    t->mode = TEST_JOB_READY;
    t->sleep_ns = 1000000;
    t->action = -1;
    job_start(&t->common.job);
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_READY);
    g_assert_false(job_complete(&t->common.job, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "The active block job 'j0' cannot be completed");
    error_free(err);
    job_cancel_sync(&t->common.job, true);
}

static void test_progress(void)
{
    TestJob *t;
    JobInfo *info;

    job_test_reset();
    t = test_block_job_new("j0", TEST_JOB_LOOP, node, NULL, 0, 0);
    job_progress_set_remaining(&t->common.job, 1000);
    job_progress_update(&t->common.job, 300);
    job_progress_set_remaining(&t->common.job, 500);
    job_progress_increase_remaining(&t->common.job, 10);
    info = job_query(&t->common.job);
    g_assert_cmpint(info->current_progress, ==, 300);
    g_assert_cmpint(info->total_progress, ==, 810);
    g_assert_cmpint(info->type, ==, JOB_TYPE_BACKUP);
    g_assert_cmpint(info->status, ==, JOB_STATUS_CREATED);
    g_assert_null(info->error);
    qapi_free_JobInfo(info);
    job_early_fail(&t->common.job);
    assert_statuses("j0", "created,null");
}

static void test_create_checks_ids(void)
{
    static const char *const bad[] = { "", "1a", "-a", "a b", "a/b", "a:b", "é" };
    TestJob *t;
    Error *err = NULL;
    size_t i;

    job_test_reset();
    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *want = g_strdup_printf("Invalid job ID '%s'", bad[i]);

        g_assert_null(job_create(bad[i], &test_job_driver.job_driver, NULL, 0, &err));
        g_assert_cmpstr(error_get_pretty(err), ==, want);
        g_clear_pointer(&err, error_free);
    }
    /* A block job without ID gets the node's device name, which is empty. */
    g_assert_null(block_job_create(NULL, &test_job_driver, NULL, node, 0,
                                   BLK_PERM_ALL, 0, 0, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Invalid job ID ''");
    g_clear_pointer(&err, error_free);
    g_assert_null(job_create(NULL, &test_job_driver.job_driver, NULL, 0, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "An explicit job ID is required");
    g_clear_pointer(&err, error_free);
    g_assert_null(job_create("x", &test_job_driver.job_driver, NULL,
                             JOB_INTERNAL, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Cannot specify job ID for internal job");
    g_clear_pointer(&err, error_free);

    t = test_job_new("Az0-._", TEST_JOB_LOOP, NULL, 0);
    g_assert_null(job_create("Az0-._", &test_job_driver.job_driver, NULL, 0, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Job ID 'Az0-._' already in use");
    g_clear_pointer(&err, error_free);
    job_early_fail(&t->common.job);
    assert_events("");
}

static void test_internal_job_sends_no_events(void)
{
    TestJob *t;

    job_test_reset();
    t = test_job_new(NULL, TEST_JOB_LOOP, NULL, JOB_INTERNAL);
    g_assert_true(job_is_internal(&t->common.job));
    job_start(&t->common.job);
    JOB_TEST_WAIT(g_atomic_int_get(&t->loops) > 0);
    g_atomic_int_set(&t->finish, 1);
    JOB_TEST_WAIT(!job_next(NULL));
    assert_statuses(NULL, "");
    assert_events("");
    g_assert_cmpstr(test_job_log->str, ==,
                    "internal:prepare internal:commit internal:clean");
}

static void test_plain_job_sends_no_block_events(void)
{
    TestJob *t;

    job_test_reset();
    t = test_job_new("j0", TEST_JOB_LOOP, NULL, 0);
    job_start(&t->common.job);
    g_atomic_int_set(&t->finish, 1);
    JOB_TEST_WAIT(!job_get("j0"));
    assert_statuses("j0", "created,running,waiting,pending,concluded,null");
    assert_events("");
}

static void test_call_main_runs_on_main_thread(void)
{
    TestJob *t;

    job_test_reset();
    t = started("j0", TEST_JOB_CALL_MAIN, NULL, 0);
    g_assert_cmpint(g_atomic_int_get(&t->called_on_main), ==, 1);
    job_cancel_sync(&t->common.job, true);

    /* Served while the main thread waits for the job, too. */
    t = test_block_job_new("j1", TEST_JOB_CALL_MAIN, node, NULL, 0, 0);
    job_ref(&t->common.job);
    job_start(&t->common.job);
    job_cancel_sync(&t->common.job, true);
    g_assert_cmpint(g_atomic_int_get(&t->called_on_main), ==, 1);
    job_unref(&t->common.job);
}

static void test_cancel_sync_all(void)
{
    TestJob *paused, *pending, *concluded;
    Job *j;

    job_test_reset();
    started("running", TEST_JOB_LOOP, NULL, 0);
    test_block_job_new("created", TEST_JOB_LOOP, node, NULL, 0, 0);
    paused = started("paused", TEST_JOB_LOOP, NULL, 0);
    job_user_pause(&paused->common.job, &error_abort);
    pending = started("pending", TEST_JOB_LOOP, NULL, JOB_MANUAL_FINALIZE);
    g_atomic_int_set(&pending->finish, 1);
    concluded = started("concluded", TEST_JOB_LOOP, NULL, JOB_MANUAL_DISMISS);
    g_atomic_int_set(&concluded->finish, 1);
    JOB_TEST_WAIT(job_status(&pending->common.job) == JOB_STATUS_PENDING &&
                  job_status(&concluded->common.job) == JOB_STATUS_CONCLUDED);
    g_assert_true(job_cancel_sync_all(5000));
    g_assert_null(job_next(NULL));
    assert_statuses("concluded", "created,running,waiting,pending,concluded,null");

    /* A thread that ignores the cancel: bounded, then retried. */
    job_test_reset();
    concluded = started("stubborn", TEST_JOB_STUBBORN, NULL, 0);
    g_assert_false(job_cancel_sync_all(50));
    j = job_get("stubborn");
    g_assert_nonnull(j);
    g_atomic_int_set(&concluded->released, 1);
    g_assert_true(job_cancel_sync_all(5000));
    g_assert_null(job_next(NULL));
}

int main(int argc, char **argv)
{
    int ret;

    job_test_init(&argc, &argv);
    node = block_test_open("{\"driver\": \"null-co\", \"node-name\": \"n0\"}",
                           &error_abort);
    g_test_add_func("/job/transition-table-is-qemus", test_transition_table_is_qemus);
    g_test_add_func("/job/verb-table-is-qemus", test_verb_table_is_qemus);
    g_test_add_func("/job/verbs-in-every-reachable-state",
                    test_verbs_in_every_reachable_state);
    g_test_add_func("/job/success-sequence", test_success_sequence);
    g_test_add_func("/job/failure-sequence", test_failure_sequence);
    g_test_add_func("/job/failure-keeps-the-message-of-run",
                    test_failure_keeps_the_message_of_run);
    g_test_add_func("/job/prepare-failure-aborts", test_prepare_failure_aborts);
    g_test_add_func("/job/cancel-running", test_cancel_running);
    g_test_add_func("/job/cancel-paused", test_cancel_paused);
    g_test_add_func("/job/cancel-pending", test_cancel_pending);
    g_test_add_func("/job/cancel-never-started", test_cancel_never_started);
    g_test_add_func("/job/manual-finalize-and-dismiss",
                    test_manual_finalize_and_dismiss);
    g_test_add_func("/job/txn-waits-for-all-then-finalizes-all",
                    test_txn_waits_for_all_then_finalizes_all);
    g_test_add_func("/job/txn-one-failing-cancels-the-others",
                    test_txn_one_failing_cancels_the_others);
    g_test_add_func("/job/txn-failure-after-others-finished",
                    test_txn_failure_after_others_finished);
    g_test_add_func("/job/txn-finalize-one-finalizes-all",
                    test_txn_finalize_one_finalizes_all);
    g_test_add_func("/job/pause-and-resume", test_pause_and_resume);
    g_test_add_func("/job/pause-before-start", test_pause_before_start);
    g_test_add_func("/job/nested-pauses", test_nested_pauses);
    g_test_add_func("/job/sleep-is-interrupted-by-pause-and-cancel",
                    test_sleep_is_interrupted_by_pause_and_cancel);
    g_test_add_func("/job/yield-until-cancelled", test_yield_until_cancelled);
    g_test_add_func("/job/ready-standby-complete", test_ready_standby_complete);
    g_test_add_func("/job/complete-refused-without-hook",
                    test_complete_refused_without_hook);
    g_test_add_func("/job/progress", test_progress);
    g_test_add_func("/job/create-checks-ids", test_create_checks_ids);
    g_test_add_func("/job/internal-job-sends-no-events",
                    test_internal_job_sends_no_events);
    g_test_add_func("/job/plain-job-sends-no-block-events",
                    test_plain_job_sends_no_block_events);
    g_test_add_func("/job/call-main-runs-on-main-thread",
                    test_call_main_runs_on_main_thread);
    g_test_add_func("/job/cancel-sync-all", test_cancel_sync_all);
    ret = block_test_run();
    bdrv_close_all();
    return ret;
}
