"""Near-duplicate detection for the filters: MinHash signatures and LSH bands, in numpy.

Used by core/data/filters.py (`dedup_near`). The same method as datasketch's MinHash + MinHashLSH
(and the same rule for the band/row split), but vectorised over whole batches of documents: the
shingles of a batch are hashed at once (crc32 per word, mapped in C, then n-gram hashes in numpy),
the signatures come from one seeded 32-bit mixer per permutation over cache-sized chunks of the
batch, and the LSH memory is one open-addressing table of band keys -> first document number
(`BandTable`, 8 bytes a slot, 3/8 to 3/4 full) instead of a dict (~90 bytes an entry): 220-450
bytes per kept document at 21 bands, not ~2 KB.
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Callable

import numpy as np

from core.errors import UserError

_MAX32 = np.uint64((1 << 32) - 1)
_GRAM_MUL = np.uint64(0x9E3779B97F4A7C15)
_CHUNK = 1 << 10  # shingles per signature pass: a (perm, shingle) buffer of 0.5 MB at 128 perms stays in cache


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit reaches every output bit (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _grams(units: np.ndarray, size: int) -> np.ndarray:
    """A hash of each run of `size` consecutive units (all of them as one when there are fewer)."""
    n = len(units)
    size = min(size, n)
    acc = units[: n - size + 1].copy()
    for k in range(1, size):  # Horner's rule: order matters, (a, b) and (b, a) differ
        acc *= _GRAM_MUL
        acc += units[k:n - size + 1 + k]
    return acc


def _units(norms: list[str], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The units of many normalised texts, concatenated (crc32 per word, or code points), and each
    text's unit count. One C pass for the whole batch: no numpy call per text."""
    if kind == "char":
        counts = np.fromiter(map(len, norms), dtype=np.int64, count=len(norms))
        units = np.frombuffer("".join(norms).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    else:  # a normalised text is words joined by single spaces
        counts = np.fromiter((n.count(" ") + 1 if n else 0 for n in norms), dtype=np.int64, count=len(norms))
        ws = " ".join(norms).encode("utf-8").split()
        units = np.fromiter(map(zlib.crc32, ws), dtype=np.uint64, count=len(ws))
    return units, counts


def batch_shingles(norms: list[str], kind: str = "word", size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the shingles of many normalised texts (single spaces), concatenated, and the
    offset where each text's hashes start (a text with fewer units than `size` has one shingle of all
    of them; an empty text one shingle 0). Shingles are word n-grams (crc32 per word) or character
    n-grams (of code points). Repeats are kept: a MinHash is a minimum, which they do not change. A
    text's distinct hashes are the sets {" ".join(words[i:i+n])} / {norm[i:i+n]}, up to collisions."""
    units, counts = _units(norms, kind)
    ends = np.cumsum(counts)
    starts = ends - counts
    with np.errstate(over="ignore"):
        grams = _grams(units, size) if len(units) >= size else np.zeros(0, dtype=np.uint64)
        valid = np.ones(len(grams), dtype=bool)
        for k in range(1, size):  # a gram that starts in the last size - 1 units of a text crosses its end
            pos = ends - k
            valid[pos[(pos >= starts) & (pos < len(grams))]] = False
        out = _mix64(grams[valid]) & _MAX32
        short = np.flatnonzero(counts < size)
        if len(short):  # one shingle of all units (0 for an empty text), where its text's hashes begin
            extra = [int(_mix64(_grams(units[starts[i]:ends[i]], size))[0] & _MAX32) if counts[i] else 0
                     for i in short.tolist()]
            per = np.maximum(counts - size + 1, 0)
            out = np.insert(out, (np.cumsum(per) - per)[short], np.array(extra, dtype=np.uint64))
    n = np.maximum(counts - size + 1, 1)
    return out, np.cumsum(n) - n


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


DOC_BITS = 28  # a slot holds a band key's top 36 bits and a document number below 2^28
_DOC_MASK = (1 << DOC_BITS) - 1
MAX_LOAD = 0.75  # the table doubles beyond this share of slots used (0.375-0.75 full after)
_PLACE_BATCH = 1 << 18  # keys re-placed per numpy round trip when the table grows (bounds the temporaries)


class BandTable:
    """Band keys -> the first document that had each, by linear probing in one flat array of uint64
    slots at most MAX_LOAD full. A slot is a key's top 36 bits (a 2^-35 chance per probed slot of a
    false match: a few documents in 10^9) over the document's number (28 bits), 8 bytes in all. A
    batch's keys are probed at once in numpy (`probe`); a new document whose end slots are still
    empty is stored in a few numpy calls (`insert_if_new`), the others key by key in Python
    (`match_or_insert`: array.array indexing is ~30 ns, a numpy call on 20 elements microseconds).
    Growing releases the old table, then re-places its keys in numpy, batch by batch."""

    def __init__(self, capacity: int = 1 << 16):
        self.slots = array("Q", bytes(8 * capacity))  # 0 marks an empty slot
        self._view = np.frombuffer(self.slots, dtype=np.uint64)  # the same buffer, for numpy
        self.n = 0
        self.generation = 0  # counts growths: a probe's slots hold only within one generation

    def probe(self, keys: np.ndarray) -> np.ndarray:
        """Where the lookup of each key (any shape, slot_keys form) ends now: its slot, or the empty
        slot it would take. Slots are never emptied, so within a generation a probed key whose end
        slot is still empty is still absent (`insert_if_new`)."""
        flat = keys.ravel()
        mask = len(self._view) - 1
        idx = ((flat >> np.uint64(DOC_BITS + 1)) & np.uint64(mask)).astype(np.int64)
        todo = np.arange(len(flat))
        while len(todo):
            v = self._view[idx[todo]]
            on = (v != 0) & ((v ^ flat[todo]) >> np.uint64(DOC_BITS) != 0)  # taken by another key
            todo = todo[on]
            idx[todo] = (idx[todo] + 1) & mask
        return idx.reshape(keys.shape)

    def insert_if_new(self, keys: np.ndarray, ends: np.ndarray, doc: int) -> bool:
        """Store doc under all its keys if every probed end slot (distinct, this generation's) is still
        empty, in a few numpy calls; False (nothing done) when the full probe must decide."""
        if doc > _DOC_MASK or self._view[ends].any():
            return False
        self._view[ends] = keys | np.uint64(doc)
        self.n += len(keys)
        if self.n > MAX_LOAD * len(self._view):
            self._grow()
        return True

    @staticmethod
    def slot_keys(keys: np.ndarray) -> np.ndarray:
        """The form of 64-bit band keys the table stores: top 36 bits, the lowest of them set (never
        0), the document bits 0."""
        return ((keys >> np.uint64(DOC_BITS)) | np.uint64(1)) << np.uint64(DOC_BITS)

    def match_or_insert(self, keys: list[int], doc: int, accept: Callable[[int], bool] | None = None) -> int | None:
        """The smallest document stored under any of the keys (slot_keys form) that `accept`s; if
        none, store doc under the keys not stored yet and return None. (The probing loop is inline:
        this runs ~20 times a document.)"""
        if doc > _DOC_MASK:
            raise UserError(f"near dedup holds at most {_DOC_MASK + 1:,} documents; turn data.filters.dedup_near "
                            "off or split the corpus")
        table, mask, shift = self.slots, len(self.slots) - 1, DOC_BITS + 1
        best: int | None = None
        free: list[tuple[int, int]] = []
        for k in keys:
            i = (k >> shift) & mask
            v = table[i]
            while v and (v ^ k) >> DOC_BITS:
                i = (i + 1) & mask
                v = table[i]
            if v:
                d = v & _DOC_MASK
                if (best is None or d < best) and (accept is None or accept(d)):
                    best = d
            else:
                free.append((k, i))
        if best is not None:
            return best
        for k, i in free:
            v = table[i]
            while v and (v ^ k) >> DOC_BITS:  # taken by an earlier key of this document
                i = (i + 1) & mask
                v = table[i]
            if not v:
                table[i] = k | doc
                self.n += 1
        if self.n > MAX_LOAD * len(table):
            self._grow()
        return None

    def _grow(self) -> None:
        old = np.frombuffer(self.slots, dtype=np.uint64)
        used = old[old != 0]
        size = len(self.slots) * 2
        del old
        self._view = np.zeros(0, dtype=np.uint64)
        self.slots = array("Q")  # the old table goes before the new one is filled
        self.slots = array("Q", bytes(8 * size))
        self._view = np.frombuffer(self.slots, dtype=np.uint64)
        self.generation += 1
        for start in range(0, len(used), _PLACE_BATCH):
            self._place(used[start:start + _PLACE_BATCH])
        self.n = len(used)

    def _place(self, values: np.ndarray) -> None:
        """Linear probing for many distinct new slot values at once: in each round, the first waiting
        value of every free slot takes it and the others move one slot on."""
        table = self._view
        mask = len(table) - 1
        idx = ((values >> np.uint64(DOC_BITS + 1)) & np.uint64(mask)).astype(np.int64)
        todo = np.arange(len(values))
        while len(todo):
            free = np.flatnonzero(table[idx[todo]] == 0)
            won = free[np.unique(idx[todo[free]], return_index=True)[1]]  # positions in todo
            win = todo[won]
            table[idx[win]] = values[win]
            waiting = np.ones(len(todo), dtype=bool)
            waiting[won] = False
            todo = todo[waiting]
            idx[todo] = (idx[todo] + 1) & mask

    def __len__(self) -> int:
        return self.n


class NearDuplicates:
    """`match(hashes)` -> the number of an earlier document sharing an LSH band, else None (and the
    document is remembered as number `n`, its insertion order)."""

    def __init__(self, threshold: float, num_perm: int, seed: int = 1337):
        self.bands, self.rows = bands_for(threshold, num_perm)
        rng = np.random.default_rng(seed)
        # one seeded 32-bit mixer per permutation (multiply-add, xorshift, multiply) in uint32 SIMD.
        # An affine map alone estimates Jaccard as well on average but is less min-wise independent:
        # 21 instead of 6 false band matches among 1,500 templated pages (J ~0.16) at the same seed
        self.a = (rng.integers(0, 1 << 32, num_perm, dtype=np.uint64) | np.uint64(1)).astype(np.uint32)[:, None]
        self.b = rng.integers(0, 1 << 32, num_perm, dtype=np.uint64).astype(np.uint32)[:, None]  # (P, 1)
        self.c = (rng.integers(0, 1 << 32, num_perm, dtype=np.uint64) | np.uint64(1)).astype(np.uint32)[:, None]
        self.mix = rng.integers(1, 1 << 63, self.rows, dtype=np.uint64) | np.uint64(1)  # odd multipliers
        self.salt = rng.integers(1, 1 << 63, self.bands, dtype=np.uint64)
        self._x = np.empty((num_perm, _CHUNK), dtype=np.uint32)  # the signature's buffer (P, _CHUNK)
        self._t = np.empty((num_perm, _CHUNK), dtype=np.uint32)
        self.threshold = threshold
        self.verify = min(VERIFY, num_perm)
        self.table = BandTable()
        self.marks = bytearray()  # `verify` bytes per stored document: the low bytes of its signature
        self.n = 0

    def signatures(self, hashes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """(D, P) MinHash signatures of D texts whose 32-bit shingle hashes are concatenated in
        `hashes`, text i from starts[i] (batch_shingles): the permutations run over column chunks
        of the whole batch in two reused buffers that stay in the CPU cache, and
        np.minimum.reduceat takes each text's minimum."""
        sig = np.full((len(starts), len(self.a)), 0xFFFFFFFF, dtype=np.uint32)
        ends = np.append(starts[1:], len(hashes))
        h32 = hashes.astype(np.uint32)
        for c0 in range(0, len(hashes), _CHUNK):
            c1 = min(c0 + _CHUNK, len(hashes))
            x, t = self._x[:, : c1 - c0], self._t[:, : c1 - c0]
            lo, hi = np.searchsorted(ends, c0, side="right"), np.searchsorted(starts, c1)  # texts in the chunk
            np.multiply(self.a, h32[None, c0:c1], out=x)  # (P, N), wraps
            x += self.b
            np.right_shift(x, 16, out=t)
            x ^= t
            x *= self.c  # a last xorshift (splitmix's) keeps the top bits: the minimum barely moves
            red = np.minimum.reduceat(x, np.maximum(starts[lo:hi] - c0, 0), axis=1)  # (P, texts)
            np.minimum(sig[lo:hi], red.T, out=sig[lo:hi])
        return sig

    def batch_keys(self, hashes: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(D, bands) LSH band keys of D texts, in the form the band table stores (BandTable.slot_keys),
        and (D, verify) marks: the low bytes of their first signature values, to verify candidates."""
        full = self.signatures(hashes, starts)
        sig = full[:, : self.bands * self.rows].astype(np.uint64)
        rows = sig.reshape(len(starts), self.bands, self.rows)
        with np.errstate(over="ignore"):  # the band key is a hash: wrapping is intended
            keys = (rows * self.mix).sum(axis=2, dtype=np.uint64) ^ self.salt
        return BandTable.slot_keys(keys), (full[:, : self.verify] & 0xFF).astype(np.uint8)

    def similar(self, doc: int, marks: np.ndarray) -> bool:
        """Is stored document `doc` a near duplicate by the signature estimate of Jaccard? A band
        collision alone is not enough: between the many templated pages of a big corpus (Jaccard ~0.16)
        they grow with the square of their number. Unequal values share a low byte 1 time in 256."""
        v = self.verify
        stored = np.frombuffer(bytes(self.marks[doc * v:(doc + 1) * v]), dtype=np.uint8)
        agree = np.count_nonzero(stored == marks) / v
        return bool((agree - 1 / 256) * 256 / 255 >= self.threshold)

    def match_keys(self, keys: np.ndarray, marks: np.ndarray, probe: Probe | None = None, row: int = 0) -> int | None:
        """The number of an earlier document sharing a band key and `similar`, else None (and this one
        is stored). With its batch's `probe` (row `row`), a new document is stored in a few numpy
        calls when its keys' end slots are still empty; otherwise the table is probed key by key."""
        t = self.table
        ends = probe.ends(row) if probe is not None else None
        if ends is not None and t.insert_if_new(keys, ends, self.n):
            first = None
        else:
            first = t.match_or_insert(keys.tolist(), self.n, lambda d: self.similar(d, marks))
        if first is None:
            self.marks += marks.tobytes()
            self.n += 1
        return first


VERIFY = 64  # signature values whose low bytes verify a candidate (64 bytes per stored document)
PROBE_ROWS = 32  # texts probed at once: fewer numpy calls, yet few end slots taken before their use


class Probe:
    """The band table probed for a batch's keys (D, bands), PROBE_ROWS texts at a time when the first
    of them is asked (again after the table grew): the later a probe, the fewer of its end slots
    other documents took in between."""

    def __init__(self, table: BandTable, keys: np.ndarray):
        self.table, self.keys = table, keys
        self._at, self._generation = -1, -1
        self._ends = np.zeros((0, 0), dtype=np.int64)
        self._distinct = np.zeros(0, dtype=bool)

    def ends(self, row: int) -> np.ndarray | None:
        """Where the keys of text `row` ended when probed; None when two of them share an end slot."""
        at = row - row % PROBE_ROWS
        if at != self._at or self._generation != self.table.generation:
            self._ends = self.table.probe(self.keys[at:at + PROBE_ROWS])
            self._distinct = (np.diff(np.sort(self._ends, axis=1), axis=1) != 0).all(axis=1)
            self._at, self._generation = at, self.table.generation
        return self._ends[row - at] if self._distinct[row - at] else None
