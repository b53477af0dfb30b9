#!/usr/bin/env python3
"""Per-request costs from an uncompressed callgrind dump (bench/ir-pass.sh writes
them; KEEP=DIR keeps them), for the breakdowns quoted in docs/benchmarks.md.

  bench/cg.py self    DUMP N [TOP]     self cost per function, per request
  bench/cg.py incl    DUMP N PATTERN   self and inclusive cost of matching functions
  bench/cg.py callers DUMP N PATTERN   who calls matching functions: calls and cost
  bench/cg.py callees DUMP N PATTERN   what matching functions call: calls and cost
  bench/cg.py diff    DUMP_A DUMP_B N  self cost per function, B minus A
  bench/cg.py lines   DUMP N FILE [TOP] self cost per source line of files whose
                                       path contains FILE (inlined code included)

N is the number of requests the dump covers (ir-pass.sh's REQUESTS). Costs are
callgrind's instruction counts divided by N. Inlined code counts in the function
it was inlined into, so compare functions across builds with care.

Format read: `fn=` names the current function, `cfn=` a callee; after a
`calls=` line, the next cost line is the call's inclusive cost, not self cost.
"""
import collections
import sys


def records(path):
    """Yields (fn, cfn, calls, cost): calls is None for a self-cost line."""
    fn = cfn = None
    calls = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                fn = line[3:].rstrip("\n")
            elif line.startswith("cfn="):
                cfn = line[4:].rstrip("\n")
            elif line.startswith("calls="):
                calls = int(line[6:].split()[0])
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if len(parts) >= 2 and fn:
                    yield fn, cfn, calls, int(parts[1])
                calls = None


def line_costs(path, pattern):
    """Self cost per (file, line) where the file's path contains `pattern`. The
    file is the one a cost line belongs to: `fi=`/`fe=` (inlined code) or the
    function's `fl=`. Needs the dump uncompressed (`--compress-pos=no`)."""
    cost = collections.Counter()
    fl = cur = None
    after_call = False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("fl="):
                fl = cur = line[3:].rstrip("\n")
            elif line.startswith(("fi=", "fe=")):
                cur = line[3:].rstrip("\n")
            elif line.startswith("fn="):
                cur = fl
            elif line.startswith("calls="):
                after_call = True
            elif line[:1].isdigit():
                parts = line.split()
                if not after_call and len(parts) >= 2 and cur and pattern in cur:
                    cost[(cur, int(parts[0]))] += int(parts[1])
                after_call = False
    return cost


def self_costs(path):
    cost = collections.Counter()
    for fn, _, calls, c in records(path):
        if calls is None:
            cost[fn] += c
    return cost


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    mode = argv[1]
    if mode == "diff":
        a, b, n = argv[2], argv[3], int(argv[4])
        ca, cb = self_costs(a), self_costs(b)
        print(f"total {sum(ca.values()) / n:.0f} -> {sum(cb.values()) / n:.0f} per request")
        delta = {k: (cb[k] - ca[k]) / n for k in ca.keys() | cb.keys()}
        for k, v in sorted(delta.items(), key=lambda kv: -abs(kv[1]))[:40]:
            print(f"{v:+8.0f}  {k[:150]}")
        return
    path, n = argv[2], int(argv[3])
    if mode == "self":
        top = int(argv[4]) if len(argv) > 4 else 40
        cost = self_costs(path)
        print(f"total {sum(cost.values()) / n:.0f} per request")
        for k, c in cost.most_common(top):
            print(f"{c / n:9.0f}  {k[:150]}")
        return
    pattern = argv[4]
    if mode == "lines":
        top = int(argv[5]) if len(argv) > 5 else 40
        cost = line_costs(path, pattern)
        print(f"total {sum(cost.values()) / n:.0f} per request in files matching {pattern}")
        for (file, line), c in cost.most_common(top):
            print(f"{c / n:9.0f}  {file.rsplit('/', 1)[-1]}:{line}")
        return
    if mode == "incl":
        own, called = collections.Counter(), collections.Counter()
        for fn, _, calls, c in records(path):
            if pattern in fn:
                (own if calls is None else called)[fn] += c
        rows = sorted(own.keys() | called.keys(), key=lambda k: -(own[k] + called[k]))
        for k in rows:
            print(f"self {own[k] / n:8.0f}  incl {(own[k] + called[k]) / n:8.0f}  {k[:150]}")
        return
    if mode in ("callers", "callees"):
        calls_n, cost = collections.Counter(), collections.Counter()
        for fn, cfn, calls, c in records(path):
            if calls is None or not cfn:
                continue
            if mode == "callers" and pattern in cfn:
                key = f"{fn[:100]}  ->  {cfn[:50]}"
            elif mode == "callees" and pattern in fn:
                key = cfn[:140]
            else:
                continue
            calls_n[key] += calls
            cost[key] += c
        for k, c in sorted(cost.items(), key=lambda kv: -kv[1])[:30]:
            print(f"{calls_n[k] / n:6.2f} calls {c / n:8.0f}  {k}")
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except BrokenPipeError:  # piped into head
        pass
