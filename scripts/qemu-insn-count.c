/*
 * A QEMU TCG plugin that counts executed guest instructions and, optionally, the lowest
 * address written inside a window of guest memory (the stack's low-water mark).
 *
 * QEMU 7.2 as Debian ships it runs plugins but installs no qemu-plugin.h, so the few functions
 * of the plugin API (version 1) used here are declared by hand. Build and use:
 *
 *   gcc -O2 -shared -fPIC -o libinsncount.so scripts/qemu-insn-count.c
 *   qemu-system-arm ... -plugin ./libinsncount.so,out=count.txt[,low=0x20020000,high=0x20400000]
 *
 * The instruction count is added inline once per executed translation block (no callback per
 * instruction), so counting costs little and is identical from run to run. With low/high set,
 * every store is checked against [low, high), which is slow: use it for short runs.
 * The result goes to the file `out` (or QEMU's log, `-d plugin`): "insns N" and, with a window,
 * "lowest_store 0x...". With blocks=FILE, every translation block's start address, length and
 * executions go to FILE ("0xADDR N COUNT" lines, also counted inline): what
 * `scripts/firmware.sh profile` maps to functions.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* never dereferenced here */
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef uint32_t qemu_plugin_meminfo_t;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info,
                                          uint64_t vaddr, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
                                      void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t insns;               /* one vCPU on these boards: no need for atomics */
static uint64_t low, high, lowest = UINT64_MAX;
static const char *out_path;

/* blocks=FILE: one record per translation (a block translated twice has two; the reader sums). */
struct block {
    uint64_t vaddr, n, count;
    struct block *next;
};
static const char *blocks_path;
static struct block *blocks;

static void on_store(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
    (void)vcpu;
    (void)info;
    (void)udata;
    if (vaddr >= low && vaddr < high && vaddr < lowest) {
        lowest = vaddr;
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns, n);
    if (blocks_path) {
        struct block *b = calloc(1, sizeof *b);
        if (b) {
            b->vaddr = qemu_plugin_tb_vaddr(tb);
            b->n = n;
            b->next = blocks;
            blocks = b;
            qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->count, 1);
        }
    }
    if (high > low) {
        for (size_t i = 0; i < n; i++) {
            qemu_plugin_register_vcpu_mem_cb(qemu_plugin_tb_get_insn(tb, i), on_store, QEMU_PLUGIN_CB_NO_REGS,
                                             QEMU_PLUGIN_MEM_W, NULL);
        }
    }
}

static void at_exit(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
    char line[128];
    int len = snprintf(line, sizeof line, "insns %" PRIu64 "\n", insns);
    if (high > low && len > 0 && (size_t)len < sizeof line) {
        snprintf(line + len, sizeof line - (size_t)len, "lowest_store 0x%" PRIx64 "\n", lowest);
    }
    if (blocks_path) {
        FILE *bf = fopen(blocks_path, "w");
        for (struct block *b = blocks; bf && b; b = b->next) {
            if (b->count) {
                fprintf(bf, "0x%" PRIx64 " %" PRIu64 " %" PRIu64 "\n", b->vaddr, b->n, b->count);
            }
        }
        if (bf) {
            fclose(bf);
        }
    }
    FILE *f = out_path ? fopen(out_path, "w") : NULL;
    if (f) {
        fputs(line, f);
        fclose(f);
    } else {
        qemu_plugin_outs(line);
    }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                                int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = argv[i] + 4;
        } else if (strncmp(argv[i], "blocks=", 7) == 0) {
            blocks_path = argv[i] + 7;
        } else if (strncmp(argv[i], "low=", 4) == 0) {
            low = strtoull(argv[i] + 4, NULL, 0);
        } else if (strncmp(argv[i], "high=", 5) == 0) {
            high = strtoull(argv[i] + 5, NULL, 0);
        } else {
            fprintf(stderr, "qemu-insn-count: unknown argument %s (out=FILE, blocks=FILE, low=ADDR, high=ADDR)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
