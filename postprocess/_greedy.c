/* Greedy class-aware NMS, compiled: the kernel of postprocess.nms for small inputs and dense clusters.
 *
 * The numpy kernels of postprocess/nms.py stay the reference (the tests compare this one with them) and the
 * fallback when this module is not built. Both give the same kept boxes in the same order:
 *
 * - boxes are visited in rank order: by decreasing score, ties to the lower index, NaN scores last, -0.0 equal
 *   to 0.0 (nms.score_order), or in the order given (ranked);
 * - a box is dropped when its IoU with a kept box of its group is strictly greater than the threshold;
 * - the IoU is nms._Columns.overlap's, operation for operation in IEEE double: width = min(x2) - max(x1),
 *   height = min(y2) - max(y1), both clamped at 0, inter = width * height, union = (area_a + area_b) - inter
 *   with area = max(x2 - x1, 0) * max(y2 - y1, 0), IoU = inter / union where union > 0, else 0 (a pair whose
 *   width or height is not above 0 is skipped: its IoU is 0 either way, never above a threshold >= 0). The
 *   build turns off floating-point contraction (-ffp-contract=off): a fused multiply-add would round union
 *   differently;
 * - a box with a NaN or infinite coordinate neither suppresses nor is suppressed (always kept).
 *
 * Each box is compared with the kept boxes of its group only, so the cost is the number of boxes times the
 * boxes kept in their group: small for clusters of duplicates, quadratic for many boxes kept in one group.
 * The caller gives a budget of box comparisons, base + per_box * (boxes visited so far); past it the call stops
 * at that box and answers its rank with the boxes kept before it, and the caller's numpy kernels decide the
 * rest (postprocess.nms._COMPILED_PER_BOX).
 *
 * No numpy C API: arrays come in through the buffer protocol (any strides), results go to a caller's int64
 * buffer.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double x1, y1, x2, y2, area;
} Box;

/* A 1-D or 2-D strided buffer of numbers, read as doubles or int64 whatever its element type. */
typedef struct {
    Py_buffer view;
    int held;
    char kind; /* 'f': float, 'i': signed integer, 'u': unsigned integer or bool */
    Py_ssize_t itemsize;
} Array;

static void release(Array *a) {
    if (a->held) {
        PyBuffer_Release(&a->view);
        a->held = 0;
    }
}

/* The element type of a buffer format ("d", "<f", "=q", ...): native byte order only. */
static int parse_format(const char *format, char *kind) {
    if (format == NULL) {
        *kind = 'u'; /* "B" */
        return 1;
    }
    if (*format == '@' || *format == '=') {
        format++;
    } else if (*format == '<' || *format == '>' || *format == '!') {
        const uint16_t one = 1;
        int little = *(const char *)&one == 1;
        if ((*format == '<') != little) {
            return 0;
        }
        format++;
    }
    if (format[0] == '\0' || format[1] != '\0') {
        return 0;
    }
    switch (format[0]) {
    case 'f':
    case 'd':
        *kind = 'f';
        return 1;
    case 'b':
    case 'h':
    case 'i':
    case 'l':
    case 'q':
    case 'n':
        *kind = 'i';
        return 1;
    case 'B':
    case 'H':
    case 'I':
    case 'L':
    case 'Q':
    case 'N':
    case '?':
        *kind = 'u';
        return 1;
    default:
        return 0;
    }
}

static int get_array(PyObject *obj, Array *a, int ndim, const char *name, int writable) {
    int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    a->held = 0;
    if (PyObject_GetBuffer(obj, &a->view, flags) < 0) {
        return 0;
    }
    a->held = 1;
    a->itemsize = a->view.itemsize;
    if (a->view.ndim != ndim || (ndim == 2 && a->view.shape[1] != 4) || !parse_format(a->view.format, &a->kind) ||
        (a->kind == 'f' && a->itemsize != 4 && a->itemsize != 8) ||
        (a->kind != 'f' && a->itemsize != 1 && a->itemsize != 2 && a->itemsize != 4 && a->itemsize != 8)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a %d-D array of native numbers%s", name, ndim,
                     ndim == 2 ? " with 4 columns" : "");
        release(a);
        return 0;
    }
    return 1;
}

static inline const char *at1(const Array *a, Py_ssize_t i) {
    return (const char *)a->view.buf + i * a->view.strides[0];
}

