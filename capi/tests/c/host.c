/*
 * A host program written against hrm.h alone: loads a blob file, checks that the library
 * refuses what it must (each with its own code), then solves every puzzle of a file and prints
 * one answer per line, as `hrm solve sudoku --file` does.
 *
 *   host BLOB PUZZLES [K]     K > 1: the ensemble of `hrm solve sudoku --ensemble K`
 *
 * Without K, the first puzzle is also solved a second time through the step-by-step API.
 *
 * Exit status 0 when everything behaved as documented, 1 otherwise (with a message on stderr).
 * tests/c_host.rs builds it with the cc crate, links it against libhrm.a and compares its
 * answers with the Rust runtime's; it also runs it under valgrind. Every buffer is malloc'd to
 * its exact size, so that memcheck sees any access past one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hrm.h"

/* Complete types: C can place them statically (zero-initialised: not set up yet). */
static hrm_model model;
static hrm_session session;

static int failures = 0;

static void expect(const char *what, int got, int want) {
    if (got != want) {
        fprintf(stderr, "host.c: %s: got %d (%s), want %d (%s)\n", what, got, hrm_strerror(got), want,
                hrm_strerror(want));
        failures++;
    }
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *data;
    long size;
    if (!f) {
        perror(path);
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        perror(path);
        fclose(f);
        return NULL;
    }
    /* malloc's alignment (at least 8) satisfies the blob's 4 bytes. */
    data = malloc(size > 0 ? (size_t)size : 1);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "host.c: cannot read %s\n", path);
        fclose(f);
        free(data);
        return NULL;
    }
    fclose(f);
    *len = (size_t)size;
    return data;
}

/* What the library must refuse, before and around a good model. */
static void refusals(const unsigned char *blob, size_t len) {
    hrm_model bad;
    hrm_session other;
    unsigned char *copy;
    uint32_t tokens[81];
    float q_halt = 0.0f;
    char answer[82];
    size_t i;

    expect("step on a session never set up", hrm_session_step(&session, &q_halt, NULL), HRM_ERR_NOT_INITIALISED);
    expect("arena bytes of a model never set up", (int)hrm_model_arena_bytes(&model), 0);
    expect("model init with NULL model", hrm_model_init(NULL, blob, len), HRM_ERR_NULL);
    expect("model init with NULL blob", hrm_model_init(&bad, NULL, len), HRM_ERR_NULL);
    expect("model init with half the blob", hrm_model_init(&bad, blob, len / 2), HRM_ERR_TRUNCATED);
    expect("model init with 3 bytes", hrm_model_init(&bad, blob, 3), HRM_ERR_TRUNCATED);

    copy = malloc(len);
    if (!copy) {
        failures++;
        return;
    }
    memcpy(copy, blob, len);
    copy[len - 1] ^= 0x40;
    expect("model init with a flipped data bit", hrm_model_init(&bad, copy, len), HRM_ERR_PAYLOAD_CRC);
    memcpy(copy, blob, len);
    copy[0] = 'X';
    expect("model init with a bad magic", hrm_model_init(&bad, copy, len), HRM_ERR_BAD_MAGIC);
    free(copy);
    expect("session init on a failed model", hrm_session_init(&other, &bad, NULL, 0), HRM_ERR_NOT_INITIALISED);

    /* A good model, an arena one byte short, then a misaligned one. */
    expect("model init", hrm_model_init(&bad, blob, len), HRM_OK);
    {
        size_t need = hrm_model_arena_bytes(&bad);
        unsigned char *arena = malloc(need + 4);
        if (!arena) {
            failures++;
            return;
        }
        expect("session init with a short arena", hrm_session_init(&other, &bad, arena, need - 1), HRM_ERR_ARENA_TOO_SMALL);
        expect("session init with a misaligned arena", hrm_session_init(&other, &bad, arena + 1, need), HRM_ERR_ARENA_ALIGNMENT);
        expect("session init", hrm_session_init(&other, &bad, arena, need), HRM_OK);
        expect("predictions before reset", hrm_session_predictions(&other, tokens, 81), HRM_ERR_NOT_RESET);
        expect("step before reset", hrm_session_step(&other, &q_halt, NULL), HRM_ERR_NOT_RESET);
        for (i = 0; i < 81; i++) tokens[i] = 1;
        expect("reset with 80 tokens", hrm_session_reset(&other, tokens, 80, 0), HRM_ERR_INPUT_LENGTH);
        tokens[5] = 11;
        expect("reset with token 11", hrm_session_reset(&other, tokens, 81, 0), HRM_ERR_INVALID_TOKEN);
        tokens[5] = 1;
        expect("reset with puzzle id 7", hrm_session_reset(&other, tokens, 81, 7), HRM_ERR_INVALID_PUZZLE_ID);
        expect("reset with NULL tokens", hrm_session_reset(&other, NULL, 81, 0), HRM_ERR_NULL);
        expect("run with halting -2", hrm_session_run(&other, -2, NULL), HRM_ERR_INVALID_ARGUMENT);
        expect("solve a puzzle with a letter",
               hrm_solve_sudoku(&other, "x................................................................................", answer),
               HRM_ERR_PUZZLE_CHARACTER);
        expect("solve a puzzle of 80 cells",
               hrm_solve_sudoku(&other, "................................................................................", answer),
               HRM_ERR_PUZZLE_LENGTH);
        expect("solve a puzzle with two 5s in a row",
               hrm_solve_sudoku(&other, "55...............................................................................", answer),
               HRM_ERR_PUZZLE_CONFLICT);
        expect("ensemble of 0 trajectories",
               hrm_solve_sudoku_ensemble(&other, ".................................................................................", answer, 0, NULL),
               HRM_ERR_INVALID_ARGUMENT);
        free(arena);
    }
    if (strcmp(hrm_strerror(HRM_ERR_TRUNCATED), hrm_strerror(HRM_ERR_BAD_MAGIC)) == 0) {
        fprintf(stderr, "host.c: two codes share a message\n");
        failures++;
    }
}

