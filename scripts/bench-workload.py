"""The benchmarks' fixed-seed workload (seed 42).

    bench-workload.py DIR                 # DIR/small: 10,000 files of 1-16 KiB in 100
                                          # directories; DIR/big: four 256 MiB files
    bench-workload.py --one-big DIR       # the small files in DIR itself, and DIR/big:
                                          # one 64 MiB file
"""
import os
import random
import sys

one_big = sys.argv[1] == "--one-big"
root = sys.argv[-1]
small = root if one_big else f"{root}/small"
rng = random.Random(42)
for d in range(100):
    os.makedirs(f"{small}/d{d:02}", exist_ok=True)
    for i in range(100):
        with open(f"{small}/d{d:02}/f{i:03}", "wb") as f:
            # Half text-like (compressible), half random, as real trees are.
            n = rng.randint(1024, 16384)
            f.write(rng.randbytes(n) if i % 2 else (b"line %d of a log file\n" % i) * (n // 24 + 1))
if one_big:
    with open(f"{root}/big", "wb") as f:
        f.write(rng.randbytes(64 << 20))
else:
    os.makedirs(f"{root}/big", exist_ok=True)
    for b in range(4):
        with open(f"{root}/big/blob{b}", "wb") as f:
            for _ in range(16):
                f.write(rng.randbytes(16 << 20))
