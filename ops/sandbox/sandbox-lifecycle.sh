#!/usr/bin/env bash
#
# Re-seed the Dolibarr sandbox from a read-only dump of prod.
#
# The sandbox database is replaced in one transaction, and the row count of every
# table is compared with prod's inside that transaction before COMMIT. The guards
# (lib/guards.sh) are applied and checked after that comparison, before COMMIT. A failure or
# a signal at any point therefore leaves the previous sandbox or the new one, never
# a mix. Prod is only read: every prod connection starts with
# default_transaction_read_only=on. See README.md beside this file.
#
# Sourcing this file defines the functions and runs nothing, so tests can call them.

set -Eeuo pipefail

readonly LIFECYCLE_EXIT_UNEXPECTED=1
readonly LIFECYCLE_EXIT_USAGE=2
readonly LIFECYCLE_EXIT_PREFLIGHT=10
readonly LIFECYCLE_EXIT_DUMP=11
readonly LIFECYCLE_EXIT_VERIFY_DUMP=12
readonly LIFECYCLE_EXIT_RESTORE=13
readonly LIFECYCLE_EXIT_COUNTS_DIFFER=14
readonly LIFECYCLE_EXIT_DOCUMENTS=15
readonly LIFECYCLE_EXIT_LOCKED=16

readonly LIFECYCLE_DEFAULT_TIMEOUT_SECONDS=3600
readonly LIFECYCLE_DEFAULT_LOCK_TIMEOUT_SECONDS=60
# pg_dump -Z level. On the benchmark's 1 GiB database (BENCHMARKS.md), level 1 wrote a file
# 1.4 times the size of pg_dump's default level 6 in about half the time.
readonly LIFECYCLE_DEFAULT_DUMP_COMPRESSION=1
readonly LIFECYCLE_QUERY_TIMEOUT_SECONDS=60
readonly LIFECYCLE_READ_TIMEOUT_SECONDS=60
readonly LIFECYCLE_STOP_GRACE_SECONDS=10
readonly LIFECYCLE_DOCUMENTS_MARKER=".sandbox-lifecycle-sync-incomplete"
readonly LIFECYCLE_MIN_BASH_MAJOR=5

# Ordinary tables of user schemas, the same list that pg_dump writes TABLE DATA
# entries for. Tables that belong to an extension are left out because pg_dump
# does not dump their rows.
readonly LIFECYCLE_TABLES_SQL="
SELECT n.nspname AS schema_name, c.relname AS table_name
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relpersistence <> 't'
  AND n.nspname <> 'information_schema'
  AND n.nspname !~ '^pg_'
  AND NOT EXISTS (
    SELECT FROM pg_catalog.pg_depend d
    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
      AND d.objid = c.oid
      AND d.deptype = 'e')"

# One row per table with its exact row count. query_to_xml runs one count(*) per
# table inside a single statement, so the counts share the caller's snapshot.
readonly LIFECYCLE_ROW_COUNTS_SQL="
SELECT t.schema_name, t.table_name,
  (pg_catalog.xpath('/row/c/text()', pg_catalog.query_to_xml(
    pg_catalog.format('SELECT count(*) AS c FROM %I.%I', t.schema_name, t.table_name),
    false, true, '')))[1]::text::bigint AS row_count
FROM (${LIFECYCLE_TABLES_SQL}) t"

# Objects in the sandbox's schemas that another role owns. DROP OWNED BY
# CURRENT_USER cannot remove them, so restoring over them would mix old and new.
# Schema public is exempt whatever its owner, because the restore keeps it.
readonly LIFECYCLE_FOREIGN_OBJECTS_SQL="
WITH user_schemas AS (
  SELECT oid, nspname, nspowner FROM pg_catalog.pg_namespace
  WHERE nspname <> 'information_schema' AND nspname !~ '^pg_'
), objects AS (
  SELECT 'schema' AS kind, pg_catalog.quote_ident(s.nspname) AS name, s.nspowner AS owner
  FROM user_schemas s WHERE s.nspname <> 'public'
  UNION ALL
  SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
           WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
           ELSE 'relation' END,
         pg_catalog.format('%I.%I', s.nspname, c.relname), c.relowner
  FROM pg_catalog.pg_class c JOIN user_schemas s ON s.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relpersistence <> 't'
  UNION ALL
  SELECT 'function', pg_catalog.format('%I.%I(%s)', s.nspname, p.proname,
           pg_catalog.pg_get_function_identity_arguments(p.oid)), p.proowner
  FROM pg_catalog.pg_proc p JOIN user_schemas s ON s.oid = p.pronamespace
  UNION ALL
  SELECT 'type', pg_catalog.format_type(t.oid, NULL), t.typowner
  FROM pg_catalog.pg_type t JOIN user_schemas s ON s.oid = t.typnamespace
  WHERE t.typrelid = 0 AND NOT EXISTS (SELECT FROM pg_catalog.pg_type e WHERE e.typarray = t.oid)
  UNION ALL
  SELECT 'extension', pg_catalog.quote_ident(x.extname), x.extowner
  FROM pg_catalog.pg_extension x JOIN user_schemas s ON s.oid = x.extnamespace
)
SELECT pg_catalog.format('%s %s (owner %s)', o.kind, o.name, pg_catalog.pg_get_userbyid(o.owner))
FROM objects o
WHERE o.owner <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
ORDER BY 1"

# Script-level state. Bash has no other way to share it with the traps.
LIFECYCLE_PHASE="setup"
LIFECYCLE_PHASE_STARTED=0
LIFECYCLE_RESTORE_COMMITTED=0
LIFECYCLE_STDOUT=1
LIFECYCLE_STDERR=2
LIFECYCLE_EXIT_HANDLERS=()
LIFECYCLE_CHILD_PIDS=()
LIFECYCLE_WORK=""
LIFECYCLE_DB_ONLY=0
LIFECYCLE_BREAK_LOCK=0
LIFECYCLE_COMMAND=""
LIFECYCLE_TIMEOUT=0
LIFECYCLE_LOCK_TIMEOUT=0
LIFECYCLE_DUMP_COMPRESSION_LEVEL=""
LIFECYCLE_DUMP=""
LIFECYCLE_PROD_COUNTS_FILE=""
LIFECYCLE_TABLE_TOTAL=0
LIFECYCLE_ROW_TOTAL=0
LIFECYCLE_PROD_VERSION_NUM=0
LIFECYCLE_PROD_PID=""
LIFECYCLE_SANDBOX_PID=""
LIFECYCLE_SANDBOX_ROLE=""
LIFECYCLE_SANDBOX_DATABASE=""

# -- logging ------------------------------------------------------------------

lifecycle_timestamp() {
  date -u +%Y-%m-%dT%H:%M:%SZ
}

# Print "<UTC time> [<phase>] <text>" on the script's stdout. The Python wrapper
# parses this shape. Log lines go to the descriptors saved at start, because a
# trap may run while a command's output is redirected to a file.
lifecycle_log() {
  local phase="$1" text="$2"
  local now
  now="$(lifecycle_timestamp)"
  printf '%s [%s] %s\n' "$now" "$phase" "$text" >&"$LIFECYCLE_STDOUT"
}

lifecycle_log_error() {
  local phase="$1" text="$2"
  local now
  now="$(lifecycle_timestamp)"
  printf '%s [%s] %s\n' "$now" "$phase" "$text" >&"$LIFECYCLE_STDERR"
}

lifecycle_phase_start() {
  LIFECYCLE_PHASE="$1"
  LIFECYCLE_PHASE_STARTED="$EPOCHSECONDS"
  lifecycle_log "$LIFECYCLE_PHASE" "start"
}

# End the current phase. An optional word "unchanged" informs the caller that the phase
# found nothing to change, so the Python wrapper reports ok instead of changed.
lifecycle_phase_done() {
  local suffix="${1:+ $1}"
  lifecycle_log "$LIFECYCLE_PHASE" "done in $((EPOCHSECONDS - LIFECYCLE_PHASE_STARTED))s${suffix}"
}

