"""Near-duplicate detection for the filters: MinHash signatures and LSH bands, in numpy.

Used by core/data/filters.py (`dedup_near`). The same method as datasketch's MinHash + MinHashLSH
(and the same rule for the band/row split), but one vectorised signature per
document (crc32 shingle hashes, one affine permutation matrix) and one dict of 64-bit band keys ->
the first document number with that key. datasketch's objects cost ~8 KB and ~450 us a document on
the benchmark corpus (its MinHash and LSH keep bytes keys, sets and a key list per document).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

_PRIME = np.uint64((1 << 61) - 1)
_MAX32 = np.uint64((1 << 32) - 1)


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


class NearDuplicates:
    """`match(shingles)` -> the number of an earlier document sharing an LSH band, else None (and the
    document is remembered as number `n`, its insertion order)."""

    def __init__(self, threshold: float, num_perm: int, seed: int = 1337):
        self.bands, self.rows = bands_for(threshold, num_perm)
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 1 << 32, num_perm, dtype=np.uint64)[:, None]  # (P, 1)
        self.b = rng.integers(0, 1 << 32, num_perm, dtype=np.uint64)[:, None]
        self.mix = rng.integers(1, 1 << 63, self.rows, dtype=np.uint64) | np.uint64(1)  # odd multipliers
        self.salt = rng.integers(1, 1 << 63, self.bands, dtype=np.uint64)
        self.table: dict[int, int] = {}  # band key -> the first document that had it
        self.n = 0

    def band_keys(self, shingles: Iterable[bytes]) -> list[int]:
        h = np.fromiter((zlib.crc32(s) for s in shingles), dtype=np.uint64)
        if not len(h):
            h = np.zeros(1, dtype=np.uint64)
        sig = ((self.a * h[None, :] + self.b) % _PRIME & _MAX32).min(axis=1)  # (P,) MinHash signature
        rows = sig[: self.bands * self.rows].reshape(self.bands, self.rows)
        with np.errstate(over="ignore"):  # the band key is a hash: wrapping is intended
            keys = (rows * self.mix[None, :]).sum(axis=1, dtype=np.uint64) ^ self.salt
        return keys.tolist()

    def match(self, shingles: Iterable[bytes]) -> int | None:
        keys = self.band_keys(shingles)
        table = self.table
        hits = [table[k] for k in keys if k in table]
        if hits:
            return min(hits)
        n = self.n  # one int object shared by all its bands
        for k in keys:
            table.setdefault(k, n)
        self.n += 1
        return None
