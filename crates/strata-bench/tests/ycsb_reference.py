#!/usr/bin/env python3
"""Reference values for strata-bench's YCSB generators, computed independently from
YCSB's published algorithm (site.ycsb.generator.ZipfianGenerator,
ScrambledZipfianGenerator, Utils.fnvhash64) with Java's long arithmetic emulated.

    python3 crates/strata-bench/tests/ycsb_reference.py

prints the table embedded in tests/distributions.rs. The generators are fed fixed
uniform doubles instead of Java's random source, so both sides see the same draws.
"""

import math

MASK = (1 << 64) - 1


def to_signed(x):
    x &= MASK
    return x - (1 << 64) if x >= (1 << 63) else x


def fnvhash64(val):
    # Utils.fnvhash64: FNV-1a over the 8 low-order octets, then Math.abs.
    hashval = to_signed(0xCBF29CE484222325)
    for _ in range(8):
        octet = val & 0xFF
        val = val >> 8  # arithmetic shift on a non-negative long
        hashval = to_signed(hashval ^ octet)
        hashval = to_signed(hashval * 1099511628211)
    if hashval == -(1 << 63):
        return hashval  # Math.abs(Long.MIN_VALUE) overflows to itself
    return abs(hashval)


def zetastatic(n, theta):
    return sum(1.0 / math.pow(i + 1, theta) for i in range(n))


class Zipfian:
    def __init__(self, mn, mx, theta, zetan=None):
        self.items = mx - mn + 1
        self.base = mn
        self.theta = theta
        self.zeta2theta = zetastatic(2, theta)
        self.alpha = 1.0 / (1.0 - theta)
        self.zetan = zetastatic(self.items, theta) if zetan is None else zetan
        self.eta = (1 - math.pow(2.0 / self.items, 1 - theta)) / (1 - self.zeta2theta / self.zetan)

    def next(self, u):
        uz = u * self.zetan
        if uz < 1.0:
            return self.base
        if uz < 1.0 + math.pow(0.5, self.theta):
            return self.base + 1
        return self.base + int(self.items * math.pow(self.eta * u - self.eta + 1, self.alpha))


class Scrambled:
    ZETAN = 26.46902820178302
    ITEM_COUNT = 10000000000

    def __init__(self, mn, mx):
        self.min = mn
        self.itemcount = mx - mn + 1
        self.gen = Zipfian(0, self.ITEM_COUNT, 0.99, self.ZETAN)

    def next(self, u):
        r = self.gen.next(u)
        h = fnvhash64(r)
        # Java's % keeps the dividend's sign.
        m = h % self.itemcount if h >= 0 else -((-h) % self.itemcount)
        return self.min + m


US = [0.0001, 0.01, 0.02, 0.05, 0.1, 0.25, 0.3333, 0.5, 0.75, 0.9, 0.99, 0.999999]

if __name__ == "__main__":
    z = Zipfian(0, 999, 0.99)
    s = Scrambled(0, 999)
    for u in US:
        print(f"({u!r}, {z.next(u)}, {s.gen.next(u)}, {s.next(u)}),")
    for v in [0, 1, 2, 255, 256, 123456789, 9999999999]:
        print(f"({v}, {fnvhash64(v)}),")
