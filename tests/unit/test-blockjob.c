/*
 * Block jobs (block/blockjob.c) and the QMP handlers of jobs: the
 * BLOCK_JOB_* events and their members, query-block-jobs, the speed and
 * the rate limiter, error policies, the nodes a job holds, the QMP texts
 * and classes, and blockdev-create's file branch.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "job-test-helpers.h"
#include "qapi-commands.h"

static BlockDriverState *node;

static TestJob *started(const char *id, TestJobMode mode, int flags, int64_t speed)
{
    TestJob *t = test_block_job_new(id, mode, node, NULL, flags, speed);

    job_start(&t->common.job);
    JOB_TEST_WAIT(g_atomic_int_get(&t->loops) > 0 || mode == TEST_JOB_IO_ERROR);
    return t;
}

static BlockJobInfo *query(TestJob *t)
{
    return block_job_query(&t->common, &error_abort);
}

static void assert_members(json_t *data, const char *members)
{
    g_auto(GStrv) want = g_strsplit(members, ",", -1);
    const char *key;
    json_t *v;
    size_t n = 0;

    g_assert_nonnull(data);
    json_object_foreach(data, key, v) {
        g_assert_true(g_strv_contains((const char *const *)want, key));
        n++;
    }
    g_assert_cmpuint(n, ==, g_strv_length(want));
}

static const char *str_member(json_t *data, const char *key)
{
    return json_string_value(json_object_get(data, key));
}

static void test_events_have_qemus_members(void)
{
    TestJob *t;
    json_t *ev;

    job_test_reset();
    t = started("j0", TEST_JOB_READY, JOB_MANUAL_FINALIZE, 0);
    JOB_TEST_WAIT(job_is_ready(&t->common.job));
    ev = job_test_last_event("BLOCK_JOB_READY");
    assert_members(ev, "type,device,len,offset,speed");
    g_assert_cmpstr(str_member(ev, "type"), ==, "backup");
    g_assert_cmpstr(str_member(ev, "device"), ==, "j0");
    g_assert_true(job_complete(&t->common.job, &error_abort));
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_PENDING);
    ev = job_test_last_event("BLOCK_JOB_PENDING");
    assert_members(ev, "type,id");
    g_assert_cmpstr(str_member(ev, "id"), ==, "j0");
    job_finalize(&t->common.job, &error_abort);
    ev = job_test_last_event("BLOCK_JOB_COMPLETED");
    assert_members(ev, "type,device,len,offset,speed");

    t = started("j1", TEST_JOB_LOOP, 0, 0);
    g_atomic_int_set(&t->fail, EIO);
    JOB_TEST_WAIT(!job_get("j1"));
    ev = job_test_last_event("BLOCK_JOB_COMPLETED");
    assert_members(ev, "type,device,len,offset,speed,error");
    g_assert_cmpstr(str_member(ev, "error"), ==, "Input/output error");

    t = started("j2", TEST_JOB_LOOP, 0, 1 << 30);
    job_cancel_sync(&t->common.job, true);
    ev = job_test_last_event("BLOCK_JOB_CANCELLED");
    assert_members(ev, "type,device,len,offset,speed");
    g_assert_cmpint(json_integer_value(json_object_get(ev, "speed")), ==, 1 << 30);
    g_assert_cmpint(json_integer_value(json_object_get(ev, "len")), ==,
                    100 * 65536);
    g_assert_cmpint(json_integer_value(json_object_get(ev, "offset")), <,
                    100 * 65536);
}

static void test_query_block_job(void)
{
    BlockJobInfo *info;
    TestJob *t;
    Job *j;

    job_test_reset();
    t = test_block_job_new("j0", TEST_JOB_LOOP, node, NULL,
                           JOB_MANUAL_FINALIZE | JOB_MANUAL_DISMISS, 4096);
    info = query(t);
    g_assert_cmpstr(info->type, ==, "backup");
    g_assert_cmpstr(info->device, ==, "j0");
    /* A created job counts as paused, as in QEMU. */
    g_assert_true(info->paused);
    g_assert_false(info->busy);
    g_assert_cmpint(info->speed, ==, 4096);
    g_assert_cmpint(info->io_status, ==, BLOCK_DEVICE_IO_STATUS_OK);
    g_assert_false(info->ready);
    g_assert_cmpint(info->status, ==, JOB_STATUS_CREATED);
    g_assert_false(info->auto_finalize);
    g_assert_false(info->auto_dismiss);
    g_assert_null(info->error);
    qapi_free_BlockJobInfo(info);

    job_start(&t->common.job);
    JOB_TEST_WAIT(g_atomic_int_get(&t->loops) > 0);
    job_user_pause(&t->common.job, &error_abort);
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_PAUSED);
    info = query(t);
    g_assert_true(info->paused);
    g_assert_false(info->busy);
    g_assert_cmpint(info->len, ==, 100 * 65536);
    g_assert_cmpint(info->offset, >, 0);
    qapi_free_BlockJobInfo(info);

    job_cancel_sync(&t->common.job, true);
    info = query(t);
    g_assert_cmpint(info->status, ==, JOB_STATUS_CONCLUDED);
    g_assert_cmpstr(info->error, ==, "Operation canceled");
    qapi_free_BlockJobInfo(info);
    j = &t->common.job;
    job_dismiss(&j, &error_abort);
}

