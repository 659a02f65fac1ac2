#!/usr/bin/env bash
# The reconciliation core must stay pure: no filesystem, network, processes or async.
set -euo pipefail
cd "$(dirname "$0")/.."
core=(src/path.rs src/tree.rs src/plan.rs src/reconcile.rs src/reconcile/*.rs)
if grep -nE 'std::(fs|net|process|thread|env)|std::io::(Read|Write|stdin|stdout)|tokio|russh|rustix|crate::(fsops|endpoint|scan|sync|session|baseline)' "${core[@]}"; then
    echo "check-pure: the files above are part of the pure core and must not do IO" >&2
    exit 1
fi
echo "check-pure: ${#core[@]} core files are free of IO"
