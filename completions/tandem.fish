# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tandem_global_optspecs
    string join \n N/name= d/dir= r/remote-dir= user= host= P/port= K/direction= f/favor= keep-both n/dry-run q/quiet v/verbose y/yes e/everything m/preserve-mtime halt-on-error scan-threads= no-hard-links numeric-ids preserve-acls= remote-preserve-acls= exclude= include= exclude-dirs-older-than= exclude-from= max-delete= compress= L/local-logdir= R/remote-logdir= dedup= keep-dir-local= keep-dir-remote= l/target-rate= pending-max= agent-path= i/private-key-path= accept-new-host-key connect-timeout= c/cipher= proxy= rsh= proxy-command= J= transfer-threads= C/continuous scan-interval= remote-scan-interval= verify-interval= cooloff= verify repair format= s/source-dir= h/help V/version
end

function __fish_tandem_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tandem_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tandem_using_subcommand
    set -l cmd (__fish_tandem_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tandem -n "__fish_tandem_needs_command" -s N -l name -d 'Session name; keys the baseline and the lock (default: derived from the two roots)' -r
complete -c tandem -n "__fish_tandem_needs_command" -s d -l dir -d 'The local directory' -r -F
complete -c tandem -n "__fish_tandem_needs_command" -s r -l remote-dir -d 'The other side: USER@HOST:PATH (or HOST:PATH, ssh://USER@HOST:PORT/PATH), or a local directory' -r
complete -c tandem -n "__fish_tandem_needs_command" -l user -d 'Remote user name (may contain \'@\')' -r
complete -c tandem -n "__fish_tandem_needs_command" -l host -d 'Remote host' -r
complete -c tandem -n "__fish_tandem_needs_command" -s P -l port -d 'Remote SSH port' -r
complete -c tandem -n "__fish_tandem_needs_command" -s K -l direction -d 'push, pull or bidi' -r -f -a "push\t'The remote becomes a replica of the local directory'
pull\t'The local directory becomes a replica of the remote'
bidi\t'Two-way: changes on either side propagate; conflicts are reported'"
complete -c tandem -n "__fish_tandem_needs_command" -s f -l favor -d 'Conflict policy in bidi: src (local), dst (remote), old or new' -r -f -a "src\t'The local (-d) version wins'
dst\t'The remote (-r) version wins'
old\t'The version with the older modification time wins'
new\t'The version with the newer modification time wins'"
complete -c tandem -n "__fish_tandem_needs_command" -l scan-threads -d 'Threads per side that look entries up while scanning (more help on fast disks with cores to spare)' -r
complete -c tandem -n "__fish_tandem_needs_command" -l preserve-acls -d 'POSIX ACLs and user xattrs on this side: none, native, or metafile (kept in a side file per directory)' -r
complete -c tandem -n "__fish_tandem_needs_command" -l remote-preserve-acls -d 'The same for the other side [default: as --preserve-acls]' -r
complete -c tandem -n "__fish_tandem_needs_command" -l exclude -d 'Leave out paths matching this gitignore-style pattern (repeatable)' -r
complete -c tandem -n "__fish_tandem_needs_command" -l include -d 'Keep paths matching this pattern even if excluded (repeatable)' -r
complete -c tandem -n "__fish_tandem_needs_command" -l exclude-dirs-older-than -d 'Leave alone directories whose mtime is older than this on either side (e.g. 7d, 1w0d0h0m0s): their contents are neither copied nor deleted' -r
complete -c tandem -n "__fish_tandem_needs_command" -l exclude-from -d 'Read exclude patterns from a file (one per line, \'!\' to include)' -r -F
complete -c tandem -n "__fish_tandem_needs_command" -l max-delete -d 'Refuse a run that would delete more than N entries, or P% of a side' -r
complete -c tandem -n "__fish_tandem_needs_command" -l compress -d 'Data compression on the wire: zstd (level 6 for metadata, deltas and small files, 1 for large files sent whole), zstd:LEVEL, zstd:LEVEL,BULK or none [default: zstd over SSH, none for a local -r directory]' -r
complete -c tandem -n "__fish_tandem_needs_command" -s L -l local-logdir -d 'Write a log (timestamped status lines, conflicts, errors) into DIR, rotated at MB megabytes (default 10)' -r
complete -c tandem -n "__fish_tandem_needs_command" -s R -l remote-logdir -d 'The same for the agent, on the other side' -r
complete -c tandem -n "__fish_tandem_needs_command" -l dedup -d 'Content already on the receiving side (same BLAKE3) is copied there (copy; a reflink where possible) or hard-linked (hardlink, when attributes match) instead of sent' -r
complete -c tandem -n "__fish_tandem_needs_command" -l keep-dir-local -d 'Keep what the sync deletes or replaces on this side in DIR (dated subdirectories; relative to the -d directory, and then excluded from the sync, or absolute)' -r -F
complete -c tandem -n "__fish_tandem_needs_command" -l keep-dir-remote -d 'The same on the other side (relative to its root, or absolute there)' -r -F
complete -c tandem -n "__fish_tandem_needs_command" -s l -l target-rate -d 'Most bits per second on the wire, e.g. 500m (k, m, g: thousands, millions, billions)' -r
complete -c tandem -n "__fish_tandem_needs_command" -l pending-max -d 'Most files in flight at once' -r
complete -c tandem -n "__fish_tandem_needs_command" -l agent-path -d 'Path of the tandem-agent program for the other side (on the remote host over SSH)' -r -F
complete -c tandem -n "__fish_tandem_needs_command" -s i -l private-key-path -d 'SSH key to log in with; repeatable, tried in order before ssh-agent and ~/.ssh/id_*' -r -F
complete -c tandem -n "__fish_tandem_needs_command" -l connect-timeout -d 'Give up connecting after this long (e.g. 15s, 1m) [default: 15s, or ConnectTimeout]' -r
complete -c tandem -n "__fish_tandem_needs_command" -s c -l cipher -d 'SSH cipher: aes128-gcm, aes256-gcm, chacha20-poly1305, or none for the fastest available (SSH always encrypts)' -r
complete -c tandem -n "__fish_tandem_needs_command" -l proxy -d 'Reach the remote through a jump host' -r
complete -c tandem -n "__fish_tandem_needs_command" -l rsh -d 'Reach the host through this command instead of the built-in SSH client, as rsync\'s -e: e.g. ssh, or \'ssh -F ~/.ssh/work_config\' (given to -e, the first word must be a program; -e alone is --everything)' -r
complete -c tandem -n "__fish_tandem_needs_command" -l proxy-command -d 'Reach the host through this command\'s stdin and stdout, as ProxyCommand (%h %p %r %n %% expanded; \'none\' ignores ProxyCommand in ~/.ssh/config)' -r
complete -c tandem -n "__fish_tandem_needs_command" -s J -d 'Jump hosts, as ssh -J (\'none\' ignores ProxyJump in ~/.ssh/config)' -r
complete -c tandem -n "__fish_tandem_needs_command" -l transfer-threads -d 'Parallel SSH channels for file data: auto (the default) opens more on a long link, one more per 4 ms of round trip; with :SIZE, files above SIZE (e.g. 64M) use their own channels' -r
complete -c tandem -n "__fish_tandem_needs_command" -l scan-interval -d 'With -C: rescan the whole local tree this often (e.g. 4h, 1w0d0h0m0s)' -r
complete -c tandem -n "__fish_tandem_needs_command" -l remote-scan-interval -d 'With -C: rescan the whole far tree this often' -r
complete -c tandem -n "__fish_tandem_needs_command" -l verify-interval -d 'With -C: verify the session this often (e.g. 1d), in the background at a bounded rate: what is corrupt is reported (and sets bit 2), `tandem verify --repair` fixes it' -r
complete -c tandem -n "__fish_tandem_needs_command" -l cooloff -d 'With -C: send a file only once it has stopped changing for this long (0 to 60s)' -r
complete -c tandem -n "__fish_tandem_needs_command" -l format -d 'Output format' -r -f -a "human\t'Status lines for people'
json\t'One JSON object per line on stdout'"
complete -c tandem -n "__fish_tandem_needs_command" -s s -l source-dir -d 'filesync form: the directory the named FILEs are copied from (with -d DST)' -r
complete -c tandem -n "__fish_tandem_needs_command" -l keep-both -d 'On conflict keep both versions; the loser is renamed NAME.conflict-HOST-TIME'
complete -c tandem -n "__fish_tandem_needs_command" -s n -l dry-run -d 'Decide and print the plan as shell commands; change nothing'
complete -c tandem -n "__fish_tandem_needs_command" -s q -l quiet -d 'Print nothing but errors and unresolved conflicts (for cron)'
complete -c tandem -n "__fish_tandem_needs_command" -s v -l verbose -d 'Say why for every file'
complete -c tandem -n "__fish_tandem_needs_command" -s y -l yes -d 'Skip the safety prompts (mass deletion, changed root)'
complete -c tandem -n "__fish_tandem_needs_command" -s e -l everything -d 'Owner and mode differences also count as differences and conflicts'
complete -c tandem -n "__fish_tandem_needs_command" -s m -l preserve-mtime -d 'Accepted for filesync compatibility; mtimes are always preserved'
complete -c tandem -n "__fish_tandem_needs_command" -l halt-on-error -d 'Stop at the first read or write error'
complete -c tandem -n "__fish_tandem_needs_command" -l no-hard-links -d 'Copy hard-linked names as separate files (by default they stay hard links)'
complete -c tandem -n "__fish_tandem_needs_command" -l numeric-ids -d 'Keep owner and group numbers as they are (by default they travel by name)'
complete -c tandem -n "__fish_tandem_needs_command" -l accept-new-host-key -d 'Record the host key of a host seen for the first time in ~/.ssh/known_hosts (a changed key is always refused)'
complete -c tandem -n "__fish_tandem_needs_command" -s C -l continuous -d 'Keep running: watch both trees and sync each change as it settles'
complete -c tandem -n "__fish_tandem_needs_command" -l verify -d '`tandem verify`: re-read both sides against the baseline (set by the word `verify` before the options)'
complete -c tandem -n "__fish_tandem_needs_command" -l repair -d 'With `tandem verify`: copy the good version over a corrupt copy (the corrupt one is kept in the keep directory, or beside it as NAME.corrupt-TIME)'
complete -c tandem -n "__fish_tandem_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tandem -n "__fish_tandem_needs_command" -s V -l version -d 'Print version'
complete -c tandem -n "__fish_tandem_needs_command" -a "sessions" -d 'List the sessions that have a baseline'
complete -c tandem -n "__fish_tandem_needs_command" -a "status" -d 'Show what a session\'s baseline holds'
complete -c tandem -n "__fish_tandem_needs_command" -a "forget" -d 'Delete a session\'s baseline, so the next run starts over'
complete -c tandem -n "__fish_tandem_needs_command" -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish or powershell)'
complete -c tandem -n "__fish_tandem_needs_command" -a "agent" -d 'Serve the agent protocol on stdin/stdout (what tandem-agent does)'
complete -c tandem -n "__fish_tandem_using_subcommand sessions" -l format -d 'Output format' -r -f -a "human\t'Status lines for people'
json\t'One JSON object per line on stdout'"
complete -c tandem -n "__fish_tandem_using_subcommand sessions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tandem -n "__fish_tandem_using_subcommand status" -s N -l name -d 'The session' -r
complete -c tandem -n "__fish_tandem_using_subcommand status" -l format -d 'Output format' -r -f -a "human\t'Status lines for people'
json\t'One JSON object per line on stdout'"
complete -c tandem -n "__fish_tandem_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tandem -n "__fish_tandem_using_subcommand forget" -s N -l name -d 'The session' -r
complete -c tandem -n "__fish_tandem_using_subcommand forget" -l format -d 'Output format' -r -f -a "human\t'Status lines for people'
json\t'One JSON object per line on stdout'"
complete -c tandem -n "__fish_tandem_using_subcommand forget" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tandem -n "__fish_tandem_using_subcommand completions" -l format -d 'Output format' -r -f -a "human\t'Status lines for people'
json\t'One JSON object per line on stdout'"
complete -c tandem -n "__fish_tandem_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tandem -n "__fish_tandem_using_subcommand agent" -l format -d 'Output format' -r -f -a "human\t'Status lines for people'
json\t'One JSON object per line on stdout'"
complete -c tandem -n "__fish_tandem_using_subcommand agent" -s h -l help -d 'Print help (see more with \'--help\')'
