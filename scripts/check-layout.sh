#!/usr/bin/env bash
# The dependency rules of src/'s parts (see src/lib.rs), each a check that fails naming
# the offending lines:
#   - the core (src/core/) does no IO and uses nothing of tandem outside core/ and error;
#   - disk/ knows no network, no endpoint, no wire, no output, and prints nothing;
#   - endpoints emit events and never print;
#   - wire/ runs over any stream: no SSH library;
#   - only disk/sys/ calls the OS directly (rustix, libc, std::os::linux), and only it
#     tells OSes apart (cfg(target_os ...)): the rest is the same code everywhere;
#   - the agent binary links neither russh nor clap nor indicatif.
#
#   scripts/check-layout.sh [ROOT]    # ROOT: a checkout (default: this one); with ROOT the
#                                     # agent's dependency tree is not checked
set -uo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2
failed=0

# rule NAME PATTERN FILES...: no line of FILES matches PATTERN (comments included: a path
# named in a doc link is a dependency too).
rule() {
    local name=$1 pattern=$2
    shift 2
    local hits
    hits=$(grep -nE "$pattern" "$@" 2>/dev/null)
    if [ -n "$hits" ]; then
        echo "check-layout: $name:" >&2
        echo "$hits" | sed 's/^/    /' >&2
        failed=1
    fi
}

files() { find "$@" -name '*.rs' 2>/dev/null | sort; }

mapfile -t core < <(files src/core.rs src/core)
rule "the core does IO or uses a part outside core/" \
    'std::(fs|net|process|thread|env)|std::io::(Read|Write|stdin|stdout)|tokio|russh|rustix|libc|crate::(cli|sync|state|endpoint|transport|wire|disk|output)' \
    "${core[@]}"

mapfile -t disk < <(files src/disk.rs src/disk)
rule "disk/ reaches the network, an endpoint, the wire or the output" \
    'std::net|tokio|russh|crate::(cli|sync|endpoint|transport|wire|output)|\b(e?println|e?print)!' \
    "${disk[@]}"

mapfile -t endpoint < <(files src/endpoint.rs src/endpoint)
rule "an endpoint prints (it emits events or notes)" '\b(e?println|e?print)!' "${endpoint[@]}"

mapfile -t wire < <(files src/wire.rs src/wire)
rule "wire/ uses an SSH library or transport" 'russh|crate::transport::ssh' "${wire[@]}"

mapfile -t os_callers < <(files src agent | grep -v '^src/disk/sys')
rule "a raw OS call outside disk/sys/" 'rustix::|libc::|std::os::linux' "${os_callers[@]}"
rule "a cfg(target_os) outside disk/sys/ (give sys/ a function instead)" \
    'target_os *=' "${os_callers[@]}"

if [ -z "${1:-}" ]; then
    if ! deps=$(cargo tree -p tandem-agent -e normal --prefix none 2>&1); then
        echo "check-layout: cannot list the agent's dependencies: $deps" >&2
        exit 1
    fi
    bad=$(echo "$deps" | grep -E '^(russh|clap|indicatif) ' | sort -u)
    if [ -n "$bad" ]; then
        echo "check-layout: the agent binary links what only the client needs:" >&2
        echo "$bad" | sed 's/^/    /' >&2
        failed=1
    fi
fi

if [ "$failed" != 0 ]; then
    echo "check-layout: the rules above are in src/lib.rs and this script's header" >&2
    exit 1
fi
echo "check-layout: ${#core[@]} core, ${#disk[@]} disk, ${#endpoint[@]} endpoint, ${#wire[@]} wire files keep their rules; the agent links no russh, clap or indicatif"
