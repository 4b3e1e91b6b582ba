"""Near-duplicate detection for the filters: MinHash signatures and LSH bands.

Used by core/data/filters.py (`dedup_near`). The same method as datasketch's MinHash + MinHashLSH
(and the same rule for the band/row split), over whole batches of documents, in small kernels
compiled by numba: the word hashes (zlib's crc32) and n-gram shingles in one pass over a batch's
bytes, the signatures (one seeded 32-bit mixer per permutation, which LLVM vectorises) with their
band keys, then, document by document, the LSH memory: one open-addressing table of band keys ->
first document number (`BandTable`, 8 bytes a slot, 3/8 to 3/4 full) instead of a dict (~90 bytes
an entry), 220-450 bytes per kept document at 21 bands, not ~2 KB. A fortune costs 6.2 us in all,
28 us in the numpy version this replaced (mostly call overhead: numpy calls on 20 elements).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from core.errors import UserError

DOC_BITS = 28  # a slot holds a band key's top 36 bits and a document number below 2^28
_DOC_MASK = (1 << DOC_BITS) - 1
MAX_LOAD = 0.75  # the table doubles beyond this share of slots used (0.375-0.75 full after)
VERIFY = 64  # signature values whose low bytes verify a candidate (64 bytes per stored document)


def _kernel(fn: Callable) -> Any:
    """numba.njit, with the compiled code cached on disk (next to this file, else in the user's cache
    folder): the first use in a process costs ~0.5 CPU-seconds with numba's import, ~1.1 uncached.
    Uncached where neither folder can be written (numba refuses to decorate then)."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:
        return numba.njit(nogil=True)(fn)


# numba types the arithmetic of mixed integer kinds as float: every constant of the kernels is typed
_U32, _U64 = np.uint32, np.uint64
_ALL32 = np.uint32(0xFFFFFFFF)
_DOC_BITS64, _SHIFT64, _DOC_MASK64 = _U64(DOC_BITS), _U64(DOC_BITS + 1), _U64(_DOC_MASK)
_MAX32_64 = _U64(0xFFFFFFFF)
_GRAM_MUL = _U64(0x9E3779B97F4A7C15)


def _crc32_table() -> np.ndarray:
    """zlib's crc32 byte table (the reflected polynomial 0xEDB88320), for the word kernel."""
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0xEDB88320 if c & 1 else 0)
        table[i] = c
    return table


_CRC32 = _crc32_table()


@_kernel
def _word_units(buf, units, counts):
    """The crc32 (zlib's) of each word of texts joined by newlines, words by single spaces (utf-8
    bytes in `buf`), into `units`; counts[d] = the words of text d. Returns how many units."""
    n = d = words = 0
    crc = _ALL32
    in_word = False
    for ch in buf:
        if ch == 32 or ch == 10:
            if in_word:
                units[n] = crc ^ _ALL32
                n += 1
                words += 1
                in_word = False
            if ch == 10:
                counts[d] = words
                d += 1
                words = 0
        else:
            if not in_word:
                crc = _ALL32
                in_word = True
            crc = _CRC32[(crc ^ ch) & 0xFF] ^ (crc >> _U32(8))
    if in_word:
        units[n] = crc ^ _ALL32
        n += 1
        words += 1
    counts[d] = words
    return n


@_kernel
def _mix64(x):
    """splitmix64's finaliser: every input bit reaches every output bit (uint64 arithmetic wraps)."""
    x = x ^ (x >> _U64(30))
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


@_kernel
def _shingles(units, counts, size, out, starts):
    """out: the 32-bit hash of each run of `size` consecutive units of each text (units concatenated,
    counts[d] of text d; Horner's rule, so order matters, then mixed); a text with fewer units has one
    hash of all of them, an empty text one hash 0. starts[d]: where text d's hashes begin."""
    u = k = 0
    for d in range(len(counts)):
        c = counts[d]
        starts[d] = k
        if c == 0:
            out[k] = 0
            k += 1
            continue
        width = min(size, c)
        for j in range(u, u + c - width + 1):
            acc = _U64(units[j])
            for m in range(1, width):
                acc = acc * _GRAM_MUL + _U64(units[j + m])
            out[k] = _U32(_mix64(acc) & _MAX32_64)
            k += 1
        u += c