/* The step API by hand must give what hrm_solve_sudoku gives. */
static void by_hand(const char *puzzle, const char *solved, const hrm_model_info *info) {
    uint32_t tokens[81], predictions[81];
    float q_halt, q_continue;
    float *logits;
    uint32_t s;
    size_t i;
    for (i = 0; i < 81; i++) tokens[i] = (puzzle[i] == '.' || puzzle[i] == '0') ? 1u : (uint32_t)(puzzle[i] - '0') + 1u;
    expect("reset", hrm_session_reset(&session, tokens, 81, 0), HRM_OK);
    for (s = 0; s < info->halt_max_steps; s++) expect("step", hrm_session_step(&session, &q_halt, &q_continue), HRM_OK);
    expect("predictions", hrm_session_predictions(&session, predictions, 81), HRM_OK);
    expect("predictions into 80", hrm_session_predictions(&session, predictions, 80), HRM_ERR_OUTPUT_LENGTH);
    for (i = 0; i < 81; i++) {
        if ((char)('0' + (predictions[i] > 0 ? predictions[i] - 1 : 0)) != solved[i]) {
            fprintf(stderr, "host.c: step by step, cell %u is %u, hrm_solve_sudoku says %c\n", (unsigned)i,
                    (unsigned)predictions[i], solved[i]);
            failures++;
            break;
        }
    }
    logits = malloc(sizeof(float) * info->seq_len * info->vocab_size);
    if (logits) {
        expect("logits", hrm_session_logits(&session, logits, (size_t)info->seq_len * info->vocab_size), HRM_OK);
        free(logits);
    }
}

int main(int argc, char **argv) {
    size_t len = 0, need;
    unsigned char *blob, *arena;
    hrm_model_info info;
    FILE *puzzles;
    char line[512];
    unsigned long k = 1;
    int first = 1;

    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s BLOB PUZZLES [K]\n", argv[0]);
        return 2;
    }
    if (argc == 4) k = strtoul(argv[3], NULL, 10);
    blob = read_file(argv[1], &len);
    if (!blob) return 1;
    refusals(blob, len);

    expect("model init", hrm_model_init(&model, blob, len), HRM_OK);
    expect("model info", hrm_model_get_info(&model, &info), HRM_OK);
    need = hrm_model_arena_bytes(&model);
    if (need == 0 || info.arena_bytes != need || info.seq_len != 81) {
        fprintf(stderr, "host.c: model info is inconsistent\n");
        return 1;
    }
    arena = malloc(need);
    if (!arena) return 1;
    expect("session init", hrm_session_init(&session, &model, arena, need), HRM_OK);

    puzzles = fopen(argv[2], "r");
    if (!puzzles) {
        perror(argv[2]);
        return 1;
    }
    while (fgets(line, sizeof line, puzzles)) {
        char answer[82];
        char *comma = strchr(line, ',');
        char *start = line;
        int valid = 0;
        if (comma) *comma = '\0';
        while (*start == ' ' || *start == '\t') start++;
        if (*start == '\0' || *start == '\n' || *start == '\r' || *start == '#' || strncmp(start, "puzzle", 6) == 0)
            continue;
        if (k > 1)
            expect("solve (ensemble)", hrm_solve_sudoku_ensemble(&session, start, answer, (uint32_t)k, &valid), HRM_OK);
        else
            expect("solve", hrm_solve_sudoku(&session, start, answer), HRM_OK);
        if (failures) break;
        if (k > 1 && valid != hrm_sudoku_is_solution(start, answer)) {
            fprintf(stderr, "host.c: the ensemble's validity disagrees with hrm_sudoku_is_solution\n");
            failures++;
        }
        printf("%s\n", answer);
        if (first && argc == 3) by_hand(start, answer, &info);
        first = 0;
    }
    fclose(puzzles);
    free(arena);
    free(blob);
    if (failures) {
        fprintf(stderr, "host.c: %d failure(s)\n", failures);
        return 1;
    }
    return 0;
}