static void test_speed_checks(void)
{
    TestJob *t;
    Error *err = NULL;
    g_autofree char *statuses = NULL;

    job_test_reset();
    g_assert_null(block_job_create("j0", &test_job_driver, NULL, node, 0,
                                   BLK_PERM_ALL, -1, 0, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Parameter 'speed' expects a non-negative value");
    g_clear_pointer(&err, error_free);
    /* As in QEMU, the job existed for a moment. */
    statuses = job_test_statuses("j0");
    g_assert_cmpstr(statuses, ==, "created,null");

    t = started("j1", TEST_JOB_LOOP, 0, 0);
    g_assert_false(block_job_set_speed(&t->common, -1, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Parameter 'speed' expects a non-negative value");
    g_clear_pointer(&err, error_free);
    g_assert_true(block_job_set_speed(&t->common, 1000, &error_abort));
    g_assert_cmpint(block_job_get_speed(&t->common), ==, 1000);
    job_cancel_sync(&t->common.job, true);
}

static int64_t offset_of(TestJob *t)
{
    BlockJobInfo *info = query(t);
    int64_t offset = info->offset;

    qapi_free_BlockJobInfo(info);
    return offset;
}

static void test_rate_limit_roughly_honoured(void)
{
    const int64_t speed = 4 << 20;
    TestJob *t;
    int64_t done, start;

    job_test_reset();
    t = test_block_job_new("j0", TEST_JOB_RATELIMITED, node, NULL, 0, speed);
    t->chunk = 64 << 10;
    job_start(&t->common.job);
    g_usleep(500000);
    done = offset_of(t);
    /* 2 MiB in 0.5 s, give or take a slice and a chunk. */
    g_assert_cmpint(done, >=, speed / 4);
    g_assert_cmpint(done, <=, speed * 3 / 4 + (64 << 10));

    /* Unlimited: a job sleeping for the limit wakes and speeds up. */
    start = offset_of(t);
    g_assert_true(block_job_set_speed(&t->common, 0, &error_abort));
    JOB_TEST_WAIT(offset_of(t) - start > 4 * speed);
    job_cancel_sync(&t->common.job, true);
}

static void test_error_policy_decides(void)
{
    static const struct {
        BlockdevOnError on_err;
        int err;
        BlockErrorAction want;
    } cases[] = {
        { BLOCKDEV_ON_ERROR_REPORT, EIO, BLOCK_ERROR_ACTION_REPORT },
        { BLOCKDEV_ON_ERROR_REPORT, ENOSPC, BLOCK_ERROR_ACTION_REPORT },
        { BLOCKDEV_ON_ERROR_IGNORE, EIO, BLOCK_ERROR_ACTION_IGNORE },
        { BLOCKDEV_ON_ERROR_ENOSPC, EIO, BLOCK_ERROR_ACTION_REPORT },
        { BLOCKDEV_ON_ERROR_AUTO, EIO, BLOCK_ERROR_ACTION_REPORT },
    };
    TestJob *t;
    size_t i;

    job_test_reset();
    t = test_block_job_new("j0", TEST_JOB_LOOP, node, NULL, 0, 0);
    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        json_t *ev;

        g_assert_cmpint(block_job_error_action(&t->common, cases[i].on_err,
                                               i % 2, cases[i].err), ==,
                        cases[i].want);
        ev = job_test_last_event("BLOCK_JOB_ERROR");
        assert_members(ev, "device,operation,action");
        g_assert_cmpstr(str_member(ev, "device"), ==, "j0");
        g_assert_cmpstr(str_member(ev, "operation"), ==, i % 2 ? "read" : "write");
        g_assert_cmpstr(str_member(ev, "action"), ==,
                        BlockErrorAction_str(cases[i].want));
    }
    job_early_fail(&t->common.job);
}

static void check_stop(BlockdevOnError on_err, int err,
                       BlockDeviceIoStatus want_status)
{
    BlockJobInfo *info;
    TestJob *t;

    job_test_reset();
    t = test_block_job_new("j0", TEST_JOB_IO_ERROR, node, NULL, 0, 0);
    t->on_err = on_err;
    t->err_errno = err;
    t->err_is_read = true;
    job_start(&t->common.job);
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_PAUSED);
    g_assert_cmpint(t->action, ==, BLOCK_ERROR_ACTION_STOP);
    g_assert_cmpstr(str_member(job_test_last_event("BLOCK_JOB_ERROR"), "action"),
                    ==, "stop");
    info = query(t);
    g_assert_cmpint(info->io_status, ==, want_status);
    g_assert_true(info->paused);
    qapi_free_BlockJobInfo(info);
    /* A user pause: job-resume retries, and io-status is ok again. */
    g_assert_true(job_user_paused(&t->common.job));
    g_assert_true(job_user_resume(&t->common.job, &error_abort));
    info = query(t);
    g_assert_cmpint(info->io_status, ==, BLOCK_DEVICE_IO_STATUS_OK);
    qapi_free_BlockJobInfo(info);
    JOB_TEST_WAIT(g_atomic_int_get(&t->loops) > 0);
    g_atomic_int_set(&t->finish, 1);
    JOB_TEST_WAIT(!job_get("j0"));
    g_assert_cmpstr(test_job_log->str, ==, "j0:prepare j0:commit j0:clean");
}

static void test_error_stop_pauses_until_resumed(void)
{
    check_stop(BLOCKDEV_ON_ERROR_STOP, EIO, BLOCK_DEVICE_IO_STATUS_FAILED);
    check_stop(BLOCKDEV_ON_ERROR_ENOSPC, ENOSPC, BLOCK_DEVICE_IO_STATUS_NOSPACE);
    check_stop(BLOCKDEV_ON_ERROR_AUTO, ENOSPC, BLOCK_DEVICE_IO_STATUS_NOSPACE);
}

static void test_error_report_fails_the_job(void)
{
    TestJob *t;

    job_test_reset();
    t = test_block_job_new("j0", TEST_JOB_IO_ERROR, node, NULL, 0, 0);
    t->on_err = BLOCKDEV_ON_ERROR_REPORT;
    t->err_errno = EIO;
    job_start(&t->common.job);
    JOB_TEST_WAIT(!job_get("j0"));
    g_assert_cmpstr(str_member(job_test_last_event("BLOCK_JOB_COMPLETED"),
                               "error"), ==, "Input/output error");
    g_assert_cmpstr(test_job_log->str, ==, "j0:abort j0:clean");
}

static void test_nodes_in_use_are_protected(void)
{
    BlockDriverState *n1 = block_test_open(
        "{\"driver\": \"null-co\", \"node-name\": \"n1\"}", &error_abort);
    BlockDriverState *n2 = block_test_open(
        "{\"driver\": \"null-co\", \"node-name\": \"n2\"}", &error_abort);
    BlockBackend *other = block_test_backend(n2, "block export 'e0'",
                                             BLK_PERM_CONSISTENT_READ,
                                             BLK_PERM_CONSISTENT_READ);
    TestJob *t;
    Error *err = NULL;

    job_test_reset();
    t = block_job_create("j0", &test_job_driver, NULL, n1,
                         BLK_PERM_CONSISTENT_READ,
                         BLK_PERM_ALL & ~BLK_PERM_RESIZE, 0, 0, &error_abort);
    g_assert_false(bdrv_del_node("n1", &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Node 'n1' is in use by backup job 'j0'");
    g_clear_pointer(&err, error_free);
    g_assert_false(bdrv_truncate(n1, 1 << 20, &err));
    g_assert_nonnull(strstr(error_get_pretty(err),
                            "unshared by backup job 'j0' (uses node 'n1' as "
                            "'main node' child)"));
    g_clear_pointer(&err, error_free);

    /* A further node: the conflict names the job and the edge. */
    g_assert_null(block_job_add_bdrv(&t->common, "target", n2,
                                     BLK_PERM_WRITE, BLK_PERM_ALL, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Permission conflict on node 'n2': permissions 'write' are "
                    "both required by backup job 'j0' (uses node 'n2' as "
                    "'target' child) and unshared by block export 'e0' (uses "
                    "node 'n2' as 'root' child).");
    g_clear_pointer(&err, error_free);
    blk_unref(other);
    g_assert_nonnull(block_job_add_bdrv(&t->common, "target", n2,
                                        BLK_PERM_WRITE, BLK_PERM_ALL,
                                        &error_abort));
    g_assert_false(bdrv_del_node("n2", &err));
    g_clear_pointer(&err, error_free);

    job_early_fail(&t->common.job);
    g_assert_true(bdrv_del_node("n1", &error_abort));
    g_assert_true(bdrv_del_node("n2", &error_abort));
}

static void assert_qmp_error(Error *err, ErrorClass cls, const char *desc)
{
    g_assert_nonnull(err);
    g_assert_cmpint(error_get_class(err), ==, cls);
    g_assert_cmpstr(error_get_pretty(err), ==, desc);
    error_free(err);
}

static void test_qmp_texts_and_classes(void)
{
    Error *err = NULL;
    JobInfoList *jobs;
    BlockJobInfoList *bjobs;

    job_test_reset();
    g_assert_false(qmp_job_pause("nope", &err));
    assert_qmp_error(err, ERROR_CLASS_GENERIC_ERROR, "Job not found");
    err = NULL;
    g_assert_false(qmp_job_dismiss("nope", &err));
    assert_qmp_error(err, ERROR_CLASS_GENERIC_ERROR, "Job not found");
    err = NULL;
    g_assert_false(qmp_block_job_pause("nope", &err));
    assert_qmp_error(err, ERROR_CLASS_DEVICE_NOT_ACTIVE,
                     "Block job 'nope' not found");
    err = NULL;
    g_assert_false(qmp_block_job_set_speed("nope", -1, &err));
    assert_qmp_error(err, ERROR_CLASS_DEVICE_NOT_ACTIVE,
                     "Block job 'nope' not found");
    err = NULL;

    /* A job that is not a block job is not found by block-job-*. */
    test_job_new("plain", TEST_JOB_LOOP, NULL, 0);
    g_assert_false(qmp_block_job_cancel("plain", false, false, &err));
    assert_qmp_error(err, ERROR_CLASS_DEVICE_NOT_ACTIVE,
                     "Block job 'plain' not found");
    err = NULL;

    started("j0", TEST_JOB_LOOP, 0, 0);
    g_assert_true(qmp_block_job_pause("j0", &error_abort));
    g_assert_false(qmp_block_job_cancel("j0", false, false, &err));
    assert_qmp_error(err, ERROR_CLASS_GENERIC_ERROR,
                     "The block job for device 'j0' is currently paused");
    err = NULL;
    g_assert_false(qmp_job_pause("j0", &err));
    assert_qmp_error(err, ERROR_CLASS_GENERIC_ERROR, "Job is already paused");
    err = NULL;
    g_assert_false(qmp_block_job_complete("j0", &err));
    g_assert_nonnull(err);
    g_clear_pointer(&err, error_free);
    g_assert_false(qmp_block_job_set_speed("j0", -5, &err));
    assert_qmp_error(err, ERROR_CLASS_GENERIC_ERROR,
                     "Parameter 'speed' expects a non-negative value");
    err = NULL;

    /* Newest first; query-block-jobs lists block jobs only. */
    jobs = qmp_query_jobs(&error_abort);
    g_assert_cmpstr(jobs->value->id, ==, "j0");
    g_assert_cmpstr(jobs->next->value->id, ==, "plain");
    g_assert_null(jobs->next->next);
    qapi_free_JobInfoList(jobs);
    bjobs = qmp_query_block_jobs(&error_abort);
    g_assert_cmpstr(bjobs->value->device, ==, "j0");
    g_assert_null(bjobs->next);
    qapi_free_BlockJobInfoList(bjobs);

    g_assert_true(qmp_block_job_cancel("j0", true, true, &error_abort));
    JOB_TEST_WAIT(!job_get("j0"));
    g_assert_true(qmp_job_cancel("plain", &error_abort));
    g_assert_null(job_get("plain"));
}

static void test_qmp_finalize_and_dismiss(void)
{
    TestJob *t;
    Error *err = NULL;

    job_test_reset();
    t = started("j0", TEST_JOB_LOOP, JOB_MANUAL_FINALIZE | JOB_MANUAL_DISMISS, 0);
    g_assert_false(qmp_block_job_dismiss("j0", &err));
    assert_qmp_error(err, ERROR_CLASS_GENERIC_ERROR,
                     "Job 'j0' in state 'running' cannot accept command "
                     "verb 'dismiss'");
    err = NULL;
    g_assert_false(qmp_job_finalize("j0", &err));
    assert_qmp_error(err, ERROR_CLASS_GENERIC_ERROR,
                     "Job 'j0' in state 'running' cannot accept command "
                     "verb 'finalize'");
    err = NULL;
    g_atomic_int_set(&t->finish, 1);
    JOB_TEST_WAIT(job_status(&t->common.job) == JOB_STATUS_PENDING);
    g_assert_true(qmp_block_job_finalize("j0", &error_abort));
    g_assert_true(qmp_block_job_dismiss("j0", &error_abort));
    g_assert_null(job_get("j0"));
}

/* ---- blockdev-create ---------------------------------------------------- */

static JobInfo *create(const char *id, const char *path, uint64_t size,
                       int prealloc)
{
    BlockdevCreateOptions opts = { .driver = BLOCKDEV_DRIVER_FILE };
    JobInfo *info;
    Job *job;

    opts.u.file.filename = (char *)path;
    opts.u.file.size = size;
    if (prealloc >= 0) {
        opts.u.file.has_preallocation = true;
        opts.u.file.preallocation = prealloc;
    }
    g_assert_true(qmp_blockdev_create(id, &opts, &error_abort));
    job = job_get(id);
    g_assert_nonnull(job);
    JOB_TEST_WAIT(job_status(job) == JOB_STATUS_CONCLUDED);
    info = job_query(job);
    g_assert_true(qmp_job_dismiss(id, &error_abort));
    return info;
}

static void test_blockdev_create_file(void)
{
    g_autofree char *path = block_test_file("c.img", 0);
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *dir_err = g_strdup_printf("Could not create '%s': Is a "
                                               "directory", dir);
    JobInfo *info;
    struct stat st;

    job_test_reset();
    info = create("c0", path, 1 << 20, -1);
    g_assert_cmpint(info->type, ==, JOB_TYPE_CREATE);
    g_assert_null(info->error);
    g_assert_cmpint(info->current_progress, ==, 1);
    g_assert_cmpint(info->total_progress, ==, 1);
    qapi_free_JobInfo(info);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 1 << 20);
    g_assert_cmpint(st.st_blocks, ==, 0);
    {
        g_autofree char *s = job_test_statuses("c0");
        g_autofree char *e = job_test_other_events();

        g_assert_cmpstr(s, ==, "created,running,waiting,pending,concluded,null");
        /* Not a block job: no BLOCK_JOB_* events. */
        g_assert_cmpstr(e, ==, "");
    }

    info = create("c1", path, 1 << 20, PREALLOC_MODE_FULL);
    g_assert_null(info->error);
    qapi_free_JobInfo(info);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_blocks * 512, >=, 1 << 20);

    info = create("c2", path, 1 << 20, PREALLOC_MODE_FALLOC);
    g_assert_null(info->error);
    qapi_free_JobInfo(info);

    info = create("c3", dir, 1 << 20, -1);
    g_assert_cmpstr(info->error, ==, dir_err);
    qapi_free_JobInfo(info);

    info = create("c4", path, 1 << 20, PREALLOC_MODE_METADATA);
    g_assert_cmpstr(info->error, ==, "Unsupported preallocation mode: metadata");
    qapi_free_JobInfo(info);

    info = create("c5", path, UINT64_MAX, -1);
    g_assert_cmpstr(info->error, ==, "Could not resize file: Invalid argument");
    qapi_free_JobInfo(info);
}

static void test_blockdev_create_refusals(void)
{
    BlockdevCreateOptions raw = { .driver = BLOCKDEV_DRIVER_RAW };
    BlockdevCreateOptions file = { .driver = BLOCKDEV_DRIVER_FILE };
    Error *err = NULL;

    job_test_reset();
    g_assert_false(qmp_blockdev_create("c0", &raw, &err));
    assert_qmp_error(err, ERROR_CLASS_GENERIC_ERROR,
                     "Driver does not support blockdev-create");
    err = NULL;
    file.u.file.filename = (char *)"/nonexistent/x";
    g_assert_false(qmp_blockdev_create("0c", &file, &err));
    assert_qmp_error(err, ERROR_CLASS_GENERIC_ERROR, "Invalid job ID '0c'");
    g_assert_null(job_next(NULL));
}

int main(int argc, char **argv)
{
    int ret;

    job_test_init(&argc, &argv);
    node = block_test_open("{\"driver\": \"null-co\", \"node-name\": \"n0\"}",
                           &error_abort);
    g_test_add_func("/blockjob/events-have-qemus-members",
                    test_events_have_qemus_members);
    g_test_add_func("/blockjob/query-block-job", test_query_block_job);
    g_test_add_func("/blockjob/speed-checks", test_speed_checks);
    g_test_add_func("/blockjob/rate-limit-roughly-honoured",
                    test_rate_limit_roughly_honoured);
    g_test_add_func("/blockjob/error-policy-decides", test_error_policy_decides);
    g_test_add_func("/blockjob/error-stop-pauses-until-resumed",
                    test_error_stop_pauses_until_resumed);
    g_test_add_func("/blockjob/error-report-fails-the-job",
                    test_error_report_fails_the_job);
    g_test_add_func("/blockjob/nodes-in-use-are-protected",
                    test_nodes_in_use_are_protected);
    g_test_add_func("/blockjob/qmp-texts-and-classes", test_qmp_texts_and_classes);
    g_test_add_func("/blockjob/qmp-finalize-and-dismiss",
                    test_qmp_finalize_and_dismiss);
    g_test_add_func("/blockjob/blockdev-create-file", test_blockdev_create_file);
    g_test_add_func("/blockjob/blockdev-create-refusals",
                    test_blockdev_create_refusals);
    ret = block_test_run();
    bdrv_close_all();
    return ret;
}
