# shellcheck shell=bash
#
# Checkpoints of the sandbox: save its database and documents, list and drop them,
# and rewind the sandbox to the newest one. Sourced by sandbox-lifecycle.sh.
#
# A checkpoint is a folder <store>/<name> (name: UTC time, 20250101T120000Z) with:
#   meta        key=value lines: when, the sandbox's server and database, the prod dump's
#               sha256, the agent login, the API key's fingerprint (never the key)
#   documents/  the sandbox documents tree, hard links to the sandbox's files when
#               the filesystem allows, else a copy
#   manifest    path, type, size and mtime of every documents entry (no size for
#               folders), to detect a file rewritten in place through a hard link;
#               its sha256 is the documents fingerprint that checkpoint-status compares
# and either a database <sandbox>__ckpt_<name> on the sandbox's server, copied with
# CREATE DATABASE ... TEMPLATE (the sandbox role needs CREATEDB), or, without CREATEDB,
# database.dump (pg_dump -Fc) with row-counts.sql. The folder is renamed into place
# last, so a checkpoint exists exactly when its folder does.
#
# Rewind clones the checkpoint database to <sandbox>__rewind, then renames the sandbox
# away and the clone into its place in one transaction (PostgreSQL 15 allows ALTER
# DATABASE ... RENAME in a transaction block). That COMMIT is the commit point of the
# whole rewind. While the clone is made, rewind reads the sandbox's documents and lists
# the entries that differ from the checkpoint's manifest. Before the COMMIT it checks
# the checkpoint's own copies of those entries. After it, it deletes and copies only
# them, with rsync --link-dest, which links back unchanged files and is cheap to repeat
# (lib/kubectl-checkpoints.sh uses cp -al, because the Dolibarr image need not have rsync).
# A journal written before the COMMIT names a nonce that the clone carries in its
# database comment. When a rewind was interrupted after its COMMIT, checkpoint-save and
# rewind finish its documents. When it was interrupted before, they delete its journal.
# Without CREATEDB the database is restored from the dump in one transaction, as
# refresh does.
#
# With LIFECYCLE_GUARDS_CHECK_SQL (lib/guards.sh), checkpoint-save rejects a sandbox
# whose guards are not all in effect before it copies anything, and rewind checks the
# clone before the rename transaction (a dump rewind checks before its COMMIT), so a
# checkpoint saved without a guard configured since never replaces the sandbox.

readonly CHECKPOINT_EXIT_NONE=20
readonly CHECKPOINT_EXIT_REFUSED=21
readonly CHECKPOINT_EXIT_SAVE=22
readonly CHECKPOINT_EXIT_REWIND=23
readonly CHECKPOINT_EXIT_NOT_FOUND=24
readonly CHECKPOINT_DEFAULT_KEEP=3
readonly CHECKPOINT_NAME_PATTERN='^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?$'
readonly CHECKPOINT_SWAP_ATTEMPTS=3

# Columns of every ordinary table in the user schemas, by name so that a restore,
# which renumbers columns, keeps the same fingerprint.
readonly CHECKPOINT_SCHEMA_SQL="
SELECT pg_catalog.md5(coalesce(pg_catalog.string_agg(pg_catalog.format('%I.%I.%I %s', n.nspname, c.relname,
         a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)), ',' ORDER BY n.nspname, c.relname, a.attname), ''))
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"

CHECKPOINT_NAME=""
CHECKPOINT_FAIL_CODE=1
CHECKPOINT_STORE=""
CHECKPOINT_KEEP=0
CHECKPOINT_SERVER=""
CHECKPOINT_CREATEDB=""
CHECKPOINT_DB_OID=""
CHECKPOINT_SCHEMA=""
CHECKPOINT_COMMENT=""
CHECKPOINT_DOCUMENTS=""
CHECKPOINT_DUMP_SUMMARY=""
declare -A CHECKPOINT_META=()

# -- configuration and helpers --------------------------------------------------

