/*
 * Rate limiting by time slices, as QEMU's include/qemu/ratelimit.h does
 * it: a slice of slice_ns admits speed * slice_ns bytes; once a slice's
 * quota is used up, the delay returned is what stretches the slice to
 * the time those bytes should have taken. Any thread.
 */
#ifndef UTIL_RATELIMIT_H
#define UTIL_RATELIMIT_H

#include <stdint.h>
#include <glib.h>

typedef struct RateLimit {
    GMutex lock;
    int64_t slice_start_time;   /* ns, monotonic */
    int64_t slice_end_time;
    uint64_t slice_quota;       /* bytes per slice; 0: no limit */
    uint64_t slice_ns;
    uint64_t dispatched;
} RateLimit;

static inline void ratelimit_init(RateLimit *limit)
{
    *limit = (RateLimit) { 0 };
    g_mutex_init(&limit->lock);
}

static inline void ratelimit_destroy(RateLimit *limit)
{
    g_mutex_clear(&limit->lock);
}

/* speed in bytes per second, 0 for no limit. */
static inline void ratelimit_set_speed(RateLimit *limit, uint64_t speed,
                                       uint64_t slice_ns)
{
    g_mutex_lock(&limit->lock);
    limit->slice_ns = slice_ns;
    if (speed == 0) {
        limit->slice_quota = 0;
    } else {
        double quota = (double)speed * slice_ns / 1000000000ULL;

        limit->slice_quota = quota < 1 ? 1 : (uint64_t)quota;
    }
    g_mutex_unlock(&limit->lock);
}

/* Accounts n bytes; returns how long to wait (ns) before sending more. */
static inline int64_t ratelimit_calculate_delay(RateLimit *limit, uint64_t n)
{
    int64_t now = g_get_monotonic_time() * 1000;
    int64_t delay_ns = 0;

    g_mutex_lock(&limit->lock);
    if (!limit->slice_quota) {
        goto out;
    }
    if (limit->slice_end_time < now) {
        /* The last slice (stretched or not) is over: a fresh one. */
        limit->slice_start_time = now;
        limit->slice_end_time = now + limit->slice_ns;
        limit->dispatched = 0;
    }
    limit->dispatched += n;
    if (limit->dispatched < limit->slice_quota) {
        goto out;
    }
    /* Over quota: the slice lasts as long as its bytes should take. */
    limit->slice_end_time = limit->slice_start_time +
        (int64_t)((double)limit->dispatched / limit->slice_quota *
                  limit->slice_ns);
    delay_ns = limit->slice_end_time - now;
out:
    g_mutex_unlock(&limit->lock);
    return delay_ns;
}

#endif