# Report the current phase as failed on stderr and exit with `code`.
# The message must name the values found and end with the fix.
lifecycle_fail() {
  local code="$1" message="$2"
  lifecycle_log_error "$LIFECYCLE_PHASE" "failed: ${message}"
  exit "$code"
}

# Report invalid usage or configuration in one line and exit 2.
lifecycle_usage_error() {
  printf 'sandbox-lifecycle: %s\n' "$1" >&2
  exit "$LIFECYCLE_EXIT_USAGE"
}

# -- traps and child processes --------------------------------------------------

# Append a cleanup command to the EXIT trap. Handlers run in reverse order of
# registration, so a later step is undone before the earlier step it relies on.
on_exit_add() {
  local entry
  printf -v entry '%q ' "$@"
  LIFECYCLE_EXIT_HANDLERS+=("$entry")
}

lifecycle_on_exit() {
  local status=$?
  local index

  trap - ERR
  set +e
  lifecycle_stop_children
  for ((index = ${#LIFECYCLE_EXIT_HANDLERS[@]} - 1; index >= 0; index--)); do
    eval "${LIFECYCLE_EXIT_HANDLERS[index]}" ||
      lifecycle_log_error "$LIFECYCLE_PHASE" "cleanup command failed: ${LIFECYCLE_EXIT_HANDLERS[index]}"
  done
  exit "$status"
}

lifecycle_on_err() {
  local status="$1" line="$2" file="$3" command="$4"
  lifecycle_log_error "$LIFECYCLE_PHASE" \
    "failed: unexpected error: '${command}' exited with status ${status} at ${file}:${line}; rerun with the same environment, and report this line if it repeats"
  exit "$LIFECYCLE_EXIT_UNEXPECTED"
}

# Stop the children, then let the EXIT trap clean up. An open restore
# transaction is never committed on this path: only the main shell sends COMMIT.
lifecycle_on_signal() {
  local signal="$1" code="$2"
  trap '' INT TERM HUP
  if [[ "$LIFECYCLE_COMMAND" == rewind || "$LIFECYCLE_COMMAND" == checkpoint-* ]]; then
    lifecycle_log_error "$LIFECYCLE_PHASE" "failed: interrupted by SIG${signal}; child processes stopped; $(checkpoint_interrupted_state)"
  elif ((LIFECYCLE_RESTORE_COMMITTED == 1)); then
    lifecycle_log_error "$LIFECYCLE_PHASE" \
      "failed: interrupted by SIG${signal}; child processes stopped; the sandbox database is already the new one, but its documents may be only partly synced; rerun refresh to finish"
  else
    lifecycle_log_error "$LIFECYCLE_PHASE" \
      "failed: interrupted by SIG${signal}; child processes stopped, any open restore transaction rolls back and the sandbox keeps its previous content; rerun refresh when ready"
  fi
  exit "$code"
}

lifecycle_install_traps() {
  trap 'lifecycle_on_err "$?" "$LINENO" "${BASH_SOURCE[0]}" "$BASH_COMMAND"' ERR
  trap lifecycle_on_exit EXIT
  trap 'lifecycle_on_signal INT 130' INT
  trap 'lifecycle_on_signal TERM 143' TERM
  trap 'lifecycle_on_signal HUP 129' HUP

  # A write to a psql that already exited must fail with EPIPE and be reported,
  # not kill the shell silently. Children inherit this, so pg_restore reports a
  # broken pipe as an error instead of dying from the signal.
  trap '' PIPE
}

lifecycle_track_child() {
  LIFECYCLE_CHILD_PIDS+=("$1")
}

lifecycle_untrack_child() {
  local pid="$1" kept=() tracked
  for tracked in "${LIFECYCLE_CHILD_PIDS[@]}"; do
    if [[ "$tracked" != "$pid" ]]; then
      kept+=("$tracked")
    fi
  done
  LIFECYCLE_CHILD_PIDS=("${kept[@]}")
}

# Print `pid` and its descendants, parents first. A tracked child is often a
# subshell running timeout, which runs the real command, so stopping only the
# tracked pid could leave that command running. Without pgrep, only `pid`.
lifecycle_process_tree() {
  local pid="$1" child children
  printf '%s\n' "$pid"
  children="$(pgrep -P "$pid" 2>/dev/null || :)"
  for child in $children; do
    lifecycle_process_tree "$child"
  done
}

# Send SIGTERM to every tracked child and its descendants, wait up to
# LIFECYCLE_STOP_GRACE_SECONDS, then SIGKILL what is left.
lifecycle_stop_children() {
  local pid deadline=$((EPOCHSECONDS + LIFECYCLE_STOP_GRACE_SECONDS))
  local tree=() alive=()

  for pid in "${LIFECYCLE_CHILD_PIDS[@]}"; do
    mapfile -t -O "${#tree[@]}" tree < <(lifecycle_process_tree "$pid")
  done
  for pid in "${tree[@]}"; do
    kill -TERM "$pid" 2>/dev/null && alive+=("$pid")
  done

  while ((${#alive[@]} > 0 && EPOCHSECONDS < deadline)); do
    local still=()
    for pid in "${alive[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then
        still+=("$pid")
      fi
    done
    alive=("${still[@]}")
    ((${#alive[@]} == 0)) || sleep 0.1
  done

  for pid in "${alive[@]}"; do
    lifecycle_log_error "$LIFECYCLE_PHASE" "child process ${pid} ignored SIGTERM for ${LIFECYCLE_STOP_GRACE_SECONDS}s: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || :
  done
  LIFECYCLE_CHILD_PIDS=()
}

# Run a command in the background and wait for it, returning its status. The
# shell runs traps only between commands, and `wait` is interruptible, so a
# signal is handled at once instead of after the command ends.
lifecycle_run_child() {
  local pid status=0
  "$@" &
  pid=$!
  lifecycle_track_child "$pid"
  wait "$pid" || status=$?
  lifecycle_untrack_child "$pid"
  return "$status"
}

# Bound a command's run time: SIGTERM after `seconds`, SIGKILL 10 s later.
# --foreground keeps the command in the script's process group, so a signal sent
# to the group reaches it.
lifecycle_bounded() {
  local seconds="$1"
  shift
  timeout --foreground --kill-after=10 "$seconds" "$@"
}

lifecycle_first_error_line() {
  local file="$1" line
  line="$(grep -m 1 -E 'ERROR|FATAL|error:' -- "$file" 2>/dev/null || :)"
  if [[ -z "$line" ]]; then
    line="$(tail -n 1 -- "$file" 2>/dev/null || :)"
  fi
  printf '%s' "${line:-no error output}"
}

# -- configuration ----------------------------------------------------------------

lifecycle_usage() {
  cat <<'EOF'
Usage: sandbox-lifecycle.sh refresh --yes [--db-only] [--break-lock]
       sandbox-lifecycle.sh preflight [--db-only]
       sandbox-lifecycle.sh recover [--break-lock]
       sandbox-lifecycle.sh rewind --yes | checkpoint-save | checkpoint-list
       sandbox-lifecycle.sh checkpoint-drop NAME | checkpoint-status
       sandbox-lifecycle.sh --help

refresh     Replace the sandbox database with a dump of prod, then make the sandbox
            documents folder equal to prod's. Without --yes, print what would be
            destroyed and exit 2 without changing anything.
preflight   Run the checks of phase preflight only. Changes nothing.
recover     kubectl transport: put back the ArgoCD sync policy and replica count that
            a killed refresh left changed, from the values it recorded on the cluster.
--db-only   Skip the documents folders (phase documents logs "skipped: --db-only").
--break-lock
            kubectl transport: take the refresh lock even when another run holds it.

Environment (passwords come from PGPASSFILE or PGPASSWORD, never from a URI):
  LIFECYCLE_TRANSPORT       "local": run pg_dump, psql and rsync on this machine.
                            "kubectl": reach both sides through kubectl; see README.md
                            for its variables (PROD_KUBE_CONTEXT, SANDBOX_NAMESPACE, ...).
  PROD_DB_URI               postgresql://USER@HOST:PORT/DATABASE of prod, no password.
  SANDBOX_DB_URI            the same for the sandbox; its role must own the sandbox database.
  PROD_DOCUMENTS_DIR        prod's documents folder (not needed with --db-only).
  SANDBOX_DOCUMENTS_DIR     the sandbox's documents folder (not needed with --db-only).
  LIFECYCLE_WORK_DIR        folder for the temporary work folder holding the dump
                            (default: $TMPDIR or /tmp); the work folder is removed on exit.
  LIFECYCLE_LOCK_FILE       local transport: the file that refresh, rewind, checkpoint-save and
                            checkpoint-drop lock, so one run at a time changes the sandbox
                            (default: SANDBOX_DOCUMENTS_DIR + ".lifecycle.lock").
  LIFECYCLE_TIMEOUT_SECONDS maximum run time of each dump, restore and sync step (default 3600).
  LIFECYCLE_LOCK_TIMEOUT_SECONDS
                            maximum wait for locks on the old sandbox objects (default 60).
  LIFECYCLE_DUMP_COMPRESSION
                            pg_dump compression level, 0 (none, largest file) to 9 (default 1).
  LIFECYCLE_GUARDS_SQL      SQL file sent inside the restore transaction after the row count
                            check and before COMMIT (written by the Python tool); unset, the
                            sandbox keeps prod's outbound settings.

Phases, logged on stdout as "<UTC time> [<phase>] start|<progress>|done in <N>s|skipped: <reason>";
a failure is logged on stderr as "<UTC time> [<phase>] failed: <message>":
  preflight, dump, verify-dump, restore, verify, documents.

Exit codes:
  0    refresh or preflight finished
  1    unexpected error (the message names the command, file and line)
  2    invalid usage or configuration, or refresh without --yes
  10   preflight failed; nothing was changed
  11   dump failed; nothing was changed
  12   the dump file failed verification; nothing was changed
  13   restore failed; the transaction was rolled back, the sandbox is unchanged
  14   row counts differ from prod; the transaction was rolled back, the sandbox is unchanged
  15   documents sync failed; the sandbox database was already refreshed
  16   another run holds the lock of this sandbox; nothing was changed
  17   kubectl transport: pausing or resuming the sandbox's ArgoCD Application or
       Dolibarr failed; the recorded sync policy and replicas were put back
  18   a guard failed or is not in effect; the transaction was rolled back, the sandbox is unchanged
  129, 130, 143  interrupted by SIGHUP, SIGINT, SIGTERM; the sandbox database is unchanged
                 unless the restore had committed (phase restore logged "done")
EOF
}

lifecycle_require_env() {
  local name="$1" fix="$2"
  if [[ -z "${!name:-}" ]]; then
    lifecycle_usage_error "${name} is not set: ${fix}"
  fi
}

# Reject a URI that is not a postgresql:// URI, carries a password or names no
# database. The message never repeats the URI, because it may hold a password.
# Print the names of a URI query's parameters, one per line, percent-decoded as libpq
# decodes them, so that "p%61ssword" is seen as "password".
lifecycle_uri_parameter_names() {
  local query="$1" pair key
  local -a pairs=()
  if [[ -n "$query" ]]; then
    IFS='&' read -r -a pairs <<<"$query"
  fi
  for pair in "${pairs[@]}"; do
    key="${pair%%=*}"
    printf '%b\n' "${key//%/\\x}"
  done
}

lifecycle_validate_uri() {
  local name="$1"
  local uri="${!name}"
  local rest authority userinfo path query

  if [[ "$uri" != postgresql://* && "$uri" != postgres://* ]]; then
    lifecycle_usage_error "${name} is not a postgresql:// URI: set it to postgresql://USER@HOST:PORT/DATABASE"
  fi

  rest="${uri#*://}"
  authority="${rest%%[/?]*}"
  path="${rest:${#authority}}"
  query=""
  if [[ "$path" == *\?* ]]; then
    query="${path#*\?}"
    path="${path%%\?*}"
  fi

  userinfo=""
  if [[ "$authority" == *@* ]]; then
    userinfo="${authority%@*}"
  fi
  local parameters
  parameters="$(lifecycle_uri_parameter_names "$query")"
  if [[ "$userinfo" == *:* ]] || grep -qx -e 'password' -e 'sslpassword' <<<"$parameters"; then
    lifecycle_usage_error "${name} contains a password: remove it from the URI and put it in a pgpass file named by PGPASSFILE"
  fi

  if [[ -z "${path#/}" ]]; then
    lifecycle_usage_error "${name} names no database: set it to postgresql://USER@HOST:PORT/DATABASE"
  fi

  if [[ "$name" == "PROD_DB_URI" ]] && grep -qx 'options' <<<"$parameters"; then
    lifecycle_usage_error "PROD_DB_URI sets options=, which could turn off default_transaction_read_only: remove options= from the URI"
  fi
}

# Validate the environment variable `name` and store its value, or `default`
# when it is unset, in the variable named `target`.
lifecycle_validate_seconds() {
  local name="$1" default="$2" target="$3"
  local value="${!name:-$default}"
  if [[ ! "$value" =~ ^[1-9][0-9]*$ ]]; then
    lifecycle_usage_error "${name} is invalid (${value}): set it to a whole number of seconds greater than 0"
  fi
  printf -v "$target" '%s' "$value"
}

lifecycle_validate_dump_compression() {
  LIFECYCLE_DUMP_COMPRESSION_LEVEL="${LIFECYCLE_DUMP_COMPRESSION:-$LIFECYCLE_DEFAULT_DUMP_COMPRESSION}"
  if [[ ! "$LIFECYCLE_DUMP_COMPRESSION_LEVEL" =~ ^[0-9]$ ]]; then
    lifecycle_usage_error "LIFECYCLE_DUMP_COMPRESSION is invalid (${LIFECYCLE_DUMP_COMPRESSION_LEVEL}): set it to a pg_dump compression level from 0 (none) to 9"
  fi
}

lifecycle_validate_test_seam() {
  local name="$1"
  if [[ -n "${!name:-}" && ! -r "${!name}" ]]; then
    lifecycle_usage_error "${name} names a file that is not readable (${!name}): unset it, it exists for tests only"
  fi
}

lifecycle_validate_environment() {
  lifecycle_require_env LIFECYCLE_TRANSPORT "set LIFECYCLE_TRANSPORT=local or kubectl"
  if [[ "$LIFECYCLE_TRANSPORT" != "local" && "$LIFECYCLE_TRANSPORT" != "kubectl" ]]; then
    lifecycle_usage_error "LIFECYCLE_TRANSPORT is invalid (${LIFECYCLE_TRANSPORT}): set LIFECYCLE_TRANSPORT=local or kubectl"
  fi
  if [[ "$LIFECYCLE_TRANSPORT" == "local" && ("$LIFECYCLE_COMMAND" == "recover" || "$LIFECYCLE_BREAK_LOCK" == 1) ]]; then
    lifecycle_usage_error "recover and --break-lock are invalid with LIFECYCLE_TRANSPORT=local: remove them, because the local transport changes no cluster and its lock ends with the run that took it"
  fi
  transport_validate_environment

  if [[ -n "${LIFECYCLE_WORK_DIR:-}" && ! -d "$LIFECYCLE_WORK_DIR" ]]; then
    lifecycle_usage_error "LIFECYCLE_WORK_DIR is not a folder (${LIFECYCLE_WORK_DIR}): create it or unset it"
  fi

  lifecycle_validate_seconds LIFECYCLE_TIMEOUT_SECONDS "$LIFECYCLE_DEFAULT_TIMEOUT_SECONDS" LIFECYCLE_TIMEOUT
  lifecycle_validate_seconds LIFECYCLE_LOCK_TIMEOUT_SECONDS "$LIFECYCLE_DEFAULT_LOCK_TIMEOUT_SECONDS" LIFECYCLE_LOCK_TIMEOUT
  lifecycle_validate_dump_compression
  lifecycle_validate_test_seam LIFECYCLE_TEST_DUMP_FILE
  lifecycle_validate_test_seam LIFECYCLE_TEST_RESTORE_FILE
  lifecycle_validate_guards
}

lifecycle_make_work_dir() {
  local parent="${LIFECYCLE_WORK_DIR:-${TMPDIR:-/tmp}}"
  LIFECYCLE_WORK="$(mktemp -d "${parent%/}/sandbox-lifecycle.XXXXXX")"
  on_exit_add rm -rf -- "$LIFECYCLE_WORK"
  LIFECYCLE_DUMP="${LIFECYCLE_WORK}/prod.dump"
  LIFECYCLE_PROD_COUNTS_FILE="${LIFECYCLE_WORK}/prod-row-counts.sql"
}

# -- transport: local ---------------------------------------------------------------
#
# Every command that reaches a database or a documents folder goes through one of
# these functions, so another transport only has to replace them. The hooks
# transport_begin, transport_quiesce_sandbox, transport_check_quiesced and
# transport_resume_sandbox do nothing here: the local transport has no app to stop.

transport_validate_environment() {
  lifecycle_require_env PROD_DB_URI "set it to postgresql://USER@HOST:PORT/DATABASE of prod, without a password"
  lifecycle_require_env SANDBOX_DB_URI "set it to postgresql://USER@HOST:PORT/DATABASE of the sandbox, without a password"
  lifecycle_validate_uri PROD_DB_URI
  lifecycle_validate_uri SANDBOX_DB_URI

  if ((LIFECYCLE_DB_ONLY == 0)); then
    lifecycle_require_env PROD_DOCUMENTS_DIR "set it to prod's documents folder, or pass --db-only"
    lifecycle_require_env SANDBOX_DOCUMENTS_DIR "set it to the sandbox's documents folder, or pass --db-only"
  fi
}

# Name the database of `side` (prod or sandbox) for messages.
transport_database_label() {
  local uri_name="${1^^}_DB_URI"
  printf '%s=%s' "$uri_name" "${!uri_name}"
}

# Name the sandbox database and documents folder, for the message of refresh without --yes.
transport_describe_targets() {
  printf 'the sandbox database %s' "$SANDBOX_DB_URI"
  if ((LIFECYCLE_DB_ONLY == 0)); then
    printf ', and delete or overwrite files in the sandbox documents folder %s until it equals %s' \
      "$SANDBOX_DOCUMENTS_DIR" "$PROD_DOCUMENTS_DIR"
  fi
}

transport_begin() { :; }
transport_quiesce_sandbox() { :; }
transport_check_quiesced() { :; }
transport_resume_sandbox() { :; }

transport_recover() {
  lifecycle_usage_error "recover applies to LIFECYCLE_TRANSPORT=kubectl only"
}

lifecycle_lock_file() {
  if [[ -n "${LIFECYCLE_LOCK_FILE:-}" ]]; then
    printf '%s' "$LIFECYCLE_LOCK_FILE"
  elif [[ -n "${SANDBOX_DOCUMENTS_DIR:-}" ]]; then
    printf '%s' "${SANDBOX_DOCUMENTS_DIR%/}.lifecycle.lock"
  else
    printf '%s' "${TMPDIR:-/tmp}/sandbox-lifecycle-$(printf '%s' "$SANDBOX_DB_URI" | sha256sum | cut -c 1-16).lock"
  fi
}

# Return 0 when another run holds the local lock now; read-only, for status.
lifecycle_lock_held() {
  local file
  file="$(lifecycle_lock_file)"
  [[ "$LIFECYCLE_TRANSPORT" == "local" && -f "$file" ]] || return 1
  ! flock -n -s "$file" true 2>/dev/null
}

# Lock the sandbox for a run that changes it, after preflight checked that the lock
# file's default folder is not prod's. With the kubectl transport, the checkpoint
# commands take the refresh's Lease on the cluster; refresh takes it in transport_begin.
lifecycle_lock() {
  if [[ "$LIFECYCLE_TRANSPORT" == "local" ]]; then
    lifecycle_lock_local
  elif [[ "$LIFECYCLE_COMMAND" != "refresh" ]]; then
    argocd_lock_acquire
  fi
}

# Take an exclusive flock on LIFECYCLE_LOCK_FILE, by default beside the sandbox's
# documents folder, so one run at a time changes this sandbox from this machine. The
# kernel drops the lock when the run ends, also under SIGKILL, so it needs no breaking.
# NOTE: runs on two machines against one sandbox do not see each other's lock.
lifecycle_lock_local() {
  local file holder
  LIFECYCLE_PHASE=lock
  file="$(lifecycle_lock_file)"
  if ! { exec {LIFECYCLE_LOCK_FD}>>"$file"; } 2>/dev/null; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "cannot open the lock file ${file}: set LIFECYCLE_LOCK_FILE to a file in a folder this user may write (nothing was changed)"
  fi
  if ! flock -n "$LIFECYCLE_LOCK_FD"; then
    holder="$(head -n 1 -- "$file" 2>/dev/null || :)"
    lifecycle_fail "$LIFECYCLE_EXIT_LOCKED" \
      "another run holds the lock ${file} (${holder:-holder unknown}); wait for it to end, then rerun (nothing was changed)"
  fi
  printf '%s pid %s on %s since %s\n' "$LIFECYCLE_COMMAND" "$$" "$HOSTNAME" "$(lifecycle_timestamp)" >"$file"
}

# The local checks of phase preflight that do not query a database.
transport_preflight() {
  if [[ "$PROD_DB_URI" == "$SANDBOX_DB_URI" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "SANDBOX_DB_URI equals PROD_DB_URI (${PROD_DB_URI}); point SANDBOX_DB_URI at the sandbox database"
  fi
  if ((LIFECYCLE_DB_ONLY == 0)); then
    lifecycle_check_documents_dirs
  fi
}

transport_required_tools() {
  printf '%s\n' psql pg_dump pg_restore timeout flock
  if ((LIFECYCLE_DB_ONLY == 0)); then
    printf '%s\n' rsync
  fi
}

transport_pg_dump_version() {
  pg_dump --version
}

# pg_restore turns the archive into SQL on this machine with both transports.
transport_pg_restore_version() {
  pg_restore --version
}

# PGOPTIONS for every prod connection: a statement that tries to write fails.
lifecycle_prod_pgoptions() {
  printf '%s' "${PGOPTIONS:+${PGOPTIONS} }-c default_transaction_read_only=on"
}

# Run psql on prod with SQL from stdin; output is unaligned, tuples only, fields
# separated by a tab.
transport_psql_prod() {
  local seconds="$1" application="$2"
  shift 2
  PGOPTIONS="$(lifecycle_prod_pgoptions)" PGAPPNAME="sandbox-lifecycle ${application}" \
    lifecycle_bounded "$seconds" psql -X -q -A -t -F $'\t' -v ON_ERROR_STOP=1 -d "$PROD_DB_URI" "$@"
}

transport_psql_sandbox() {
  local seconds="$1" application="$2"
  shift 2
  PGAPPNAME="sandbox-lifecycle ${application}" \
    lifecycle_bounded "$seconds" psql -X -q -A -t -F $'\t' -v ON_ERROR_STOP=1 -d "$SANDBOX_DB_URI" "$@"
}

transport_dump_prod() {
  local snapshot="$1" file="$2"
  PGOPTIONS="$(lifecycle_prod_pgoptions)" PGAPPNAME="sandbox-lifecycle dump" \
    lifecycle_bounded "$LIFECYCLE_TIMEOUT" pg_dump -Fc -Z "$LIFECYCLE_DUMP_COMPRESSION_LEVEL" --no-owner --no-privileges \
    --snapshot="$snapshot" -f "$file" -d "$PROD_DB_URI"
}

# Write the SQL script that recreates the dump's objects and rows on stdout.
transport_restore_sandbox() {
  local file="$1"
  lifecycle_bounded "$LIFECYCLE_TIMEOUT" pg_restore --no-owner --no-privileges -f - "$file"
}

# rsync writes into the live folder, so a marker file records that a sync is under way
# until it ends; `invoke status` reports a marker that an interrupted run left.
transport_sync_documents() {
  local marker="${SANDBOX_DOCUMENTS_DIR%/}/${LIFECYCLE_DOCUMENTS_MARKER}"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$marker"
  lifecycle_bounded "$LIFECYCLE_TIMEOUT" rsync -a --delete --stats --exclude="/${LIFECYCLE_DOCUMENTS_MARKER}" -- \
    "${PROD_DOCUMENTS_DIR%/}/" "${SANDBOX_DOCUMENTS_DIR%/}/"
  rm -f -- "$marker"
  # Removing the marker touched the folder; give it prod's mtime again, as rsync -a did.
  touch -r "${PROD_DOCUMENTS_DIR%/}" -- "${SANDBOX_DOCUMENTS_DIR%/}"
}

# -- phase preflight ------------------------------------------------------------------

lifecycle_check_tools() {
  local tool missing=()
  while IFS= read -r tool; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done < <(transport_required_tools)

  if ((${#missing[@]} > 0)); then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "client tools not found on PATH: ${missing[*]}; install the PostgreSQL client (Debian: postgresql-client) and rsync, or put them on PATH"
  fi
}


# Write one tab-separated line describing the database behind `side`'s URI to
# describe-<side>.out in the work folder: system identifier, database, user,
# server_version_num, server_version, whether the user is a superuser, and the
# database's owner.
lifecycle_describe_database() {
  local side="$1"
  local output="${LIFECYCLE_WORK}/describe-${side}.out" errors="${LIFECYCLE_WORK}/describe-${side}.err"
  local sql="SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system()), current_database(),
    current_user, current_setting('server_version_num'), current_setting('server_version'),
    (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
    (SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = current_database())"

  if ! lifecycle_run_child "transport_psql_${side}" "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" preflight \
    -c "$sql" >"$output" 2>"$errors"; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "cannot query ${side} at $(transport_database_label "$side"): $(lifecycle_first_error_line "$errors"); check the URI, that the server runs, and that PGPASSFILE has a line for this user"
  fi
}

lifecycle_check_documents_dirs() {
  local prod sandbox
  prod="$(realpath -m -- "$PROD_DOCUMENTS_DIR")"
  sandbox="$(realpath -m -- "$SANDBOX_DOCUMENTS_DIR")"

  if [[ ! -d "$prod" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" "PROD_DOCUMENTS_DIR is not a folder (${PROD_DOCUMENTS_DIR}): set it to prod's documents folder"
  fi
  if [[ -z "$(ls -A -- "$prod")" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "PROD_DOCUMENTS_DIR is empty (${PROD_DOCUMENTS_DIR}), and syncing it would delete every sandbox document: check that the folder is the right one and is mounted"
  fi
  if [[ "$prod" == "$sandbox" || "$sandbox/" == "$prod/"* || "$prod/" == "$sandbox/"* ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "SANDBOX_DOCUMENTS_DIR (${sandbox}) and PROD_DOCUMENTS_DIR (${prod}) are the same folder or one contains the other: give the sandbox its own documents folder"
  fi
  if [[ ! -d "$(dirname -- "$sandbox")" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" "the parent folder of SANDBOX_DOCUMENTS_DIR (${sandbox}) does not exist: create it"
  fi
  lifecycle_log preflight "documents: ${prod} -> ${sandbox}"
}

# Reject a sandbox that is prod: same server (system identifier) and same database,
# whatever the URI text. Also reject a sandbox role that DROP OWNED must not run as.
lifecycle_check_sandbox_is_not_prod() {
  local prod_line="$1" sandbox_line="$2"
  local prod_system prod_database prod_user prod_version_num prod_version prod_super prod_owner
  local sandbox_system sandbox_database sandbox_user sandbox_version_num sandbox_version sandbox_super sandbox_owner
  IFS=$'\t' read -r prod_system prod_database prod_user prod_version_num prod_version prod_super prod_owner <<<"$prod_line"
  IFS=$'\t' read -r sandbox_system sandbox_database sandbox_user sandbox_version_num sandbox_version sandbox_super sandbox_owner <<<"$sandbox_line"

  lifecycle_log preflight "prod: database ${prod_database} as ${prod_user} on server ${prod_system} (PostgreSQL ${prod_version})"
  lifecycle_log preflight "sandbox: database ${sandbox_database} as ${sandbox_user} on server ${sandbox_system} (PostgreSQL ${sandbox_version})"

  if [[ "$prod_system" == "$sandbox_system" && "$prod_database" == "$sandbox_database" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "SANDBOX_DB_URI reaches prod: both are database ${prod_database} on server ${prod_system}; point SANDBOX_DB_URI at the sandbox database"
  fi
  if [[ "$prod_system" == "$sandbox_system" && "$prod_user" == "$sandbox_user" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "the sandbox uses prod's role ${prod_user} on the same server ${prod_system}, and DROP OWNED would also revoke that role's privileges on shared objects such as prod's database; give the sandbox its own role"
  fi
  if [[ "$sandbox_super" == "t" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "the sandbox role ${sandbox_user} is a superuser; connect as a role without superuser that owns database ${sandbox_database}"
  fi
  if [[ "$sandbox_owner" != "$sandbox_user" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "database ${sandbox_database} is owned by ${sandbox_owner}, not by the sandbox role ${sandbox_user}; run ALTER DATABASE ${sandbox_database} OWNER TO ${sandbox_user}, or connect as its owner"
  fi

  LIFECYCLE_PROD_VERSION_NUM="$prod_version_num"
  LIFECYCLE_SANDBOX_ROLE="$sandbox_user"
  LIFECYCLE_SANDBOX_DATABASE="$sandbox_database"
}

# Compare the local pg_dump's major version, e.g. 15 for "pg_dump (PostgreSQL)
# 15.18", with the prod server's.
lifecycle_check_pg_dump_version() {
  local version client_major server_major=$((LIFECYCLE_PROD_VERSION_NUM / 10000))
  version="$(transport_pg_dump_version)"
  if [[ ! "$version" =~ \)\ ([0-9]+) ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" "cannot read pg_dump's version from '${version}'; install a PostgreSQL client"
  fi
  client_major="${BASH_REMATCH[1]}"

  if ((client_major < server_major)); then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "pg_dump is version ${client_major} but the prod server is version ${server_major}; install a PostgreSQL ${server_major} client or newer"
  fi
  lifecycle_log preflight "pg_dump ${client_major} can dump server version ${server_major}"
}

lifecycle_phase_preflight() {
  lifecycle_phase_start preflight
  lifecycle_check_tools
  transport_preflight

  lifecycle_describe_database prod
  lifecycle_describe_database sandbox
  lifecycle_check_sandbox_is_not_prod "$(<"${LIFECYCLE_WORK}/describe-prod.out")" \
    "$(<"${LIFECYCLE_WORK}/describe-sandbox.out")"
  lifecycle_check_pg_dump_version
  lifecycle_phase_done
}

# -- phase dump ---------------------------------------------------------------------------

# Open a psql session on prod that keeps a REPEATABLE READ READ ONLY transaction
# open and exports its snapshot. pg_dump --snapshot then reads the same data as the row
# counts taken in that session. The session is a coprocess so that this shell can
# read the snapshot id and the counts while the transaction stays open.
lifecycle_open_prod_snapshot() {
  coproc LIFECYCLE_PROD_SESSION {
    exec 2>"${LIFECYCLE_WORK}/prod-session.err"
    transport_psql_prod "$LIFECYCLE_TIMEOUT" dump
  }
  LIFECYCLE_PROD_PID=$!
  lifecycle_track_child "$LIFECYCLE_PROD_PID"
  if [[ -z "${LIFECYCLE_PROD_SESSION[1]:-}" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_DUMP" \
      "the prod snapshot session ended at once: $(lifecycle_first_error_line "${LIFECYCLE_WORK}/prod-session.err"); check PROD_DB_URI and rerun"
  fi
  # Own copies of the coprocess's pipe ends: bash may drop its variables as soon
  # as psql exits, and psql reads end of input only when every copy is closed.
  exec {LIFECYCLE_PROD_IN}>&"${LIFECYCLE_PROD_SESSION[1]}" {LIFECYCLE_PROD_OUT}<&"${LIFECYCLE_PROD_SESSION[0]}"
  exec {LIFECYCLE_PROD_SESSION[1]}>&- {LIFECYCLE_PROD_SESSION[0]}<&-

  printf '%s\n' "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;" \
    "SELECT pg_catalog.pg_export_snapshot();" >&"$LIFECYCLE_PROD_IN" || :
}

lifecycle_read_prod_session() {
  local -n line_ref="$1"
  if ! IFS= read -r -t "$LIFECYCLE_READ_TIMEOUT_SECONDS" -u "$LIFECYCLE_PROD_OUT" line_ref; then
    lifecycle_fail "$LIFECYCLE_EXIT_DUMP" \
      "the prod snapshot session gave no answer within ${LIFECYCLE_READ_TIMEOUT_SECONDS}s: $(lifecycle_first_error_line "${LIFECYCLE_WORK}/prod-session.err"); check prod's load and locks, then rerun"
  fi
}

# Write prod's row counts as SQL tuples "('schema', 'table', count)" to
# LIFECYCLE_PROD_COUNTS_FILE, ready to be sent to the sandbox, and set the totals.
lifecycle_record_prod_counts() {
  local marker="lifecycle-end-of-row-counts" line count
  printf '%s\n' "SELECT pg_catalog.format('(%L, %L, %s)', schema_name, table_name, row_count) FROM (${LIFECYCLE_ROW_COUNTS_SQL}) counts ORDER BY 1;" \
    "SELECT '${marker}';" >&"$LIFECYCLE_PROD_IN" || :

  LIFECYCLE_TABLE_TOTAL=0
  LIFECYCLE_ROW_TOTAL=0
  : >"$LIFECYCLE_PROD_COUNTS_FILE"
  while lifecycle_read_prod_session line && [[ "$line" != "$marker" ]]; do
    printf '%s\n' "$line" >>"$LIFECYCLE_PROD_COUNTS_FILE"
    LIFECYCLE_TABLE_TOTAL=$((LIFECYCLE_TABLE_TOTAL + 1))
    count="${line##*, }"
    count="${count%\)}"
    LIFECYCLE_ROW_TOTAL=$((LIFECYCLE_ROW_TOTAL + count))
  done
}

# End the read-only transaction and the session, and wait for it within the time bound.
lifecycle_close_prod_snapshot() {
  local status=0
  printf '%s\n' "COMMIT;" >&"$LIFECYCLE_PROD_IN" || :
  exec {LIFECYCLE_PROD_IN}>&- {LIFECYCLE_PROD_OUT}<&-
  wait "$LIFECYCLE_PROD_PID" || status=$?
  lifecycle_untrack_child "$LIFECYCLE_PROD_PID"
  return "$status"
}

lifecycle_phase_dump() {
  local snapshot
  lifecycle_phase_start dump
  lifecycle_open_prod_snapshot
  lifecycle_read_prod_session snapshot
  lifecycle_log dump "holding prod snapshot ${snapshot} in a read-only transaction"

  lifecycle_record_prod_counts
  lifecycle_log dump "recorded row counts in that snapshot: ${LIFECYCLE_TABLE_TOTAL} tables, ${LIFECYCLE_ROW_TOTAL} rows"

  if [[ -n "${LIFECYCLE_TEST_DUMP_FILE:-}" ]]; then
    lifecycle_log dump "test seam LIFECYCLE_TEST_DUMP_FILE is set: using ${LIFECYCLE_TEST_DUMP_FILE} instead of dumping prod"
    cp -- "$LIFECYCLE_TEST_DUMP_FILE" "$LIFECYCLE_DUMP"
  elif ! lifecycle_run_child transport_dump_prod "$snapshot" "$LIFECYCLE_DUMP" 2>"${LIFECYCLE_WORK}/pg_dump.err"; then
    lifecycle_fail "$LIFECYCLE_EXIT_DUMP" \
      "pg_dump of prod failed: $(lifecycle_first_error_line "${LIFECYCLE_WORK}/pg_dump.err"); check free space in ${LIFECYCLE_WORK%/*} and that the prod role may read every table"
  fi

  if ! lifecycle_close_prod_snapshot; then
    lifecycle_fail "$LIFECYCLE_EXIT_DUMP" \
      "the prod snapshot session failed: $(lifecycle_first_error_line "${LIFECYCLE_WORK}/prod-session.err"); rerun, and check prod's server log if it repeats"
  fi
  lifecycle_log dump "wrote $(stat -c %s -- "$LIFECYCLE_DUMP") bytes to ${LIFECYCLE_DUMP}"
  lifecycle_phase_done
}

# -- phase verify-dump --------------------------------------------------------------------

# Reject an archive written by a newer pg_dump than the pg_restore that must read
# it, using the "Dumped by pg_dump version" line of pg_restore --list.
lifecycle_check_pg_restore_version() {
  local list="$1" version dumped_major restore_major
  version="$(transport_pg_restore_version)"
  if [[ ! "$version" =~ \)\ ([0-9]+) ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_VERIFY_DUMP" "cannot read pg_restore's version from '${version}'; install a PostgreSQL client"
  fi
  restore_major="${BASH_REMATCH[1]}"

  if [[ ! "$(grep -m 1 'Dumped by pg_dump version:' "$list" || :)" =~ version:\ ([0-9]+) ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_VERIFY_DUMP" "the dump's table of contents names no pg_dump version; rerun the dump"
  fi
  dumped_major="${BASH_REMATCH[1]}"

  if ((restore_major < dumped_major)); then
    lifecycle_fail "$LIFECYCLE_EXIT_VERIFY_DUMP" \
      "pg_restore is version ${restore_major} but the dump was written by pg_dump ${dumped_major}; install a PostgreSQL ${dumped_major} client or newer"
  fi
  lifecycle_log verify-dump "pg_restore ${restore_major} can read an archive of pg_dump ${dumped_major}"
}

lifecycle_phase_verify_dump() {
  local header size listed
  local list="${LIFECYCLE_WORK}/dump.list" errors="${LIFECYCLE_WORK}/verify-dump.err"
  lifecycle_phase_start verify-dump

  size="$(stat -c %s -- "$LIFECYCLE_DUMP")"
  if ((size == 0)); then
    lifecycle_fail "$LIFECYCLE_EXIT_VERIFY_DUMP" "the dump file ${LIFECYCLE_DUMP} is empty; check free space in its folder and rerun"
  fi

  header="$(head -c 5 -- "$LIFECYCLE_DUMP")"
  if [[ "$header" != "PGDMP" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_VERIFY_DUMP" \
      "the dump file ${LIFECYCLE_DUMP} starts with '${header}' instead of the custom-format header PGDMP; rerun the dump"
  fi

  if ! lifecycle_run_child lifecycle_bounded "$LIFECYCLE_TIMEOUT" pg_restore --list "$LIFECYCLE_DUMP" >"$list" 2>"$errors"; then
    lifecycle_fail "$LIFECYCLE_EXIT_VERIFY_DUMP" \
      "pg_restore --list cannot read ${LIFECYCLE_DUMP}: $(lifecycle_first_error_line "$errors"); rerun the dump"
  fi

  lifecycle_check_pg_restore_version "$list"
  listed="$(grep -c -E '^[0-9]+; [0-9]+ [0-9]+ TABLE DATA ' "$list" || :)"
  if ((listed != LIFECYCLE_TABLE_TOTAL)); then
    lifecycle_fail "$LIFECYCLE_EXIT_VERIFY_DUMP" \
      "the dump lists ${listed} tables with data but prod has ${LIFECYCLE_TABLE_TOTAL} tables; rerun the dump, and check that the prod role may read every table"
  fi

  # Reading every data block now catches a truncated or corrupt file before the
  # sandbox is touched.
  if ! lifecycle_run_child lifecycle_bounded "$LIFECYCLE_TIMEOUT" pg_restore -f /dev/null "$LIFECYCLE_DUMP" 2>"$errors"; then
    lifecycle_fail "$LIFECYCLE_EXIT_VERIFY_DUMP" \
      "pg_restore cannot read every block of ${LIFECYCLE_DUMP}: $(lifecycle_first_error_line "$errors"); rerun the dump"
  fi

  lifecycle_log verify-dump "header PGDMP, ${size} bytes, ${listed} tables with data, every block readable"
  lifecycle_phase_done
}

# -- phases restore and verify --------------------------------------------------------------

lifecycle_check_sandbox_ownership() {
  local output="${LIFECYCLE_WORK}/ownership.out" errors="${LIFECYCLE_WORK}/ownership.err"
  local count listed

  if ! lifecycle_run_child transport_psql_sandbox "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" restore \
    -c "$LIFECYCLE_FOREIGN_OBJECTS_SQL" >"$output" 2>"$errors"; then
    lifecycle_fail "$LIFECYCLE_EXIT_RESTORE" \
      "cannot list the sandbox's objects: $(lifecycle_first_error_line "$errors"); check SANDBOX_DB_URI and rerun"
  fi

  count="$(grep -c . "$output" || :)"
  if ((count > 0)); then
    listed="$(head -n 20 -- "$output" | paste -s -d ';' - | sed 's/;/; /g')"
    lifecycle_fail "$LIFECYCLE_EXIT_RESTORE" \
      "${count} objects in database ${LIFECYCLE_SANDBOX_DATABASE} are not owned by the sandbox role ${LIFECYCLE_SANDBOX_ROLE}, so the restore would mix old and new: ${listed}; drop them or change their owner to ${LIFECYCLE_SANDBOX_ROLE}, then rerun (nothing was changed)"
  fi
  lifecycle_log restore "every object in the sandbox's schemas is owned by ${LIFECYCLE_SANDBOX_ROLE}"
}

# Start the sandbox session that runs the whole restore as one transaction. Its
# output goes to files, so a full pipe can never block it.
lifecycle_open_sandbox_session() {
  coproc LIFECYCLE_SANDBOX_SESSION {
    exec >"${LIFECYCLE_WORK}/restore-session.out" 2>"${LIFECYCLE_WORK}/restore-session.err"
    transport_psql_sandbox "$LIFECYCLE_TIMEOUT" restore
  }
  LIFECYCLE_SANDBOX_PID=$!
  lifecycle_track_child "$LIFECYCLE_SANDBOX_PID"
  if [[ -z "${LIFECYCLE_SANDBOX_SESSION[1]:-}" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_RESTORE" \
      "the sandbox session ended at once: $(lifecycle_first_error_line "${LIFECYCLE_WORK}/restore-session.err"); check SANDBOX_DB_URI and rerun (nothing was changed)"
  fi
  exec {LIFECYCLE_SANDBOX_IN}>&"${LIFECYCLE_SANDBOX_SESSION[1]}"
  exec {LIFECYCLE_SANDBOX_SESSION[1]}>&- {LIFECYCLE_SANDBOX_SESSION[0]}<&-
}

lifecycle_send_sandbox_sql() {
  printf '%s\n' "$@" >&"$LIFECYCLE_SANDBOX_IN" 2>/dev/null
}

# Print the SQL that compares every table's row count with prod's and raises an
# error on any difference, so that the transaction can only roll back. The caller
# sends COMMIT after it.
lifecycle_verification_sql() {
  printf '%s\n' \
    "CREATE TEMPORARY TABLE lifecycle_prod_counts (schema_name text, table_name text, row_count bigint) ON COMMIT DROP;"
  if ((LIFECYCLE_TABLE_TOTAL > 0)); then
    printf '%s\n' "INSERT INTO pg_temp.lifecycle_prod_counts VALUES"
    sed '$!s/$/,/; $s/$/;/' -- "$LIFECYCLE_PROD_COUNTS_FILE"
  fi
  cat <<EOF
DO \$lifecycle\$
DECLARE
  differences bigint;
  detail text;
BEGIN
  SELECT count(*), pg_catalog.string_agg(pg_catalog.format('%I.%I prod %s sandbox %s',
           coalesce(p.schema_name, s.schema_name), coalesce(p.table_name, s.table_name),
           coalesce(p.row_count::text, 'absent'), coalesce(s.row_count::text, 'absent')), ', ')
    INTO differences, detail
  FROM pg_temp.lifecycle_prod_counts p
  FULL JOIN (${LIFECYCLE_ROW_COUNTS_SQL}) s USING (schema_name, table_name)
  WHERE p.row_count IS DISTINCT FROM s.row_count;

  IF differences > 0 THEN
    RAISE EXCEPTION 'lifecycle-counts-differ: % tables differ from prod: %', differences, pg_catalog.left(detail, 2000);
  END IF;
END
\$lifecycle\$;
SELECT 'lifecycle-counts-equal';
EOF
}

# Close the session's input and wait for psql. Without a COMMIT in its input,
# psql ends the session and PostgreSQL rolls the transaction back.
lifecycle_close_sandbox_session() {
  local status=0
  exec {LIFECYCLE_SANDBOX_IN}>&-
  wait "$LIFECYCLE_SANDBOX_PID" || status=$?
  lifecycle_untrack_child "$LIFECYCLE_SANDBOX_PID"
  return "$status"
}

lifecycle_restore_failed() {
  local what="$1"
  local errors="${LIFECYCLE_WORK}/restore-session.err"
  lifecycle_close_sandbox_session || :

  if grep -q 'lifecycle-counts-differ' "$errors"; then
    lifecycle_fail "$LIFECYCLE_EXIT_COUNTS_DIFFER" \
      "row counts differ from prod, checked before COMMIT: $(grep -m 1 -o 'lifecycle-counts-differ: .*' "$errors"); the transaction was rolled back and the sandbox keeps its previous content; rerun refresh, and check what writes to prod during the dump if it repeats"
  fi
  local guard_message
  if guard_message="$(lifecycle_guard_failure "${LIFECYCLE_WORK}/restore-session.out" "$errors")"; then
    lifecycle_fail "$LIFECYCLE_EXIT_GUARDS" \
      "${guard_message}; the transaction was rolled back and the sandbox keeps its previous content and guards; fix the guard and rerun refresh"
  fi
  local detail=""
  if grep -q -E 'ERROR|FATAL' -- "$errors" 2>/dev/null; then
    detail="; psql: $(lifecycle_first_error_line "$errors")"
  fi
  lifecycle_fail "$LIFECYCLE_EXIT_RESTORE" \
    "${what}${detail}; the transaction was rolled back and the sandbox keeps its previous content; fix the cause and rerun refresh"
}

lifecycle_phase_restore() {
  local source="$LIFECYCLE_DUMP" status=0
  lifecycle_phase_start restore
  lifecycle_check_sandbox_ownership

  if [[ -n "${LIFECYCLE_TEST_RESTORE_FILE:-}" ]]; then
    lifecycle_log restore "test seam LIFECYCLE_TEST_RESTORE_FILE is set: restoring ${LIFECYCLE_TEST_RESTORE_FILE} instead of the verified dump"
    source="$LIFECYCLE_TEST_RESTORE_FILE"
  fi

  transport_check_quiesced
  lifecycle_log restore "replacing every object owned by ${LIFECYCLE_SANDBOX_ROLE} in database ${LIFECYCLE_SANDBOX_DATABASE}, in one transaction"
  lifecycle_open_sandbox_session
  # CREATE SCHEMA brings public back when the sandbox role owned it, because
  # DROP OWNED then drops it, and pg_dump 15 does not write CREATE SCHEMA public.
  lifecycle_send_sandbox_sql "BEGIN;" \
    "SET LOCAL client_min_messages = warning;" \
    "SET LOCAL lock_timeout = '${LIFECYCLE_LOCK_TIMEOUT}s';" \
    "DROP OWNED BY CURRENT_USER;" \
    "CREATE SCHEMA IF NOT EXISTS public;" ||
    lifecycle_restore_failed "the sandbox session ended before the restore started"

  lifecycle_run_child transport_restore_sandbox "$source" \
    >&"$LIFECYCLE_SANDBOX_IN" 2>"${LIFECYCLE_WORK}/pg_restore.err" || status=$?
  if ((status != 0)); then
    lifecycle_restore_failed "pg_restore exited with status ${status}: $(lifecycle_first_error_line "${LIFECYCLE_WORK}/pg_restore.err")"
  fi

  # Sent only now that pg_restore exited 0: a cut SQL stream never reaches COMMIT.
  lifecycle_log restore "pg_restore finished; comparing row counts with prod before COMMIT"
  lifecycle_log_guards_planned
  {
    lifecycle_verification_sql
    lifecycle_guards_sql
    # The database comment records where the data came from, and its schema once restored.
    checkpoint_provenance_hook
    printf '%s\n' "COMMIT;"
  } >"${LIFECYCLE_WORK}/verify.sql"
  lifecycle_send_sandbox_sql "$(<"${LIFECYCLE_WORK}/verify.sql")" ||
    lifecycle_restore_failed "the sandbox session ended during the restore"

  if ! lifecycle_close_sandbox_session; then
    lifecycle_restore_failed "the restore transaction failed"
  fi
  LIFECYCLE_RESTORE_COMMITTED=1
  if ! grep -qx 'lifecycle-counts-equal' "${LIFECYCLE_WORK}/restore-session.out"; then
    lifecycle_restore_failed "psql exited 0 without reporting the row count check"
  fi
  if ! lifecycle_guards_confirmed "${LIFECYCLE_WORK}/restore-session.out"; then
    lifecycle_restore_failed "psql exited 0 without reporting the guards check"
  fi
  lifecycle_log restore "committed"
  lifecycle_log_guards_committed
  lifecycle_phase_done
}

lifecycle_phase_verify() {
  lifecycle_phase_start verify
  lifecycle_log verify "${LIFECYCLE_TABLE_TOTAL} tables, ${LIFECYCLE_ROW_TOTAL} rows, all equal to prod (checked inside the restore transaction before COMMIT)"
  lifecycle_phase_done
}

# -- phase documents ----------------------------------------------------------------------

lifecycle_phase_documents() {
  local stats="${LIFECYCLE_WORK}/rsync.out" errors="${LIFECYCLE_WORK}/rsync.err"
  local transferred deleted

  if ((LIFECYCLE_DB_ONLY == 1)); then
    lifecycle_log documents "skipped: --db-only"
    return 0
  fi

  lifecycle_phase_start documents
  local sync=transport_sync_documents
  if documents_compare_finished; then
    sync=documents_sync_listed
  fi
  if ! lifecycle_run_child "$sync" >"$stats" 2>"$errors"; then
    lifecycle_fail "$LIFECYCLE_EXIT_DOCUMENTS" \
      "the documents sync from ${PROD_DOCUMENTS_DIR} to ${SANDBOX_DOCUMENTS_DIR} failed: $(lifecycle_first_error_line "$errors"); the sandbox database is already refreshed, fix the cause and rerun refresh"
  fi

  transferred="$(sed -n 's/^Number of regular files transferred: //p' "$stats")"
  deleted="$(sed -n 's/^Number of deleted files: \([0-9,]*\).*/\1/p' "$stats")"
  lifecycle_log documents "${SANDBOX_DOCUMENTS_DIR} now equals ${PROD_DOCUMENTS_DIR}: ${transferred:-0} files copied, ${deleted:-0} deleted"
  if [[ "${transferred:-0}" == "0" && "${deleted:-0}" == "0" ]]; then
    lifecycle_phase_done unchanged
  else
    lifecycle_phase_done
  fi
}

# -- commands -----------------------------------------------------------------------------

lifecycle_describe_destruction() {
  printf 'refresh would replace every object owned by the sandbox role in '
  transport_describe_targets
  printf '. Nothing was changed: rerun with --yes to do it.\n'
}

lifecycle_refresh() {
  lifecycle_phase_preflight
  lifecycle_lock
  documents_compare_start
  lifecycle_phase_dump
  lifecycle_phase_verify_dump
  transport_quiesce_sandbox
  lifecycle_phase_restore
  lifecycle_phase_verify
  transport_resume_sandbox
  lifecycle_phase_documents
}

main() {
  local command="" confirmed=0 argument

  if ((BASH_VERSINFO[0] < LIFECYCLE_MIN_BASH_MAJOR)); then
    lifecycle_usage_error "bash ${BASH_VERSION} is too old: run this script with bash ${LIFECYCLE_MIN_BASH_MAJOR} or newer"
  fi

  for argument in "$@"; do
    case "$argument" in
      -h | --help | help) lifecycle_usage; checkpoint_usage; return 0 ;;
      refresh | preflight | recover | rewind | checkpoint-save | checkpoint-list | checkpoint-drop | checkpoint-status)
        if [[ -n "$command" ]]; then
          lifecycle_usage_error "more than one command given (${command}, ${argument}): pass one command"
        fi
        command="$argument"
        ;;
      --yes) confirmed=1 ;;
      --db-only) LIFECYCLE_DB_ONLY=1 ;;
      --break-lock) LIFECYCLE_BREAK_LOCK=1 ;;
      *)
        if [[ "$command" != "checkpoint-drop" || -n "$CHECKPOINT_NAME" ]]; then
          lifecycle_usage_error "unknown argument '${argument}': see --help"
        fi
        CHECKPOINT_NAME="$argument"
        ;;
    esac
  done
  if [[ -z "$command" ]]; then
    lifecycle_usage_error "no command given: pass refresh --yes, preflight or recover (see --help)"
  fi
  LIFECYCLE_COMMAND="$command"

  lifecycle_validate_environment
  if [[ "$command" != "refresh" && "$command" != "preflight" && "$command" != "recover" ]]; then
    checkpoint_main "$command" "$confirmed" || return $?
  fi
  if [[ "$command" == "refresh" && "$confirmed" == 0 ]]; then
    lifecycle_describe_destruction >&2
    return "$LIFECYCLE_EXIT_USAGE"
  fi

  exec {LIFECYCLE_STDOUT}>&1 {LIFECYCLE_STDERR}>&2
  lifecycle_install_traps
  export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}"
  lifecycle_make_work_dir

  case "$command" in
    preflight) lifecycle_phase_preflight ;;
    recover) transport_recover ;;
    refresh)
      transport_begin
      lifecycle_refresh
      ;;
    *) checkpoint_run "$command" ;;
  esac
}

# Transports, checkpoints and guards live in lib/ beside this file. They are sourced
# last, so a lib can replace a transport_* function defined above.
LIFECYCLE_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib"
for lifecycle_lib in "$LIFECYCLE_LIB_DIR"/*.sh; do
  if [[ -e "$lifecycle_lib" ]]; then
    # shellcheck source=/dev/null
    source "$lifecycle_lib"
  fi
done
unset lifecycle_lib

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
