# shellcheck shell=bash
#
# Checkpoints with the kubectl transport. Sourced by sandbox-lifecycle.sh after
# checkpoint.sh; when LIFECYCLE_TRANSPORT=kubectl it replaces the store, documents and
# database functions that checkpoint.sh defines for the local transport.
#
# The store and the documents live in the sandbox's Dolibarr pod (SANDBOX_APP_WORKLOAD,
# SANDBOX_DOCUMENTS_PATH): every file operation is one `kubectl exec` of a POSIX sh
# script that uses only coreutils and findutils, because the Dolibarr image need not
# have rsync. psql runs in the sandbox's database pod as the sandbox role. Without
# CREATEDB, pg_dump runs in the database pod too. The dump then travels to the store,
# and on rewind to this machine for pg_restore. Each copy is checked against the size
# and sha256 computed where the dump was written.

readonly KUBE_CHECKPOINT_DEFAULT_DUMP_DIR="/tmp"

# A POSIX sh function that prints the manifest of the tree at $1, in the format of
# transport_documents_manifest in checkpoint.sh.
# shellcheck disable=SC2016 # the scripts are expanded by the pod's shell
readonly KUBE_CHECKPOINT_MANIFEST_FUNCTION='manifest() {
  (cd "$1" && find . \( -type f -printf "%P\tf\t%s\t%T@\n" \) -o -printf "%P\t%y\t%T@\n" | LC_ALL=C sort)
}'

# shellcheck disable=SC2016
readonly KUBE_CHECKPOINT_LIST_SCRIPT='set -eu
[ -d "$1" ] || exit 0
cd "$1"
for entry in * .[!.]*; do
  if [ -e "$entry" ] || [ -L "$entry" ]; then
    if [ -f "$entry/meta" ]; then has_meta=1; else has_meta=0; fi
    printf "%s\t%s\n" "$entry" "$has_meta"
  fi
done'

# Write stdin to $1 through a temporary file that replaces $1 only when it has the
# $2 bytes that were sent, because `kubectl exec` can end a stream early and exit 0.
# shellcheck disable=SC2016
readonly KUBE_CHECKPOINT_WRITE_SCRIPT='set -eu
umask 077
cat >"$1.incoming"
size=$(wc -c <"$1.incoming" | tr -d " ")
if [ "$size" != "$2" ]; then
  rm -f -- "$1.incoming"
  printf "error: %s arrived with %s bytes instead of %s\n" "$1" "$size" "$2" >&2
  exit 1
fi
mv -f -- "$1.incoming" "$1"'

# shellcheck disable=SC2016
readonly KUBE_CHECKPOINT_SNAPSHOT_SCRIPT='set -eu
method=hardlinks
if ! cp -al -- "$1" "$2/documents" 2>/dev/null; then
  rm -rf -- "$2/documents"
  cp -a -- "$1" "$2/documents"
  method=copy
fi
manifest "$2/documents" >"$2/manifest"
printf "%s" "$method"'

# Print the manifest lines of the entries under $1 whose relative paths are on stdin,
# as checkpoint_stat_entries in checkpoint.sh does. A missing $1 prints nothing.
# shellcheck disable=SC2016
readonly KUBE_CHECKPOINT_STAT_SCRIPT='tab=$(printf "\t")
cd "$1" 2>/dev/null || exit 0
sed "s|^|./|" | tr "\n" "\0" |
  xargs -0 -r sh -c '"'"'find "$@" -maxdepth 0 \( -type f -printf "%p\tf\t%s\t%T@\n" \) -o -printf "%p\t%y\t%T@\n"'"'"' sh 2>/dev/null |
  sed -e "s|^\./||" -e "s|^\.$tab|$tab|" | LC_ALL=C sort'