static inline double as_double(const Array *a, const char *p) {
    if (a->kind == 'f') {
        if (a->itemsize == 8) {
            double v;
            memcpy(&v, p, 8);
            return v;
        }
        float v;
        memcpy(&v, p, 4);
        return (double)v;
    }
    if (a->kind == 'i') {
        switch (a->itemsize) {
        case 1: return (double)*(const int8_t *)p;
        case 2: { int16_t v; memcpy(&v, p, 2); return (double)v; }
        case 4: { int32_t v; memcpy(&v, p, 4); return (double)v; }
        default: { int64_t v; memcpy(&v, p, 8); return (double)v; }
        }
    }
    switch (a->itemsize) {
    case 1: return (double)*(const uint8_t *)p;
    case 2: { uint16_t v; memcpy(&v, p, 2); return (double)v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return (double)v; }
    default: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    }
}

/* An integer element as int64 (unsigned 64-bit values wrap: a one-to-one map, so equality is kept). */
static inline int64_t as_int64(const Array *a, const char *p) {
    if (a->kind == 'i') {
        switch (a->itemsize) {
        case 1: return *(const int8_t *)p;
        case 2: { int16_t v; memcpy(&v, p, 2); return v; }
        case 4: { int32_t v; memcpy(&v, p, 4); return v; }
        default: { int64_t v; memcpy(&v, p, 8); return v; }
        }
    }
    switch (a->itemsize) {
    case 1: return *(const uint8_t *)p;
    case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
    default: { uint64_t v; memcpy(&v, p, 8); return (int64_t)v; }
    }
}

/* ---- ranking by decreasing score, then increasing tiebreak (nms.score_order) ---- */

/* A key whose increasing order is the decreasing order of the scores, NaN last; -0.0 and 0.0 equal. */
static inline uint64_t descending_key(double v) {
    uint64_t bits;
    if (isnan(v)) {
        return UINT64_MAX;
    }
    v += 0.0; /* -0.0 + 0.0 is 0.0 */
    memcpy(&bits, &v, 8);
    uint64_t ascending = (bits >> 63) ? ~bits : bits | ((uint64_t)1 << 63);
    return ~ascending;
}

/* A signed integer as an unsigned key in the same order. */
static inline uint64_t ascending_int_key(int64_t v) { return (uint64_t)v ^ ((uint64_t)1 << 63); }

typedef struct {
    uint64_t key;    /* first key */
    uint64_t second; /* second key (0 when there is none) */
    Py_ssize_t index;
} Ranked;

static inline int ranked_before(const Ranked *a, const Ranked *b) {
    return a->key < b->key || (a->key == b->key && a->second < b->second);
}

static inline uint64_t field_of(const Ranked *item, int second) { return second ? item->second : item->key; }

/* Stable LSD radix sort of items by one field, 8 bits a pass, over the bytes in which the items differ only
   (float32 scores as doubles leave their low 29 bits zero, small tiebreaks their high bytes). */
static void radix_by(Ranked **from, Ranked **to, Py_ssize_t n, int second, Py_ssize_t (*counts)[256]) {
    uint64_t any = 0, all = ~(uint64_t)0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t key = field_of(&(*from)[i], second);
        any |= key;
        all &= key;
    }
    uint64_t varying = any ^ all;
    int passes[8], count = 0;
    for (int pass = 0; pass < 8; pass++) {
        if ((varying >> (8 * pass)) & 0xFF) {
            passes[count++] = pass;
        }
    }
    if (count == 0) {
        return;
    }
    memset(counts, 0, (size_t)count * sizeof(*counts));
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t key = field_of(&(*from)[i], second);
        for (int c = 0; c < count; c++) {
            counts[c][(key >> (8 * passes[c])) & 0xFF]++;
        }
    }
    for (int c = 0; c < count; c++) {
        Py_ssize_t *histogram = counts[c];
        int shift = 8 * passes[c];
        Py_ssize_t total = 0;
        for (int d = 0; d < 256; d++) {
            Py_ssize_t k = histogram[d];
            histogram[d] = total;
            total += k;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            (*to)[histogram[(field_of(&(*from)[i], second) >> shift) & 0xFF]++] = (*from)[i];
        }
        Ranked *swap = *from;
        *from = *to;
        *to = swap;
    }
}

