/* Handlers of the monitor control commands (qapi/control.json, introspect.json). */
#include "config-host.h"
#include "monitor/monitor.h"
#include "qapi-commands.h"
#include "qapi-introspect.h"
#include "qapi/decode.h"
#include "util/json-stream.h"
#include "util/main-loop.h"

bool qmp_qmp_capabilities(QMPCapabilityList *enable, Error **errp)
{
    MonitorQMP *mon = monitor_cur();
    bool oob = false;

    if (monitor_commands_enabled(mon)) {
        error_set(errp, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "Capabilities negotiation is already complete, command ignored");
        return false;
    }
    for (; enable; enable = enable->next) {
        if (enable->value == QMP_CAPABILITY_OOB) {
            oob = true;
        }
    }
    monitor_enable_commands(mon, oob);
    return true;
}

VersionInfo *qmp_query_version(Error **errp)
{
    VersionInfo *info = g_new0(VersionInfo, 1);

    /* The interface level is QEMU 7.2's; the package names blkd itself. */
    info->qemu = g_new0(VersionTriple, 1);
    info->qemu->major = 7;
    info->qemu->minor = 2;
    info->qemu->micro = 0;
    info->package = g_strdup("blkd " BLKD_VERSION);
    return info;
}

CommandInfoList *qmp_query_commands(Error **errp)
{
    CommandInfoList *head = NULL;
    size_t i;

    for (i = qmp_commands_count; i-- > 0;) {
        CommandInfoList *node = g_new0(CommandInfoList, 1);

        node->value = g_new0(CommandInfo, 1);
        node->value->name = g_strdup(qmp_commands[i].name);
        node->next = head;
        head = node;
    }
    return head;
}

bool qmp_marshal_query_qmp_schema(json_t *args, json_t **ret, Error **errp)
{
    QapiDecoder d;
    bool ok;

    qapi_decoder_init(&d, false);
    ok = qapi_decode_no_args(&d, args, errp);
    qapi_decoder_cleanup(&d);
    if (!ok) {
        return false;
    }
    /* Generated text, so it always parses. */
    *ret = json_parse_text(qapi_introspect_json, &error_abort);
    return true;
}

bool qmp_quit(Error **errp)
{
    /* The loop stops after this reply has been queued; cleanup sends it. */
    main_loop_quit(0);
    return true;
}