def batch_shingles(norms: list[str], kind: str = "word", size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the shingles of many normalised texts (single spaces), concatenated, and the
    offset where each text's hashes start (a text with fewer units than `size` has one shingle of all
    of them; an empty text one shingle 0). Shingles are word n-grams (crc32 per word) or character
    n-grams (of code points). Repeats are kept: a MinHash is a minimum, which they do not change. A
    text's distinct hashes are the sets {" ".join(words[i:i+n])} / {norm[i:i+n]}, up to collisions."""
    counts = np.empty(len(norms), dtype=np.int64)
    if kind == "char":
        counts[:] = np.fromiter(map(len, norms), dtype=np.int64, count=len(norms))
        units = np.frombuffer("".join(norms).encode("utf-32-le"), dtype=np.uint32)
    else:  # one pass over the batch's bytes: no Python object per word
        buf = np.frombuffer("\n".join(norms).encode("utf-8"), dtype=np.uint8)
        units = np.empty(len(buf) // 2 + 1, dtype=np.uint32)  # a word and its space take 2 bytes or more
        units = units[:_word_units(buf, units, counts)] if norms else units[:0]
    out = np.empty(int(np.maximum(counts - size + 1, 1).sum()), dtype=np.uint32)
    starts = np.empty(len(norms), dtype=np.int64)
    _shingles(units, counts, size, out, starts)
    return out, starts


def bands_for(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimising the area of false positives below the threshold plus false
    negatives above it under the S-curve 1 - (1 - s^r)^b, equally weighted (datasketch's rule)."""
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=float)
    b, r = pairs[:, :1], pairs[:, 1:]  # (K, 1)

    def area(y: np.ndarray, x: np.ndarray) -> np.ndarray:  # trapezoid rule along the last axis
        return ((y[:, 1:] + y[:, :-1]) / 2 * np.diff(x)).sum(axis=1)

    lo, hi = np.linspace(0.0, threshold, 200), np.linspace(threshold, 1.0, 200)
    err = area(1 - (1 - lo**r) ** b, lo) + area((1 - hi**r) ** b, hi)
    k = int(np.argmin(err))
    return int(pairs[k, 0]), int(pairs[k, 1])


@_kernel
def _signatures(h32, starts, a, b, c, sig):
    """sig[d] = the MinHash signature of text d, whose shingle hashes are h32[starts[d]:starts[d + 1]]."""
    n_docs, n_perm = sig.shape
    for d in range(n_docs):
        end = starts[d + 1] if d + 1 < n_docs else len(h32)
        row = sig[d]
        for p in range(n_perm):
            row[p] = _ALL32
        for j in range(starts[d], end):
            h = h32[j]
            for p in range(n_perm):  # multiply-add, xorshift, multiply, in uint32 lanes
                x = _U32(a[p] * h + b[p])
                x = _U32(x ^ (x >> _U32(16)))
                x = _U32(x * c[p])
                if x < row[p]:
                    row[p] = x


@_kernel
def _band_keys(sig, mix, salt, keys):
    """keys[d, k] = band k of signature d hashed: its rows times odd multipliers, summed, salted."""
    rows = len(mix)
    for d in range(sig.shape[0]):
        for k in range(len(salt)):
            acc = _U64(0)
            for r in range(rows):
                acc += _U64(sig[d, k * rows + r]) * mix[r]  # wraps: the key is a hash
            keys[d, k] = acc ^ salt[k]


@_kernel
def _find(table, key):
    """The slot of `key` (slot form) in the table, or the empty slot where it would go."""
    mask = _U64(len(table) - 1)
    i = (key >> _SHIFT64) & mask
    v = table[i]
    while v != 0 and (v ^ key) >> _DOC_BITS64 != 0:
        i = (i + _U64(1)) & mask
        v = table[i]
    return i


@_kernel
def _match_or_insert(table, keys, store, marks, doc, threshold):
    """The smallest document stored under one of `keys` whose stored marks agree with `marks` at the
    threshold (the signature's estimate of Jaccard, corrected for the 1-in-256 chance that unequal
    values share a low byte; no marks: any stored document), and 0 slots taken; else -1 and the slots
    doc took (under its keys not stored yet)."""
    v = len(marks)
    best = -1
    for key in keys:
        slot = table[_find(table, key)]
        if slot == 0:
            continue
        d = np.int64(slot & _DOC_MASK64)
        if best != -1 and d >= best:
            continue
        agree = 0
        for j in range(v):
            agree += store[d * v + j] == marks[j]
        if v == 0 or (agree / v - 1 / 256) * 256 / 255 >= threshold:
            best = d
    if best != -1:
        return best, 0
    taken = 0
    for key in keys:
        i = _find(table, key)  # again: an earlier key of this document may have taken the slot
        if table[i] == 0:
            table[i] = key | _U64(doc)
            taken += 1
    return -1, taken


@_kernel
def _place(table, values):
    """Store distinct slot values in an empty table (after it grew)."""
    for value in values:
        table[_find(table, value)] = value


class BandTable:
    """Band keys -> the first document that had each, by linear probing in one flat array of uint64
    slots at most MAX_LOAD full. A slot is a key's top 36 bits (a 2^-35 chance per probed slot of a
    false match: a few documents in 10^9) over the document's number (28 bits), 8 bytes in all.
    Growing releases the old table before the new one is filled."""

    def __init__(self, capacity: int = 1 << 16):
        self.slots = np.zeros(capacity, dtype=np.uint64)  # 0 marks an empty slot
        self.n = 0
        self.generation = 0  # counts growths

    @staticmethod
    def slot_keys(keys: np.ndarray) -> np.ndarray:
        """The form of 64-bit band keys the table stores: top 36 bits, the lowest of them set (never
        0), the document bits 0."""
        return ((keys >> np.uint64(DOC_BITS)) | np.uint64(1)) << np.uint64(DOC_BITS)

    def match_or_insert(self, keys: np.ndarray, doc: int, store: np.ndarray, marks: np.ndarray,
                        threshold: float) -> int | None:
        """The smallest document stored under one of the keys (slot form) whose marks (`store`,
        len(marks) bytes per document) agree at `threshold`; if none, doc is stored under the keys
        not stored yet and None returned. Without marks (len 0) any stored document matches."""
        if doc > _DOC_MASK:
            raise UserError(f"near dedup holds at most {_DOC_MASK + 1:,} documents; turn data.filters.dedup_near "
                            "off or split the corpus")
        first, taken = _match_or_insert(self.slots, keys, store, marks, doc, threshold)
        self.n += taken
        if self.n > MAX_LOAD * len(self.slots):
            self._grow()
        return None if first < 0 else int(first)

    def _grow(self) -> None:
        used = self.slots[self.slots != 0]
        size = 2 * len(self.slots)
        self.slots = np.zeros(0, dtype=np.uint64)  # the old table goes before the new one is filled
        self.slots = np.zeros(size, dtype=np.uint64)
        _place(self.slots, used)
        self.generation += 1

    def __len__(self) -> int:
        return self.n


class NearDuplicates:
    """`match_keys(keys, marks)` -> the number of an earlier document sharing an LSH band and similar
    by its signature, else None (and the document is remembered as number `n`, its insertion order)."""

    def __init__(self, threshold: float, num_perm: int, seed: int = 1337):
        self.bands, self.rows = bands_for(threshold, num_perm)
        rng = np.random.default_rng(seed)
        # one seeded 32-bit mixer per permutation (multiply-add, xorshift, multiply) in uint32 SIMD.
        # An affine map alone estimates Jaccard as well on average but is less min-wise independent:
        # 21 instead of 6 false band matches among 1,500 templated pages (J ~0.16) at the same seed
        self.a = (rng.integers(0, 1 << 32, num_perm, dtype=np.uint64) | np.uint64(1)).astype(np.uint32)
        self.b = rng.integers(0, 1 << 32, num_perm, dtype=np.uint64).astype(np.uint32)
        self.c = (rng.integers(0, 1 << 32, num_perm, dtype=np.uint64) | np.uint64(1)).astype(np.uint32)
        self.mix = rng.integers(1, 1 << 63, self.rows, dtype=np.uint64) | np.uint64(1)  # odd multipliers
        self.salt = rng.integers(1, 1 << 63, self.bands, dtype=np.uint64)
        self.threshold = threshold
        self.verify = min(VERIFY, num_perm)
        self.table = BandTable()
        self.marks = bytearray()  # `verify` bytes per stored document (grows as a list does: ~1/8 spare)
        self.n = 0

    def signatures(self, hashes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """(D, P) MinHash signatures of D texts whose 32-bit shingle hashes are concatenated in
        `hashes`, text i from starts[i] (batch_shingles)."""
        sig = np.empty((len(starts), len(self.a)), dtype=np.uint32)
        _signatures(hashes.astype(np.uint32, copy=False), starts.astype(np.int64, copy=False), self.a, self.b,
                    self.c, sig)
        return sig

    def batch_keys(self, hashes: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(D, bands) LSH band keys of D texts, in the form the band table stores (BandTable.slot_keys),
        and (D, verify) marks: the low bytes of their first signature values, to verify candidates."""
        sig = self.signatures(hashes, starts)
        keys = np.empty((len(starts), self.bands), dtype=np.uint64)
        _band_keys(sig, self.mix, self.salt, keys)
        return BandTable.slot_keys(keys), (sig[:, : self.verify] & 0xFF).astype(np.uint8)

    def match_keys(self, keys: np.ndarray, marks: np.ndarray) -> int | None:
        """The number of an earlier document sharing a band key and similar by the signature estimate
        of Jaccard, else None (and this one is stored). A band collision alone is not enough: between
        the many templated pages of a big corpus (Jaccard ~0.16) they grow with the square of their
        number. Unequal values share a low byte 1 time in 256."""
        store = np.frombuffer(self.marks, dtype=np.uint8)  # a view for the call: the bytearray can grow after
        first = self.table.match_or_insert(keys, self.n, store, marks, self.threshold)
        del store
        if first is None:
            self.marks += marks.tobytes()
            self.n += 1
        return first