/* The lowest and highest set bits of a non-zero value. */
static void bit_range(uint64_t value, int *low, int *high) {
    *low = 0;
    while (!((value >> *low) & 1)) {
        (*low)++;
    }
    *high = 63;
    while (!((value >> *high) & 1)) {
        (*high)--;
    }
}

/* Stable sort of items by (key, second): items equal on both keep their order (the callers' index order). */
static int sort_ranked(Ranked *items, Py_ssize_t n, int with_second) {
    if (n <= 64) {
        for (Py_ssize_t i = 1; i < n; i++) {
            Ranked item = items[i];
            Py_ssize_t j = i;
            while (j > 0 && ranked_before(&item, &items[j - 1])) {
                items[j] = items[j - 1];
                j--;
            }
            items[j] = item;
        }
        return 1;
    }
    if (with_second) {
        /* Both keys in one where they fit: only the bits in which the items differ order them. */
        uint64_t key_any = 0, key_all = ~(uint64_t)0, second_any = 0, second_all = ~(uint64_t)0;
        for (Py_ssize_t i = 0; i < n; i++) {
            key_any |= items[i].key;
            key_all &= items[i].key;
            second_any |= items[i].second;
            second_all &= items[i].second;
        }
        uint64_t key_varying = key_any ^ key_all, second_varying = second_any ^ second_all;
        if (second_varying == 0) {
            with_second = 0;
        } else if (key_varying == 0) {
            for (Py_ssize_t i = 0; i < n; i++) {
                items[i].key = items[i].second;
            }
            with_second = 0;
        } else {
            int key_low, key_high, second_low, second_high;
            bit_range(key_varying, &key_low, &key_high);
            bit_range(second_varying, &second_low, &second_high);
            int key_width = key_high - key_low + 1, second_width = second_high - second_low + 1;
            if (key_width + second_width <= 64) {
                uint64_t second_mask = second_width == 64 ? ~(uint64_t)0 : (((uint64_t)1 << second_width) - 1);
                uint64_t key_mask = key_width == 64 ? ~(uint64_t)0 : (((uint64_t)1 << key_width) - 1);
                for (Py_ssize_t i = 0; i < n; i++) {
                    uint64_t key = (items[i].key >> key_low) & key_mask;
                    uint64_t second = (items[i].second >> second_low) & second_mask;
                    items[i].key = second_width == 64 ? second : (key << second_width) | second;
                }
                with_second = 0;
            }
        }
    }
    Ranked *other = (Ranked *)malloc((size_t)n * sizeof(Ranked));
    Py_ssize_t(*counts)[256] = (Py_ssize_t(*)[256])malloc(8 * sizeof(*counts));
    if (other == NULL || counts == NULL) {
        free(other);
        free(counts);
        return 0;
    }
    Ranked *from = items, *to = other;
    if (with_second) {
        radix_by(&from, &to, n, 1, counts); /* the second key first: LSD */
    }
    radix_by(&from, &to, n, 0, counts);
    if (from != items) {
        memcpy(items, from, (size_t)n * sizeof(Ranked));
    }
    free(other);
    free(counts);
    return 1;
}

/* ---- groups: each box's group number in [0, groups), by first appearance or by value ---- */

/* Group numbers of boxes 0..n-1 (their own indices, not ranks); returns the number of groups, or -1 (memory). */
static Py_ssize_t number_groups(const Array *groups, Py_ssize_t n, int32_t *number) {
    if (n == 0) {
        return 0;
    }
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t g = as_int64(groups, at1(groups, i));
        lo = g < lo ? g : lo;
        hi = g > hi ? g : hi;
    }
    /* Small non-negative values (label ids): a direct table. */
    if (lo >= 0 && hi < 1024 + 2 * (int64_t)n) {
        int32_t *table = (int32_t *)malloc((size_t)(hi + 1) * sizeof(int32_t));
        if (table == NULL) {
            return -1;
        }
        memset(table, 0xFF, (size_t)(hi + 1) * sizeof(int32_t));
        int32_t count = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t g = as_int64(groups, at1(groups, i));
            if (table[g] < 0) {
                table[g] = count++;
            }
            number[i] = table[g];
        }
        free(table);
        return count;
    }
    /* Any other values: open addressing. */
    size_t capacity = 16;
    while (capacity < 2 * (size_t)n) {
        capacity <<= 1;
    }
    int64_t *keys = (int64_t *)malloc(capacity * sizeof(int64_t));
    int32_t *values = (int32_t *)malloc(capacity * sizeof(int32_t));
    if (keys == NULL || values == NULL) {
        free(keys);
        free(values);
        return -1;
    }
    memset(values, 0xFF, capacity * sizeof(int32_t));
    int32_t count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t g = as_int64(groups, at1(groups, i));
        size_t slot = (size_t)(((uint64_t)g * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (capacity - 1);
        while (values[slot] >= 0 && keys[slot] != g) {
            slot = (slot + 1) & (capacity - 1);
        }
        if (values[slot] < 0) {
            keys[slot] = g;
            values[slot] = count++;
        }
        number[i] = values[slot];
    }
    free(keys);
    free(values);
    return count;
}

