/* Classify and fine-tune scikit-learn's digits in C, with the model that
 * examples/export_digits.py trained and exported (digits.h, digits.o).
 *
 *     cc -O2 -I build -o build/digits examples/c/digits.c build/digits.o -lm
 *     build/digits build/digits_test.bin
 *
 * The data file holds n, then n rows of 64 floats, then n int64 labels. */
#include <stdio.h>
#include <stdlib.h>
#include "digits.h"

static int64_t argmax(const float *row) {
    int64_t best = 0;
    for (int64_t k = 1; k < DIGITS_OUTPUT_SIZE; k++)
        if (row[k] > row[best]) best = k;
    return best;
}

static double accuracy(const float *scores, const int64_t *labels, int64_t n) {
    int64_t right = 0;
    for (int64_t i = 0; i < n; i++) right += argmax(scores + i * DIGITS_OUTPUT_SIZE) == labels[i];
    return (double)right / (double)n;
}

int main(int argc, char **argv) {
    int64_t n;
    FILE *file = argc > 1 ? fopen(argv[1], "rb") : NULL;
    if (!file || fread(&n, sizeof n, 1, file) != 1) return 1;
    float *x = malloc(n * DIGITS_INPUT_SIZE * sizeof *x), *scores = malloc(n * DIGITS_OUTPUT_SIZE * sizeof *scores);
    int64_t *labels = malloc(n * sizeof *labels);
    if (fread(x, sizeof *x, n * DIGITS_INPUT_SIZE, file) != (size_t)(n * DIGITS_INPUT_SIZE)) return 1;
    if (fread(labels, sizeof *labels, n, file) != (size_t)n) return 1;
    fclose(file);

    /* inference with the weights baked into digits.o */
    if (digits_predict(x, scores, n) != DIGITS_OK) return 2;
    printf("exported model: accuracy %.4f on %lld digits\n", accuracy(scores, labels, n), (long long)n);

    /* fine-tuning: the context holds parameters and Adam's state */
    static _Alignas(DIGITS_CONTEXT_ALIGNMENT) unsigned char ctx[DIGITS_CONTEXT_SIZE];
    digits_init(ctx);
    for (int epoch = 1; epoch <= 3; epoch++) {
        float loss, total = 0;
        int64_t steps = 0;
        for (int64_t first = 0; first + 32 <= n; first += 32, steps++) {
            int status = digits_train_step(ctx, x + first * DIGITS_INPUT_SIZE, labels + first, 32, 1e-3f, &loss);
            if (status != DIGITS_OK) return 3;
            total += loss;
        }
        digits_context_predict(ctx, x, scores, n);
        printf("fine-tuning epoch %d: loss %.4f, accuracy %.4f\n", epoch, total / steps, accuracy(scores, labels, n));
    }
    free(x), free(scores), free(labels);
    return 0;
}