checkpoint_usage() {
  cat <<'EOF'
Checkpoint commands (they never connect to prod, except checkpoint-save's preflight):
  checkpoint-save          Copy the sandbox database and documents into a new checkpoint,
                           then drop the oldest beyond LIFECYCLE_CHECKPOINT_KEEP.
  checkpoint-list          Print one line per checkpoint, oldest first.
  checkpoint-drop NAME     Delete one checkpoint.
  checkpoint-status        Print the newest checkpoint's age and whether the sandbox changed since.
  rewind --yes             Replace the sandbox database and documents with the newest checkpoint.

  LIFECYCLE_CHECKPOINT_DIR   folder of the checkpoints (default: SANDBOX_DOCUMENTS_DIR + ".checkpoints");
                             on the documents' filesystem, so that snapshots are hard links.
                             With LIFECYCLE_TRANSPORT=kubectl it is an absolute path inside the
                             sandbox's Dolibarr container (default: SANDBOX_DOCUMENTS_PATH + ".checkpoints").
  LIFECYCLE_CHECKPOINT_KEEP  how many checkpoints checkpoint-save keeps (default 3).
  LIFECYCLE_MAINTENANCE_DATABASE
                             database the sandbox role connects to for CREATE, ALTER and DROP
                             DATABASE (default postgres).
  CHECKPOINT_AGENT_LOGIN, CHECKPOINT_KEY_FINGERPRINT
                             recorded in the checkpoint's metadata by checkpoint-save; rewind
                             rejects a checkpoint saved with another key fingerprint.
  LIFECYCLE_GUARDS_CHECK_SQL SQL file that checks the guards without applying them: checkpoint-save
                             checks the sandbox and rewind the checkpoint's copy (exit 18 when one is off).

  18 a guard is not in effect   20 no checkpoint   21 checkpoint refused (another sandbox, or another schema)
  22 save failed     23 rewind failed (the message says which side it left)   24 checkpoint not found
  With LIFECYCLE_TRANSPORT=kubectl, a pod that cannot be found fails with the command's code:
  22 save, 23 rewind, 24 drop, 10 list and status.
EOF
}

checkpoint_configure() {
  CHECKPOINT_DOCUMENTS="$(transport_checkpoint_documents_path)"
  CHECKPOINT_STORE="${LIFECYCLE_CHECKPOINT_DIR:-${CHECKPOINT_DOCUMENTS%/}.checkpoints}"
  CHECKPOINT_STORE="${CHECKPOINT_STORE%/}"
  transport_checkpoint_validate
  lifecycle_validate_seconds LIFECYCLE_CHECKPOINT_KEEP "$CHECKPOINT_DEFAULT_KEEP" CHECKPOINT_KEEP
  local seam
  for seam in LIFECYCLE_TEST_REWIND_GATE_LOCK LIFECYCLE_TEST_DOCUMENTS_GATE_LOCK; do
    if [[ -n "${!seam:-}" && ! "${!seam}" =~ ^[0-9]+$ ]]; then
      lifecycle_usage_error "${seam} is invalid (${!seam}): unset it, it exists for tests only"
    fi
  done
}

# Test seam: wait on an advisory lock between the database COMMIT and the documents,
# so a test can kill a rewind exactly there.
checkpoint_test_documents_gate() {
  if [[ -n "${LIFECYCLE_TEST_DOCUMENTS_GATE_LOCK:-}" ]]; then
    checkpoint_query "$CHECKPOINT_EXIT_REWIND" "waiting on the test gate" \
      "SET client_connection_check_interval = '1s'; SELECT pg_catalog.pg_advisory_lock_shared(${LIFECYCLE_TEST_DOCUMENTS_GATE_LOCK})" >/dev/null
  fi
}

# Print SANDBOX_DB_URI with its database replaced by `database`, keeping user, host,
# port and query parameters.
checkpoint_uri_for() {
  local database="$1"
  local scheme="${SANDBOX_DB_URI%%://*}" rest="${SANDBOX_DB_URI#*://}"
  local authority="${rest%%[/?]*}" query=""
  if [[ "$rest" == *\?* ]]; then
    query="?${rest#*\?}"
  fi
  printf '%s://%s/%s%s' "$scheme" "$authority" "$database" "$query"
}

# Run psql through the transport as the sandbox role, on `database` instead of the sandbox's.
checkpoint_psql_on() {
  transport_psql_sandbox_on "$@"
}

# Run one query on the maintenance database, write its output to
# CHECKPOINT_QUERY_OUTPUT and fail with `code`. Callers read the file instead of
# using $(...), because an exit inside a command substitution ends only the subshell.
CHECKPOINT_QUERY_OUTPUT=""
checkpoint_query() {
  local code="$1" what="$2" sql="$3"
  local errors="${LIFECYCLE_WORK}/checkpoint-query.err"
  CHECKPOINT_QUERY_OUTPUT="${LIFECYCLE_WORK}/checkpoint-query.out"
  if ! lifecycle_run_child checkpoint_psql_on "${LIFECYCLE_MAINTENANCE_DATABASE:-postgres}" \
    "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" checkpoint -c "$sql" >"$CHECKPOINT_QUERY_OUTPUT" 2>"$errors"; then
    lifecycle_fail "$code" "${what} failed: $(lifecycle_first_error_line "$errors"); check that the sandbox role may connect to database ${LIFECYCLE_MAINTENANCE_DATABASE:-postgres} (LIFECYCLE_MAINTENANCE_DATABASE)"
  fi
}

checkpoint_sql_literal() {
  printf "'%s'" "${1//\'/\'\'}"
}

checkpoint_database_name() {
  printf '%s__ckpt_%s' "$LIFECYCLE_SANDBOX_DATABASE" "$1"
}

# Fill the sandbox's identity: server, database, role, CREATEDB, OID, schema
# fingerprint and database comment. Reads the sandbox only.
checkpoint_describe_sandbox() {
  local code="$1" line owner super
  local sql="SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system()), current_database(), current_user,
    (SELECT rolcreatedb FROM pg_catalog.pg_roles WHERE rolname = current_user),
    (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
    (SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = current_database()),
    (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()),
    (${CHECKPOINT_SCHEMA_SQL}),
    coalesce(pg_catalog.shobj_description((SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()), 'pg_database'), '')"
  local errors="${LIFECYCLE_WORK}/describe-checkpoint.err"

  if ! line="$(lifecycle_run_child transport_psql_sandbox "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" checkpoint -c "$sql" 2>"$errors")"; then
    lifecycle_fail "$code" "cannot query the sandbox at $(transport_database_label sandbox): $(lifecycle_first_error_line "$errors"); check the URI and that the server runs"
  fi
  IFS=$'\t' read -r CHECKPOINT_SERVER LIFECYCLE_SANDBOX_DATABASE LIFECYCLE_SANDBOX_ROLE CHECKPOINT_CREATEDB \
    super owner CHECKPOINT_DB_OID CHECKPOINT_SCHEMA CHECKPOINT_COMMENT <<<"$line"

  if [[ "$super" == "t" ]]; then
    lifecycle_fail "$code" "the sandbox role ${LIFECYCLE_SANDBOX_ROLE} is a superuser; connect as a role without superuser that owns database ${LIFECYCLE_SANDBOX_DATABASE}"
  fi
  if [[ "$owner" != "$LIFECYCLE_SANDBOX_ROLE" ]]; then
    lifecycle_fail "$code" "database ${LIFECYCLE_SANDBOX_DATABASE} is owned by ${owner}, not by the sandbox role ${LIFECYCLE_SANDBOX_ROLE}; connect as its owner"
  fi
}

# Print the sha256 of the prod dump that the sandbox was last refreshed from, as
# recorded in the sandbox database's comment, or "unknown".
checkpoint_prod_dump_sha256() {
  if [[ "$CHECKPOINT_COMMENT" =~ prod\ dump\ sha256:([0-9a-f]{64}) ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
  else
    printf 'unknown'
  fi
}

# SQL that records the refresh's provenance in the sandbox database's comment. The
# restore transaction runs it, so the comment changes exactly when the data does.
checkpoint_provenance_sql() {
  local text="$1"
  printf "DO \$checkpoint\$ BEGIN EXECUTE pg_catalog.format('COMMENT ON DATABASE %%I IS %%L', current_database(), %s); END \$checkpoint\$;\n" \
    "$(checkpoint_sql_literal "$text")"
}

# The refresh's comment also records the schema fingerprint right after the restore,
# so that rewind compares checkpoints with the schema prod had, not with tables or
# columns that a rehearsal added since.
checkpoint_refresh_provenance_sql() {
  local digest text
  digest="$(sha256sum -- "$LIFECYCLE_DUMP")"
  text="sandbox-lifecycle: refreshed at $(lifecycle_timestamp) from prod dump sha256:${digest%% *}; schema:"
  printf "DO \$checkpoint\$ BEGIN EXECUTE pg_catalog.format('COMMENT ON DATABASE %%I IS %%L', current_database(), %s || (%s)); END \$checkpoint\$;\n" \
    "$(checkpoint_sql_literal "$text")" "$CHECKPOINT_SCHEMA_SQL"
}

# Print the schema fingerprint of the sandbox's last refresh, as its comment records
# it, or the current one for a sandbox whose comment has none.
checkpoint_base_schema() {
  if [[ "$CHECKPOINT_COMMENT" =~ schema:([0-9a-f]{32}) ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
  else
    printf '%s' "$CHECKPOINT_SCHEMA"
  fi
}

# -- the store -----------------------------------------------------------------
#
# Every file operation on the store and on the sandbox documents goes through a
# transport_store_* or transport_documents_* function, called with checkpoint_files.
# The local ones below act on this machine. lib/kubectl-checkpoints.sh replaces them
# with POSIX sh scripts run in the sandbox's Dolibarr pod, where the documents live.

# Run a store or documents function, write its stdout to CHECKPOINT_FILES_OUTPUT and
# fail with CHECKPOINT_FAIL_CODE when it fails. Callers read the file instead of using
# $(...), because an exit inside a command substitution ends only the subshell.
CHECKPOINT_FILES_OUTPUT=""
checkpoint_files() {
  local what="$1" errors="${LIFECYCLE_WORK}/checkpoint-files.err"
  shift
  CHECKPOINT_FILES_OUTPUT="${LIFECYCLE_WORK}/checkpoint-files.out"
  if ! lifecycle_run_child "$@" >"$CHECKPOINT_FILES_OUTPUT" 2>"$errors"; then
    lifecycle_fail "$CHECKPOINT_FAIL_CODE" "${what} failed: $(lifecycle_first_error_line "$errors"); check $(transport_checkpoint_store_label) and rerun"
  fi
}

# Write the checkpoint names in the store to CHECKPOINT_NAMES_FILE, oldest first:
# folders whose name matches CHECKPOINT_NAME_PATTERN and that hold a meta file. Set
# CHECKPOINT_LATEST to the newest name, or "". Like every caller of checkpoint_files,
# it runs in the main shell, never in $(...).
CHECKPOINT_NAMES_FILE=""
CHECKPOINT_LATEST=""
checkpoint_names() {
  local entry has_meta
  CHECKPOINT_NAMES_FILE="${LIFECYCLE_WORK}/checkpoint-names.list"
  checkpoint_files "listing ${CHECKPOINT_STORE}" transport_store_list "$CHECKPOINT_STORE"
  while IFS=$'\t' read -r entry has_meta; do
    if [[ "$has_meta" == 1 && "$entry" =~ $CHECKPOINT_NAME_PATTERN ]]; then
      printf '%s\n' "$entry"
    fi
  done <"$CHECKPOINT_FILES_OUTPUT" | LC_ALL=C sort >"$CHECKPOINT_NAMES_FILE"
  CHECKPOINT_LATEST="$(tail -n 1 -- "$CHECKPOINT_NAMES_FILE")"
}

# Write the store's entries whose name starts with `prefix`, such as ".partial-", to
# CHECKPOINT_ENTRIES_FILE.
CHECKPOINT_ENTRIES_FILE=""
checkpoint_store_entries() {
  local prefix="$1" entry has_meta
  CHECKPOINT_ENTRIES_FILE="${LIFECYCLE_WORK}/checkpoint-entries.list"
  checkpoint_files "listing ${CHECKPOINT_STORE}" transport_store_list "$CHECKPOINT_STORE"
  while IFS=$'\t' read -r entry has_meta; do
    if [[ "$entry" == "$prefix"* ]]; then
      printf '%s\n' "$entry"
    fi
  done <"$CHECKPOINT_FILES_OUTPUT" >"$CHECKPOINT_ENTRIES_FILE"
}

# Copy the store file `relative` (such as "baseline") to `target` on this machine.
checkpoint_store_fetch() {
  local relative="$1" target="$2"
  checkpoint_files "reading ${CHECKPOINT_STORE}/${relative}" transport_store_read "$CHECKPOINT_STORE/$relative"
  mv -- "$CHECKPOINT_FILES_OUTPUT" "$target"
}

# Copy the file `source` on this machine into the store as `relative`.
checkpoint_store_put() {
  local source="$1" relative="$2"
  checkpoint_files "writing ${CHECKPOINT_STORE}/${relative}" transport_store_write "$source" "$CHECKPOINT_STORE/$relative"
}

checkpoint_read_meta() {
  local name="$1" key value meta="${LIFECYCLE_WORK}/checkpoint.meta"
  CHECKPOINT_META=()
  checkpoint_store_fetch "$name/meta" "$meta"
  while IFS='=' read -r key value; do
    [[ -n "$key" ]] && CHECKPOINT_META["$key"]="$value"
  done <"$meta"
  checkpoint_validate_meta "$name"
}

# Reject a meta file that lacks a field the commands read, or whose time or method
# is not one this script writes, with the command that gets rid of the checkpoint.
checkpoint_validate_meta() {
  local name="$1" key problem=""
  for key in server database documents_dir schema prod_dump_sha256 agent_login key_fingerprint taken_at; do
    if [[ -z "${CHECKPOINT_META[$key]:-}" ]]; then
      problem="it has no ${key}"
      break
    fi
  done
  if [[ -z "$problem" && ! "${CHECKPOINT_META[taken_epoch]:-}" =~ ^[0-9]+$ ]]; then
    problem="taken_epoch is not a number (${CHECKPOINT_META[taken_epoch]:-missing})"
  fi
  if [[ -z "$problem" && ! "${CHECKPOINT_META[method]:-}" =~ ^(template|dump)$ ]]; then
    problem="method is neither template nor dump (${CHECKPOINT_META[method]:-missing})"
  fi
  if [[ -n "$problem" ]]; then
    lifecycle_fail "$CHECKPOINT_EXIT_REFUSED" \
      "the meta file of checkpoint ${name} is damaged: ${problem}; drop the checkpoint with checkpoint-drop ${name} (invoke checkpoint.drop ${name}) and take a new one (nothing was changed)"
  fi
}

# Write the manifest of the tree at `root` (see the file header) to `target` on this machine.
checkpoint_manifest() {
  local root="$1" target="$2"
  checkpoint_files "listing the documents under ${root}" transport_documents_manifest "$root"
  mv -- "$CHECKPOINT_FILES_OUTPUT" "$target"
}

# Set CHECKPOINT_FINGERPRINT to a cheap fingerprint of a documents tree: the sha256 of
# its manifest. It reads metadata only, so a rewrite that keeps size and mtime goes unnoticed.
CHECKPOINT_FINGERPRINT=""
checkpoint_documents_fingerprint() {
  local root="$1" digest manifest="${LIFECYCLE_WORK}/fingerprint.manifest"
  checkpoint_manifest "$root" "$manifest"
  digest="$(sha256sum <"$manifest")"
  CHECKPOINT_FINGERPRINT="${digest%% *}"
}

checkpoint_prepare_store() {
  checkpoint_files "creating ${CHECKPOINT_STORE}" transport_store_make_folder "$CHECKPOINT_STORE"
}

# -- transport: local files --------------------------------------------------------

transport_checkpoint_documents_path() {
  printf '%s' "${SANDBOX_DOCUMENTS_DIR:-}"
}

# Reject, before anything is written, a checkpoint folder that is not a folder, or is
# prod's or the sandbox's documents folder or inside one, and a sandbox documents folder
# inside prod's. Checkpoint commands run no preflight of the documents folders.
transport_checkpoint_validate() {
  local store sandbox prod=""
  store="$(realpath -m -- "$CHECKPOINT_STORE")"
  sandbox="$(realpath -m -- "$SANDBOX_DOCUMENTS_DIR")"
  if [[ -n "${PROD_DOCUMENTS_DIR:-}" ]]; then
    prod="$(realpath -m -- "$PROD_DOCUMENTS_DIR")"
  fi
  if [[ -n "$prod" ]] && checkpoint_paths_overlap "$sandbox" "$prod"; then
    lifecycle_usage_error "SANDBOX_DOCUMENTS_DIR (${sandbox}) and PROD_DOCUMENTS_DIR (${prod}) are the same folder or one contains the other: give the sandbox its own documents folder"
  fi
  if [[ -n "$prod" ]] && checkpoint_paths_overlap "$store" "$prod"; then
    lifecycle_usage_error "LIFECYCLE_CHECKPOINT_DIR (setting checkpoints.dir) is invalid (${store}): it overlaps prod's documents folder ${prod}; choose a folder outside prod's documents"
  fi
  if checkpoint_paths_overlap "$store" "$sandbox"; then
    lifecycle_usage_error "LIFECYCLE_CHECKPOINT_DIR (setting checkpoints.dir) is invalid (${store}): it overlaps the sandbox's documents folder ${sandbox}; choose a folder beside it, such as ${sandbox}.checkpoints"
  fi
  if [[ -e "$store" && ! -d "$store" ]]; then
    lifecycle_usage_error "LIFECYCLE_CHECKPOINT_DIR (setting checkpoints.dir) is invalid (${store}): it exists and is not a folder; remove it or choose another path"
  fi
}

# Return 0 when `first` and `second` are the same folder or one contains the other.
checkpoint_paths_overlap() {
  local first="$1" second="$2"
  [[ "$first" == "$second" || "$first/" == "$second/"* || "$second/" == "$first/"* ]]
}

# Resolve what the commands reach; the local transport has nothing to resolve.
transport_checkpoint_begin() { :; }

transport_checkpoint_store_label() {
  printf 'the folder %s' "$CHECKPOINT_STORE"
}

# The documents folder that a checkpoint records, and rewind compares, in meta's documents_dir.
transport_checkpoint_documents_identity() {
  realpath -m -- "$SANDBOX_DOCUMENTS_DIR"
}

transport_psql_sandbox_on() {
  local database="$1"
  shift
  SANDBOX_DB_URI="$(checkpoint_uri_for "$database")" transport_psql_sandbox "$@"
}

# Print "<name>\t<1 when <name>/meta is a file, else 0>" for every entry of `folder`,
# hidden ones included; nothing when the folder does not exist.
transport_store_list() {
  local folder="$1" path
  [[ -d "$folder" ]] || return 0
  for path in "$folder"/* "$folder"/.[!.]*; do
    if [[ -e "$path" || -L "$path" ]]; then
      printf '%s\t%s\n' "${path##*/}" "$([[ -f "$path/meta" ]] && printf 1 || printf 0)"
    fi
  done
}

transport_store_read() {
  cat -- "$1"
}

transport_store_write() {
  local source="$1" target="$2"
  cat -- "$source" >"$target"
}

transport_store_remove() {
  rm -rf -- "$@"
}

transport_store_rename() {
  mv -T -- "$1" "$2"
}

transport_store_make_folder() {
  mkdir -p -- "$1"
  chmod 700 -- "$1"
}

# Copy the documents tree `source` to `folder`/documents with hard links when source
# and target share a filesystem, else copy the files, then write `folder`/manifest.
# Prints "hardlinks" or "copy".
transport_store_snapshot() {
  local source="$1" folder="$2" method="hardlinks"
  if ! cp -al -- "$source" "$folder/documents" 2>/dev/null; then
    rm -rf -- "$folder/documents"
    cp -a -- "$source" "$folder/documents"
    method="copy"
  fi
  transport_documents_manifest "$folder/documents" >"$folder/manifest"
  printf '%s' "$method"
}

# Print "<relative path>\t<type>[\t<size>]\t<mtime>" for every entry under `root`,
# sorted. Folders get no size, because ext4 never shrinks a folder that had more entries.
transport_documents_manifest() {
  local root="$1"
  (cd -- "$root" && find . \( -type f -printf '%P\tf\t%s\t%T@\n' \) -o -printf '%P\t%y\t%T@\n' | LC_ALL=C sort)
}

transport_documents_make_folder() {
  mkdir -p -- "$1"
}

# Print the manifest of the tree at `root`, or nothing when it does not exist.
transport_documents_walk() {
  if [[ -d "$1" ]]; then
    transport_documents_manifest "$1"
  fi
}

# Print the manifest lines of the entries under `root` whose paths the local file
# `paths` lists; see checkpoint_stat_entries.
transport_documents_stat_entries() {
  local root="$1" paths="$2"
  checkpoint_stat_entries "$root" <"$paths"
}

# Make `target` equal `source` for the listed entries: delete each path of the local
# file `deletions`, then copy each path of `copies` ("." for the root) with rsync
# --link-dest, so restored files are hard links again.
transport_documents_apply() {
  local source="$1" target="$2" deletions="$3" copies="$4" path
  source="$(realpath -- "$source")"
  mkdir -p -- "$target"
  # One rm for many paths: a process per entry took minutes for 100,000 stray files.
  while IFS= read -r path; do
    if [[ -n "$path" ]]; then
      printf '%s/%s\0' "${target:?}" "$path"
    fi
  done <"$deletions" | xargs -0 -r rm -rf --
  if [[ -s "$copies" ]]; then
    lifecycle_bounded "$LIFECYCLE_TIMEOUT" rsync -a --link-dest="$source" --files-from="$copies" -- "$source/" "$target/"
  fi
}

# -- recovery of an interrupted rewind or save ------------------------------------

# Finish or undo what an interrupted run left: the documents swap of a committed
# rewind, prepared trees and databases of an uncommitted one, partial checkpoints.
checkpoint_recover() {
  local journal="${LIFECYCLE_WORK}/rewind.journal" nonce="" name="" entry

  checkpoint_store_entries rewind.journal
  if [[ -s "$CHECKPOINT_ENTRIES_FILE" ]]; then
    checkpoint_store_fetch rewind.journal "$journal"
    read -r nonce name <"$journal" || :
    checkpoint_names
    if [[ -n "$nonce" && "$CHECKPOINT_COMMENT" == *"rewind ${nonce}"* ]] && grep -qxF -- "$name" "$CHECKPOINT_NAMES_FILE"; then
      lifecycle_log "$LIFECYCLE_PHASE" "an interrupted rewind to ${name} had committed its database: finishing its documents"
      checkpoint_sync_documents "$name"
    else
      checkpoint_check_no_rewind_session
      lifecycle_log "$LIFECYCLE_PHASE" "an interrupted rewind to ${name} had not committed: the sandbox kept its previous content"
    fi
    checkpoint_files "removing the rewind journal" transport_store_remove "$CHECKPOINT_STORE/rewind.journal"
  fi

  checkpoint_store_entries .
  while IFS= read -r entry; do
    if [[ "$entry" == .partial-* || "$entry" == .dropping-* ]]; then
      checkpoint_drop_folder_and_database "$CHECKPOINT_STORE/$entry" "${entry#.*-}"
    fi
  done <"$CHECKPOINT_ENTRIES_FILE"
  checkpoint_drop_leftover_databases
}

# Fail while the rename session of an interrupted rewind is still open. With the
# kubectl transport, psql runs in the database pod and outlives a killed script
# until its input ends, so its transaction is still undecided.
checkpoint_check_no_rewind_session() {
  local sessions
  checkpoint_query "$CHECKPOINT_FAIL_CODE" "looking for an interrupted rewind's session" \
    "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE application_name = 'sandbox-lifecycle rewind' AND usename = current_user"
  sessions="$(<"$CHECKPOINT_QUERY_OUTPUT")"
  if [[ "$sessions" != "0" ]]; then
    lifecycle_fail "$CHECKPOINT_FAIL_CODE" \
      "${sessions} session(s) of an interrupted rewind are still open on the sandbox's server, so its rename transaction is not decided yet; wait for them to end (at most LIFECYCLE_TIMEOUT_SECONDS), then rerun (nothing was changed)"
  fi
}

# Drop <sandbox>__rewind and <sandbox>__old_* databases that a run left behind.
checkpoint_drop_leftover_databases() {
  local leftovers database
  local pattern="^$(printf '%s' "$LIFECYCLE_SANDBOX_DATABASE" | sed 's/[][\.*^$]/\\&/g')__(rewind|old_[0-9a-f]+)\$"
  checkpoint_query "$CHECKPOINT_FAIL_CODE" "listing leftover databases" \
    "SELECT datname FROM pg_catalog.pg_database WHERE datname ~ $(checkpoint_sql_literal "$pattern") AND datdba = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)"
  leftovers="$(<"$CHECKPOINT_QUERY_OUTPUT")"
  for database in $leftovers; do
    lifecycle_log "$LIFECYCLE_PHASE" "dropping database ${database}, left by an interrupted rewind"
    checkpoint_query "$CHECKPOINT_FAIL_CODE" "DROP DATABASE ${database}" "DROP DATABASE IF EXISTS \"${database}\""
  done
}

checkpoint_drop_folder_and_database() {
  local folder="$1" name="$2"
  checkpoint_query "$CHECKPOINT_FAIL_CODE" "dropping the database of checkpoint ${name}" \
    "DROP DATABASE IF EXISTS \"$(checkpoint_database_name "$name")\""
  checkpoint_files "removing ${folder}" transport_store_remove "$folder"
}

# -- save ------------------------------------------------------------------------------

# Set CHECKPOINT_NEW_NAME to the current UTC time, with a suffix when the store
# already has an entry of that name.
CHECKPOINT_NEW_NAME=""
checkpoint_new_name() {
  local base suffix=1 name
  base="$(date -u +%Y%m%dT%H%M%SZ)"
  name="$base"
  checkpoint_store_entries ""
  while grep -qxF -e "$name" -e ".partial-$name" -- "$CHECKPOINT_ENTRIES_FILE"; do
    suffix=$((suffix + 1))
    name="${base}-${suffix}"
  done
  CHECKPOINT_NEW_NAME="$name"
}

# The pg_stat_activity condition for the sessions that the sandbox role may end: its
# own client sessions. Ending any other one, such as an autovacuum worker, fails and
# aborts the transaction. The server stops autovacuum workers itself before CREATE
# DATABASE ... TEMPLATE and ALTER DATABASE ... RENAME.
checkpoint_own_sessions_sql() {
  printf '%s' "pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend' AND usesysid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)"
}

# SQL run on the maintenance database: end the sessions of other clients on
# `source` (CREATE DATABASE ... TEMPLATE and ALTER DATABASE ... RENAME need it, and
# wait up to 5 s for them to leave), then copy it.
checkpoint_copy_database_sql() {
  local source="$1" target="$2"
  cat <<EOF
SET client_min_messages = warning;
SELECT count(pg_catalog.pg_terminate_backend(pid, 5000)) FROM pg_catalog.pg_stat_activity
  WHERE datname = $(checkpoint_sql_literal "$source") AND $(checkpoint_own_sessions_sql);
CREATE DATABASE "${target}" TEMPLATE "${source}" STRATEGY FILE_COPY;
ALTER DATABASE "${target}" ALLOW_CONNECTIONS false;
EOF
}

# Copy database `source` to `target`, retrying when a client connects in between.
checkpoint_copy_database() {
  local code="$1" source="$2" target="$3" attempt
  local errors="${LIFECYCLE_WORK}/copy-database.err"
  for ((attempt = 1; attempt <= CHECKPOINT_SWAP_ATTEMPTS; attempt++)); do
    if checkpoint_copy_database_sql "$source" "$target" | lifecycle_run_child checkpoint_psql_on \
      "${LIFECYCLE_MAINTENANCE_DATABASE:-postgres}" "$LIFECYCLE_TIMEOUT" checkpoint >/dev/null 2>"$errors"; then
      return 0
    fi
    checkpoint_query "$code" "cleaning up ${target}" "DROP DATABASE IF EXISTS \"${target}\"" >/dev/null
    if ! grep -q 'is being accessed by other users' "$errors"; then
      break
    fi
    lifecycle_log "$LIFECYCLE_PHASE" "database ${source} still had other sessions (attempt ${attempt} of ${CHECKPOINT_SWAP_ATTEMPTS})"
  done
  lifecycle_fail "$code" "CREATE DATABASE ${target} TEMPLATE ${source} failed: $(lifecycle_first_error_line "$errors"); stop the clients that connect to ${source} as another role, then rerun"
}

# Without CREATEDB: dump the sandbox and record its row counts, for a restore in
# one transaction that checks them before COMMIT.
# Set CHECKPOINT_DUMP_SUMMARY to the dump's "<size> <sha256>", which meta records.
checkpoint_dump_database() {
  local folder="$1" tables counts="${LIFECYCLE_WORK}/checkpoint-row-counts.sql"
  local summary="${LIFECYCLE_WORK}/checkpoint-dump.summary"
  lifecycle_log checkpoint-save "the sandbox role ${LIFECYCLE_SANDBOX_ROLE} may not create databases: using pg_dump and pg_restore, the slower path; grant it CREATEDB for a template copy"
  if ! lifecycle_run_child transport_dump_sandbox "$folder/database.dump" >"$summary" 2>"${LIFECYCLE_WORK}/checkpoint-dump.err"; then
    lifecycle_fail "$CHECKPOINT_EXIT_SAVE" "pg_dump of the sandbox failed: $(lifecycle_first_error_line "${LIFECYCLE_WORK}/checkpoint-dump.err"); check free space in $(transport_checkpoint_store_label) and rerun"
  fi
  CHECKPOINT_DUMP_SUMMARY="$(<"$summary")"
  if ! lifecycle_run_child transport_psql_sandbox "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" checkpoint -c \
    "SELECT pg_catalog.format('(%L, %L, %s)', schema_name, table_name, row_count) FROM (${LIFECYCLE_ROW_COUNTS_SQL}) counts ORDER BY 1" \
    >"$counts" 2>"${LIFECYCLE_WORK}/checkpoint-counts.err"; then
    lifecycle_fail "$CHECKPOINT_EXIT_SAVE" "counting the sandbox's rows failed: $(lifecycle_first_error_line "${LIFECYCLE_WORK}/checkpoint-counts.err"); rerun"
  fi
  checkpoint_store_put "$counts" "${folder#"$CHECKPOINT_STORE"/}/row-counts.sql"
  tables="$(grep -c . "$counts" || :)"
  lifecycle_log checkpoint-save "dumped ${CHECKPOINT_DUMP_SUMMARY%% *} bytes (sha256 ${CHECKPOINT_DUMP_SUMMARY#* }), ${tables} tables"
}

# Dump the sandbox database to `file` and print the dump's "<size> <sha256>".
transport_dump_sandbox() {
  local file="$1" size digest
  # The dump contains password hashes and encrypted API keys, so it is mode 600 from the start.
  (umask 077 && PGAPPNAME="sandbox-lifecycle checkpoint" \
    lifecycle_bounded "$LIFECYCLE_TIMEOUT" pg_dump -Fc --no-owner --no-privileges -f "$file" -d "$SANDBOX_DB_URI")
  size="$(stat -c %s -- "$file")"
  digest="$(sha256sum <"$file")"
  printf '%s %s\n' "$size" "${digest%% *}"
}

# Print the path on this machine of the checkpoint dump `file` for pg_restore. The
# local store is on this machine, so the path is the file itself.
transport_fetch_checkpoint_dump() {
  local file="$1"
  printf '%s\n' "$file"
}

checkpoint_write_meta() {
  local folder="$1" name="$2" method="$3" documents_method="$4" meta="${LIFECYCLE_WORK}/checkpoint.meta"
  {
    printf 'name=%s\n' "$name"
    printf 'taken_at=%s\n' "$(lifecycle_timestamp)"
    printf 'taken_epoch=%s\n' "$EPOCHSECONDS"
    printf 'server=%s\n' "$CHECKPOINT_SERVER"
    printf 'database=%s\n' "$LIFECYCLE_SANDBOX_DATABASE"
    printf 'documents_dir=%s\n' "$(transport_checkpoint_documents_identity)"
    printf 'method=%s\n' "$method"
    printf 'documents_method=%s\n' "$documents_method"
    printf 'schema=%s\n' "$CHECKPOINT_SCHEMA"
    printf 'base_schema=%s\n' "$(checkpoint_base_schema)"
    printf 'prod_dump_sha256=%s\n' "$(checkpoint_prod_dump_sha256)"
    printf 'agent_login=%s\n' "${CHECKPOINT_AGENT_LOGIN:-unknown}"
    printf 'key_fingerprint=%s\n' "${CHECKPOINT_KEY_FINGERPRINT:-unknown}"
    if [[ -n "$CHECKPOINT_DUMP_SUMMARY" ]]; then
      printf 'dump_size=%s\n' "${CHECKPOINT_DUMP_SUMMARY%% *}"
      printf 'dump_sha256=%s\n' "${CHECKPOINT_DUMP_SUMMARY#* }"
    fi
  } >"$meta"
  checkpoint_store_put "$meta" "${folder#"$CHECKPOINT_STORE"/}/meta"
}

checkpoint_save() {
  local name partial method documents_method
  CHECKPOINT_FAIL_CODE="$CHECKPOINT_EXIT_SAVE"
  lifecycle_phase_preflight
  lifecycle_lock

  lifecycle_phase_start checkpoint-save
  checkpoint_describe_sandbox "$CHECKPOINT_EXIT_SAVE"
  if ! checkpoint_check_guards "$LIFECYCLE_SANDBOX_DATABASE"; then
    lifecycle_fail "$LIFECYCLE_EXIT_GUARDS" \
      "the sandbox is not guarded (${CHECKPOINT_GUARDS_PROBLEM}); run invoke guards.apply, or refresh, then save again (no checkpoint was created)"
  fi
  checkpoint_prepare_store
  checkpoint_recover

  checkpoint_new_name
  name="$CHECKPOINT_NEW_NAME"
  partial="$CHECKPOINT_STORE/.partial-$name"
  checkpoint_files "creating ${partial}" transport_store_make_folder "$partial"
  if [[ "$CHECKPOINT_CREATEDB" == "t" ]]; then
    method="template"
    checkpoint_copy_database "$CHECKPOINT_EXIT_SAVE" "$LIFECYCLE_SANDBOX_DATABASE" "$(checkpoint_database_name "$name")"
    lifecycle_log checkpoint-save "copied database ${LIFECYCLE_SANDBOX_DATABASE} to $(checkpoint_database_name "$name") with CREATE DATABASE ... TEMPLATE"
  else
    method="dump"
    checkpoint_dump_database "$partial"
  fi

  checkpoint_files "copying the documents ${SANDBOX_DOCUMENTS_DIR} to ${partial}" \
    transport_store_snapshot "$CHECKPOINT_DOCUMENTS" "$partial"
  documents_method="$(<"$CHECKPOINT_FILES_OUTPUT")"
  if [[ "$documents_method" != "hardlinks" ]]; then
    lifecycle_log checkpoint-save "hard links from ${CHECKPOINT_STORE} to ${SANDBOX_DOCUMENTS_DIR} are impossible, so the documents were copied; put LIFECYCLE_CHECKPOINT_DIR on the documents' filesystem for hard links"
  fi
  checkpoint_store_fetch ".partial-$name/manifest" "${LIFECYCLE_WORK}/saved.manifest"
  if ! checkpoint_check_manifest_names "${LIFECYCLE_WORK}/saved.manifest"; then
    checkpoint_drop_folder_and_database "$partial" "$name"
    lifecycle_fail "$CHECKPOINT_EXIT_SAVE" \
      "a sandbox document has a tab or a newline in its name (${CHECKPOINT_BAD_NAME}), which the documents list cannot hold; rename or delete it, then save again (no checkpoint was created)"
  fi
  checkpoint_write_meta "$partial" "$name" "$method" "$documents_method"
  checkpoint_files "renaming ${partial}" transport_store_rename "$partial" "$CHECKPOINT_STORE/$name"
  checkpoint_describe_sandbox "$CHECKPOINT_EXIT_SAVE"
  checkpoint_write_baseline "$name"

  checkpoint_apply_retention
  # Last, so that the recap, which shows a phase's last line, names the new checkpoint.
  lifecycle_log checkpoint-save "saved checkpoint ${name} (database by ${method}, documents by ${documents_method}) in ${CHECKPOINT_STORE}"
  lifecycle_phase_done
}

checkpoint_apply_retention() {
  local names=() name index
  checkpoint_names
  mapfile -t names <"$CHECKPOINT_NAMES_FILE"
  for ((index = 0; index < ${#names[@]} - CHECKPOINT_KEEP; index++)); do
    name="${names[index]}"
    checkpoint_drop_one "$name"
    lifecycle_log "$LIFECYCLE_PHASE" "dropped checkpoint ${name}: LIFECYCLE_CHECKPOINT_KEEP is ${CHECKPOINT_KEEP}"
  done
}

# Rename the folder first, so the checkpoint disappears from the list at once and a
# run interrupted later finishes the drop in checkpoint_recover.
checkpoint_drop_one() {
  local name="$1"
  checkpoint_files "renaming checkpoint ${name}" transport_store_rename "$CHECKPOINT_STORE/$name" "$CHECKPOINT_STORE/.dropping-$name"
  checkpoint_drop_folder_and_database "$CHECKPOINT_STORE/.dropping-$name" "$name"
}

# -- baseline and status ----------------------------------------------------------

# Write "<database oid> <rows written> <documents fingerprint>" for checkpoint-status.
# Rows written is pg_stat_database's tup_inserted + tup_updated + tup_deleted. The
# sandbox's documents equal checkpoint `name`'s now, so its manifest gives the fingerprint.
checkpoint_write_baseline() {
  local name="$1" digest manifest="${LIFECYCLE_WORK}/baseline.manifest" baseline="${LIFECYCLE_WORK}/baseline"
  checkpoint_rows_written
  checkpoint_store_fetch "$name/manifest" "$manifest"
  digest="$(sha256sum <"$manifest")"
  printf '%s %s %s\n' "$CHECKPOINT_DB_OID" "$(<"$CHECKPOINT_QUERY_OUTPUT")" "${digest%% *}" >"$baseline"
  checkpoint_store_put "$baseline" baseline
}

checkpoint_rows_written() {
  checkpoint_query "$CHECKPOINT_FAIL_CODE" "reading pg_stat_database" \
    "SELECT coalesce(sum(tup_inserted + tup_updated + tup_deleted), 0) FROM pg_catalog.pg_stat_database WHERE datname = $(checkpoint_sql_literal "$LIFECYCLE_SANDBOX_DATABASE")"
}

checkpoint_status() {
  local name oid written fingerprint database_changed documents_changed age nonce
  CHECKPOINT_FAIL_CODE="$LIFECYCLE_EXIT_PREFLIGHT"
  lifecycle_phase_start checkpoint-status
  checkpoint_names
  name="$CHECKPOINT_LATEST"
  if [[ -z "$name" ]]; then
    lifecycle_log checkpoint-status "checkpoint=none"
    lifecycle_phase_done
    return 0
  fi
  checkpoint_read_meta "$name"
  if lifecycle_lock_held; then
    lifecycle_log checkpoint-status "checkpoint=${name} age_seconds=$((EPOCHSECONDS - CHECKPOINT_META[taken_epoch])) database_changed=busy documents_changed=busy"
    lifecycle_phase_done
    return 0
  fi
  checkpoint_describe_sandbox "$LIFECYCLE_EXIT_PREFLIGHT"

  database_changed="unknown" documents_changed="unknown"
  checkpoint_store_entries ""
  if grep -qx baseline -- "$CHECKPOINT_ENTRIES_FILE"; then
    checkpoint_store_fetch baseline "${LIFECYCLE_WORK}/baseline"
    read -r oid written fingerprint <"${LIFECYCLE_WORK}/baseline"
    checkpoint_rows_written
    database_changed="yes"
    if [[ "$oid" == "$CHECKPOINT_DB_OID" && "$written" == "$(<"$CHECKPOINT_QUERY_OUTPUT")" ]]; then
      database_changed="no"
    fi
    documents_changed="yes"
    checkpoint_documents_fingerprint "$CHECKPOINT_DOCUMENTS"
    if [[ "$fingerprint" == "$CHECKPOINT_FINGERPRINT" ]]; then
      documents_changed="no"
    fi
  fi
  if grep -qx rewind.journal -- "$CHECKPOINT_ENTRIES_FILE"; then
    checkpoint_store_fetch rewind.journal "${LIFECYCLE_WORK}/rewind.journal"
    read -r nonce _ <"${LIFECYCLE_WORK}/rewind.journal" || :
    # A journal whose nonce is not in the database comment belongs to a rewind that
    # never committed, so the sandbox kept its content.
    if [[ -n "$nonce" && "$CHECKPOINT_COMMENT" == *"rewind ${nonce}"* ]]; then
      database_changed="interrupted-rewind"
    fi
  fi
  age=$((EPOCHSECONDS - CHECKPOINT_META[taken_epoch]))
  lifecycle_log checkpoint-status "checkpoint=${name} age_seconds=${age} database_changed=${database_changed} documents_changed=${documents_changed}"
  lifecycle_phase_done
}

checkpoint_list() {
  local name
  CHECKPOINT_FAIL_CODE="$LIFECYCLE_EXIT_PREFLIGHT"
  lifecycle_phase_start checkpoint-list
  checkpoint_names
  cp -- "$CHECKPOINT_NAMES_FILE" "${LIFECYCLE_WORK}/listed-names.list"
  while IFS= read -r name; do
    checkpoint_read_meta "$name"
    lifecycle_log checkpoint-list "checkpoint=${name} taken_at=${CHECKPOINT_META[taken_at]} age_seconds=$((EPOCHSECONDS - CHECKPOINT_META[taken_epoch])) method=${CHECKPOINT_META[method]} documents_method=${CHECKPOINT_META[documents_method]} prod_dump_sha256=${CHECKPOINT_META[prod_dump_sha256]} agent_login=${CHECKPOINT_META[agent_login]} key_fingerprint=${CHECKPOINT_META[key_fingerprint]}"
  done <"${LIFECYCLE_WORK}/listed-names.list"
  lifecycle_log checkpoint-list "count=$(grep -c . "${LIFECYCLE_WORK}/listed-names.list" || :) store=${CHECKPOINT_STORE}"
  lifecycle_phase_done
}

checkpoint_drop() {
  CHECKPOINT_FAIL_CODE="$CHECKPOINT_EXIT_NOT_FOUND"
  lifecycle_lock
  lifecycle_phase_start checkpoint-drop
  checkpoint_names
  if [[ ! "$CHECKPOINT_NAME" =~ $CHECKPOINT_NAME_PATTERN ]] || ! grep -qxF -- "$CHECKPOINT_NAME" "$CHECKPOINT_NAMES_FILE"; then
    lifecycle_fail "$CHECKPOINT_EXIT_NOT_FOUND" "checkpoint '${CHECKPOINT_NAME}' not found in ${CHECKPOINT_STORE}; list them with checkpoint-list"
  fi
  checkpoint_describe_sandbox "$CHECKPOINT_EXIT_NOT_FOUND"
  checkpoint_drop_one "$CHECKPOINT_NAME"
  lifecycle_log checkpoint-drop "dropped checkpoint ${CHECKPOINT_NAME}"
  lifecycle_phase_done
}

# -- rewind ------------------------------------------------------------------------------

# Reject a checkpoint taken from another sandbox or with another schema. Its
# documents are checked later, by checkpoint_check_documents_source.
checkpoint_check_compatible() {
  local name="$1" documents exists
  local recorded="${LIFECYCLE_WORK}/recorded.manifest" found="${LIFECYCLE_WORK}/checkpoint.manifest"
  documents="$(transport_checkpoint_documents_identity)"
  if [[ "${CHECKPOINT_META[server]}" != "$CHECKPOINT_SERVER" || "${CHECKPOINT_META[database]}" != "$LIFECYCLE_SANDBOX_DATABASE" ]]; then
    lifecycle_fail "$CHECKPOINT_EXIT_REFUSED" \
      "checkpoint ${name} was taken from database ${CHECKPOINT_META[database]} on server ${CHECKPOINT_META[server]}, but the sandbox is database ${LIFECYCLE_SANDBOX_DATABASE} on server ${CHECKPOINT_SERVER}; set LIFECYCLE_CHECKPOINT_DIR to this sandbox's checkpoints, or take one with checkpoint-save (nothing was changed)"
  fi
  if [[ "${CHECKPOINT_META[documents_dir]}" != "$documents" ]]; then
    lifecycle_fail "$CHECKPOINT_EXIT_REFUSED" \
      "checkpoint ${name} holds the documents of ${CHECKPOINT_META[documents_dir]}, but the sandbox's documents are ${documents}; set LIFECYCLE_CHECKPOINT_DIR to this sandbox's checkpoints (nothing was changed)"
  fi
  checkpoint_check_key "$name"
  # Both sides are compared as of their last refresh, so a table or column that a
  # rehearsal added since does not block the rewind that removes it.
  if [[ "${CHECKPOINT_META[base_schema]:-${CHECKPOINT_META[schema]}}" != "$(checkpoint_base_schema)" ]]; then
    lifecycle_fail "$CHECKPOINT_EXIT_REFUSED" \
      "checkpoint ${name} has another schema than the sandbox's last refresh (column fingerprint ${CHECKPOINT_META[base_schema]:-${CHECKPOINT_META[schema]}}, sandbox $(checkpoint_base_schema)), for example after a refresh from an upgraded prod; run reset to take a new checkpoint, or drop this one (nothing was changed)"
  fi
  if [[ "${CHECKPOINT_META[method]}" == "template" ]]; then
    checkpoint_query "$CHECKPOINT_EXIT_REWIND" "looking up the checkpoint database" \
      "SELECT count(*) FROM pg_catalog.pg_database WHERE datname = $(checkpoint_sql_literal "$(checkpoint_database_name "$name")")"
    exists="$(<"$CHECKPOINT_QUERY_OUTPUT")"
    if [[ "$exists" != "1" ]]; then
      lifecycle_fail "$CHECKPOINT_EXIT_REFUSED" "database $(checkpoint_database_name "$name") of checkpoint ${name} does not exist; drop the checkpoint and take a new one (nothing was changed)"
    fi
  fi
}

# Reject a checkpoint saved with another agent key than the one in the key file now,
# for example after provision --rotate: after the rewind the sandbox would hold the old
# key, and the agent would be disarmed. Unknown fingerprints are not compared.
checkpoint_check_key() {
  local name="$1" saved="${CHECKPOINT_META[key_fingerprint]}" current="${CHECKPOINT_KEY_FINGERPRINT:-unknown}"
  if [[ "$saved" =~ ^(unknown|none)$ || "$current" =~ ^(unknown|none)$ || "$saved" == "$current" ]]; then
    return 0
  fi
  lifecycle_fail "$CHECKPOINT_EXIT_REFUSED" \
    "checkpoint ${name} was saved with the agent key ${saved}, but the key file now holds ${current}, so the rewound sandbox would reject the agent; take a new checkpoint with invoke checkpoint.save, or run invoke reset (nothing was changed)"
}

# -- documents --------------------------------------------------------------------
#
# The sandbox's documents are made equal to a checkpoint's in three steps. The walk
# reads the sandbox's tree into a manifest; it only reads, so rewind runs it while the
# database is cloned. The diff compares that manifest with the checkpoint's and lists
# what to delete and what to copy. After the database COMMIT, the apply step deletes
# and copies only those entries.

# Start the walk of the sandbox's documents in the background, into `output`. A
# missing documents folder gives an empty manifest.
CHECKPOINT_WALK_PID=""
checkpoint_start_documents_walk() {
  local output="$1" sandbox="${CHECKPOINT_DOCUMENTS%/}"
  transport_documents_walk "$sandbox" >"$output" 2>"${LIFECYCLE_WORK}/documents-walk.err" &
  CHECKPOINT_WALK_PID=$!
  lifecycle_track_child "$CHECKPOINT_WALK_PID"
}

checkpoint_finish_documents_walk() {
  local code="$1" status=0
  if [[ -z "$CHECKPOINT_WALK_PID" ]]; then
    return 0
  fi
  wait "$CHECKPOINT_WALK_PID" || status=$?
  lifecycle_untrack_child "$CHECKPOINT_WALK_PID"
  CHECKPOINT_WALK_PID=""
  if ((status != 0)); then
    lifecycle_fail "$code" "reading the sandbox documents in ${SANDBOX_DOCUMENTS_DIR} failed: $(lifecycle_first_error_line "${LIFECYCLE_WORK}/documents-walk.err"); check that the folder is readable, then rerun"
  fi
}

# Return 1 when a line of `manifest` is not "<path>\t<type>[\t<size>]\t<mtime>": a name
# with a tab or a newline breaks its entry into such lines, and the diff would then act
# on a wrong path. CHECKPOINT_BAD_NAME gets the first broken line, printable.
# NOTE: a name crafted to split into well-formed lines goes unnoticed.
CHECKPOINT_BAD_NAME=""
checkpoint_check_manifest_names() {
  local manifest="$1" line
  line="$(LC_ALL=C grep -v -m 1 -E $'^[^\t]*\t(f\t[0-9]+|[a-zA-Z])\t-?[0-9]+(\\.[0-9]+)?$' -- "$manifest" || :)"
  CHECKPOINT_BAD_NAME="$(printf '%q' "${line%%$'\t'*}")"
  [[ -z "$line" ]]
}

# Compare the sandbox's manifest `current` with checkpoint `name`'s, fetched to
# expected.manifest. A line only in the sandbox's is an entry that changed or is
# extra: it goes to stale.list. A line only in the checkpoint's is an entry to copy:
# it goes to expected-only.list, and its path to missing.list.
checkpoint_diff_documents() {
  local name="$1" current="$2" expected="${LIFECYCLE_WORK}/expected.manifest"
  checkpoint_store_fetch "$name/manifest" "$expected"
  LC_ALL=C comm -13 "$expected" "$current" | cut -f 1,2 | LC_ALL=C sort -u >"${LIFECYCLE_WORK}/stale.list"
  LC_ALL=C comm -23 "$expected" "$current" >"${LIFECYCLE_WORK}/expected-only.list"
  cut -f 1 -- "${LIFECYCLE_WORK}/expected-only.list" | sed 's/^$/./' >"${LIFECYCLE_WORK}/missing.list"
}

# Return 1 when an entry that the apply step would copy from checkpoint `name` no
# longer matches the checkpoint's manifest. A file rewritten in place through a hard
# link changes the sandbox's copy too, so its path is always among those entries:
# checking them is enough, and costs a stat per differing entry instead of a walk.
checkpoint_check_documents_source() {
  local name="$1"
  checkpoint_files "reading the documents of checkpoint ${name}" transport_documents_stat_entries \
    "$CHECKPOINT_STORE/$name/documents" "${LIFECYCLE_WORK}/missing.list"
  cmp -s -- "$CHECKPOINT_FILES_OUTPUT" "${LIFECYCLE_WORK}/expected-only.list"
}

# Print the manifest lines of the entries under `root` whose relative paths are on
# stdin, one per line ("." for `root` itself), sorted. Absent entries print nothing.
# Every path starts with "./", so find never reads one as an expression. The paths go
# through xargs because find -files0-from needs findutils 4.9 or later.
readonly CHECKPOINT_ENTRY_FORMAT="\\( -type f -printf '%p\\tf\\t%s\\t%T@\\n' \\) -o -printf '%p\\t%y\\t%T@\\n'"
checkpoint_stat_entries() {
  local root="$1"
  sed 's|^|./|' | tr '\n' '\0' |
    (cd -- "$root" && xargs -0 -r sh -c "find \"\$@\" -maxdepth 0 $CHECKPOINT_ENTRY_FORMAT" sh) 2>/dev/null |
    sed -e 's|^\./||' -e 's|^\.\t|\t|' | LC_ALL=C sort || :
}

# Make the sandbox's documents equal checkpoint `name`'s, from the lists of
# checkpoint_diff_documents: delete the stale entries, then copy the missing ones so
# that restored files are hard links to the checkpoint's again.
checkpoint_apply_documents() {
  local name="$1" source="$CHECKPOINT_STORE/$name/documents" sandbox="${CHECKPOINT_DOCUMENTS%/}"
  local missing="${LIFECYCLE_WORK}/missing.list" stale="${LIFECYCLE_WORK}/stale.list"
  local deletions="${LIFECYCLE_WORK}/deletions.list"

  checkpoint_delete_stale "${LIFECYCLE_WORK}/expected.manifest" "$stale" "$deletions"
  if [[ -s "$missing" || -s "$deletions" ]] && ! lifecycle_run_child transport_documents_apply "$source" "$sandbox" \
    "$deletions" "$missing" 2>"${LIFECYCLE_WORK}/checkpoint-rsync.err"; then
    lifecycle_fail "$CHECKPOINT_EXIT_REWIND" \
      "copying checkpoint ${name}'s documents to ${SANDBOX_DOCUMENTS_DIR} failed: $(lifecycle_first_error_line "${LIFECYCLE_WORK}/checkpoint-rsync.err"); the database is already rewound, fix the cause and rerun rewind, which finishes the documents first"
  fi
  lifecycle_log "$LIFECYCLE_PHASE" "documents: $(grep -c . "$missing" || :) entries copied or updated, $(grep -c . "$stale" || :) stale entries checked"
}

# Walk, diff and apply in one go: how a later run finishes the documents of a rewind
# that committed its database and was interrupted.
checkpoint_sync_documents() {
  local name="$1" current="${LIFECYCLE_WORK}/sandbox.manifest"
  checkpoint_start_documents_walk "$current"
  checkpoint_finish_documents_walk "$CHECKPOINT_EXIT_REWIND"
  checkpoint_diff_documents "$name" "$current"
  if ! checkpoint_check_documents_source "$name"; then
    lifecycle_fail "$CHECKPOINT_EXIT_REWIND" \
      "the database is rewound to checkpoint ${name}, but the checkpoint's documents changed since it was taken, probably a file rewritten in place through a hard link, so they cannot be finished; run reset"
  fi
  checkpoint_apply_documents "$name"
}

# Write to `deletions` the paths of the sandbox entries listed in `stale`
# ("<path>\t<type>") that the checkpoint lacks, or has with another type. Files that
# only changed are replaced by the copy.
checkpoint_delete_stale() {
  local expected="$1" stale="$2" deletions="$3"
  local kinds="${LIFECYCLE_WORK}/expected-types.list"
  cut -f 1,2 -- "$expected" | LC_ALL=C sort -u >"$kinds"
  LC_ALL=C comm -23 "$stale" "$kinds" | cut -f 1 | grep -v '^$' >"$deletions" || :
}

# The rename transaction up to the marker line that checkpoint_swap_once waits for
# before it sends COMMIT. The backend checks every second that its client is still
# there, so it also gives up a lock wait.
checkpoint_swap_sql() {
  local old="$1" clone="${LIFECYCLE_SANDBOX_DATABASE}__rewind"
  cat <<EOF
SET client_min_messages = warning;
SET client_connection_check_interval = '1s';
SET lock_timeout = '${LIFECYCLE_LOCK_TIMEOUT}s';
BEGIN;
SELECT count(pg_catalog.pg_terminate_backend(pid, 5000)) FROM pg_catalog.pg_stat_activity
  WHERE datname = $(checkpoint_sql_literal "$LIFECYCLE_SANDBOX_DATABASE") AND $(checkpoint_own_sessions_sql);
ALTER DATABASE "${LIFECYCLE_SANDBOX_DATABASE}" RENAME TO "${old}";
EOF
  if [[ -n "${LIFECYCLE_TEST_REWIND_GATE_LOCK:-}" ]]; then
    printf 'SELECT pg_catalog.pg_advisory_xact_lock_shared(%s);\n' "$LIFECYCLE_TEST_REWIND_GATE_LOCK"
  fi
  cat <<EOF
ALTER DATABASE "${clone}" RENAME TO "${LIFECYCLE_SANDBOX_DATABASE}";
ALTER DATABASE "${LIFECYCLE_SANDBOX_DATABASE}" ALLOW_CONNECTIONS true;
SELECT 'checkpoint-renamed';
EOF
}

# Run the rename transaction once. COMMIT goes to psql only after psql printed the
# marker that follows the renames, so a run killed earlier never sends it: psql reads
# the end of its input and the server rolls back. This is true with the kubectl
# transport too, where psql runs in the database pod and outlives a killed script.
checkpoint_swap_once() {
  local old="$1" errors="$2" line renamed=0 status=0 pid
  coproc CHECKPOINT_SWAP_SESSION {
    exec 2>"$errors"
    checkpoint_psql_on "${LIFECYCLE_MAINTENANCE_DATABASE:-postgres}" "$LIFECYCLE_TIMEOUT" rewind
  }
  pid=$!
  lifecycle_track_child "$pid"
  if [[ -z "${CHECKPOINT_SWAP_SESSION[1]:-}" ]]; then
    wait "$pid" || :
    lifecycle_untrack_child "$pid"
    return 1
  fi
  exec {CHECKPOINT_SWAP_IN}>&"${CHECKPOINT_SWAP_SESSION[1]}" {CHECKPOINT_SWAP_OUT}<&"${CHECKPOINT_SWAP_SESSION[0]}"
  exec {CHECKPOINT_SWAP_SESSION[1]}>&- {CHECKPOINT_SWAP_SESSION[0]}<&-

  checkpoint_swap_sql "$old" >&"$CHECKPOINT_SWAP_IN" 2>/dev/null || :
  while IFS= read -r -t "$LIFECYCLE_TIMEOUT" -u "$CHECKPOINT_SWAP_OUT" line; do
    if [[ "$line" == "checkpoint-renamed" ]]; then
      renamed=1
      printf 'COMMIT;\n' >&"$CHECKPOINT_SWAP_IN" 2>/dev/null || :
      break
    fi
  done

  exec {CHECKPOINT_SWAP_IN}>&- {CHECKPOINT_SWAP_OUT}<&-
  wait "$pid" || status=$?
  lifecycle_untrack_child "$pid"
  ((renamed == 1 && status == 0))
}

checkpoint_clone_for_rewind() {
  local name="$1" comment="$2" clone="${LIFECYCLE_SANDBOX_DATABASE}__rewind"
  checkpoint_copy_database "$CHECKPOINT_EXIT_REWIND" "$(checkpoint_database_name "$name")" "$clone"
  checkpoint_query "$CHECKPOINT_EXIT_REWIND" "commenting database ${clone}" \
    "COMMENT ON DATABASE \"${clone}\" IS $(checkpoint_sql_literal "$comment")" >/dev/null
  checkpoint_check_clone_guards "$name" "$clone"
  lifecycle_log rewind "cloned $(checkpoint_database_name "$name") to ${clone}"
}

checkpoint_swap_clone() {
  local nonce="$1" attempt old="${LIFECYCLE_SANDBOX_DATABASE}__old_${1}"
  local clone="${LIFECYCLE_SANDBOX_DATABASE}__rewind" errors="${LIFECYCLE_WORK}/swap.err"
  lifecycle_log rewind "renaming ${clone} into place in one transaction"
  for ((attempt = 1; attempt <= CHECKPOINT_SWAP_ATTEMPTS; attempt++)); do
    if checkpoint_swap_once "$old" "$errors"; then
      checkpoint_query "$CHECKPOINT_EXIT_REWIND" "dropping ${old}" "DROP DATABASE IF EXISTS \"${old}\"" >/dev/null
      return 0
    fi
    if ! grep -q 'is being accessed by other users' "$errors"; then
      break
    fi
    lifecycle_log rewind "database ${LIFECYCLE_SANDBOX_DATABASE} still had other sessions (attempt ${attempt} of ${CHECKPOINT_SWAP_ATTEMPTS})"
  done
  # psql may fail after the server ran COMMIT: then the sandbox carries the nonce.
  checkpoint_describe_sandbox "$CHECKPOINT_EXIT_REWIND"
  if [[ "$CHECKPOINT_COMMENT" == *"rewind ${nonce}"* ]]; then
    return 0
  fi
  checkpoint_query "$CHECKPOINT_EXIT_REWIND" "dropping ${clone}" "DROP DATABASE IF EXISTS \"${clone}\" WITH (FORCE)" >/dev/null
  checkpoint_files "removing the rewind journal" transport_store_remove "$CHECKPOINT_STORE/rewind.journal"
  lifecycle_fail "$CHECKPOINT_EXIT_REWIND" "renaming ${clone} into place failed: $(lifecycle_first_error_line "$errors"); the transaction rolled back, the clone was dropped and the sandbox is unchanged; stop the clients that connect to ${LIFECYCLE_SANDBOX_DATABASE} as another role, then rerun"
}

# The clone refuses connections until the rename, so it accepts them only for the
# check. A clone without every guard is dropped before anything touches the sandbox.
checkpoint_check_clone_guards() {
  local name="$1" clone="$2"
  if [[ -z "${LIFECYCLE_GUARDS_CHECK_SQL:-}" ]]; then
    return 0
  fi
  checkpoint_query "$CHECKPOINT_EXIT_REWIND" "opening ${clone} for the guards check" \
    "ALTER DATABASE \"${clone}\" ALLOW_CONNECTIONS true" >/dev/null
  if checkpoint_check_guards "$clone"; then
    checkpoint_query "$CHECKPOINT_EXIT_REWIND" "closing ${clone} after the guards check" \
      "ALTER DATABASE \"${clone}\" ALLOW_CONNECTIONS false" >/dev/null
    lifecycle_log rewind "every guard is in effect in ${clone}"
    return 0
  fi
  checkpoint_query "$CHECKPOINT_EXIT_REWIND" "dropping ${clone}" "DROP DATABASE IF EXISTS \"${clone}\" WITH (FORCE)" >/dev/null
  checkpoint_files "removing the rewind journal" transport_store_remove "$CHECKPOINT_STORE/rewind.journal"
  lifecycle_fail "$LIFECYCLE_EXIT_GUARDS" \
    "checkpoint ${name} is not guarded (${CHECKPOINT_GUARDS_PROBLEM}), for example because it was saved before a guard was configured; the clone was dropped and the sandbox is unchanged; drop the checkpoint, or run invoke guards.apply and checkpoint.save for a guarded one"
}

# Run LIFECYCLE_GUARDS_CHECK_SQL on `database` in a read-only transaction. Return 0
# when every guard is in effect or no check is set; otherwise set
# CHECKPOINT_GUARDS_PROBLEM to what is wrong and return 1.
CHECKPOINT_GUARDS_PROBLEM=""
checkpoint_check_guards() {
  local database="$1" output="${LIFECYCLE_WORK}/guards-check.out" errors="${LIFECYCLE_WORK}/guards-check.err"
  CHECKPOINT_GUARDS_PROBLEM=""
  if [[ -z "${LIFECYCLE_GUARDS_CHECK_SQL:-}" ]]; then
    return 0
  fi
  if { printf 'BEGIN READ ONLY;\n'; cat -- "$LIFECYCLE_GUARDS_CHECK_SQL"; printf 'COMMIT;\n'; } |
    lifecycle_run_child checkpoint_psql_on "$database" "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" guards-check \
      >"$output" 2>"$errors" && grep -qx 'lifecycle-guards-in-effect' -- "$output"; then
    return 0
  fi
  if grep -q 'lifecycle-guards-not-in-effect: ' -- "$errors"; then
    CHECKPOINT_GUARDS_PROBLEM="not in effect: $(grep -m 1 -o 'lifecycle-guards-not-in-effect: .*' -- "$errors" | sed 's/^[^:]*: //')"
  elif grep -q 'lifecycle-guard-failed: ' -- "$errors"; then
    CHECKPOINT_GUARDS_PROBLEM="$(grep -m 1 -o 'lifecycle-guard-failed: .*' -- "$errors" | sed 's/^[^:]*: //')"
  else
    CHECKPOINT_GUARDS_PROBLEM="the guards check failed: $(lifecycle_first_error_line "$errors")"
  fi
  return 1
}

# Without CREATEDB: the refresh's restore, from the checkpoint's dump, checked
# against the row counts taken with it and, with LIFECYCLE_GUARDS_CHECK_SQL, against
# the guards, before COMMIT.
checkpoint_rewind_dump() {
  local name="$1"
  LIFECYCLE_GUARDS_SQL="${LIFECYCLE_GUARDS_CHECK_SQL:-}"
  lifecycle_log rewind "checkpoint ${name} holds a dump: restoring it in one transaction, the slower path; grant the sandbox role CREATEDB and take a new checkpoint for a template copy"
  checkpoint_files "fetching the dump of checkpoint ${name}" transport_fetch_checkpoint_dump \
    "$CHECKPOINT_STORE/$name/database.dump" "${CHECKPOINT_META[dump_size]:-}" "${CHECKPOINT_META[dump_sha256]:-}"
  LIFECYCLE_DUMP="$(<"$CHECKPOINT_FILES_OUTPUT")"
  LIFECYCLE_PROD_COUNTS_FILE="${LIFECYCLE_WORK}/checkpoint-row-counts.sql"
  checkpoint_store_fetch "$name/row-counts.sql" "$LIFECYCLE_PROD_COUNTS_FILE"
  LIFECYCLE_TABLE_TOTAL="$(grep -c . "$LIFECYCLE_PROD_COUNTS_FILE" || :)"
  # Rewind leaves the sandbox's Dolibarr running with both transports: the restore
  # transaction's DROP OWNED waits for its sessions' locks, up to LIFECYCLE_LOCK_TIMEOUT_SECONDS.
  transport_check_quiesced() { :; }
  lifecycle_phase_restore
  LIFECYCLE_PHASE=rewind
}

checkpoint_rewind() {
  local name nonce comment current="${LIFECYCLE_WORK}/sandbox.manifest"
  CHECKPOINT_FAIL_CODE="$CHECKPOINT_EXIT_REWIND"
  lifecycle_lock
  lifecycle_phase_start checkpoint-check
  lifecycle_check_tools
  checkpoint_names
  name="$CHECKPOINT_LATEST"
  if [[ -z "$name" ]]; then
    lifecycle_fail "$CHECKPOINT_EXIT_NONE" "no checkpoint in ${CHECKPOINT_STORE}: take one with checkpoint-save (reset takes one after provisioning), or set LIFECYCLE_CHECKPOINT_DIR"
  fi
  checkpoint_read_meta "$name"
  checkpoint_describe_sandbox "$CHECKPOINT_EXIT_REWIND"
  checkpoint_recover
  checkpoint_describe_sandbox "$CHECKPOINT_EXIT_REWIND"
  checkpoint_check_compatible "$name"
  lifecycle_log checkpoint-check "checkpoint ${name} from ${CHECKPOINT_META[taken_at]} matches this sandbox (server, database, documents folder, schema)"
  lifecycle_phase_done

  lifecycle_phase_start rewind
  nonce="$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  comment="sandbox-lifecycle: checkpoint ${name} rewind ${nonce}; prod dump sha256:${CHECKPOINT_META[prod_dump_sha256]}; schema:${CHECKPOINT_META[base_schema]:-${CHECKPOINT_META[schema]}}"
  printf '%s %s\n' "$nonce" "$name" >"${LIFECYCLE_WORK}/rewind.journal"
  checkpoint_store_put "${LIFECYCLE_WORK}/rewind.journal" rewind.journal

  checkpoint_start_documents_walk "$current"
  if [[ "${CHECKPOINT_META[method]}" == "template" ]]; then
    checkpoint_clone_for_rewind "$name" "$comment"
  fi
  checkpoint_finish_documents_walk "$CHECKPOINT_EXIT_REWIND"
  if ! checkpoint_check_manifest_names "$current"; then
    checkpoint_abort_rewind "$CHECKPOINT_EXIT_REWIND" \
      "a sandbox document has a tab or a newline in its name (${CHECKPOINT_BAD_NAME}), which the documents list cannot hold; rename or delete it, then rerun rewind (nothing was changed)"
  fi
  checkpoint_diff_documents "$name" "$current"
  checkpoint_reject_changed_source "$name"

  if [[ "${CHECKPOINT_META[method]}" == "template" ]]; then
    checkpoint_swap_clone "$nonce"
  else
    checkpoint_provenance_hook() { checkpoint_provenance_sql "$comment"; }
    checkpoint_rewind_dump "$name"
  fi

  LIFECYCLE_RESTORE_COMMITTED=1
  lifecycle_log rewind "database committed; making the documents equal the checkpoint's"
  checkpoint_test_documents_gate
  checkpoint_apply_documents "$name"
  checkpoint_files "removing the rewind journal" transport_store_remove "$CHECKPOINT_STORE/rewind.journal"
  checkpoint_describe_sandbox "$CHECKPOINT_EXIT_REWIND"
  checkpoint_write_baseline "$name"
  lifecycle_log rewind "the sandbox database and documents equal checkpoint ${name}"
  lifecycle_phase_done
}

# Reject a checkpoint whose documents changed since it was taken, before anything
# touches the sandbox.
checkpoint_reject_changed_source() {
  local name="$1"
  if checkpoint_check_documents_source "$name"; then
    return 0
  fi
  checkpoint_abort_rewind "$CHECKPOINT_EXIT_REFUSED" \
    "the documents of checkpoint ${name} changed since it was taken, probably a file rewritten in place through a hard link; drop the checkpoint and run reset (nothing was changed)"
}

# Fail a rewind that has not touched the sandbox yet: drop its clone and its journal.
checkpoint_abort_rewind() {
  local code="$1" message="$2"
  if [[ "${CHECKPOINT_META[method]}" == "template" ]]; then
    checkpoint_query "$CHECKPOINT_EXIT_REWIND" "dropping ${LIFECYCLE_SANDBOX_DATABASE}__rewind" \
      "DROP DATABASE IF EXISTS \"${LIFECYCLE_SANDBOX_DATABASE}__rewind\" WITH (FORCE)" >/dev/null
  fi
  checkpoint_files "removing the rewind journal" transport_store_remove "$CHECKPOINT_STORE/rewind.journal"
  lifecycle_fail "$code" "$message"
}

# The restore transaction's extra statements: refresh records its dump's sha256;
# a rewind from a dump replaces this function to record its checkpoint.
checkpoint_provenance_hook() {
  checkpoint_refresh_provenance_sql
}

# Describe, for the message of an interrupted checkpoint command, what it left and
# which command finishes or repeats it.
checkpoint_interrupted_state() {
  case "$LIFECYCLE_COMMAND" in
    rewind)
      if ((LIFECYCLE_RESTORE_COMMITTED == 1)); then
        printf 'the sandbox database is already the checkpoint'"'"'s, but its documents may be only partly restored; run rewind --yes to finish'
      else
        printf 'the sandbox database and documents are unchanged; run rewind --yes when ready'
      fi
      ;;
    checkpoint-save) printf 'no checkpoint was created, and the next checkpoint-save or rewind removes what this one left' ;;
    checkpoint-drop) printf 'the checkpoint may be partly dropped, and the next checkpoint-save or rewind finishes the drop' ;;
    *) printf 'nothing was changed' ;;
  esac
}

# Entry point from main(): `command` is one of the checkpoint commands.
checkpoint_main() {
  local command="$1" confirmed="$2"
  checkpoint_configure
  if [[ "$command" == "rewind" && "$confirmed" == 0 ]]; then
    printf 'rewind would replace the sandbox database (%s) and the documents folder %s with the newest checkpoint in %s. Nothing was changed: rerun with --yes to do it.\n' \
      "$(transport_database_label sandbox)" "$SANDBOX_DOCUMENTS_DIR" "$CHECKPOINT_STORE" >&2
    return "$LIFECYCLE_EXIT_USAGE"
  fi
  if [[ "$command" == "checkpoint-drop" && -z "$CHECKPOINT_NAME" ]]; then
    lifecycle_usage_error "checkpoint-drop needs a checkpoint name: see checkpoint-list"
  fi
  return 0
}

checkpoint_run() {
  local command="$1"
  transport_checkpoint_begin "$command"
  case "$command" in
    checkpoint-save) checkpoint_save ;;
    checkpoint-list) checkpoint_list ;;
    checkpoint-drop) checkpoint_drop ;;
    checkpoint-status) checkpoint_status ;;
    rewind) checkpoint_rewind ;;
  esac
}
