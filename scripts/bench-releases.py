#!/usr/bin/env python3
"""Real edits for the benchmark: successive releases of a crate laid over one working tree.

  bench-releases.py fetch CACHE NAME VERSION...   download NAME-VERSION.crate from crates.io
  bench-releases.py unpack CACHE NAME VERSION DIR unpack one release into DIR (fresh)
  bench-releases.py overlay NEW TREE              make TREE hold what NEW holds, touching only
                                                  what differs (unchanged files keep their
                                                  mtimes, as in a working tree)
  bench-releases.py split NEW A B                 NEW's differences from A (A and B alike),
                                                  alternately on A and on B: each side gets
                                                  half of one release's changes
  bench-releases.py count NEW TREE                how many files NEW changes in TREE
"""
import os
import shutil
import sys
import tarfile
import urllib.request


def fetch(cache, name, versions):
    os.makedirs(cache, exist_ok=True)
    for v in versions:
        path = os.path.join(cache, f"{name}-{v}.crate")
        if not os.path.exists(path):
            url = f"https://static.crates.io/crates/{name}/{name}-{v}.crate"
            with urllib.request.urlopen(url, timeout=60) as r, open(path + ".part", "wb") as f:
                shutil.copyfileobj(r, f)
            os.rename(path + ".part", path)


def unpack(cache, name, version, dest):
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    prefix = f"{name}-{version}/"
    with tarfile.open(os.path.join(cache, f"{name}-{version}.crate")) as t:
        for m in t.getmembers():
            if not m.isfile() or not m.name.startswith(prefix):
                continue
            rel = m.name[len(prefix):]
            out = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with t.extractfile(m) as src, open(out, "wb") as f:
                shutil.copyfileobj(src, f)
            os.chmod(out, 0o644)


def files(root):
    found = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            found[os.path.relpath(p, root)] = p
    return found


def differences(new, tree):
    """Paths (sorted) whose content NEW has otherwise than TREE, or that one side lacks."""
    a, b = files(new), files(tree)
    out = []
    for rel in sorted(set(a) | set(b)):
        if rel not in a or rel not in b:
            out.append(rel)
            continue
        with open(a[rel], "rb") as x, open(b[rel], "rb") as y:
            if x.read() != y.read():
                out.append(rel)
    return out


def apply(new, tree, rels):
    for rel in rels:
        src, dst = os.path.join(new, rel), os.path.join(tree, rel)
        if os.path.exists(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            # Written anew, as an editor or `git checkout` writes: a new mtime.
            tmp = dst + ".bench-tmp"
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dst)
        elif os.path.exists(dst):
            os.remove(dst)
            d = os.path.dirname(dst)
            while d != tree.rstrip("/") and not os.listdir(d):
                os.rmdir(d)
                d = os.path.dirname(d)


def main(argv):
    cmd = argv[1]
    if cmd == "fetch":
        fetch(argv[2], argv[3], argv[4:])
    elif cmd == "unpack":
        unpack(argv[2], argv[3], argv[4], argv[5])
    elif cmd == "overlay":
        apply(argv[2], argv[3], differences(argv[2], argv[3]))
    elif cmd == "split":
        rels = differences(argv[2], argv[3])
        apply(argv[2], argv[3], rels[0::2])
        apply(argv[2], argv[4], rels[1::2])
    elif cmd == "count":
        print(len(differences(argv[2], argv[3])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