# Make $2 equal $1 for the entries listed on stdin as "d<TAB>path" (delete) or
# "c<TAB>path" (copy, "." for the root). Files are hard links to the checkpoint's
# when the filesystem allows, else copies. Folder modes and mtimes are set last,
# deepest first, because adding or removing an entry changes its folder's mtime.
# shellcheck disable=SC2016
readonly KUBE_CHECKPOINT_APPLY_SCRIPT='set -eu
source=$1 target=$2
folders=$(mktemp)
trap "rm -f -- \"$folders\"" EXIT
tab=$(printf "\t")
mkdir -p -- "$target"
while IFS= read -r line; do
  kind=${line%%"$tab"*}
  path=${line#*"$tab"}
  printf "%s\n" "$(dirname -- "$path")" >>"$folders"
  if [ "$kind" = d ]; then
    rm -rf -- "$target/$path"
  elif [ -d "$source/$path" ] && [ ! -L "$source/$path" ]; then
    mkdir -p -- "$target/$path"
    printf "%s\n" "$path" >>"$folders"
  else
    mkdir -p -- "$(dirname -- "$target/$path")"
    rm -rf -- "$target/$path"
    cp -al -- "$source/$path" "$target/$path" 2>/dev/null || cp -a -- "$source/$path" "$target/$path"
  fi
done
LC_ALL=C sort -r -u -- "$folders" | while IFS= read -r path; do
  if [ -d "$source/$path" ] && [ -d "$target/$path" ]; then
    chmod --reference="$source/$path" -- "$target/$path"
    touch -r "$source/$path" -- "$target/$path"
  fi
done'

# Run pg_dump of the sandbox into a new private file $1, then print its size and sha256.
# shellcheck disable=SC2016
readonly KUBE_CHECKPOINT_DUMP_SCRIPT='set -eu
umask 077
set -C
: >"$1"
set +C
if ! pg_dump -Fc --no-owner --no-privileges -U "$2" -d "$3" -f "$1"; then
  rm -f -- "$1"
  exit 1
fi
printf "%s %s\n" "$(wc -c <"$1" | tr -d " ")" "$(sha256sum <"$1" | cut -d " " -f 1)"'

# Write stdin to $1 through a temporary file, then print the size and sha256 that arrived.
# shellcheck disable=SC2016
readonly KUBE_CHECKPOINT_RECEIVE_SCRIPT='set -eu
umask 077
cat >"$1.incoming"
printf "%s %s\n" "$(wc -c <"$1.incoming" | tr -d " ")" "$(sha256sum <"$1.incoming" | cut -d " " -f 1)"'

# shellcheck disable=SC2016
readonly KUBE_CHECKPOINT_SUM_SCRIPT='set -eu
printf "%s %s\n" "$(wc -c <"$1" | tr -d " ")" "$(sha256sum <"$1" | cut -d " " -f 1)"'

# -- configuration ----------------------------------------------------------------------

kube_checkpoint_validate() {
  local store="$CHECKPOINT_STORE"
  if [[ "$store" != /* || "$store" == *$'\n'* || "$store" == "" ]]; then
    lifecycle_usage_error "LIFECYCLE_CHECKPOINT_DIR is invalid (${LIFECYCLE_CHECKPOINT_DIR:-}): with LIFECYCLE_TRANSPORT=kubectl set it to an absolute folder other than / inside the sandbox's Dolibarr container, or unset it"
  fi
  if [[ -z "${SANDBOX_DOCUMENTS_PATH:-}" ]]; then
    lifecycle_usage_error "SANDBOX_DOCUMENTS_PATH is not set: checkpoints copy the documents, so set it to the documents folder inside the sandbox's Dolibarr container"
  fi
  if [[ -n "${SANDBOX_DB_DUMP_DIR:-}" && "$SANDBOX_DB_DUMP_DIR" != /* ]]; then
    lifecycle_usage_error "SANDBOX_DB_DUMP_DIR is invalid (${SANDBOX_DB_DUMP_DIR}): set it to an absolute folder inside the sandbox's database container"
  fi
}

# Resolve the sandbox's database pod and one Dolibarr pod. Any Dolibarr pod serves,
# because the replicas are expected to share one documents volume, as refresh also
# expects. A pod that cannot be found fails with the command's exit code.
kube_checkpoint_begin() {
  local command="$1"
  case "$command" in
    checkpoint-save) CHECKPOINT_FAIL_CODE="$CHECKPOINT_EXIT_SAVE" ;;
    rewind) CHECKPOINT_FAIL_CODE="$CHECKPOINT_EXIT_REWIND" ;;
    checkpoint-drop) CHECKPOINT_FAIL_CODE="$CHECKPOINT_EXIT_NOT_FOUND" ;;
    *) CHECKPOINT_FAIL_CODE="$LIFECYCLE_EXIT_PREFLIGHT" ;;
  esac
  kube_resolve_pod sandbox DB one checkpoint
  kube_resolve_pod sandbox APP any checkpoint
  if [[ "$command" == "checkpoint-save" ]]; then
    on_exit_add kube_checkpoint_remove_pod_dump
  fi
}

kube_checkpoint_store_label() {
  printf 'the folder %s in pod %s of %s (context %s, namespace %s)' "$CHECKPOINT_STORE" "${KUBE_SANDBOX_APP_POD:-?}" \
    "$SANDBOX_APP_WORKLOAD" "$SANDBOX_KUBE_CONTEXT" "$SANDBOX_NAMESPACE"
}

# The kubeconfig context is a name on this machine, so the identity leaves it out.
kube_checkpoint_documents_identity() {
  local path="${SANDBOX_DOCUMENTS_PATH%/}"
  printf '%s/%s:%s' "$SANDBOX_NAMESPACE" "$SANDBOX_APP_WORKLOAD" "${path:-/}"
}

kube_psql_sandbox_on() {
  local database="$1"
  shift
  SANDBOX_DB_NAME="$database" kubectl_psql sandbox "$@"
}

# -- the store and the documents ------------------------------------------------------

# Run the POSIX sh script $1 in the sandbox's Dolibarr pod with the other arguments,
# without stdin.
kube_app_script() {
  local script="$1"
  shift
  kube_exec sandbox APP "$LIFECYCLE_TIMEOUT" "" sh -c "$script" sh "$@" </dev/null
}

kube_store_list() {
  kube_app_script "$KUBE_CHECKPOINT_LIST_SCRIPT" "$1"
}

kube_store_read() {
  kube_exec sandbox APP "$LIFECYCLE_TIMEOUT" "" cat -- "$1" </dev/null
}

kube_store_write() {
  local source="$1" target="$2"
  kube_exec sandbox APP "$LIFECYCLE_TIMEOUT" -i sh -c "$KUBE_CHECKPOINT_WRITE_SCRIPT" sh "$target" \
    "$(stat -c %s -- "$source")" <"$source"
}

kube_store_remove() {
  kube_exec sandbox APP "$LIFECYCLE_TIMEOUT" "" rm -rf -- "$@" </dev/null
}

kube_store_rename() {
  kube_exec sandbox APP "$LIFECYCLE_TIMEOUT" "" mv -T -- "$1" "$2" </dev/null
}

kube_store_make_folder() {
  kube_app_script 'set -eu; mkdir -p -- "$1"; chmod 700 -- "$1"' "$1"
}

kube_store_snapshot() {
  kube_app_script "${KUBE_CHECKPOINT_MANIFEST_FUNCTION}
${KUBE_CHECKPOINT_SNAPSHOT_SCRIPT}" "$1" "$2"
}

kube_documents_manifest() {
  kube_app_script "${KUBE_CHECKPOINT_MANIFEST_FUNCTION}
set -e
manifest \"\$1\"" "$1"
}

kube_documents_walk() {
  kube_app_script "${KUBE_CHECKPOINT_MANIFEST_FUNCTION}
set -e
if [ -d \"\$1\" ]; then manifest \"\$1\"; fi" "$1"
}

kube_documents_stat_entries() {
  local root="$1" paths="$2"
  kube_exec sandbox APP "$LIFECYCLE_TIMEOUT" -i sh -c "$KUBE_CHECKPOINT_STAT_SCRIPT" sh "$root" <"$paths"
}

kube_documents_make_folder() {
  kube_exec sandbox APP "$LIFECYCLE_TIMEOUT" "" mkdir -p -- "$1" </dev/null
}

# The local files `deletions` and `copies` become one list on the script's stdin,
# so the whole change is one exec.
kube_documents_apply() {
  local source="$1" target="$2" deletions="$3" copies="$4" changes="${LIFECYCLE_WORK}/documents-changes.list"
  {
    sed 's/^/d\t/' -- "$deletions"
    sed 's/^/c\t/' -- "$copies"
  } >"$changes"
  kube_exec sandbox APP "$LIFECYCLE_TIMEOUT" -i sh -c "$KUBE_CHECKPOINT_APPLY_SCRIPT" sh "$source" "$target" <"$changes"
}

# -- the dump path without CREATEDB ------------------------------------------------------

# The dump's path inside the sandbox's database container: fixed per run, so that
# the EXIT trap can remove it even when the dump was interrupted.
kube_checkpoint_pod_dump_path() {
  printf '%s/%s-checkpoint.dump' "${SANDBOX_DB_DUMP_DIR:-$KUBE_CHECKPOINT_DEFAULT_DUMP_DIR}" "${LIFECYCLE_WORK##*/}"
}

# Also an EXIT handler of checkpoint-save. The dump runs in a child process, so it
# leaves a marker in the work folder for this handler to find.
kube_checkpoint_remove_pod_dump() {
  if [[ ! -e "${LIFECYCLE_WORK}/checkpoint-dump.started" ]]; then
    return 0
  fi
  kube_exec sandbox DB "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" "" rm -f -- "$(kube_checkpoint_pod_dump_path)" </dev/null 2>/dev/null
}

# Dump the sandbox in its database pod, copy the dump into the store file `file` in
# the Dolibarr pod until size and sha256 match those computed in the database pod,
# and print them.
kube_dump_sandbox() {
  local file="$1" pod_file summary
  pod_file="$(kube_checkpoint_pod_dump_path)"
  : >"${LIFECYCLE_WORK}/checkpoint-dump.started"
  summary="$(kube_exec sandbox DB "$LIFECYCLE_TIMEOUT" "" env PGAPPNAME="sandbox-lifecycle checkpoint" \
    sh -c "$KUBE_CHECKPOINT_DUMP_SCRIPT" sh "$pod_file" "$SANDBOX_DB_ROLE" "$SANDBOX_DB_NAME" </dev/null)"
  if [[ ! "$summary" =~ ^[0-9]+\ [0-9a-f]{64}$ ]]; then
    printf 'error: the dump in pod %s reported no size and sha256, only %q\n' "$KUBE_SANDBOX_DB_POD" "$summary" >&2
    return 1
  fi
  kube_checkpoint_copy_into_store "$pod_file" "$file" "$summary"
  kube_checkpoint_remove_pod_dump || :
  printf '%s\n' "$summary"
}

kube_checkpoint_copy_into_store() {
  local pod_file="$1" file="$2" expected="$3" attempt arrived=""
  for ((attempt = 1; attempt <= KUBE_COPY_ATTEMPTS; attempt++)); do
    arrived="$(kube_exec sandbox DB "$LIFECYCLE_TIMEOUT" "" cat -- "$pod_file" </dev/null |
      kube_exec sandbox APP "$LIFECYCLE_TIMEOUT" -i sh -c "$KUBE_CHECKPOINT_RECEIVE_SCRIPT" sh "$file")" || arrived=""
    if [[ "$arrived" == "$expected" ]]; then
      kube_store_rename "$file.incoming" "$file"
      return 0
    fi
    lifecycle_log "$LIFECYCLE_PHASE" "copy ${attempt} of ${KUBE_COPY_ATTEMPTS} of the dump into the store arrived as '${arrived:-nothing}' instead of '${expected}' (bytes, sha256); retrying"
  done
  kube_store_remove "$file.incoming" || :
  printf 'error: every one of %s copies of the dump from pod %s to pod %s arrived damaged (expected %s bytes and sha256)\n' \
    "$KUBE_COPY_ATTEMPTS" "$KUBE_SANDBOX_DB_POD" "$KUBE_SANDBOX_APP_POD" "$expected" >&2
  return 1
}

# Copy the checkpoint dump `file` out of the store to this machine until its size
# and sha256 equal those recorded at save, and print the local path.
kube_fetch_checkpoint_dump() {
  local file="$1" size="$2" digest="$3" local_file="${LIFECYCLE_WORK}/checkpoint.dump" attempt arrived found
  found="$(kube_app_script "$KUBE_CHECKPOINT_SUM_SCRIPT" "$file")"
  if [[ -n "$size" && "$found" != "${size} ${digest}" ]]; then
    printf 'error: the dump %s has %s (bytes, sha256) instead of %s %s recorded at save; drop the checkpoint and take a new one\n' \
      "$file" "$found" "$size" "$digest" >&2
    return 1
  fi
  for ((attempt = 1; attempt <= KUBE_COPY_ATTEMPTS; attempt++)); do
    if kube_store_read "$file" >"$local_file"; then
      arrived="$(stat -c %s -- "$local_file") $(sha256sum <"$local_file" | cut -d ' ' -f 1)"
      if [[ "$arrived" == "$found" ]]; then
        lifecycle_log "$LIFECYCLE_PHASE" "copied the checkpoint dump out of pod ${KUBE_SANDBOX_APP_POD}: ${found} (bytes, sha256) as computed there"
        printf '%s\n' "$local_file"
        return 0
      fi
    fi
    lifecycle_log "$LIFECYCLE_PHASE" "copy ${attempt} of ${KUBE_COPY_ATTEMPTS} of the checkpoint dump arrived as '${arrived:-nothing}' instead of '${found}'; retrying"
    rm -f -- "$local_file"
  done
  printf 'error: every one of %s copies of the checkpoint dump out of pod %s arrived damaged\n' "$KUBE_COPY_ATTEMPTS" "$KUBE_SANDBOX_APP_POD" >&2
  return 1
}

# -- replace the local implementations --------------------------------------------------

if [[ "${LIFECYCLE_TRANSPORT:-}" == "kubectl" ]]; then
  transport_checkpoint_documents_path() { printf '%s' "${SANDBOX_DOCUMENTS_PATH:-}"; }
  transport_checkpoint_validate() { kube_checkpoint_validate; }
  transport_checkpoint_begin() { kube_checkpoint_begin "$@"; }
  transport_checkpoint_store_label() { kube_checkpoint_store_label; }
  transport_checkpoint_documents_identity() { kube_checkpoint_documents_identity; }
  transport_psql_sandbox_on() { kube_psql_sandbox_on "$@"; }
  transport_store_list() { kube_store_list "$@"; }
  transport_store_read() { kube_store_read "$@"; }
  transport_store_write() { kube_store_write "$@"; }
  transport_store_remove() { kube_store_remove "$@"; }
  transport_store_rename() { kube_store_rename "$@"; }
  transport_store_make_folder() { kube_store_make_folder "$@"; }
  transport_store_snapshot() { kube_store_snapshot "$@"; }
  transport_documents_manifest() { kube_documents_manifest "$@"; }
  transport_documents_make_folder() { kube_documents_make_folder "$@"; }
  transport_documents_walk() { kube_documents_walk "$@"; }
  transport_documents_stat_entries() { kube_documents_stat_entries "$@"; }
  transport_documents_apply() { kube_documents_apply "$@"; }
  transport_dump_sandbox() { kube_dump_sandbox "$@"; }
  transport_fetch_checkpoint_dump() { kube_fetch_checkpoint_dump "$@"; }
fi