/* ---- the greedy pass ---- */

typedef struct {
    const Array *boxes;
    const int64_t *order; /* rank -> box index, or NULL: rank order is index order */
    const int32_t *group;    /* box index -> group number, or NULL: one group */
    Py_ssize_t groups;
    Py_ssize_t n;
    double threshold;
    Py_ssize_t known_kept; /* the first known_kept ranks are kept unchecked */
    Py_ssize_t count_from; /* max_output counts kept ranks >= count_from only */
    Py_ssize_t max_output; /* -1: no limit */
    long long per_box;     /* the budget: at most base + per_box * (boxes visited) box comparisons, */
    long long base;        /* else the answer is -1 */
    int64_t *out;
    int out_ranks;   /* write ranks (1) or box indices (0) */
    Py_ssize_t stop; /* out: -1 when every box is decided, else the first rank left undecided (budget spent) */
} Pass;

static inline double coordinate(const Array *boxes, Py_ssize_t i, int k) {
    return as_double(boxes, (const char *)boxes->view.buf + i * boxes->view.strides[0] + k * boxes->view.strides[1]);
}

/* The kept count (ranks before p->stop when the budget ran out), or -2 out of memory. */
static Py_ssize_t greedy(Pass *p) {
    Py_ssize_t groups = p->group == NULL ? 1 : p->groups;
    /* Each group's kept boxes, contiguous: group g owns store[start[g] .. start[g] + size of g). */
    Py_ssize_t *start = (Py_ssize_t *)calloc((size_t)groups + 1, sizeof(Py_ssize_t));
    Py_ssize_t *fill = (Py_ssize_t *)calloc((size_t)groups + 1, sizeof(Py_ssize_t));
    Box *store = (Box *)malloc((size_t)(p->n > 0 ? p->n : 1) * sizeof(Box));
    if (start == NULL || fill == NULL || store == NULL) {
        free(start);
        free(fill);
        free(store);
        return -2;
    }
    if (p->group != NULL) {
        for (Py_ssize_t i = 0; i < p->n; i++) {
            start[p->group[i] + 1]++;
        }
        for (Py_ssize_t g = 0; g < groups; g++) {
            start[g + 1] += start[g];
        }
    }
    const double t = p->threshold;
    /* float64 rows (what postprocess passes): read directly; rows stay aligned to doubles in numpy arrays. */
    const int rows_of_doubles = p->boxes->kind == 'f' && p->boxes->itemsize == 8 &&
                                p->boxes->view.strides[1] == 8 && p->boxes->view.strides[0] % 8 == 0 &&
                                ((uintptr_t)p->boxes->view.buf) % 8 == 0;
    long long work = 0;
    Py_ssize_t kept = 0, counted = 0;
    p->stop = -1;
    for (Py_ssize_t r = 0; r < p->n; r++) {
        if (p->max_output >= 0 && r >= p->count_from && counted >= p->max_output) {
            break;
        }
        Py_ssize_t i = p->order == NULL ? r : (Py_ssize_t)p->order[r];
        double x1, y1, x2, y2;
        if (rows_of_doubles) {
            const double *row = (const double *)((const char *)p->boxes->view.buf + i * p->boxes->view.strides[0]);
            x1 = row[0];
            y1 = row[1];
            x2 = row[2];
            y2 = row[3];
        } else {
            x1 = coordinate(p->boxes, i, 0);
            y1 = coordinate(p->boxes, i, 1);
            x2 = coordinate(p->boxes, i, 2);
            y2 = coordinate(p->boxes, i, 3);
        }
        int keep = 1;
        if (isfinite(x1) && isfinite(y1) && isfinite(x2) && isfinite(y2)) {
            double w = x2 - x1, h = y2 - y1;
            double area = (w > 0.0 ? w : 0.0) * (h > 0.0 ? h : 0.0);
            Py_ssize_t g = p->group == NULL ? 0 : p->group[i];
            Box *same = store + start[g];
            Py_ssize_t m = fill[g];
            if (r >= p->known_kept) {
                Py_ssize_t k = 0;
                for (; k < m; k++) {
                    const Box *b = same + k;
                    double width = (x2 < b->x2 ? x2 : b->x2) - (x1 > b->x1 ? x1 : b->x1);
                    if (!(width > 0.0)) {
                        continue;
                    }
                    double height = (y2 < b->y2 ? y2 : b->y2) - (y1 > b->y1 ? y1 : b->y1);
                    if (!(height > 0.0)) {
                        continue;
                    }
                    double inter = width * height;
                    double sum = area + b->area;
                    double union_ = sum - inter;
                    if (union_ > 0.0 && inter / union_ > t) {
                        keep = 0;
                        k++;
                        break;
                    }
                }
                work += k;
                if (work > p->base + p->per_box * (long long)r) {
                    p->stop = r; /* this box is left undecided, with every box after it */
                    break;       /* (out of the loop over boxes) */
                }
            }
            if (keep) {
                Box *slot = same + m;
                slot->x1 = x1;
                slot->y1 = y1;
                slot->x2 = x2;
                slot->y2 = y2;
                slot->area = area;
                fill[g] = m + 1;
            }
        }
        if (keep) {
            p->out[kept++] = p->out_ranks ? (int64_t)r : (int64_t)i;
            if (r >= p->count_from) {
                counted++;
            }
        }
    }
    free(start);
    free(fill);
    free(store);
    return kept;
}

