/*
 * A QEMU TCG plugin that counts the guest instructions a program executes
 * (all threads together) and prints the total at exit, for
 * scripts/count-insns (docs/PERFORMANCE.md, "What a board would do").
 *
 * Debian's qemu-user loads plugins (-plugin) but ships none, so this is
 * built here with gcc. The few declarations below are QEMU's plugin ABI
 * (include/qemu/qemu-plugin.h, API version 1 of QEMU 7.2), declared by hand
 * because Debian ships no header for it.
 *
 * Counting is an inline add per translated block, weighted by the block's
 * instruction count: exact for single-threaded guests; with several guest
 * threads the adds may race (QEMU documents them as non-atomic), so stage
 * counts are taken with one thread.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 = 0 };
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*udata_cb)(qemu_plugin_id_t id, void *userdata);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb,
                                                     enum qemu_plugin_op op, void *ptr,
                                                     uint64_t imm);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t executed;
static const char *out_path;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    FILE *f = out_path ? fopen(out_path, "w") : NULL;
    fprintf(f ? f : stderr, "insns %" PRIu64 "\n", executed);
    if (f)
        fclose(f);
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const struct qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    /* out=PATH writes the total there instead of stderr. */
    for (int i = 0; i < argc; i++)
        if (argv[i][0] == 'o' && argv[i][1] == 'u' && argv[i][2] == 't' && argv[i][3] == '=')
            out_path = argv[i] + 4;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
