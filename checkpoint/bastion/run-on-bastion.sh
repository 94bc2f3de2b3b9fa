#!/usr/bin/env bash
#
# Run the lifecycle script on the bastion. checkpoint.bastion uploads this file,
# sandbox-lifecycle.sh and `environment` into a private work folder (mode 700),
# and runs this file over SSH without a PTY:
#
#   bash WORK_FOLDER/run-on-bastion.sh refresh --yes [--db-only]
#
# Settings come from `environment` (mode 600), never from the command line, so
# they stay out of the process list. The script's stdout and stderr are relayed
# live to this command's stdout and stderr.
#
# The SSH channel's stdin stays open, unused, while the client is attached. When
# the connection drops, or the client closes stdin because it was interrupted,
# sshd closes that pipe: no SIGHUP reaches a command without a PTY, and EPIPE
# would come only with the next write. The watcher below reads stdin and, at EOF,
# sends SIGTERM to the script's process group, whose traps roll back an open
# restore. The script writes into files, never into the dead channel, so its own
# output cannot kill it. The work folder is removed on every exit of this shell.

set -u
umask 077

work_folder="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
trap 'rm -rf -- "$work_folder"' EXIT

exec 3<&0 </dev/null

set -a
# shellcheck source=/dev/null
. "$work_folder/environment"
set +a

: >"$work_folder/stdout"
: >"$work_folder/stderr"

# setsid makes the script a process group leader, so one signal reaches the
# script and its children. A background child of a shell without job control is
# never a group leader already, so setsid does not fork and $! is the script's pid.
setsid bash "$work_folder/sandbox-lifecycle.sh" "$@" \
  >"$work_folder/stdout" 2>"$work_folder/stderr" </dev/null &
script_pid=$!

stop_script() {
  kill -TERM -- "-$script_pid" 2>/dev/null || :
}
trap stop_script HUP INT TERM

tail -n +1 --pid="$script_pid" -f "$work_folder/stdout" &
relay_stdout=$!
tail -n +1 --pid="$script_pid" -f "$work_folder/stderr" >&2 &
relay_stderr=$!

(
  trap - HUP INT TERM
  while read -r -u 3 _; do :; done
  stop_script
) >/dev/null 2>&1 &
watcher=$!

# `wait` returns early when a trapped signal arrives; wait again until the
# script has really exited, so its own exit code is the one reported.
status=0
wait "$script_pid" || status=$?
while kill -0 "$script_pid" 2>/dev/null; do
  status=0
  wait "$script_pid" || status=$?
done

wait "$relay_stdout" "$relay_stderr" 2>/dev/null
kill "$watcher" 2>/dev/null
exit "$status"