/* ---- Python entry points ---- */

#define RELEASE_GIL_FROM 4096

static int get_ssize(PyObject *obj, Py_ssize_t *value, const char *name) {
    *value = PyLong_AsSsize_t(obj);
    if (*value == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "%s must be an int", name);
        return 0;
    }
    return 1;
}

static int get_budget(PyObject *per_box, PyObject *base, Pass *pass) {
    pass->per_box = PyLong_AsLongLong(per_box);
    if (pass->per_box == -1 && PyErr_Occurred()) {
        return 0;
    }
    pass->base = PyLong_AsLongLong(base);
    if (pass->base == -1 && PyErr_Occurred()) {
        return 0;
    }
    if (pass->per_box < 0 || pass->base < 0 || pass->per_box > ((long long)1 << 20) ||
        pass->base > ((long long)1 << 60)) {
        PyErr_SetString(PyExc_ValueError, "per_box must be in [0, 2**20] and base in [0, 2**60]");
        return 0;
    }
    return 1;
}

static int get_out(PyObject *obj, Array *out, Py_ssize_t n) {
    if (!get_array(obj, out, 1, "out", 1)) {
        return 0;
    }
    if (out->kind == 'f' || out->itemsize != 8 || out->view.strides[0] != 8 || out->view.shape[0] < n) {
        PyErr_SetString(PyExc_TypeError, "out: expected a contiguous int64 array at least as long as the boxes");
        release(out);
        return 0;
    }
    return 1;
}

/* The boxes' optional groups (None, or integers, one per box) and the IoU threshold, into pass; 0 with an error set. */
static int get_groups_and_threshold(PyObject *groups_obj, PyObject *threshold, Array *boxes, Array *groups, Pass *pass) {
    if (groups_obj != Py_None) {
        if (!get_array(groups_obj, groups, 1, "groups", 0)) {
            return 0;
        }
        if (groups->kind == 'f' || groups->view.shape[0] != boxes->view.shape[0]) {
            PyErr_SetString(PyExc_TypeError, "groups: expected integers, one per box");
            return 0;
        }
    }
    pass->boxes = boxes;
    pass->n = boxes->view.shape[0];
    pass->threshold = PyFloat_AsDouble(threshold);
    return !(pass->threshold == -1.0 && PyErr_Occurred());
}

