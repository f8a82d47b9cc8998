/*
 * The Sudoku solver of sudoku-uart, written in C against hrm.h: the model blob in flash (read
 * in place), the session and its arena static, the same line protocol over the MPS2 board's
 * CMSDK UART0. Each line is a puzzle (81 characters, `.` or `0` a blank; the first CSV field;
 * blank lines, `#` comments and a `puzzle` header are skipped), answered by 81 digits or
 * `error: <message>`; `k=N` switches to the ensemble of N trajectories (answered `k=N`). At the
 * end of input (EOT, 0x04) it exits through semihosting with status 0.
 *
 * Built by scripts/firmware.sh (c-uart): arm-none-eabi-gcc, newlib, and libhrm.a for
 * thumbv7em-none-eabihf; HRM_ARENA_BYTES comes from the blob's header.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hrm.h"

#ifndef HRM_ARENA_BYTES
#error "define HRM_ARENA_BYTES: the blob header's arena size (scripts/firmware.sh does)"
#endif

/* The blob, placed in flash by blob.S (64-byte aligned). */
extern const uint8_t hrm_blob[];
extern const uint8_t hrm_blob_end[];

static hrm_model model;
static hrm_session session;
static uint8_t arena[HRM_ARENA_BYTES] __attribute__((aligned(64)));

/* CMSDK APB UART0 of the MPS2 AN385/AN386 images. */
#define UART0_BASE 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x00))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x04))
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x08))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x10))
#define STATE_TX_FULL 1u
#define STATE_RX_FULL 2u

static void uart_init(void) {
    UART_BAUDDIV = 217; /* 25 MHz / 217: about 115200 baud (QEMU ignores it) */
    UART_CTRL = 3u;     /* TX and RX enabled */
}

static int uart_getc(void) {
    while (!(UART_STATE & STATE_RX_FULL)) {
    }
    return (int)(UART_DATA & 0xFFu);
}

static void uart_putc(char c) {
    while (UART_STATE & STATE_TX_FULL) {
    }
    UART_DATA = (uint32_t)(unsigned char)c;
}

static void uart_puts(const char *s) {
    while (*s) uart_putc(*s++);
}

/* Semihosting SYS_EXIT (ADP_Stopped_ApplicationExit): QEMU exits with `status`. */
static void semihosting_exit(int status) {
    uint32_t block[2] = {0x20026u, (uint32_t)status};
    register uint32_t r0 __asm__("r0") = 0x20u; /* SYS_EXIT_EXTENDED */
    register uint32_t *r1 __asm__("r1") = block;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
}

static void put_error(int code) {
    uart_puts("error: ");
    uart_puts(hrm_strerror(code));
    uart_putc('\n');
}

static void put_number(unsigned long n) {
    char digits[12];
    int i = 0;
    do {
        digits[i++] = (char)('0' + n % 10u);
        n /= 10u;
    } while (n && i < (int)sizeof digits);
    while (i) uart_putc(digits[--i]);
}

/* Answers one complete line. */
static void answer(char *line, uint32_t *k) {
    char *field = line, *end, *comma;
    char solved[82];
    int status;
    comma = strchr(line, ',');
    if (comma) *comma = '\0';
    while (*field == ' ' || *field == '\t' || *field == '\r') field++;
    end = field + strlen(field);
    while (end > field && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) *--end = '\0';
    if (*field == '\0' || *field == '#' || strncmp(field, "puzzle", 6) == 0) return;
    if ((field[0] == 'k' || field[0] == 'K') && field[1] == '=') {
        unsigned long n = 0;
        const char *p = field + 2;
        while (*p >= '0' && *p <= '9' && n <= HRM_MAX_TRAJECTORIES) n = n * 10u + (unsigned long)(*p++ - '0');
        if (*p != '\0' || n < 1 || n > HRM_MAX_TRAJECTORIES) {
            uart_puts("error: k must be from 1 to 65536\n");
            return;
        }
        *k = (uint32_t)n;
        uart_puts("k=");
        put_number(n);
        uart_putc('\n');
        return;
    }
    if (*k > 1)
        status = hrm_solve_sudoku_ensemble(&session, field, solved, *k, NULL);
    else
        status = hrm_solve_sudoku(&session, field, solved);
    if (status != HRM_OK) {
        put_error(status);
        return;
    }
    uart_puts(solved);
    uart_putc('\n');
}

int main(void) {
    char line[128];
    size_t len = 0;
    int overflow = 0, status;
    uint32_t k = 1;

    uart_init();
    status = hrm_model_init(&model, hrm_blob, (size_t)(hrm_blob_end - hrm_blob));
    if (status == HRM_OK && hrm_model_arena_bytes(&model) > sizeof arena) status = HRM_ERR_ARENA_TOO_SMALL;
    if (status == HRM_OK) status = hrm_session_init(&session, &model, arena, sizeof arena);
    if (status != HRM_OK) {
        put_error(status);
        semihosting_exit(1);
        for (;;) {
        }
    }
    for (;;) {
        int c = uart_getc();
        if (c == 0x04) { /* EOT: the end of input; a last line needs no newline */
            if (len > 0 && !overflow) {
                line[len] = '\0';
                answer(line, &k);
            }
            break;
        }
        if (c == '\n') {
            if (overflow) {
                uart_puts("error: line longer than 127 bytes\n");
            } else {
                line[len] = '\0';
                answer(line, &k);
            }
            len = 0;
            overflow = 0;
        } else if (len + 1 < sizeof line) {
            line[len++] = (char)c;
        } else {
            overflow = 1;
        }
    }
    semihosting_exit(0);
    for (;;) {
    }
}