static PyObject *run_pass(Pass *pass, Array *groups_array) {
    int32_t *group = NULL;
    Py_ssize_t result;
    if (groups_array != NULL) {
        group = (int32_t *)malloc((size_t)(pass->n > 0 ? pass->n : 1) * sizeof(int32_t));
        if (group == NULL) {
            return PyErr_NoMemory();
        }
    }
    /* Other threads may run meanwhile, on large inputs (releasing the GIL costs more than small ones take). */
    PyThreadState *saved = pass->n >= RELEASE_GIL_FROM ? PyEval_SaveThread() : NULL;
    result = 0;
    if (group != NULL) {
        pass->groups = number_groups(groups_array, pass->n, group);
        pass->group = group;
        if (pass->groups < 0) {
            result = -2;
        }
    }
    if (result == 0) {
        result = greedy(pass);
    }
    if (saved != NULL) {
        PyEval_RestoreThread(saved);
    }
    free(group);
    if (result == -2) {
        return PyErr_NoMemory();
    }
    return Py_BuildValue("nn", result, pass->stop);
}

PyDoc_STRVAR(nms_doc,
             "nms(boxes, scores, groups, iou_threshold, max_output, per_box, base, out, order) -> (count, stop)\n\n"
             "Greedy NMS of (N, 4) xyxy boxes by decreasing score (ties: lower index; NaN last); boxes of\n"
             "different groups (an (N,) integer array, or None for one group) never suppress each other.\n"
             "Writes the rank order (box indices) to order and the kept indices, best first, to out (both\n"
             "int64, at least N long); count is their number, at most max_output (-1: no limit). stop is -1,\n"
             "or, once more than base + per_box * r box comparisons were needed for the first r boxes, the\n"
             "rank r of the first box left undecided: out then holds the kept boxes of the ranks before it.");

static PyObject *py_nms(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "nms() takes 9 arguments");
        return NULL;
    }
    Array boxes = {0}, scores = {0}, groups = {0}, out = {0}, order = {0};
    PyObject *result = NULL;
    Ranked *ranked = NULL;
    Pass pass = {0};
    if (!get_array(args[0], &boxes, 2, "boxes", 0) || !get_array(args[1], &scores, 1, "scores", 0)) {
        goto fail;
    }
    if (scores.kind != 'f' || scores.view.shape[0] != boxes.view.shape[0]) {
        PyErr_SetString(PyExc_TypeError, "scores: expected float32 or float64, one per box");
        goto fail;
    }
    if (!get_groups_and_threshold(args[2], args[3], &boxes, &groups, &pass)) {
        goto fail;
    }
    if (!get_ssize(args[4], &pass.max_output, "max_output") || !get_budget(args[5], args[6], &pass) ||
        !get_out(args[7], &out, pass.n) || !get_out(args[8], &order, pass.n)) {
        goto fail;
    }
    pass.out = (int64_t *)out.view.buf;
    ranked = (Ranked *)malloc((size_t)(pass.n > 0 ? pass.n : 1) * sizeof(Ranked));
    if (ranked == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    PyThreadState *saved = pass.n >= RELEASE_GIL_FROM ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t i = 0; i < pass.n; i++) {
        ranked[i].key = descending_key(as_double(&scores, at1(&scores, i)));
        ranked[i].second = 0;
        ranked[i].index = i;
    }
    int sorted = sort_ranked(ranked, pass.n, 0);
    if (saved != NULL) {
        PyEval_RestoreThread(saved);
    }
    if (!sorted) {
        PyErr_NoMemory();
        goto fail;
    }
    int64_t *rank_order = (int64_t *)order.view.buf;
    for (Py_ssize_t r = 0; r < pass.n; r++) {
        rank_order[r] = (int64_t)ranked[r].index;
    }
    pass.order = rank_order;
    pass.count_from = 0;
    result = run_pass(&pass, groups.held ? &groups : NULL);
fail:
    free(ranked);
    release(&boxes);
    release(&scores);
    release(&groups);
    release(&out);
    release(&order);
    return result;
}

PyDoc_STRVAR(ranked_doc,
             "ranked(boxes, groups, iou_threshold, max_output, known_kept, count_from, per_box, base, out)\n"
             "-> (count, stop)\n\n"
             "Greedy NMS of (N, 4) xyxy boxes already in rank order (best first); groups as in nms(). The\n"
             "first known_kept boxes are kept unchecked. Writes the kept positions, increasing, to out;\n"
             "count is their number: every kept position below count_from, then at most max_output others\n"
             "(-1: no limit). stop as in nms().");

static PyObject *py_ranked(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "ranked() takes 9 arguments");
        return NULL;
    }
    Array boxes = {0}, groups = {0}, out = {0};
    PyObject *result = NULL;
    Pass pass = {0};
    if (!get_array(args[0], &boxes, 2, "boxes", 0)) {
        goto fail;
    }
    if (!get_groups_and_threshold(args[1], args[2], &boxes, &groups, &pass)) {
        goto fail;
    }
    if (!get_ssize(args[3], &pass.max_output, "max_output") || !get_ssize(args[4], &pass.known_kept, "known_kept") ||
        !get_ssize(args[5], &pass.count_from, "count_from") || !get_budget(args[6], args[7], &pass) ||
        !get_out(args[8], &out, pass.n)) {
        goto fail;
    }
    pass.out = (int64_t *)out.view.buf;
    pass.out_ranks = 1;
    result = run_pass(&pass, groups.held ? &groups : NULL);
fail:
    release(&boxes);
    release(&groups);
    release(&out);
    return result;
}

PyDoc_STRVAR(rank_doc,
             "rank(scores, tiebreak, mask, out) -> int\n\n"
             "The rows of the (N,) bool mask by decreasing score (NaN last), ties by increasing tiebreak (an\n"
             "(N,) integer array, or None for the row itself): writes them to out (int64, at least N long) and\n"
             "returns their count. Rows equal on both keys stay in increasing order.");

static PyObject *py_rank(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "rank() takes 4 arguments");
        return NULL;
    }
    Array scores = {0}, tiebreak = {0}, mask = {0}, out = {0};
    PyObject *result = NULL;
    Ranked *ranked = NULL;
    if (!get_array(args[0], &scores, 1, "scores", 0) || !get_array(args[2], &mask, 1, "mask", 0)) {
        goto fail;
    }
    Py_ssize_t n = scores.view.shape[0];
    if (scores.kind != 'f' || mask.kind == 'f' || mask.view.shape[0] != n) {
        PyErr_SetString(PyExc_TypeError, "rank: expected float32 or float64 scores and a mask of the same length");
        goto fail;
    }
    if (args[1] != Py_None) {
        if (!get_array(args[1], &tiebreak, 1, "tiebreak", 0)) {
            goto fail;
        }
        if (tiebreak.kind == 'f' || tiebreak.view.shape[0] != n) {
            PyErr_SetString(PyExc_TypeError, "tiebreak: expected integers, one per score");
            goto fail;
        }
    }
    if (!get_out(args[3], &out, n)) {
        goto fail;
    }
    ranked = (Ranked *)malloc((size_t)(n > 0 ? n : 1) * sizeof(Ranked));
    if (ranked == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    PyThreadState *saved = n >= RELEASE_GIL_FROM ? PyEval_SaveThread() : NULL;
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (as_int64(&mask, at1(&mask, i)) == 0) {
            continue;
        }
        ranked[m].key = descending_key(as_double(&scores, at1(&scores, i)));
        /* unsigned tiebreaks compare as their int64 view: fine below 2**63 */
        ranked[m].second = tiebreak.held ? ascending_int_key(as_int64(&tiebreak, at1(&tiebreak, i))) : 0;
        ranked[m].index = i;
        m++;
    }
    int sorted = sort_ranked(ranked, m, tiebreak.held);
    if (saved != NULL) {
        PyEval_RestoreThread(saved);
    }
    if (!sorted) {
        PyErr_NoMemory();
        goto fail;
    }
    int64_t *rows = (int64_t *)out.view.buf;
    for (Py_ssize_t r = 0; r < m; r++) {
        rows[r] = (int64_t)ranked[r].index;
    }
    result = PyLong_FromSsize_t(m);
fail:
    free(ranked);
    release(&scores);
    release(&tiebreak);
    release(&mask);
    release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"nms", (PyCFunction)(void (*)(void))py_nms, METH_FASTCALL, nms_doc},
    {"ranked", (PyCFunction)(void (*)(void))py_ranked, METH_FASTCALL, ranked_doc},
    {"rank", (PyCFunction)(void (*)(void))py_rank, METH_FASTCALL, rank_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "postprocess._greedy",
    "Greedy class-aware NMS, compiled (postprocess.nms uses it where it is faster; numpy is the reference).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__greedy(void) { return PyModule_Create(&module); }
